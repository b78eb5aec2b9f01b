"""Convolutional DCGANs on scikit-learn's digits upscaled to 16x16, in several variants.

The networks follow Radford et al. 2016 at a small size: G maps z (32) through a linear layer
to 64x4x4 and two transposed convolutions (BatchNorm, ReLU) to a 1x16x16 tanh image; D has two
strided convolutions (LeakyReLU 0.2, BatchNorm on the second) and a 4x4 convolution to one logit.
Variants: the loss (non-saturating; saturating; the classic PyTorch example's ``nn.Sigmoid`` +
``nn.BCELoss``; WGAN-GP; hinge), spectral norm in D, several D steps, learning rates, and
scripted faults at ``switch_step`` (learning-rate jumps) or from the start (a dead generator).

Logged like a user of such code would: ``loss_D``, ``loss_G``, ``D_x``, ``D_G_z`` (probabilities
for the sigmoid losses, raw ``d_real_score``/``d_fake_score`` for the critics), per-layer gradient
norms, and every ``eval_every`` steps 512 generated and 512 real images through three extractors:
``random`` (a fixed random conv net), ``clf`` (the fixed classifier's penultimate layer) and
``dfeat`` (D's last hidden activations, average-pooled to 64-d). Ground truth every evaluation
from 2,500 samples (:func:`digits_data.judge`): digit classes covered by high-quality samples
and the high-quality share; D's held-out accuracy; whether G's weights moved.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from benchmarks.corpus.digits_data import clf_features, digits16, judge, random_conv
from benchmarks.corpus.losses import SIGMOID_LOSSES, d_loss, g_loss, logged, probability

__all__ = ["DcganConfig", "train"]

EVAL_SAMPLES = 2500
EMBED_N = 512


@dataclass
class DcganConfig:
    """Every knob of a digits DCGAN run (defaults: the healthy DCGAN recipe)."""

    steps: int = 3000
    batch_size: int = 64
    z_dim: int = 32
    ch: int = 32
    loss: str = "ns"
    spectral_norm: bool = False
    d_steps: int = 1
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    gp_weight: float = 10.0
    switch_step: int = -1
    lr_g_after: float = 0.0
    lr_d_after: float = 0.0
    dead_g: bool = False
    eval_every: int = 100
    nan_patience: int = 50


class Generator(nn.Module):
    def __init__(self, z_dim: int, ch: int = 32, dead: bool = False) -> None:
        super().__init__()
        self.ch = ch
        self.fc = nn.Linear(z_dim, 2 * ch * 4 * 4)
        self.main = nn.Sequential(
            nn.BatchNorm2d(2 * ch), nn.ReLU(),
            nn.ConvTranspose2d(2 * ch, ch, 4, 2, 1), nn.BatchNorm2d(ch), nn.ReLU(),
            nn.ConvTranspose2d(ch, 1, 4, 2, 1),
        )
        if dead:  # the output layer's bias far below zero: tanh is exactly -1, gradients 0
            with torch.no_grad():
                self.main[-1].bias.fill_(-50.0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.main(self.fc(z).reshape(-1, 2 * self.ch, 4, 4)))


class Discriminator(nn.Module):
    def __init__(self, ch: int = 32, sn: bool = False, sigmoid: bool = False) -> None:
        super().__init__()
        wrap = nn.utils.parametrizations.spectral_norm if sn else (lambda m: m)
        self.body = nn.Sequential(
            wrap(nn.Conv2d(1, ch, 4, 2, 1)), nn.LeakyReLU(0.2),
            wrap(nn.Conv2d(ch, 2 * ch, 4, 2, 1)),
            nn.Identity() if sn else nn.BatchNorm2d(2 * ch), nn.LeakyReLU(0.2),
        )
        self.head = wrap(nn.Conv2d(2 * ch, 1, 4, 1, 0))
        self.sigmoid = sigmoid

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """D's last hidden activations, average-pooled to 2 x ch (the ``dfeat`` extractor)."""
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.body(x)).reshape(-1, 1)
        return torch.sigmoid(out) if self.sigmoid else out


