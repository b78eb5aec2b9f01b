"""Small MLP GAN on a 2D Gaussian mixture: healthy, collapsing and diverging demo trainings.

Run it against a Stethoscope server::

    python -m stethoscope.collector.examples.gan_mixture --run NAME \
        --scenario {healthy,collapse,diverge} [--steps N] [--seed S] [--server URL] \
        [--dataset ring8|grid25] [--speed STEPS_PER_S | --step-delay SECONDS] [--lr-g ...]

The training itself is :func:`train`, which needs no collector (``monitor=None``); only
:func:`main` imports ``stethoscope.collector.Monitor``. Every 100 steps the ground truth of
:mod:`stethoscope.collector.examples.mixtures` (modes captured, high-quality share over 2,500
samples; a mode counts with >= 1 % of the samples on it) is logged as ``gt/modes_captured`` and
``gt/high_quality`` beside 512 fake and 512 real points for the embedding detectors.

Scenarios (defaults in ``SCENARIOS``, all on one CPU thread, batch 256, G 16-128-128-128-2 ReLU,
D 128-128 LeakyReLU(0.2), non-saturating BCE loss):

- ``healthy``: PacGAN packing of 2 (Lin et al. 2018), Adam(lr 1e-3 both, betas (0, 0.9)),
  fakes drawn from an EMA of G's weights (decay 0.99). All 8 ring modes by step 800-900 and kept
  to the end; D loss stays near its equilibrium 2 ln 2 (about 1.35, no spikes).
- ``collapse``: no packing and a 3x faster D (lr 3e-3); it learns the ring (7-8 modes by
  step 700-900), then at step 1200 G's learning rate jumps to 3e-2 (a bad schedule) and G falls
  onto one point of the ring within 100 steps: onset at the step-1300 evaluation, 0-1 modes to
  the end, D wins (D loss about 0.3-0.6, G loss spikes to tens or hundreds). Without the jump
  this configuration stays healthy.
- ``diverge``: plain SGD (lr 0.05, no momentum) for 1000 calm steps, then the learning rates jump
  to 0.5: the weights overflow and the losses are Inf/NaN 2-3 steps later. Training goes on for
  ``nan_patience`` (50) steps so the NaNs reach the dashboard, then stops.

Measured on this machine (2 shared CPU cores) with
``python -c "from stethoscope.collector.examples.gan_mixture import measure; measure()"``;
modes captured (of 8) at steps 500 800 1000 1200 1300 1500 2000:

| scenario | seed | steps run | modes at 500..2000 | final | first >= 7 | collapse onset | first NaN | final hq | wall s |
|---|---|---|---|---|---|---|---|---|---|
| healthy | 0 | 3000 | 0 8 8 8 8 8 8 | 8 | 800 | - | - | 0.90 | 11.1 |
| healthy | 1 | 3000 | 0 7 8 8 8 8 8 | 8 | 800 | - | - | 0.84 | 10.7 |
| healthy | 2 | 3000 | 0 6 8 8 8 8 8 | 8 | 900 | - | - | 0.88 | 10.8 |
| collapse | 0 | 2500 | 1 6 8 7 0 0 0 | 1 | 900 | 1300 | - | 1.00 | 11.1 |
| collapse | 1 | 2500 | 0 7 8 8 0 0 1 | 1 | 800 | 1300 | - | 1.00 | 10.4 |
| collapse | 2 | 2500 | 1 8 8 7 0 0 0 | 0 | 700 | 1300 | - | 0.00 | 11.3 |
| diverge | 0 | 1053 | 0 0 0 | 0 | - | - | 1002 | 0.00 | 2.7 |
| diverge | 1 | 1053 | 0 0 0 | 0 | - | - | 1002 | 0.00 | 2.5 |
| diverge | 2 | 1054 | 0 0 0 | 0 | - | - | 1003 | 0.00 | 2.7 |

(The collapse row with final hq 0.00 sits on the ring between two centres, so it is collapsed
but scores no mode.) Wall times are unpaced; ``--speed 25`` stretches a healthy run to two
minutes for a live dashboard.

What it took, for the record: with pack 1 and no EMA the raw G mode-hops around the ring from the
start (0-1 modes throughout); with packing but without the EMA it covers the ring but only about
half of its samples are within 3 std (0.06) of a centre, so the count flickers; G's output
gain of 5 removes a 500-step stall at the origin; Adam beta1 = 0 gave calmer losses and faster
coverage than 0.5.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from stethoscope.collector.examples.mixtures import (
    EVAL_SAMPLES,
    Mixture,
    make_grid25,
    make_ring8,
    mode_stats,
)

__all__ = [
    "SCENARIOS",
    "GanConfig",
    "TrainResult",
    "build_parser",
    "config_for",
    "main",
    "measure",
    "train",
]


class MonitorLike(Protocol):
    """The part of ``stethoscope.collector.Monitor`` the training uses (kept structural so the
    training runs, and is testable, without the collector)."""

    def watch(self, module: nn.Module, name: str) -> Any: ...

    def log(self, step: int, **scalars: Any) -> Any: ...

    def log_embeddings(self, step: int, **arrays: Any) -> Any: ...


@dataclass
class GanConfig:
    """Every knob of the demo training. The defaults are the measured ``healthy`` configuration;
    ``SCENARIOS`` holds what the other scenarios change."""

    scenario: str = "healthy"
    dataset: str = "ring8"
    steps: int = 3000
    seed: int = 0
    batch_size: int = 256
    z_dim: int = 16
    g_hidden: int = 128
    g_depth: int = 3
    #: G's output is multiplied by this, so the first fakes spread over the data's scale instead of
    #: sitting at the ring's centre, where its symmetry gives D (and so G) almost no gradient.
    g_out_scale: float = 5.0
    d_hidden: int = 128
    d_depth: int = 2
    #: LeakyReLU slope in D (0 = ReLU); G uses ReLU.
    d_slope: float = 0.2
    #: PacGAN packing degree: D judges ``pack`` samples jointly (Lin et al. 2018); 1 = off.
    pack: int = 2
    optimizer: str = "adam"
    lr_g: float = 1e-3
    lr_d: float = 1e-3
    beta1: float = 0.0
    beta2: float = 0.9
    momentum: float = 0.0
    #: Decay of the exponential moving average of G's weights used for evaluation and the logged
    #: fakes (Yazici et al. 2019; Karras et al. 2018); 0 = evaluate the raw G.
    g_ema: float = 0.99
    #: At this step the learning rates are set to ``lr_g_after`` / ``lr_d_after`` (when > 0):
    #: the scripted fault of the ``collapse`` and ``diverge`` scenarios. -1 = never.
    switch_step: int = -1
    lr_g_after: float = 0.0
    lr_d_after: float = 0.0
    eval_every: int = 100
    embed_n: int = 512
    nan_patience: int = 50
    step_delay: float = 0.0
    speed: float = 0.0


# What each scenario changes relative to the GanConfig defaults (chosen from the measurements in
# the module docstring).
SCENARIOS: dict[str, dict[str, Any]] = {
    "healthy": {},
    "collapse": {
        "steps": 2500,
        "pack": 1,
        "lr_d": 3e-3,
        "switch_step": 1200,
        "lr_g_after": 3e-2,
    },
    "diverge": {
        "steps": 1500,
        "optimizer": "sgd",
        "lr_g": 0.05,
        "lr_d": 0.05,
        "g_ema": 0.0,
        "switch_step": 1000,
        "lr_g_after": 0.5,
        "lr_d_after": 0.5,
    },
}


def config_for(scenario: str, **overrides: Any) -> GanConfig:
    """The measured default configuration of ``scenario`` with ``overrides`` applied on top."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {sorted(SCENARIOS)}")
    values: dict[str, Any] = {"scenario": scenario, **SCENARIOS[scenario]}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return GanConfig(**values)


