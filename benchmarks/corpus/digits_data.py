"""scikit-learn's 8x8 digits, upscaled, and the fixed models every digits run shares.

Both models are trained once per process with fixed seeds and never see a generated sample, so
they give ground truth and embeddings that no detector was tuned to:

- :func:`classifier`: an MLP 256-128-64-10 on the 16x16 digits (about 100 % training accuracy);
  it labels generated samples (digit classes covered) and its 64-d penultimate layer is the
  "fixed classifier" extractor;
- :func:`random_conv`: a randomly initialised conv net (1-32-64, average-pooled to 64-d), the
  "fixed random features" extractor.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["digits8", "digits16", "classifier", "clf_features", "random_conv", "split8",
           "quality_radius"]

_CACHE: dict[str, Any] = {}


def digits8() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 8x8 digits scaled to [0, 1] (flattened to 64) and their labels."""
    if "x8" not in _CACHE:
        from sklearn.datasets import load_digits

        d = load_digits()
        _CACHE["x8"] = (d.data / 16.0).astype(np.float32)
        _CACHE["y"] = d.target.astype(np.int64)
    return _CACHE["x8"], _CACHE["y"]


def digits16() -> tuple[torch.Tensor, torch.Tensor]:
    """The digits upscaled (bilinear) to 1x16x16 in [-1, 1] (DCGAN's range) and their labels."""
    if "x16" not in _CACHE:
        x8, y = digits8()
        x = torch.from_numpy(x8).reshape(-1, 1, 8, 8)
        x16 = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
        _CACHE["x16"] = (x16.clamp(0, 1) * 2 - 1).contiguous()
        _CACHE["y16"] = torch.from_numpy(y)
    return _CACHE["x16"], _CACHE["y16"]


def split8() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fixed train/held-out split of the 8x8 digits (1,400 / 397)."""
    x, y = digits8()
    perm = np.random.default_rng(1234).permutation(len(x))
    tr, te = perm[:1400], perm[1400:]
    return (torch.from_numpy(x[tr]), torch.from_numpy(y[tr]), torch.from_numpy(x[te]),
            torch.from_numpy(y[te]))


def classifier() -> nn.Sequential:
    """The fixed judge and feature extractor for 16x16 digits (trained once, seed 0)."""
    if "clf" not in _CACHE:
        x, y = digits16()
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(0)
        clf = nn.Sequential(nn.Flatten(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 64),
                            nn.ReLU(), nn.Linear(64, 10))
        opt = torch.optim.Adam(clf.parameters(), lr=3e-3, weight_decay=1e-4)
        with torch.enable_grad():
            for _ in range(600):
                idx = torch.randperm(len(x), generator=g)[:512]
                loss = F.cross_entropy(clf(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        _CACHE["clf"] = clf.requires_grad_(False).eval()
    return _CACHE["clf"]


def clf_features(x: torch.Tensor) -> torch.Tensor:
    """The classifier's 64-d penultimate features of 1x16x16 images."""
    with torch.no_grad():
        return classifier()[:-1](x)


def random_conv() -> nn.Sequential:
    """The fixed random-feature extractor for 1x16x16 images (64-d, the same for every run)."""
    if "rand" not in _CACHE:
        torch.manual_seed(20240607)
        net = nn.Sequential(nn.Conv2d(1, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1),
                            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        _CACHE["rand"] = net.requires_grad_(False).eval()
    return _CACHE["rand"]


def quality_radius() -> float:
    """The 95th percentile of the real digits' nearest-other-real distances (pixels, [-1, 1]):
    a generated sample closer than this to some real digit is a high-quality sample."""
    if "radius" not in _CACHE:
        x = digits16()[0].reshape(len(digits16()[0]), -1)
        d = torch.cdist(x, x)
        d.fill_diagonal_(float("inf"))
        _CACHE["radius"] = float(torch.quantile(d.min(dim=1).values, 0.95))
    return _CACHE["radius"]


def judge(samples: torch.Tensor, min_share: float = 0.02) -> tuple[int, float, list[int]]:
    """Digit classes covered by high-quality samples, the high-quality share, and the counts.

    A class is covered when at least ``min_share`` of all samples are high-quality samples the
    classifier assigns to it (uniform is 10 %); non-finite samples are low quality.
    """
    x = samples.reshape(len(samples), -1)
    finite = torch.isfinite(x).all(dim=1)
    x = torch.where(finite[:, None], x, torch.zeros_like(x))
    reals = digits16()[0].reshape(len(digits16()[0]), -1)
    with torch.no_grad():
        good = finite & (torch.cdist(x, reals).min(dim=1).values <= quality_radius())
        pred = classifier()(x.reshape(-1, 1, 16, 16)).argmax(dim=1)
    counts = np.bincount(pred[good].numpy(), minlength=10)
    covered = int(np.sum(counts >= min_share * len(x)))
    return covered, float(good.float().mean()), counts.tolist()
