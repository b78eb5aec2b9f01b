"""Record the scenario suite: small real CPU trainings, streamed as the collector would stream them.

Usage (from the repository root; about 10 minutes on one core)::

    .venv/bin/python benchmarks/scenarios/record.py            # every scenario, every seed
    .venv/bin/python benchmarks/scenarios/record.py --only ring8 --seeds 0 1

Each run is trained with a :class:`scenario_io.StreamRecorder` standing in for the collector's
``Monitor``: per-step scalars, per-layer gradient norms every 10 steps, fake/real embeddings every
evaluation, and ground truth measured independently of every detector. Output:
``benchmarks/scenarios/recorded/<run_id>.npz`` and ``manifest.json`` (format in
:mod:`scenario_io`). Replay with ``evaluate.py``.

Families (``FAMILY`` below; configurations and their intent in ``SCENARIOS``):

- ``gan_ring8`` / ``gan_grid25``: the MLP GAN of ``stethoscope.collector.examples.gan_mixture``.
  Ground truth every 100 steps on 2,500 samples of the (EMA) generator: modes captured and
  high-quality share (VEEGAN/PacGAN protocol, ``mixtures.mode_stats``), and the discriminator's
  accuracy on 512 held-out real and fake points (threshold 0.5).
- ``gan_digits``: an MLP GAN on scikit-learn's 8x8 digits. Embeddings from a fixed classifier
  (MLP 64-64-10 trained once on all digits, seed 0; its 64-d penultimate ReLU layer) for both fakes
  and reals, plus the discriminator's 64-d penultimate layer (set ``dfeat``). Ground truth: digit
  classes covered by 2,500 generated samples per that classifier (a class counts with >= 2 % of the
  samples; uniform is 10 %).
- ``classifier``: an MLP on digits; the bad twin's learning rate grows 1 % per step from step 400
  (a broken schedule). Ground truth: held-out loss every 25 steps; blow-up onset = first held-out
  loss above 2x its best; first non-finite training loss.
- ``deep_mlp``: a 12-layer sigmoid MLP with default init (bad) vs ReLU + Kaiming init (healthy).
  Ground truth: relative change of the first and last layers' weights since step 0 and held-out
  accuracy every 100 steps.
- ``ssl``: SimSiam-style self-supervised encoder on digits (noise + masking views). The bad twin
  drops the stop-gradient at step 600, after which the representation collapses. Embeddings of a
  fixed batch of 256 held-out digits are logged as ``fake`` with NO ``real``. Ground truth every
  50 steps on 512 held-out digits: effective rank (Roy & Vetterli 2007) of the embeddings and the
  std of the l2-normalised outputs (SimSiam's collapse indicator; ~1/sqrt(d) when healthy).

Collapse onset (every family with embeddings): the first evaluation at which the measured
diversity (modes, classes or effective rank) is at most half of its running peak, the peak being
at least 4 (modes/classes) or 2 (rank), and stays so at the next evaluation (one-off flickers are
not a collapse).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scenario_io import GroundTruth, StreamRecorder, save_run  # noqa: E402

from stethoscope.collector.examples import gan_mixture  # noqa: E402
from stethoscope.collector.examples.mixtures import EVAL_SAMPLES  # noqa: E402

OUT_DIR = Path(__file__).resolve().parent / "recorded"
GRAD_EVERY = 10


# --------------------------------------------------------------------------- ground truth helpers
def collapse_onset(
    steps: list[int], diversity: list[float], min_peak: float, persist: int = 2
) -> int | None:
    """First step where ``diversity`` <= half its running peak (peak >= ``min_peak``) for
    ``persist`` evaluations in a row; None if never."""
    peak = -math.inf
    run_start: int | None = None
    run_len = 0
    for step, d in zip(steps, diversity, strict=True):
        if peak >= min_peak and d <= peak / 2:
            run_start = step if run_len == 0 else run_start
            run_len += 1
            if run_len >= persist:
                return run_start
        else:
            run_len = 0
        peak = max(peak, d)
    return None


def effective_rank(x: np.ndarray) -> float:
    """exp(entropy of the normalised singular values) of the centred matrix (Roy & Vetterli)."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0)
    s = np.linalg.svd(x, compute_uv=False)
    if not np.isfinite(s).all() or s.sum() <= 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


