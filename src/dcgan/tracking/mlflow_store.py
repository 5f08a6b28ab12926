"""MLflow store location: mlruns/ (SQLite database plus artifacts), overridden by MLFLOW_TRACKING_URI."""

from __future__ import annotations

import json
import os
from pathlib import Path

STORE = Path("mlruns")
DATABASE = STORE / "mlflow.db"


def tracking_uri() -> str:
    """Return $MLFLOW_TRACKING_URI, or the project's SQLite store as an absolute URI."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    DATABASE.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{DATABASE.resolve()}"


def configure() -> str:
    """Point MLflow's tracking and registry at the same store; return its URI.

    With the SQLite store MLflow keeps each experiment's artifacts beside the
    database, in mlruns/<experiment id>/.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def experiment_name(dataset: str) -> str:
    return f"dcgan-{dataset}"


def write_run_info(path: Path, run_id: str, uri: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run_id": run_id, "tracking_uri": uri}, indent=2))


def read_run_id(path: Path) -> str:
    return json.loads(path.read_text())["run_id"]
