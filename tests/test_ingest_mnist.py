"""The ingest flow on real MNIST files: torchvision download, a folder, the bundled digits."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time

import pandas as pd
import pytest
import yaml

from conftest import BIN, MNIST_DIR, run, tiny_params, write_params
from fault_http import FaultServer, pause
from dcgan.errors import DataValidationError, UserError


def set_mnist(project, **values) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["mnist"].update(values)
    write_params(project, params)


def test_dir_source_real_test_split(project, ingest_flow):
    result = ingest_flow("mnist")

    assert result == {
        "dataset": "mnist", "success": True, "files_seen": 300, "accepted": 300, "skipped": {}, "quarantined": {},
    }
    assert sorted(p.name for p in (project / "data/raw/mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    manifest = pd.read_csv(project / "data/validation/mnist/manifest.csv")
    assert list(manifest.columns) == [
        "name", "status", "reason", "detail", "decoded", "width", "height", "mode", "bytes", "sha256", "label",
        "duplicate_of",
    ]
    assert (manifest["status"] == "accepted").all()
    assert (manifest["width"] == 28).all()
    assert (manifest["mode"] == "L").all()
    assert manifest["label"].between(0, 9).all()
    report = json.loads((project / "data/validation/mnist/report.json").read_text())
    assert report["success"] is True
    assert (project / "data/validation/mnist/gx/uncommitted/data_docs/local_site/index.html").is_file()


def test_torchvision_source_from_loopback_mirror(project, ingest_flow, file_server):
    mirror = file_server(MNIST_DIR)
    set_mnist(project, source="torchvision", path=None, mirrors=["http://127.0.0.1:9/", mirror])
    # Port 9 refuses the connection, which is retried: short delays keep the test fast.
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["ingest"].update(timeout_s=5, retries=1, retry_delay_s=0.01)
    write_params(project, params)

    result = ingest_flow("mnist")

    assert result["accepted"] == 300
    raw = project / "data/raw/mnist"
    assert sorted(p.name for p in raw.iterdir()) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert (raw / "t10k-images-idx3-ubyte.gz").read_bytes() == (MNIST_DIR / "t10k-images-idx3-ubyte.gz").read_bytes()


def test_bundled_source_has_5000_digits(project, ingest_flow):
    set_mnist(project, source="bundled", path=None, limit=None)

    result = ingest_flow("mnist")

    assert result["accepted"] == 5000
    manifest = pd.read_csv(project / "data/validation/mnist/manifest.csv")
    assert manifest["label"].nunique() == 10


def test_damaged_file_rejected_by_md5(project, ingest_flow, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(MNIST_DIR, damaged)
    labels = damaged / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-100])
    set_mnist(project, path=str(damaged))

    with pytest.raises(UserError) as info:
        ingest_flow("mnist")

    assert "t10k-labels-idx1-ubyte.gz" in str(info.value)
    assert "md5" in str(info.value)


def test_missing_input_folder_is_named(project, tmp_path):
    missing = tmp_path / "no-such-folder"
    set_mnist(project, path=str(missing))

    result = run(["python", "flows/ingest.py", "mnist"], cwd=project, check=False)

    assert result.returncode == 2
    assert f"data.mnist.path = '{missing}': folder not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_failed_expectation_stops_and_keeps_report(project, ingest_flow):
    # 300 real digits, but the suite expects the whole 10,000-image split when no limit is set.
    params = tiny_params()
    params["data"]["mnist"]["limit"] = None
    write_params(project, params)
    from dcgan.data import ingest as steps

    original = steps.manifest_rules

    def strict_rules(dataset, cfg, settings):
        rules = original(dataset, cfg, settings)
        return type(rules)(**{**rules.__dict__, "labels": (0, 8)})

    steps.manifest_rules = strict_rules
    try:
        with pytest.raises(DataValidationError) as info:
            ingest_flow("mnist")
    finally:
        steps.manifest_rules = original

    message = str(info.value)
    assert "expect_column_values_to_be_between" in message
    assert "label" in message
    report = json.loads((project / "data/validation/mnist/report.json").read_text())
    assert report["success"] is False
    assert any("label" in failure for failure in report["failed_expectations"])
    assert (project / "data/validation/mnist/gx/uncommitted/data_docs/local_site/index.html").is_file()


def test_killed_download_leaves_no_complete_file(project):
    server = FaultServer(MNIST_DIR)
    slow = pause(300_000)
    server.script("t10k-images-idx3-ubyte.gz", slow)
    set_mnist(project, source="torchvision", path=None, mirrors=[server.url])
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    # A session of its own, so the kill reaches the temporary Prefect server the flow starts too.
    ingest = subprocess.Popen(["python", "flows/ingest.py", "mnist"], cwd=project, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    partial = project / "data/raw/mnist/t10k-images-idx3-ubyte.gz.partial"
    try:
        deadline = time.monotonic() + 240
        while not partial.exists() and ingest.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert partial.exists()
        os.killpg(ingest.pid, signal.SIGKILL)
        ingest.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(ingest.pid, signal.SIGKILL)
        slow.release()
        server.close()

    assert ingest.returncode == -signal.SIGKILL
    assert sorted(p.name for p in (project / "data/raw/mnist").iterdir()) == ["t10k-images-idx3-ubyte.gz.partial"]
