"""The training loop: packed uint8 images drawn by index, resumable checkpoints, one or many processes."""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import save_image
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from dcgan.config import TrainConfig
from dcgan.errors import UserError
from dcgan.models import ModelConfig, build_models
from dcgan.paths import CHANNELS, DatasetPaths
from dcgan.training.checkpoint import check_model_config, plain_state_dict, save_checkpoint
from dcgan.training.distributed import Distributed
from dcgan.training.divergence import D_WINS_THRESHOLD, DivergenceMonitor
from dcgan.training.precision import choose_precision, make_optimizers, prepare_models
from dcgan.training.stop_signals import stop_on_signals
from dcgan.training.train_step import train_step

log = logging.getLogger(__name__)

GRID_SAMPLES = 64
LOSS_COLUMNS = ["images_seen", "loss_d", "loss_g", "d_real", "d_fake", "images_per_s"]


class TrainingDiverged(UserError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingStopped(UserError):
    """SIGTERM or Ctrl-C stopped training after a checkpoint was saved."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def select_device(name: str) -> torch.device:
    # NOTE: only the CPU path has run so far; the CUDA branch is untested on a GPU.
    if name.startswith("cuda") and not torch.cuda.is_available():
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

    def __init__(self, path: Path, resume_at: int | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        kept_rows = []
        if resume_at is not None and path.is_file():
            # Rows past the checkpoint come from steps that the resumed run repeats.
            with open(path, newline="") as handle:
                kept_rows = [row for row in csv.DictReader(handle) if int(row["images_seen"]) <= resume_at]
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, LOSS_COLUMNS)
            writer.writeheader()
            writer.writerows(kept_rows)
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

    def flush(self, cur_nimg: int) -> dict[str, float] | None:
        if not self.steps:
            return None
        means = {key: float(value) / self.steps for key, value in self.sums.items()}
        means["images_per_s"] = self.images / max(time.perf_counter() - self.started, 1e-9)
        with open(self.path, "a", newline="") as handle:
            csv.writer(handle).writerow([cur_nimg] + [f"{means[k]:.6g}" for k in LOSS_COLUMNS[1:]])
        self.reset()
        return means


@dataclass
class Position:
    """Progress of a run: epoch, next step within it, images seen, steps taken, and the epoch's order."""

    epoch: int = 0
    step_in_epoch: int = 0
    cur_nimg: int = 0
    step: int = 0
    order: torch.Tensor | None = None


def train(
    dataset: str,
    cfg: TrainConfig,
    image_size: int,
    paths: DatasetPaths,
    tracker=None,
    *,
    resume_state: dict | None = None,
    fingerprint: dict | None = None,
    context: Distributed | None = None,
    device_name: str | None = None,
    on_step: Callable[[int, torch.nn.Module, torch.nn.Module], None] | None = None,
) -> dict:
    """Train G and D, resuming ``resume_state`` when given; write grids, checkpoints and loss logs.

    Only rank 0 writes files and logs to ``tracker``. ``on_step(step, generator, discriminator)``
    runs after every step on every rank.
    """
    context = context or Distributed()
    device = select_device(device_name or cfg.device)
    images = load_images(paths.images, device)
    count = images.shape[0]
    model_cfg = ModelConfig(cfg.nz, cfg.ngf, cfg.ndf, image_size, CHANNELS[dataset])
    if tuple(images.shape[1:]) != (model_cfg.channels, image_size, image_size):
        raise UserError(
            f"{paths.images} has images of shape {tuple(images.shape[1:])}, expected "
            f"{(model_cfg.channels, image_size, image_size)}; run the preprocess stage again"
        )
    global_batch = min(cfg.batch_size, count)
    if global_batch < 2 * context.world_size:
        raise UserError(f"{paths.images} contains {count} image(s); training needs at least {2 * context.world_size}")
    if global_batch % context.world_size:
        raise UserError(
            f"train.{dataset}.batch_size = {cfg.batch_size} does not split evenly over {context.world_size} "
            "processes; choose a multiple of the process count"
        )
    rank_batch = global_batch // context.world_size
    batches_per_epoch = count // global_batch
    total = batches_per_epoch * global_batch * cfg.epochs
    if cfg.max_images is not None:
        total = min(total, cfg.max_images)

    # Weights start identical on every rank; DistributedDataParallel also broadcasts rank 0's.
    torch.manual_seed(cfg.seed)
    generator, discriminator = build_models(model_cfg)
    order_rng = torch.Generator().manual_seed(cfg.seed)
    position = Position()
    if resume_state is not None:
        check_model_config(resume_state["model_config"], model_cfg, paths.checkpoint)
        generator.load_state_dict(plain_state_dict(resume_state["generator"]))
        discriminator.load_state_dict(plain_state_dict(resume_state["discriminator"]))
        precision = resume_state["precision"]
    else:
        # Rank 0 measures and every rank uses its choice, so that all ranks share one memory layout.
        choice = None
        if context.is_main:
            choice = choose_precision(cfg.precision, cfg.channels_last, cfg.compile, device, model_cfg, rank_batch)
        precision = context.broadcast(choice)
    generator.to(device)
    discriminator.to(device)
    generator, discriminator = prepare_models(generator, discriminator, precision)
    g_step, d_step = context.wrap(generator, device), context.wrap(discriminator, device)
    opt_g, opt_d = make_optimizers(generator, discriminator, cfg.lr, cfg.beta1, device)

    # Each rank draws its own noise; the epoch order comes from one generator shared by all ranks.
    torch.manual_seed(cfg.seed + 1 + context.rank)
    if resume_state is not None:
        opt_g.load_state_dict(resume_state["opt_g"])
        opt_d.load_state_dict(resume_state["opt_d"])
        position = _restore_position(resume_state, context, order_rng, device)
        log.info("resuming %s from %s at %d images seen", dataset, paths.checkpoint, position.cur_nimg)

    fixed_noise = torch.randn(GRID_SAMPLES, cfg.nz, 1, 1, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    main = context.is_main
    log.info(
        "training %s on %s with %s: %d images, %d of %d images to see, batch %d over %d process(es)",
        dataset, device, precision.name, count, total - position.cur_nimg, total, global_batch, context.world_size,
    )
    if tracker and main:
        tracker.log_params(
            {"device": str(device), "train_images": count, "total_images": total, "world_size": context.world_size,
             "precision_used": precision.name}
        )

    resume_at = position.cur_nimg if resume_state is not None else None
    losses = LossLog(paths.losses, resume_at) if main else None
    epoch_log = LossLog(paths.train / "epoch_losses.csv", resume_at) if main else None
    paths.grids.mkdir(parents=True, exist_ok=True)
    monitor = DivergenceMonitor(device)
    d_wins_reported = False
    next_log = _next_multiple(position.cur_nimg, cfg.log_every_images)
    next_checkpoint = _next_multiple(position.cur_nimg, cfg.checkpoint_every_images)
    last_good = resume_state["cur_nimg"] if resume_state is not None else None

    def checkpoint(finished: bool) -> None:
        nonlocal last_good
        state = _checkpoint_state(
            model_cfg, cfg, generator, discriminator, opt_g, opt_d, position, order_rng, precision, context,
            fingerprint, finished,
        )
        if main:
            save_checkpoint(paths.checkpoint, state)
        last_good = position.cur_nimg

    def check_health() -> None:
        nonlocal d_wins_reported
        first_bad, longest, end = monitor.read()
        if first_bad is not None:
            kept_note = (
                f"the last good checkpoint ({last_good} images seen) is kept at {paths.checkpoint}"
                if last_good is not None else "no checkpoint was written before it"
            )
            raise TrainingDiverged(
                f"training {dataset} diverged: a loss became NaN or infinite at step {first_bad} "
                f"({first_bad * global_batch} images seen); {kept_note}. Lower train.{dataset}.lr, "
                f"or set train.{dataset}.precision: fp32 if it ran in bf16"
            )
        if longest >= cfg.d_wins_steps and not d_wins_reported:
            d_wins_reported = True
            message = (
                f"D won outright (D(x) > {D_WINS_THRESHOLD}, D(G(z)) < {1 - D_WINS_THRESHOLD:.2f}) for "
                f"{longest} steps in a row, up to step {end}; the generator may have stopped learning"
            )
            log.warning(message)
            if tracker and main:
                tracker.set_tag("d_wins_warning", message)
                tracker.log_metric("d_wins_steps", longest, step=position.cur_nimg)

    def end_epoch() -> None:
        """Close an epoch: a fixed-noise grid and the epoch's mean losses."""
        position.order = None
        if not main:
            return
        epoch_means = epoch_log.flush(position.cur_nimg)
        grid_path = _save_grid(generator, fixed_noise, paths.grids / f"epoch_{position.epoch:03d}.png")
        if tracker:
            if epoch_means:
                tracker.log_metrics({f"epoch_{k}": v for k, v in epoch_means.items()}, step=position.epoch)
            tracker.log_artifact(str(grid_path), "grids")

    progress = tqdm(
        total=total, initial=position.cur_nimg, desc=f"training {dataset}", unit="img", unit_scale=True,
        disable=not main,
    )
    # Log lines go above the progress bar instead of breaking it.
    with stop_on_signals() as stop, logging_redirect_tqdm(loggers=[logging.getLogger("dcgan")]):
        while position.cur_nimg < total:
            if position.order is None:
                position.epoch += 1
                position.step_in_epoch = 0
                position.order = torch.randperm(count, generator=order_rng).to(device)

            # This rank's disjoint slice of the global batch.
            start = position.step_in_epoch * global_batch + context.rank * rank_batch
            real = to_model_range(images[position.order[start : start + rank_batch]])
            if precision.channels_last:
                real = real.contiguous(memory_format=torch.channels_last)
            z = torch.randn(rank_batch, cfg.nz, 1, 1, device=device)

            stats = train_step(g_step, d_step, opt_g, opt_d, real, z, autocast_dtype=precision.autocast_dtype)
            position.step += 1
            position.step_in_epoch += 1
            position.cur_nimg += global_batch
            monitor.update(position.step, stats)
            if main:
                losses.add(stats, global_batch)
                epoch_log.add(stats, global_batch)
                progress.update(global_batch)
            if on_step is not None:
                on_step(position.step, generator, discriminator)

            if position.cur_nimg >= next_log or position.cur_nimg >= total:
                next_log = _next_multiple(position.cur_nimg, cfg.log_every_images)
                check_health()
                if main:
                    _report(losses.flush(position.cur_nimg), position.cur_nimg, progress, tracker)
            if position.step_in_epoch >= batches_per_epoch:
                end_epoch()

            stop_now = _stop_requested(stop, context)
            if (position.cur_nimg >= next_checkpoint or stop_now) and position.cur_nimg < total:
                next_checkpoint = _next_multiple(position.cur_nimg, cfg.checkpoint_every_images)
                check_health()
                checkpoint(finished=False)
            if stop_now and position.cur_nimg < total:
                progress.close()
                signal_name = stop.signal.name if stop else "a signal on another rank"
                raise TrainingStopped(
                    f"training {dataset} stopped by {signal_name} after {position.cur_nimg} images; "
                    f"checkpoint saved at {paths.checkpoint}; run the same command again to resume",
                    stop.exit_code if stop else 143,
                )

    check_health()
    if main and epoch_log.steps:
        epoch_log.flush(position.cur_nimg)
    checkpoint(finished=True)
    progress.close()
    return {"images_seen": position.cur_nimg, "epochs": position.epoch, "device": str(device),
            "precision": precision.name}


def _next_multiple(value: int, every: int) -> int:
    return (value // every + 1) * every


def _stop_requested(stop, context: Distributed) -> bool:
    """Agree across ranks, so that every rank saves and stops after the same step."""
    if not context.enabled:
        return bool(stop)
    return not context.all_true(not stop)


def _checkpoint_state(model_cfg, cfg, generator, discriminator, opt_g, opt_d, position, order_rng, precision,
                      context, fingerprint, finished) -> dict:
    """Collect everything a resumed run needs to continue exactly where this one is."""
    rng = context.gather(
        {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    )
    return {
        "model_config": model_cfg.to_dict(),
        "train_config": asdict(cfg),
        "fingerprint": fingerprint,
        "generator": plain_state_dict(generator.state_dict()),
        "discriminator": plain_state_dict(discriminator.state_dict()),
        "opt_g": opt_g.state_dict(),
        "opt_d": opt_d.state_dict(),
        "precision": precision,
        "epoch": position.epoch,
        "step_in_epoch": position.step_in_epoch,
        "step": position.step,
        "cur_nimg": position.cur_nimg,
        "order": position.order.cpu() if position.order is not None else None,
        "order_rng": order_rng.get_state(),
        "rng": rng,
        "world_size": context.world_size,
        "finished": finished,
    }


def _restore_position(state: dict, context: Distributed, order_rng: torch.Generator, device) -> Position:
    if state["world_size"] != context.world_size:
        raise UserError(
            f"the checkpoint was written by {state['world_size']} process(es) and this run has "
            f"{context.world_size}; resume with the same process count or start from scratch"
        )
    order_rng.set_state(state["order_rng"])
    rng = state["rng"][context.rank]
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    order = state["order"].to(device) if state["order"] is not None else None
    return Position(state["epoch"], state["step_in_epoch"], state["cur_nimg"], state["step"], order)


def _report(means: dict[str, float] | None, cur_nimg: int, progress: tqdm, tracker) -> None:
    if means is None:
        return
    progress.set_postfix(
        loss_d=f"{means['loss_d']:.3f}", loss_g=f"{means['loss_g']:.3f}", refresh=False
    )
    log.info(
        "%d images: loss_d %.4f loss_g %.4f D(x) %.3f D(G(z)) %.3f, %.1f images/s",
        cur_nimg, means["loss_d"], means["loss_g"], means["d_real"], means["d_fake"], means["images_per_s"],
    )
    if tracker:
        tracker.log_metrics({**means, "images_seen": cur_nimg}, step=cur_nimg)


@torch.no_grad()
def _save_grid(generator: torch.nn.Module, fixed_noise: torch.Tensor, path: Path) -> Path:
    generator.eval()
    fake = generator(fixed_noise).float().cpu()
    generator.train()
    save_image(fake, path, nrow=8, normalize=True, value_range=(-1, 1), padding=2)
    return path
