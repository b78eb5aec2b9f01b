"""Alert pipeline: dedup per key, escalation, resolution, inhibition by a firing NaN alert."""

from __future__ import annotations

import pytest

from stethoscope.app.alerting import AlertManager
from stethoscope.app.storage import SQLiteStore
from stethoscope.detectors import Finding, Remedy


def finding(key: str, severity: str = "warning", status: str = "firing", step: int = 1, kind: str = "divergence") -> Finding:
    return Finding(
        detector=key.split("/")[-1], kind=kind, key=key, severity=severity, status=status,
        step=step, message=f"{key} at {step}", evidence={"z": 7.5},
        remedies=(Remedy("lower the learning rate", "OLMo 2"),), subject="loss",
    )


@pytest.fixture
def manager(tmp_path):
    store = SQLiteStore(tmp_path / "a.db")
    store.upsert_run("r")
    clock = [1000.0]
    m = AlertManager(store, update_interval=5.0, clock=lambda: clock[0])
    m.clock = clock  # type: ignore[attr-defined]
    yield m
    store.close()


def test_repeated_findings_make_one_alert(manager: AlertManager) -> None:
    first = manager.process("r", [finding("divergence/spike:loss", step=10)])
    assert len(first) == 1 and first[0].status == "firing"
    assert manager.process("r", [finding("divergence/spike:loss", step=11)]) == []  # within interval
    manager.clock[0] += 6  # type: ignore[attr-defined]
    [updated] = manager.process("r", [finding("divergence/spike:loss", step=20)])
    assert updated.id == first[0].id and updated.step == 20 and updated.count == 2
    assert len(manager.store.list_alerts("r")) == 1


def test_escalation_is_immediate(manager: AlertManager) -> None:
    [a] = manager.process("r", [finding("divergence/spike:loss", "warning", step=1)])
    [b] = manager.process("r", [finding("divergence/spike:loss", "critical", step=2)])
    assert a.id == b.id and b.severity == "critical"


def test_resolution_closes_and_a_new_firing_opens_a_new_alert(manager: AlertManager) -> None:
    [a] = manager.process("r", [finding("mode_collapse", kind="mode_collapse", step=5)])
    [resolved] = manager.process("r", [finding("mode_collapse", kind="mode_collapse", status="resolved", step=9)])
    assert resolved.id == a.id and resolved.status == "resolved" and resolved.message.startswith("Resolved")
    assert manager.firing("r") == []
    [b] = manager.process("r", [finding("mode_collapse", kind="mode_collapse", step=30)])
    assert b.id != a.id


def test_resolved_without_firing_alert_is_ignored(manager: AlertManager) -> None:
    assert manager.process("r", [finding("divergence/spike:loss", status="resolved")]) == []


def test_nan_alert_inhibits_spike_alerts(manager: AlertManager) -> None:
    out = manager.process(
        "r",
        [finding("divergence/nonfinite", "critical", step=3), finding("divergence/spike:loss", "critical", step=3)],
    )
    assert [a.key for a in out] == ["divergence/nonfinite"]
    assert manager.process("r", [finding("divergence/drift:loss", step=4)]) == []
    assert manager.process("r", [finding("vanishing_gradients/G", kind="vanishing_gradients", step=4)])


def test_info_findings_raise_no_alert(manager: AlertManager) -> None:
    assert manager.process("r", [finding("divergence/spike:loss", "info")]) == []


def test_listeners_see_every_change(manager: AlertManager) -> None:
    seen = []
    manager.listeners.append(seen.append)
    manager.process("r", [finding("divergence/nonfinite", "critical")])
    assert [a.key for a in seen] == ["divergence/nonfinite"]


def test_firing_alerts_reload_from_store(manager: AlertManager) -> None:
    manager.process("r", [finding("divergence/spike:loss", step=1)])
    fresh = AlertManager(manager.store)
    assert [a.key for a in fresh.firing("r")] == ["divergence/spike:loss"]


def test_a_warning_before_the_nan_is_not_inhibited(manager: AlertManager) -> None:
    out = manager.process(
        "r",
        [
            finding("divergence/drift:loss", "warning", step=482),
            finding("divergence/nonfinite", "critical", step=491),
            finding("divergence/spike:loss", "critical", step=495),
        ],
    )
    assert sorted(a.key for a in out) == ["divergence/drift:loss", "divergence/nonfinite"]
