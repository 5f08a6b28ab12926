"""One ingest per dataset at a time: a file lock that a second ingest waits on."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from dcgan.errors import UserError
from dcgan.paths import DatasetPaths

log = logging.getLogger(__name__)


def lock_path(paths: DatasetPaths) -> Path:
    # Beside the DVC outputs, not inside them: DVC removes outputs before a stage runs.
    return paths.root / ".locks" / f"ingest-{paths.dataset}.lock"


@contextlib.contextmanager
def ingest_lock(paths: DatasetPaths, timeout_s: float) -> Iterator[Path]:
    """Hold the dataset's ingest lock; wait up to ``timeout_s`` for another ingest to finish."""
    path = lock_path(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("lock %s is held by another ingest of %s; waiting up to %g s", path, paths.dataset, timeout_s)
        try:
            lock.acquire(timeout=timeout_s)
        except Timeout:
            raise UserError(
                f"timed out after {timeout_s:g} s waiting for lock {path}, held by another ingest of {paths.dataset}; "
                "wait for it to finish, or raise ingest.lock_timeout_s"
            ) from None
    try:
        yield path
    finally:
        lock.release()
