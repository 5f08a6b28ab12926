"""DCGAN architecture after Radford et al. 2015, the update step, and the loop on real digits."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from torch import nn

from dcgan.config import TrainConfig
from dcgan.models import Generator, ModelConfig, build_models
from dcgan.paths import DatasetPaths
from dcgan.training.checkpoint import load_checkpoint, load_generator
from dcgan.training.loop import to_model_range, train
from dcgan.training.train_step import train_step


@pytest.mark.parametrize(("size", "blocks"), [(32, 3), (64, 4)])
@pytest.mark.parametrize("channels", [1, 3])
def test_layers_scale_with_image_size(size, blocks, channels):
    cfg = ModelConfig(nz=100, ngf=8, ndf=8, image_size=size, channels=channels)
    generator, discriminator = build_models(cfg)

    images = generator(torch.randn(5, 100, 1, 1))
    logits = discriminator(images)

    assert images.shape == (5, channels, size, size)
    assert logits.shape == (5,)
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in generator.modules()) == blocks + 1
    assert sum(isinstance(m, nn.Conv2d) for m in discriminator.modules()) == blocks + 1


def test_architecture_follows_dcgan():
    generator, discriminator = build_models(ModelConfig(100, 64, 64, 64, 3))

    assert isinstance(generator.main[-1], nn.Tanh)
    assert any(isinstance(m, nn.ReLU) for m in generator.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in generator.modules())
    assert isinstance(discriminator.main[0], nn.Conv2d)
    assert isinstance(discriminator.main[1], nn.LeakyReLU)
    assert discriminator.main[1].negative_slope == 0.2
    assert sum(isinstance(m, nn.BatchNorm2d) for m in discriminator.modules()) == 3
    convs = [m for m in generator.modules() if isinstance(m, nn.ConvTranspose2d)]
    weights = torch.cat([c.weight.detach().flatten() for c in convs])
    assert abs(float(weights.mean())) < 1e-3
    assert float(weights.std()) == pytest.approx(0.02, rel=0.05)


def test_real_batches_in_model_range():
    batch = torch.tensor([[[[0, 128, 255]]]], dtype=torch.uint8)

    real = to_model_range(batch)

    assert float(real.min()) == -1.0
    assert float(real.max()) == 1.0


def test_train_step_updates_both_networks():
    torch.manual_seed(0)
    cfg = ModelConfig(16, 8, 8, 32, 1)
    generator, discriminator = build_models(cfg)
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    g_before = [p.clone() for p in generator.parameters()]
    d_before = [p.clone() for p in discriminator.parameters()]

    stats = train_step(generator, discriminator, opt_g, opt_d, torch.rand(8, 1, 32, 32) * 2 - 1, torch.randn(8, 16, 1, 1))

    assert set(stats) == {"loss_d", "loss_g", "d_real", "d_fake"}
    assert all(torch.isfinite(v) for v in stats.values())
    assert 0 < float(stats["d_real"]) < 1
    assert any(not torch.equal(a, b) for a, b in zip(g_before, generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d_before, discriminator.parameters()))


def test_loop_on_real_digits(tmp_path):
    from dcgan.data.mnist_idx import verify_split
    from dcgan.data.image_decode import prepare as prepare_image
    from conftest import MNIST_DIR
    from PIL import Image

    digits, _ = verify_split(MNIST_DIR, "test")
    paths = DatasetPaths("mnist", root=tmp_path / "data")
    paths.prepared.mkdir(parents=True)
    packed = np.stack([prepare_image(Image.fromarray(d, mode="L"), 32, 1) for d in digits[:256]])
    np.save(paths.images, packed)
    cfg = TrainConfig(epochs=2, batch_size=64, max_images=None, nz=100, ngf=8, ndf=8, lr=2e-4, beta1=0.5,
                      seed=0, log_every_images=128, device="cpu", precision="fp32", channels_last="off",
                      compile=False, checkpoint_every_images=256, d_wins_steps=500, launcher="single",
                      nproc_per_node=1)

    summary = train("mnist", cfg, 32, paths)

    assert summary == {"images_seen": 512, "epochs": 2, "device": "cpu", "precision": "fp32"}
    assert sorted(p.name for p in paths.grids.iterdir()) == ["epoch_001.png", "epoch_002.png"]
    assert Image.open(paths.grids / "epoch_001.png").size == (8 * 34 + 2, 8 * 34 + 2)
    state = load_checkpoint(paths.checkpoint)
    assert state["model_config"] == {"nz": 100, "ngf": 8, "ndf": 8, "image_size": 32, "channels": 1}
    assert state["cur_nimg"] == 512
    assert state["finished"] is True
    assert {"generator", "discriminator", "opt_g", "opt_d"} <= set(state)
    assert isinstance(load_generator(paths.checkpoint), Generator)
    with open(paths.losses) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["images_seen"]) for r in rows] == [128, 256, 384, 512]
    assert all(float(r["images_per_s"]) > 0 for r in rows)
