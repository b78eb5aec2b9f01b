"""Trainings beyond GANs: a classifier whose learning rate blows up, a deep sigmoid MLP whose
gradients vanish (with its healthy ReLU twin), a network whose gradients die, and a SimSiam
encoder that collapses when its stop-gradient is removed.

Each streams what its user would log (``loss``, gradient norms, the SimSiam embeddings) and
returns ground truth measured apart from any detector: held-out loss (blow-up onset), first and
last layers' relative weight change (vanishing), the embeddings' effective rank (collapse).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.corpus.digits_data import split8

__all__ = ["run_classifier", "run_deep_mlp", "run_ssl", "effective_rank"]


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


def run_classifier(cfg: dict[str, Any], seed: int, rec: Any) -> dict[str, Any]:
    """MLP 64-128-128-10 on digits, SGD momentum 0.9, hand-written softmax cross-entropy; the lr
    grows by ``lr_growth`` per step from ``switch_step`` (1.0 = constant). The run stops 50 steps
    after the first non-finite loss."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 5)
    xtr, ytr, xte, yte = split8()
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


def run_deep_mlp(cfg: dict[str, Any], seed: int, rec: Any) -> dict[str, Any]:
    """12-layer MLP (width 64) on digits, SGD (momentum 0.9); sigmoid + default init vs ReLU +
    Kaiming init."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 7)
    xtr, ytr, xte, yte = split8()
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


def run_ssl(cfg: dict[str, Any], seed: int, rec: Any) -> dict[str, Any]:
    """SimSiam-style training (Chen & He 2021): encoder 64-128-64 (BN), predictor 64-32-64,
    negative cosine between predictor output and the other view's (stop-gradient) projection.
    ``drop_stopgrad_at`` removes the stop-gradient from that step (collapses)."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 11)
    xtr, _, xte, _ = split8()
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
    gt["first_nonfinite_step"] = None
    gt["fault_step"] = drop_at if drop_at >= 0 else None
    return gt
