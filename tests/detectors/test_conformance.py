"""One conformance test over every detector class.

Each case knows how to build its detector, two halves of a deterministic stream whose second
half makes it fire (so round trips are checked on real findings), a stream that would alarm if
the detector had no warm-up, and invalid parameters.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from streams import ring

from stethoscope import detectors as D


@dataclass
class Case:
    cls: type
    args: dict
    feed: Callable  # (detector, part) -> list[Finding]; part in (0, 1)
    warmup: Callable | None  # (detector) -> list[Finding] during warm-up
    invalid: list  # [(param, value)]


def _scalar(part_streams, name="loss"):
    def feed(det, part):
        s, v = part_streams[part]
        out = []
        for a in range(0, s.size, 64):
            out += det.update({name: (s[a : a + 64], v[a : a + 64])})
        return out
    return feed


def _one(name, s, v):
    return lambda det: det.update({name: (s, v)})


rng = np.random.default_rng(7)
T = np.arange(1200)
NOISY = np.exp(0.05 * rng.standard_normal(1200))

# non-finite: NaN at 150, finite afterwards -> resolves
NF = NOISY.copy()
NF[150] = np.nan


def nf_feed(det, part):
    sl = slice(0, 100) if part == 0 else slice(100, 400)
    return det.update({"loss": (T[sl], NF[sl]), "grad_norm/G/total": (T[sl], NOISY[sl])})


# spikes: a one-point spike at 260 (info), a sustained blow-up from 700 (critical)
SP = NOISY.copy()
SP[260] = 3.0
SP[700:760] = 20.0
SP_WARM = NOISY[:60].copy()
SP_WARM[10] = 50.0

# drift: blow-up from 400
DR = np.where(T < 400, 1.0, np.exp(0.02 * (T - 400))) * NOISY
DR_WARM = np.exp(0.3 * np.arange(40))

# oscillation: growing swings from 600
OSC = 1.0 + np.where(T < 600, 0.05, 0.05 * 1.006 ** (T - 600)) * rng.standard_normal(1200)
OSC_WARM = 1.0 + np.repeat([0.01, 1.0, 10.0], 100) * rng.standard_normal(300)


def grad_stream(lo, hi, vanish_from=None):
    steps = np.arange(lo, hi)
    first = np.exp(0.1 * rng.standard_normal(steps.size))
    if vanish_from is not None:
        first = np.where(steps < vanish_from, first, first * 1e-6)
    return {"a.weight": (steps, first), "a.bias": (steps, first),
            "b.weight": (steps, np.ones(steps.size)), "total": (steps, 2 * np.ones(steps.size))}


GR = [grad_stream(0, 100), grad_stream(100, 300, vanish_from=150)]


def grad_warm(det):
    steps = np.arange(10)
    return det.update({"a.weight": (steps, np.zeros(10)), "b.weight": (steps, np.ones(10))})


def bal_stream(lo, hi, wins_from):
    s = np.arange(lo, hi)
    win = s >= wins_from
    return s, {"d_real": np.where(win, 0.99, 0.6), "d_fake": np.where(win, 0.01, 0.4),
               "loss_d": np.where(win, 0.02, 1.3), "loss_g": np.where(win, 4.0, 0.9)}


BAL = [bal_stream(0, 150, 10**9), bal_stream(150, 500, 200)]


def bal_feed(det, part):
    s, roles = BAL[part]
    return det.update({role: (s, v) for role, v in roles.items()})


def bal_warm(det):
    s, roles = bal_stream(0, 99, 0)
    return det.update({role: (s, v) for role, v in roles.items()})


# discriminator overfitting: r_t near ADA's 0.6, then near 1 from step 400
RT = np.clip(np.where(T < 400, 0.6, 0.97) + 0.05 * rng.standard_normal(1200), -1, 1)


def col_feed(det, part):
    out = []
    for i in range(5):
        ev = part * 5 + i
        modes = np.arange(8) if part == 0 else [0]
        out += det.update(100 * ev, {"fake": ring(300, modes, seed=ev),
                                     "real": ring(300, range(8), 100 + ev)})
    return out


def col_warm(det):
    out = []
    for ev in range(3):
        out += det.update(ev, {"fake": ring(300, [0], seed=ev),
                               "real": ring(300, range(8), 50 + ev)})
    return out


def rank_feed(det, part):
    out = []
    for i in range(5):
        ev = part * 5 + i
        dims = 32 if part == 0 else 2
        g = np.random.default_rng(ev)
        x = g.standard_normal((256, dims)) @ g.standard_normal((dims, 64))
        out += det.update(100 * ev, {"fake": x})
    return out


def rank_warm(det):
    out = []
    for ev in range(3):
        g = np.random.default_rng(ev)
        dims = 32 if ev == 0 else 1
        out += det.update(ev, {"fake": g.standard_normal((256, dims)) @ g.standard_normal(
            (dims, 64))})
    return out


# pinned: a moving loss, then pinned at 100 (a clamped BCE term) from step 500
PIN = np.where(T < 500, NOISY, 100.0)


def pin_feed(det, part):
    sl = slice(0, 300) if part == 0 else slice(300, 800)
    return det.update({"loss_D": (T[sl], PIN[sl])})


def pin_warm(det):
    det.mark_main(["loss_D"])
    return det.update({"loss_D": (T[:49], np.full(49, 100.0))})


CASES = {
    "NonFiniteDetector": Case(D.NonFiniteDetector, {}, nf_feed, None,
                              [("resolve_after", 0), ("resolve_after", 1.5)]),
    "SpikeDetector": Case(
        D.SpikeDetector, {"series": "loss"},
        _scalar([(T[:400], SP[:400]), (T[400:], SP[400:])]),
        _one("loss", T[:60], SP_WARM),
        [("window", 5), ("warn_z", -1.0), ("critical_z", 1.0), ("critical_ratio", 0.5),
         ("min_points", 500), ("scale", "cubic"), ("resolve_after", 0), ("min_scale", 0)],
    ),
    "DriftDetector": Case(
        D.DriftDetector, {"series": "loss"},
        _scalar([(T[:300], DR[:300]), (T[300:700], DR[300:700])]),
        _one("loss", np.arange(40), DR_WARM),
        [("min_instances", 1), ("delta", -1.0), ("threshold", 0.0), ("z_clip", float("nan")),
         ("window", 3)],
    ),
    "OscillationDetector": Case(
        D.OscillationDetector, {"series": "loss_G", "min_windows": 3},
        _scalar([(T[:500], OSC[:500]), (T[500:], OSC[500:])], "loss_G"),
        _one("loss_G", np.arange(300), OSC_WARM),
        [("window", 2), ("growth", 1.0), ("patience", 0), ("min_windows", 0)],
    ),
    "GradientDetector": Case(
        D.GradientDetector, {"module": "G"}, lambda det, part: det.update(GR[part]), grad_warm,
        [("warmup", 0), ("vanish_ratio", 1.0), ("first_last_ratio", 0.0), ("floor", -1.0),
         ("explode_ratio", 0.5), ("vanish_patience", 0), ("module", "")],
    ),
    "GANBalanceDetector": Case(
        D.GANBalanceDetector, {}, bal_feed, bal_warm,
        [("window", 0), ("accuracy_threshold", 0.4), ("accuracy_threshold", 1.0),
         ("d_loss_floor", -0.1), ("patience", 0)],
    ),
    "DiscriminatorOverfittingDetector": Case(
        D.DiscriminatorOverfittingDetector, {},
        _scalar([(T[:300], RT[:300]), (T[300:700], RT[300:700])], "r_t"),
        _one("r_t", np.arange(99), np.ones(99)),
        [("window", 0), ("threshold", 0.5), ("threshold", 1.0), ("patience", 0),
         ("resolve_after", 0), ("hysteresis", -0.1)],
    ),
    "CollapseDetector": Case(
        D.CollapseDetector, {}, col_feed, col_warm,
        [("k_coverage", 0), ("k_recall", 100), ("threshold", 1.5), ("patience", 0),
         ("min_evaluations", 0), ("max_samples", 3), ("bandwidth_scale", 0.0), ("seed", -1),
         ("critical_threshold", 0.9), ("plateau", 0), ("blas_threads", 0)],
    ),
    "DimensionalCollapseDetector": Case(
        D.DimensionalCollapseDetector, {}, rank_feed, rank_warm,
        [("threshold", 1.0), ("patience", 0), ("warmup", -1), ("samples", 2), ("min_dim", 2),
         ("seed", -1), ("blas_threads", 0)],
    ),
    "PinnedLossDetector": Case(
        D.PinnedLossDetector, {}, pin_feed, pin_warm,
        [("patience", 1), ("rtol", -1.0), ("rtol", 0.5), ("resolve_after", 0)],
    ),
}


_BASES = {D.Detector, D.ScalarDetector, D.SeriesDetector, D.EmbeddingDetector}


def _all_detector_classes():
    return {name for name in D.__all__ if inspect.isclass(getattr(D, name))
            and issubclass(getattr(D, name), D.Detector) and getattr(D, name) not in _BASES}



def test_every_public_detector_has_a_conformance_case():
    assert _all_detector_classes() == set(CASES)


params = pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
# The NaN detector fires on the first non-finite value by design: it has no warm-up to test.
WARMING = {name: case for name, case in CASES.items() if case.warmup is not None}
warming_params = pytest.mark.parametrize("case", list(WARMING.values()), ids=list(WARMING))
@params
def test_every_detector_has_one_of_the_two_input_shapes(case):
    assert issubclass(case.cls, D.ScalarDetector) != issubclass(case.cls, D.EmbeddingDetector)



@params
def test_parameters_are_stored_verbatim(case):
    det = case.cls(**case.args)
    sig = inspect.signature(case.cls.__init__)
    for name, p in sig.parameters.items():
        if name == "self":
            continue
        expected = case.args.get(name, p.default)
        assert getattr(det, name) == expected
    assert repr(det).startswith(case.cls.__name__ + "(")


@params
def test_invalid_parameters_raise_value_error_naming_the_parameter(case):
    for name, value in case.invalid:
        with pytest.raises(ValueError, match=name):
            case.cls(**{**case.args, name: value})


@params
def test_stream_fires_and_state_dict_round_trip_gives_identical_findings(case):
    det = case.cls(**case.args)
    first = case.feed(det, 0)
    state = json.loads(json.dumps(det.state_dict(), allow_nan=False))
    restored = case.cls(**case.args)
    restored.load_state_dict(state)
    assert json.dumps(restored.state_dict(), sort_keys=True) == json.dumps(
        det.state_dict(), sort_keys=True)
    second = case.feed(det, 1)
    assert [f for f in second if f.status == "firing"], "the stream must make it fire"
    assert case.feed(restored, 1) == second
    assert det.status() == restored.status()
    assert all(f.detector == det.name for f in first + second)


@params
def test_reset_equals_a_fresh_instance(case):
    det = case.cls(**case.args)
    case.feed(det, 0)
    case.feed(det, 1)
    det.reset()
    fresh = case.cls(**case.args)
    assert det.state_dict() == fresh.state_dict()
    assert case.feed(det, 0) + case.feed(det, 1) == case.feed(fresh, 0) + case.feed(fresh, 1)


@warming_params
def test_no_alarm_during_warm_up(case):
    det = case.cls(**case.args)
    assert case.warmup(det) == []


@params
def test_findings_are_well_formed(case):
    det = case.cls(**case.args)
    found = case.feed(det, 0) + case.feed(det, 1)
    for f in found:
        assert f.kind in D.KINDS
        json.dumps(f.to_dict())
        if f.status == "firing":
            assert f.remedies and all(r.citation for r in f.remedies)
            assert any(ch.isdigit() for ch in f.message)
            assert f.evidence


@params
def test_status_is_a_detector_status(case):
    det = case.cls(**case.args)
    assert det.status().state in ("waiting", "unavailable")
    case.feed(det, 0)
    case.feed(det, 1)
    assert det.status().state in ("ok", "alarm")
