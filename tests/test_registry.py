"""Registration in a real SQLite MLflow store: the version's tags, its first promotion and sampling through pyfunc."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from dcgan.evaluation import protocol
from dcgan.models import ModelConfig, build_models
from dcgan.tracking import mlflow_store
from dcgan.tracking.promotion import auto_promote
from dcgan.tracking.registry import log_generator

PROTOCOL = {"generated_count": 40, "real_count": 40, "resize": "bilinear-299", "weights_sha256": "ab12"}


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = mlflow_store.configure()
    yield uri
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def register(fid: float) -> tuple[str, str]:
    generator, _ = build_models(ModelConfig(16, 8, 8, 32, 1))
    scores = {
        "fid": fid,
        "kid_mean": 0.01,
        "kid_std": 0.001,
        "protocol": PROTOCOL,
        "protocol_key": protocol.protocol_key(PROTOCOL),
    }
    mlflow.set_experiment("dcgan-mnist")
    with mlflow.start_run():
        return log_generator(generator, "mnist", protocol.version_tags(scores, "fid"))


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


def test_logged_version_tagged_and_promoted(store):
    name, version = register(12.5)
    client = mlflow.MlflowClient()

    tags = client.get_model_version(name, version).tags
    decision = auto_promote(client, name, version, actor="pipeline")

    assert name == "dcgan-mnist"
    assert tags["score_metric"] == "fid"
    assert float(tags["score"]) == 12.5
    assert float(tags["fid"]) == 12.5
    assert tags["protocol_key"] == protocol.protocol_key(PROTOCOL)
    assert "promoted_by" not in tags
    assert decision.promoted
    assert str(client.get_model_version_by_alias(name, "champion").version) == version