def train(cfg: DcganConfig, seed: int, rec: Any) -> dict[str, Any]:
    """Train one run, streaming to ``rec``; returns the ground truth."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 17)
    x_all, _ = digits16()
    G = Generator(cfg.z_dim, cfg.ch, cfg.dead_g)
    D = Discriminator(cfg.ch, cfg.spectral_norm, sigmoid=cfg.loss == "bce_sigmoid")
    opt_g = torch.optim.Adam(G.parameters(), cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    rec.watch(G, "G")
    rec.watch(D, "D")
    b = cfg.batch_size
    eval_z = torch.randn(EVAL_SAMPLES, cfg.z_dim, generator=gen)
    sigmoid_out = cfg.loss in SIGMOID_LOSSES

    gt: dict[str, Any] = {"eval_steps": [], "modes": [], "high_quality": [], "class_counts": [],
                          "d_heldout_accuracy": [], "g_weight_change": []}
    first_nf: int | None = None
    stop_at = cfg.steps
    last_g = torch.cat([p.detach().flatten() for p in G.parameters()]).clone()
    step = 0
    for step in range(cfg.steps):
        if step == cfg.switch_step:
            for opt, lr in ((opt_g, cfg.lr_g_after), (opt_d, cfg.lr_d_after)):
                if lr > 0:
                    for group in opt.param_groups:
                        group["lr"] = lr
        G.train()
        for _ in range(cfg.d_steps):
            real = x_all[torch.randint(0, len(x_all), (b,), generator=gen)]
            with torch.no_grad():
                fake = G(torch.randn(b, cfg.z_dim, generator=gen))
            d_real, d_fake = D(real), D(fake)
            loss_d = d_loss(cfg.loss, d_real, d_fake)
            if cfg.loss == "wgan_gp":
                alpha = torch.rand(b, 1, 1, 1, generator=gen)
                mid = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
                grad = torch.autograd.grad(D(mid).sum(), mid, create_graph=True)[0]
                loss_d = loss_d + cfg.gp_weight * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        D.requires_grad_(False)
        loss_g = g_loss(cfg.loss, D(G(torch.randn(b, cfg.z_dim, generator=gen))))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        D.requires_grad_(True)
        rec.log(step, **logged(cfg.loss, loss_d, loss_g, d_real, d_fake))
        if first_nf is None and not (torch.isfinite(loss_d) and torch.isfinite(loss_g)):
            first_nf = step
            stop_at = min(stop_at, step + 1 + cfg.nan_patience)
        if step % cfg.eval_every == 0 or step == stop_at - 1:
            G.eval()
            D.eval()
            with torch.no_grad():
                samples = G(eval_z)
                covered, hq, counts = judge(samples)
                fake = samples[:EMBED_N]
                real = x_all[torch.randint(0, len(x_all), (EMBED_N,), generator=gen)]
                rec.log_embeddings(step, fake=random_conv()(fake).numpy(),
                                   real=random_conv()(real).numpy(), name="random")
                rec.log_embeddings(step, fake=clf_features(fake).numpy(),
                                   real=clf_features(real).numpy(), name="clf")
                rec.log_embeddings(step, fake=D.features(fake).numpy(),
                                   real=D.features(real).numpy(), name="dfeat")
                acc = math.nan
                if sigmoid_out and torch.isfinite(samples).all():
                    pr = probability(cfg.loss, D(x_all[torch.randint(0, len(x_all), (EMBED_N,), generator=gen)]))
                    pf = probability(cfg.loss, D(samples[EMBED_N: 2 * EMBED_N]))
                    acc = 0.5 * (float((pr > 0.5).float().mean())
                                 + float((pf < 0.5).float().mean()))
                now_g = torch.cat([p.detach().flatten() for p in G.parameters()])
                change = float((now_g - last_g).norm() / max(float(last_g.norm()), 1e-12))
                last_g = now_g.clone()
            D.train()
            gt["eval_steps"].append(step)
            gt["modes"].append(covered)
            gt["high_quality"].append(round(hq, 4))
            gt["class_counts"].append(counts)
            gt["d_heldout_accuracy"].append(None if not math.isfinite(acc) else round(acc, 4))
            gt["g_weight_change"].append(change if math.isfinite(change) else None)
        if step + 1 >= stop_at:
            break
    gt["n_modes"] = 10
    gt["first_nonfinite_step"] = first_nf
    gt["fault_step"] = cfg.switch_step if cfg.switch_step >= 0 else None
    gt["steps_run"] = step + 1
    gt["config_full"] = asdict(cfg)
    return gt
