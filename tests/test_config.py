"""Bad params.yaml values fail at start with one line naming the key, the value and what is allowed."""

from __future__ import annotations

import copy

import pytest
import yaml

from conftest import REPO, run, write_params
from dcgan import config
from dcgan.errors import ConfigError

COMMITTED = yaml.safe_load((REPO / "params.yaml").read_text())


def broken(mutate) -> dict:
    params = copy.deepcopy(COMMITTED)
    mutate(params)
    return params


def test_committed_params_are_valid():
    params = config.parse(COMMITTED)

    assert params.datasets == ["mnist", "anime"]
    assert params.data_for("mnist").source == "torchvision"
    assert params.data_for("anime").source == "kaggle"
    assert params.train["anime"].lr == 0.0002


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda p: p.update(datasets=["mnist", "cifar"]), ["datasets[1]", "'cifar'", "'mnist', 'anime'"]),
        (lambda p: p["data"]["mnist"].update(source="s3"), ["data.mnist.source", "'s3'", "'torchvision', 'dir', 'bundled'"]),
        (lambda p: p["train"]["mnist"].pop("epochs"), ["missing key train.mnist.epochs"]),
        (lambda p: p["train"]["anime"].update(batch_size="128"), ["train.anime.batch_size", "'128'", "an integer"]),
        (lambda p: p["train"]["anime"].update(lr="fast"), ["train.anime.lr", "'fast'", "a number"]),
        (lambda p: p["train"]["mnist"].update(epoch=3), ["unknown key train.mnist.epoch", "epochs"]),
        (lambda p: p["data"]["mnist"].update(image_size=48), ["data.mnist.image_size", "48", "32, 64, 128"]),
        (lambda p: p["data"]["anime"].update(source="archive"), ["data.anime.path = null", "the Kaggle zip", "archive"]),
        (lambda p: p["train"]["mnist"].update(epochs=0), ["train.mnist.epochs", "0", "above 0"]),
        (lambda p: p["train"].update(cifar=p["train"]["mnist"]), ["unknown dataset train.cifar", "mnist, anime"]),
        (lambda p: p["evaluate"]["mnist"].update(real_count=3), ["evaluate.mnist.real_count = 3", "at least 4"]),
        (lambda p: p["register"].update(metric="is"), ["register.metric", "'is'", "'fid', 'kid_mean'"]),
    ],
    ids=["unknown-dataset", "unknown-source", "missing-key", "wrong-type-int", "wrong-type-float",
         "unknown-key", "unsupported-size", "archive-without-path", "zero-epochs", "unknown-dataset-section",
         "too-few-scored-images", "unknown-register-metric"],
)
def test_bad_params_name_key_and_value(mutate, expected):
    with pytest.raises(ConfigError) as info:
        config.parse(broken(mutate))

    message = str(info.value)
    assert "\n" not in message
    for fragment in expected:
        assert fragment in message


def test_cli_rejects_bad_params_in_one_line(tmp_path):
    write_params(tmp_path, broken(lambda p: p["data"]["mnist"].update(source="ftp")))

    for command in (["dcgan", "preprocess", "mnist"], ["python", str(REPO / "flows" / "ingest.py"), "mnist"]):
        result = run(command, cwd=tmp_path, check=False)

        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "data.mnist.source = 'ftp'" in lines[0]
        assert "Traceback" not in result.stderr


def test_cli_rejects_unknown_dataset(tmp_path):
    write_params(tmp_path, COMMITTED)

    result = run(["dcgan", "train", "cifar"], cwd=tmp_path, check=False)

    assert result.returncode == 2
    assert "unknown dataset 'cifar'; allowed datasets are mnist, anime" in result.stderr
    assert "Traceback" not in result.stderr
