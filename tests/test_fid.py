"""FID on the offline TF-Inception network, on real digits and faces."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ANIME_ZIP, MNIST_DIR
from dcgan.data.mnist_idx import verify_split
from dcgan.evaluation import fid
from dcgan.evaluation.evaluate import to_uint8

COUNT = 24


@pytest.fixture(scope="module")
def extractor():
    return fid.InceptionFeatures()


@pytest.fixture(scope="module")
def digits():
    images, _ = verify_split(MNIST_DIR, "test")
    return torch.from_numpy(images[: 2 * COUNT].copy())[:, None]


@pytest.fixture(scope="module")
def faces():
    with zipfile.ZipFile(ANIME_ZIP) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))[:COUNT]
        arrays = [np.asarray(Image.open(io.BytesIO(archive.read(n))).convert("RGB")) for n in names]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def score(extractor, real: torch.Tensor, fake: torch.Tensor) -> float:
    metric = fid.FrechetInceptionDistance(feature=extractor, reset_real_features=False)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def test_weights_load_offline(extractor):
    assert fid.weights_path().stat().st_size > 80_000_000
    assert len(fid.sha256_of(fid.weights_path())) == 64


def test_grayscale_matches_three_equal_channels(extractor, digits):
    gray = extractor(digits[:4])
    rgb = extractor(digits[:4].repeat(1, 3, 1, 1))

    assert gray.shape == (4, 2048)
    assert torch.allclose(gray, rgb)


def test_digits_closer_to_digits_than_faces(extractor, digits, faces):
    halves = score(extractor, digits[:COUNT], digits[COUNT:])
    across = score(extractor, digits[:COUNT], faces)

    assert halves < across
    assert across > 100


def test_real_stats_cache_round_trip(extractor, digits, tmp_path):
    metric = fid.FrechetInceptionDistance(feature=extractor, reset_real_features=False)
    metric.update(digits[:COUNT], real=True)
    fid.save_real_stats(metric, tmp_path / "real.pt", {"real_count": COUNT})

    restored = fid.FrechetInceptionDistance(feature=extractor, reset_real_features=False)
    meta = fid.load_real_stats(restored, tmp_path / "real.pt")
    restored.update(digits[COUNT:], real=False)
    metric.update(digits[COUNT:], real=False)

    assert meta == {"real_count": COUNT}
    assert float(restored.compute()) == pytest.approx(float(metric.compute()), rel=1e-9)


def test_generator_output_quantized_like_pixels():
    images = torch.tensor([-1.5, -1.0, 0.0, 1.0, 2.0])

    assert to_uint8(images).tolist() == [0, 0, 128, 255, 255]
