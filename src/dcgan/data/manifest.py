"""One row per raw file: whether it was accepted, skipped or quarantined, and why.

Columns: name, status (accepted | skipped | quarantined), reason, detail,
decoded (a full decode was tried), width, height, mode, bytes, sha256,
label, duplicate_of (the first file with the same bytes).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from dcgan.data import image_decode
from dcgan.data.image_archive import list_entries
from dcgan.data.parallel_decode import map_chunks

COLUMNS = [
    "name", "status", "reason", "detail", "decoded", "width", "height", "mode", "bytes", "sha256", "label",
    "duplicate_of",
]
ACCEPTED, SKIPPED, QUARANTINED = "accepted", "skipped", "quarantined"


def _frame(rows: list[dict] | dict) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["label"] = frame["label"].astype("Int64")
    for column in ("reason", "detail", "mode", "sha256", "duplicate_of"):
        frame[column] = frame[column].astype(object).fillna("").astype(str)
    frame["decoded"] = frame["decoded"].astype(bool)
    return frame


def mark_duplicates(frame: pd.DataFrame, drop: bool) -> pd.DataFrame:
    """Point each accepted file whose bytes match an earlier accepted file (by name) at that file.

    With ``drop`` the later copies are skipped with reason ``duplicate``; either way they are counted.
    """
    accepted = frame[frame["status"] == ACCEPTED]
    first = accepted.groupby("sha256", sort=False)["name"].transform("first")
    later = first[first != accepted["name"]]
    frame.loc[later.index, "duplicate_of"] = later
    if drop:
        frame.loc[later.index, ["status", "reason"]] = [SKIPPED, "duplicate"]
    return frame


def mnist_manifest(images: np.ndarray, labels: np.ndarray, prefix: str, drop_duplicates: bool) -> pd.DataFrame:
    """Describe IDX or CSV digits; each row's sha256 is that of its 784 pixel bytes."""
    count = len(images)
    frame = _frame(
        {
            "name": [f"{prefix}-{i:05d}" for i in range(count)],
            "status": ACCEPTED,
            "reason": "",
            "detail": "",
            "decoded": True,
            "width": images.shape[2],
            "height": images.shape[1],
            "mode": "L",
            "bytes": images[0].size,
            "sha256": [hashlib.sha256(image.tobytes()).hexdigest() for image in images],
            "label": pd.array(labels, dtype="Int64"),
            "duplicate_of": "",
        }
    )
    return mark_duplicates(frame, drop_duplicates)


def _inspect_chunk(min_side: int, start: int, items: list[tuple[str, bytes]]) -> list[dict]:
    rows = []
    for name, payload in items:
        info = image_decode.inspect(payload)
        status = QUARANTINED if info["reason"] else ACCEPTED
        if status == ACCEPTED and min(info["width"], info["height"]) < min_side:
            status = SKIPPED
            info.update(reason="too-small", detail=f"{info['width']}x{info['height']} is below {min_side} a side")
        rows.append(
            {"name": name, "status": status, "decoded": True, "bytes": len(payload),
             "sha256": hashlib.sha256(payload).hexdigest(), **info}
        )
    return rows


def archive_manifest(
    archive_path: Path, limit: int | None, min_side: int, drop_duplicates: bool, workers: int
) -> pd.DataFrame:
    """List every entry; decode each image entry in full, in parallel; junk is skipped by name and size.

    With a limit, only the first ``limit`` image entries by name are decoded.
    """
    entries = list_entries(archive_path)
    junk = [
        {"name": e.name, "status": SKIPPED, "reason": e.skip_reason, "decoded": False, "bytes": e.size}
        for e in entries
        if e.skip_reason
    ]
    images = [e.name for e in entries if not e.skip_reason][:limit]
    decoded = map_chunks(
        archive_path, images, functools.partial(_inspect_chunk, min_side), workers, "decoding images"
    )
    frame = _frame(sorted(junk + decoded, key=lambda row: row["name"]))
    for column in ("width", "height"):
        frame[column] = frame[column].fillna(0).astype(int)
    return mark_duplicates(frame, drop_duplicates)


def write_manifest(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def read_manifest(path: Path) -> pd.DataFrame:
    text_columns = {column: str for column in ("reason", "detail", "mode", "sha256", "duplicate_of", "status")}
    return pd.read_csv(
        path, dtype={"label": "Int64", **text_columns}, keep_default_na=False, na_values={"label": [""]}
    )
