"""Effective rank and dimensional collapse, the self-referenced fallback, and bounded cost."""

from __future__ import annotations

import numpy as np
import pytest
from streams import ring

from stethoscope.detectors import (
    CollapseDetector,
    DetectorSuite,
    DimensionalCollapseDetector,
    effective_rank,
)


def embeddings(rng, n, d, k=None, scale=1.0):
    """Isotropic (n, d) Gaussian embeddings, or confined to k random directions."""
    if k is None:
        return scale * rng.standard_normal((n, d))
    w = rng.standard_normal((k, d)) / np.sqrt(k)  # same variance per coordinate
    return scale * (rng.standard_normal((n, k)) @ w + 0.05 * rng.standard_normal((n, d)))


def run(schedule, d, seed=0, with_real=False, n=512, **kw):
    """schedule: one entry per evaluation, None (healthy) or k (collapsed onto k directions)."""
    rng = np.random.default_rng(seed)
    det = DimensionalCollapseDetector(**kw)
    found, metrics = [], []
    for i, k in enumerate(schedule):
        emb = {"fake": embeddings(rng, n, d, k)}
        if with_real:
            emb["real"] = embeddings(rng, n, d)
        found += det.update(100 * i, emb)
        metrics.append(dict(det.last_metrics))
    return det, found, metrics


def test_effective_rank_values():
    rng = np.random.default_rng(0)
    assert effective_rank(rng.standard_normal((4000, 16))) == pytest.approx(16, rel=0.02)
    low = rng.standard_normal((500, 3)) @ rng.standard_normal((3, 100))
    assert effective_rank(low) < 3.01
    assert effective_rank(np.ones((10, 5))) == 1.0
    shifted = rng.standard_normal((300, 40)) + 100.0  # centring: an offset is no dimension
    assert effective_rank(shifted) > 30


@pytest.mark.parametrize("d", [16, 64, 128])
def test_effective_rank_never_exceeds_the_dimension_for_near_identical_points(d):
    # from a distance matrix this gave 76.7 and 128.1 at d = 64; it is at most min(n - 1, d)
    rng = np.random.default_rng(d)
    x = rng.standard_normal((1, d)) + 1e-4 * rng.standard_normal((256, d))
    assert 1.0 <= effective_rank(x.astype(np.float32)) <= d
    assert effective_rank(np.repeat(x[:1], 256, axis=0)) == 1.0


def test_dimensional_collapse_without_reals_fires_judged_on_own_history():
    det, found, m = run([None] * 5 + [4] * 3, d=64)
    assert [(f.key, f.kind, f.step, f.severity) for f in found] == [
        ("mode_collapse/dimensional", "mode_collapse", 600, "warning")]
    f = found[0]
    assert f.evidence["effective_rank_vs_best"] <= 0.5
    assert "own history" in f.message and "effective rank" in f.message
    assert m[4]["effective_rank_vs_best"] > 0.95 and m[5]["effective_rank_vs_best"] < 0.2
    assert det.status().state == "alarm"


def test_dimensional_collapse_with_reals_quotes_the_reals_rank():
    det, found, m = run([None] * 5 + [4] * 3, d=64, with_real=True)
    assert [(f.key, f.step, f.status) for f in found] == [
        ("mode_collapse/dimensional", 600, "firing")]
    assert found[0].evidence["effective_rank_ratio"] < 0.2
    assert "Real embeddings at the same n" in found[0].message
    assert m[0]["effective_rank_ratio"] == pytest.approx(1.0, abs=0.05)


def test_dimensional_collapse_resolves():
    det, found, _ = run([None] * 4 + [4] * 2 + [None] * 3, d=32)
    assert [(f.key, f.step, f.status) for f in found] == [
        ("mode_collapse/dimensional", 500, "firing"),
        ("mode_collapse/dimensional", 700, "resolved")]


def test_point_collapse_is_reported_once_as_mode_collapse_by_the_suite():
    """A few near-identical outputs also have a low rank: one alert, not two."""
    rng = np.random.default_rng(1)
    suite = DetectorSuite()
    found = []
    for i in range(9):
        real = rng.standard_normal((512, 128))
        fake = rng.standard_normal((512, 128)) if i < 5 else (
            rng.standard_normal((3, 128))[rng.integers(0, 3, 512)]
            + 0.05 * rng.standard_normal((512, 128)))
        found += suite.update_embeddings(i, {"fake": fake, "real": real})
    assert [f.key for f in found if f.status == "firing"] == ["mode_collapse"]


