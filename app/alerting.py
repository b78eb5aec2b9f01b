"""Turns detector findings into alerts: dedup, updates, episodes, resolution and inhibition.

Detectors never send anything; they report findings. The manager keeps one alert per run and
key (a detector's dedup key, e.g. ``divergence/nonfinite`` or ``vanishing_gradients/G``):

- a repeated finding updates the firing alert (at most every ``update_interval`` seconds unless
  its severity rises) instead of raising a new one;
- a ``resolved`` finding resolves it, keeping its firing record (step, message, evidence);
- a finding that fires again within ``reopen_steps`` steps of the resolution reopens the same
  alert as a new episode, so a flapping detector yields one alert, not hundreds;
- findings are applied in order, so one that fires and resolves inside one batch is stored as
  fired *and* resolved, and reaches every listener twice;
- a firing non-finite alert inhibits the spike, drift and oscillation alerts a NaN would
  otherwise cause (from the first non-finite step on; an earlier warning still fires);
- ``info`` findings (a transient excursion that recovered) are stored like the others, so the
  dashboard draws them and their history is kept, but they never make a run's health warn
  and are not pushed to the training process.

The manager plans changes (:meth:`AlertManager.plan`); the caller stores them, in the same
transaction as the detector state that explains them, and hands the stored records back
(:meth:`AlertManager.applied`), which updates the manager's view and tells the listeners.
:meth:`AlertManager.process` does all three for callers without detector state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
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


@dataclass
class _KeyView:
    """What the planner knows of one key while it walks a list of findings."""

    firing: bool
    severity: str
    step: int
    resolved_step: int | None
    alert_id: int | None
    written_at: float
    changed: bool = False  # an update of this key is already planned


class AlertManager:
    """Plans alert changes from findings against the run's stored alerts; thread-safe.

    ``listeners`` are called with every changed :class:`AlertRecord` after it is stored (the
    hook where metrics and notifications attach); a record's ``last_event`` says what happened.
    """

    def __init__(
        self,
        store: Store,
        *,
        update_interval: float = 5.0,
        reopen_steps: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.update_interval = update_interval
        self.reopen_steps = reopen_steps
        self._clock = clock
        self._lock = threading.Lock()
        self._latest: dict[str, dict[str, AlertRecord]] = {}  # run -> key -> latest alert
        self._written_at: dict[int, float] = {}  # alert id -> clock time of its last write
        self.listeners: list[Callable[[AlertRecord], None]] = []

    def _latest_for(self, run: str) -> dict[str, AlertRecord]:
        if run not in self._latest:
            self._latest[run] = self.store.latest_alerts_by_key(run)
        return self._latest[run]

    def firing(self, run: str) -> list[AlertRecord]:
        """The run's currently firing alerts."""
        with self._lock:
            return [a for a in self._latest_for(run).values() if a.status == "firing"]

    # ------------------------------------------------------------------ the three steps
    def plan(self, run: str, findings: Iterable[FindingLike]) -> list[AlertChange]:
        """The alert changes ``findings`` call for, in order (nothing is stored)."""
        findings = sorted(findings, key=lambda f: f.step)
        if not findings:
            return []
        with self._lock:
            latest = self._latest_for(run)
            views = {
                key: _KeyView(a.status == "firing", a.severity, a.step, a.resolved_step,
                              a.id, self._written_at.get(a.id, -float("inf")))
                for key, a in latest.items()
            }
        now = self._clock()
        changes: list[AlertChange] = []
        # from the step a non-finite value fired until it resolved, its consequences (spikes,
        # drift, oscillation) are silenced; a warning seen before the NaN still gets through
        nan = views.get(NONFINITE_KEY)
        nan_since = latest[NONFINITE_KEY].first_step if nan is not None and nan.firing else None
        for f in findings:
            if f.severity not in SEVERITY_RANK:
                continue
            if f.key == NONFINITE_KEY:
                nan_since = (f.step if nan_since is None else nan_since) \
                    if f.status == "firing" else None
            view = views.get(f.key)
            if f.status == "resolved":
                if view is not None and view.firing:
                    changes.append(self._change(run, f, "resolved", view.severity, view.alert_id))
                    view.firing, view.resolved_step, view.changed = False, f.step, False
                continue
            if (nan_since is not None and f.step >= nan_since
                    and f.key.startswith(INHIBITED_BY_NONFINITE)):
                continue
            if view is None or not view.firing:
                reopen = (view is not None and view.resolved_step is not None
                          and f.step - view.resolved_step <= self.reopen_steps)
                changes.append(self._change(run, f, "firing", f.severity,
                                            view.alert_id if reopen else None, reopen=reopen))
                if not reopen:  # a new alert: its id is not known until it is stored
                    view = views[f.key] = _KeyView(True, f.severity, f.step, None, None, now)
                view.firing, view.severity, view.step = True, f.severity, f.step
                view.written_at, view.changed = now, True
                continue
            escalates = SEVERITY_RANK[f.severity] > SEVERITY_RANK[view.severity]
            due = now - view.written_at >= self.update_interval
            if escalates or (due and not view.changed):
                severity = max(f.severity, view.severity, key=SEVERITY_RANK.__getitem__)
                changes.append(self._change(run, f, "firing", severity, view.alert_id,
                                            step=max(f.step, view.step)))
                view.severity, view.step, view.changed = severity, max(f.step, view.step), True
        return changes

    def applied(self, run: str, records: Sequence[AlertRecord]) -> list[AlertRecord]:
        """Take the stored results of :meth:`plan`'s changes: update the view, tell listeners."""
        if not records:
            return []
        written = self._clock()
        with self._lock:
            latest = self._latest_for(run)
            for record in records:
                current = latest.get(record.key)
                if current is None or record.id >= current.id:
                    latest[record.key] = record
                self._written_at[record.id] = written
        for record in records:  # outside the lock: a slow listener never blocks alerting
            for listener in self.listeners:
                listener(record)
        return list(records)

    def process(self, run: str, findings: Iterable[FindingLike]) -> list[AlertRecord]:
        """Plan, store and announce the changes ``findings`` call for."""
        changes = self.plan(run, findings)
        if not changes:
            return []
        return self.applied(run, self.store.apply_alert_changes(changes))

    def resolve_changes(self, run: str, reason: str) -> list[AlertChange]:
        """Changes that resolve every firing alert of ``run``, saying ``reason``."""
        return [
            AlertChange(
                run=run, kind=a.kind, key=a.key, severity=a.severity, status="resolved",
                step=a.step, message=f"Resolved: {reason}.", evidence=dict(a.evidence),
                remedies=list(a.remedies), detector=a.detector, subject=a.subject,
                alert_id=a.id,
            )
            for a in self.firing(run)
        ]

    def resolve_all(self, run: str, reason: str) -> list[AlertRecord]:
        """Resolve every firing alert of ``run``, saying ``reason``."""
        changes = self.resolve_changes(run, reason)
        if not changes:
            return []
        return self.applied(run, self.store.apply_alert_changes(changes))

    @staticmethod
    def _change(
        run: str,
        finding: FindingLike,
        status: str,
        severity: str,
        alert_id: int | None,
        *,
        reopen: bool = False,
        step: int | None = None,
    ) -> AlertChange:
        return AlertChange(
            run=run,
            kind=finding.kind,
            key=finding.key,
            severity=severity,
            status=status,
            step=int(finding.step if step is None else step),
            message=finding.message,
            evidence=_evidence(finding),
            remedies=_remedies(finding),
            detector=finding.detector,
            subject=finding.subject,
            alert_id=alert_id,
            reopen=reopen,
        )


def firing_counts(alerts: Iterable[AlertRecord]) -> dict[str, int]:
    """Number of firing alerts per severity (``critical`` and ``warning`` always present)."""
    counts = {"critical": 0, "warning": 0}
    for alert in alerts:
        if alert.status == "firing":
            counts[alert.severity] = counts.get(alert.severity, 0) + 1
    return counts
