"""Mode collapse from batches of generated (and real) embeddings, judged as a state.

Each evaluation compares a batch of generated embeddings with real ones from the same feature
extractor, at the same sample size: the reals are split in two halves R1 and R2, the generated
batch is subsampled to the size of R2, and every metric is computed for (R1, fakes) and for
(R1, R2). Thresholds are ratios to what real data scores against itself, which cancels the
metrics' dependence on n, d and the extractor.

Three questions (ratio = fake value / real-vs-real value):

- *how much of the data is covered*: coverage (Naeem 2020, k = 5) and recall (Kynkäänniemi
  2019, k = 3). Their minimum is the *coverage score*: coverage falls first when a generator
  smears between the modes it has (a 2D grid), recall when whole classes are missing (digits
  through random features);
- *are the generated samples on the data at all*: precision (Kynkäänniemi 2019), the fidelity;
- *how many distinct things are made*: the Vendi score (Friedman & Dieng 2022; RBF kernel of
  bandwidth ``bandwidth_scale`` x the reals' median pairwise distance).

The *mode score* is the coverage score times the Vendi ratio (capped at 1): about the share of
the data's modes the generator reproduces. Each evaluation is judged on the median mode score
of the last ``smooth`` evaluations (one noisy batch neither raises nor clears an alert).
An evaluation is *collapsed* when that score is at most ``threshold`` *and* the low score is
explained by missing modes: either the samples are on the data (precision ratio at least
``precision_floor``) or they are few distinct things (Vendi ratio at most
``diversity_threshold``), or they miss the data altogether (precision ratio and coverage score
both at most ``off_data_level`` for ``off_data_patience`` evaluations in a row: a generator
that never learned). The guard keeps extractors
that move with training apart: in the features of a discriminator that is winning, the fakes
sit apart from the reals, so coverage, recall and precision fall however diverse the samples
are; an evaluation with some precision left but not enough, and many distinct samples, says
nothing about collapse and counts for neither side. A collapse is *severe* (critical) when
the score is at most ``critical_threshold``: a quarter of the data or less.

Collapse is a state, not an event: ``patience`` collapsed evaluations in a row fire, whatever
the run did before (a generator collapsed from its first evaluation is flagged like one that
collapsed later), and the alert resolves only when the absolute evidence recovers: ``patience``
evaluations in a row with the score above ``threshold + hysteresis``. A warning escalates
to critical when the score falls that low.

Every generator starts collapsed (an untrained one maps all noise near one point), so a low
score is only held against a generator that has stopped improving: at least
``min_evaluations`` evaluations were made and the best (median) mode score of the last
``plateau`` evaluations is no more than ``plateau_delta`` above the best before them. A
generator still gaining modes is never collapsed, however few it has so far.

Without reals, the generated batch is judged against its own history: Vendi and mean pairwise
distance below ``threshold`` times their best after ``min_evaluations`` evaluations (at a
bandwidth frozen from the largest spread seen), a warning with lower confidence stated in the
message and the evidence.

Every evaluation is bounded: at most ``max_samples`` points per set (``vendi_samples`` for the
eigendecompositions), and BLAS limited to ``blas_threads`` threads while it runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import metrics, remedies
from .base import EmbeddingDetector, check_float, check_int, fmt
from .findings import DetectorStatus, Finding
from .rank import _sub, as_embedding, blas_threads, rng_for

__all__ = ["CollapseDetector", "KEY", "SIGNALS"]

KEY = "mode_collapse"
#: Metrics of each evaluation that the suite stores as ``stethoscope/collapse/<name>``.
SIGNALS = (
    "coverage", "recall", "precision", "vendi", "coverage_ratio", "recall_ratio",
    "precision_ratio", "vendi_ratio", "coverage_score", "mode_score", "mode_score_median",
    "distance_ratio", "duplicate_rate",
)


class CollapseDetector(EmbeddingDetector):
    """Detects mode collapse from batches of generated and real embeddings.

    Parameters
    ----------
    k_coverage
        Neighbours for coverage (default 5, Naeem 2020).
    k_recall
        Neighbours for recall and precision (default 3, Kynkäänniemi 2019).
    threshold
        Mode score at or below which an evaluation can be collapsed (default 0.5; a generator
        on half the modes of a mixture scores about 0.4).
    precision_floor
        Precision ratio from which low coverage is blamed on missing modes (default 0.25; the
        discriminator's features of a winning D put it near 0).
    diversity_threshold
        Vendi ratio at or below which low coverage is blamed on too few distinct samples
        (default 0.6).
    off_data_level
        Precision and coverage score both at or below it: the samples miss the data altogether
        (a generator that never learned, or a dead one), also a collapse (default 0.1).
    off_data_patience
        Evaluations in a row off the data before that counts (default 8): every generator
        starts off the data, and healthy ones can take a few hundred steps to reach it.
    critical_threshold
        Mode score at or below which a collapse is critical (default 0.25).
    smooth
        Evaluations whose median mode score is judged (default 3).
    hysteresis
        How far above ``threshold`` the score must climb to count as recovered (default 0.1).
    patience
        Collapsed evaluations in a row to fire, recovered ones to resolve (default 2).
    min_evaluations
        Evaluations before anything is judged (default 3).
    plateau, plateau_delta
        Judging starts once the best coverage ratio of the last ``plateau`` evaluations is no
        more than ``plateau_delta`` above the best before them (defaults 4 and 0.05).
    max_samples
        Cap on the size of each of R1, R2 and the generated subsample (default 512).
    vendi_samples
        Cap on the samples whose Vendi scores are compared (default 256; O(n^3)).
    bandwidth_scale
        RBF bandwidth as a multiple of the reals' median pairwise distance (default 0.5).
    duplicate_fraction
        Two samples are near-duplicates when closer than this fraction of the reals' median
        nearest-neighbour distance (default 0.1).
    seed
        Seed of the deterministic subsampling (one stream per step).
    blas_threads
        BLAS threads while an evaluation runs (default 1; None leaves BLAS alone).

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
    ...     fired += det.update(step, {"fake": ring(512, modes), "real": ring(512, np.arange(8))})
    >>> [(f.kind, f.step, f.severity) for f in fired]
    [('mode_collapse', 700, 'critical')]
    """

    family = "collapse"

    def __init__(
        self,
        k_coverage: int = 5,
        k_recall: int = 3,
        threshold: float = 0.5,
        precision_floor: float = 0.25,
        diversity_threshold: float = 0.6,
        off_data_level: float = 0.1,
        off_data_patience: int = 8,
        critical_threshold: float = 0.25,
        smooth: int = 3,
        hysteresis: float = 0.1,
        patience: int = 2,
        min_evaluations: int = 3,
        plateau: int = 4,
        plateau_delta: float = 0.05,
        max_samples: int = 512,
        vendi_samples: int = 256,
        bandwidth_scale: float = 0.5,
        duplicate_fraction: float = 0.1,
        seed: int = 0,
        blas_threads: int | None = 1,
    ) -> None:
        super().__init__()
        self.k_coverage = k_coverage
        self.k_recall = k_recall
        self.threshold = threshold
        self.precision_floor = precision_floor
        self.diversity_threshold = diversity_threshold
        self.off_data_level = off_data_level
        self.off_data_patience = off_data_patience
        self.critical_threshold = critical_threshold
        self.smooth = smooth
        self.hysteresis = hysteresis
        self.patience = patience
        self.min_evaluations = min_evaluations
        self.plateau = plateau
        self.plateau_delta = plateau_delta
        self.max_samples = max_samples
        self.vendi_samples = vendi_samples
        self.bandwidth_scale = bandwidth_scale
        self.duplicate_fraction = duplicate_fraction
        self.seed = seed
        self.blas_threads = blas_threads
        check_int("k_coverage", k_coverage, 1, 50)
        check_int("k_recall", k_recall, 1, 50)
        check_float("threshold", threshold, 0.0, 1.0, low_open=True, high_open=True)
        check_float("precision_floor", precision_floor, 0.0, 1.0)
        check_float("diversity_threshold", diversity_threshold, 0.0, 1.0, low_open=True)
        check_float("off_data_level", off_data_level, 0.0, 1.0)
        check_int("off_data_patience", off_data_patience, 1)
        check_float("critical_threshold", critical_threshold, 0.0, threshold, low_open=True)
        check_int("smooth", smooth, 1)
        check_float("hysteresis", hysteresis, 0.0, 1.0)
        check_int("patience", patience, 1)
        check_int("min_evaluations", min_evaluations, 1)
        check_int("plateau", plateau, 1)
        check_float("plateau_delta", plateau_delta, 0.0, 1.0)
        check_int("max_samples", max_samples, 2 * (max(k_coverage, k_recall) + 1))
        check_int("vendi_samples", vendi_samples, 2)
        check_float("bandwidth_scale", bandwidth_scale, 0.0, low_open=True)
        check_float("duplicate_fraction", duplicate_fraction, 0.0, 1.0)
        check_int("seed", seed, 0)
        if blas_threads is not None:
            check_int("blas_threads", blas_threads, 1)
        self._add_state("evaluations", 0)
        self._add_state("collapsed_run", 0)
        self._add_state("healthy_run", 0)
        self._add_state("firing", False)
        self._add_state("severity", "")
        self._add_state("judging", False)
        self._add_state("scores", [])  # the last `smooth` mode scores
        self._add_state("off_run", 0)  # evaluations in a row off the data
        self._add_state("progress", [])  # median mode score of every evaluation
        self._add_state("mode", "")  # "real" or "self" for the last evaluation
        self._add_state("spread_max", 0.0)  # largest median pairwise distance of fakes (self)
        self._add_state("best_vendi", 0.0)  # best fake Vendi in self mode
        self._add_state("best_distance", 0.0)
        self._add_state("last_metrics", {})
        self._add_state("last_reason", "")

    @property
    def min_samples(self) -> int:
        """Smallest batch that can be evaluated (per half of the reals, and for fakes)."""
        return max(self.k_coverage, self.k_recall) + 2

    # ------------------------------------------------------------------ measuring
    def measure(self, step: int, embeddings: Mapping[str, Any]) -> dict[str, Any]:
        """Every metric of one evaluation. Pure but for one read: without reals, the Vendi
        bandwidth comes from the largest spread this run's fakes have had."""
        fake = embeddings.get("fake")
        if fake is None:
            return {"skip": f"embeddings at step {step} had no 'fake' batch (got "
                            f"{sorted(embeddings)}); log generated samples as fake=..."}
        fake = as_embedding(fake, "fake")
        real = embeddings.get("real")
        if real is not None:
            real = as_embedding(real, "real")
            if real.shape[1] != fake.shape[1]:
                raise ValueError(
                    f"fake and real embeddings must have the same dimension, got "
                    f"{fake.shape[1]} and {real.shape[1]}; use one feature extractor for both"
                )
        if fake.shape[0] < self.min_samples:
            return {"skip": f"batch of {fake.shape[0]} generated samples is too small "
                            f"(need >= {self.min_samples})"}
        rng = rng_for(self.seed, step)
        with blas_threads(self.blas_threads):
            if real is not None and real.shape[0] >= 2 * self.min_samples:
                return self._with_reals(fake, real, rng)
            m = self._self_metrics(fake, rng)
        m["no_reals"] = ("no real embeddings" if real is None else
                         f"real batch of {real.shape[0]} is too small (need >= "
                         f"{2 * self.min_samples})")
        return m

    def _with_reals(self, fake: np.ndarray, real: np.ndarray,
                    rng: np.random.Generator) -> dict[str, Any]:
        perm = rng.permutation(real.shape[0])
        h = min(real.shape[0] // 2, self.max_samples)
        r1, r2 = real[perm[:h]], real[perm[h: 2 * h]]
        s = min(fake.shape[0], h)
        f = _sub(fake, s, rng)
        r2 = r2[:s]
        d11 = metrics.pairwise_distances(r1)
        dff = metrics.pairwise_distances(f)
        d22 = metrics.pairwise_distances(r2)
        df1 = metrics.pairwise_distances(f, r1)
        d21 = metrics.pairwise_distances(r2, r1)
        bw = max(self.bandwidth_scale * metrics.median_pairwise_distance(d11), 1e-12)
        r1_cov = metrics.knn_radii(d11, self.k_coverage)
        kr = min(self.k_recall, s - 1)
        r1_rec = metrics.knn_radii(d11, kr)
        nv = min(s, self.vendi_samples)  # same n for both: the Vendi score grows with n
        eps = self.duplicate_fraction * float(np.median(metrics.knn_radii(d11, 1)))

        def ratio(a: float, b: float) -> float:
            return a / b if b > 0 else math.nan

        m = {
            "coverage": metrics._coverage(r1_cov, df1),
            "coverage_ref": metrics._coverage(r1_cov, d21),
            "recall": metrics._recall(metrics.knn_radii(dff, kr), df1),
            "recall_ref": metrics._recall(metrics.knn_radii(d22, kr), d21),
            "precision": metrics._precision(r1_rec, df1),
            "precision_ref": metrics._precision(r1_rec, d21),
            "vendi": metrics.vendi_score(f[:nv], bw, d_self=dff[:nv, :nv]),
            "vendi_ref": metrics.vendi_score(r2[:nv], bw, d_self=d22[:nv, :nv]),
            "distance_ratio": ratio(metrics.mean_pairwise_distance(f, d_self=dff),
                                    metrics.mean_pairwise_distance(r2, d_self=d22)),
            "duplicate_rate": metrics.near_duplicate_rate(f, eps, d_self=dff),
            "duplicate_rate_ref": metrics.near_duplicate_rate(r2, eps, d_self=d22),
            "samples": float(s),
            "bandwidth": bw,
            "reference_is_real": 1.0,
        }
        for key in ("coverage", "recall", "precision", "vendi"):
            m[f"{key}_ratio"] = ratio(m[key], m[f"{key}_ref"])
        m["coverage_score"] = float(np.nanmin([m["coverage_ratio"], m["recall_ratio"]]))
        m["mode_score"] = m["coverage_score"] * min(1.0, m["vendi_ratio"])
        return m

    def _self_metrics(self, fake: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
        f = _sub(fake, self.max_samples, rng)
        dff = metrics.pairwise_distances(f)
        spread = metrics.median_pairwise_distance(dff)
        reference = max(self.spread_max, spread)
        bw = max(self.bandwidth_scale * reference, 1e-12)
        nv = min(f.shape[0], self.vendi_samples)
        nn = metrics.knn_radii(dff, 1) if f.shape[0] > 1 else np.zeros(1)
        return {
            "vendi": metrics.vendi_score(f[:nv], bw, d_self=dff[:nv, :nv]),
            "mean_distance": metrics.mean_pairwise_distance(f, d_self=dff),
            "spread": spread,
            "duplicate_rate": float(np.mean(nn < self.duplicate_fraction * 0.1 * reference)),
            "samples": float(f.shape[0]),
            "bandwidth": bw,
            "reference_is_real": 0.0,
        }

    # ------------------------------------------------------------------ judging
    def update(self, step: int, embeddings: Mapping[str, Any],
               measured: Mapping[str, Any] | None = None) -> list[Finding]:
        """Judge one evaluation (``{"fake": (n, d), "real": (m, d) optional}``)."""
        m = dict(measured if measured is not None else self.measure(step, embeddings))
        if "skip" in m:
            self.last_reason = str(m.pop("skip"))
            self.last_metrics = {}
            return []
        step = int(step)
        self.evaluations += 1
        if m.get("reference_is_real"):
            self.mode = "real"
            self.last_reason = ""
            collapsed, recovered = self._judge_real(m)
        else:
            self.mode = "self"
            self.last_reason = str(m.pop("no_reals", "no real embeddings")) + (
                ": judged against this run's own history (lower confidence)")
            collapsed, recovered = self._judge_self(m)
        m["judged"] = 1.0 if self.judging else 0.0
        self.last_metrics = m
        severity = "critical" if (self.mode == "real" and
                                  m["mode_score_median"] <= self.critical_threshold) else "warning"
        if collapsed:
            self.collapsed_run += 1
            self.healthy_run = 0
        elif recovered:
            self.healthy_run += 1
            self.collapsed_run = 0
        else:  # in between: neither counts up
            self.collapsed_run = self.healthy_run = 0
        if not self.firing and self.collapsed_run >= self.patience:
            self.firing, self.severity = True, severity
            return [self._fire(step, m, severity)]
        if self.firing and collapsed and severity == "critical" and self.severity == "warning":
            self.severity = severity
            return [self._fire(step, m, severity)]
        if self.firing and self.healthy_run >= self.patience:
            self.firing = False
            msg = (f"Sample diversity and coverage recovered: {self.healthy_run} evaluations in "
                   f"a row above {fmt(self.threshold + self.hysteresis)}x the reference "
                   f"(step {step}).")
            sev, self.severity = self.severity or "warning", ""
            return [self._finding("mode_collapse", KEY, sev, "resolved", step, msg, m, (), "G")]
        return []

    def _judge_real(self, m: dict[str, Any]) -> tuple[bool, bool]:
        raw = m["mode_score"]
        self.off_run = self.off_run + 1 if self._off_data(m) else 0
        self.scores = (self.scores + [raw if math.isfinite(raw) else 0.0])[-self.smooth:]
        score = m["mode_score_median"] = float(np.median(self.scores))
        self.progress = self.progress + [score]
        p = self.progress
        improving = True
        if len(p) >= max(self.min_evaluations, self.plateau + 1):
            before, recent = max(p[: -self.plateau]), max(p[-self.plateau:])
            improving = recent > before + self.plateau_delta
        self.judging = not improving
        m["improving"] = 1.0 if improving else 0.0
        recovered = score > self.threshold + self.hysteresis
        if improving:
            return False, recovered
        on_data = m["precision_ratio"] >= self.precision_floor
        few = m["vendi_ratio"] <= self.diversity_threshold
        off = self.off_run >= self.off_data_patience
        collapsed = score <= self.threshold and (on_data or few or off)
        return collapsed, recovered

    def _off_data(self, m: dict[str, Any]) -> bool:
        """The samples miss the data altogether: next to no coverage and no precision."""
        return (m["precision_ratio"] <= self.off_data_level
                and m["coverage_score"] <= self.off_data_level)

    def _judge_self(self, m: dict[str, Any]) -> tuple[bool, bool]:
        tracking = self.evaluations >= self.min_evaluations
        had_best = self.best_vendi > 0
        if tracking:
            self.spread_max = max(self.spread_max, m["spread"])
        v_ratio = m["vendi"] / self.best_vendi if had_best else math.nan
        d_ratio = m["mean_distance"] / self.best_distance if self.best_distance > 0 else math.nan
        m["vendi_best"], m["vendi_ratio"], m["distance_ratio"] = (self.best_vendi, v_ratio,
                                                                  d_ratio)
        if tracking:
            self.best_vendi = max(self.best_vendi, m["vendi"])
            self.best_distance = max(self.best_distance, m["mean_distance"])
        self.judging = had_best
        collapsed = had_best and v_ratio <= self.threshold and d_ratio <= self.threshold
        recovered = had_best and (v_ratio > self.threshold + self.hysteresis
                                  or d_ratio > self.threshold + self.hysteresis)
        return collapsed, recovered

    def _fire(self, step: int, m: dict[str, Any], severity: str) -> Finding:
        if m.get("reference_is_real"):
            quarter = (" It covers a quarter of the data or less: the run is lost as it stands."
                       if severity == "critical" else "")
            if self._off_data(m):
                why = ("they miss the data altogether (precision " + fmt(m["precision_ratio"])
                       + "x the reals': the generator has not learned the data, or, with the "
                       "discriminator's own features, D sets every fake apart from every real)")
            elif m["precision_ratio"] >= self.precision_floor:
                why = ("they lie on the data (precision " + fmt(m["precision_ratio"])
                       + "x the reals')")
            else:
                why = ("they are few distinct things (Vendi " + fmt(m["vendi_ratio"])
                       + "x the reals')")
            msg = (
                f"Mode collapse: the generated samples cover far less of the data than real "
                f"samples do, and {why}, for {max(self.collapsed_run, 1)} evaluations in a row "
                f"(step {step}). Coverage {fmt(m['coverage'])} vs {fmt(m['coverage_ref'])} for "
                f"real-vs-real (ratio {fmt(m['coverage_ratio'])}), recall {fmt(m['recall'])} vs "
                f"{fmt(m['recall_ref'])} (ratio {fmt(m['recall_ratio'])}), Vendi "
                f"{fmt(m['vendi'])} vs {fmt(m['vendi_ref'])} effective samples; mode score "
                f"{fmt(m['mode_score_median'])} (median of the last {len(self.scores)}) at n = "
                f"{int(m['samples'])}, threshold {fmt(self.threshold)}.{quarter} "
                f"The generator produces some kinds of output and misses the rest."
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
        return self._finding("mode_collapse", KEY, severity, "firing", step, msg, m,
                             remedies.MODE_COLLAPSE, "G")

    def status(self) -> DetectorStatus:
        if self.evaluations == 0:
            reason = self.last_reason or (
                "no embeddings received; call Monitor.log_embeddings(step, fake=..., real=...)"
            )
            return DetectorStatus(self.name, "unavailable", reason)
        note = f" ({self.last_reason})" if self.last_reason else ""
        m = self.last_metrics
        if not self.judging:
            return DetectorStatus(
                self.name, "waiting",
                f"{self.evaluations} evaluations; judging starts once the coverage stops "
                f"improving (at least {self.min_evaluations}){note}")
        if self.firing:
            return DetectorStatus(self.name, "alarm", f"{self.severity} mode collapse{note}")
        ratios = ", ".join(f"{name} {fmt(m[key])}x" for key, name in (
            ("mode_score_median", "mode score"), ("precision_ratio", "precision"),
            ("vendi_ratio", "Vendi")) if math.isfinite(m.get(key, math.nan)))
        return DetectorStatus(self.name, "ok", f"{self.evaluations} evaluations"
                              + (f"; {ratios} the reference" if ratios else "") + note)