@dataclass
class TrainResult:
    """What a training did, for tests and for the measurement table.

    ``losses_d`` / ``losses_g`` hold one value per step run; ``eval_steps``, ``modes`` and
    ``high_quality`` hold the ground-truth evaluations (every ``eval_every`` steps and the last
    step). ``first_nonfinite_step`` is the first step whose losses were NaN/Inf (or None).
    """

    config: GanConfig
    steps_run: int
    losses_d: np.ndarray
    losses_g: np.ndarray
    eval_steps: list[int] = field(default_factory=list)
    modes: list[int] = field(default_factory=list)
    high_quality: list[float] = field(default_factory=list)
    first_nonfinite_step: int | None = None
    wall_s: float = 0.0

    @property
    def final_modes(self) -> int:
        """Modes captured at the last evaluation."""
        return self.modes[-1] if self.modes else 0

    def collapse_onset(self, peak_min: int = 6, low_max: int = 3) -> int | None:
        """First evaluated step at which the mode count fell to ``<= low_max`` after it had
        reached ``>= peak_min`` (None when that never happened)."""
        seen_peak = False
        for step, m in zip(self.eval_steps, self.modes, strict=True):
            seen_peak = seen_peak or m >= peak_min
            if seen_peak and m <= low_max:
                return step
        return None


