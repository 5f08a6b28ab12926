"""Kernel Inception Distance (Bińkowski et al., 2018) of two feature sets, through torchmetrics.

KID is the unbiased squared MMD with the cubic polynomial kernel, averaged
over random subsets. It has no bias from small counts, so CPU runs that
score a few hundred images can still compare generators.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchmetrics.image.kid import KernelInceptionDistance

from dcgan.errors import UserError
from dcgan.evaluation.fid import PrecomputedFeatures

KERNEL = "polynomial, degree 3, gamma 1/features, coef 1"


@dataclass(frozen=True)
class KidScore:
    mean: float
    std: float
    subsets: int
    subset_size: int


def kernel_inception_distance(
    real: torch.Tensor, generated: torch.Tensor, subsets: int, subset_size: int, seed: int
) -> KidScore:
    """Return KID over ``subsets`` random subsets of min(subset_size, both counts) images, reproducible by ``seed``."""
    size = min(subset_size, real.shape[0], generated.shape[0])
    if size < 2:
        raise UserError(
            f"KID needs at least 2 real and 2 generated images, got {real.shape[0]} real and "
            f"{generated.shape[0]} generated; raise evaluate.<dataset>.real_count and generated_count"
        )
    metric = KernelInceptionDistance(
        feature=PrecomputedFeatures(real.shape[1]), subsets=subsets, subset_size=size, reset_real_features=False
    )
    metric.update(real, real=True)
    metric.update(generated, real=False)
    # torchmetrics draws the subsets with the global generator; fork it so the seed does not leak.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return KidScore(float(mean), float(std), subsets, size)
