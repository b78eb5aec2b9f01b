"""The corpus' configurations and their fixed split into a tuning set and a test set.

The split is by configuration, never by seed: every seed of a configuration is on the same side,
so a threshold tuned on the tuning set is judged on trainings it has never seen (other losses,
other architectures, other schedules). It was fixed before any detector threshold moved; a
configuration never changes sides. Each configuration is trained for :data:`SEEDS` seeds.

``intent`` says what the configuration was built to show; a run's label comes from what was
measured during its training (``labels.py``), never from the intent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["SEEDS", "Config", "CONFIGS", "by_name"]

SEEDS = (0, 1, 2, 3, 4)


@dataclass(frozen=True)
class Config:
    """One training configuration of the corpus."""

    name: str
    family: str  # gan_ring8, gan_grid25, gan_digits, classifier, deep_mlp, ssl
    runner: str  # gan2d, dcgan, classifier, deep_mlp, ssl
    split: str  # "tune" or "test"
    intent: str
    params: dict[str, Any] = field(default_factory=dict)


def _r8(name: str, split: str, intent: str, **params: Any) -> Config:
    return Config(name, "gan_ring8", "gan2d", split, intent, {"dataset": "ring8", **params})


_GRID = {"dataset": "grid25", "steps": 8000, "eval_every": 250, "g_hidden": 256,
         "d_hidden": 256, "d_depth": 3, "lr_g": 5e-4, "lr_d": 2e-3, "beta1": 0.5,
         "batch_size": 512}


def _g25(name: str, split: str, intent: str, **params: Any) -> Config:
    return Config(name, "gan_grid25", "gan2d", split, intent, {**_GRID, **params})


_DC = {"steps": 3000, "ch": 16, "eval_every": 100}
_HINGE = {"loss": "hinge", "spectral_norm": True, "lr_g": 5e-4, "lr_d": 5e-4, "beta1": 0.0,
          "beta2": 0.9}


def _dc(name: str, split: str, intent: str, **params: Any) -> Config:
    return Config(name, "gan_digits", "dcgan", split, intent, {**_DC, **params})


_PAC1 = {"pack": 1, "g_ema": 0.0}
_WGP = {"loss": "wgan_gp", "d_steps": 5, "lr_g": 1e-4, "lr_d": 1e-4, "beta1": 0.5, **_PAC1}

CONFIGS: list[Config] = [
    # --- ring of 8 Gaussians (3,000 steps, evaluation every 100) -------------------------
    _r8("r8_ns_pac2_ema", "tune", "healthy"),
    _r8("r8_wgan_gp", "tune", "healthy", **_WGP),
    _r8("r8_vanilla", "tune", "mode hopping", **_PAC1),
    _r8("r8_lrjump", "tune", "collapse after learning", pack=1, lr_d=3e-3, switch_step=1200,
        lr_g_after=3e-2),
    _r8("r8_dsteps5", "tune", "strong D", d_steps=5, **_PAC1),
    _r8("r8_lr1e-4", "tune", "slow learning", lr_g=1e-4, lr_d=1e-4),
    _r8("r8_zdim2", "tune", "healthy, small latent", z_dim=2),
    _r8("r8_dead_g", "tune", "dead generator", dead_g=True),
    _r8("r8_sgd_ramp", "tune", "blow-up", optimizer="sgd", lr_g=0.05, lr_d=0.05, g_ema=0.0,
        switch_step=1000, lr_growth=1.01, steps=2000),
    _r8("r8_bce_clamp", "tune", "D saturates (clamped BCE)", loss="bce_sigmoid", switch_step=1200,
        lr_d_after=0.05, **_PAC1),
    _r8("r8_sat", "test", "saturating loss", loss="sat"),
    _r8("r8_sat_pac1", "test", "saturating loss, no packing", loss="sat", **_PAC1),
    _r8("r8_hinge_sn", "test", "hinge + spectral norm", loss="hinge", spectral_norm=True,
        **_PAC1),
    _r8("r8_wgan_clip", "test", "WGAN, weight clipping", loss="wgan_clip", optimizer="rmsprop",
        lr_g=5e-5, lr_d=5e-5, d_steps=5, **_PAC1),
    _r8("r8_lr1e-2", "test", "high learning rate", lr_g=1e-2, lr_d=1e-2),
    _r8("r8_zdim64_pac1", "test", "large latent, no packing", z_dim=64, **_PAC1),
    _r8("r8_dsteps3_lrjump", "test", "collapse after learning", d_steps=3, pack=1,
        switch_step=1500, lr_g_after=2e-2),
    _r8("r8_dead_g_wgan", "test", "dead generator", dead_g=True, **_WGP),
    _r8("r8_sgd_jump", "test", "blow-up", optimizer="sgd", lr_g=0.05, lr_d=0.05, g_ema=0.0,
        switch_step=1000, lr_g_after=0.5, lr_d_after=0.5, steps=1500),
    _r8("r8_bce_clamp_early", "test", "D saturates (clamped BCE)", loss="bce_sigmoid",
        switch_step=300, lr_d_after=0.1, **_PAC1),
    # --- 5x5 grid of Gaussians (8,000 steps, evaluation every 250) -----------------------
    _g25("g25_big", "tune", "healthy", pack=2),
    _g25("g25_small", "tune", "partial collapse", pack=2, g_hidden=128, batch_size=256),
    _g25("g25_vanilla", "tune", "vanilla", **_PAC1),
    _g25("g25_hinge_sn", "test", "hinge + spectral norm", loss="hinge", spectral_norm=True,
         pack=2),
    _g25("g25_small_sat", "test", "saturating, small G", loss="sat", pack=2, g_hidden=128,
         batch_size=256),
    _g25("g25_lrjump", "test", "collapse after learning", pack=2, switch_step=6500,
         lr_g_after=2e-2),
    # --- DCGAN on 16x16 digits (3,000 steps, evaluation every 100) ------------------------
    _dc("dc_hinge_sn", "tune", "healthy", **_HINGE),
    _dc("dc_ns", "tune", "DCGAN recipe"),
    _dc("dc_lrjump", "tune", "collapse after learning", switch_step=1500, lr_g_after=2e-2),
    _dc("dc_dead_g", "tune", "dead generator", dead_g=True, steps=1500),
    _dc("dc_sat", "tune", "saturating loss", loss="sat"),
    _dc("dc_bce_clamp_hard", "tune", "D saturates (clamped BCE)", loss="bce_sigmoid",
        switch_step=500, lr_d_after=0.5),
    _dc("dc_hinge_sn_slow", "test", "healthy, lower learning rate",
        **{**_HINGE, "lr_g": 2e-4, "lr_d": 2e-4}),
    _dc("dc_bce_sigmoid", "test", "the classic example's sigmoid + BCELoss", loss="bce_sigmoid"),
    _dc("dc_bce_clamp", "test", "D saturates (clamped BCE)", loss="bce_sigmoid",
        switch_step=1000, lr_d_after=0.05),
    _dc("dc_wgan_gp", "test", "WGAN-GP", loss="wgan_gp", d_steps=2, lr_g=1e-4, lr_d=1e-4,
        beta1=0.0, beta2=0.9),
    _dc("dc_g_starved", "test", "D wins (G barely learns)", lr_g=1e-5),
    _dc("dc_sat_lrjump", "test", "collapse after learning", loss="sat", switch_step=2000,
        lr_g_after=5e-2),
    # --- beyond GANs ----------------------------------------------------------------------
    Config("clf_healthy", "classifier", "classifier", "tune", "healthy",
           {"steps": 1500, "lr": 0.05, "switch_step": 400, "lr_growth": 1.0}),
    Config("clf_lr_blowup", "classifier", "classifier", "tune", "blow-up",
           {"steps": 2000, "lr": 0.05, "switch_step": 400, "lr_growth": 1.03}),
    Config("clf_healthy_lr01", "classifier", "classifier", "test", "healthy",
           {"steps": 1500, "lr": 0.1, "switch_step": 400, "lr_growth": 1.0}),
    Config("clf_lr_blowup_fast", "classifier", "classifier", "test", "blow-up",
           {"steps": 2000, "lr": 0.02, "switch_step": 300, "lr_growth": 1.05}),
    Config("deep_sigmoid", "deep_mlp", "deep_mlp", "tune", "vanishing",
           {"steps": 1000, "depth": 12, "act": "sigmoid", "lr": 0.01}),
    Config("deep_relu", "deep_mlp", "deep_mlp", "tune", "healthy",
           {"steps": 1000, "depth": 12, "act": "relu", "lr": 0.01}),
    Config("deep_sigmoid_16", "deep_mlp", "deep_mlp", "test", "vanishing",
           {"steps": 1000, "depth": 16, "act": "sigmoid", "lr": 0.02}),
    Config("deep_relu_16", "deep_mlp", "deep_mlp", "test", "healthy",
           {"steps": 1000, "depth": 16, "act": "relu", "lr": 0.005}),
    Config("ssl_simsiam", "ssl", "ssl", "tune", "healthy",
           {"steps": 1500, "lr": 0.05, "eval_every": 50}),
    Config("ssl_no_stopgrad", "ssl", "ssl", "tune", "collapse",
           {"steps": 1500, "lr": 0.05, "eval_every": 50, "drop_stopgrad_at": 600}),
    Config("ssl_simsiam_lr01", "ssl", "ssl", "test", "healthy",
           {"steps": 1500, "lr": 0.1, "eval_every": 50}),
    Config("ssl_no_stopgrad_300", "ssl", "ssl", "test", "collapse",
           {"steps": 1500, "lr": 0.05, "eval_every": 50, "drop_stopgrad_at": 300}),
]


def by_name() -> dict[str, Config]:
    """The configurations keyed by name (names are unique)."""
    out = {c.name: c for c in CONFIGS}
    if len(out) != len(CONFIGS):
        raise RuntimeError("configuration names must be unique")
    return out
