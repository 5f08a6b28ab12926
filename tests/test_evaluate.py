"""The evaluate stage on real digits: scores with their protocol, cached real features, pictures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import MNIST_DIR
from dcgan.config import EvaluateConfig
from dcgan.data.mnist_idx import verify_split
from dcgan.evaluation.evaluate import compute_real_stats, evaluate
from dcgan.models import ModelConfig, build_models
from dcgan.paths import DatasetPaths

CFG = EvaluateConfig(real_count=60, generated_count=50, seed=4, kid_subsets=10, kid_subset_size=1000)


@pytest.fixture
def paths(tmp_path, monkeypatch) -> DatasetPaths:
    """A project folder with 300 real test digits resized to 32×32, one generator checkpoint and one epoch grid."""
    monkeypatch.chdir(tmp_path)
    paths = DatasetPaths("mnist")
    images, _ = verify_split(MNIST_DIR, "test")
    resized = np.stack([np.asarray(Image.fromarray(a).resize((32, 32), Image.LANCZOS)) for a in images[:300]])
    paths.prepared.mkdir(parents=True)
    np.save(paths.images, resized[:, None])

    generator, _ = build_models(ModelConfig(16, 8, 8, 32, 1))
    paths.grids.mkdir(parents=True)
    torch.save({"model_config": generator.cfg.to_dict(), "generator": generator.state_dict(), "cur_nimg": 640,
                "epoch": 1}, paths.checkpoint)
    Image.new("RGB", (34, 34)).save(paths.grids / "epoch_001.png")
    return paths


def test_scores_stored_with_protocol(paths):
    compute_real_stats("mnist", CFG, paths)

    scores = evaluate("mnist", CFG, paths)
    written = json.loads(paths.metrics.read_text())

    assert written == scores
    assert scores["fid"] is None
    assert "60 real and 50 generated" in scores["fid_not_computed"]
    assert scores["kid_mean"] != 0
    assert scores["kid_std"] > 0
    protocol = scores["protocol"]
    assert protocol["generated_count"] == 50
    assert protocol["real_count"] == 60
    assert protocol["kid_subset_size"] == 25
    assert protocol["real_stats_cached"] is True
    assert protocol["resize"].startswith("bilinear to 299x299")
    assert len(protocol["weights_sha256"]) == 64
    assert len(protocol["real_set_sha256"]) == 64
    assert len(scores["protocol_key"]) == 16


def test_cached_real_features_score_like_fresh(paths):
    fresh = evaluate("mnist", CFG, paths)
    compute_real_stats("mnist", CFG, paths)
    cached = evaluate("mnist", CFG, paths)

    assert fresh["protocol"]["real_stats_cached"] is False
    assert cached["protocol"]["real_stats_cached"] is True
    assert cached["kid_mean"] == fresh["kid_mean"]
    assert cached["protocol"]["real_set_sha256"] == fresh["protocol"]["real_set_sha256"]
    assert cached["protocol_key"] != fresh["protocol_key"]


def test_other_counts_change_protocol_key(paths):
    compute_real_stats("mnist", CFG, paths)
    first = evaluate("mnist", CFG, paths)
    more = evaluate("mnist", EvaluateConfig(60, 55, 4, 10, 1000), paths)

    assert first["protocol_key"] != more["protocol_key"]


def test_pictures_written(paths):
    compute_real_stats("mnist", CFG, paths)
    evaluate("mnist", CFG, paths)

    assert Image.open(paths.sample_grid).size == (8 * 34 + 2, 8 * 34 + 2)
    assert Image.open(paths.interpolation_grid).size == (10 * 34 + 2, 8 * 34 + 2)
    assert paths.progress_gif.is_file()


def test_same_seed_same_scores(paths):
    compute_real_stats("mnist", CFG, paths)

    first = evaluate("mnist", CFG, paths)
    second = evaluate("mnist", CFG, paths)

    assert first == second
