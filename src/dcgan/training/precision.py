"""Numeric precision, memory format and compilation for training, chosen from config or by measurement.

``choose_precision`` turns the ``train.<dataset>.precision``, ``channels_last``
and ``compile`` settings into a ``Precision``. On CUDA ``auto`` means bf16
autocast with channels_last. On a CPU ``auto`` is decided by timing a few
training steps of each candidate at start-up, because the fastest setting
depends on the CPU and its bf16 support. On a 2-core AMD EPYC with AVX512-BF16
(torch 2.14.1, 64×64) the measurement gave fp32 72, fp32+channels_last 79,
bf16 127 and bf16+channels_last 133 images/s (docs/training_speed.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from dcgan.errors import UserError
from dcgan.models import ModelConfig, build_models
from dcgan.training.train_step import train_step

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
CHANNELS_LAST = ("auto", "on", "off")
DTYPE_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}

# The CPU measurement times steps of at most this many images. One fp32 step of the 64×64
# networks at batch 128 takes about 1.9 s on the 2-core CPU named above, so four candidates
# at full batch would cost 15 s or more.
MEASURE_MAX_BATCH = 32
# Timed rounds stop once they have used this many seconds, after at least MEASURE_MIN_ROUNDS.
MEASURE_BUDGET_S = 6.0
MEASURE_MIN_ROUNDS = 2
MEASURE_MAX_ROUNDS = 12
# After MEASURE_MIN_ROUNDS, a candidate below this share of the leader's rate is no longer
# timed, so the rest of the budget goes to the close ones. On the CPU named above, bf16
# with and without channels_last were within 10 % of each other.
MEASURE_KEEP_SHARE = 0.8


@dataclass(frozen=True)
class Precision:
    """Settings of the training step: the autocast dtype (None for fp32), the memory format, and torch.compile.

    ``measured`` contains (name, images/s) pairs for each candidate when ``auto`` was
    decided by measurement. It is left out of equality.
    """

    autocast_dtype: torch.dtype | None
    channels_last: bool
    compile: bool
    measured: tuple[tuple[str, float], ...] = field(default=(), compare=False)

    @property
    def name(self) -> str:
        """Short label such as ``fp32``, ``bf16+channels_last`` or ``bf16+channels_last+compile``."""
        parts = [DTYPE_NAMES.get(self.autocast_dtype, str(self.autocast_dtype).removeprefix("torch."))]
        if self.channels_last:
            parts.append("channels_last")
        if self.compile:
            parts.append("compile")
        return "+".join(parts)

    def to_dict(self) -> dict[str, str | bool | float]:
        """Flat parameters for MLflow: the name, each setting, and the measured images/s of each candidate."""
        values: dict[str, str | bool | float] = {
            "precision": self.name,
            "autocast_dtype": DTYPE_NAMES.get(self.autocast_dtype, str(self.autocast_dtype)),
            "channels_last": self.channels_last,
            "compile": self.compile,
        }
        for candidate, images_per_s in self.measured:
            # MLflow keys may not contain "+".
            values[f"precision_images_per_s_{candidate.replace('+', '_')}"] = round(images_per_s, 1)
        return values


def cpu_supports_bf16() -> bool:
    """Return whether oneDNN runs bf16 kernels on this CPU (AVX512 or AMX on x86, BF16 on Arm)."""
    # NOTE: torch has no public query, so this uses the private op that torch's own CPU bf16
    # tests check. On AVX512 CPUs without AVX512-BF16, oneDNN emulates bf16, which runs but is
    # slow, so the auto measurement should then pick fp32.
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def choose_precision(
    cfg_precision: str,
    cfg_channels_last: str,
    compile: bool,
    device: torch.device,
    model_cfg: ModelConfig,
    batch_size: int,
) -> Precision:
    """Resolve the precision settings for ``device``. On a CPU, time the candidates left on ``auto``.

    Raises UserError for an unknown setting or for bf16 on a device without bf16 support.
    """
    if cfg_precision not in PRECISIONS:
        raise UserError(
            f"train.*.precision = {cfg_precision!r} is invalid; use one of {', '.join(PRECISIONS)}"
        )
    if cfg_channels_last not in CHANNELS_LAST:
        raise UserError(
            f"train.*.channels_last = {cfg_channels_last!r} is invalid; use one of {', '.join(CHANNELS_LAST)}"
        )

    # torch.compile is used only on CUDA, because its CPU backend (inductor) needs a C++
    # compiler at run time and its speed on a CPU has not been measured here. On a CPU the
    # setting is ignored with a warning, not rejected, so that one params.yaml serves both.
    use_compile = compile and device.type == "cuda"
    if compile and not use_compile:
        log.warning("train.*.compile = true is ignored on %s; torch.compile is used only on CUDA", device)

    if device.type == "cuda":
        return _choose_cuda(cfg_precision, cfg_channels_last, use_compile)

    dtypes = _cpu_dtypes(cfg_precision, device)
    layouts = {"auto": [False, True], "on": [True], "off": [False]}[cfg_channels_last]
    candidates = [Precision(dtype, layout, False) for dtype in dtypes for layout in layouts]
    if len(candidates) == 1:
        return candidates[0]
    return _fastest(candidates, device, model_cfg, batch_size)


def _choose_cuda(cfg_precision: str, cfg_channels_last: str, use_compile: bool) -> Precision:
    # NOTE: this branch has not run on a GPU yet.
    # GPUs before Ampere only emulate bf16, which is slower than fp32.
    has_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    if cfg_precision == "bf16" and not has_bf16:
        raise UserError(
            f"train.*.precision = 'bf16' but {torch.cuda.get_device_name()} has no native bf16 support; "
            "set it to 'fp32' or 'auto'"
        )
    use_bf16 = cfg_precision == "bf16" or (cfg_precision == "auto" and has_bf16)
    return Precision(
        autocast_dtype=torch.bfloat16 if use_bf16 else None,
        channels_last=cfg_channels_last != "off",
        compile=use_compile,
    )


def _cpu_dtypes(cfg_precision: str, device: torch.device) -> list[torch.dtype | None]:
    if cfg_precision == "fp32":
        return [None]
    if cpu_supports_bf16():
        return [None, torch.bfloat16] if cfg_precision == "auto" else [torch.bfloat16]
    if cfg_precision == "bf16":
        raise UserError(
            f"train.*.precision = 'bf16' but this {device} has no bf16 support in oneDNN; "
            "set it to 'fp32' or 'auto'"
        )
    return [None]


def _fastest(
    candidates: list[Precision], device: torch.device, model_cfg: ModelConfig, batch_size: int
) -> Precision:
    """Time ``train_step`` for each candidate on random data and return the fastest, with every rate attached."""
    batch = min(batch_size, MEASURE_MAX_BATCH)
    # The measurement draws weights and data from a forked RNG state, so the training run
    # that follows draws the same random numbers whichever setting is chosen.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        step_times = _time_candidates(candidates, device, model_cfg, batch)

    rates = {candidate: batch / min(times) for candidate, times in zip(candidates, step_times)}
    for candidate, times in zip(candidates, step_times):
        log.info(
            "precision candidate %-22s %7.1f images/s (best of %d steps at batch %d)",
            candidate.name, rates[candidate], len(times), batch,
        )
    best = max(candidates, key=lambda candidate: rates[candidate])
    log.info("precision chosen: %s", best.name)
    measured = tuple((candidate.name, rates[candidate]) for candidate in candidates)
    return Precision(best.autocast_dtype, best.channels_last, best.compile, measured=measured)


def _time_candidates(
    candidates: list[Precision], device: torch.device, model_cfg: ModelConfig, batch: int
) -> list[list[float]]:
    """Return the seconds of each timed step per candidate.

    Candidates are timed round-robin, so that a change in machine load hits all of them alike.
    """
    runs = []
    for candidate in candidates:
        generator, discriminator = build_models(model_cfg)
        generator, discriminator = prepare_models(generator.to(device), discriminator.to(device), candidate)
        opt_g, opt_d = make_optimizers(generator, discriminator, 2e-4, 0.5, device)
        real = torch.rand(batch, model_cfg.channels, model_cfg.image_size, model_cfg.image_size, device=device)
        real = real.mul_(2).sub_(1)
        if candidate.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        z = torch.randn(batch, model_cfg.nz, 1, 1, device=device)
        runs.append((generator, discriminator, opt_g, opt_d, real, z, candidate.autocast_dtype))

    # One untimed warm-up step each: first calls allocate memory and create oneDNN primitives.
    for run in runs:
        train_step(*run[:6], autocast_dtype=run[6])

    step_times: list[list[float]] = [[] for _ in runs]
    active = list(range(len(runs)))
    spent = 0.0
    for round_index in range(MEASURE_MAX_ROUNDS):
        if round_index >= MEASURE_MIN_ROUNDS:
            if spent >= MEASURE_BUDGET_S:
                break
            fastest = min(min(step_times[index]) for index in active)
            active = [index for index in active if fastest / min(step_times[index]) >= MEASURE_KEEP_SHARE]
        for index in active:
            start = time.perf_counter()
            train_step(*runs[index][:6], autocast_dtype=runs[index][6])
            elapsed = time.perf_counter() - start
            step_times[index].append(elapsed)
            spent += elapsed
    return step_times


def prepare_models(
    generator: nn.Module, discriminator: nn.Module, precision: Precision
) -> tuple[nn.Module, nn.Module]:
    """Convert both networks to channels_last and compile them, as ``precision`` sets; return the models to train.

    The returned objects are the same modules, changed in place: ``nn.Module.compile``
    keeps the parameter names, so state dicts and checkpoints are unchanged. Build the
    optimizers after this call, so that their state tensors take the weights' memory format.
    """
    for model in (generator, discriminator):
        if precision.channels_last:
            model.to(memory_format=torch.channels_last)
        if precision.compile:
            model.compile()
    return generator, discriminator


def make_optimizers(
    generator: nn.Module, discriminator: nn.Module, lr: float, beta1: float, device: torch.device
) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Build Adam(lr, betas=(beta1, 0.999)) for G and D, in that order, fused into one kernel per step on CUDA."""
    # On a CPU the default (for-loop) Adam is kept, so fp32 CPU runs match earlier ones bit for bit.
    fused = True if device.type == "cuda" else None
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=(beta1, 0.999), fused=fused)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(beta1, 0.999), fused=fused)
    return opt_g, opt_d
