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


@task(name="fetch-raw")
def fetch_raw(dataset: str, params_path: str) -> str:
    cfg = config.load(Path(params_path)).data_for(dataset)
    return str(steps.fetch_raw(dataset, cfg, DatasetPaths(dataset)))


@task(name="build-manifest")
def build_manifest(dataset: str, params_path: str) -> pd.DataFrame:
    cfg = config.load(Path(params_path)).data_for(dataset)
    paths = DatasetPaths(dataset)
    frame = steps.build_manifest(dataset, cfg, paths)
    write_manifest(frame, paths.manifest)
    return frame


@task(name="validate-manifest")
def validate(dataset: str, params_path: str, frame: pd.DataFrame) -> dict:
    cfg = config.load(Path(params_path)).data_for(dataset)
    rules = steps.manifest_rules(dataset, cfg)
    return validate_manifest(frame, rules, DatasetPaths(dataset).validation)


@flow(name="ingest", log_prints=True)
def ingest(dataset: str, params_path: str = "params.yaml") -> dict:
    """Fetch one dataset into data/raw, then describe and validate it."""
    fetch_raw(dataset, params_path)
    frame = build_manifest(dataset, params_path)
    report = validate(dataset, params_path, frame)
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
