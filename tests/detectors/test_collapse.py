"""Mode collapse on the 2-D ring of 8 Gaussians and in 512 dimensions."""

from __future__ import annotations

import numpy as np
import pytest
from streams import RING_CENTRES, ring

from stethoscope.detectors import (
    CollapseDetector,
    coverage,
    mean_pairwise_distance,
    near_duplicate_rate,
    recall,
    vendi_score,
)

ALL = np.arange(8)


def modes_captured(x: np.ndarray, std: float = 0.02) -> int:
    """Ground truth: a mode is captured when high-quality samples (within 3 std) land on it."""
    d = np.linalg.norm(x[:, None, :] - RING_CENTRES[None], axis=2)
    near = d.min(axis=1) <= 3 * std
    return int(np.unique(d.argmin(axis=1)[near]).size)


def test_ring_centres_are_distinct():
    assert np.unique(np.round(RING_CENTRES, 6), axis=0).shape[0] == 8


def run(schedule, n=2500, seed=0, with_real=True, **kw):
    det = CollapseDetector(**kw)
    found = []
    for i, modes in enumerate(schedule):
        emb = {"fake": ring(n, modes, seed=seed * 1000 + i)}
        if with_real:
            emb["real"] = ring(n, ALL, seed=seed * 1000 + 500 + i)
        found += det.update(200 * i, emb)
    return det, found


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_alarm_when_samples_cover_all_eight_modes(seed):
    det, found = run([ALL] * 10, seed=seed)
    assert found == []
    assert modes_captured(ring(2500, ALL, seed)) == 8
    m = det.last_metrics
    assert m["coverage_ratio"] > 0.9 and m["recall_ratio"] > 0.9 and m["vendi_ratio"] > 0.9
    assert m["precision_ratio"] > 0.9
    assert det.status().state == "ok"


@pytest.mark.parametrize("modes", [[0], [3, 4], [0, 4]])
def test_collapse_to_one_or_two_modes_is_critical_on_the_third_collapsed_evaluation(modes):
    # the median of the last three scores is low from the second collapsed evaluation on,
    # and two such evaluations in a row fire
    assert modes_captured(ring(2500, modes, 9)) == len(modes)
    det, found = run([ALL] * 5 + [modes] * 4)
    assert [(f.kind, f.key, f.step, f.status, f.severity) for f in found] == [
        ("mode_collapse", "mode_collapse", 1400, "firing", "critical")]
    f = found[0]
    assert f.evidence["coverage_ratio"] <= 0.3 and f.evidence["vendi_ratio"] < 0.6
    assert f.evidence["reference_is_real"] == 1.0
    assert "Vendi" in f.message and "quarter" in f.message


def test_partial_collapse_to_half_the_modes_is_a_warning():
    det, found = run([ALL] * 5 + [[0, 1, 2, 3]] * 3)
    assert [(f.step, f.severity) for f in found] == [(1400, "warning")]


def test_six_of_eight_modes_is_not_collapse():
    det, found = run([ALL] * 5 + [range(6)] * 5)
    assert found == []


def test_collapse_resolves_only_when_the_evidence_recovers():
    det, found = run([ALL] * 4 + [[0]] * 3 + [ALL] * 4)
    assert [(f.step, f.status) for f in found] == [(1200, "firing"), (1800, "resolved")]
    # no recovery, whatever the run's own history says: it stays firing
    det, found = run([ALL] * 4 + [[0]] * 8)
    assert [f.status for f in found] == ["firing"] and det.firing


def test_collapsed_from_the_start_is_flagged_once_the_run_stops_improving():
    det, found = run([[0]] * 7)
    assert [(f.step, f.severity) for f in found] == [(1000, "critical")]
    det, found = run([[0]] * 2)
    assert found == [] and det.status().state == "waiting"


def test_a_generator_still_gaining_modes_is_not_judged():
    schedule = [list(range(k)) for k in (1, 2, 3, 4, 5, 6, 7, 8)] + [ALL] * 5
    det, found = run(schedule)
    assert found == []
    assert det.judging  # judged once it stopped improving, and healthy then
    # a stall at half the modes that lasts is collapse, after the plateau
    det, found = run([list(range(k)) for k in (1, 2, 3, 4)] + [[0, 1, 2, 3]] * 6)
    assert [(f.step, f.severity) for f in found] == [(1800, "warning")]


def test_diverse_fakes_a_little_off_the_reals_are_not_collapse():
    # what D's own features look like on the corpus' healthy runs: the fakes as diverse as the
    # reals, somewhat apart from them (coverage and precision 0.6-0.8): no collapse
    rng = np.random.default_rng(5)
    det = CollapseDetector()
    found = []
    for i in range(12):
        real = rng.standard_normal((512, 64))
        fake = rng.standard_normal((512, 64)) + 0.3
        found += det.update(100 * i, {"fake": fake, "real": real})
    assert found == []
    assert det.last_metrics["precision_ratio"] > 0.5 and det.last_metrics["vendi_ratio"] > 0.9


