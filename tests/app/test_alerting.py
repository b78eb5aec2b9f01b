"""Alert pipeline: dedup per key, escalation, resolution, inhibition by a firing NaN alert."""

from __future__ import annotations

import pytest

from stethoscope.app.alerting import AlertManager, firing_counts
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


def test_resolution_keeps_the_firing_record(manager: AlertManager) -> None:
    [a] = manager.process("r", [finding("mode_collapse", kind="mode_collapse", step=5)])
    [resolved] = manager.process("r", [finding("mode_collapse", kind="mode_collapse", status="resolved", step=9)])
    assert resolved.id == a.id and resolved.status == "resolved"
    assert (resolved.step, resolved.message, resolved.evidence) == (5, "mode_collapse at 5", {"z": 7.5})
    assert (resolved.resolved_step, resolved.resolved_message) == (9, "mode_collapse at 9")
    assert manager.firing("r") == []


def test_a_finding_back_soon_reopens_the_alert_and_a_late_one_opens_another(manager: AlertManager) -> None:
    [a] = manager.process("r", [finding("mode_collapse", kind="mode_collapse", step=5)])
    manager.process("r", [finding("mode_collapse", kind="mode_collapse", status="resolved", step=9)])
    [again] = manager.process("r", [finding("mode_collapse", kind="mode_collapse", step=300)])
    assert (again.id, again.status, again.episodes, again.last_event) == (a.id, "firing", 2, "reopened")
    assert again.resolved_step is None and again.first_step == 5
    manager.process("r", [finding("mode_collapse", kind="mode_collapse", status="resolved", step=310)])
    [late] = manager.process("r", [finding("mode_collapse", kind="mode_collapse", step=5000)])
    assert late.id != a.id and late.episodes == 1


def test_fired_and_resolved_in_one_batch_is_stored_as_both(manager: AlertManager) -> None:
    seen = []
    manager.listeners.append(seen.append)
    out = manager.process("r", [finding("divergence/nonfinite", "critical", step=3),
                                finding("divergence/nonfinite", "critical", status="resolved", step=53)])
    assert [(a.status, a.severity, a.last_event) for a in out] == [
        ("firing", "critical", "fired"), ("resolved", "critical", "resolved")]
    assert [a.last_event for a in seen] == ["fired", "resolved"]
    [stored] = manager.store.list_alerts("r")
    assert (stored.status, stored.step, stored.resolved_step, stored.severity) == ("resolved", 3, 53, "critical")
    assert [e.event for e in manager.store.alert_history("r")] == ["fired", "resolved"]


def test_a_periodic_nan_is_one_alert_with_many_episodes(manager: AlertManager) -> None:
    findings = []
    for start in range(0, 600, 60):
        findings += [finding("divergence/nonfinite", "critical", step=start),
                     finding("divergence/nonfinite", "critical", status="resolved", step=start + 50)]
    manager.process("r", findings)
    [alert] = manager.store.list_alerts("r")
    assert (alert.episodes, alert.status, alert.first_step) == (10, "resolved", 0)
    events = [e.event for e in manager.store.alert_history("r", alert.id)]
    assert events == ["fired", "resolved"] + ["reopened", "resolved"] * 9


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


def test_info_findings_are_stored_but_never_count_as_firing_trouble(manager: AlertManager) -> None:
    [a] = manager.process("r", [finding("divergence/spike:loss", "info")])
    assert a.severity == "info" and a.status == "firing"
    assert firing_counts(manager.firing("r")) == {"critical": 0, "warning": 0, "info": 1}


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


def test_inhibition_ends_when_the_nan_alert_resolves(manager: AlertManager) -> None:
    out = manager.process("r", [finding("divergence/nonfinite", "critical", step=10),
                                finding("divergence/spike:loss", "critical", step=15),
                                finding("divergence/nonfinite", "critical", status="resolved",
                                        step=20),
                                finding("divergence/spike:loss", "critical", step=500)])
    assert [(a.key, a.status, a.step) for a in out] == [
        ("divergence/nonfinite", "firing", 10), ("divergence/nonfinite", "resolved", 10),
        ("divergence/spike:loss", "firing", 500)]