def test_rank_is_not_computed_or_judged_in_low_dimension():
    """On the 2-D ring the rank is at most 2: meaningless, so neither signal nor finding."""
    det = DimensionalCollapseDetector()
    for i in range(8):
        modes = np.arange(8) if i < 4 else [0]
        assert det.update(100 * i, {"fake": ring(1000, modes, seed=i)}) == []
    assert det.last_metrics == {} and "min_dim" in det.status().reason


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("d", [8, 32, 256])
@pytest.mark.parametrize("with_real", [False, True])
def test_no_false_alarm_on_healthy_high_dimensional_runs(seed, d, with_real):
    """Stationary embeddings whose scale grows 4x over training and whose batch size varies."""
    rng = np.random.default_rng(seed)
    suite = DetectorSuite()
    found = []
    for i in range(15):
        n = int(rng.integers(300, 700))
        emb = {"fake": embeddings(rng, n, d, scale=1.0 + 0.2 * i)}
        if with_real:
            emb["real"] = embeddings(rng, 600, d, scale=1.0 + 0.2 * i)
        found += suite.update_embeddings(100 * i, emb)
    assert [f for f in found if f.severity != "info"] == []
    states = {s.name: s.state for s in suite.health()}
    assert states["collapse"] == "ok" and states["rank"] == "ok"


@pytest.mark.parametrize("seed", range(4))
def test_self_reference_ignores_a_scattered_untrained_generator(seed):
    """Early evaluations are not references: an untrained G scattering samples 10x wider than
    the data must not make the healthy run that follows look collapsed (no reals)."""
    det = CollapseDetector()
    found = []
    rng = np.random.default_rng(seed)
    for i in range(12):
        x = ring(1000, np.arange(8), seed=100 * seed + i)
        if i < 2:
            x = 20.0 * rng.standard_normal((1000, 2))
        found += det.update(100 * i, {"fake": x})
    assert found == []


@pytest.mark.parametrize("seed", range(4))
def test_self_reference_still_catches_ring_collapse(seed):
    det = CollapseDetector()
    found = []
    for i in range(10):
        modes = np.arange(8) if i < 6 else [seed % 8]
        found += det.update(100 * i, {"fake": ring(1000, modes, seed=100 * seed + i)})
    assert [(f.key, f.step) for f in found] == [("mode_collapse", 700)]
    assert "lower confidence" in found[0].message


def test_suite_stores_rank_signals_and_skips_undefined_ratios():
    rng = np.random.default_rng(3)
    suite = DetectorSuite()
    for i in range(4):
        suite.update_embeddings(100 * i, {"fake": rng.standard_normal((300, 16))})
    sig = suite.drain_signals()
    assert sig["stethoscope/collapse/effective_rank"][0].tolist() == [0, 100, 200, 300]
    # no best before the warm-up's last evaluation: no point rather than a NaN marker
    assert sig["stethoscope/collapse/effective_rank_vs_best"][0].tolist() == [300]
    assert all(np.isfinite(v).all() for _, v in sig.values())
    suite.update_embeddings(400, {"fake": rng.standard_normal((300, 16)),
                                  "real": rng.standard_normal((300, 16))})
    assert "stethoscope/collapse/effective_rank_ratio" in suite.drain_signals()


def test_evaluations_are_bounded_and_blas_threads_limited(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from stethoscope.detectors import metrics

    seen = []
    original = metrics.vendi_score

    def spy(x, bandwidth, *, d_self=None):
        seen.append(({i["num_threads"] for i in threadpoolctl.threadpool_info()
                      if i["user_api"] == "blas"}, d_self.shape[0]))
        return original(x, bandwidth, d_self=d_self)

    monkeypatch.setattr(metrics, "vendi_score", spy)
    rng = np.random.default_rng(0)
    emb = {"fake": rng.standard_normal((3000, 64)), "real": rng.standard_normal((3000, 64))}
    CollapseDetector().update(0, emb)
    assert seen and all(threads <= {1} and n <= 256 for threads, n in seen)
    a = CollapseDetector(blas_threads=None)
    b = CollapseDetector(blas_threads=1)
    assert a.update(0, emb) == b.update(0, emb)
    assert a.last_metrics == pytest.approx(b.last_metrics, rel=1e-6, nan_ok=True)
