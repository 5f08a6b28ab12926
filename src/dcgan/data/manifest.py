"""One row per raw image: name, width, height, mode, bytes, sha256, label, decodable."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from dcgan.data.image_archive import iter_images

COLUMNS = ["name", "width", "height", "mode", "bytes", "sha256", "label", "decodable", "error"]


def mnist_manifest(images: np.ndarray, labels: np.ndarray, prefix: str) -> pd.DataFrame:
    """Describe IDX or CSV digits; each row's sha256 is that of its 784 pixel bytes."""
    count = len(images)
    return pd.DataFrame(
        {
            "name": [f"{prefix}-{i:05d}" for i in range(count)],
            "width": images.shape[2],
            "height": images.shape[1],
            "mode": "L",
            "bytes": images[0].size,
            "sha256": [hashlib.sha256(image.tobytes()).hexdigest() for image in images],
            "label": pd.array(labels, dtype="Int64"),
            "decodable": True,
            "error": "",
        },
        columns=COLUMNS,
    )


def _describe(name: str, payload: bytes) -> dict:
    row = {
        "name": name,
        "width": 0,
        "height": 0,
        "mode": "",
        "bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "label": pd.NA,
        "decodable": False,
        "error": "",
    }
    try:
        with Image.open(io.BytesIO(payload)) as image:
            # load() decodes every pixel: verify() alone passes truncated JPEGs.
            image.load()
            row.update(width=image.width, height=image.height, mode=image.mode, decodable=True)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
    return row


def archive_manifest(archive_path: Path, limit: int | None = None) -> pd.DataFrame:
    """Decode every image entry of the zip in full and describe it."""
    rows = [
        _describe(name, payload)
        for name, payload in tqdm(iter_images(archive_path, limit), desc="decoding images", unit="img")
    ]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["label"] = frame["label"].astype("Int64")
    return frame


def write_manifest(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def read_manifest(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"label": "Int64", "mode": str, "error": str}, keep_default_na=False, na_values={"label": [""]})
