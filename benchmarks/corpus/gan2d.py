"""GANs on the 2D toy protocol (ring of 8 and 5x5 grid of Gaussians), in many variants.

One trainer, :func:`train`, covers the variants the corpus needs: the losses (non-saturating,
saturating, BCE on a sigmoid output as in the classic DCGAN example, WGAN with weight clipping
or gradient penalty, hinge), spectral normalisation of D, PacGAN packing, several D steps per
G step, optimisers and learning rates, the latent size, an EMA of G's weights, and scripted
faults (a learning-rate jump or ramp at ``switch_step``, a generator whose output ReLU is dead).

What is logged is what a user of such code logs: ``loss_D`` and ``loss_G`` every step, D's mean
outputs (``D_x``/``D_G_z`` probabilities for the sigmoid losses, raw ``d_real_score`` /
``d_fake_score`` for the critics), per-layer gradient norms from ``watch``, and every
``eval_every`` steps 512 generated and 512 real samples through three extractors:

- ``raw``: the 2D coordinates themselves;
- ``random``: a fixed, randomly initialised MLP 2-64-64 (ReLU), the same for every run;
- ``dfeat``: the discriminator's penultimate layer (its last hidden activations), which moves as
  D learns.

Ground truth every ``eval_every`` steps, from 2,500 samples of the evaluated generator (the EMA
when there is one), measured without any detector: modes captured and the high-quality share
(:func:`stethoscope.collector.examples.mixtures.mode_stats`), D's accuracy on 512 held-out real
and fake samples (sigmoid losses only), and whether G's weights moved since the last evaluation.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.corpus.losses import LOSSES, SIGMOID_LOSSES, d_loss, g_loss, logged, probability
from stethoscope.collector.examples.mixtures import (
    EVAL_SAMPLES,
    make_grid25,
    make_ring8,
    mode_stats,
)

__all__ = ["Gan2dConfig", "train", "LOSSES"]

EMBED_N = 512


@dataclass
class Gan2dConfig:
    """Every knob of a 2D GAN run (defaults: a healthy ring8 GAN)."""

    dataset: str = "ring8"
    steps: int = 3000
    batch_size: int = 256
    z_dim: int = 16
    g_hidden: int = 128
    g_depth: int = 3
    g_out_scale: float = 5.0
    d_hidden: int = 128
    d_depth: int = 2
    d_slope: float = 0.2
    loss: str = "ns"
    spectral_norm: bool = False
    pack: int = 2
    d_steps: int = 1
    optimizer: str = "adam"
    lr_g: float = 1e-3
    lr_d: float = 1e-3
    beta1: float = 0.0
    beta2: float = 0.9
    g_ema: float = 0.99
    gp_weight: float = 10.0
    clip: float = 0.01
    switch_step: int = -1
    lr_g_after: float = 0.0
    lr_d_after: float = 0.0
    lr_growth: float = 1.0
    dead_g: bool = False
    eval_every: int = 100
    nan_patience: int = 50

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.batch_size % max(1, self.pack):
            raise ValueError("batch_size must be a multiple of pack")


def _mlp(n_in: int, hidden: int, depth: int, n_out: int, slope: float,
         sn: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(depth):
        lin = nn.Linear(width, hidden)
        layers += [nn.utils.parametrizations.spectral_norm(lin) if sn else lin,
                   nn.LeakyReLU(slope) if slope else nn.ReLU()]
        width = hidden
    last = nn.Linear(width, n_out)
    layers.append(nn.utils.parametrizations.spectral_norm(last) if sn else last)
    return nn.Sequential(*layers)


class _DeadOutput(nn.Module):
    """A ReLU on G's output after a layer whose bias sits far below zero: the output is exactly
    0 and every gradient of G exactly 0 (a dead generator)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)


def random_extractor() -> nn.Sequential:
    """The fixed random-feature extractor (2 -> 64 -> 64, ReLU), identical for every run."""
    g = torch.Generator().manual_seed(20240607)
    net = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.empty_like(p).uniform_(-1, 1, generator=g) / math.sqrt(p.shape[-1]))
    return net.requires_grad_(False)


