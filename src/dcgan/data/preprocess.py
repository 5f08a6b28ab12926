"""Decode, convert, center-crop and resize every accepted image into one uint8 array."""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from dcgan.data import image_decode
from dcgan.data.image_archive import ARCHIVE_NAME
from dcgan.data.manifest import ACCEPTED, read_manifest
from dcgan.data.mnist_sources import load_raw
from dcgan.data.parallel_decode import map_chunks
from dcgan.paths import CHANNELS, DatasetPaths

log = logging.getLogger(__name__)


def _prepare_chunk(out_path: str, size: int, channels: int, start: int, items: list[tuple[str, bytes]]) -> list:
    """Write one chunk of prepared images straight into the output .npy, at rows start..start+len."""
    out = np.load(out_path, mmap_mode="r+")
    for offset, (_, payload) in enumerate(items):
        out[start + offset] = image_decode.prepare(payload, size, channels)
    out.flush()
    return []


def _mnist_images(paths: DatasetPaths, names: list[str], split: str) -> tuple[list, np.ndarray]:
    images, labels = load_raw(paths.raw, split)
    index = [int(name.rsplit("-", 1)[1]) for name in names]
    return images[index], labels[index]


def channel_stats(images: np.ndarray) -> dict:
    """Per-channel mean and standard deviation in [0, 1] units, without a float copy of all images."""
    flat = images.reshape(images.shape[0], images.shape[1], -1)
    mean = [float(flat[:, c].mean() / 255) for c in range(images.shape[1])]
    std = [float(flat[:, c].std() / 255) for c in range(images.shape[1])]
    return {"mean": mean, "std": std}


def preprocess(
    dataset: str, image_size: int, split: str = "train", paths: DatasetPaths | None = None, workers: int = 0
) -> dict:
    """Write images.npy (N×C×H×W uint8), labels.npy and stats.json for the accepted rows."""
    paths = paths or DatasetPaths(dataset)
    channels = CHANNELS[dataset]
    manifest = read_manifest(paths.manifest)
    accepted = manifest[manifest["status"] == ACCEPTED]
    names = accepted["name"].tolist()
    paths.prepared.mkdir(parents=True, exist_ok=True)
    partial = paths.images.with_name(paths.images.name + ".partial.npy")
    shape = (len(names), channels, image_size, image_size)
    if dataset == "mnist":
        digits, labels = _mnist_images(paths, names, split)
        images = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
        for i, digit in enumerate(tqdm(digits, desc=f"preprocessing {dataset}", unit="img")):
            images[i] = image_decode.prepare(Image.fromarray(digit, mode="L"), image_size, channels)
        images.flush()
    else:
        labels = np.full(len(names), -1, dtype=np.int64)
        np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape).flush()
        prepare = functools.partial(_prepare_chunk, str(partial), image_size, channels)
        map_chunks(paths.raw / ARCHIVE_NAME, names, prepare, workers, f"preprocessing {dataset}")
        images = np.load(partial, mmap_mode="r")
    stats = {
        "dataset": dataset,
        "count": int(len(images)),
        "shape": list(images.shape[1:]),
        "dtype": "uint8",
        "not_accepted": {
            f"{status}:{reason}": int(count)
            for (status, reason), count in manifest[manifest["status"] != ACCEPTED].groupby(["status", "reason"]).size().items()
        },
        **channel_stats(images),
    }
    del images
    os.replace(partial, paths.images)
    _save_npy(paths.labels, np.asarray(labels, dtype=np.int64))
    paths.stats.write_text(json.dumps(stats, indent=2))
    log.info("prepared %d %s images at %dx%d", stats["count"], dataset, image_size, image_size)
    return stats


def _save_npy(path: Path, array: np.ndarray) -> None:
    partial = path.with_name(path.name + ".partial.npy")
    np.save(partial, array)
    os.replace(partial, path)
