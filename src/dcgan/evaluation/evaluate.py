"""The fid_stats and evaluate stages: cached real statistics, FID of the generator, grid and GIF."""

from __future__ import annotations

import json
import logging

import numpy as np
import torch

from dcgan.config import EvaluateConfig
from dcgan.evaluation import fid
from dcgan.evaluation.images import save_progress_gif, save_sample_grid
from dcgan.paths import DatasetPaths
from dcgan.training.checkpoint import generator_from_state, load_checkpoint
from dcgan.training.loop import select_device

log = logging.getLogger(__name__)

GRID_SAMPLES = 64


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Quantize generator output in [-1, 1] to 8-bit pixels, as real images are."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def compute_real_stats(dataset: str, cfg: EvaluateConfig, paths: DatasetPaths) -> dict:
    """Accumulate Inception statistics of up to fid_real_count prepared real images and cache them."""
    images = np.load(paths.images, mmap_mode="r")
    count = min(cfg.fid_real_count, len(images))
    rng = np.random.default_rng(cfg.seed)
    index = np.sort(rng.choice(len(images), size=count, replace=False))
    device = select_device("auto")
    metric = fid.new_metric(device)
    batches = (
        torch.from_numpy(np.ascontiguousarray(images[index[i : i + cfg.batch_size]]))
        for i in range(0, count, cfg.batch_size)
    )
    fid.add_images(metric, batches, real=True, total=count, desc=f"FID real statistics {dataset}")
    meta = {
        "real_count": count,
        "image_shape": list(images.shape[1:]),
        "resize": fid.RESIZE_METHOD,
        "weights_sha256": fid.sha256_of(fid.weights_path()),
    }
    fid.save_real_stats(metric, paths.fid_stats, meta)
    log.info("cached FID statistics of %d real %s images in %s", count, dataset, paths.fid_stats)
    return meta


@torch.no_grad()
def generate(generator: torch.nn.Module, count: int, batch_size: int, seed: int, device: torch.device):
    """Yield batches of generated images in [-1, 1], reproducible for a given seed."""
    rng = torch.Generator().manual_seed(seed)
    nz = generator.cfg.nz
    for start in range(0, count, batch_size):
        z = torch.randn(min(batch_size, count - start), nz, 1, 1, generator=rng).to(device)
        yield generator(z)


def evaluate(dataset: str, cfg: EvaluateConfig, paths: DatasetPaths, tracker=None) -> dict:
    """Score the trained generator; write metrics JSON, the sample grid and the training GIF."""
    device = select_device("auto")
    checkpoint = load_checkpoint(paths.checkpoint)
    generator = generator_from_state(checkpoint).to(device)
    metric = fid.new_metric(device)
    real_meta = fid.load_real_stats(metric, paths.fid_stats)

    batches = generate(generator, cfg.fid_generated_count, cfg.batch_size, cfg.seed, device)
    fid.add_images(metric, map(to_uint8, batches), real=False, total=cfg.fid_generated_count,
                   desc=f"FID generated {dataset}")
    score = float(metric.compute())

    grid_images = next(generate(generator, GRID_SAMPLES, GRID_SAMPLES, cfg.seed, device))
    save_sample_grid(grid_images.cpu(), paths.sample_grid)
    grids = sorted(paths.grids.glob("epoch_*.png"))
    save_progress_gif(grids, paths.progress_gif)
    metrics = {
        "fid": score,
        "fid_generated_count": cfg.fid_generated_count,
        "fid_real_count": real_meta["real_count"],
        "fid_resize": "bilinear",
        "fid_weights_sha256": real_meta["weights_sha256"][:12],
        "images_seen": checkpoint["cur_nimg"],
        "epochs": checkpoint["epoch"],
    }
    paths.metrics.parent.mkdir(parents=True, exist_ok=True)
    paths.metrics.write_text(json.dumps(metrics, indent=2))
    log.info("%s FID %.2f (%d generated vs %d real)", dataset, score, cfg.fid_generated_count, real_meta["real_count"])
    if tracker:
        tracker.log_metric("fid", score, step=checkpoint["cur_nimg"])
        tracker.log_params(
            {
                "fid_generated_count": cfg.fid_generated_count,
                "fid_real_count": real_meta["real_count"],
                "fid_resize": real_meta["resize"],
                "fid_weights_sha256": real_meta["weights_sha256"],
            }
        )
        tracker.log_artifact(str(paths.sample_grid), "samples")
        tracker.log_artifact(str(paths.progress_gif), "samples")
        tracker.log_artifact(str(paths.metrics), "metrics")
    return metrics
