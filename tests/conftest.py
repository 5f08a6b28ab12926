"""Shared fixtures: real data from ../shared/data, a scratch project, a loopback file server."""

from __future__ import annotations

import functools
import importlib.util
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

for name, value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ[name] = value

REPO = Path(__file__).resolve().parents[1]
# Real images for the tests: ../shared/data beside the checkout, or $DCGAN_TEST_DATA.
SHARED_DATA = Path(os.environ.get("DCGAN_TEST_DATA") or REPO.parent / "shared" / "data").resolve()
ANIME_ZIP = SHARED_DATA / "animefaces" / "archive.zip"
MNIST_DIR = SHARED_DATA / "mnist"
BIN = Path(sys.executable).parent


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop before any test when the real data is missing, with one message naming where to put it."""
    missing = [p for p in (ANIME_ZIP, MNIST_DIR / "t10k-images-idx3-ubyte.gz", MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
               if not p.is_file()]
    if missing:
        pytest.exit(
            f"real test data not found: {missing[0]}; put the data folder at ../shared/data beside the "
            "checkout or set DCGAN_TEST_DATA to it",
            returncode=4,
        )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


def tiny_params(anime_limit: int = 200, mnist_limit: int = 300) -> dict:
    """The committed params.yaml with a budget that runs in seconds on real data."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["mnist"].update(source="dir", path=str(MNIST_DIR), split="test", limit=mnist_limit)
    params["data"]["anime"].update(source="archive", path=str(ANIME_ZIP), limit=anime_limit, min_images=50)
    for dataset in ("mnist", "anime"):
        params["train"][dataset].update(epochs=2, batch_size=64, ngf=16, ndf=16, log_every_images=128)
        params["evaluate"][dataset].update(real_count=40, generated_count=40)
    # FID is left out below 2,048 images, so the tiny runs rank on KID.
    params["register"]["metric"] = "kid_mean"
    return params


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect API for the in-process flow runs, stopped cleanly at the end."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def ingest_flow(prefect_server):
    """The ingest flow from flows/ingest.py, imported as the DVC stage runs it."""
    spec = importlib.util.spec_from_file_location("ingest_flow", REPO / "flows" / "ingest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ingest


@pytest.fixture
def project(tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project's pipeline files in a fresh folder, as the working directory."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("dvc.yaml", "flows", "src"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, root / name)
    write_params(root, tiny_params())
    monkeypatch.chdir(root)
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return root


def write_params(root: Path, params: dict) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run(args: list[str], cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command as a user would, with the test environment's executables first on PATH.

    A None value in ``env`` removes that variable.
    """
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    full_env = {name: value for name, value in full_env.items() if value is not None}
    result = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\nstdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
        )
    return result


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture
def file_server():
    """Serve a folder over HTTP on 127.0.0.1; yields a function folder -> base URL."""
    servers = []

    def serve(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def register_champion(root: Path, nz: int = 16, image_size: int = 32) -> str:
    """Register an untrained MNIST generator as dcgan-mnist version 1 with alias champion in root/mlruns.

    Returns the store's tracking URI. The working directory is back to what it was afterwards.
    """
    import mlflow

    from dcgan.models import ModelConfig, build_models
    from dcgan.tracking import mlflow_store
    from dcgan.tracking.registry import log_generator

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        uri = mlflow_store.configure()
        generator, _ = build_models(ModelConfig(nz, 8, 8, image_size, 1))
        mlflow.set_experiment("dcgan-mnist")
        with mlflow.start_run():
            name, version = log_generator(generator, "mnist", {"score_metric": "fid", "score": "12.0"})
        mlflow.MlflowClient().set_registered_model_alias(name, "champion", version)
    return uri
