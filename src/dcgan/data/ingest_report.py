"""Counts behind the validation report: files seen, accepted, skipped, quarantined, duplicates, modes, sizes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dcgan.data.manifest import ACCEPTED, QUARANTINED

SIDE_BINS = [0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, float("inf")]


def _counts(series: pd.Series) -> dict[str, int]:
    return {str(key): int(value) for key, value in series.value_counts().sort_index().items()}


def side_histogram(frame: pd.DataFrame) -> dict[str, int]:
    """Count decoded images by the bin of their shorter side, such as '32-63'."""
    sides = frame[["width", "height"]].min(axis=1)
    labels = [f"{int(low)}-{int(high) - 1}" if high != float("inf") else f"{int(low)}+"
              for low, high in zip(SIDE_BINS, SIDE_BINS[1:])]
    binned = pd.cut(sides, SIDE_BINS, right=False, labels=labels)
    return {label: int(count) for label, count in binned.value_counts(sort=False).items() if count}


def summarize(frame: pd.DataFrame, max_bad_fraction: float) -> dict:
    """Count the report.json figures of one dataset.

    ``bad_fraction`` is the quarantined files over the image files decoded.
    """
    decoded = frame[frame["decoded"]]
    readable = decoded[decoded["status"] != QUARANTINED]
    accepted = frame[frame["status"] == ACCEPTED]
    copies = frame[frame["duplicate_of"] != ""]
    bad = int((frame["status"] == QUARANTINED).sum())
    return {
        "files_seen": len(frame),
        "images_decoded": len(decoded),
        "accepted": len(accepted),
        "skipped": _counts(frame.loc[frame["status"] == "skipped", "reason"]),
        "quarantined": _counts(frame.loc[frame["status"] == QUARANTINED, "reason"]),
        "bad_fraction": bad / len(decoded) if len(decoded) else 0.0,
        "max_bad_fraction": max_bad_fraction,
        "duplicates": {
            "copies": len(copies),
            "distinct": int(readable["sha256"].nunique()),
            "removed": int((frame["reason"] == "duplicate").sum()),
        },
        "modes": _counts(readable["mode"]),
        "shorter_side_histogram": side_histogram(readable),
        "labels": _counts(accepted["label"].dropna()) if accepted["label"].notna().any() else None,
    }


def write_quarantine(frame: pd.DataFrame, path: Path) -> Path:
    """List every quarantined file with its reason and the decoder's message."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.loc[frame["status"] == QUARANTINED, ["name", "reason", "detail", "bytes"]].to_csv(path, index=False)
    return path


def describe_bad_share(summary: dict, quarantine_path: Path) -> str:
    """Build the one-line error for a dataset with too many quarantined files."""
    bad = sum(summary["quarantined"].values())
    reasons = ", ".join(f"{count} {reason}" for reason, count in summary["quarantined"].items())
    return (
        f"{bad} of {summary['images_decoded']} image files ({summary['bad_fraction']:.1%}) are quarantined "
        f"({reasons}), above ingest.max_bad_fraction = {summary['max_bad_fraction']}; see {quarantine_path}, "
        "then fix or remove those files, or raise the threshold"
    )
