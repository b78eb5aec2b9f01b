"""Turns detector findings into alerts: dedup, updates, resolution and inhibition.

Detectors never send anything; they report findings. The manager keeps one firing alert per run
and key (a detector's dedup key, e.g. ``divergence/nonfinite`` or ``vanishing_gradients/G``):
a repeated finding updates that alert (at most every ``update_interval`` seconds unless its
severity changes) instead of raising a new one, a ``resolved`` finding closes it, and a firing
non-finite alert inhibits the spike and drift alerts that a NaN would otherwise cause (from the
first non-finite step on; an earlier warning still fires: it is the early warning).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from .storage import AlertChange, AlertRecord, Store

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
#: Alert keys whose cause a non-finite value explains: silenced while ``divergence/nonfinite`` fires.
INHIBITED_BY_NONFINITE = ("divergence/spike", "divergence/drift", "divergence/oscillation")
NONFINITE_KEY = "divergence/nonfinite"


class FindingLike(Protocol):
    """What the manager reads from a detector finding (``stethoscope.detectors.Finding``)."""

    detector: str
    kind: str
    key: str
    severity: str
    status: str
    step: int
    message: str
    evidence: Any
    remedies: Any
    subject: str | None


def _remedies(finding: FindingLike) -> list[dict[str, str]]:
    out = []
    for remedy in finding.remedies or ():
        if isinstance(remedy, dict):
            out.append({"action": str(remedy["action"]), "citation": str(remedy.get("citation", ""))})
        else:
            out.append({"action": remedy.action, "citation": remedy.citation})
    return out


def _evidence(finding: FindingLike) -> dict[str, float]:
    evidence: dict[str, float] = {}
    for key, value in dict(finding.evidence or {}).items():
        try:
            evidence[str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return evidence


class AlertManager:
    """Deduplicates findings into alerts of one store; thread-safe.

    ``listeners`` are called with every changed :class:`AlertRecord` after it is stored (the
    hook where webhooks and metrics attach).
    """

    def __init__(
        self,
        store: Store,
        *,
        update_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.update_interval = update_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._firing: dict[str, dict[str, AlertRecord]] = {}
        self._written_at: dict[int, float] = {}  # alert id -> clock time of its last write
        self.listeners: list[Callable[[AlertRecord], None]] = []

    def _firing_for(self, run: str) -> dict[str, AlertRecord]:
        if run not in self._firing:
            self._firing[run] = {
                a.key: a for a in self.store.list_alerts(run, status="firing")
            }
        return self._firing[run]

    def firing(self, run: str) -> list[AlertRecord]:
        """The run's currently firing alerts."""
        with self._lock:
            return list(self._firing_for(run).values())

    def process(self, run: str, findings: Iterable[FindingLike]) -> list[AlertRecord]:
        """Apply ``findings`` of ``run``; returns the alerts created, updated or resolved."""
        findings = list(findings)
        if not findings:
            return []
        with self._lock:  # plan and store atomically, so two callers never open the same alert
            records = self._apply(run, self._plan(run, self._firing_for(run), findings))
        return self._notify(records)

    def resolve_all(self, run: str, reason: str) -> list[AlertRecord]:
        """Resolve every firing alert of ``run``, saying ``reason``."""
        with self._lock:
            changes = [
                AlertChange(
                    run=run, kind=a.kind, key=a.key, severity=a.severity, status="resolved",
                    step=a.step, message=f"Resolved: {reason}.", evidence=dict(a.evidence),
                    remedies=list(a.remedies), detector=a.detector, subject=a.subject,
                    alert_id=a.id,
                )
                for a in self._firing_for(run).values()
            ]
            records = self._apply(run, changes)
        return self._notify(records)

    def _apply(self, run: str, changes: Sequence[AlertChange]) -> list[AlertRecord]:
        """Store ``changes`` and keep the firing set current (caller holds the lock)."""
        if not changes:
            return []
        records = self.store.apply_alert_changes(changes)
        firing = self._firing_for(run)
        written = self._clock()
        for record in records:
            if record.status == "firing":
                firing[record.key] = record
                self._written_at[record.id] = written
            else:
                firing.pop(record.key, None)
                self._written_at.pop(record.id, None)
        return records

    def _notify(self, records: list[AlertRecord]) -> list[AlertRecord]:
        """Tell the listeners (outside the lock: a slow listener never blocks alerting)."""
        for record in records:
            for listener in self.listeners:
                listener(record)
        return records

    def _plan(
        self, run: str, firing: dict[str, AlertRecord], findings: Sequence[FindingLike]
    ) -> list[AlertChange]:
        planned: dict[str, AlertChange] = {}
        now = self._clock()
        # the first non-finite step: findings of its consequences at or after it are silenced,
        # while an earlier warning (a drift seen before the NaN) still gets through
        nan_steps = [f.step for f in findings if f.key == NONFINITE_KEY and f.status == "firing"]
        if NONFINITE_KEY in firing:
            nan_steps.append(firing[NONFINITE_KEY].first_step)
        first_nan = min(nan_steps, default=None)
        for finding in findings:
            if finding.severity not in SEVERITY_RANK:
                continue
            current = firing.get(finding.key)
            pending = planned.get(finding.key)
            if finding.status == "resolved":
                if current is not None or (pending is not None and pending.status == "firing"):
                    planned[finding.key] = self._change(run, finding, current, "resolved")
                continue
            if finding.severity == "info":
                continue
            if (
                first_nan is not None
                and finding.step >= first_nan
                and finding.key.startswith(INHIBITED_BY_NONFINITE)
            ):
                continue
            if current is None:
                if pending is None or SEVERITY_RANK[finding.severity] >= SEVERITY_RANK[
                    pending.severity
                ]:
                    planned[finding.key] = self._change(run, finding, None, "firing")
                continue
            escalates = SEVERITY_RANK[finding.severity] > SEVERITY_RANK[current.severity]
            due = now - self._written_at.get(current.id, -float("inf")) >= self.update_interval
            if escalates or (due and pending is None):
                severity = max(
                    finding.severity, current.severity, key=SEVERITY_RANK.__getitem__
                )
                planned[finding.key] = self._change(run, finding, current, "firing", severity)
        return list(planned.values())

    @staticmethod
    def _change(
        run: str,
        finding: FindingLike,
        current: AlertRecord | None,
        status: str,
        severity: str | None = None,
    ) -> AlertChange:
        step = int(finding.step)
        if current is not None and status == "firing":
            step = max(step, current.step)
        return AlertChange(
            run=run,
            kind=finding.kind,
            key=finding.key,
            severity=severity or (current.severity if status == "resolved" and current else finding.severity),
            status=status,
            step=step,
            message=finding.message if status == "firing" or current is None else (
                f"Resolved: {finding.message}"
            ),
            evidence=_evidence(finding),
            remedies=_remedies(finding) if status == "firing" or current is None else list(
                current.remedies
            ),
            detector=finding.detector,
            subject=finding.subject,
            alert_id=None if current is None else current.id,
        )


def firing_counts(alerts: Iterable[AlertRecord]) -> dict[str, int]:
    """Number of firing alerts per severity (``critical`` and ``warning`` always present)."""
    counts = {"critical": 0, "warning": 0}
    for alert in alerts:
        if alert.status == "firing":
            counts[alert.severity] = counts.get(alert.severity, 0) + 1
    return counts

