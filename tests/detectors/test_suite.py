"""DetectorSuite: routing by name, health, signals, config and persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest
from streams import healthy_loss, ring

from stethoscope.detectors import DetectorSuite, SuiteConfig, is_loss, match_role, parse_grad_norm


@pytest.mark.parametrize(
    "name,role",
    [
        ("loss_D", "loss_d"), ("errD", "loss_d"), ("d_loss", "loss_d"), ("loss/D", "loss_d"),
        ("D_loss", "loss_d"), ("lossD", "loss_d"), ("disc_loss", "loss_d"),
        ("loss_G", "loss_g"), ("errG", "loss_g"), ("g_loss", "loss_g"), ("loss/G", "loss_g"),
        ("G_loss", "loss_g"), ("lossG", "loss_g"), ("generator_loss", "loss_g"),
        ("D_x", "d_real"), ("d_real", "d_real"), ("D(x)", "d_real"),
        ("D_G_z", "d_fake"), ("D_G_z1", "d_fake"), ("D_G_z2", "d_fake"), ("d_fake", "d_fake"),
        ("loss", None), ("lr", None), ("grad_norm/D/total", None), ("stethoscope/x", None),
    ],
)
def test_role_matching(name, role):
    assert match_role(name) == role


def test_generic_losses_and_grad_norm_names():
    assert is_loss("train/loss") and is_loss("val_loss") and is_loss("errD")
    assert not is_loss("accuracy") and not is_loss("grad_norm/G/loss_head.weight")
    assert parse_grad_norm("grad_norm/G/main.0.weight") == ("G", "main.0.weight")
    assert parse_grad_norm("grad_norm/G") is None


def _batch(names, n=400, lo=0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(lo, lo + n)
    out = {}
    for name in names:
        if name.startswith("D_") or name.startswith("d_"):
            out[name] = (t, np.clip(0.5 + 0.05 * rng.standard_normal(n), 0, 1))
        else:
            out[name] = (t, np.exp(0.1 * rng.standard_normal(n)))
    return out


def test_roles_bind_by_name_and_prefer_d_g_z1():
    suite = DetectorSuite()
    suite.update_scalars(_batch(["errD", "errG", "D_x", "D_G_z2", "D_G_z1"]))
    assert dict(suite.roles) == {"loss_d": "errD", "loss_g": "errG", "d_real": "D_x",
                                 "d_fake": "D_G_z1"}


def test_explicit_roles_override_matching():
    suite = DetectorSuite({"roles": {"loss_d": "critic", "d_real": "score_on_real"}})
    suite.update_scalars(_batch(["critic", "loss_D", "score_on_real"]))
    assert suite.roles["loss_d"] == "critic" and suite.roles["d_real"] == "score_on_real"
    names = {s.name for s in suite.health()}
    assert "spike:critic" in names and "oscillation:critic" in names


def test_explicit_loss_list_replaces_name_matching():
    suite = DetectorSuite({"losses": ["objective"]})
    suite.update_scalars(_batch(["objective", "loss"]))
    names = {s.name for s in suite.health()}
    assert "spike:objective" in names and "spike:loss" not in names


def test_health_of_an_empty_suite_says_why_nothing_runs():
    rows = {s.name: s for s in DetectorSuite().health()}
    assert set(rows) == {"nonfinite", "stall", "spike", "drift", "oscillation", "gradients",
                         "balance", "overfitting", "collapse", "rank"}
    assert rows["nonfinite"].state == "waiting" and rows["stall"].state == "waiting"
    for name in ("spike", "drift", "oscillation", "gradients", "balance", "collapse", "rank"):
        assert rows[name].state == "unavailable" and rows[name].reason
    assert "Monitor.watch" in rows["gradients"].reason
    assert "log_embeddings" in rows["collapse"].reason


def test_health_reports_missing_series_and_waiting_detectors():
    suite = DetectorSuite()
    suite.update_scalars(_batch(["accuracy"], n=10))
    rows = {s.name: s for s in suite.health()}
    assert rows["spike"].state == "unavailable" and "accuracy" in rows["spike"].reason
    assert rows["balance"].state == "unavailable" and "roles" in rows["balance"].reason
    suite.update_scalars(_batch(["loss"], n=10))
    rows = {s.name: s for s in suite.health()}
    assert rows["spike:loss"].state == "waiting" and "10/50" in rows["spike:loss"].reason
    suite.update_scalars(_batch(["loss"], n=100, lo=10))
    assert {s.name: s.state for s in suite.health()}["spike:loss"] == "ok"


def test_findings_from_every_route():
    suite = DetectorSuite()
    t = np.arange(1000)
    loss = healthy_loss(1000, seed=0, noise=0.05)
    loss[600] = np.nan
    loss[800] *= 10
    g0 = np.where(t < 300, 1.0, 1e-6)
    batch = {
        "loss": (t, loss),
        "grad_norm/G/main.0.weight": (t, g0),
        "grad_norm/G/main.3.weight": (t, np.ones(1000)),
        "D_x": (t, np.where(t < 400, 0.6, 0.99)),
        "D_G_z1": (t, np.where(t < 400, 0.4, 0.01)),
        "stethoscope/collapse/coverage": (t, np.full(1000, np.nan)),  # derived: ignored
    }
    found = suite.update_scalars(batch)
    keys = [(f.key, f.status) for f in found]
    assert ("divergence/nonfinite", "firing") in keys
    assert ("divergence/spike:loss", "firing") in keys
    assert ("vanishing_gradients/G", "firing") in keys
    assert ("discriminator_wins", "firing") in keys
    assert [f.step for f in found] == sorted(f.step for f in found)
    nan = next(f for f in found if f.key == "divergence/nonfinite")
    assert nan.step == 600 and nan.subject == "loss"


def test_embedding_signals_are_drained_once():
    suite = DetectorSuite()
    for step in (100, 200):
        assert suite.update_embeddings(step, {"fake": ring(300, range(8), step),
                                              "real": ring(300, range(8), step + 1)}) == []
    signals = suite.drain_signals()
    for name in ("stethoscope/collapse/coverage", "stethoscope/collapse/recall",
                 "stethoscope/collapse/vendi_ratio"):
        steps, values = signals[name]
        assert steps.dtype == np.int64 and values.dtype == np.float64
        assert steps.tolist() == [100, 200] and np.all(values > 0.5)
    assert suite.drain_signals() == {}
    assert {s.name: s.state for s in suite.health()}["collapse"] == "waiting"


def test_embeddings_without_fake_are_reported_in_health():
    suite = DetectorSuite()
    assert suite.update_embeddings(5, {"real": ring(100, range(8), 0)}) == []
    assert "no 'fake'" in {s.name: s.reason for s in suite.health()}["collapse"]


def test_config_overrides_thresholds():
    t = np.arange(3000)
    loss = healthy_loss(3000, seed=2)
    loss[1500] *= 1.9  # robust z about 7: a spike (an info marker) by default
    fired = DetectorSuite().update_scalars({"loss": (t, loss)})
    assert [(f.key, f.severity) for f in fired if f.status == "firing"] == [
        ("divergence/spike:loss", "info")]
    quiet = DetectorSuite({"spike": {"warn_z": 8.0}}).update_scalars({"loss": (t, loss)})
    assert quiet == []


def test_disabled_family_is_silent_and_says_so():
    t = np.arange(10)
    suite = DetectorSuite(SuiteConfig(enabled={"nonfinite": False}))
    assert suite.update_scalars({"loss": (t, np.full(10, np.nan))}) == []
    row = {s.name: s for s in suite.health()}["nonfinite"]
    assert row.state == "unavailable" and "disabled" in row.reason


@pytest.mark.parametrize(
    "config,match",
    [
        ({"spike": {"warn_z": -1}}, "config.spike: warn_z"),
        ({"spike": {"warm_z": 7}}, "unknown parameter"),
        ({"collapse": {"threshold": 2.0}}, "config.collapse: threshold"),
        ({"roles": {"generator": "x"}}, "unknown role"),
        ({"enabled": {"spikes": False}}, "unknown detector"),
        ({"thresholds": {}}, "unknown field"),
        ({"losses": "loss"}, "losses"),
        ("loss", "mapping"),
    ],
)
def test_invalid_config_raises_clear_errors(config, match):
    with pytest.raises(ValueError, match=match):
        DetectorSuite(config)


def test_config_round_trips_through_json():
    cfg = SuiteConfig.from_mapping({"spike": {"warn_z": 7.0}, "losses": ["a"],
                                    "roles": {"loss_g": "gl"}})
    again = SuiteConfig.from_mapping(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def _stream(lo, hi):
    t = np.arange(lo, hi)
    loss = healthy_loss(2000, seed=5)[lo:hi]
    g = np.where(t < 900, 1.0, 1e-6)
    if lo <= 1500 < hi:
        loss[1500 - lo] *= 10
    return {"loss_G": (t, loss), "errD": (t, healthy_loss(2000, seed=6)[lo:hi]),
            "D_x": (t, np.full(t.size, 0.6)), "D_G_z1": (t, np.full(t.size, 0.4)),
            "grad_norm/G/a.weight": (t, g), "grad_norm/G/b.weight": (t, np.ones(t.size)),
            "grad_norm/G/total": (t, np.ones(t.size))}


def test_suite_state_round_trip_gives_identical_findings():
    suite = DetectorSuite({"spike": {"warn_z": 6.5}})
    suite.update_scalars(_stream(0, 800))
    suite.update_embeddings(800, {"fake": ring(200, range(8), 1), "real": ring(200, range(8), 2)})
    state = json.loads(json.dumps(suite.state_dict(), allow_nan=False))
    restored = DetectorSuite()
    restored.load_state_dict(state)
    assert restored.config == suite.config
    assert json.dumps(restored.state_dict(), sort_keys=True) == json.dumps(
        suite.state_dict(), sort_keys=True)
    a = suite.update_scalars(_stream(800, 2000))
    b = restored.update_scalars(_stream(800, 2000))
    assert a == b and {f.key for f in a} >= {"vanishing_gradients/G", "divergence/spike:loss_G"}
    assert restored.health() == suite.health()
    sa, sb = suite.drain_signals(), restored.drain_signals()
    assert sa.keys() == sb.keys() and all(
        np.array_equal(sa[k][1], sb[k][1]) for k in sa)


def test_load_state_dict_rejects_foreign_state():
    with pytest.raises(ValueError, match="version"):
        DetectorSuite().load_state_dict({"version": 99})


def test_bad_batch_shapes_raise_clear_errors():
    suite = DetectorSuite()
    with pytest.raises(ValueError, match="same length"):
        suite.update_scalars({"loss": (np.arange(3), np.ones(2))})
    with pytest.raises(ValueError, match="pair"):
        suite.update_scalars({"loss": np.ones(3)})
