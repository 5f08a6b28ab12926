"""Read and verify the official MNIST IDX files (gzip-compressed)."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np

from dcgan.errors import UserError

# File names and md5 sums as published with MNIST and listed by torchvision.
MNIST_FILES = {
    "train": {
        "images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", 60000),
        "labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", 60000),
    },
    "test": {
        "images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", 10000),
        "labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", 10000),
    },
}
IDX_MAGIC = {"images": 2051, "labels": 2049}


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_idx(path: Path, kind: str) -> np.ndarray:
    """Decode one IDX file, checking its magic number, shape and length."""
    try:
        data = gzip.decompress(Path(path).read_bytes())
    except (OSError, EOFError) as exc:
        raise UserError(f"{path}: not a valid gzip file ({exc}); delete it and ingest again") from None
    magic = struct.unpack(">I", data[:4])[0] if len(data) >= 4 else None
    if magic != IDX_MAGIC[kind]:
        raise UserError(
            f"{path}: invalid IDX header: magic {magic}, expected {IDX_MAGIC[kind]} for {kind}"
        )
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise UserError(
            f"{path}: IDX body has {len(data) - offset} bytes, header promises {expected}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def verify_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Check both files of a split by md5 and IDX header; return (images, labels)."""
    arrays = {}
    for kind, (name, md5, count) in MNIST_FILES[split].items():
        path = folder / name
        if not path.is_file():
            raise UserError(f"MNIST file not found: {path}; the {split} split needs {name}")
        actual = md5sum(path)
        if actual != md5:
            raise UserError(
                f"{path}: md5 {actual} does not match the official {md5}; "
                "the file is damaged or not MNIST: delete it and download it again"
            )
        arrays[kind] = read_idx(path, kind)
        if len(arrays[kind]) != count:
            raise UserError(f"{path}: {len(arrays[kind])} records, expected {count}")
    return arrays["images"], arrays["labels"]
