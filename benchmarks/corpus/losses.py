"""The GAN losses the corpus trains with, shared by the 2D and the digits trainers.

``d_real``/``d_fake`` are D's raw outputs (logits), or probabilities for ``bce_sigmoid`` (the
classic PyTorch DCGAN example's ``nn.Sigmoid`` + ``nn.BCELoss``, which clamps log at -100).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["LOSSES", "SIGMOID_LOSSES", "d_loss", "g_loss", "probability", "logged"]

LOSSES = ("ns", "sat", "bce_sigmoid", "wgan_clip", "wgan_gp", "hinge")
#: Losses whose D outputs read as probabilities (after a sigmoid).
SIGMOID_LOSSES = ("ns", "sat", "bce_sigmoid")


def d_loss(kind: str, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's (critic's) loss; a gradient penalty is added by the trainer."""
    ones, zeros = torch.ones_like(d_real), torch.zeros_like(d_fake)
    if kind in ("ns", "sat"):
        return (F.binary_cross_entropy_with_logits(d_real, ones)
                + F.binary_cross_entropy_with_logits(d_fake, zeros))
    if kind == "bce_sigmoid":
        return F.binary_cross_entropy(d_real, ones) + F.binary_cross_entropy(d_fake, zeros)
    if kind == "hinge":
        return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
    return d_fake.mean() - d_real.mean()  # Wasserstein


def g_loss(kind: str, d_fake: torch.Tensor) -> torch.Tensor:
    """The generator's loss: non-saturating, saturating (log(1 - D(G(z))), minimised), BCE on
    probabilities, or -D(G(z)) for the critics."""
    if kind == "ns":
        return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
    if kind == "sat":
        return -F.softplus(d_fake).mean()
    if kind == "bce_sigmoid":
        return F.binary_cross_entropy(d_fake, torch.ones_like(d_fake))
    return -d_fake.mean()


def probability(kind: str, d_out: torch.Tensor) -> torch.Tensor:
    """D's output as a probability (``bce_sigmoid`` D's already are)."""
    return d_out if kind == "bce_sigmoid" else torch.sigmoid(d_out)


def logged(kind: str, loss_d: torch.Tensor, loss_g: torch.Tensor, d_real: torch.Tensor,
           d_fake: torch.Tensor) -> dict[str, torch.Tensor]:
    """What a user of such code logs each step: the losses and D's mean outputs, as
    probabilities (``D_x``, ``D_G_z``) for the sigmoid losses, as raw scores for the critics."""
    out = {"loss_D": loss_d.detach(), "loss_G": loss_g.detach()}
    if kind in SIGMOID_LOSSES:
        out["D_x"] = probability(kind, d_real.detach()).mean()
        out["D_G_z"] = probability(kind, d_fake.detach()).mean()
    else:
        out["d_real_score"] = d_real.detach().mean()
        out["d_fake_score"] = d_fake.detach().mean()
    return out
