"""Prefect flow for the DVC ingest stage: fetch, verify, describe and validate raw data.

Run as ``python flows/ingest.py DATASET``. Without PREFECT_API_URL, Prefect
starts a temporary local API for the run, so no server is needed.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pandas as pd
from prefect import flow, task

from dcgan import config
from dcgan.cli_errors import run_main
from dcgan.data import ingest as steps
from dcgan.data.expectations import validate_manifest
from dcgan.data.ingest_lock import ingest_lock
from dcgan.data.manifest import write_manifest
from dcgan.errors import TransientDownloadError
from dcgan.paths import DatasetPaths


DataConfig = config.MnistData | config.AnimeData


def is_transient(task, task_run, state) -> bool:
    """Retry a download only when it failed in a way that may pass: 5xx, time-out, dropped connection."""
    try:
        state.result()
    except TransientDownloadError:
        return True
    except BaseException:
        return False
    return False


@task(name="download-kaggle", retry_condition_fn=is_transient)
def download_kaggle(cfg: config.AnimeData, settings: config.IngestConfig) -> str:
    return str(steps.download_kaggle(cfg, settings, DatasetPaths("anime")))


@task(name="fetch-raw")
def fetch_raw(dataset: str, cfg: DataConfig, settings: config.IngestConfig) -> str:
    return str(steps.fetch_raw(dataset, cfg, settings, DatasetPaths(dataset)))


@task(name="build-manifest")
def build_manifest(dataset: str, cfg: DataConfig, settings: config.IngestConfig) -> pd.DataFrame:
    paths = DatasetPaths(dataset)
    frame = steps.build_manifest(dataset, cfg, settings, paths)
    write_manifest(frame, paths.manifest)
    return frame


@task(name="validate-manifest")
def validate(dataset: str, cfg: DataConfig, settings: config.IngestConfig, frame: pd.DataFrame) -> dict:
    rules = steps.manifest_rules(dataset, cfg, settings)
    return validate_manifest(frame, rules, DatasetPaths(dataset).validation)


@flow(name="ingest", log_prints=True)
def ingest(dataset: str, params_path: str = "params.yaml") -> dict:
    """Fetch one dataset into data/raw, then describe and validate it."""
    params = config.load(Path(params_path))
    cfg, settings = params.data_for(dataset), params.ingest
    paths = DatasetPaths(dataset)
    with ingest_lock(paths, settings.lock_timeout_s):
        # A report left by an earlier run would describe other data once this run fails.
        shutil.rmtree(paths.validation, ignore_errors=True)
        if isinstance(cfg, config.AnimeData) and cfg.source == "kaggle":
            # Task retries with a condition: 5xx and time-outs retry, 4xx fails at once.
            delays = [settings.retry_delay_s * 2**i for i in range(settings.retries)]
            download_kaggle.with_options(retries=settings.retries, retry_delay_seconds=delays)(cfg, settings)
        else:
            fetch_raw(dataset, cfg, settings)
        frame = build_manifest(dataset, cfg, settings)
        report = validate(dataset, cfg, settings, frame)
    return {key: report[key] for key in ("dataset", "success", "files_seen", "accepted", "skipped", "quarantined")}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python flows/ingest.py DATASET")
    dataset = args[0]
    params = config.load()
    config.require_dataset(params, dataset)
    steps.check_inputs(dataset, params.data_for(dataset))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    ingest(dataset)


if __name__ == "__main__":
    run_main(main)
