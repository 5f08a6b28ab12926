"""Preprocessing: every mode reaches the model's channels, crops are centered, arrays are packed uint8."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import ANIME_ZIP
from dcgan.data.image_decode import crop_and_resize, to_mode
from dcgan.data.image_decode import prepare as prepare_image


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def palette_with_transparency() -> Image.Image:
    image = Image.new("P", (40, 40), 0)
    image.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    image.info["transparency"] = 0
    return image


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (40, 30), 128),
        Image.new("LA", (40, 30), (128, 0)),
        palette_with_transparency(),
        Image.new("RGBA", (40, 30), (10, 20, 30, 0)),
        Image.new("CMYK", (40, 30), (0, 0, 0, 0)),
        Image.new("I;16", (40, 30), 65535),
        Image.new("RGB", (40, 30), (1, 2, 3)),
    ],
    ids=["L", "LA", "P-transparent", "RGBA", "CMYK", "I;16", "RGB"],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_every_mode_reaches_model_channels(image, channels):
    array = prepare_image(encoded(image, "TIFF" if image.mode == "CMYK" else "PNG"), 32, channels)

    assert array.shape == (channels, 32, 32)
    assert array.dtype == np.uint8


def test_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (16, 16), (0, 0, 0, 0))

    assert np.asarray(to_mode(rgba, 3)).min() == 255
    assert np.asarray(to_mode(palette_with_transparency(), 3)).min() == 255


def test_sixteen_bit_keeps_full_scale():
    assert np.asarray(to_mode(Image.new("I;16", (8, 8), 65535), 1)).max() == 255


def test_crop_is_centered_square():
    image = Image.new("L", (90, 30), 0)
    image.paste(255, (30, 0, 60, 30))

    square = crop_and_resize(image, 30)

    assert square.size == (30, 30)
    assert np.asarray(square).min() == 255


def test_real_anime_stage_output(project, ingest_flow):
    from dcgan.data.preprocess import preprocess

    ingest_flow("anime")
    stats = preprocess("anime", 64)

    images = np.load(project / "data/prepared/anime/images.npy")
    assert images.shape == (195, 3, 64, 64)  # 5 byte-identical copies dropped
    assert images.dtype == np.uint8
    assert stats["count"] == 195
    assert stats["not_accepted"] == {"skipped:duplicate": 5}
    assert json.loads((project / "data/prepared/anime/stats.json").read_text())["shape"] == [3, 64, 64]
    with zipfile.ZipFile(ANIME_ZIP) as archive:
        first = sorted(n for n in archive.namelist() if n.endswith(".jpg"))[0]
        original = np.asarray(Image.open(io.BytesIO(archive.read(first))).convert("RGB"))
    assert np.array_equal(images[0].transpose(1, 2, 0), original)


def test_real_mnist_resized_to_32(project, ingest_flow):
    from dcgan.data.preprocess import preprocess

    ingest_flow("mnist")
    stats = preprocess("mnist", 32, split="test")

    images = np.load(project / "data/prepared/mnist/images.npy")
    labels = np.load(project / "data/prepared/mnist/labels.npy")
    assert images.shape == (300, 1, 32, 32)
    assert labels.min() >= 0
    assert labels.max() <= 9
    assert 0.05 < stats["mean"][0] < 0.3
