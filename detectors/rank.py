"""Dimensional collapse: embeddings that vary along fewer and fewer directions.

Self-supervised encoders collapse this way (Jing et al. 2022, "Understanding Dimensional Collapse
in Contrastive Self-supervised Learning"; RankMe, Garrido et al. 2023): the embeddings stay
spread out but along a handful of directions, which the effective rank (Roy & Vetterli 2007) of
the centred embedding matrix measures. Each evaluation computes it at a fixed sample size (it
grows with n while n < d); an evaluation is low when the rank is at most ``threshold`` times the
best seen after the warm-up and, when real embeddings are given, at most ``threshold`` times
theirs at the same n. ``patience`` low evaluations in a row fire a warning (key
``mode_collapse/dimensional``); as many healthy ones resolve it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from . import metrics, remedies
from .base import EmbeddingDetector, check_float, check_int, fmt
from .findings import DetectorStatus, Finding

__all__ = ["DimensionalCollapseDetector", "KEY", "as_embedding", "blas_threads", "rng_for"]

KEY = "mode_collapse/dimensional"


@contextlib.contextmanager
def blas_threads(limit: int | None) -> Iterator[None]:
    """Limit BLAS threads (threadpoolctl, if installed) while an evaluation runs."""
    if limit is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: OPENBLAS_NUM_THREADS=1 does the same for the whole process
        yield
        return
    with threadpool_limits(limits=limit, user_api="blas"):
        yield


def rng_for(seed: int, step: int) -> np.random.Generator:
    """The subsampling generator of one evaluation: a function of the seed and the step only,
    so an evaluation gives the same result whenever (and however often) it runs."""
    step = int(step)
    return np.random.default_rng([seed, step & 0xFFFFFFFF, (step >> 32) & 0xFFFFFFFF])


def as_embedding(x: Any, name: str) -> np.ndarray:
    """An ``(n, d)`` float64 array of the finite rows of ``x``; ValueError naming ``name``."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(
            f"{name} embeddings must be a non-empty 2-D (n, d) array, got shape {a.shape}; "
            f"flatten each sample's features to one row"
        )
    keep = np.isfinite(a).all(axis=1)
    return a if keep.all() else a[keep]


