"""The MNIST chain logging to a real `mlflow server` (SQLite backend, served artifacts), read back over HTTP.

The pipeline scores FID on 2,048 real and 2,048 generated digits, so the first test here waits
for `dvc repro register@mnist` (the fixture in mlflow_server.py): 5 minutes on an idle 2-core CPU,
37 minutes when another Inception run shared it.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request

import mlflow
import pytest
from PIL import Image

from conftest import BIN
from mlflow_server import run_in_group

pytest_plugins = ["mlflow_server"]

pytestmark = pytest.mark.slow

MODEL = "dcgan-mnist"
CHAMPION_URI = f"models:/{MODEL}@champion"


@pytest.fixture(scope="module")
def client(server_pipeline) -> mlflow.MlflowClient:
    # Both URIs are named, because other tests in this process may point MLflow's globals at their own stores.
    url = server_pipeline.server.url
    return mlflow.MlflowClient(tracking_uri=url, registry_uri=url)


@pytest.fixture(scope="module")
def champion(client):
    return client.get_model_version_by_alias(MODEL, "champion")


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def test_server_run_has_scores(server_pipeline, client, champion):
    scores = json.loads((server_pipeline.project / "data/metrics/mnist/metrics.json").read_text())
    assert scores["fid"] is not None, scores.get("fid_not_computed")
    assert scores["protocol"]["real_count"] == 2048
    assert scores["protocol"]["generated_count"] == 2048

    run = client.get_run(champion.run_id)
    assert client.get_experiment(run.info.experiment_id).name == MODEL
    assert run.data.tags["stage"] == "train"
    assert run.data.metrics["fid"] == pytest.approx(scores["fid"])
    assert run.data.metrics["kid_mean"] == pytest.approx(scores["kid_mean"])
    assert run.data.metrics["kid_std"] == pytest.approx(scores["kid_std"])
    assert run.data.tags["score_protocol.generated_count"] == "2048"
    assert "fid_not_computed" not in run.data.tags
    samples = {a.path for a in client.list_artifacts(champion.run_id, "samples")}
    assert samples == {"samples/samples.png", "samples/interpolation.png", "samples/training.gif"}


def test_server_registry_has_champion(server_pipeline, champion):
    query = urllib.parse.urlencode({"name": MODEL, "alias": "champion"})
    answer = _get_json(f"{server_pipeline.server.url}/api/2.0/mlflow/registered-models/alias?{query}")
    version = answer["model_version"]
    assert version["version"] == champion.version == "1"
    assert version["aliases"] == ["champion"]
    tags = {tag["key"]: tag["value"] for tag in version["tags"]}
    assert tags["score_metric"] == "fid"
    assert float(tags["score"]) == pytest.approx(float(tags["fid"]))

    registration = json.loads((server_pipeline.project / "data/registry/mnist/registration.json").read_text())
    assert registration["promoted"] is True
    assert registration["metric"] == "fid"
    assert registration["version"] == "1"


def test_project_has_no_local_store(server_pipeline):
    project = server_pipeline.project
    assert not (project / "mlruns").exists()
    assert not (project / "mlartifacts").exists()
    assert not (project / "mlflow.db").exists()
    run_info = json.loads((project / "data/train/mnist/mlflow_run.json").read_text())
    assert run_info["tracking_uri"] == server_pipeline.server.url


def test_artifacts_under_destination(server_pipeline, client, champion):
    run = client.get_run(champion.run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    # With served artifacts the stores record proxy URIs, and the server maps them onto --artifacts-destination.
    assert experiment.artifact_location == f"mlflow-artifacts:/{experiment.experiment_id}"
    assert run.info.artifact_uri == f"mlflow-artifacts:/{experiment.experiment_id}/{run.info.run_id}/artifacts"

    stored = server_pipeline.server.artifacts / experiment.experiment_id / run.info.run_id / "artifacts"
    local_grid = server_pipeline.project / "data/eval/mnist/samples.png"
    assert (stored / "samples/samples.png").read_bytes() == local_grid.read_bytes()
    assert (stored / "samples/interpolation.png").is_file()
    assert (stored / "samples/training.gif").is_file()
    assert (stored / "config/params.yaml").is_file()

    # MLflow 3 keeps a logged model under the experiment's models/ folder, not under the run.
    model_files = list((server_pipeline.server.artifacts / experiment.experiment_id / "models").glob("*/artifacts/MLmodel"))
    assert len(model_files) == 1
    assert champion.source.startswith("models:/")


def test_champion_loads_in_new_process(server_pipeline, tmp_path):
    script = (
        "import json, mlflow, torch\n"
        f"model = mlflow.pytorch.load_model({CHAMPION_URI!r}, map_location='cpu')\n"
        "z = torch.randn(16, 100, generator=torch.Generator().manual_seed(0))\n"
        "with torch.no_grad():\n"
        "    images = model(z)\n"
        "print(json.dumps({'shape': list(images.shape), 'min': images.min().item(), 'max': images.max().item(),\n"
        "                  'std': images.std().item(), 'registry_uri': mlflow.get_registry_uri()}))\n"
    )
    # Only the server's URI, as on a teammate's machine: no project folder, no other MLflow setting.
    env = {"MLFLOW_TRACKING_URI": server_pipeline.server.url, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    result = run_in_group([str(BIN / "python"), "-c", script], cwd=tmp_path, env=env, clean_env=True)
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert output["shape"] == [16, 1, 32, 32]
    assert -1.0 <= output["min"] < output["max"] <= 1.0
    assert output["std"] > 0
    assert output["registry_uri"] == server_pipeline.server.url
    assert list(tmp_path.iterdir()) == []


def test_dcgan_generate_through_server(server_pipeline, tmp_path):
    env = {"MLFLOW_TRACKING_URI": server_pipeline.server.url}
    result = run_in_group(
        ["dcgan", "generate", "--model", CHAMPION_URI, "-n", "16", "--out", "grid.png", "--seed", "0"],
        cwd=tmp_path, env=env,
    )
    assert "dcgan-mnist version 1 (alias champion)" in result.stdout
    grid = Image.open(tmp_path / "grid.png")
    side = 4 * (32 + 2) + 2
    assert grid.size == (side, side)
    assert not (tmp_path / "mlruns").exists()
    # A 4x4 grid of generated digits is not one flat colour.
    darkest, brightest = grid.convert("L").getextrema()
    assert brightest > darkest
