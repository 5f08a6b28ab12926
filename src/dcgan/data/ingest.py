"""Steps of the ingest flow: fetch raw data, describe it, validate the description."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from dcgan.config import AnimeData, IngestConfig, MnistData
from dcgan.data import image_archive, kaggle_download, mnist_sources
from dcgan.data.expectations import ManifestRules
from dcgan.data.image_decode import MAX_SIDE
from dcgan.data.manifest import archive_manifest, mnist_manifest
from dcgan.data.mnist_idx import MNIST_FILES
from dcgan.errors import UserError
from dcgan.paths import DatasetPaths

log = logging.getLogger(__name__)

ANIME_MODES = ("RGB", "L", "LA", "P", "PA", "RGBA", "CMYK", "YCbCr", "I", "I;16", "I;16B", "I;16L", "F", "1")
BUNDLED_COUNT = 5000


def download_kaggle(cfg: AnimeData, settings: IngestConfig, paths: DatasetPaths) -> Path:
    """Download the Kaggle archive into data/raw/anime; one attempt, the flow retries."""
    archive = paths.raw / image_archive.ARCHIVE_NAME
    kaggle_download.download_archive(cfg.slug, archive, settings)
    log.info("raw anime data is in %s", paths.raw)
    return paths.raw


def fetch_raw(dataset: str, cfg: MnistData | AnimeData, settings: IngestConfig, paths: DatasetPaths) -> Path:
    """Fill data/raw/<dataset> from the configured source; return the folder."""
    check_inputs(dataset, cfg)
    if isinstance(cfg, MnistData):
        if cfg.source == "torchvision":
            mnist_sources.fetch_torchvision(paths.raw, cfg.split, cfg.mirrors, settings)
        elif cfg.source == "dir":
            mnist_sources.copy_dir(Path(cfg.path), paths.raw, cfg.split)
        else:
            mnist_sources.copy_bundled(paths.raw)
    else:
        archive = paths.raw / image_archive.ARCHIVE_NAME
        if cfg.source == "kaggle":
            return download_kaggle(cfg, settings, paths)
        image_archive.store_archive(Path(cfg.path), archive)
    log.info("raw %s data is in %s", dataset, paths.raw)
    return paths.raw


def check_inputs(dataset: str, cfg: MnistData | AnimeData) -> None:
    """Reject a missing input path, or a damaged or unsafe zip, before the flow starts."""
    if cfg.source not in ("dir", "archive"):
        return
    path = Path(cfg.path)
    if cfg.source == "dir" and not path.is_dir():
        raise UserError(
            f"data.{dataset}.path = {cfg.path!r}: folder not found; "
            "point it at a folder holding the official *-ubyte.gz files"
        )
    if cfg.source == "archive" and not path.exists():
        raise UserError(
            f"data.{dataset}.path = {cfg.path!r}: not found; point it at the Kaggle zip or a folder of images"
        )
    if cfg.source == "archive" and path.is_file():
        # Reading the zip's directory takes milliseconds, so a cut or unsafe zip fails before Prefect starts.
        image_archive.check_zip(path, f"data.{dataset}.path = {cfg.path!r}")


def build_manifest(dataset: str, cfg: MnistData | AnimeData, settings: IngestConfig, paths: DatasetPaths) -> pd.DataFrame:
    if isinstance(cfg, MnistData):
        images, labels = mnist_sources.load_raw(paths.raw, cfg.split)
        prefix = "bundled" if cfg.source == "bundled" else cfg.split
        if cfg.limit is not None:
            images, labels = images[: cfg.limit], labels[: cfg.limit]
        return mnist_manifest(images, labels, prefix, cfg.drop_duplicates)
    # With a limit only the first image entries by name are read and decoded.
    return archive_manifest(
        paths.raw / image_archive.ARCHIVE_NAME, cfg.limit, cfg.min_side, cfg.drop_duplicates, settings.workers
    )


def manifest_rules(dataset: str, cfg: MnistData | AnimeData, settings: IngestConfig) -> ManifestRules:
    if isinstance(cfg, MnistData):
        expected = BUNDLED_COUNT if cfg.source == "bundled" else MNIST_FILES[cfg.split]["images"][2]
        if cfg.limit is not None:
            expected = min(expected, cfg.limit)
        # Dropping identical digits may shorten the split, so the count becomes a ceiling.
        low = 1 if cfg.drop_duplicates else expected
        return ManifestRules(dataset, low, expected, ("L",), 28, 28, (0, 9), settings.max_bad_fraction,
                             cfg.drop_duplicates)
    min_rows = cfg.min_images if cfg.limit is None else min(cfg.min_images, cfg.limit)
    return ManifestRules(dataset, min_rows, None, ANIME_MODES, cfg.min_side, MAX_SIDE, None,
                         settings.max_bad_fraction, cfg.drop_duplicates)
