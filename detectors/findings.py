"""What detectors report: findings, remedies and per-detector health.

Detectors never send anything themselves. They return :class:`Finding` objects, plain frozen
dataclasses that the server's alert pipeline deduplicates by ``key``, groups per run, resolves and
delivers. :class:`DetectorStatus` is what a detector says about itself in the run's health view,
so that a detector that cannot run says so instead of quietly doing nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "KINDS",
    "SEVERITIES",
    "STATUSES",
    "HEALTH_STATES",
    "Remedy",
    "Finding",
    "DetectorStatus",
]

#: The kinds of finding, shared with the server's alerts.
KINDS = (
    "divergence",
    "vanishing_gradients",
    "exploding_gradients",
    "discriminator_wins",
    "mode_collapse",
    "stalled",
)
SEVERITIES = ("info", "warning", "critical")
STATUSES = ("firing", "resolved")
HEALTH_STATES = ("ok", "alarm", "waiting", "unavailable")


@dataclass(frozen=True)
class Remedy:
    """A suggested fix and the paper (or report) to read about it.

    Examples
    --------
    >>> Remedy("One-sided label smoothing (real labels 0.9)", "Salimans et al. 2016").to_dict()
    {'action': 'One-sided label smoothing (real labels 0.9)', 'citation': 'Salimans et al. 2016'}
    """

    action: str
    citation: str

    def to_dict(self) -> dict[str, str]:
        return {"action": self.action, "citation": self.citation}


class Evidence(dict):
    """A read-only ``dict`` of evidence numbers (picklable and copyable, unlike a proxy)."""

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("Finding evidence is read-only; build a new Finding instead")

    __setitem__ = __delitem__ = __ior__ = _read_only  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _read_only  # type: ignore[assignment]

    def __reduce__(self) -> tuple:
        return (Evidence, (dict(self),))


def _freeze_evidence(evidence: Mapping[str, float] | None) -> Mapping[str, float]:
    return Evidence({str(name): float(value) for name, value in dict(evidence or {}).items()})


@dataclass(frozen=True)
class Finding:
    """One thing a detector saw at one step.

    Parameters
    ----------
    detector
        Name of the detector instance that produced it (e.g. ``"spike:loss_D"``).
    kind
        One of :data:`KINDS`.
    key
        Deduplication key within a run (e.g. ``"divergence/nonfinite"``,
        ``"divergence/spike:loss_D"``, ``"vanishing_gradients/G"``, ``"mode_collapse"``).
        A later finding with the same key updates (or resolves) the same alert.
    severity
        ``"info"``, ``"warning"`` or ``"critical"``.
    status
        ``"firing"``, or ``"resolved"`` once, when the condition clears.
    step
        Training step at which the condition was seen (or cleared).
    message
        Plain sentence(s) with numbers: what was seen and why it matters.
    evidence
        Numbers behind the message (non-finite values allowed, e.g. the NaN that was seen).
    remedies
        Suggested fixes with citations.
    subject
        What the finding is about (a series name, a module or layer), if anything.

    Examples
    --------
    >>> f = Finding("nonfinite", "divergence", "divergence/nonfinite", "critical", "firing", 12,
    ...             "loss_D became NaN at step 12.", {"value": float("nan")}, (), "loss_D")
    >>> f.to_dict()["evidence"]
    {'value': nan}
    """

    detector: str
    kind: str
    key: str
    severity: str
    status: str
    step: int
    message: str
    evidence: Mapping[str, float] = field(default_factory=dict)
    remedies: tuple[Remedy, ...] = ()
    subject: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        object.__setattr__(self, "step", int(self.step))
        object.__setattr__(self, "evidence", _freeze_evidence(self.evidence))
        object.__setattr__(self, "remedies", tuple(self.remedies))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (evidence values are Python floats, possibly NaN or Inf).

        JSON has no NaN: a caller that writes strict JSON must encode non-finite evidence
        itself (the wire format uses the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``).
        """
        return {
            "detector": self.detector,
            "kind": self.kind,
            "key": self.key,
            "severity": self.severity,
            "status": self.status,
            "step": self.step,
            "message": self.message,
            "evidence": {k: float(v) for k, v in self.evidence.items()},
            "remedies": [r.to_dict() for r in self.remedies],
            "subject": self.subject,
        }

    def __eq__(self, other: object) -> bool:  # NaN evidence must compare equal to itself
        if not isinstance(other, Finding):
            return NotImplemented
        return _comparable(self) == _comparable(other)

    def __hash__(self) -> int:
        return hash((self.key, self.status, self.step, self.severity))


def _comparable(f: Finding) -> tuple:
    ev = tuple(sorted((k, "nan" if math.isnan(v) else v) for k, v in f.evidence.items()))
    return (f.detector, f.kind, f.key, f.severity, f.status, f.step, f.message, ev,
            f.remedies, f.subject)


@dataclass(frozen=True)
class DetectorStatus:
    """What a detector says about itself in the run's health view.

    ``state`` is ``"ok"`` (running, nothing firing), ``"alarm"`` (a finding is firing),
    ``"waiting"`` (needs more samples; the reason says how many) or ``"unavailable"`` (its input
    is missing or it is disabled; the reason says what to log or configure).
    """

    name: str
    state: str
    reason: str

    def __post_init__(self) -> None:
        if self.state not in HEALTH_STATES:
            raise ValueError(f"state must be one of {HEALTH_STATES}, got {self.state!r}")

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "state": self.state, "reason": self.reason}
