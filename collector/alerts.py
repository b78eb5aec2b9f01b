"""Alerts that come back on the server's responses, and the book that tracks them."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .wire import decode_value

__all__ = ["SEVERITY_RANK", "Alert", "AlertBook", "Remedy"]

SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True)
class Remedy:
    """A suggested fix and the paper (or source) to read."""

    action: str
    citation: str = ""


@dataclass(frozen=True)
class Alert:
    """One alert of the run, as last reported by the server (fields of docs/architecture.md)."""

    id: int
    run: str
    kind: str
    key: str
    severity: str
    status: str
    step: int
    first_step: int
    message: str
    evidence: Mapping[str, float] = field(default_factory=dict)
    remedies: tuple[Remedy, ...] = ()
    count: int = 1
    seq: int = 0
    created_at: float | None = None
    updated_at: float | None = None
    resolved_at: float | None = None
    detector: str | None = None
    subject: str | None = None
    episodes: int = 1
    resolved_step: int | None = None
    resolved_message: str | None = None

    @property
    def firing(self) -> bool:
        return self.status == "firing"

    @property
    def rank(self) -> int:
        """0 for info, 1 for warning, 2 for critical (-1 if unknown)."""
        return SEVERITY_RANK.get(self.severity, -1)

    def __str__(self) -> str:
        text = f"[{self.severity}] {self.kind} at step {self.step}: {self.message}"
        if not self.firing and self.resolved_step is not None:
            text += f" (resolved at step {self.resolved_step})"
        return text

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Alert:
        """Parse one alert of a response; tolerant of missing or extra fields."""

        def opt_float(v: Any) -> float | None:
            return None if v is None else decode_value(v)

        remedies = []
        for r in d.get("remedies") or ():
            if isinstance(r, Mapping):
                remedies.append(Remedy(str(r.get("action", "")), str(r.get("citation", "") or "")))
        evidence = d.get("evidence") or {}
        return cls(
            id=int(d["id"]),
            run=str(d.get("run", "")),
            kind=str(d.get("kind", "")),
            key=str(d.get("key", "")),
            severity=str(d.get("severity", "info")),
            status=str(d.get("status", "firing")),
            step=int(d.get("step") or 0),
            first_step=int(d.get("first_step") or d.get("step") or 0),
            message=str(d.get("message", "")),
            evidence={str(k): decode_value(v) for k, v in evidence.items()}
            if isinstance(evidence, Mapping)
            else {},
            remedies=tuple(remedies),
            count=int(d.get("count") or 1),
            seq=int(d.get("seq") or 0),
            created_at=opt_float(d.get("created_at")),
            updated_at=opt_float(d.get("updated_at")),
            resolved_at=opt_float(d.get("resolved_at")),
            detector=None if d.get("detector") is None else str(d["detector"]),
            subject=None if d.get("subject") is None else str(d["subject"]),
            episodes=int(d.get("episodes") or 1),
            resolved_step=None if d.get("resolved_step") is None else int(d["resolved_step"]),
            resolved_message=None if d.get("resolved_message") is None
            else str(d["resolved_message"]),
        )


class AlertBook:
    """Latest state per alert id, the alert cursor, and which updates deserve a notification.

    A notification is due for every episode of a warning or critical alert (its first firing,
    and every time it fires again), and when a firing alert's severity rises. An episode that
    fired and already resolved before a response carried it is still notified (with status
    ``resolved`` and its severity): it happened. ``info`` alerts (transient excursions) are
    drawn on the dashboard, never notified.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[int, Alert] = {}
        self._notified_rank: dict[int, int] = {}
        self._episodes: dict[int, int] = {}
        self._cursor = 0

    @property
    def cursor(self) -> int:
        with self._lock:
            return self._cursor

    def alerts(self) -> list[Alert]:
        with self._lock:
            return sorted(self._latest.values(), key=lambda a: a.seq)

    def update(self, raw_alerts: Iterable[Mapping[str, Any]], cursor: int | None) -> list[Alert]:
        """Merge alerts from a response; return those to notify, in seq order."""
        parsed = []
        for raw in raw_alerts:
            try:
                parsed.append(Alert.from_wire(raw))
            except (KeyError, TypeError, ValueError):
                continue
        parsed.sort(key=lambda a: a.seq)
        due: list[Alert] = []
        with self._lock:
            for alert in parsed:
                old = self._latest.get(alert.id)
                if old is not None and old.seq > alert.seq:
                    continue
                self._latest[alert.id] = alert
                if alert.rank < SEVERITY_RANK["warning"]:
                    continue
                if alert.episodes > self._episodes.get(alert.id, 0):
                    self._episodes[alert.id] = alert.episodes
                    self._notified_rank[alert.id] = alert.rank
                    due.append(alert)
                elif alert.firing and alert.rank > self._notified_rank.get(alert.id, -2):
                    self._notified_rank[alert.id] = alert.rank
                    due.append(alert)
            top = max([self._cursor, *(a.seq for a in parsed)])
            if cursor is not None:
                top = max(top, int(cursor))
            self._cursor = top
        return due