def train(cfg: Gan2dConfig, seed: int, rec: Any) -> dict[str, Any]:
    """Train one run, streaming to ``rec`` (a ``StreamRecorder``); returns the ground truth."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    mix = make_ring8() if cfg.dataset == "ring8" else make_grid25()
    centres = torch.tensor(mix.centres, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed + 1_000_003)

    def real_batch(n: int) -> torch.Tensor:
        idx = torch.randint(0, mix.n_modes, (n,), generator=gen)
        return centres[idx] + mix.std * torch.randn(n, 2, generator=gen)

    pack = max(1, cfg.pack)
    G = _mlp(cfg.z_dim, cfg.g_hidden, cfg.g_depth, 2, 0.0)
    if cfg.dead_g:
        with torch.no_grad():
            G[-1].bias.fill_(-50.0)
        G.append(_DeadOutput())
    D = _mlp(2 * pack, cfg.d_hidden, cfg.d_depth, 1, cfg.d_slope, cfg.spectral_norm)
    if cfg.loss == "bce_sigmoid":
        D.append(nn.Sigmoid())
    head = len(D) - (2 if cfg.loss == "bce_sigmoid" else 1)  # index of D's last Linear
    if cfg.optimizer == "adam":
        opt_g: torch.optim.Optimizer = torch.optim.Adam(G.parameters(), cfg.lr_g,
                                                        betas=(cfg.beta1, cfg.beta2))
        opt_d: torch.optim.Optimizer = torch.optim.Adam(D.parameters(), cfg.lr_d,
                                                        betas=(cfg.beta1, cfg.beta2))
    elif cfg.optimizer == "rmsprop":
        opt_g = torch.optim.RMSprop(G.parameters(), cfg.lr_g)
        opt_d = torch.optim.RMSprop(D.parameters(), cfg.lr_d)
    else:
        opt_g = torch.optim.SGD(G.parameters(), cfg.lr_g)
        opt_d = torch.optim.SGD(D.parameters(), cfg.lr_d)
    G_eval = G
    if cfg.g_ema > 0:
        G_eval = copy.deepcopy(G).requires_grad_(False)
    rec.watch(G, "G")
    rec.watch(D, "D")
    extractor = random_extractor()
    eval_z = torch.randn(EVAL_SAMPLES, cfg.z_dim, generator=gen)
    b = cfg.batch_size
    sigmoid_out = cfg.loss in SIGMOID_LOSSES

    def packed(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, 2 * pack)

    def d_features(x: torch.Tensor) -> torch.Tensor:
        first = D[0]
        h = F.linear(x, first.weight[:, :2], first.bias)  # one sample in the first pack slot
        return D[1:head](h)

    def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
        for group in opt.param_groups:
            group["lr"] = lr

    gt: dict[str, Any] = {"eval_steps": [], "modes": [], "high_quality": [],
                          "d_heldout_accuracy": [], "g_weight_change": []}
    first_nf: int | None = None
    stop_at = cfg.steps
    last_g = torch.cat([p.detach().flatten() for p in G.parameters()]).clone()
    base_lr = (cfg.lr_g, cfg.lr_d)
    for step in range(cfg.steps):
        if step == cfg.switch_step:
            if cfg.lr_g_after > 0:
                set_lr(opt_g, cfg.lr_g_after)
            if cfg.lr_d_after > 0:
                set_lr(opt_d, cfg.lr_d_after)
        if cfg.lr_growth != 1.0 and cfg.switch_step >= 0 and step >= cfg.switch_step:
            k = cfg.lr_growth ** (step - cfg.switch_step)
            set_lr(opt_g, base_lr[0] * k)
            set_lr(opt_d, base_lr[1] * k)
        for _ in range(cfg.d_steps):
            real = real_batch(b)
            with torch.no_grad():
                fake = cfg.g_out_scale * G(torch.randn(b, cfg.z_dim, generator=gen))
            d_real, d_fake = D(packed(real)), D(packed(fake))
            loss_d = d_loss(cfg.loss, d_real, d_fake)
            if cfg.loss == "wgan_gp":
                alpha = torch.rand(b // pack, 1, generator=gen)
                mid = (alpha * packed(real) + (1 - alpha) * packed(fake)).requires_grad_(True)
                grad = torch.autograd.grad(D(mid).sum(), mid, create_graph=True)[0]
                loss_d = loss_d + cfg.gp_weight * ((grad.norm(dim=1) - 1) ** 2).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            if cfg.loss == "wgan_clip":
                with torch.no_grad():
                    for p in D.parameters():
                        p.clamp_(-cfg.clip, cfg.clip)
        D.requires_grad_(False)
        fake = cfg.g_out_scale * G(torch.randn(b, cfg.z_dim, generator=gen))
        loss_g = g_loss(cfg.loss, D(packed(fake)))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        D.requires_grad_(True)
        if G_eval is not G:
            with torch.no_grad():
                torch._foreach_lerp_(list(G_eval.parameters()), list(G.parameters()),
                                     1.0 - cfg.g_ema)
        rec.log(step, **logged(cfg.loss, loss_d, loss_g, d_real, d_fake))
        if first_nf is None and not (torch.isfinite(loss_d) and torch.isfinite(loss_g)):
            first_nf = step
            stop_at = min(stop_at, step + 1 + cfg.nan_patience)
        last = step == stop_at - 1
        if step % cfg.eval_every == 0 or last:
            with torch.no_grad():
                samples = cfg.g_out_scale * G_eval(eval_z)
                s_np = samples.numpy()
                modes, hq = mode_stats(s_np, mix.centres, mix.std)
                real = real_batch(EMBED_N)
                fake = samples[:EMBED_N]
                rec.log_embeddings(step, fake=fake.numpy(), real=real.numpy(), name="raw")
                rec.log_embeddings(step, fake=extractor(fake).numpy(),
                                   real=extractor(real).numpy(), name="random")
                rec.log_embeddings(step, fake=d_features(fake).numpy(),
                                   real=d_features(real).numpy(), name="dfeat")
                acc = math.nan
                if sigmoid_out and torch.isfinite(samples).all():
                    held = real_batch(EMBED_N * pack)
                    pr = probability(cfg.loss, D(packed(held)))
                    pf = probability(cfg.loss, D(packed(samples[: EMBED_N * pack])))
                    acc = 0.5 * (float((pr > 0.5).float().mean())
                                 + float((pf < 0.5).float().mean()))
                now_g = torch.cat([p.detach().flatten() for p in G.parameters()])
                change = float((now_g - last_g).norm() / max(float(last_g.norm()), 1e-12))
                last_g = now_g.clone()
            gt["eval_steps"].append(step)
            gt["modes"].append(int(modes))
            gt["high_quality"].append(round(float(hq), 4))
            gt["d_heldout_accuracy"].append(None if not math.isfinite(acc) else round(acc, 4))
            gt["g_weight_change"].append(change if math.isfinite(change) else None)
        if step + 1 >= stop_at:
            break
    gt["n_modes"] = mix.n_modes
    gt["first_nonfinite_step"] = first_nf
    gt["fault_step"] = cfg.switch_step if cfg.switch_step >= 0 else None
    gt["steps_run"] = step + 1
    gt["config_full"] = asdict(cfg)
    return gt
