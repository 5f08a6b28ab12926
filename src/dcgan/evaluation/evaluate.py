"""The fid_stats and evaluate stages: cached real features, FID and KID with their protocol, grids and the GIF."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import torch
import torchmetrics

from dcgan.config import EvaluateConfig
from dcgan.evaluation import inception, real_features
from dcgan.evaluation.fid import TooFewSamples, frechet_distance
from dcgan.evaluation.images import save_progress_gif, save_sample_grid
from dcgan.evaluation.interpolation import interpolation_images
from dcgan.evaluation.kid import KERNEL, kernel_inception_distance
from dcgan.evaluation.protocol import ScoreProtocol
from dcgan.paths import DatasetPaths
from dcgan.training.checkpoint import generator_from_state, load_checkpoint
from dcgan.training.loop import select_device

log = logging.getLogger(__name__)

GRID_SAMPLES = 64
WALK_ROWS = 8
WALK_STEPS = 10


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Quantize generator output in [-1, 1] to 8-bit pixels, as real images are."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def compute_real_stats(dataset: str, cfg: EvaluateConfig, paths: DatasetPaths) -> dict:
    """Extract and cache the Inception features of up to real_count prepared real images."""
    device = select_device("auto")
    features, meta = real_features.compute(
        paths.images, cfg.real_count, cfg.seed, device, desc=f"Inception features, real {dataset}"
    )
    real_features.save(features, meta, paths.fid_stats)
    log.info("cached Inception features of %d real %s images in %s", meta["real_count"], dataset, paths.fid_stats)
    return meta


def _real_features(dataset: str, cfg: EvaluateConfig, paths: DatasetPaths, device: torch.device):
    """Return (features, metadata, came from the cache); compute them when the fid_stats stage has not run."""
    if paths.fid_stats.is_file():
        features, meta = real_features.load(paths.fid_stats)
        return features, meta, True
    log.warning("no cached real features at %s; extracting them now (run the fid_stats stage to cache)", paths.fid_stats)
    features, meta = real_features.compute(paths.images, cfg.real_count, cfg.seed, device, f"Inception features, real {dataset}")
    return features, meta, False


@torch.no_grad()
def generate(generator: torch.nn.Module, count: int, seed: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Yield generated images in [-1, 1], in device-sized batches.

    All latent vectors are drawn at once from a CPU generator, so the images
    depend on the seed and the count only, never on the batch size or device.
    """
    z = torch.randn(count, generator.cfg.nz, generator=torch.Generator().manual_seed(seed))
    for rows in z.split(inception.batch_size_for(device)):
        yield generator(rows.to(device))


def evaluate(dataset: str, cfg: EvaluateConfig, paths: DatasetPaths, tracker=None) -> dict:
    """Score the trained generator with FID and KID; write metrics JSON, the sample grid, the walk grid and the GIF."""
    device = select_device("auto")
    checkpoint = load_checkpoint(paths.checkpoint)
    generator = generator_from_state(checkpoint).to(device)
    real, real_meta, cached = _real_features(dataset, cfg, paths, device)

    extractor = inception.InceptionFeatures().to(device)
    batches = (to_uint8(images) for images in generate(generator, cfg.generated_count, cfg.seed, device))
    generated = inception.extract_features(
        extractor, batches, cfg.generated_count, f"Inception features, generated {dataset}", device
    )

    scores: dict = {}
    try:
        scores["fid"] = frechet_distance(real, generated)
    except TooFewSamples as refused:
        scores["fid"] = None
        scores["fid_not_computed"] = str(refused)
        log.warning("FID not computed: %s", refused)
    kid = kernel_inception_distance(real, generated, cfg.kid_subsets, cfg.kid_subset_size, cfg.seed)
    protocol = ScoreProtocol(
        feature_extractor=inception.EXTRACTOR_NAME,
        weights_sha256=real_meta["weights_sha256"],
        resize=inception.RESIZE,
        input_scaling=inception.INPUT_SCALING,
        statistics_dtype="float64",
        generated_count=generated.shape[0],
        real_count=real.shape[0],
        real_set_sha256=real_meta["real_set_sha256"],
        real_stats_cached=cached,
        kid_subsets=kid.subsets,
        kid_subset_size=kid.subset_size,
        kid_kernel=KERNEL,
        library=f"torchmetrics {torchmetrics.__version__}",
    )
    scores.update(
        kid_mean=kid.mean,
        kid_std=kid.std,
        generated_count=protocol.generated_count,
        real_count=protocol.real_count,
        images_seen=checkpoint["cur_nimg"],
        epochs=checkpoint["epoch"],
        protocol=protocol.to_dict(),
        protocol_key=protocol.key(),
    )

    _write_pictures(generator, cfg.seed, paths)
    paths.metrics.parent.mkdir(parents=True, exist_ok=True)
    paths.metrics.write_text(json.dumps(scores, indent=2))
    fid_text = "not computed" if scores["fid"] is None else f"{scores['fid']:.2f}"
    log.info(
        "%s FID %s, KID %.5f ± %.5f (%d generated vs %d real, real features %s)",
        dataset, fid_text, kid.mean, kid.std, protocol.generated_count, protocol.real_count,
        "from the cache" if cached else "computed now",
    )
    if tracker:
        _log_scores(tracker, scores, checkpoint["cur_nimg"], paths)
    return scores


def _write_pictures(generator: torch.nn.Module, seed: int, paths: DatasetPaths) -> None:
    device = next(generator.parameters()).device
    grid_images = torch.cat(list(generate(generator, GRID_SAMPLES, seed, device))).cpu()
    save_sample_grid(grid_images, paths.sample_grid)
    walk = interpolation_images(generator, WALK_ROWS, WALK_STEPS, seed)
    save_sample_grid(walk, paths.interpolation_grid, nrow=WALK_STEPS)
    save_progress_gif(sorted(paths.grids.glob("epoch_*.png")), paths.progress_gif)


def _log_scores(tracker, scores: dict, step: int, paths: DatasetPaths) -> None:
    """Log the scores as metrics and the protocol as tags, which a rerun of evaluate may overwrite."""
    values = {name: scores[name] for name in ("fid", "kid_mean", "kid_std") if scores.get(name) is not None}
    tracker.log_metrics(values, step=step)
    tags = {f"score_protocol.{name}": str(value) for name, value in scores["protocol"].items()}
    tags["score_protocol_key"] = scores["protocol_key"]
    if scores["fid"] is None:
        tags["fid_not_computed"] = scores["fid_not_computed"]
    tracker.set_tags(tags)
    for picture in (paths.sample_grid, paths.interpolation_grid, paths.progress_gif):
        tracker.log_artifact(str(picture), "samples")
    tracker.log_artifact(str(paths.metrics), "metrics")
