"""Time ingest plus preprocess of the shared anime sample, serial against parallel decoding.

Each round runs, in a fresh scratch project and alternating between the two
settings, the commands the DVC stages run:

    python flows/ingest.py anime      (fetch, full decode, manifest, GX suites)
    dcgan preprocess anime            (crop, resize, pack into images.npy)

The reference is the same code with ``ingest.workers: 1`` (one process);
the candidate uses every core (``ingest.workers: 0``).

Usage: python benchmarks/ingest_speed.py [--rounds 3] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from machine import cpu_name

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def scratch_project(root: Path, archive: Path, workers: int) -> Path:
    project = root / f"workers-{workers}"
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    shutil.copytree(REPO / "flows", project / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["datasets"] = ["anime"]
    params["data"]["anime"].update(source="archive", path=str(archive), limit=None)
    params["ingest"]["workers"] = workers
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


def timed(command: list[str], cwd: Path) -> float:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "GX_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed in {cwd}:\n{result.stderr[-3000:]}")
    return elapsed


def one_run(root: Path, archive: Path, workers: int) -> tuple[float, float, dict]:
    project = scratch_project(root, archive, workers)
    ingest = timed([str(BIN / "python"), "flows/ingest.py", "anime"], project)
    preprocess = timed([str(BIN / "dcgan"), "preprocess", "anime"], project)
    report = json.loads((project / "data/validation/anime/report.json").read_text())
    return ingest, preprocess, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    archive = (args.data / "animefaces" / "archive.zip").resolve()
    if not archive.is_file():
        sys.exit(f"anime sample not found: {archive}; pass --data with the folder holding animefaces/archive.zip")

    times: dict[int, list[tuple[float, float]]] = {1: [], 0: []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for workers in (1, 0):
                ingest, preprocess, report = one_run(Path(tmp), archive, workers)
                times[workers].append((ingest, preprocess))
                print(f"round {round_ + 1} workers={workers}: ingest {ingest:.1f} s, preprocess {preprocess:.1f} s, "
                      f"total {ingest + preprocess:.1f} s", flush=True)

    counts = {key: report[key] for key in ("files_seen", "accepted", "skipped", "quarantined", "duplicates")}
    print(f"\nreport of the last run: {json.dumps(counts)}")
    print(f"machine: {cpu_name()}, {len(os.sched_getaffinity(0))} cores, "
          f"Python {platform.python_version()}")
    print(f"{'setting':<24}{'ingest s':>10}{'preprocess s':>14}{'total s':>10}")
    medians = {}
    for workers, label in ((1, "reference: 1 process"), (0, "every core")):
        ingest = statistics.median(t[0] for t in times[workers])
        preprocess = statistics.median(t[1] for t in times[workers])
        medians[workers] = ingest + preprocess
        print(f"{label:<24}{ingest:>10.1f}{preprocess:>14.1f}{ingest + preprocess:>10.1f}")
    print(f"speed-up of every core over one process: {medians[1] / medians[0]:.2f}x (medians of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
