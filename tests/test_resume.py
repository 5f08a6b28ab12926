"""Training that survives: SIGKILL and resume, SIGTERM, NaN losses, mismatched checkpoints, a winning D."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import BIN, MNIST_DIR, write_params
from dcgan.config import TrainConfig
from dcgan.data.image_decode import prepare
from dcgan.data.mnist_idx import verify_split
from dcgan.errors import UserError
from dcgan.models import ModelConfig
from dcgan.paths import DatasetPaths
from dcgan.training.checkpoint import generator_from_state, load_checkpoint, load_generator, save_checkpoint
from dcgan.training.loop import TrainingDiverged, train

DIGITS = 1024


def prepare_digits(root: Path, count: int = DIGITS) -> DatasetPaths:
    """Pack the first ``count`` real test digits as the preprocess stage would, at 32x32."""
    digits, _ = verify_split(MNIST_DIR, "test")
    paths = DatasetPaths("mnist", root=root / "data")
    paths.prepared.mkdir(parents=True, exist_ok=True)
    packed = np.stack([prepare(Image.fromarray(d, mode="L"), 32, 1) for d in digits[:count]])
    np.save(paths.images, packed)
    paths.stats.write_text(json.dumps({"count": count, "shape": [1, 32, 32]}))
    return paths


def small_config(**overrides) -> TrainConfig:
    values = dict(
        epochs=3, batch_size=32, max_images=None, nz=32, ngf=32, ndf=32, lr=2e-4, beta1=0.5, seed=0,
        log_every_images=64, device="cpu", precision="fp32", channels_last="off", compile=False,
        checkpoint_every_images=64, d_wins_steps=500, launcher="single", nproc_per_node=1,
    )
    values.update(overrides)
    return TrainConfig(**values)


def write_train_params(project: Path, **overrides) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["mnist"].update({k: v for k, v in vars(small_config(**overrides)).items()})
    write_params(project, params)


def start_train(project: Path) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen(
        ["dcgan", "train", "mnist"], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )


def wait_for_checkpoint(project: Path, process: subprocess.Popen) -> None:
    checkpoint = project / "data/train/mnist/checkpoint.pt"
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert checkpoint.exists(), process.communicate()[1][-3000:]


def final_weights(project: Path) -> dict:
    return load_checkpoint(project / "data/train/mnist/checkpoint.pt")["generator"]


@pytest.fixture
def two_projects(project, tmp_path):
    """The scratch project plus a second copy, both with the same real digits and settings."""
    other = tmp_path / "other"
    subprocess.run(["cp", "-r", str(project), str(other)], check=True)
    for root in (project, other):
        prepare_digits(root)
        write_train_params(root, ngf=16, ndf=16)
    return project, other


def test_sigkill_then_rerun_matches_uninterrupted(two_projects):
    interrupted, reference = two_projects

    run = start_train(interrupted)
    wait_for_checkpoint(interrupted, run)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    killed_at = load_checkpoint(interrupted / "data/train/mnist/checkpoint.pt")
    resumed = start_train(interrupted)
    _, resumed_log = resumed.communicate(timeout=600)
    uninterrupted = start_train(reference)
    uninterrupted.communicate(timeout=600)

    assert run.returncode == -signal.SIGKILL
    assert killed_at["finished"] is False
    assert 0 < killed_at["cur_nimg"] < 3 * DIGITS
    assert killed_at["step_in_epoch"] > 0
    assert resumed.returncode == 0, resumed_log[-3000:]
    assert f"resuming mnist from data/train/mnist/checkpoint.pt at {killed_at['cur_nimg']} images seen" in resumed_log
    expected, actual = final_weights(reference), final_weights(interrupted)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


def test_sigterm_saves_then_resumes(project):
    prepare_digits(project)
    write_train_params(project, epochs=20, ngf=8, ndf=8)

    run = start_train(project)
    wait_for_checkpoint(project, run)
    os.killpg(run.pid, signal.SIGTERM)
    _, stderr = run.communicate(timeout=120)
    saved = load_checkpoint(project / "data/train/mnist/checkpoint.pt")
    write_train_params(project, epochs=20, ngf=8, ndf=8, log_every_images=1024)
    finished = subprocess.run(["dcgan", "train", "mnist"], cwd=project, capture_output=True, text=True,
                              env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})

    assert run.returncode == 143, stderr[-3000:]
    assert f"stopped: training mnist stopped by SIGTERM after {saved['cur_nimg']} images" in stderr
    assert "run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    assert saved["finished"] is False
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert f"at {saved['cur_nimg']} images seen" in finished.stderr
    assert load_checkpoint(project / "data/train/mnist/checkpoint.pt")["cur_nimg"] == 20 * DIGITS


def test_nan_loss_stops_and_keeps_checkpoint(tmp_path):
    paths = prepare_digits(tmp_path, 256)
    cfg = small_config(epochs=2, checkpoint_every_images=64, log_every_images=32)

    def poison(step, generator, discriminator):
        if step == 5:
            with torch.no_grad():
                next(discriminator.parameters()).fill_(float("nan"))

    with pytest.raises(TrainingDiverged) as info:
        train("mnist", cfg, 32, paths, on_step=poison)

    message = str(info.value)
    assert "a loss became NaN or infinite at step 6 (192 images seen)" in message
    assert "the last good checkpoint (128 images seen) is kept" in message
    saved = load_checkpoint(paths.checkpoint)
    assert saved["cur_nimg"] == 128
    assert all(torch.isfinite(t).all() for t in saved["discriminator"].values() if t.is_floating_point())


def test_mismatched_checkpoint_names_parameter(tmp_path):
    paths = prepare_digits(tmp_path, 128)
    train("mnist", small_config(epochs=1, ngf=8, ndf=8), 32, paths)

    with pytest.raises(UserError) as info:
        load_generator(paths.checkpoint, expected=ModelConfig(nz=32, ngf=16, ndf=8, image_size=32, channels=1))
    state = load_checkpoint(paths.checkpoint)
    with pytest.raises(UserError) as resumed:
        train("mnist", small_config(epochs=1, ngf=8, ndf=8, nz=64), 32, paths, resume_state=state)

    assert "was made with ngf = 8, but the current settings give ngf = 16" in str(info.value)
    assert "was made with nz = 32, but the current settings give nz = 64" in str(resumed.value)


@pytest.mark.parametrize("wrapper", ["DataParallel", "DistributedDataParallel"])
def test_module_prefixed_state_loads(tmp_path, wrapper):
    paths = prepare_digits(tmp_path, 128)
    train("mnist", small_config(epochs=1, ngf=8, ndf=8), 32, paths)
    state = load_checkpoint(paths.checkpoint)
    # Both wrappers keep the model as .module, so their state dicts carry a "module." prefix.
    prefixed = {f"module.{key}": value for key, value in state["generator"].items()}
    save_checkpoint(paths.checkpoint, {**state, "generator": prefixed})

    generator = generator_from_state(load_checkpoint(paths.checkpoint))

    for key, value in state["generator"].items():
        assert torch.equal(generator.state_dict()[key], value), key


def test_winning_discriminator_is_reported(tmp_path, caplog):
    import mlflow

    paths = prepare_digits(tmp_path, 256)
    cfg = small_config(epochs=6, lr=2e-3, d_wins_steps=5, log_every_images=64)

    def cripple(step, generator, discriminator):
        # A generator whose last layer is zero draws flat grey, which D separates from digits at once.
        with torch.no_grad():
            generator.main[-2].weight.zero_()

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    # Set the experiment here: MLflow remembers the one an earlier test used in another store.
    mlflow.set_experiment("d-wins")
    with caplog.at_level(logging.WARNING, logger="dcgan.training.loop"), mlflow.start_run() as run:
        train("mnist", cfg, 32, paths, mlflow, on_step=cripple)

    assert "D won outright" in caplog.text
    assert "the generator may have stopped learning" in caplog.text
    tags = mlflow.MlflowClient().get_run(run.info.run_id).data.tags
    assert "D won outright" in tags["d_wins_warning"]


def test_dvc_repro_resumes_after_kill(project):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["datasets"] = ["mnist"]
    params["train"]["mnist"].update(epochs=30, ngf=16, ndf=16, checkpoint_every_images=256, precision="fp32",
                                    channels_last="off")
    write_params(project, params)
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "repro", "-q", "preprocess@mnist"]):
        subprocess.run(command, cwd=project, env=env, check=True, capture_output=True)

    repro = subprocess.Popen(["dvc", "repro", "train@mnist"], cwd=project, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for_checkpoint(project, repro)
    os.killpg(repro.pid, signal.SIGKILL)
    repro.wait(timeout=30)
    killed_at = load_checkpoint(project / "data/train/mnist/checkpoint.pt")["cur_nimg"]
    again = subprocess.run(["dvc", "repro", "train@mnist"], cwd=project, env=env, capture_output=True, text=True)

    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming mnist from data/train/mnist/checkpoint.pt at {killed_at} images seen" in again.stderr
    assert load_checkpoint(project / "data/train/mnist/checkpoint.pt")["finished"] is True
