"""Checkpoints that carry the model hyper-parameters and are written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import torch

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


def load_generator(path: Path) -> Generator:
    return generator_from_state(load_checkpoint(path))


def generator_from_state(state: dict) -> Generator:
    """Rebuild the generator from a checkpoint's hyper-parameters and weights, in eval mode."""
    generator = Generator(ModelConfig(**state["model_config"]))
    generator.load_state_dict(state["generator"])
    return generator.eval()
