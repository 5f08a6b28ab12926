"""Decide whether a train run resumes an interrupted one, and what a checkpoint must match to do so."""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import asdict
from pathlib import Path

from dcgan.config import TrainConfig
from dcgan.paths import DatasetPaths
from dcgan.training.checkpoint import load_checkpoint

log = logging.getLogger(__name__)

# Settings that change when or how a run reports, never the weights it reaches.
REPORTING_KEYS = ("log_every_images", "checkpoint_every_images", "d_wins_steps")


def fingerprint(cfg: TrainConfig, image_size: int, paths: DatasetPaths) -> dict:
    """Describe everything an interrupted run must share with this one to resume it."""
    settings = {k: v for k, v in asdict(cfg).items() if k not in REPORTING_KEYS}
    data = paths.stats.read_text() if paths.stats.is_file() else ""
    return {
        "train": settings,
        "image_size": image_size,
        "data_sha256": hashlib.sha256(data.encode()).hexdigest(),
    }


def _differences(old: dict, new: dict) -> list[str]:
    changed = []
    for key in sorted(set(old["train"]) | set(new["train"])):
        if old["train"].get(key) != new["train"].get(key):
            changed.append(f"train.{key} {old['train'].get(key)!r} -> {new['train'].get(key)!r}")
    if old["image_size"] != new["image_size"]:
        changed.append(f"image_size {old['image_size']} -> {new['image_size']}")
    if old["data_sha256"] != new["data_sha256"]:
        changed.append("the prepared data")
    return changed


def find_resumable(paths: DatasetPaths, expected: dict) -> dict | None:
    """Return the interrupted run's checkpoint state when it matches ``expected``, else None.

    A finished run, or one made with other settings or data, is not resumed: the
    run starts from scratch and its outputs replace the old ones.
    """
    if not paths.checkpoint.is_file():
        return None
    state = load_checkpoint(paths.checkpoint)
    if state.get("finished", True):
        log.info("starting from scratch: %s is from a finished run, which this run replaces", paths.checkpoint)
        return None
    saved = state.get("fingerprint")
    if saved is None:
        return None
    changed = _differences(saved, expected)
    if changed:
        log.warning(
            "not resuming %s (%d images seen): %s changed since it was written; starting from scratch",
            paths.checkpoint, state["cur_nimg"], ", ".join(changed),
        )
        return None
    return state


def clear_outputs(paths: DatasetPaths) -> None:
    """Remove a previous run's checkpoint, grids, loss logs and MLflow run link before a fresh start."""
    if paths.train.exists():
        shutil.rmtree(paths.train)
    paths.losses.unlink(missing_ok=True)

