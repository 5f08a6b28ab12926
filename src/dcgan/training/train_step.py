"""One DCGAN update: the discriminator on real and fake, then the generator."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def train_step(
    generator: nn.Module,
    discriminator: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    real: torch.Tensor,
    z: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Update D, then G, on one batch; return detached losses and mean D outputs, still on the device."""
    ones = torch.ones(real.shape[0], device=real.device)
    zeros = torch.zeros(real.shape[0], device=real.device)

    # Update D: maximize log D(x) + log(1 - D(G(z))), as cross-entropy on logits.
    opt_d.zero_grad(set_to_none=True)
    logits_real = discriminator(real)
    fake = generator(z)
    logits_fake = discriminator(fake.detach())
    loss_d = F.binary_cross_entropy_with_logits(logits_real, ones) + F.binary_cross_entropy_with_logits(
        logits_fake, zeros
    )
    loss_d.backward()
    opt_d.step()

    # Update G with the non-saturating loss: maximize log D(G(z)).
    opt_g.zero_grad(set_to_none=True)
    logits_gen = discriminator(fake)
    loss_g = F.binary_cross_entropy_with_logits(logits_gen, ones)
    loss_g.backward()
    opt_g.step()

    return {
        "loss_d": loss_d.detach(),
        "loss_g": loss_g.detach(),
        "d_real": torch.sigmoid(logits_real.detach()).mean(),
        "d_fake": torch.sigmoid(logits_fake.detach()).mean(),
    }
