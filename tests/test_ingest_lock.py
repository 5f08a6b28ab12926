"""Two ingests of one dataset at once: the second waits for the lock, or fails naming it."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import yaml
from filelock import FileLock

from conftest import BIN, write_params


def set_lock_timeout(project, seconds: float) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["ingest"]["lock_timeout_s"] = seconds
    write_params(project, params)


def start_ingest(project) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen(
        ["python", "flows/ingest.py", "mnist"], cwd=project, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_second_ingest_times_out_naming_lock(project):
    set_lock_timeout(project, 1)
    lock_file = project / "data/.locks/ingest-mnist.lock"
    lock_file.parent.mkdir(parents=True)

    with FileLock(lock_file):
        ingest = start_ingest(project)
        _, stderr = ingest.communicate(timeout=300)

    assert ingest.returncode == 2
    assert f"timed out after 1 s waiting for lock {lock_file.relative_to(project)}" in stderr
    assert "Traceback" not in stderr
    assert not (project / "data/validation/mnist/manifest.csv").exists()


def test_second_ingest_waits_then_runs(project):
    set_lock_timeout(project, 300)
    lock_file = project / "data/.locks/ingest-mnist.lock"
    lock_file.parent.mkdir(parents=True)
    lines: list[str] = []
    waiting = threading.Event()

    def read_stderr(stream) -> None:
        for line in stream:
            lines.append(line)
            if "waiting up to" in line:
                waiting.set()

    with FileLock(lock_file):
        ingest = start_ingest(project)
        reader = threading.Thread(target=read_stderr, args=(ingest.stderr,), daemon=True)
        reader.start()
        assert waiting.wait(timeout=240), "".join(lines)
        time.sleep(1)
        assert ingest.poll() is None
        assert not (project / "data/raw/mnist").exists()
    ingest.wait(timeout=300)
    reader.join(timeout=10)
    stderr = "".join(lines)

    assert ingest.returncode == 0, stderr
    assert "is held by another ingest of mnist; waiting up to 300 s" in stderr
    assert (project / "data/validation/mnist/report.json").is_file()
