"""Inception features of the real images: chosen once per dataset, cached by the fid_stats stage, reused by evaluate."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch

from dcgan.errors import UserError
from dcgan.evaluation import inception

log = logging.getLogger(__name__)


def choose_real_images(images: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Return the sorted indices of ``count`` images drawn without replacement (all when fewer exist)."""
    count = min(count, len(images))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(len(images), size=count, replace=False))


def digest_images(images: np.ndarray, index: np.ndarray) -> str:
    """Return the sha256 of the chosen images' bytes in order, naming the real set independently of any features."""
    digest = hashlib.sha256()
    for start in range(0, len(index), 1000):
        digest.update(np.ascontiguousarray(images[index[start : start + 1000]]).tobytes())
    return digest.hexdigest()


def compute(images_path: Path, count: int, seed: int, device: torch.device, desc: str) -> tuple[torch.Tensor, dict]:
    """Extract the features of ``count`` real images from the packed array; return them with their metadata."""
    if not images_path.is_file():
        raise UserError(f"prepared images not found: {images_path}; run the preprocess stage first")
    images = np.load(images_path, mmap_mode="r")
    index = choose_real_images(images, count, seed)
    extractor = inception.InceptionFeatures().to(device)
    batches = (torch.from_numpy(np.ascontiguousarray(images[index[i : i + 1000]])) for i in range(0, len(index), 1000))
    features = inception.extract_features(extractor, batches, len(index), desc, device)
    meta = {
        "real_count": len(index),
        "seed": seed,
        "image_shape": list(images.shape[1:]),
        "real_set_sha256": digest_images(images, index),
        "weights_sha256": inception.sha256_of(inception.weights_path()),
    }
    return features, meta


def save(features: torch.Tensor, meta: dict, path: Path) -> None:
    """Write the features (float32, as the network outputs them) and metadata atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save({"features": features.float().contiguous(), "meta": meta}, partial)
    os.replace(partial, path)


def load(path: Path) -> tuple[torch.Tensor, dict]:
    """Read cached features, rejecting a cache written with other Inception weights."""
    if not path.is_file():
        raise UserError(f"cached real features not found: {path}; run the fid_stats stage first")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if "features" not in saved:
        raise UserError(f"{path} was written by an older version without real features; run the fid_stats stage again")
    current = inception.sha256_of(inception.weights_path())
    if saved["meta"]["weights_sha256"] != current:
        raise UserError(
            f"{path} was computed with Inception weights {saved['meta']['weights_sha256'][:12]}, but the installed "
            f"weights are {current[:12]}; run the fid_stats stage again"
        )
    return saved["features"], saved["meta"]
