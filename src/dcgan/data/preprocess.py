"""Decode, convert, center-crop and resize every accepted image into one uint8 array."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from dcgan.data.image_archive import ARCHIVE_NAME, read_entries
from dcgan.data.manifest import read_manifest
from dcgan.data.mnist_sources import load_raw
from dcgan.paths import CHANNELS, DatasetPaths

log = logging.getLogger(__name__)

BACKGROUND = (255, 255, 255)


def to_mode(image: Image.Image, channels: int) -> Image.Image:
    """Convert any Pillow mode to L or RGB, compositing alpha on a white background."""
    target = "L" if channels == 1 else "RGB"
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda value: value / 256).convert("L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, BACKGROUND + (255,))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert(target)


def crop_and_resize(image: Image.Image, size: int) -> Image.Image:
    """Center-crop to a square, then resize with Pillow's antialiasing Lanczos filter."""
    side = min(image.size)
    left = (image.width - side) // 2
    top = (image.height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    if side == size:
        return square
    return square.resize((size, size), Image.Resampling.LANCZOS)


def prepare_image(payload: bytes | Image.Image, size: int, channels: int) -> np.ndarray:
    """Return one image as a C×H×W uint8 array."""
    image = payload if isinstance(payload, Image.Image) else Image.open(io.BytesIO(payload))
    array = np.asarray(crop_and_resize(to_mode(image, channels), size), dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _mnist_images(paths: DatasetPaths, names: list[str], split: str) -> tuple[list, np.ndarray]:
    images, labels = load_raw(paths.raw, split)
    index = [int(name.rsplit("-", 1)[1]) for name in names]
    return [Image.fromarray(images[i], mode="L") for i in index], labels[index]


def channel_stats(images: np.ndarray) -> dict:
    """Per-channel mean and standard deviation in [0, 1] units, without a float copy of all images."""
    flat = images.reshape(images.shape[0], images.shape[1], -1)
    mean = [float(flat[:, c].mean() / 255) for c in range(images.shape[1])]
    std = [float(flat[:, c].std() / 255) for c in range(images.shape[1])]
    return {"mean": mean, "std": std}


def preprocess(dataset: str, image_size: int, split: str = "train", paths: DatasetPaths | None = None) -> dict:
    """Write images.npy (N×C×H×W uint8), labels.npy and stats.json for the accepted rows."""
    paths = paths or DatasetPaths(dataset)
    channels = CHANNELS[dataset]
    manifest = read_manifest(paths.manifest)
    accepted = manifest[manifest["decodable"]]
    names = accepted["name"].tolist()
    if dataset == "mnist":
        sources, labels = _mnist_images(paths, names, split)
    else:
        sources = (payload for _, payload in read_entries(paths.raw / ARCHIVE_NAME, names))
        labels = np.full(len(names), -1, dtype=np.int64)

    images = np.empty((len(names), channels, image_size, image_size), dtype=np.uint8)
    for i, source in enumerate(tqdm(sources, total=len(names), desc=f"preprocessing {dataset}", unit="img")):
        images[i] = prepare_image(source, image_size, channels)

    paths.prepared.mkdir(parents=True, exist_ok=True)
    _save_npy(paths.images, images)
    _save_npy(paths.labels, np.asarray(labels, dtype=np.int64))
    stats = {
        "dataset": dataset,
        "count": int(len(images)),
        "shape": list(images.shape[1:]),
        "dtype": "uint8",
        "skipped_undecodable": int(len(manifest) - len(accepted)),
        **channel_stats(images),
    }
    paths.stats.write_text(json.dumps(stats, indent=2))
    log.info("prepared %d %s images at %dx%d", len(images), dataset, image_size, image_size)
    return stats


def _save_npy(path: Path, array: np.ndarray) -> None:
    partial = path.with_name(path.name + ".partial.npy")
    np.save(partial, array)
    os.replace(partial, path)