# --------------------------------------------------------------------------- GANs on mixtures
def _ring_probe(pack: int) -> Callable[[int, StreamRecorder], dict[str, float]]:
    """Held-out accuracy of the watched D on the last logged real and fake points."""

    def probe(step: int, rec: StreamRecorder) -> dict[str, float]:
        D = rec.modules["D"]
        entry = rec.embeddings["main"]
        real = torch.as_tensor(entry["real"][-1], dtype=torch.float32)
        fake = torch.as_tensor(entry["fake"][-1], dtype=torch.float32)
        with torch.no_grad():
            pr = torch.sigmoid(D(real.reshape(-1, 2 * pack)))
            pf = torch.sigmoid(D(fake.reshape(-1, 2 * pack)))
        acc = 0.5 * (float((pr > 0.5).float().mean()) + float((pf < 0.5).float().mean()))
        return {"gt/d_heldout_accuracy": acc if math.isfinite(acc) else float("nan")}

    return probe


def run_mixture_gan(cfg: dict[str, Any], seed: int, rec: StreamRecorder) -> dict[str, Any]:
    """Train ``gan_mixture.train`` with the scenario's overrides; return its ground truth."""
    base = cfg.get("base", "healthy")
    overrides = {k: v for k, v in cfg.items() if k not in ("base", "lr_growth")}
    config = gan_mixture.config_for(base, seed=seed, **overrides)
    rec.probe = _ring_probe(max(1, config.pack))
    growth = float(cfg.get("lr_growth", 1.0))
    handle = None
    if growth != 1.0:  # a broken schedule: every lr x growth per step from switch_step on
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        def ramp(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            step = rec._last_step + 1
            for group in opt.param_groups:
                base_lr = group.setdefault("base_lr_scenario", group["lr"])
                group["lr"] = base_lr * growth ** max(0, step - config.switch_step)

        handle = register_optimizer_step_pre_hook(ramp)
    try:
        result = gan_mixture.train(config, monitor=rec)
    finally:
        if handle is not None:
            handle.remove()
    n_modes = 8 if config.dataset == "ring8" else 25
    dacc = rec.gt.get("gt/d_heldout_accuracy", ([], []))
    return {
        "eval_steps": result.eval_steps,
        "modes": result.modes,
        "high_quality": [round(h, 4) for h in result.high_quality],
        "n_modes": n_modes,
        "d_heldout_accuracy": dict(zip(dacc[0], [round(v, 4) for v in dacc[1]], strict=True)),
        "collapse_onset": collapse_onset(result.eval_steps, result.modes, min_peak=4),
        "first_nonfinite_step": result.first_nonfinite_step,
        "fault_step": config.switch_step if config.switch_step >= 0 else None,
        "steps_run": result.steps_run,
        "config_full": asdict(config),
    }


# --------------------------------------------------------------------------- digits data/models
_DIGITS: dict[str, Any] = {}


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits scaled to [0, 1] (1,797 x 64) and labels."""
    if "x" not in _DIGITS:
        from sklearn.datasets import load_digits

        d = load_digits()
        _DIGITS["x"] = (d.data / 16.0).astype(np.float32)
        _DIGITS["y"] = d.target.astype(np.int64)
    return _DIGITS["x"], _DIGITS["y"]


def digit_classifier() -> nn.Sequential:
    """The fixed feature extractor / judge: MLP 64-64-10 trained once (seed 0, full batch Adam,
    400 epochs; ~100 % train accuracy). Cached for the process."""
    if "clf" not in _DIGITS:
        x, y = digits()
        g = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        clf = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
        opt = torch.optim.Adam(clf.parameters(), lr=1e-2, weight_decay=1e-4)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        with torch.enable_grad():
            _fit(clf, opt, xt, yt, g)
        clf.requires_grad_(False).eval()
        _DIGITS["clf"] = clf
    return _DIGITS["clf"]


def _fit(clf: nn.Module, opt: torch.optim.Optimizer, xt: torch.Tensor, yt: torch.Tensor,
         g: torch.Generator) -> None:
    for _ in range(400):
        idx = torch.randperm(len(xt), generator=g)[:512]
        loss = F.cross_entropy(clf(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def clf_features(x: torch.Tensor) -> torch.Tensor:
    """Penultimate (64-d ReLU) features of the fixed classifier."""
    clf = digit_classifier()
    with torch.no_grad():
        return clf[1](clf[0](x))


def classes_covered(samples: torch.Tensor, min_share: float = 0.02) -> tuple[int, list[int]]:
    """Digit classes the fixed classifier assigns to >= ``min_share`` of ``samples``."""
    with torch.no_grad():
        pred = digit_classifier()(samples).argmax(dim=1).numpy()
    counts = np.bincount(pred, minlength=10)
    return int(np.sum(counts >= min_share * len(pred))), counts.tolist()


def run_digits_gan(cfg: dict[str, Any], seed: int, rec: StreamRecorder) -> dict[str, Any]:
    """MLP GAN on digits (non-saturating BCE, Adam); ``switch_step``/``lr_g_after`` script a fault."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 17)
    x_all = torch.from_numpy(digits()[0])
    z_dim, steps, b = 32, int(cfg["steps"]), 64
    G = nn.Sequential(
        nn.Linear(z_dim, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 64),
        nn.Sigmoid(),
    )
    pack = int(cfg.get("pack", 1))
    D_body = nn.Sequential(nn.Linear(64 * pack, 256), nn.LeakyReLU(0.2), nn.Linear(256, 64),
                           nn.LeakyReLU(0.2))
    mbstd = bool(cfg.get("mbstd", False))
    D_head = nn.Linear(64 + int(mbstd), 1)

    def D(x: torch.Tensor) -> torch.Tensor:
        h = D_body(x.reshape(-1, 64 * pack))
        if mbstd:  # minibatch standard deviation (Karras et al. 2018): one feature per batch
            h = torch.cat([h, h.std(dim=0).mean().expand(h.shape[0], 1)], dim=1)
        return D_head(h)

    D_params = list(D_body.parameters()) + list(D_head.parameters())
    betas = tuple(cfg.get("betas", (0.5, 0.999)))
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg["lr_g"], betas=betas)
    opt_d = torch.optim.Adam(D_params, lr=cfg["lr_d"], betas=betas)
    g_ema = float(cfg.get("g_ema", 0.0))
    G_eval = G
    if g_ema > 0:  # samples and embeddings from an EMA of G's weights (as the ring8 healthy GAN)
        import copy

        G_eval = copy.deepcopy(G).requires_grad_(False)
    rec.watch(G, "G")
    rec.watch(nn.ModuleDict({"body": D_body, "head": D_head}), "D")
    eval_z = torch.randn(EVAL_SAMPLES, z_dim, generator=gen)
    ones, zeros = torch.ones(b // pack, 1), torch.zeros(b // pack, 1)
    gt: dict[str, Any] = {"eval_steps": [], "classes": [], "class_counts": []}
    first_nf: int | None = None
    for step in range(steps):
        if step == cfg.get("switch_step", -1):
            for grp in opt_g.param_groups:
                grp["lr"] = cfg["lr_g_after"]
        real = x_all[torch.randint(0, len(x_all), (b,), generator=gen)]
        fake = G(torch.randn(b, z_dim, generator=gen))
        d_real, d_fake = D(real), D(fake.detach())
        loss_d = F.binary_cross_entropy_with_logits(d_real, ones) + \
            F.binary_cross_entropy_with_logits(d_fake, zeros)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        for prm in D_params:
            prm.requires_grad_(False)
        loss_g = F.binary_cross_entropy_with_logits(D(fake), ones)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        for prm in D_params:
            prm.requires_grad_(True)
        if g_ema > 0:
            with torch.no_grad():
                torch._foreach_lerp_(list(G_eval.parameters()), list(G.parameters()), 1 - g_ema)
        rec.log(step, loss_D=loss_d.detach(), loss_G=loss_g.detach(),
                D_x=torch.sigmoid(d_real.detach()).mean(),
                D_G_z=torch.sigmoid(d_fake.detach()).mean())
        if first_nf is None and not (torch.isfinite(loss_d) and torch.isfinite(loss_g)):
            first_nf = step
        if step % cfg["eval_every"] == 0 or step == steps - 1:
            with torch.no_grad():
                samples = G_eval(eval_z)
                n = cfg["embed_n"]
                real_e = x_all[torch.randint(0, len(x_all), (n,), generator=gen)]
                k, counts = classes_covered(samples)
                gt["eval_steps"].append(step)
                gt["classes"].append(k)
                gt["class_counts"].append(counts)
                rec.log_embeddings(step, fake=clf_features(samples[:n]).numpy(),
                                   real=clf_features(real_e).numpy())
                first = D_body[0]
                rec.log_embeddings(  # D's penultimate layer, on unpacked inputs (first block)
                    step, fake=D_body[1:](F.linear(samples[:n], first.weight[:, :64],
                                                    first.bias)).numpy(),
                    real=D_body[1:](F.linear(real_e, first.weight[:, :64], first.bias)).numpy(),
                    name="dfeat")
    gt["collapse_onset"] = collapse_onset(gt["eval_steps"], gt["classes"], min_peak=4)
    gt["first_nonfinite_step"] = first_nf
    gt["fault_step"] = cfg.get("switch_step")
    gt["n_modes"] = 10
    gt["modes"] = gt.pop("classes")
    return gt


# --------------------------------------------------------------------------- beyond GANs
def _split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = digits()
    rng = np.random.default_rng(1234)
    perm = rng.permutation(len(x))
    tr, te = perm[:1400], perm[1400:]
    return (torch.from_numpy(x[tr]), torch.from_numpy(y[tr]), torch.from_numpy(x[te]),
            torch.from_numpy(y[te]))


def run_classifier(cfg: dict[str, Any], seed: int, rec: StreamRecorder) -> dict[str, Any]:
    """MLP 64-128-128-10 on digits, SGD momentum 0.9, hand-written softmax cross-entropy; the lr
    grows by ``lr_growth`` per step from ``switch_step`` (1.0 = constant). The run stops 50 steps
    after the first non-finite loss."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 5)
    xtr, ytr, xte, yte = _split()
    net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                        nn.Linear(128, 10))
    opt = torch.optim.SGD(net.parameters(), lr=cfg["lr"], momentum=0.9)
    rec.watch(net, "net")
    gt: dict[str, Any] = {"eval_steps": [], "heldout_loss": []}
    first_nf: int | None = None
    best = math.inf
    onset: int | None = None
    for step in range(int(cfg["steps"])):
        if step >= cfg["switch_step"]:
            for grp in opt.param_groups:
                grp["lr"] *= cfg["lr_growth"]
        idx = torch.randint(0, len(xtr), (64,), generator=gen)
        out = net(xtr[idx])
        # Hand-written cross-entropy (softmax, then log), as in much user code: identical to
        # F.cross_entropy while the logits are moderate, Inf once softmax underflows to 0.
        loss = -torch.log(torch.softmax(out, dim=1)[torch.arange(64), ytr[idx]]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc = (out.detach().argmax(1) == ytr[idx]).float().mean()
        rec.log(step, loss=loss.detach(), accuracy=acc, lr=opt.param_groups[0]["lr"])
        if first_nf is None and not torch.isfinite(loss):
            first_nf = step
        if step % 25 == 0:
            with torch.no_grad():
                hl = float(F.cross_entropy(net(xte), yte))
            gt["eval_steps"].append(step)
            gt["heldout_loss"].append(round(hl, 5) if math.isfinite(hl) else None)
            if onset is None and step >= 100 and (not math.isfinite(hl) or hl > 2 * best):
                onset = step
            if math.isfinite(hl):
                best = min(best, hl)
        if first_nf is not None and step >= first_nf + 50:
            break
    gt["first_nonfinite_step"] = first_nf
    gt["blowup_onset"] = onset
    gt["fault_step"] = cfg["switch_step"] if cfg["lr_growth"] != 1.0 else None
    return gt


def run_deep_mlp(cfg: dict[str, Any], seed: int, rec: StreamRecorder) -> dict[str, Any]:
    """12-layer MLP (width 64) on digits, SGD (momentum 0.9); sigmoid + default init vs ReLU +
    Kaiming init."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 7)
    xtr, ytr, xte, yte = _split()
    layers: list[nn.Module] = []
    width = 64
    for _ in range(cfg["depth"]):
        lin = nn.Linear(width, 64)
        if cfg["act"] == "relu":
            nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
            nn.init.zeros_(lin.bias)
        layers += [lin, nn.ReLU() if cfg["act"] == "relu" else nn.Sigmoid()]
        width = 64
    layers.append(nn.Linear(width, 10))
    net = nn.Sequential(*layers)
    opt = torch.optim.SGD(net.parameters(), lr=cfg["lr"], momentum=0.9)
    rec.watch(net, "net")
    first_w0 = net[0].weight.detach().clone()
    last_w0 = net[-1].weight.detach().clone()
    gt: dict[str, Any] = {"eval_steps": [], "first_layer_rel_change": [],
                          "last_layer_rel_change": [], "heldout_accuracy": []}
    first_nf: int | None = None
    for step in range(int(cfg["steps"])):
        idx = torch.randint(0, len(xtr), (64,), generator=gen)
        out = net(xtr[idx])
        loss = F.cross_entropy(out, ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        rec.log(step, loss=loss.detach())
        if first_nf is None and not torch.isfinite(loss):
            first_nf = step
        if step % 100 == 0 or step == cfg["steps"] - 1:
            with torch.no_grad():
                acc = float((net(xte).argmax(1) == yte).float().mean())
                d0 = float((net[0].weight - first_w0).norm() / first_w0.norm())
                d1 = float((net[-1].weight - last_w0).norm() / last_w0.norm())
            gt["eval_steps"].append(step)
            gt["first_layer_rel_change"].append(d0)
            gt["last_layer_rel_change"].append(d1)
            gt["heldout_accuracy"].append(round(acc, 4))
    gt["first_nonfinite_step"] = first_nf
    return gt


def _views(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random view of a digits batch: 25 % of pixels masked, Gaussian noise (std 0.1)."""
    mask = (torch.rand(x.shape, generator=gen) > 0.25).float()
    return x * mask + 0.1 * torch.randn(x.shape, generator=gen)


def run_ssl(cfg: dict[str, Any], seed: int, rec: StreamRecorder) -> dict[str, Any]:
    """SimSiam-style training (Chen & He 2021): encoder 64-128-64 (BN), predictor 64-32-64,
    negative cosine between predictor output and the other view's (stop-gradient) projection.
    ``drop_stopgrad_at`` removes the stop-gradient from that step (collapses)."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 11)
    xtr, _, xte, _ = _split()
    enc = nn.Sequential(nn.Linear(64, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 64),
                        nn.BatchNorm1d(64))
    pred = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 64))
    opt = torch.optim.SGD(list(enc.parameters()) + list(pred.parameters()), lr=cfg["lr"],
                          momentum=0.9, weight_decay=1e-4)
    rec.watch(enc, "encoder")
    rec.watch(pred, "predictor")
    probe = xte[:256]
    heldout = xte[:397]
    gt: dict[str, Any] = {"eval_steps": [], "effective_rank": [], "normalized_std": []}
    drop_at = cfg.get("drop_stopgrad_at", -1)
    for step in range(int(cfg["steps"])):
        enc.train()
        pred.train()
        x = xtr[torch.randint(0, len(xtr), (128,), generator=gen)]
        z1, z2 = enc(_views(x, gen)), enc(_views(x, gen))
        p1, p2 = pred(z1), pred(z2)
        sg = drop_at < 0 or step < drop_at
        t1, t2 = (z1.detach(), z2.detach()) if sg else (z1, z2)
        loss = -0.5 * (F.cosine_similarity(p1, t2).mean() + F.cosine_similarity(p2, t1).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        rec.log(step, loss=loss.detach())
        if step % cfg["eval_every"] == 0 or step == cfg["steps"] - 1:
            enc.eval()
            with torch.no_grad():
                emb = enc(heldout).numpy()
                rec.log_embeddings(step, fake=enc(probe).numpy())
            norm = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
            gt["eval_steps"].append(step)
            gt["effective_rank"].append(round(effective_rank(emb), 4))
            gt["normalized_std"].append(round(float(norm.std(axis=0).mean()), 5))
    gt["collapse_onset"] = collapse_onset(gt["eval_steps"], gt["effective_rank"], min_peak=2)
    gt["first_nonfinite_step"] = None
    gt["fault_step"] = drop_at if drop_at >= 0 else None
    return gt


# --------------------------------------------------------------------------- the suite
@dataclass(frozen=True)
class Scenario:
    """One configuration, trained once per seed.

    ``intent`` is what the configuration is meant to show (``healthy``, ``collapse``,
    ``diverge``, ``dwins``, ``vanishing``); the run's ``label`` is decided from the
    measured ground truth (:func:`label_run`), not from the intent.
    """

    name: str
    family: str
    intent: str
    runner: Callable[[dict[str, Any], int, StreamRecorder], dict[str, Any]]
    config: dict[str, Any]
    embed_dtype: str = "float32"


MIX = run_mixture_gan
SCENARIOS: list[Scenario] = [
    Scenario("ring8_healthy", "gan_ring8", "healthy", MIX, {"base": "healthy", "steps": 2500}),
    Scenario("ring8_collapse", "gan_ring8", "collapse", MIX, {"base": "collapse"}),
    Scenario("ring8_collapse_mild", "gan_ring8", "collapse", MIX,
             {"base": "collapse", "lr_g_after": 1e-2}),
    Scenario("ring8_diverge", "gan_ring8", "diverge", MIX,
             {"base": "diverge", "lr_g_after": 0.0, "lr_d_after": 0.0, "lr_growth": 1.01}),
    Scenario("ring8_strong_d", "gan_ring8", "dwins", MIX,
             {"base": "healthy", "pack": 1, "g_ema": 0.0, "lr_g": 1e-5, "lr_d": 5e-3,
              "steps": 1500}),
    Scenario("grid25_healthy", "gan_grid25", "healthy", MIX,
             {"base": "healthy", "dataset": "grid25", "steps": 2500}),
    Scenario("grid25_collapse", "gan_grid25", "collapse", MIX,
             {"base": "collapse", "dataset": "grid25"}),
    Scenario("digits_healthy", "gan_digits", "healthy", run_digits_gan,
             {"steps": 3000, "lr_g": 1e-3, "lr_d": 1e-3, "betas": [0.0, 0.9], "pack": 4,
              "g_ema": 0.99, "eval_every": 100, "embed_n": 256}, "float16"),
    Scenario("digits_collapse", "gan_digits", "collapse", run_digits_gan,
             {"steps": 3000, "lr_g": 1e-3, "lr_d": 1e-3, "betas": [0.0, 0.9], "pack": 4,
              "g_ema": 0.99, "eval_every": 100, "embed_n": 256, "switch_step": 1500, "lr_g_after": 3e-2},
             "float16"),
    Scenario("clf_healthy", "classifier", "healthy", run_classifier,
             {"steps": 1500, "lr": 0.05, "switch_step": 400, "lr_growth": 1.0}),
    Scenario("clf_lr_blowup", "classifier", "diverge", run_classifier,
             {"steps": 2000, "lr": 0.05, "switch_step": 400, "lr_growth": 1.03}),
    Scenario("deep_relu", "deep_mlp", "healthy", run_deep_mlp,
             {"steps": 1000, "depth": 12, "act": "relu", "lr": 0.01}),
    Scenario("deep_sigmoid", "deep_mlp", "vanishing", run_deep_mlp,
             {"steps": 1000, "depth": 12, "act": "sigmoid", "lr": 0.01}),
    Scenario("ssl_simsiam", "ssl", "healthy", run_ssl,
             {"steps": 1500, "lr": 0.05, "eval_every": 50}, "float16"),
    Scenario("ssl_no_stopgrad", "ssl", "collapse", run_ssl,
             {"steps": 1500, "lr": 0.05, "eval_every": 50, "drop_stopgrad_at": 600}, "float16"),
]

#: Detector kinds each label should raise (evaluate.py checks these).
EXPECTED_KINDS = {
    "healthy": [],
    "collapse": ["mode_collapse"],
    "diverge": ["divergence"],
    "dwins": ["discriminator_wins"],
    "vanishing": ["vanishing_gradients"],
}


def label_run(sc: Scenario, gt: dict[str, Any]) -> tuple[str, int | None]:
    """The run's label and ground-truth onset step, from what was measured.

    A non-finite loss makes it ``diverge`` (onset: the first non-finite step; the classifier's
    held-out blow-up onset is kept in the ground truth for the lead time), and so does a
    held-out blow-up without non-finite values (onset: the blow-up); a measured collapse makes it
    ``collapse``; a partial drop (final diversity below 3/4 of the peak, above half) ``partial``;
    ``dwins`` needs D's held-out accuracy >= 0.9 at each of the last five evaluations (0.5 at
    equilibrium; onset: the evaluation from which it stays >= 0.9); ``vanishing``
    needs the first layer's weights to have moved < 1 % while the last moved > 10x more.
    Anything else is ``healthy`` only if it was meant to be (and, for a GAN, ends with at least
    half of the modes or classes covered); otherwise ``unclear`` (replayed, not scored).
    """
    if gt.get("first_nonfinite_step") is not None:
        return "diverge", gt["first_nonfinite_step"]
    if gt.get("blowup_onset") is not None:
        return "diverge", gt["blowup_onset"]
    if gt.get("collapse_onset") is not None:
        return "collapse", gt["collapse_onset"]
    modes = gt.get("modes")
    if sc.intent == "dwins":
        items = sorted((int(s), a) for s, a in gt.get("d_heldout_accuracy", {}).items())
        if len(items) >= 5 and min(a for _, a in items[-5:]) >= 0.9:
            onset = items[-1][0]
            for s, a in reversed(items):
                if a < 0.9:
                    break
                onset = s
            return "dwins", onset
        return "unclear", None
    if sc.intent == "vanishing":
        d0, d1 = gt["first_layer_rel_change"][-1], gt["last_layer_rel_change"][-1]
        return ("vanishing", 0) if d0 < 0.01 and d1 > 10 * d0 else ("unclear", None)
    if modes:
        # A GAN is healthy when it covers at least half of the modes (classes) at the end.
        if sc.intent == "healthy" and modes[-1] >= 0.5 * gt["n_modes"]:
            return "healthy", None
        return "unclear", None
    if sc.intent == "healthy":
        return "healthy", None
    return "unclear", None


def record(selected: list[Scenario], seeds: list[int], out_dir: Path) -> list[dict[str, Any]]:
    """Train and save every (scenario, seed); returns the manifest entries."""
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    entries = []
    for sc in selected:
        for seed in seeds:
            run_id = f"{sc.name}-s{seed}"
            rec = StreamRecorder(grad_every=GRAD_EVERY, embed_dtype=np.dtype(sc.embed_dtype).type)
            t0 = time.perf_counter()
            try:
                gt = sc.runner(dict(sc.config), seed, rec)
            finally:
                rec.close()
            wall = time.perf_counter() - t0
            label, onset = label_run(sc, gt)
            file = f"{run_id}.npz"
            series = save_run(out_dir / file, rec)
            entry = {
                "id": run_id,
                "file": file,
                "family": sc.family,
                "scenario": sc.name,
                "intent": sc.intent,
                "config": sc.config,
                "seed": seed,
                "label": label,
                "onset_step": onset,
                "expected_kinds": EXPECTED_KINDS.get(label, []),
                "series": series,
                "embedding_sets": sorted(rec.embeddings),
                "has_real": {k: bool(v["real"]) for k, v in rec.embeddings.items()},
                "ground_truth": GroundTruth(gt).as_json(),
                "wall_s": round(wall, 1),
            }
            entries.append(entry)
            summary = gt.get("modes") or gt.get("effective_rank") or gt.get("heldout_loss") or []
            print(f"{run_id:28s} label={label:9s} onset={onset} first_nf="
                  f"{gt.get('first_nonfinite_step')} wall={wall:5.1f}s "
                  f"diversity/metric={summary[::3] if summary else '-'}", flush=True)
    return entries


def main(argv: list[str] | None = None) -> int:
    """Command line: record all (or ``--only`` matching) scenarios for ``--seeds``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", default=None,
                   help="substrings of scenario names to record (default: all)")
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=OUT_DIR)
    args = p.parse_args(argv)
    selected = [s for s in SCENARIOS if not args.only or any(o in s.name for o in args.only)]
    t0 = time.perf_counter()
    entries = record(selected, args.seeds, args.out)
    manifest_path = args.out / "manifest.json"
    old: list[dict[str, Any]] = []
    if manifest_path.exists() and args.only:
        ids = {e["id"] for e in entries}
        old = [e for e in json.loads(manifest_path.read_text())["runs"] if e["id"] not in ids]
    order = {s.name: i for i, s in enumerate(SCENARIOS)}
    runs = sorted(old + entries, key=lambda e: (order.get(e["scenario"], 99), e["seed"]))
    manifest = {
        "format": "stethoscope-scenarios/1",
        "grad_every": GRAD_EVERY,
        "torch": torch.__version__,
        "runs": runs,
    }
    manifest_path.write_text(json.dumps(manifest, indent=1))
    print(f"recorded {len(entries)} runs in {time.perf_counter() - t0:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
