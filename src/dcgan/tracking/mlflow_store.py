"""Where MLflow keeps runs and models: mlruns/ (SQLite plus artifacts) unless MLFLOW_TRACKING_URI says otherwise."""

from __future__ import annotations

import json
import os
from pathlib import Path

STORE = Path("mlruns")
DATABASE = STORE / "mlflow.db"
ARTIFACTS = STORE / "artifacts"


def tracking_uri() -> str:
    """Return $MLFLOW_TRACKING_URI, or the project's SQLite store as an absolute URI."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{DATABASE.resolve()}"


def configure() -> str:
    """Point MLflow's tracking and registry at the project store; return the URI."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    uri = tracking_uri()
    if uri.startswith("sqlite:///") and "MLFLOW_TRACKING_URI" not in os.environ:
        DATABASE.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def experiment_id(name: str) -> str:
    """Get or create the experiment, storing its artifacts under mlruns/artifacts for the local store."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if "MLFLOW_TRACKING_URI" not in os.environ:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        location = ARTIFACTS.resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def write_run_info(path: Path, run_id: str, uri: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run_id": run_id, "tracking_uri": uri}, indent=2))


def read_run_id(path: Path) -> str:
    return json.loads(path.read_text())["run_id"]


def experiment_name(dataset: str) -> str:
    return f"dcgan-{dataset}"
