"""DCGAN generator and discriminator (Radford, Metz and Chintala, 2015, arXiv:1511.06434).

Both networks scale with the image size: every doubling of resolution past
4×4 adds one stride-2 block, so 32×32 has three and 64×64 has four.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters that fix the shapes of both networks; saved in every checkpoint."""

    nz: int
    ngf: int
    ndf: int
    image_size: int
    channels: int

    def __post_init__(self) -> None:
        if self.image_size < 16 or 2 ** int(math.log2(self.image_size)) != self.image_size:
            raise ValueError(f"image_size must be a power of two of at least 16, got {self.image_size}")

    @property
    def blocks(self) -> int:
        """Stride-2 blocks between 4×4 and the full resolution."""
        return int(math.log2(self.image_size)) - 2

    def to_dict(self) -> dict:
        return asdict(self)


class Generator(nn.Module):
    """Map z of shape (N, nz, 1, 1) to images in [-1, 1] of shape (N, C, S, S)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        width = cfg.ngf * 2 ** (cfg.blocks - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(cfg.nz, width, 4, 1, 0, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
        ]
        for _ in range(cfg.blocks - 1):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width // 2),
                nn.ReLU(True),
            ]
            width //= 2
        layers += [nn.ConvTranspose2d(width, cfg.channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        return self.main(z)


class Discriminator(nn.Module):
    """Map images of shape (N, C, S, S) to one real/fake logit each, shape (N,)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        width = cfg.ndf
        # No BatchNorm on the first layer, as in the paper.
        layers: list[nn.Module] = [
            nn.Conv2d(cfg.channels, width, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for _ in range(cfg.blocks - 1):
            layers += [
                nn.Conv2d(width, width * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width * 2),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            width *= 2
        layers.append(nn.Conv2d(width, 1, 4, 1, 0, bias=False))
        self.main = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.main(images).view(-1)


def init_weights(module: nn.Module) -> None:
    """Draw conv weights from N(0, 0.02) and BatchNorm scales from N(1, 0.02), as in the paper."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def build_models(cfg: ModelConfig) -> tuple[Generator, Discriminator]:
    generator, discriminator = Generator(cfg), Discriminator(cfg)
    generator.apply(init_weights)
    discriminator.apply(init_weights)
    return generator, discriminator