def _sub(x: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    if x.shape[0] <= size:
        return x
    return x[np.sort(rng.choice(x.shape[0], size, replace=False))]


class DimensionalCollapseDetector(EmbeddingDetector):
    """Warns when the effective rank of the generated (or encoded) embeddings collapses.

    Parameters
    ----------
    threshold
        Fraction of the reference (best so far; reals) at or below which an evaluation is low
        (default 0.5).
    patience
        Low evaluations in a row to fire, healthy ones to resolve (default 2).
    warmup
        Evaluations before the best rank counts and anything fires (default 3).
    samples
        Rows the rank is computed on (default 256; fakes and reals alike).
    min_dim
        Smallest embedding width judged (default 8): at d = 2 a rank says nothing.
    seed
        Seed of the subsampling.
    blas_threads
        BLAS threads while an evaluation runs (default 1; None leaves BLAS alone).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = DimensionalCollapseDetector()
    >>> out = []
    >>> for step in range(0, 800, 100):
    ...     dims = 32 if step < 400 else 2
    ...     x = rng.standard_normal((512, dims)) @ rng.standard_normal((dims, 64))
    ...     out += det.update(step, {"fake": x})
    >>> [(f.key, f.step) for f in out]
    [('mode_collapse/dimensional', 500)]
    """

    family = "rank"

    def __init__(self, threshold: float = 0.5, patience: int = 2, warmup: int = 3,
                 samples: int = 256, min_dim: int = 8, seed: int = 0,
                 blas_threads: int | None = 1) -> None:
        super().__init__()
        self.threshold = threshold
        self.patience = patience
        self.warmup = warmup
        self.samples = samples
        self.min_dim = min_dim
        self.seed = seed
        self.blas_threads = blas_threads
        check_float("threshold", threshold, 0.0, 1.0, low_open=True, high_open=True)
        check_int("patience", patience, 1)
        check_int("warmup", warmup, 0)
        check_int("samples", samples, 4)
        check_int("min_dim", min_dim, 3)
        check_int("seed", seed, 0)
        if blas_threads is not None:
            check_int("blas_threads", blas_threads, 1)
        self._add_state("evaluations", 0)
        self._add_state("best", 0.0)
        self._add_state("low_run", 0)
        self._add_state("ok_run", 0)
        self._add_state("firing", False)
        self._add_state("last_metrics", {})
        self._add_state("last_reason", "")

    def measure(self, step: int, embeddings: Mapping[str, Any]) -> dict[str, Any]:
        fake = embeddings.get("fake")
        if fake is None:
            return {"skip": "no 'fake' embeddings"}
        fake = as_embedding(fake, "fake")
        if fake.shape[1] < self.min_dim:
            return {"skip": f"embeddings of width {fake.shape[1]} < min_dim {self.min_dim}"}
        rng = rng_for(self.seed, step)
        n = min(fake.shape[0], self.samples)
        if n < 4:
            return {"skip": f"{fake.shape[0]} samples are too few"}
        with blas_threads(self.blas_threads):
            m: dict[str, Any] = {"effective_rank": metrics.effective_rank(_sub(fake, n, rng))}
            real = embeddings.get("real")
            if real is not None:
                real = as_embedding(real, "real")
                if real.shape[0] >= n and real.shape[1] == fake.shape[1]:
                    m["effective_rank_ref"] = metrics.effective_rank(_sub(real, n, rng))
        m["samples"] = float(n)
        return m

    def update(self, step: int, embeddings: Mapping[str, Any],
               measured: Mapping[str, Any] | None = None) -> list[Finding]:
        m = dict(measured if measured is not None else self.measure(step, embeddings))
        if "skip" in m:
            self.last_reason = str(m["skip"])
            self.last_metrics = {}
            return []
        self.last_reason = ""
        self.evaluations += 1
        er = float(m["effective_rank"])
        judged = self.evaluations > self.warmup
        m["effective_rank_best"] = self.best
        m["effective_rank_vs_best"] = er / self.best if self.best > 0 else math.nan
        if "effective_rank_ref" in m and m["effective_rank_ref"] > 0:
            m["effective_rank_ratio"] = er / m["effective_rank_ref"]
        low = judged and m["effective_rank_vs_best"] <= self.threshold
        if low and "effective_rank_ratio" in m:
            low = m["effective_rank_ratio"] <= self.threshold
        if self.evaluations >= max(self.warmup, 1):
            self.best = max(self.best, er)
        self.last_metrics = m
        self.low_run, self.ok_run = (self.low_run + 1, 0) if low else (0, self.ok_run + 1)
        if not self.firing and self.low_run >= self.patience:
            self.firing = True
            return [self._fire(step, m)]
        if self.firing and self.ok_run >= self.patience:
            self.firing = False
            msg = (f"The embeddings' effective rank recovered to {fmt(er)} "
                   f"({fmt(m['effective_rank_vs_best'])}x its best) for {self.ok_run} "
                   f"evaluations in a row (step {step}).")
            return [self._finding("mode_collapse", KEY, "warning", "resolved", step, msg,
                                  m, (), "embeddings")]
        return []

    def _fire(self, step: int, m: dict[str, Any]) -> Finding:
        head = (
            f"Dimensional collapse: the effective rank of the embeddings fell to "
            f"{fmt(m['effective_rank'])}, {fmt(m['effective_rank_vs_best'])}x the best seen in "
            f"this run ({fmt(m['effective_rank_best'])}), for {self.low_run} evaluations in a "
            f"row (step {step}; threshold {fmt(self.threshold)}x, n = {int(m['samples'])})."
        )
        if "effective_rank_ratio" in m:
            tail = (f" Real embeddings at the same n have an effective rank of "
                    f"{fmt(m['effective_rank_ref'])} (ratio {fmt(m['effective_rank_ratio'])}). "
                    f"The outputs vary along far fewer directions than the data.")
        else:
            tail = (" Judged against the run's own history (no real embeddings): the embeddings "
                    "vary along far fewer directions than before (Jing et al. 2022; RankMe, "
                    "Garrido et al. 2023).")
        return self._finding("mode_collapse", KEY, "warning", "firing", step, head + tail, m,
                             remedies.DIMENSIONAL_COLLAPSE, "embeddings")

    def status(self) -> DetectorStatus:
        if self.evaluations == 0:
            return DetectorStatus(self.name, "unavailable", self.last_reason or (
                "no embeddings received; call Monitor.log_embeddings(step, fake=...)"))
        if self.evaluations <= self.warmup:
            return DetectorStatus(self.name, "waiting",
                                  f"{self.evaluations}/{self.warmup} warm-up evaluations")
        m = self.last_metrics
        if not m:
            return DetectorStatus(self.name, "unavailable", self.last_reason)
        vs = m.get("effective_rank_vs_best", math.nan)
        rel = f" ({fmt(vs)}x its best)" if math.isfinite(vs) else ""
        text = f"effective rank {fmt(m['effective_rank'])}{rel}"
        return DetectorStatus(self.name, "alarm" if self.firing else "ok", text)
