"""Exact alarm steps on seeded synthetic streams, and silence on healthy ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
from streams import feed, healthy_loss

from stethoscope.detectors import (
    DetectorSuite,
    DriftDetector,
    GANBalanceDetector,
    GradientDetector,
    NonFiniteDetector,
    OscillationDetector,
    SpikeDetector,
)


def test_nan_fires_critical_at_its_step_and_resolves_after_finite_stretch():
    t = np.arange(2000)
    loss = healthy_loss(2000, seed=0)
    loss[1234] = np.nan
    det = NonFiniteDetector()
    found = []
    for a in range(0, 2000, 100):
        found += det.update({"loss_D": (t[a : a + 100], loss[a : a + 100])})
    assert [(f.status, f.step) for f in found] == [("firing", 1234), ("resolved", 1284)]
    fire = found[0]
    assert (fire.kind, fire.key, fire.severity, fire.subject) == (
        "divergence", "divergence/nonfinite", "critical", "loss_D")
    assert "loss_D" in fire.message and "1234" in fire.message and "NaN" in fire.message
    assert math.isnan(fire.evidence["value"])
    assert fire.evidence["last_finite_value"] == pytest.approx(loss[1233])


def test_inf_in_a_gradient_norm_keeps_firing_until_every_series_is_finite_again():
    det = NonFiniteDetector(resolve_after=10)
    t = np.arange(100)
    g = np.ones(100)
    g[20] = np.inf
    loss = np.ones(100)
    loss[25:40] = np.nan
    found = det.update({"grad_norm/G/total": (t, g), "loss": (t, loss)})
    assert [(f.status, f.step, f.subject) for f in found] == [
        ("firing", 20, "grad_norm/G/total"), ("resolved", 49, "loss")]
    assert det.update({"loss": ([100], [np.nan])})[0].status == "firing"
    assert "+Inf" in found[0].message


def test_a_one_point_spike_is_an_info_marker_that_resolves():
    t = np.arange(3000)
    loss = healthy_loss(3000, seed=1)
    loss[1500] *= 8
    found = feed(SpikeDetector("loss"), t, loss)
    assert [(f.step, f.severity, f.status) for f in found] == [
        (1500, "info", "firing"), (1550, "info", "resolved")]
    assert found[0].key == "divergence/spike:loss"
    assert found[0].evidence["ratio_to_median"] > 5
    assert "short excursion" in found[0].message


def test_a_sustained_excursion_is_a_warning_and_a_sustained_blow_up_critical():
    t = np.arange(3000)
    loss = healthy_loss(3000, seed=2)
    loss[1500:1560] *= 1.9  # stays up for 60 points: look soon
    loss[2500:2600] *= 8  # a blow-up that lasts: critical
    found = feed(SpikeDetector("loss"), t, loss)
    assert [(f.step, f.severity, f.status) for f in found] == [
        (1500, "info", "firing"), (1524, "warning", "firing"), (1609, "warning", "resolved"),
        (2500, "info", "firing"), (2524, "critical", "firing"), (2649, "critical", "resolved")]
    assert found[1].evidence["points_in_a_row"] == 25
    assert "stayed that high for 25 points" in found[1].message


def test_an_excursion_is_judged_against_the_level_before_it():
    # the rolling reference soaks up a long excursion; judged against the reference frozen at
    # its start, it neither stops counting nor resolves while it lasts
    t = np.arange(1500)
    loss = healthy_loss(1500, seed=3, noise=0.05)
    loss[600:1000] *= 3
    found = feed(SpikeDetector("loss"), t, loss)
    assert [(f.step, f.status) for f in found if f.status == "resolved"] == [(1049, "resolved")]


def test_heavy_tailed_noise_fires_far_less_and_a_real_spike_still_fires():
    # log-noise with Student-t (5 dof) tails, like adversarial losses: the MAD alone scores its
    # ordinary jumps above warn_z; the tail-aware scale (tail_quantile) much less often (10
    # seeds x 3000 points: 6 firings against 24)
    t = np.arange(3000)

    def firings(tail: float, seed: int) -> int:
        loss = 0.8 * np.exp(0.08 * np.random.default_rng(seed).standard_t(5, size=3000))
        det = SpikeDetector("loss", tail_quantile=tail)
        return sum(f.status == "firing" for f in feed(det, t, loss))

    with_tail = sum(firings(0.99, seed) for seed in range(10))
    mad_only = sum(firings(0.0, seed) for seed in range(10))
    assert 3 * with_tail <= mad_only
    loss = 0.8 * np.exp(0.08 * np.random.default_rng(4).standard_t(5, size=3000))
    loss[2000:2030] *= 8
    found = [(f.step, f.severity) for f in feed(SpikeDetector("loss"), t, loss)
             if f.status == "firing"]
    assert (2024, "critical") in found


def test_results_do_not_depend_on_batching():
    t = np.arange(3000)
    loss = healthy_loss(3000, seed=1)
    loss[[700, 1500]] *= 8
    loss[2000:2100] *= 8
    a = feed(SpikeDetector("loss"), t, loss, size=1)
    b = feed(SpikeDetector("loss"), t, loss, size=997)
    assert a == b and len(a) == 7


def test_spike_detector_uses_raw_values_for_series_that_go_negative():
    rng = np.random.default_rng(3)
    t = np.arange(1000)
    critic = -1.0 + 0.1 * rng.standard_normal(1000)
    critic[800:830] = 2.0
    det = SpikeDetector("loss_critic")
    found = feed(det, t, critic)
    assert not det.log_mode
    assert [(f.step, f.severity) for f in found if f.status == "firing"] == [
        (800, "info"), (824, "critical")]


def test_exponential_blow_up_fires_drift_soon_after_onset():
    t = np.arange(6000)
    loss = healthy_loss(6000, seed=3)
    loss[3000:] *= np.exp(0.01 * np.arange(3000))
    found = feed(DriftDetector("loss"), t, loss)
    assert [(f.step, f.status) for f in found] == [(3050, "firing")]
    assert found[0].key == "divergence/drift:loss"


def test_drift_becomes_critical_when_far_above_the_median():
    t = np.arange(1000)
    loss = healthy_loss(1000, seed=4, noise=0.02)
    loss[500:] *= np.exp(0.5 * np.arange(500))
    found = feed(DriftDetector("loss"), t, loss)
    assert found[0].severity == "critical"
    assert found[0].evidence["ratio_to_median"] > 5


def test_growing_oscillation_is_an_info_marker():
    rng = np.random.default_rng(0)
    t = np.arange(2000)
    amp = np.where(t < 1000, 0.05, 0.05 * 1.004 ** (t - 1000))
    loss = 1.0 + amp * rng.standard_normal(2000)
    found = feed(OscillationDetector("loss_G"), t, loss)
    assert [(f.step, f.status, f.severity) for f in found] == [(1499, "firing", "info")]
    # a burst of harder swings that stops growing stays a marker
    amp = np.where((t >= 1000) & (t < 1600), 0.05 * 1.004 ** (t - 1000), 0.05)
    loss = 1.0 + amp * rng.standard_normal(2000)
    found = feed(OscillationDetector("loss_G"), t, loss)
    assert {f.severity for f in found} == {"info"}


def _grad_streams(n=1000, seed=4):
    rng = np.random.default_rng(seed)
    s = np.arange(n)
    norms = {f"main.{i}.weight": np.exp(0.2 * rng.standard_normal(n)) * (i + 1) for i in range(4)}
    return s, norms


def _feed_grads(det, s, norms, size=50):
    out = []
    for a in range(0, s.size, size):
        out += det.update({k: (s[a : a + size], v[a : a + size]) for k, v in norms.items()})
    return out


def test_vanishing_gradients_in_first_layer_named_at_exact_step():
    s, norms = _grad_streams()
    norms["main.0.weight"] = norms["main.0.weight"] * np.where(
        s < 500, 1.0, np.exp(-(s - 500) / 20))
    found = _feed_grads(GradientDetector("G"), s, norms)
    assert [(f.kind, f.step, f.subject, f.status) for f in found] == [
        ("vanishing_gradients", 631, "G/main.0.weight", "firing")]
    f = found[0]
    assert f.key == "vanishing_gradients/G" and f.severity == "warning"
    assert f.evidence["first_last_ratio"] < 1e-3
    assert "main.0.weight" in f.message


def test_vanishing_resolves_when_gradients_come_back():
    s, norms = _grad_streams()
    norms["main.0.weight"] = norms["main.0.weight"] * np.where((s >= 300) & (s < 600), 1e-6, 1)
    found = _feed_grads(GradientDetector("G"), s, norms)
    assert [(f.step, f.status) for f in found] == [(319, "firing"), (619, "resolved")]


def test_exploding_total_norm_fires_after_patience():
    s, norms = _grad_streams()
    norms["total"] = np.where(s < 700, 3.0, 3000.0)
    found = _feed_grads(GradientDetector("G"), s, norms)
    assert [(f.kind, f.step, f.subject, f.severity) for f in found] == [
        ("exploding_gradients", 702, "G/total", "critical")]


def test_healthy_gradients_stay_silent():
    s, norms = _grad_streams(n=5000, seed=9)
    assert _feed_grads(GradientDetector("G"), s, norms) == []


def test_discriminator_winning_by_loss_only():
    t = np.arange(600)
    loss_d = np.where(t < 300, 1.3, 0.01)
    loss_g = np.where(t < 300, 0.8, 5.0)
    found = GANBalanceDetector().update({"loss_d": (t, loss_d), "loss_g": (t, loss_g)})
    assert [(f.step, f.status) for f in found] == [(445, "firing")]
    f = found[0]
    assert f.key == "discriminator_wins" and "rising" in f.message
    assert {r.citation.split(",")[0] for r in f.remedies} >= {
        "Salimans et al. 2016", "Miyato et al. 2018", "Heusel et al. 2017",
        "Mescheder et al. 2018"}


def test_balance_ignores_logits_and_negative_losses():
    t = np.arange(600)
    det = GANBalanceDetector()
    found = det.update({"d_real": (t, np.full(600, 5.0)), "d_fake": (t, np.full(600, -5.0)),
                        "loss_d": (t, np.full(600, -3.0))})
    assert found == []
    assert det.status().state == "unavailable"
    assert "logits" in det.status().reason


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_no_false_alarm_on_long_healthy_runs(seed):
    """Noisy decreasing losses, GAN-like losses and gradient norms through the whole suite."""
    n = 12000
    rng = np.random.default_rng(100 + seed)
    t = np.arange(n)
    series = {
        "loss": healthy_loss(n, seed, noise=(0.05, 0.1, 0.2, 0.3, 0.15)[seed]),
        "val/loss": healthy_loss(n, seed + 50, noise=0.02),
        "loss_D": 1.2 * np.exp(0.2 * rng.standard_normal(n)),
        "loss_G": (1 + 0.5 * t / n) * np.exp(0.3 * rng.standard_normal(n)),
        "D_x": np.clip(0.6 + 0.1 * rng.standard_normal(n), 0, 1),
        "D_G_z1": np.clip(0.4 + 0.1 * rng.standard_normal(n), 0, 1),
    }
    for i in range(4):
        series[f"grad_norm/G/l{i}.weight"] = (1 + i) * np.exp(0.3 * rng.standard_normal(n))
    series["grad_norm/G/total"] = sum(
        v for k, v in series.items() if k.startswith("grad_norm/"))
    suite = DetectorSuite()
    found = []
    for a in range(0, n, 250):
        found += suite.update_scalars({k: (t[a : a + 250], v[a : a + 250])
                                       for k, v in series.items()})
    assert found == []
    states = {s.name: s.state for s in suite.health()}
    assert states["balance"] == "ok" and states["gradients:G"] == "ok"
    assert states["spike:loss"] == "ok" and states["drift:loss"] == "ok"
    assert states["oscillation:loss_G"] == "ok" and states["drift:gan_losses"] == "unavailable"


def test_balance_does_not_flap_around_the_threshold():
    rng = np.random.default_rng(5)
    t = np.arange(3000)
    acc = np.where(t < 500, 0.7, 0.95 + 0.02 * np.sin(t / 40.0)) + 0.01 * rng.standard_normal(3000)
    found = GANBalanceDetector().update({"d_real": (t, acc), "d_fake": (t, 1 - acc)})
    assert [f.status for f in found] == ["firing"]
    later = GANBalanceDetector()
    calm = np.where(t < 2000, acc, 0.6)
    assert [f.status for f in later.update({"d_real": (t, calm), "d_fake": (t, 1 - calm)})] == [
        "firing", "resolved"]


def test_structurally_silent_biases_are_not_vanishing():
    """A bias followed by batch norm has (numerically) zero gradient from the start; a hinge
    D's output bias is exactly 0 whenever both margins are violated equally."""
    s, norms = _grad_streams(n=600)
    norms["main.0.bias"] = 1e-10 * np.ones(600)
    norms["head.bias"] = np.where((s // 100) % 2 == 0, 0.02, 0.0)
    assert _feed_grads(GradientDetector("G"), s, norms) == []
    s, norms = _grad_streams(n=600)
    norms["main.1.weight"] = np.where(s < 200, 1e-5, 1e-9)  # a weight once above the floor
    found = _feed_grads(GradientDetector("G", vanish_ratio=1e-5), s, norms)
    assert [(f.subject, f.step) for f in found] == [("G/main.1.weight", 219)]


def test_a_layer_at_exactly_zero_is_vanishing_without_warm_up():
    s, norms = _grad_streams(n=300)
    norms["main.1.weight"] = np.zeros(300)  # dead from the first step: never "structural"
    found = _feed_grads(GradientDetector("G"), s, norms)
    assert [(f.kind, f.step, f.subject) for f in found] == [
        ("vanishing_gradients", 19, "G/main.1.weight")]


def test_a_module_with_every_gradient_exactly_zero_is_stalled_critical():
    s, norms = _grad_streams(n=400)
    for name in norms:
        norms[name] = np.where(s < 100, norms[name], 0.0)
    norms["total"] = np.where(s < 100, 5.0, 0.0)
    found = _feed_grads(GradientDetector("G"), s, norms)
    assert [(f.kind, f.key, f.step, f.severity) for f in found] == [
        ("stalled", "stalled/gradients:G", 104, "critical")]
    assert "exactly 0" in found[0].message
    # and from the very start (a DCGAN broken at step 1): no warm-up needed
    s, norms = _grad_streams(n=50)
    det = GradientDetector("D")
    found = _feed_grads(det, s, {k: np.zeros(50) for k in norms})
    assert [(f.key, f.step) for f in found] == [("stalled/gradients:D", 4)]
    assert det.status().state == "alarm"


def test_a_pinned_loss_is_stalled_and_batching_does_not_matter():
    from stethoscope.detectors import PinnedLossDetector

    t = np.arange(600)
    loss = healthy_loss(600, seed=5)
    loss[200:400] = 100.0  # clamped
    whole = PinnedLossDetector().update({"loss": (t, loss)})
    assert [(f.key, f.step, f.status, f.severity) for f in whole] == [
        ("stalled/pinned:loss", 249, "firing", "critical"),
        ("stalled/pinned:loss", 419, "resolved", "critical")]
    for size in (1, 7, 100):
        det = PinnedLossDetector()
        out = []
        for a in range(0, 600, size):
            out += det.update({"loss": (t[a:a + size], loss[a:a + size])})
        assert out == whole


def test_a_constant_placeholder_is_not_a_stall_unless_it_is_a_main_loss():
    from stethoscope.detectors import PinnedLossDetector

    t = np.arange(300)
    det = PinnedLossDetector()
    assert det.update({"loss_gp": (t, np.zeros(300))}) == []  # a disabled penalty logged as 0
    det.mark_main(["loss_G"])
    assert [f.step for f in det.update({"loss_G": (t, np.zeros(300))})] == [49]
