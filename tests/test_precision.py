"""Precision choice (fp32, bf16 autocast, channels_last), its training step, and the training speed benchmark."""

from __future__ import annotations

import copy
import logging
import re
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import REPO, SHARED_DATA, run
from dcgan.errors import UserError
from dcgan.models import ModelConfig, build_models
from dcgan.training import precision as precision_module
from dcgan.training.precision import Precision, choose_precision, make_optimizers, prepare_models
from dcgan.training.train_step import train_step

CPU = torch.device("cpu")
SMALL = ModelConfig(nz=16, ngf=8, ndf=8, image_size=32, channels=3)
needs_bf16 = pytest.mark.skipif(not precision_module.cpu_supports_bf16(), reason="this CPU has no bf16 support")


def small_models(seed: int = 0):
    torch.manual_seed(seed)
    generator, discriminator = build_models(SMALL)
    opt_g, opt_d = make_optimizers(generator, discriminator, 2e-4, 0.5, CPU)
    return generator, discriminator, opt_g, opt_d


def batch(size: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    rng = torch.Generator().manual_seed(seed)
    real = torch.rand(size, 3, 32, 32, generator=rng) * 2 - 1
    z = torch.randn(size, SMALL.nz, 1, 1, generator=rng)
    return real, z


def plain_fp32_step(generator, discriminator, opt_g, opt_d, real, z) -> dict[str, torch.Tensor]:
    """The update as train_step computed it before autocast was added, written out in full."""
    ones = torch.ones(real.shape[0])
    zeros = torch.zeros(real.shape[0])
    opt_d.zero_grad(set_to_none=True)
    logits_real = discriminator(real)
    fake = generator(z)
    logits_fake = discriminator(fake.detach())
    loss_d = F.binary_cross_entropy_with_logits(logits_real, ones) + F.binary_cross_entropy_with_logits(
        logits_fake, zeros
    )
    loss_d.backward()
    opt_d.step()
    opt_g.zero_grad(set_to_none=True)
    loss_g = F.binary_cross_entropy_with_logits(discriminator(fake), ones)
    loss_g.backward()
    opt_g.step()
    return {
        "loss_d": loss_d.detach(),
        "loss_g": loss_g.detach(),
        "d_real": torch.sigmoid(logits_real.detach()).mean(),
        "d_fake": torch.sigmoid(logits_fake.detach()).mean(),
    }


# Precision and choose_precision.


@pytest.mark.parametrize(
    ("precision", "name"),
    [
        (Precision(None, False, False), "fp32"),
        (Precision(None, True, False), "fp32+channels_last"),
        (Precision(torch.bfloat16, True, False), "bf16+channels_last"),
        (Precision(torch.bfloat16, True, True), "bf16+channels_last+compile"),
    ],
)
def test_precision_name(precision, name):
    assert precision.name == name


def test_precision_to_dict_flat_for_mlflow():
    precision = Precision(torch.bfloat16, True, False, measured=(("fp32", 40.0), ("bf16+channels_last", 61.25)))

    values = precision.to_dict()

    assert values["precision"] == "bf16+channels_last"
    assert values["autocast_dtype"] == "bf16"
    assert values["channels_last"] is True
    assert values["compile"] is False
    assert values["precision_images_per_s_fp32"] == 40.0
    assert values["precision_images_per_s_bf16_channels_last"] == 61.2
    assert all(isinstance(v, (str, bool, float)) for v in values.values())
    assert not any("+" in key for key in values)


def test_explicit_fp32_has_no_autocast(caplog):
    caplog.set_level(logging.INFO, logger="dcgan.training.precision")

    chosen = choose_precision("fp32", "off", False, CPU, SMALL, 16)

    assert chosen == Precision(None, False, False)
    assert chosen.autocast_dtype is None
    assert chosen.measured == ()
    assert "precision candidate" not in caplog.text


def test_explicit_channels_last_with_fp32():
    chosen = choose_precision("fp32", "on", False, CPU, SMALL, 16)

    assert chosen == Precision(None, True, False)


@needs_bf16
def test_explicit_bf16_on_cpu():
    chosen = choose_precision("bf16", "off", False, CPU, SMALL, 16)

    assert chosen == Precision(torch.bfloat16, False, False)


def test_bf16_without_cpu_support_raises(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_supports_bf16", lambda: False)

    with pytest.raises(UserError) as error:
        choose_precision("bf16", "off", False, CPU, SMALL, 16)

    assert "train.*.precision" in str(error.value)
    assert "'fp32'" in str(error.value)


def test_auto_without_bf16_support_measures_fp32_only(monkeypatch, caplog):
    monkeypatch.setattr(precision_module, "cpu_supports_bf16", lambda: False)
    caplog.set_level(logging.INFO, logger="dcgan.training.precision")

    chosen = choose_precision("auto", "auto", False, CPU, SMALL, 16)

    assert chosen.autocast_dtype is None
    assert [name for name, _ in chosen.measured] == ["fp32", "fp32+channels_last"]


@pytest.mark.parametrize(("precision", "channels_last"), [("nearest", "auto"), ("auto", "yes")])
def test_invalid_setting_raises(precision, channels_last):
    with pytest.raises(UserError, match="is invalid"):
        choose_precision(precision, channels_last, False, CPU, SMALL, 16)


def test_compile_on_cpu_is_ignored_with_warning(caplog):
    caplog.set_level(logging.WARNING, logger="dcgan.training.precision")

    chosen = choose_precision("fp32", "off", True, CPU, SMALL, 16)

    assert chosen.compile is False
    assert "compile = true is ignored" in caplog.text


def test_auto_on_cpu_measures_and_logs_candidates(caplog):
    caplog.set_level(logging.INFO, logger="dcgan.training.precision")
    expected = ["fp32", "fp32+channels_last"]
    if precision_module.cpu_supports_bf16():
        expected += ["bf16", "bf16+channels_last"]

    chosen = choose_precision("auto", "auto", False, CPU, SMALL, 16)

    assert isinstance(chosen, Precision)
    assert chosen.autocast_dtype in (None, torch.bfloat16)
    assert chosen.compile is False
    assert [name for name, _ in chosen.measured] == expected
    assert all(rate > 0 for _, rate in chosen.measured)
    assert chosen.name == max(chosen.measured, key=lambda pair: pair[1])[0]
    for name in expected:
        assert re.search(rf"precision candidate {re.escape(name)} +[0-9.]+ images/s", caplog.text)
    assert f"precision chosen: {chosen.name}" in caplog.text


def test_auto_leaves_global_rng_unchanged():
    torch.manual_seed(123)
    state = torch.get_rng_state()

    choose_precision("auto", "on", False, CPU, SMALL, 16)

    assert torch.equal(torch.get_rng_state(), state)


# prepare_models and make_optimizers.


def test_channels_last_on_gives_channels_last_weights():
    torch.manual_seed(0)
    generator, discriminator = build_models(SMALL)

    generator, discriminator = prepare_models(generator, discriminator, Precision(None, True, False))

    weights = [p for model in (generator, discriminator) for p in model.parameters() if p.dim() == 4]
    assert len(weights) == 8
    for weight in weights:
        assert weight.is_contiguous(memory_format=torch.channels_last)
    images = generator(torch.randn(2, SMALL.nz, 1, 1))
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert discriminator(images).shape == (2,)


def test_prepare_models_keeps_state_dict_keys():
    torch.manual_seed(0)
    generator, discriminator = build_models(SMALL)
    keys = list(generator.state_dict())

    prepared, _ = prepare_models(generator, discriminator, Precision(None, True, False))

    assert prepared is generator
    assert list(prepared.state_dict()) == keys


def test_make_optimizers_uses_adam_settings():
    torch.manual_seed(0)
    generator, discriminator = build_models(SMALL)

    opt_g, opt_d = make_optimizers(generator, discriminator, 1e-3, 0.3, CPU)

    for optimizer, model in ((opt_g, generator), (opt_d, discriminator)):
        group = optimizer.param_groups[0]
        assert isinstance(optimizer, torch.optim.Adam)
        assert group["lr"] == 1e-3
        assert group["betas"] == (0.3, 0.999)
        assert not group["fused"]
        assert [id(p) for p in group["params"]] == [id(p) for p in model.parameters()]


# train_step.


def test_fp32_step_matches_plain_step():
    generator, discriminator, opt_g, opt_d = small_models()
    twins = copy.deepcopy((generator, discriminator))
    twin_opt_g, twin_opt_d = make_optimizers(*twins, 2e-4, 0.5, CPU)
    real, z = batch()

    for _ in range(2):
        stats = train_step(generator, discriminator, opt_g, opt_d, real, z)
        expected = plain_fp32_step(*twins, twin_opt_g, twin_opt_d, real, z)

    for key in expected:
        assert torch.equal(stats[key], expected[key]), key
    for model, twin in zip((generator, discriminator), twins):
        for (name, value), twin_value in zip(model.state_dict().items(), twin.state_dict().values()):
            assert torch.equal(value, twin_value), name


@needs_bf16
@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_step_gives_finite_losses(channels_last):
    generator, discriminator, opt_g, opt_d = small_models()
    prepare_models(generator, discriminator, Precision(torch.bfloat16, channels_last, False))
    real, z = batch()
    if channels_last:
        real = real.contiguous(memory_format=torch.channels_last)
    before = [p.detach().clone() for p in generator.parameters()]

    stats = train_step(generator, discriminator, opt_g, opt_d, real, z, autocast_dtype=torch.bfloat16)

    assert set(stats) == {"loss_d", "loss_g", "d_real", "d_fake"}
    for key, value in stats.items():
        assert value.dtype == torch.float32, key
        assert torch.isfinite(value), key
    assert 0 < float(stats["d_real"]) < 1
    assert all(p.dtype == torch.float32 for p in generator.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, generator.parameters()))


@needs_bf16
def test_bf16_step_close_to_fp32():
    generator, discriminator, opt_g, opt_d = small_models()
    twins = copy.deepcopy((generator, discriminator))
    twin_opt_g, twin_opt_d = make_optimizers(*twins, 2e-4, 0.5, CPU)
    real, z = batch(size=32)

    low = train_step(generator, discriminator, opt_g, opt_d, real, z, autocast_dtype=torch.bfloat16)
    full = train_step(*twins, twin_opt_g, twin_opt_d, real, z)

    for key in full:
        assert float(low[key]) == pytest.approx(float(full[key]), rel=0.05, abs=0.02), key


# The benchmark.


def test_benchmark_short_mode_runs():
    result = run([sys.executable, str(REPO / "benchmarks" / "train_speed.py"), "--short", "--data", str(SHARED_DATA)],
                 cwd=REPO)

    output = result.stdout
    assert output.startswith("command: ")
    assert "machine: " in output
    assert "precision chosen for (b): " in output
    assert re.search(r"^\(a\) reference, fp32 +[0-9.]+ ", output, re.MULTILINE), output
    assert re.search(r"^\(b\) project, \S+ +[0-9.]+ ", output, re.MULTILINE), output
    assert re.search(r"^ratio \(b/a\): [0-9.]+x", output, re.MULTILINE), output
