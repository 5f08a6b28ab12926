"""The training loop: epochs over packed uint8 images, interval logs, per-epoch grid and checkpoint."""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import save_image
from tqdm import tqdm

from dcgan.config import TrainConfig
from dcgan.errors import UserError
from dcgan.models import ModelConfig, build_models
from dcgan.paths import CHANNELS, DatasetPaths
from dcgan.training.checkpoint import save_checkpoint
from dcgan.training.train_step import train_step

log = logging.getLogger(__name__)

GRID_SAMPLES = 64
LOSS_COLUMNS = ["images_seen", "loss_d", "loss_g", "d_real", "d_fake", "images_per_s"]


def select_device(name: str) -> torch.device:
    # NOTE: only the CPU path has run so far; the CUDA branch is untested on a GPU.
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.*.device = 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def load_images(path: Path, device: torch.device) -> torch.Tensor:
    """Load the packed N×C×H×W uint8 array; it stays uint8 until a batch is drawn."""
    if not path.is_file():
        raise UserError(f"prepared images not found: {path}; run the preprocess stage first")
    return torch.from_numpy(np.load(path)).to(device)


def to_model_range(batch: torch.Tensor) -> torch.Tensor:
    """Map uint8 pixels 0..255 to floats in [-1, 1], the range of the generator's tanh."""
    return batch.float().div_(127.5).sub_(1.0)


class LossLog:
    """Interval statistics summed on the device and read back once per interval."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as handle:
            csv.writer(handle).writerow(LOSS_COLUMNS)
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0
        self.images = 0
        self.started = time.perf_counter()

    def add(self, stats: dict[str, torch.Tensor], images: int) -> None:
        for key, value in stats.items():
            self.sums[key] = self.sums.get(key, 0) + value
        self.steps += 1
        self.images += images

    def flush(self, cur_nimg: int) -> dict[str, float]:
        means = {key: float(value) / self.steps for key, value in self.sums.items()}
        means["images_per_s"] = self.images / max(time.perf_counter() - self.started, 1e-9)
        with open(self.path, "a", newline="") as handle:
            csv.writer(handle).writerow([cur_nimg] + [f"{means[k]:.6g}" for k in LOSS_COLUMNS[1:]])
        self.reset()
        return means


def train(dataset: str, cfg: TrainConfig, image_size: int, paths: DatasetPaths, tracker=None) -> dict:
    """Train G and D; write grids, a checkpoint each epoch and the loss log; return a summary."""
    torch.manual_seed(cfg.seed)
    device = select_device(cfg.device)
    images = load_images(paths.images, device)
    count = images.shape[0]
    if count < 2:
        raise UserError(f"{paths.images} contains {count} image(s); training needs at least 2")
    model_cfg = ModelConfig(cfg.nz, cfg.ngf, cfg.ndf, image_size, CHANNELS[dataset])
    if tuple(images.shape[1:]) != (model_cfg.channels, image_size, image_size):
        raise UserError(
            f"{paths.images} has images of shape {tuple(images.shape[1:])}, expected "
            f"{(model_cfg.channels, image_size, image_size)}; run the preprocess stage again"
        )
    generator, discriminator = build_models(model_cfg)
    generator.to(device)
    discriminator.to(device)
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    fixed_noise = torch.randn(GRID_SAMPLES, cfg.nz, 1, 1, generator=torch.Generator().manual_seed(cfg.seed)).to(device)

    batch_size = min(cfg.batch_size, count)
    batches_per_epoch = count // batch_size
    total = batches_per_epoch * batch_size * cfg.epochs
    if cfg.max_images is not None:
        total = min(total, cfg.max_images)
    log.info("training %s on %s: %d images, %d images to see, batch %d", dataset, device, count, total, batch_size)
    if tracker:
        tracker.log_params({"device": str(device), "train_images": count, "total_images": total})

    losses = LossLog(paths.losses)
    epoch_log = LossLog(paths.train / "epoch_losses.csv")
    paths.grids.mkdir(parents=True, exist_ok=True)
    cur_nimg, next_log, epoch = 0, cfg.log_every_images, 0
    progress = tqdm(total=total, desc=f"training {dataset}", unit="img", unit_scale=True)
    while cur_nimg < total:
        epoch += 1
        order = torch.randperm(count, device=device)
        for start in range(0, batches_per_epoch * batch_size, batch_size):
            if cur_nimg >= total:
                break

            # Draw a real batch by index and fresh noise.
            real = to_model_range(images[order[start : start + batch_size]])
            z = torch.randn(batch_size, cfg.nz, 1, 1, device=device)

            # Update D on real and fake, then G.
            stats = train_step(generator, discriminator, opt_g, opt_d, real, z)
            losses.add(stats, batch_size)
            epoch_log.add(stats, batch_size)
            cur_nimg += batch_size
            progress.update(batch_size)

            # Report the interval.
            if cur_nimg >= next_log or cur_nimg >= total:
                means = losses.flush(cur_nimg)
                next_log += cfg.log_every_images
                _report(means, cur_nimg, total, progress, tracker)

        # Snapshot: fixed-noise grid and checkpoint.
        epoch_means = epoch_log.flush(cur_nimg)
        grid_path = _save_grid(generator, fixed_noise, paths.grids / f"epoch_{epoch:03d}.png")
        save_checkpoint(
            paths.checkpoint,
            {
                "model_config": model_cfg.to_dict(),
                "train_config": asdict(cfg),
                "generator": generator.state_dict(),
                "discriminator": discriminator.state_dict(),
                "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(),
                "epoch": epoch,
                "cur_nimg": cur_nimg,
            },
        )
        if tracker:
            tracker.log_metrics({f"epoch_{k}": v for k, v in epoch_means.items()}, step=epoch)
            tracker.log_artifact(str(grid_path), "grids")
    progress.close()
    return {"images_seen": cur_nimg, "epochs": epoch, "device": str(device)}


def _report(means: dict[str, float], cur_nimg: int, total: int, progress: tqdm, tracker) -> None:
    line = (
        f"kimg {cur_nimg / 1000:9.1f}/{total / 1000:.1f}  loss_d {means['loss_d']:7.4f}  "
        f"loss_g {means['loss_g']:7.4f}  D(x) {means['d_real']:.3f}  D(G(z)) {means['d_fake']:.3f}  "
        f"img/s {means['images_per_s']:8.1f}"
    )
    progress.write(line)
    log.debug(line)
    if tracker:
        tracker.log_metrics({**means, "images_seen": cur_nimg}, step=cur_nimg)


@torch.no_grad()
def _save_grid(generator: torch.nn.Module, fixed_noise: torch.Tensor, path: Path) -> Path:
    generator.eval()
    fake = generator(fixed_noise).cpu()
    generator.train()
    save_image(fake, path, nrow=8, normalize=True, value_range=(-1, 1), padding=2)
    return path
