"""Mode collapse from embedding batches of generated (and real) samples.

Each evaluation compares a batch of generated embeddings with real ones from the same feature
extractor. The reference is computed at the same sample size from the real batch itself: the
reals are split in two halves R1 and R2, the generated batch is subsampled to the size of R2, and
every metric is computed for (R1, fakes) and for (R1, R2). So thresholds are ratios to what real
data scores at the same n, which cancels the metrics' dependence on n and d.

Signals (ratio = fake value / real-vs-real value):

- coverage (Naeem 2020, k = 5) and recall (Kynkäänniemi 2019, k = 3) against R1;
- Vendi score (Friedman & Dieng 2022) with an RBF kernel of bandwidth
  ``bandwidth_scale x median pairwise distance of R1`` (meaningful at d = 2 as at d = 512);
- mean pairwise distance and near-duplicate rate (informational);
- effective rank (Roy & Vetterli 2007; RankMe, Garrido 2023) of the centred embeddings, for
  ``d >= rank_min_dim``: its ratio to the run's own best and, with reals, to the reals' at the
  same n. A fall to ``threshold`` x its best for ``patience`` evaluations after warm-up is
  dimensional collapse (key ``mode_collapse/dimensional``), also without reals.

An evaluation is "collapsed" when the generated batch is both far below the reals and far below
what this run has already achieved:

- against the reals: at least two of the coverage, recall and Vendi ratios are below
  ``threshold``;
- against the run's own best: at least two of the coverage, recall, Vendi and mean-distance ratios
  are at most ``threshold`` x their best value since the end of the warm-up (a ratio whose best is
  below ``min_best`` does not vote: it never said anything).

``patience`` collapsed evaluations in a row fire (after ``warmup`` evaluations); ``patience``
healthy ones in a row resolve. The second condition is what makes a collapse an event rather than
a state: a generator that starts with a few kinds of output and spreads out (every GAN's first
hundreds of steps), or one whose samples stay off the real manifold in feature space (blurry
digits score low coverage and recall against sharp ones however diverse they are), is not
flagged for where it stands, only for falling from where it was; an alert raised while a run
was genuinely collapsed resolves when it recovers, so a later collapse gets an alert of its own.
With ``relative=False`` only the first condition is used (the earlier behaviour: a run that
never reaches half the reals' diversity is flagged at the end of the warm-up). Without reals, the generated batch is judged against
its own history: Vendi and mean pairwise distance below ``threshold`` times the best seen so far
(at a bandwidth frozen from the largest spread seen), with lower confidence stated in the
message and the evidence. The warm-up evaluations do not count as "best": an untrained
generator's output is no reference.

Every evaluation is bounded: at most ``max_samples`` points per set (``vendi_samples`` for the
eigendecompositions), and BLAS limited to ``blas_threads`` threads while it runs (through
threadpoolctl when it is installed; otherwise set ``OPENBLAS_NUM_THREADS=1`` in the server's
environment).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import metrics, remedies
from .base import Detector, check_float, check_int, fmt
from .findings import DetectorStatus, Finding

__all__ = ["CollapseDetector", "KEY", "DIMENSIONAL_KEY"]

KEY = "mode_collapse"
DIMENSIONAL_KEY = "mode_collapse/dimensional"
#: Real-relative ratios whose fall from the run's best makes an evaluation collapsed.
RELATIVE_SIGNALS = ("coverage_ratio", "recall_ratio", "vendi_ratio", "distance_ratio")


@contextlib.contextmanager
def _blas_threads(limit: int | None) -> Iterator[None]:
    """Limit BLAS threads (threadpoolctl, if installed) for the duration of an evaluation."""
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


class CollapseDetector(Detector):
    """Detects mode collapse from batches of generated and real embeddings.

    Parameters
    ----------
    k_coverage
        Neighbours for coverage (default 5, Naeem 2020).
    k_recall
        Neighbours for recall (default 3, Kynkäänniemi 2019).
    threshold
        Fraction of the reference below which a signal counts as collapsed (default 0.5).
    patience
        Collapsed evaluations in a row to fire, healthy ones to resolve (default 2).
    warmup
        Evaluations during which nothing fires, so an untrained generator is not flagged
        (default 3).
    max_samples
        Cap on the size of each of R1, R2 and the generated subsample (default 512); bounds the
        cost at O(max_samples^2 d).
    vendi_samples
        Cap on the samples whose Vendi scores are compared (default 256): the eigenvalue
        decomposition costs O(n^3), so fake and real are both cut to this size.
    bandwidth_scale
        RBF bandwidth as a multiple of the reals' median pairwise distance (default 0.5).
    duplicate_fraction
        Two samples are near-duplicates when closer than this fraction of the reals' median
        nearest-neighbour distance (default 0.1).
    seed
        Seed of the deterministic subsampling (default 0).
    relative
        Also require the fall from the run's own best (default True; see above).
    min_best
        Smallest best ratio that votes in the relative condition (default 0.05).
    rank_min_dim
        Smallest embedding dimension d for which the effective rank is computed and judged
        (default 8): at d = 2 the rank (at most 2) says nothing about collapse.
    blas_threads
        BLAS threads while an evaluation runs (default 1: as fast as more threads on an idle
        machine, and 2-10x faster on a busy one); ``None`` leaves BLAS alone. Needs
        threadpoolctl; without it, set ``OPENBLAS_NUM_THREADS=1``.

    Attributes
    ----------
    last_metrics : dict
        The signals of the last evaluation (``coverage``, ``recall``, ``vendi_ratio``, ...).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ang = 2 * np.pi * np.arange(8) / 8
    >>> centres = 2 * np.stack([np.cos(ang), np.sin(ang)], 1)
    >>> ring = lambda n, modes: centres[rng.choice(modes, n)] + 0.02 * rng.standard_normal((n, 2))
    >>> det = CollapseDetector()
    >>> fired = []
    >>> for step in range(0, 1000, 100):
    ...     modes = np.arange(8) if step < 500 else np.array([0])
    ...     fired += det.update(step, ring(512, modes), real=ring(512, np.arange(8)))
    >>> [(f.kind, f.step, f.severity) for f in fired]
    [('mode_collapse', 600, 'critical')]
    """

    family = "collapse"

    def __init__(
        self,
        k_coverage: int = 5,
        k_recall: int = 3,
        threshold: float = 0.5,
        patience: int = 2,
        warmup: int = 3,
        max_samples: int = 512,
        vendi_samples: int = 256,
        bandwidth_scale: float = 0.5,
        duplicate_fraction: float = 0.1,
        seed: int = 0,
        rank_min_dim: int = 8,
        blas_threads: int | None = 1,
        relative: bool = True,
        min_best: float = 0.05,
    ) -> None:
        super().__init__()
        self.k_coverage = k_coverage
        self.k_recall = k_recall
        self.threshold = threshold
        self.patience = patience
        self.warmup = warmup
        self.max_samples = max_samples
        self.vendi_samples = vendi_samples
        self.bandwidth_scale = bandwidth_scale
        self.duplicate_fraction = duplicate_fraction
        self.seed = seed
        self.rank_min_dim = rank_min_dim
        self.blas_threads = blas_threads
        self.relative = relative
        self.min_best = min_best
        if not isinstance(relative, bool):
            raise ValueError(f"relative must be true or false, got {relative!r}")
        check_float("min_best", min_best, 0.0, 1.0)
        check_int("k_coverage", k_coverage, 1, 50)
        check_int("k_recall", k_recall, 1, 50)
        check_float("threshold", threshold, 0.0, 1.0, low_open=True, high_open=True)
        check_int("patience", patience, 1)
        check_int("warmup", warmup, 0)
        check_int("max_samples", max_samples, 2 * (max(k_coverage, k_recall) + 1))
        check_int("vendi_samples", vendi_samples, 2)
        check_float("bandwidth_scale", bandwidth_scale, 0.0, low_open=True)
        check_float("duplicate_fraction", duplicate_fraction, 0.0, 1.0)
        check_int("seed", seed, 0)
        check_int("rank_min_dim", rank_min_dim, 3)
        if blas_threads is not None:
            check_int("blas_threads", blas_threads, 1)
        self._add_state("evaluations", 0)
        self._add_state("collapsed_run", 0)
        self._add_state("healthy_run", 0)
        self._add_state("firing", False)
        self._add_state("mode", "")  # "real" or "self" for the last evaluation
        self._add_state("bandwidth", math.nan)  # last bandwidth from reals
        self._add_state("spread_max", 0.0)  # largest median pairwise distance of fakes
        self._add_state("best_vendi", 0.0)  # best fake Vendi in self mode
        self._add_state("best_distance", 0.0)
        self._add_state("last_metrics", {})
        self._add_state("last_reason", "")
        self._add_state("best_ratios", {})  # best real-relative ratios at judged evaluations
        self._add_state("best_rank", 0.0)  # best effective rank after warm-up
        self._add_state("rank_collapsed_run", 0)
        self._add_state("rank_healthy_run", 0)
        self._add_state("rank_firing", False)

    @property
    def min_samples(self) -> int:
        """Smallest batch that can be evaluated (per half of the reals, and for fakes)."""
        return max(self.k_coverage, self.k_recall) + 2

    def update(self, step: int, fake: Any, real: Any = None) -> list[Finding]:
        """Evaluate one batch of generated embeddings (``(n, d)``), optionally with reals."""
        fake = self._check(fake, "fake")
        if real is not None:
            real = self._check(real, "real")
            if real.shape[1] != fake.shape[1]:
                raise ValueError(
                    f"fake and real embeddings must have the same dimension, got "
                    f"{fake.shape[1]} and {real.shape[1]}; use one feature extractor for both"
                )
        if fake.shape[0] < self.min_samples:
            self.last_reason = (
                f"batch of {fake.shape[0]} generated samples is too small "
                f"(need >= {self.min_samples})"
            )
            self.last_metrics = {}
            return []
        rng = np.random.default_rng([self.seed, self.evaluations])
        self.evaluations += 1
        with _blas_threads(self.blas_threads):
            return self._evaluate(int(step), fake, real, rng)

    def _evaluate(self, step: int, fake: np.ndarray, real: np.ndarray | None,
                  rng: np.random.Generator) -> list[Finding]:
        if real is not None and real.shape[0] >= 2 * self.min_samples:
            m, collapsed, severity = self._with_reals(fake, real, rng)
            self.mode = "real"
            self.last_reason = ""
        else:
            m, collapsed = self._self_history(fake, rng)
            severity = "warning"
            self.mode = "self"
            self.last_reason = (
                "no real embeddings" if real is None
                else f"real batch of {real.shape[0]} is too small (need >= {2 * self.min_samples})"
            ) + ": judged against this run's own history (lower confidence)"
        self.last_metrics = m
        if self.evaluations <= self.warmup:
            collapsed = False
        if collapsed:
            self.collapsed_run += 1
            self.healthy_run = 0
        else:
            self.healthy_run += 1
            self.collapsed_run = 0
        out: list[Finding] = []
        if not self.firing and self.collapsed_run >= self.patience:
            self.firing = True
            out.append(self._fire(step, m, severity))
        elif self.firing and self.healthy_run >= self.patience:
            self.firing = False
            msg = (
                f"Sample diversity recovered: {self.healthy_run} evaluations in a row without "
                f"collapse (step {step})."
            )
            out.append(self._finding("mode_collapse", KEY, "warning", "resolved", step, msg,
                                     dict(m), (), "G"))
        return out + self._rank_decision(step, m)

    def _rank_decision(self, step: int, m: dict[str, float]) -> list[Finding]:
        """Dimensional collapse: effective rank <= threshold x its best after warm-up."""
        if "effective_rank" not in m:
            return []
        judged = self.evaluations > self.warmup
        low = judged and m["effective_rank_vs_best"] <= self.threshold
        if low and m.get("reference_is_real"):  # with reals, also below the reals' rank
            low = m["effective_rank_ratio"] <= self.threshold
        if low:
            self.rank_collapsed_run += 1
            self.rank_healthy_run = 0
        else:
            self.rank_healthy_run += 1
            self.rank_collapsed_run = 0
        # point collapse implies rank collapse: say it once, as mode_collapse
        if not self.rank_firing and self.rank_collapsed_run >= self.patience and not self.firing:
            self.rank_firing = True
            return [self._fire_rank(step, m)]
        if self.rank_firing and self.rank_healthy_run >= self.patience:
            self.rank_firing = False
            msg = (
                f"The embeddings' effective rank recovered to {fmt(m['effective_rank'])} "
                f"({fmt(m['effective_rank_vs_best'])}x its best) for {self.rank_healthy_run} "
                f"evaluations in a row (step {step})."
            )
            return [self._finding("mode_collapse", DIMENSIONAL_KEY, "warning", "resolved", step,
                                  msg, dict(m), (), "G")]
        return []

    def _rank(self, m: dict[str, float], f_dist: np.ndarray, r_dist: np.ndarray | None,
              d: int, track: bool = True) -> None:
        """Add the effective-rank signals to ``m`` (d >= rank_min_dim only); ``track``: this
        evaluation may set the best rank."""
        if d < self.rank_min_dim:
            return
        er = metrics.effective_rank(None, d_self=f_dist)
        if track and self.evaluations >= max(self.warmup, 1):
            self.best_rank = max(self.best_rank, er)
        m["effective_rank"] = er
        m["effective_rank_best"] = self.best_rank
        m["effective_rank_vs_best"] = er / self.best_rank if self.best_rank > 0 else math.nan
        if r_dist is not None:
            er_r = metrics.effective_rank(None, d_self=r_dist)
            m["effective_rank_ref"] = er_r
            m["effective_rank_ratio"] = er / er_r if er_r > 0 else math.nan

    # ------------------------------------------------------------------------------ internals
    def _check(self, x: Any, name: str) -> np.ndarray:
        a = np.asarray(x, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
            raise ValueError(
                f"{name} embeddings must be a non-empty 2-D (n, d) array, got shape {a.shape}; "
                f"flatten each sample's features to one row"
            )
        keep = np.isfinite(a).all(axis=1)
        return a if keep.all() else a[keep]

    def _sub(self, x: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
        if x.shape[0] <= size:
            return x
        return x[np.sort(rng.choice(x.shape[0], size, replace=False))]

    def _with_reals(self, fake, real, rng) -> tuple[dict[str, float], bool, str]:
        perm = rng.permutation(real.shape[0])
        h = min(real.shape[0] // 2, self.max_samples)
        r1, r2 = real[perm[:h]], real[perm[h : 2 * h]]
        s = min(fake.shape[0], h)
        f = self._sub(fake, s, rng)
        r2 = r2[:s]
        d11 = metrics.pairwise_distances(r1)
        dff = metrics.pairwise_distances(f)
        d22 = metrics.pairwise_distances(r2)
        df1 = metrics.pairwise_distances(f, r1)
        d21 = metrics.pairwise_distances(r2, r1)
        med = metrics.median_pairwise_distance(d11)
        self.bandwidth = bw = max(self.bandwidth_scale * med, 1e-12)
        self.spread_max = max(self.spread_max, med)
        r1_radii = metrics.knn_radii(d11, self.k_coverage)
        cov, cov_ref = metrics._coverage(r1_radii, df1), metrics._coverage(r1_radii, d21)
        kr = min(self.k_recall, s - 1)
        rec = metrics._recall(metrics.knn_radii(dff, kr), df1)
        rec_ref = metrics._recall(metrics.knn_radii(d22, kr), d21)
        nv = min(s, self.vendi_samples)  # same n for both: the Vendi score grows with n
        v_f = metrics.vendi_score(f[:nv], bw, d_self=dff[:nv, :nv])
        v_r = metrics.vendi_score(r2[:nv], bw, d_self=d22[:nv, :nv])
        mpd_f = metrics.mean_pairwise_distance(f, d_self=dff)
        mpd_r = metrics.mean_pairwise_distance(r2, d_self=d22)
        eps = self.duplicate_fraction * float(np.median(metrics.knn_radii(d11, 1)))
        dup = metrics.near_duplicate_rate(f, eps, d_self=dff)
        dup_ref = metrics.near_duplicate_rate(r2, eps, d_self=d22)

        def ratio(a: float, b: float) -> float:
            return a / b if b > 0 else math.nan

        m = {
            "coverage": cov,
            "coverage_ref": cov_ref,
            "coverage_ratio": ratio(cov, cov_ref),
            "recall": rec,
            "recall_ref": rec_ref,
            "recall_ratio": ratio(rec, rec_ref),
            "vendi": v_f,
            "vendi_ref": v_r,
            "vendi_ratio": ratio(v_f, v_r),
            "distance_ratio": ratio(mpd_f, mpd_r),
            "duplicate_rate": dup,
            "duplicate_rate_ref": dup_ref,
            "samples": float(s),
            "bandwidth": bw,
            "reference_is_real": 1.0,
        }
        lows = [m[k] < self.threshold for k in ("coverage_ratio", "recall_ratio", "vendi_ratio")]
        collapsed = sum(lows) >= 2
        # the rank's best counts only where the fakes resemble the reals (an untrained generator's
        # noise-like output has a high rank that no trained one keeps)
        self._rank(m, dff[:nv, :nv], d22[:nv, :nv], f.shape[1], track=not collapsed)
        severity = "critical" if all(lows) else "warning"
        if self.relative:
            collapsed = self._versus_best(m) and collapsed
        return m, collapsed, severity

    def _versus_best(self, m: dict[str, float]) -> bool:
        """Add ``<ratio>_vs_best`` to ``m``; True when two of them are <= ``threshold``.

        The bests are taken over the last warm-up evaluation and the judged ones before this
        one (as in the self-referenced mode), so an evaluation is never compared with itself.
        """
        votes = 0
        for key in RELATIVE_SIGNALS:
            best = self.best_ratios.get(key, 0.0)
            value = m[key]
            rel = value / best if best >= self.min_best and math.isfinite(value) else math.nan
            m[f"{key}_vs_best"] = rel
            votes += bool(rel <= self.threshold)
        if self.evaluations >= max(self.warmup, 1):  # the last warm-up evaluation counts
            for key in RELATIVE_SIGNALS:
                if math.isfinite(m[key]):
                    self.best_ratios[key] = max(self.best_ratios.get(key, 0.0), m[key])
        return votes >= 2

    def _self_history(self, fake, rng) -> tuple[dict[str, float], bool]:
        f = self._sub(fake, self.max_samples, rng)
        dff = metrics.pairwise_distances(f)
        med = metrics.median_pairwise_distance(dff)
        # the last warm-up evaluation and later ones are references; earlier ones (an untrained
        # generator, possibly scattered or all alike) are not
        track = self.evaluations >= max(self.warmup, 1)
        if track:
            self.spread_max = max(self.spread_max, med)
        spread = self.spread_max if self.spread_max > 0 else med
        bw = self.bandwidth if math.isfinite(self.bandwidth) else self.bandwidth_scale * spread
        bw = max(bw, 1e-12)
        nv = min(f.shape[0], self.vendi_samples)
        v_f = metrics.vendi_score(f[:nv], bw, d_self=dff[:nv, :nv])
        mpd_f = metrics.mean_pairwise_distance(f, d_self=dff)
        had_best = self.best_vendi > 0
        if track:
            self.best_vendi = max(self.best_vendi, v_f)
            self.best_distance = max(self.best_distance, mpd_f)
        best_v, best_d = self.best_vendi, self.best_distance
        v_ratio = v_f / best_v if best_v > 0 else math.nan
        d_ratio = mpd_f / best_d if best_d > 0 else math.nan
        collapsed = had_best and v_ratio < self.threshold and d_ratio < self.threshold
        nn = metrics.knn_radii(dff, 1) if f.shape[0] > 1 else np.zeros(1)
        m = {
            "vendi": v_f,
            "vendi_best": best_v,
            "vendi_ratio": v_ratio,
            "distance_ratio": d_ratio,
            "duplicate_rate": float(np.mean(nn < self.duplicate_fraction * 0.1 * spread)),
            "samples": float(f.shape[0]),
            "bandwidth": bw,
            "reference_is_real": 0.0,
        }
        self._rank(m, dff[:nv, :nv], None, f.shape[1])
        return m, collapsed

    def _fire(self, step: int, m: dict[str, float], severity: str) -> Finding:
        if m.get("reference_is_real"):
            msg = (
                f"Mode collapse: the generated samples cover far less of the data than real "
                f"samples do, for {self.collapsed_run} evaluations in a row (step {step}). "
                f"Coverage {fmt(m['coverage'])} vs {fmt(m['coverage_ref'])} for real-vs-real "
                f"(ratio {fmt(m['coverage_ratio'])}), recall {fmt(m['recall'])} vs "
                f"{fmt(m['recall_ref'])} (ratio {fmt(m['recall_ratio'])}), Vendi "
                f"{fmt(m['vendi'])} vs {fmt(m['vendi_ref'])} effective samples (ratio "
                f"{fmt(m['vendi_ratio'])}), at n = {int(m['samples'])}; threshold "
                f"{fmt(self.threshold)}x the reference.{self._fall_text(m)} The generator "
                f"produces a few kinds of output and misses the rest."
            )
        else:
            msg = (
                f"Possible mode collapse (lower confidence: no real embeddings to compare with): "
                f"the Vendi score of the generated samples fell to {fmt(m['vendi'])} effective "
                f"samples, {fmt(m['vendi_ratio'])}x the best seen in this run "
                f"({fmt(m['vendi_best'])}), and their mean pairwise distance to "
                f"{fmt(m['distance_ratio'])}x its best, for {self.collapsed_run} evaluations in a "
                f"row (step {step}). Log real embeddings too for a confident verdict."
            )
        return self._finding("mode_collapse", KEY, severity, "firing", step, msg, dict(m),
                             remedies.MODE_COLLAPSE, "G")

    def _fall_text(self, m: dict[str, float]) -> str:
        parts = [f"{name} {fmt(m[key + '_vs_best'])}x" for key, name in
                 zip(RELATIVE_SIGNALS, ("coverage", "recall", "Vendi", "mean distance"),
                     strict=True)
                 if math.isfinite(m.get(key + "_vs_best", math.nan))]
        if not parts:
            return ""
        return " Against this run's best ratios so far: " + ", ".join(parts) + "."

    def _fire_rank(self, step: int, m: dict[str, float]) -> Finding:
        head = (
            f"Dimensional collapse: the effective rank of the embeddings fell to "
            f"{fmt(m['effective_rank'])}, {fmt(m['effective_rank_vs_best'])}x the best seen in "
            f"this run ({fmt(m['effective_rank_best'])}), for {self.rank_collapsed_run} "
            f"evaluations in a row (step {step}; threshold {fmt(self.threshold)}x, n = "
            f"{min(int(m['samples']), self.vendi_samples)})."
        )
        if m.get("reference_is_real"):
            tail = (
                f" Real embeddings at the same n have an effective rank of "
                f"{fmt(m['effective_rank_ref'])} (ratio {fmt(m['effective_rank_ratio'])}). The "
                f"outputs vary along far fewer directions than the data."
            )
        else:
            tail = (
                " Lower confidence: there are no real embeddings to compare with, so this is "
                "judged against the run's own history. The embeddings vary along far fewer "
                "directions than before (Jing et al. 2022; RankMe, Garrido et al. 2023)."
            )
        return self._finding("mode_collapse", DIMENSIONAL_KEY, "warning", "firing", step,
                             head + tail, dict(m), remedies.DIMENSIONAL_COLLAPSE, "G")

    def status(self) -> DetectorStatus:
        if self.evaluations == 0:
            reason = self.last_reason or (
                "no embeddings received; call Monitor.log_embeddings(step, fake=..., real=...)"
            )
            return DetectorStatus(self.name, "unavailable", reason)
        if self.evaluations <= self.warmup:
            return DetectorStatus(self.name, "waiting",
                                  f"{self.evaluations}/{self.warmup} warm-up evaluations")
        note = f" ({self.last_reason})" if self.last_reason else ""
        m = self.last_metrics
        if "effective_rank" in m:
            note += (f"; effective rank {fmt(m['effective_rank'])} "
                     f"({fmt(m['effective_rank_vs_best'])}x its best)")
        if self.firing or self.rank_firing:
            what = "mode collapse" if self.firing else "dimensional collapse"
            return DetectorStatus(self.name, "alarm", what + note)
        return DetectorStatus(self.name, "ok", f"{self.evaluations} evaluations{note}")
