"""Sample grids and the training-progress GIF."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import save_image

from dcgan.errors import UserError


def save_sample_grid(fake: torch.Tensor, path: Path, nrow: int = 8) -> Path:
    """Save images in [-1, 1] as one grid PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(fake, path, nrow=nrow, normalize=True, value_range=(-1, 1), padding=2)
    return path


def save_progress_gif(grids: list[Path], path: Path, frame_ms: int = 400) -> Path:
    """Join the per-epoch fixed-noise grids into one looping GIF; the last frame stays longer."""
    if not grids:
        raise UserError("no per-epoch grids found for the training GIF; run the train stage again")
    frames = [Image.open(p).convert("RGB") for p in grids]
    durations = [frame_ms] * (len(frames) - 1) + [frame_ms * 5]
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return path
