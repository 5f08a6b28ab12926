"""Kernel Inception Distance (Bińkowski et al., 2018) of two feature sets, through torchmetrics.

KID is the unbiased squared MMD with the cubic polynomial kernel, averaged
over random subsets. It has no bias from small counts, so CPU runs that
score a few hundred images can still compare generators.
"""

from __future__ import annotations

import warnings
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
    """Return KID over ``subsets`` random subsets of ``subset_size`` images, reproducible by ``seed``.

    When a set has fewer than ``subset_size`` images, subsets take half the smaller
    count: subsets as large as the whole set would all be equal, and the standard
    deviation would be 0 whatever the data.
    """
    smaller = min(real.shape[0], generated.shape[0])
    size = subset_size if smaller >= subset_size else smaller // 2
    if size < 2:
        raise UserError(
            f"KID needs at least 4 real and 4 generated images, got {real.shape[0]} real and "
            f"{generated.shape[0]} generated; raise evaluate.<dataset>.real_count and generated_count"
        )
    with warnings.catch_warnings():
        # torchmetrics warns that KID keeps every feature in memory, but the caller has them all in memory already.
        warnings.filterwarnings("ignore", message=".*will save all extracted features", category=UserWarning)
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
