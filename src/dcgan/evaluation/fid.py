"""Fréchet Inception Distance of two feature sets, through torchmetrics.

torchmetrics accumulates the sums in float64 and takes the trace of the
matrix square root from the eigenvalues of the covariance product. It
receives features rather than images, so one Inception pass serves FID and
KID alike.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from dcgan.errors import UserError


class TooFewSamples(UserError):
    """FID was requested on fewer images than the feature dimension."""


class PrecomputedFeatures(nn.Module):
    """Pass features through as float64, so a torchmetrics image metric can take features in place of images."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.double()


def check_counts(real_count: int, generated_count: int, num_features: int) -> None:
    """Raise TooFewSamples unless both sets have at least ``num_features`` images.

    With fewer images than features the covariance matrices are singular and
    FID is biased upwards by an amount that depends on the count.
    """
    if min(real_count, generated_count) < num_features:
        raise TooFewSamples(
            f"FID needs at least {num_features:,} real and {num_features:,} generated images (the Inception feature "
            f"dimension), got {real_count:,} real and {generated_count:,} generated; raise evaluate.<dataset>."
            "real_count and generated_count, or compare KID (kid_mean, kid_std), which is unbiased at small counts"
        )


def frechet_distance(real: torch.Tensor, generated: torch.Tensor, chunk: int = 1000) -> float:
    """Return the FID between two (N, D) feature sets, fed to torchmetrics ``chunk`` rows at a time."""
    num_features = real.shape[1]
    check_counts(real.shape[0], generated.shape[0], num_features)
    metric = FrechetInceptionDistance(feature=PrecomputedFeatures(num_features), reset_real_features=False)
    for rows in real.split(chunk):
        metric.update(rows, real=True)
    for rows in generated.split(chunk):
        metric.update(rows, real=False)
    return float(metric.compute())
