"""`dvc repro` of the whole pipeline, both datasets, on real data with a tiny budget."""

from __future__ import annotations

import json

import mlflow
from PIL import Image

from conftest import run


def test_dvc_repro_whole_pipeline(project):
    run(["git", "init", "-q"], cwd=project)
    run(["dvc", "init", "-q"], cwd=project)

    run(["dvc", "repro"], cwd=project)

    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], cwd=project).stdout)
    values = next(iter(metrics.values()))["data"]
    for dataset in ("mnist", "anime"):
        scores = values[f"data/metrics/{dataset}/metrics.json"]["data"]
        assert scores["kid_mean"] > 0
        assert scores["kid_std"] > 0
        assert scores["generated_count"] == 40
        assert scores["real_count"] == 40
        assert scores["protocol"]["real_stats_cached"] is True
        assert scores["protocol"]["kid_subset_size"] == 20
        assert scores["images_seen"] > 0
        side = 32 if dataset == "mnist" else 64
        grid = Image.open(project / f"data/eval/{dataset}/samples.png")
        assert grid.size == (8 * (side + 2) + 2, 8 * (side + 2) + 2)
        walk = Image.open(project / f"data/eval/{dataset}/interpolation.png")
        assert walk.size == (10 * (side + 2) + 2, 8 * (side + 2) + 2)
        gif = Image.open(project / f"data/eval/{dataset}/training.gif")
        assert gif.n_frames == 2
        registration = json.loads((project / f"data/registry/{dataset}/registration.json").read_text())
        assert registration["promoted"] is True

    plots = run(["dvc", "plots", "show", "--json"], cwd=project).stdout
    assert "loss_d" in plots
    assert "anime/losses.csv" in plots

    # Name both URIs: earlier tests in this process may have pointed MLflow's registry at their own store.
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    for dataset in ("mnist", "anime"):
        champion = client.get_model_version_by_alias(f"dcgan-{dataset}", "champion")
        run_data = client.get_run(champion.run_id).data
        assert run_data.params["train.epochs"] == "2"
        assert run_data.params["device"] == "cpu"
        assert "kid_mean" in run_data.metrics
        assert "fid" not in run_data.metrics
        assert run_data.tags["score_protocol.generated_count"] == "40"
        assert "2,048" in run_data.tags["fid_not_computed"]
        assert run_data.metrics["data_accepted"] > 0
        history = client.get_metric_history(champion.run_id, "loss_d")
        assert len(history) >= 2
        artifacts = {a.path for a in client.list_artifacts(champion.run_id)}
        assert {"grids", "samples", "losses", "config", "data_validation"} <= artifacts
        reports = {a.path for a in client.list_artifacts(champion.run_id, "data_validation")}
        assert "data_validation/report.json" in reports
        samples = {a.path for a in client.list_artifacts(champion.run_id, "samples")}
        assert samples == {"samples/samples.png", "samples/interpolation.png", "samples/training.gif"}

    status = run(["dvc", "status"], cwd=project)
    assert "Data and pipelines are up to date" in status.stdout
