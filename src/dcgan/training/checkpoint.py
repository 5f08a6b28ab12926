"""Checkpoints that carry the model hyper-parameters and are written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from dcgan.errors import UserError
from dcgan.models import Generator, ModelConfig


def save_checkpoint(path: Path, state: dict) -> None:
    """Write to a temporary name, then rename, so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}; run the train stage first (dvc repro)")
    return torch.load(path, map_location="cpu", weights_only=False)


def plain_state_dict(state_dict: dict) -> dict:
    """Drop the ``module.`` prefix that DataParallel and DistributedDataParallel add to every key."""
    state_dict = dict(state_dict)
    consume_prefix_in_state_dict_if_present(state_dict, "module.")
    return state_dict


def check_model_config(saved: dict, expected: ModelConfig, path: Path) -> None:
    """Raise UserError naming the first hyper-parameter where a checkpoint differs from ``expected``."""
    for name, value in expected.to_dict().items():
        if saved.get(name) != value:
            raise UserError(
                f"{path} was made with {name} = {saved.get(name)!r}, but the current settings give "
                f"{name} = {value!r}; restore that setting, or start from scratch without this checkpoint"
            )


def load_generator(path: Path, expected: ModelConfig | None = None) -> Generator:
    state = load_checkpoint(path)
    if expected is not None:
        check_model_config(state["model_config"], expected, path)
    return generator_from_state(state)


def generator_from_state(state: dict) -> Generator:
    """Rebuild the generator from a checkpoint's hyper-parameters and weights, in eval mode."""
    generator = Generator(ModelConfig(**state["model_config"]))
    generator.load_state_dict(plain_state_dict(state["generator"]))
    return generator.eval()