def test_a_generator_that_never_reaches_the_data_is_flagged_once_it_stops_improving():
    # diverse but nowhere near the data for many evaluations (never learned): a collapse of
    # everything, after off_data_patience evaluations; a few evaluations off the data (every
    # generator starts there) are not
    rng = np.random.default_rng(6)
    det = CollapseDetector()
    found = []
    for i in range(12):
        real = rng.standard_normal((512, 64))
        fake = 3.0 * rng.standard_normal((512, 64)) + 4.0
        found += det.update(100 * i, {"fake": fake, "real": real})
    assert [(f.step, f.severity) for f in found] == [(800, "critical")]
    assert "miss the data altogether" in found[0].message
    healthy_start = CollapseDetector()
    for i in range(12):
        real = rng.standard_normal((512, 64))
        fake = 3.0 * rng.standard_normal((512, 64)) + 4.0 if i < 6 else rng.standard_normal(
            (512, 64))
        assert healthy_start.update(100 * i, {"fake": fake, "real": real}) == []


def test_without_reals_judges_against_own_history_with_lower_confidence():
    det, found = run([ALL] * 5 + [[0]] * 3, with_real=False)
    assert [(f.step, f.severity) for f in found] == [(1200, "warning")]
    f = found[0]
    assert f.evidence["reference_is_real"] == 0.0
    assert "lower confidence" in f.message
    assert "own history" in det.status().reason


def test_high_dimensional_collapse():
    rng = np.random.default_rng(0)
    det = CollapseDetector()
    found = []
    for i in range(8):
        real = rng.standard_normal((512, 512))
        if i < 5:
            fake = rng.standard_normal((512, 512))
        else:  # a handful of modes with tiny spread
            fake = rng.standard_normal((3, 512))[rng.integers(0, 3, 512)]
            fake = fake + 0.05 * rng.standard_normal((512, 512))
        found += det.update(i, {"fake": fake, "real": real})
    assert [(f.step, f.severity) for f in found] == [(7, "critical")]
    assert found[0].evidence["vendi_ratio"] < 0.1


def test_measure_is_pure_and_update_takes_its_result():
    det = CollapseDetector()
    emb = {"fake": ring(300, ALL, 1), "real": ring(300, ALL, 2)}
    before = det.state_dict()
    m = det.measure(0, emb)
    assert det.state_dict() == before and m == det.measure(0, emb)
    assert det.update(0, emb, m) == [] and det.last_metrics["coverage"] == m["coverage"]


def test_last_metrics_hold_signals_and_shapes_are_checked():
    det = CollapseDetector()
    det.update(0, {"fake": ring(300, ALL, 1), "real": ring(300, ALL, 2)})
    assert {"coverage", "recall", "precision", "vendi_ratio", "distance_ratio",
            "duplicate_rate"} <= set(det.last_metrics)
    with pytest.raises(ValueError, match="2-D"):
        det.update(1, {"fake": np.zeros(10)})
    with pytest.raises(ValueError, match="same dimension"):
        det.update(1, {"fake": np.zeros((20, 2)), "real": np.zeros((20, 3))})
    assert det.update(2, {"fake": np.zeros((3, 2))}) == []
    assert "too small" in det.last_reason


# ---------------------------------------------------------------------------- pure metrics
def test_metrics_on_identical_and_collapsed_distributions():
    r = ring(400, ALL, 1)
    f = ring(400, ALL, 2)
    c = ring(400, [0], 3)
    assert coverage(r, f, k=5) > 0.9 and coverage(r, c, k=5) < 0.2
    assert recall(r, f, k=3) > 0.9 and recall(r, c, k=3) < 0.2
    bw = 1.3
    assert vendi_score(c, bw) < 1.1 < 4 < vendi_score(f, bw) <= 8.5
    assert mean_pairwise_distance(c) < 0.1 * mean_pairwise_distance(f)
    assert near_duplicate_rate(np.repeat(f[:10], 2, axis=0), 1e-9) == 1.0
    with pytest.raises(ValueError, match="bandwidth"):
        vendi_score(f, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        coverage(np.full((10, 2), np.nan), f)


GRID = np.stack(np.meshgrid(np.arange(-4, 5, 2), np.arange(-4, 5, 2)), -1).reshape(-1, 2) * 1.0


def grid(n, modes, seed):
    rng = np.random.default_rng(seed)
    return GRID[rng.choice(np.asarray(modes), n)] + 0.05 * rng.standard_normal((n, 2))


@pytest.mark.parametrize("modes,fires", [(range(25), False), (range(20), False),
                                         (range(5), True), ([0, 12, 24], True)])
def test_grid_of_25_gaussians(modes, fires):
    det = CollapseDetector()
    found = []
    for i in range(9):
        fake = grid(2500, range(25) if i < 4 else list(modes), seed=i)
        found += det.update(100 * i, {"fake": fake, "real": grid(2500, range(25), seed=50 + i)})
    assert [f.step for f in found] == ([600] if fires else [])
