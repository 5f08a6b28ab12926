"""`dcgan generate` samples a generator from a real SQLite MLflow registry, with no data or checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest
from PIL import Image

from conftest import register_champion, run
from dcgan.generate import generate
from dcgan.models import ModelConfig, build_models
from dcgan.tracking import mlflow_store

IMAGE_SIZE = 32
# torchvision's make_grid puts 2 pixels of padding around and between the images.
GRID_8X8_SIZE = 8 * (IMAGE_SIZE + 2) + 2
NO_STORE_ENV = {"MLFLOW_TRACKING_URI": None}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A folder whose only content is mlruns/, with dcgan-mnist version 1 as champion."""
    root = tmp_path_factory.mktemp("registry_only")
    register_champion(root, nz=16, image_size=IMAGE_SIZE)
    return root


def generate_cli(store: Path, *args: str, check: bool = True):
    return run(["dcgan", "generate", *args], cwd=store, env=NO_STORE_ENV, check=check)


def test_store_folder_has_no_data(store):
    assert not (store / "data").exists()
    assert sorted(os.listdir(store)) == ["mlruns"]


def test_grid_has_8x8_layout(store, tmp_path):
    out = tmp_path / "grid.png"

    result = generate_cli(store, "--model", "models:/dcgan-mnist@champion", "-n", "64", "--out", str(out),
                          "--seed", "0")

    with Image.open(out) as grid:
        assert grid.size == (GRID_8X8_SIZE, GRID_8X8_SIZE)
    assert result.stdout.splitlines() == [
        f"wrote 64 images from dcgan-mnist version 1 (alias champion) to {out} as a grid of 8 rows by 8 columns "
        "(seed 0, device cpu)"
    ]
    assert not (store / "data").exists()


def test_directory_gets_one_png_each(store, tmp_path):
    out = tmp_path / "samples"

    result = generate_cli(store, "--model", "models:/dcgan-mnist@champion", "-n", "5", "--out", f"{out}/")

    assert sorted(os.listdir(out)) == ["0000.png", "0001.png", "0002.png", "0003.png", "0004.png"]
    for path in sorted(out.iterdir()):
        with Image.open(path) as image:
            assert image.size == (IMAGE_SIZE, IMAGE_SIZE), path.name
            assert image.mode == "L", path.name
    assert "as 0000.png to 0004.png" in result.stdout


def test_existing_directory_without_slash(store, tmp_path):
    generate_cli(store, "--model", "models:/dcgan-mnist@champion", "-n", "2", "--out", str(tmp_path))

    assert sorted(os.listdir(tmp_path)) == ["0000.png", "0001.png"]


def test_seed_repeats_bytes(store, tmp_path):
    paths = {name: tmp_path / f"{name}.png" for name in ("first", "again", "other")}
    for name, seed in (("first", "0"), ("again", "0"), ("other", "1")):
        generate_cli(store, "--model", "models:/dcgan-mnist@champion", "-n", "16", "--out", str(paths[name]),
                     "--seed", seed)

    assert paths["first"].read_bytes() == paths["again"].read_bytes()
    assert paths["first"].read_bytes() != paths["other"].read_bytes()


def test_version_uri_matches_alias(store, tmp_path):
    by_alias, by_version = tmp_path / "alias.png", tmp_path / "version.png"
    generate_cli(store, "--model", "models:/dcgan-mnist@champion", "-n", "4", "--out", str(by_alias), "--seed", "7")

    result = generate_cli(store, "--model", "models:/dcgan-mnist/1", "-n", "4", "--out", str(by_version),
                          "--seed", "7")

    assert by_alias.read_bytes() == by_version.read_bytes()
    assert "from dcgan-mnist version 1 to" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "models:/dcgan-mnist@missing", "--out", "g.png"],
         ["alias missing not found on dcgan-mnist", "champion (version 1)"]),
        (["--model", "models:/dcgan-anime@champion", "--out", "g.png"],
         ["registered model dcgan-anime not found", "Registered models: dcgan-mnist.", "`dvc repro register@anime`"]),
        (["--model", "models:/dcgan-mnist/9", "--out", "g.png"], ["version 9 of dcgan-mnist not found"]),
        (["--model", "runs:/0123/generator", "--out", "g.png"], ["unsupported model URI", "models:/NAME@ALIAS"]),
        (["--model", "models:/dcgan-mnist@champion", "-n", "0", "--out", "g.png"], ["-n 0: "]),
        (["--model", "models:/dcgan-mnist@champion", "--out", "x.jpg"],
         ["--out x.jpg: unsupported output type", "a .png file for one grid", "a path ending in /"]),
        (["--model", "models:/dcgan-mnist@champion", "--out", "missing/g.png"],
         ["--out missing/g.png: the folder", "missing does not exist", "create it first"]),
        (["--model", "models:/dcgan-mnist@champion", "--out", "mlruns/mlflow.db/g.png"],
         ["is not a directory"]),
    ],
    ids=["missing-alias", "unknown-model", "missing-version", "runs-uri", "zero-images", "jpg-out", "missing-folder",
         "file-as-folder"],
)
def test_bad_request_one_line_error(store, args, expected):
    result = generate_cli(store, *args, check=False)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in expected:
        assert fragment in lines[0], fragment
    assert not (store / "g.png").exists()
    assert not (store / "missing").exists()


def test_missing_store_rejected(tmp_path):
    result = run(["dcgan", "generate", "--model", "models:/dcgan-mnist@champion", "--out", "g.png"], cwd=tmp_path,
                 env=NO_STORE_ENV, check=False)

    assert result.returncode == 2
    assert result.stderr.startswith(f"error: no MLflow store at {tmp_path / 'mlruns' / 'mlflow.db'}")
    assert not (tmp_path / "mlruns").exists()


def test_pickled_generator_samples(tmp_path, monkeypatch):
    """A generator saved with pickle instead of torch.export, and with no signature, still samples."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow_store.configure()
    generator, _ = build_models(ModelConfig(16, 8, 8, IMAGE_SIZE, 1))
    mlflow.set_experiment("dcgan-mnist")
    with mlflow.start_run():
        mlflow.pytorch.log_model(
            generator.eval(), name="generator", serialization_format="pickle", registered_model_name="dcgan-pickled",
            code_paths=[str(Path(mlflow_store.__file__).parents[1])],
        )
    out = tmp_path / "pickled.png"

    line = generate("models:/dcgan-pickled/1", 9, str(out), seed=0, device="cpu")

    with Image.open(out) as grid:
        assert grid.size == (3 * (IMAGE_SIZE + 2) + 2, 3 * (IMAGE_SIZE + 2) + 2)
    assert line.startswith("wrote 9 images from dcgan-pickled version 1 to")
