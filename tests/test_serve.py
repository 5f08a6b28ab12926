"""The registered generator serves predictions over HTTP through a real `mlflow models serve` process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from conftest import BIN, register_champion

NZ = 16
STARTUP_TIMEOUT_S = 180
STOP_TIMEOUT_S = 15


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, chars: int = 6000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.is_file() else "(no output)"


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it outlives STOP_TIMEOUT_S."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(STOP_TIMEOUT_S)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(STOP_TIMEOUT_S)


def wait_until_ready(base_url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow models serve exited with {process.returncode} before /ping answered:\n"
                        f"{log_tail(log_path)}")
        try:
            if requests.get(f"{base_url}/ping", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    pytest.fail(f"/ping did not return 200 within {STARTUP_TIMEOUT_S} s. Server output:\n{log_tail(log_path)}")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> str:
    """Register dcgan-mnist as champion in a SQLite store, serve it on 127.0.0.1, yield its base URL."""
    root = tmp_path_factory.mktemp("serve_project")
    uri = register_champion(root, nz=NZ)

    port = free_port()
    log_path = root / "serve.log"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MLFLOW_TRACKING_URI": uri}
    command = [str(BIN / "mlflow"), "models", "serve", "-m", "models:/dcgan-mnist@champion", "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(port)]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_ready(base_url, process, log_path)
        yield base_url
    finally:
        stop_group(process)


def test_invocations_return_images(server):
    z = np.random.default_rng(0).standard_normal((3, NZ)).astype(np.float32)

    response = requests.post(f"{server}/invocations", json={"inputs": z.tolist()}, timeout=60)

    assert response.status_code == 200, response.text
    images = np.asarray(response.json()["predictions"], dtype=np.float64)
    assert images.shape == (3, 1, 32, 32)
    assert np.isfinite(images).all()
    assert images.min() >= -1.0
    assert images.max() <= 1.0


def test_wrong_latent_width_is_4xx(server):
    z = np.zeros((3, NZ // 2), dtype=np.float32)

    response = requests.post(f"{server}/invocations", json={"inputs": z.tolist()}, timeout=60)

    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "expected shape (-1, 16)" in response.json()["message"]
