"""Discriminator overfitting (StyleGAN2-ADA r_t), BCE equilibrium distance, D loss -> 0, and
gradient-norm spikes as early divergence signs."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from streams import feed

from stethoscope.detectors import (
    DetectorSuite,
    DiscriminatorOverfittingDetector,
    GANBalanceDetector,
    is_loss,
    match_role,
)


def r_t_stream(n: int, seed: int, level, batch: int = 32) -> np.ndarray:
    """Per-step r_t from one minibatch: the mean of `batch` signs with P(+1) = (1 + level) / 2."""
    rng = np.random.default_rng(seed)
    level = np.broadcast_to(np.asarray(level, float), (n,))
    plus = rng.binomial(batch, (1 + level) / 2)
    return (2 * plus - batch) / batch


# ---------------------------------------------------------------------------- r_t
def test_overfitting_fires_at_the_exact_step_and_resolves():
    t = np.arange(3000)
    level = np.where(t < 1000, 0.6, np.where(t < 2000, 0.98, 0.5))
    r_t = r_t_stream(3000, 0, level)
    found = DiscriminatorOverfittingDetector().update({"r_t": (t, r_t)})
    assert [(f.key, f.kind, f.status, f.step) for f in found] == [
        ("discriminator_overfitting", "discriminator_wins", "firing", 1126),
        ("discriminator_overfitting", "discriminator_wins", "resolved", 2088),
    ]
    f = found[0]
    assert f.severity == "warning" and f.subject == "D"
    assert f.evidence["r_t_mean"] > 0.9 and f.evidence["ada_target"] == 0.6
    assert "r_t" in f.message and "0.6" in f.message
    citations = " ".join(r.citation for r in f.remedies)
    assert "Karras et al. 2020" in citations and "Zhao et al. 2020" in citations


def test_overfitting_results_do_not_depend_on_batching():
    t = np.arange(3000)
    r_t = r_t_stream(3000, 1, np.where(t < 1500, 0.6, 0.97))
    whole = DiscriminatorOverfittingDetector().update({"r_t": (t, r_t)})
    assert whole
    for size in (1, 7, 250):
        assert feed(DiscriminatorOverfittingDetector(), t, r_t, size) == whole


@pytest.mark.parametrize("seed", range(6))
def test_no_overfitting_alarm_on_healthy_r_t(seed):
    """Near ADA's target, ADA's own feedback loop oscillating around it, and a high but
    steady 0.8: all quiet."""
    n = 20000
    t = np.arange(n)
    for level in (0.6, 0.6 + 0.15 * np.sin(t / 300.0), 0.8, np.linspace(0.0, 0.85, n)):
        det = DiscriminatorOverfittingDetector()
        assert feed(det, t, r_t_stream(n, seed, level), 500) == []
        assert det.status().state == "ok"


def test_values_outside_minus_one_one_are_not_r_t():
    det = DiscriminatorOverfittingDetector()
    t = np.arange(500)
    assert det.update({"r_t": (t, np.full(500, 3.0))}) == []  # mean logits, not mean signs
    st = det.status()
    assert st.state == "unavailable" and "sign" in st.reason


def test_overfitting_waits_for_a_full_window():
    det = DiscriminatorOverfittingDetector()
    assert det.status().state == "unavailable"
    det.update({"r_t": (np.arange(10), np.full(10, 0.99))})
    assert det.status().state == "waiting"


@pytest.mark.parametrize("name", ["r_t", "rt", "D_real_sign", "Loss/signs/real", "ada/rt"])
def test_r_t_names_match_the_role_and_are_not_losses(name):
    assert match_role(name) == "d_real_sign"
    assert not is_loss(name)


def test_suite_routes_r_t_to_the_overfitting_detector_only():
    t = np.arange(2000)
    r_t = r_t_stream(2000, 3, np.where(t < 1000, 0.6, 0.99))
    suite = DetectorSuite()
    found = suite.update_scalars({"Loss/signs/real": (t, r_t)})
    assert [(f.key, f.step) for f in found] == [("discriminator_overfitting", 1125)]
    rows = {s.name: s for s in suite.health()}
    assert rows["overfitting"].state == "alarm"
    assert rows["spike"].state == "unavailable"  # r_t is not a loss: no spike detector for it
    assert suite.roles["d_real_sign"] == "Loss/signs/real"


def test_explicit_role_and_disabling_overfitting():
    t = np.arange(2000)
    r_t = r_t_stream(2000, 3, np.where(t < 1000, 0.6, 0.99))
    suite = DetectorSuite({"roles": {"d_real_sign": "my_ratio"}})
    assert [f.key for f in suite.update_scalars({"my_ratio": (t, r_t)})] == [
        "discriminator_overfitting"]
    off = DetectorSuite({"roles": {"d_real_sign": "my_ratio"},
                         "enabled": {"overfitting": False}})
    assert off.update_scalars({"my_ratio": (t, r_t)}) == []
    row = {s.name: s for s in off.health()}["overfitting"]
    assert row.state == "unavailable" and "disabled" in row.reason


# ---------------------------------------------------------------------------- equilibrium
def bce_roles(n: int, seed: int, dx: float, dgz: float, noise: float = 0.05):
    rng = np.random.default_rng(seed)
    d_real = np.clip(dx + noise * rng.standard_normal(n), 0.01, 0.99)
    d_fake = np.clip(dgz + noise * rng.standard_normal(n), 0.01, 0.99)
    loss_d = -np.log(d_real) - np.log(1 - d_fake)
    loss_g = -np.log(d_fake)
    return {"d_real": d_real, "d_fake": d_fake, "loss_d": loss_d, "loss_g": loss_g}


def by_role(t, roles):
    return {role: (t, v) for role, v in roles.items()}


def test_equilibrium_distance_is_near_zero_at_equilibrium_and_one_when_d_wins():
    det = GANBalanceDetector()
    assert det.equilibrium_distance({"d_real": 0.5, "d_fake": 0.5,
                                     "loss_d": 2 * math.log(2)}) == pytest.approx(0.0)
    assert det.equilibrium_distance({"d_real": 1.0, "d_fake": 0.0, "loss_d": 0.0}) == 1.0
    assert det.equilibrium_distance({"d_real": 0.6, "d_fake": 0.45,
                                     "loss_d": math.nan}) == pytest.approx(0.2)
    avg = GANBalanceDetector(loss_d_equilibrium=math.log(2))  # D loss averaged, not summed
    assert avg.equilibrium_distance({"d_real": math.nan, "d_fake": math.nan,
                                     "loss_d": math.log(2)}) == pytest.approx(0.0)


def test_equilibrium_is_shown_in_health_and_never_alerts():
    t = np.arange(1000)
    near = GANBalanceDetector()
    assert near.update(by_role(t, bce_roles(1000, 0, 0.5, 0.5))) == []
    reason = near.status().reason
    assert near.status().state == "ok"
    assert re.search(r"near equilibrium: D loss 1\.[34]\d, D\(x\) 0\.[45]\d, "
                     r"D\(G\(z\)\) 0\.[45]\d \(the D loss sums", reason), reason
    far = GANBalanceDetector()  # far from equilibrium, but D is not winning outright
    assert far.update(by_role(t, bce_roles(1000, 1, 0.8, 0.2))) == []
    assert far.status().state == "ok"
    assert "away from equilibrium (distance 0.6" in far.status().reason


def test_equilibrium_signal_every_window_points_whatever_the_batching():
    t = np.arange(1000)
    roles = bce_roles(1000, 2, np.where(t < 500, 0.5, 0.9), 0.5)
    det = GANBalanceDetector()
    for a in range(0, 1000, 37):
        det.update({k: (t[a : a + 37], v[a : a + 37]) for k, v in roles.items()})
    steps, values = det.pop_signals()["gan/equilibrium_distance"]
    assert steps == list(range(99, 1000, 100))
    assert max(values[:4]) < 0.2 and min(values[-4:]) > 0.7
    assert det.pop_signals() == {}
    one = GANBalanceDetector()
    one.update(by_role(t, roles))
    steps1, values1 = one.pop_signals()["gan/equilibrium_distance"]
    assert steps1 == steps and values1 == pytest.approx(values, abs=1e-9)


def test_suite_stores_the_equilibrium_signal():
    t = np.arange(500)
    roles = bce_roles(500, 3, 0.5, 0.5)
    suite = DetectorSuite()
    suite.update_scalars({"errD": (t, roles["loss_d"]), "D_x": (t, roles["d_real"]),
                          "D_G_z1": (t, roles["d_fake"])})
    sig = suite.drain_signals()["stethoscope/gan/equilibrium_distance"]
    assert sig[0].tolist() == [99, 199, 299, 399, 499] and (sig[1] < 0.2).all()
    assert "near equilibrium" in {s.name: s for s in suite.health()}["balance"].reason


def test_d_loss_going_to_zero_is_a_failure():
    """ganhacks: D loss -> 0 is a failure mode, even with no D(x)/D(G(z)) logged."""
    t = np.arange(1000)
    rng = np.random.default_rng(4)
    loss_d = np.where(t < 400, 1.3, 0.01) * np.exp(0.1 * rng.standard_normal(1000))
    found = DetectorSuite().update_scalars({"d_loss": (t, loss_d)})
    fired = [f for f in found if f.key == "discriminator_wins"]
    assert [(f.status, f.step) for f in fired] == [("firing", 545)]
    assert "D loss averages" in fired[0].message


# ---------------------------------------------------------------------------- gradient norms
def test_gradient_norm_spike_is_reported_as_an_early_divergence_sign():
    """The total gradient norm spikes 30 steps before the loss becomes NaN."""
    n = 800
    t = np.arange(n)
    rng = np.random.default_rng(6)
    loss = 1.0 * np.exp(0.05 * rng.standard_normal(n))
    loss[630:] = np.nan
    gnorm = 2.0 * np.exp(0.1 * rng.standard_normal(n))
    gnorm[600:630] *= 50.0
    found = DetectorSuite().update_scalars({"loss": (t, loss), "grad_norm/G/total": (t, gnorm)})
    firing = [(f.key, f.step, f.severity) for f in found if f.status == "firing"]
    assert firing[:3] == [("divergence/spike:grad_norm/G/total", 600, "info"),
                          ("divergence/spike:grad_norm/G/total", 624, "critical"),
                          ("divergence/nonfinite", 630, "critical")]
    spike = found[1]
    assert spike.evidence["gradient_norm"] == 1.0
    assert "early sign of divergence" in spike.message and "OLMo 2" in spike.message


def test_a_short_gan_gradient_excursion_is_only_an_info_marker():
    """Healthy GAN dynamics: G's gradient norm at ~10x and loss_G at ~2.4x for ~10 steps, back
    within 20: drawn on the chart, never a warning."""
    n = 2000
    t = np.arange(n)
    rng = np.random.default_rng(7)
    loss_g = 0.9 * np.exp(0.1 * rng.standard_normal(n))
    gnorm = 2.0 * np.exp(0.2 * rng.standard_normal(n))
    for start in (600, 1100, 1500):
        loss_g[start:start + 10] *= 2.4
        gnorm[start:start + 10] *= 10
    d = 1.3 * np.exp(0.05 * rng.standard_normal(n))
    found = DetectorSuite().update_scalars({"loss_G": (t, loss_g), "loss_D": (t, d),
                                            "grad_norm/G/total": (t, gnorm)})
    assert found and {f.severity for f in found} == {"info"}
    # GAN remedies, not those written for language-model pre-training
    remedies = " ".join(r.citation for f in found if f.status == "firing" for r in f.remedies)
    assert "PaLM" not in remedies and "Heusel" in remedies


def test_averaged_d_loss_is_recognised_from_d_outputs():
    t = np.arange(1000)
    roles = bce_roles(1000, 8, 0.5, 0.5)
    roles["loss_d"] = roles["loss_d"] / 2  # (BCE real + BCE fake) / 2: 0.69 at equilibrium
    det = GANBalanceDetector()
    det.update(by_role(t, roles))
    assert det.equilibrium == pytest.approx(math.log(2))
    assert "near equilibrium" in det.status().reason and "averages" in det.status().reason


def test_averaged_d_loss_without_d_outputs_gets_a_hint():
    t = np.arange(1000)
    rng = np.random.default_rng(9)
    det = GANBalanceDetector()
    det.update({"loss_d": (t, 0.69 * np.exp(0.05 * rng.standard_normal(1000)))})
    assert "loss_d_equilibrium=0.693" in det.status().reason


@pytest.mark.parametrize("level", [1.0, 0.0])
def test_d_saturated_on_both_sides_is_stalled_not_balanced(level):
    """D(x) = D(G(z)) = 1 reads as accuracy 0.5; it is a discriminator that passes nothing."""
    t = np.arange(400)
    d = np.where(t < 100, 0.5, level)
    found = GANBalanceDetector().update({"d_real": (t, d), "d_fake": (t, d),
                                         "loss_d": (t, np.where(t < 100, 1.38, 100.0))})
    assert [(f.kind, f.key, f.severity, f.step) for f in found] == [
        ("stalled", "stalled/d_saturated", "critical", 246)]
    assert "saturated" in found[0].message
