"""FID and KID on real digits and faces, with the reference tools' Inception protocol.

FID needs at least 2,048 images a side, so the shared feature sets below take
a few minutes of Inception time on a CPU; every test in this module reuses them.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ANIME_ZIP, MNIST_DIR
from dcgan.data.mnist_idx import verify_split
from dcgan.evaluation import inception, real_features
from dcgan.evaluation.evaluate import to_uint8
from dcgan.evaluation.fid import TooFewSamples, frechet_distance
from dcgan.evaluation.kid import kernel_inception_distance

COUNT = inception.NUM_FEATURES
HALF = 5000
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def extractor():
    return inception.InceptionFeatures()


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """The 10,000 MNIST test digits as (N, 1, 28, 28) uint8."""
    images, _ = verify_split(MNIST_DIR, "test")
    return torch.from_numpy(images.copy())[:, None]


def features(extractor, images: torch.Tensor, batch: int) -> torch.Tensor:
    return inception.extract_features(extractor, images.split(batch), len(images), f"features, batches of {batch}", CPU)


@pytest.fixture(scope="module")
def first_half(extractor, digits):
    return features(extractor, digits[:COUNT], 1000)


@pytest.fixture(scope="module")
def second_half(extractor, digits):
    return features(extractor, digits[HALF : HALF + COUNT], 1000)


@pytest.fixture(scope="module")
def faces(extractor):
    with zipfile.ZipFile(ANIME_ZIP) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))[:COUNT]
        arrays = [np.asarray(Image.open(io.BytesIO(archive.read(n))).convert("RGB")) for n in names]
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return features(extractor, images, 1000)


def test_weights_load_offline():
    assert inception.weights_path().stat().st_size > 80_000_000
    assert len(inception.sha256_of(inception.weights_path())) == 64


def test_grayscale_becomes_three_equal_channels(extractor, digits):
    network_input = extractor.network_input(digits[:4])

    assert network_input.shape == (4, 3, 299, 299)
    assert torch.equal(network_input[:, 0], network_input[:, 1])
    assert torch.equal(network_input[:, 0], network_input[:, 2])
    assert torch.equal(extractor(digits[:4]), extractor(digits[:4].repeat(1, 3, 1, 1)))


def test_network_input_scaling(extractor):
    white = torch.full((1, 3, 299, 299), 255, dtype=torch.uint8)
    black = torch.zeros((1, 3, 299, 299), dtype=torch.uint8)

    assert extractor.network_input(white).max().item() == pytest.approx(127 / 128)
    assert extractor.network_input(black).min().item() == -1.0


def test_features_identical_for_any_call_size(extractor, digits):
    one_call = extractor(digits[:16])
    single_images = torch.cat([extractor(digits[i : i + 1]) for i in range(16)])

    assert torch.equal(one_call, single_images)


def test_fid_same_for_batches_of_1000_and_7(extractor, digits, first_half, second_half):
    in_sevens = features(extractor, digits[HALF : HALF + COUNT], 7)

    by_thousands = frechet_distance(first_half, second_half)
    by_sevens = frechet_distance(first_half, in_sevens)

    assert by_sevens == pytest.approx(by_thousands, rel=1e-6)


def test_fid_same_for_any_accumulation_chunk(first_half, second_half):
    whole = frechet_distance(first_half, second_half, chunk=COUNT)
    in_sevens = frechet_distance(first_half, second_half, chunk=7)

    assert in_sevens == pytest.approx(whole, rel=1e-6)


def test_mnist_halves_far_below_faces(first_half, second_half, faces):
    halves = frechet_distance(first_half, second_half)
    across = frechet_distance(first_half, faces)
    kid_halves = kernel_inception_distance(first_half, second_half, subsets=20, subset_size=1000, seed=0)
    kid_across = kernel_inception_distance(first_half, faces, subsets=20, subset_size=1000, seed=0)
    print(f"\nFID, {COUNT} vs {COUNT}: MNIST test halves {halves:.3f}, MNIST vs anime faces {across:.3f}")
    print(f"KID, subsets of 1000: halves {kid_halves.mean:.6f} ± {kid_halves.std:.6f}, "
          f"across {kid_across.mean:.6f} ± {kid_across.std:.6f}")

    # FID is biased upwards at 2,048 images a side, so two halves of one split still score about 12.
    assert halves < 25
    assert across > 100
    assert halves < across / 10
    assert kid_halves.mean < kid_across.mean / 20


def test_fid_rejected_below_feature_dimension(first_half, second_half):
    with pytest.raises(TooFewSamples) as rejected:
        frechet_distance(first_half[:1000], second_half)

    message = str(rejected.value)
    assert "1,000 real" in message
    assert "2,048 generated" in message
    assert "2,048" in message
    assert "KID" in message


def test_kid_mean_and_std_at_small_counts(first_half, second_half):
    kid = kernel_inception_distance(first_half[:50], second_half[:60], subsets=10, subset_size=1000, seed=3)
    again = kernel_inception_distance(first_half[:50], second_half[:60], subsets=10, subset_size=1000, seed=3)

    assert kid.subset_size == 25
    assert kid.subsets == 10
    assert kid.std > 0
    assert kid == again


def test_real_features_cache_round_trip(first_half, tmp_path):
    meta = {"real_count": 5, "weights_sha256": inception.sha256_of(inception.weights_path())}
    real_features.save(first_half[:5], meta, tmp_path / "real.pt")

    restored, restored_meta = real_features.load(tmp_path / "real.pt")

    assert torch.equal(restored, first_half[:5])
    assert restored_meta == meta


def test_real_features_cache_other_weights(first_half, tmp_path):
    real_features.save(first_half[:5], {"real_count": 5, "weights_sha256": "0" * 64}, tmp_path / "real.pt")

    with pytest.raises(real_features.UserError, match="fid_stats stage again"):
        real_features.load(tmp_path / "real.pt")


def test_generator_output_quantized_like_pixels():
    images = torch.tensor([-1.5, -1.0, 0.0, 1.0, 2.0])

    assert to_uint8(images).tolist() == [0, 0, 128, 255, 255]