def _mixture(name: str) -> Mixture:
    if name == "ring8":
        return make_ring8()
    if name == "grid25":
        return make_grid25()
    raise ValueError(f"unknown dataset {name!r}; expected ring8 or grid25")


def _mlp(n_in: int, hidden: int, depth: int, n_out: int, slope: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.LeakyReLU(slope) if slope else nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def train(
    config: GanConfig,
    monitor: MonitorLike | None = None,
    on_step: Callable[[int, dict[str, float]], bool | None] | None = None,
) -> TrainResult:
    """Train the GAN described by ``config`` on CPU and return what happened.

    ``monitor`` (optional) receives the models via ``watch``, the per-step losses and D outputs via
    ``log`` (0-d tensors), the ground truth ``gt/modes_captured`` and ``gt/high_quality`` and the
    fake/real embedding batches every ``eval_every`` steps. ``on_step(step, scalars)`` is called
    after every step with plain floats; returning True stops the training early.
    Training stops ``nan_patience`` steps after the first non-finite loss (nothing is learnt after
    that, but the NaNs keep streaming for a while so a dashboard shows them).
    """
    torch.set_num_threads(1)
    torch.manual_seed(config.seed)
    mix = _mixture(config.dataset)
    centres = torch.tensor(mix.centres, dtype=torch.float32)
    gen = torch.Generator().manual_seed(config.seed + 1_000_003)

    def real_batch(n: int) -> torch.Tensor:
        idx = torch.randint(0, mix.n_modes, (n,), generator=gen)
        return centres[idx] + mix.std * torch.randn(n, 2, generator=gen)

    pack = max(1, config.pack)
    if config.batch_size % pack:
        raise ValueError("batch_size must be a multiple of pack")
    G = _mlp(config.z_dim, config.g_hidden, config.g_depth, 2)
    D = _mlp(2 * pack, config.d_hidden, config.d_depth, 1, config.d_slope)
    if config.optimizer == "adam":
        opt_g: torch.optim.Optimizer = torch.optim.Adam(
            G.parameters(), lr=config.lr_g, betas=(config.beta1, config.beta2)
        )
        opt_d: torch.optim.Optimizer = torch.optim.Adam(
            D.parameters(), lr=config.lr_d, betas=(config.beta1, config.beta2)
        )
    elif config.optimizer == "sgd":
        opt_g = torch.optim.SGD(G.parameters(), lr=config.lr_g, momentum=config.momentum)
        opt_d = torch.optim.SGD(D.parameters(), lr=config.lr_d, momentum=config.momentum)
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}")

    G_eval = G
    if config.g_ema > 0:
        G_eval = copy.deepcopy(G).requires_grad_(False)
        ema_params = list(G_eval.parameters())
        live_params = list(G.parameters())

    handles: list[Any] = []
    if monitor is not None:
        handles = [monitor.watch(G, name="G"), monitor.watch(D, name="D")]

    def packed(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, 2 * pack)

    eval_z = torch.randn(EVAL_SAMPLES, config.z_dim, generator=gen)
    result = TrainResult(config=config, steps_run=0, losses_d=np.empty(0), losses_g=np.empty(0))
    loss_d_hist: list[torch.Tensor] = []
    loss_g_hist: list[torch.Tensor] = []
    b = config.batch_size
    ones = torch.ones(b // pack, 1)
    zeros = torch.zeros(b // pack, 1)
    stop_at = config.steps
    t0 = time.perf_counter()
    try:
        for step in range(config.steps):
            if step == config.switch_step:
                for opt, lr in ((opt_g, config.lr_g_after), (opt_d, config.lr_d_after)):
                    if lr > 0:
                        for group in opt.param_groups:
                            group["lr"] = lr
            real = real_batch(b)
            fake = config.g_out_scale * G(torch.randn(b, config.z_dim, generator=gen))

            d_real = D(packed(real))
            d_fake = D(packed(fake.detach()))
            loss_d = F.binary_cross_entropy_with_logits(
                d_real, ones
            ) + F.binary_cross_entropy_with_logits(d_fake, zeros)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()

            D.requires_grad_(False)
            loss_g = F.binary_cross_entropy_with_logits(D(packed(fake)), ones)  # non-saturating
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            D.requires_grad_(True)
            if G_eval is not G:
                with torch.no_grad():
                    torch._foreach_lerp_(ema_params, live_params, 1.0 - config.g_ema)

            loss_d = loss_d.detach()
            loss_g = loss_g.detach()
            d_x = torch.sigmoid(d_real.detach()).mean()
            d_g_z = torch.sigmoid(d_fake.detach()).mean()
            loss_d_hist.append(loss_d)
            loss_g_hist.append(loss_g)
            if monitor is not None:
                monitor.log(step, loss_D=loss_d, loss_G=loss_g, D_x=d_x, D_G_z=d_g_z)

            scalars: dict[str, float] = {}
            last = step == stop_at - 1
            if step % config.eval_every == 0 or last:
                with torch.no_grad():
                    samples = (config.g_out_scale * G_eval(eval_z)).numpy()
                modes, hq = mode_stats(samples, mix.centres, mix.std)
                result.eval_steps.append(step)
                result.modes.append(modes)
                result.high_quality.append(hq)
                scalars = {"gt/modes_captured": float(modes), "gt/high_quality": hq}
                if monitor is not None:
                    monitor.log(step, **scalars)
                    monitor.log_embeddings(
                        step,
                        fake=samples[: config.embed_n].copy(),
                        real=real_batch(config.embed_n).numpy(),
                    )

            if result.first_nonfinite_step is None and not (
                torch.isfinite(loss_d) and torch.isfinite(loss_g)
            ):
                result.first_nonfinite_step = step
                stop_at = min(stop_at, step + 1 + config.nan_patience)

            if on_step is not None:
                scalars.update(
                    loss_D=float(loss_d),
                    loss_G=float(loss_g),
                    D_x=float(d_x),
                    D_G_z=float(d_g_z),
                )
                if on_step(step, scalars):
                    stop_at = step + 1
            result.steps_run = step + 1
            if step + 1 >= stop_at:
                break

            if config.speed > 0:
                delay = t0 + (step + 1) / config.speed - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            elif config.step_delay > 0:
                time.sleep(config.step_delay)
    finally:
        for h in handles:
            remove = getattr(h, "remove", None)
            if callable(remove):
                remove()
    if result.eval_steps and result.eval_steps[-1] != result.steps_run - 1:
        with torch.no_grad():
            samples = (config.g_out_scale * G_eval(eval_z)).numpy()
        modes, hq = mode_stats(samples, mix.centres, mix.std)
        result.eval_steps.append(result.steps_run - 1)
        result.modes.append(modes)
        result.high_quality.append(hq)
    result.wall_s = time.perf_counter() - t0
    result.losses_d = torch.stack(loss_d_hist).numpy().astype(np.float64)
    result.losses_g = torch.stack(loss_g_hist).numpy().astype(np.float64)
    return result


def measure(
    scenarios: tuple[str, ...] = ("healthy", "collapse", "diverge"),
    seeds: tuple[int, ...] = (0, 1, 2),
    checkpoints: tuple[int, ...] = (500, 800, 1000, 1200, 1300, 1500, 2000),
) -> list[str]:
    """Train every scenario at its defaults for each seed (no monitor) and print one table row
    each: modes captured at ``checkpoints`` and at the end, first step with >= 7 modes, collapse
    onset, first non-finite step, final high-quality share and wall time. This is the command
    behind the table in the module docstring."""
    rows = []
    for scenario in scenarios:
        for seed in seeds:
            r = train(config_for(scenario, seed=seed))
            at = dict(zip(r.eval_steps, r.modes, strict=True))
            traj = " ".join(f"{at[c]}" if c in at else "-" for c in checkpoints)
            first7 = next((st for st, m in zip(r.eval_steps, r.modes, strict=True) if m >= 7), None)
            row = (
                f"| {scenario} | {seed} | {r.steps_run} | {traj} | {r.final_modes} | {first7} | "
                f"{r.collapse_onset()} | {r.first_nonfinite_step} | {r.high_quality[-1]:.2f} | "
                f"{r.wall_s:.1f} |"
            )
            print(row, flush=True)
            rows.append(row)
    return rows


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface; every GanConfig field not given falls back to the scenario."""
    p = argparse.ArgumentParser(
        prog="python -m stethoscope.collector.examples.gan_mixture",
        description="Train a small GAN on a 2D Gaussian mixture and stream it to Stethoscope.",
    )
    p.add_argument("--run", required=True, help="run name shown on the dashboard")
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="healthy")
    p.add_argument("--server", default="http://127.0.0.1:8765", help="Stethoscope server URL")
    p.add_argument("--dataset", choices=["ring8", "grid25"], default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--lr-g", dest="lr_g", type=float, default=None)
    p.add_argument("--lr-d", dest="lr_d", type=float, default=None)
    p.add_argument("--beta1", type=float, default=None)
    p.add_argument("--beta2", type=float, default=None)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=None)
    p.add_argument("--z-dim", dest="z_dim", type=int, default=None)
    p.add_argument("--pack", type=int, default=None, help="PacGAN packing degree (1 = none)")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default=None)
    p.add_argument(
        "--g-ema", dest="g_ema", type=float, default=None, help="EMA decay of G (0 = off)"
    )
    p.add_argument("--switch-step", dest="switch_step", type=int, default=None)
    p.add_argument("--lr-g-after", dest="lr_g_after", type=float, default=None)
    p.add_argument("--lr-d-after", dest="lr_d_after", type=float, default=None)
    p.add_argument("--eval-every", dest="eval_every", type=int, default=None)
    pace = p.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed", type=float, default=None, help="pace to this many steps per second (0 = free)"
    )
    pace.add_argument(
        "--step-delay", dest="step_delay", type=float, default=None, help="sleep per step (s)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, train with a live ``Monitor`` attached, print a one-line summary."""
    args = build_parser().parse_args(argv)
    names = {f.name for f in fields(GanConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in names and k != "scenario"}
    config = config_for(args.scenario, **overrides)

    from stethoscope.collector import Monitor  # imported here: the training runs without it

    mon = Monitor(run=args.run, server=args.server, config={**asdict(config), "run": args.run})
    try:
        result = train(config, monitor=mon)
    except KeyboardInterrupt:  # Ctrl-C: stop cleanly, keep what was recorded
        mon.close(status="failed")
        print(f"{args.run}: stopped")
        return 130
    mon.close(status="failed" if result.first_nonfinite_step is not None else "finished")
    print(
        f"{args.run}: scenario={config.scenario} steps={result.steps_run} "
        f"modes={result.modes[-1] if result.modes else 'n/a'} "
        f"first_nonfinite={result.first_nonfinite_step} wall={result.wall_s:.1f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
