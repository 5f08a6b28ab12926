"""Two gloo processes on this CPU: identical weights after every step, and a resumable rank 0 checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import torch
import yaml

from conftest import BIN, REPO, write_params
from dcgan.training.checkpoint import load_checkpoint
from test_resume import prepare_digits, small_config

DIGITS = 512


def torchrun(root: Path, stop_at: int, cfg) -> list[dict]:
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(REPO / "tests" / "ddp_worker.py"), str(root), str(stop_at), json.dumps(asdict(cfg)),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return [json.loads((root / f"rank{rank}.json").read_text()) for rank in (0, 1)]


def test_two_processes_identical_and_resumable(tmp_path):
    cfg = small_config(epochs=2, batch_size=32, ngf=16, ndf=16, checkpoint_every_images=64)
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    for root in (straight, interrupted):
        prepare_digits(root, DIGITS)
    steps = 2 * DIGITS // 32

    full = torchrun(straight, 0, cfg)
    stopped = torchrun(interrupted, 3, cfg)
    saved = load_checkpoint(interrupted / "data/train/mnist/checkpoint.pt")
    resumed = torchrun(interrupted, 0, cfg)

    for record in full:
        assert record["outcome"] == "finished"
        assert record["steps"] == list(range(1, steps + 1))
        assert record["differing"] == []
        assert record["world_size"] == 2
    for record in stopped:
        assert record["outcome"] == "stopped"
        assert record["differing"] == []
    assert saved["world_size"] == 2
    assert saved["cur_nimg"] == 3 * 32
    assert len(saved["rng"]) == 2
    for record in resumed:
        assert record["resumed"] is True
        assert record["steps"] == list(range(4, steps + 1))
        assert record["differing"] == []
    expected = load_checkpoint(straight / "data/train/mnist/checkpoint.pt")["generator"]
    actual = load_checkpoint(interrupted / "data/train/mnist/checkpoint.pt")["generator"]
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


def test_train_stage_launches_torchrun(project):
    import mlflow

    prepare_digits(project, DIGITS)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["mnist"].update(
        {**asdict(small_config(epochs=1, ngf=16, ndf=16)), "launcher": "torchrun", "nproc_per_node": 2}
    )
    write_params(project, params)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "GLOO_SOCKET_IFNAME": "lo"}

    result = subprocess.run(["dcgan", "train", "mnist"], cwd=project, env=env, capture_output=True, text=True,
                            timeout=600)

    assert result.returncode == 0, result.stderr[-4000:]
    assert "torch.distributed.run --standalone --nproc_per_node=2" in result.stderr
    state = load_checkpoint(project / "data/train/mnist/checkpoint.pt")
    assert state["world_size"] == 2
    assert state["finished"] is True
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["dcgan-mnist"])
    assert len(runs) == 1
    assert runs.iloc[0]["params.world_size"] == "2"
