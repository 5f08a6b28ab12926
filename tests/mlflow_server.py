"""A real MLflow tracking server on 127.0.0.1, and one tiny MNIST pipeline that logs to it.

Test modules load this file with ``pytest_plugins = ["mlflow_server"]``. Pytest then registers the
session-scoped fixtures once, so the server tests and the browser tests share one server and one
pipeline run. Every process started here runs in its own process group, and the group is stopped
even when a test fails.

PYTEST_DONT_REWRITE: test modules import this file before pytest registers it as a plugin, and
that marker stops pytest from warning that it cannot rewrite the asserts here (there are none).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import BIN, REPO, tiny_params, write_params

SERVER_START_TIMEOUT_S = 180
# The MNIST chain with FID on 2,048 images a side took 5 minutes on an idle 2-core CPU, and 37 minutes
# when another Inception run shared the CPU (Inception at about 1.6 images/s).
PIPELINE_TIMEOUT_S = 3600


def run_in_group(
    args: list[str], cwd: Path, env: dict[str, str | None] | None = None, timeout: float = 600, clean_env: bool = False
) -> subprocess.CompletedProcess:
    """Run a command in a new process group and raise AssertionError with its output if it fails.

    The whole group is stopped afterwards, so helpers that the command leaves behind (a Prefect
    temporary server, a DVC worker) end with it. ``env`` is added to the test environment, and a
    None value removes that variable. With ``clean_env`` the command gets ``env`` alone.
    """
    base = {} if clean_env else {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    full_env = {name: value for name, value in {**base, **(env or {})}.items() if value is not None}
    process = subprocess.Popen(
        args, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_group(process)
        stdout, stderr = process.communicate()
        raise AssertionError(
            f"{' '.join(args)} timed out after {timeout} s\nstdout:\n{stdout[-4000:]}\nstderr:\n{stderr[-4000:]}"
        ) from None
    finally:
        stop_group(process)
    if process.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {process.returncode}\nstdout:\n{stdout[-4000:]}\nstderr:\n{stderr[-4000:]}"
        )
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


def stop_group(process: subprocess.Popen, grace_s: float = 15) -> None:
    """Send SIGTERM to the process group of ``process``, then SIGKILL to whatever is left after ``grace_s``."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            # Signal 0 only checks that some process of the group still exists.
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        process.poll()
        time.sleep(0.2)
    else:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def copy_project(root: Path) -> Path:
    """Copy the pipeline files (dvc.yaml, flows/, src/) into the new folder ``root`` and return it.

    The session-scoped fixtures need this because conftest's ``project`` fixture is function-scoped.
    """
    root.mkdir(parents=True)
    for name in ("dvc.yaml", "flows", "src"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, root / name)
    return root


@dataclass(frozen=True)
class MlflowServer:
    """A running ``mlflow server`` and the folders it writes to."""

    url: str
    database: Path
    artifacts: Path
    log: Path


@dataclass(frozen=True)
class ServerPipeline:
    """The scratch project whose MNIST chain logged to ``server``."""

    server: MlflowServer
    project: Path


def _wait_for_health(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"mlflow server exited {process.returncode} at start:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    raise AssertionError(
        f"mlflow server at {url} did not answer /health within {SERVER_START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}"
    )


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """Start ``mlflow server`` with a SQLite backend and served artifacts, and stop it at the end of the session."""
    root = tmp_path_factory.mktemp("mlflow-server")
    database = root / "mlflow.db"
    artifacts = root / "artifacts"
    log = root / "server.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [
        str(BIN / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{database}",
        "--artifacts-destination", str(artifacts),
        "--serve-artifacts",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
    ]
    # Unless this is false, MLflow 3.17 also starts 8 job-runner processes (about 250 MB each) for
    # its GenAI features, and the pipeline uses none of them.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("w") as log_file:
        process = subprocess.Popen(
            args, cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_for_health(url, process, log)
        yield MlflowServer(url=url, database=database, artifacts=artifacts, log=log)
    finally:
        stop_group(process)


@pytest.fixture(scope="session")
def server_pipeline(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> ServerPipeline:
    """Run ``dvc repro register@mnist`` in a scratch project with every process logging to ``mlflow_server``.

    2,048 real and 2,048 generated digits are scored, the least FID allows, so a real FID is
    logged and the register stage ranks on it.
    """
    root = copy_project(tmp_path_factory.mktemp("server-project") / "project")
    params = tiny_params(mnist_limit=2048)
    params["datasets"] = ["mnist"]
    params["evaluate"]["mnist"].update(real_count=2048, generated_count=2048)
    params["register"]["metric"] = "fid"
    write_params(root, params)

    env = {"MLFLOW_TRACKING_URI": mlflow_server.url, "MLFLOW_REGISTRY_URI": None}
    run_in_group(["git", "init", "-q"], cwd=root, env=env)
    run_in_group(["dvc", "init", "-q"], cwd=root, env=env)
    run_in_group(["dvc", "repro", "register@mnist"], cwd=root, env=env, timeout=PIPELINE_TIMEOUT_S)
    return ServerPipeline(server=mlflow_server, project=root)
