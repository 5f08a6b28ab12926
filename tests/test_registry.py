"""Registration in a real SQLite MLflow store and the champion alias rule."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from dcgan.models import ModelConfig, build_models
from dcgan.tracking import mlflow_store
from dcgan.tracking.registry import champion_fid, log_generator, promote_if_better


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = mlflow_store.configure()
    yield uri
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def register(fid: float) -> tuple[str, str]:
    generator, _ = build_models(ModelConfig(16, 8, 8, 32, 1))
    mlflow.set_experiment("dcgan-mnist")
    with mlflow.start_run():
        return log_generator(generator, "mnist", fid)


def test_alias_moves_only_on_better_fid(store):
    client = mlflow.MlflowClient()

    name, first = register(50.0)
    first_decision = promote_if_better(client, name, first, 50.0, "champion")
    _, worse = register(60.0)
    worse_decision = promote_if_better(client, name, worse, 60.0, "champion")
    _, tie = register(50.0)
    tie_decision = promote_if_better(client, name, tie, 50.0, "champion")
    _, better = register(40.0)
    better_decision = promote_if_better(client, name, better, 40.0, "champion")

    assert name == "dcgan-mnist"
    assert first_decision.promoted
    assert not worse_decision.promoted
    assert "does not beat" in worse_decision.reason
    assert not tie_decision.promoted
    assert better_decision.promoted
    assert better_decision.previous_version == first
    assert champion_fid(client, name, "champion") == (better, 40.0)


def test_registered_model_samples_through_pyfunc(store):
    name, version = register(10.0)

    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    z = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    images = model.predict(z)

    assert images.shape == (3, 1, 32, 32)
    assert images.min() >= -1.0
    assert images.max() <= 1.0
    signature = model.metadata.signature
    assert list(signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 16]
    assert store.startswith("sqlite:///")
