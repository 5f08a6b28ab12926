"""Run a function over zip entries in chunks, across processes, each opening the zip once."""

from __future__ import annotations

import multiprocessing
import os
import sys
import zipfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

CHUNK = 256
_archive: zipfile.ZipFile | None = None


def resolve_workers(workers: int) -> int:
    """0 means every core this process may use."""
    return workers or len(os.sched_getaffinity(0))


def start_method() -> str:
    """Pick fork on Linux, because spawn and forkserver re-run the main script in every worker.

    In the ingest flow that script imports Prefect, which costs seconds per worker. Workers only
    read the zip and decode with Pillow, and CPython resets its import and logging locks after
    fork, so the threads Prefect runs in the parent do not block them.
    """
    return "fork" if sys.platform.startswith("linux") else "spawn"


def _open_archive(path: str) -> None:
    global _archive
    _archive = zipfile.ZipFile(path)


def _run_chunk(fn: Callable, start: int, names: list[str]) -> list:
    return fn(start, [(name, _archive.read(name)) for name in names])


def map_chunks(
    archive_path: Path, names: list[str], fn: Callable[[int, list[tuple[str, bytes]]], list], workers: int, desc: str
) -> list[Any]:
    """Call ``fn(start, [(name, bytes), ...])`` on consecutive chunks and join the results in order.

    ``fn`` must be a module-level function (or a partial of one) so worker processes can load it.
    """
    chunks = [(start, names[start : start + CHUNK]) for start in range(0, len(names), CHUNK)]
    results: list[Any] = []
    workers = min(resolve_workers(workers), max(1, len(chunks)))
    with tqdm(total=len(names), desc=desc, unit="img") as progress:
        if workers == 1:
            _open_archive(str(archive_path))
            try:
                for start, part in chunks:
                    results += _run_chunk(fn, start, part)
                    progress.update(len(part))
            finally:
                _archive.close()
            return results
        context = multiprocessing.get_context(start_method())
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_open_archive,
                                 initargs=(str(archive_path),)) as pool:
            futures = [pool.submit(_run_chunk, fn, start, part) for start, part in chunks]
            for future, (_, part) in zip(futures, chunks):
                results += future.result()
                progress.update(len(part))
    return results
