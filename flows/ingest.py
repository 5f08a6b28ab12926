"""Prefect flow for the DVC ingest stage: fetch, verify, describe and validate raw data.

Run as ``python flows/ingest.py DATASET``. Without PREFECT_API_URL, Prefect
starts a temporary local API for the run, so no server is needed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
from prefect import flow, task

from dcgan import config
from dcgan.cli_errors import run_main
from dcgan.data import ingest as steps
from dcgan.data.expectations import validate_manifest
from dcgan.data.manifest import write_manifest
from dcgan.paths import DatasetPaths


DataConfig = config.MnistData | config.AnimeData


@task(name="fetch-raw")
def fetch_raw(dataset: str, cfg: DataConfig) -> str:
    return str(steps.fetch_raw(dataset, cfg, DatasetPaths(dataset)))


@task(name="build-manifest")
def build_manifest(dataset: str, cfg: DataConfig) -> pd.DataFrame:
    paths = DatasetPaths(dataset)
    frame = steps.build_manifest(dataset, cfg, paths)
    write_manifest(frame, paths.manifest)
    return frame


@task(name="validate-manifest")
def validate(dataset: str, cfg: DataConfig, frame: pd.DataFrame) -> dict:
    rules = steps.manifest_rules(dataset, cfg)
    return validate_manifest(frame, rules, DatasetPaths(dataset).validation)


@flow(name="ingest", log_prints=True)
def ingest(dataset: str, params_path: str = "params.yaml") -> dict:
    """Fetch one dataset into data/raw, then describe and validate it."""
    cfg = config.load(Path(params_path)).data_for(dataset)
    fetch_raw(dataset, cfg)
    frame = build_manifest(dataset, cfg)
    report = validate(dataset, cfg, frame)
    return {"dataset": dataset, "rows": report["rows"], "success": report["success"]}


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
