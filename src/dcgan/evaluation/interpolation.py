"""Latent-space walks: each row of the grid moves in equal steps from one random z to the next.

The rows chain through ``rows + 1`` random points, as the DCGAN paper's
interpolation figure walks through a series of random points. Smooth rows
suggest the generator has learned a continuous space; sudden jumps suggest
memorized samples.
"""

from __future__ import annotations

import torch


def latent_walk(nz: int, rows: int, steps: int, seed: int) -> torch.Tensor:
    """Return (rows × steps, nz) latent vectors; row r goes linearly from point r to point r + 1, both included."""
    points = torch.randn(rows + 1, nz, generator=torch.Generator().manual_seed(seed))
    weights = torch.linspace(0.0, 1.0, steps)[None, :, None]
    walk = points[:-1, None, :] * (1.0 - weights) + points[1:, None, :] * weights
    return walk.reshape(rows * steps, nz)


@torch.no_grad()
def interpolation_images(generator: torch.nn.Module, rows: int, steps: int, seed: int) -> torch.Tensor:
    """Generate the walk's images in [-1, 1] on the generator's device; returns them on the CPU."""
    device = next(generator.parameters()).device
    z = latent_walk(generator.cfg.nz, rows, steps, seed).to(device)
    return generator(z).cpu()
