"""The storage interface the server is written against.

Every route, the detector runtime and the dashboard talk to a :class:`Store`, never to SQLite
directly, so another backend (PostgreSQL for teams that outgrow one machine) can follow without
touching them. Records are plain frozen dataclasses; series travel as numpy arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class RunRecord:
    """One training run as stored."""

    name: str
    status: str
    config: dict[str, Any]
    created_at: float
    updated_at: float
    last_step: int | None
    health: dict[str, Any] = field(default_factory=dict)
    detectors: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SeriesInfo:
    """Summary of one scalar series of a run."""

    name: str
    points: int
    first_step: int | None
    last_step: int | None
    nonfinite: int


@dataclass(frozen=True)
class SeriesData:
    """Points of one series, ordered by step (ties keep arrival order)."""

    name: str
    steps: np.ndarray  # int64
    values: np.ndarray  # float64, NaN and +-Inf kept


@dataclass(frozen=True)
class EmbeddingInfo:
    """One stored embedding batch, without its data."""

    step: int
    name: str
    n: int
    d: int


@dataclass(frozen=True)
class EmbeddingRecord:
    """One stored embedding batch with its data."""

    step: int
    name: str
    data: np.ndarray  # (n, d) float32


@dataclass(frozen=True)
class EmbeddingInput:
    """An embedding batch to store."""

    step: int
    name: str
    data: np.ndarray


@dataclass(frozen=True)
class AlertRecord:
    """One alert: a deduplicated, possibly updated, possibly resolved finding of a run.

    ``seq`` increases on every change of any alert of the same run, so a client that remembers
    the highest ``seq`` it has seen can ask for exactly what changed since.
    """

    id: int
    run: str
    kind: str
    key: str
    severity: str
    status: str
    step: int
    first_step: int
    message: str
    evidence: dict[str, float]
    remedies: list[dict[str, str]]
    count: int
    seq: int
    created_at: float
    updated_at: float
    resolved_at: float | None
    detector: str = ""
    subject: str | None = None
    episodes: int = 1
    resolved_step: int | None = None
    resolved_message: str | None = None
    last_event: str = "fired"


#: What an alert change did, as recorded in the alert's history.
ALERT_EVENTS = ("fired", "updated", "escalated", "resolved", "reopened")


@dataclass(frozen=True)
class AlertEvent:
    """One entry of an alert's history: what changed, at which step, with which evidence."""

    alert_id: int
    seq: int
    event: str
    severity: str
    step: int
    message: str
    evidence: dict[str, float]
    at: float


@dataclass(frozen=True)
class DetectorCursors:
    """How far a run's detectors have consumed its stored batches (batch sequence numbers).

    ``scalars``: every batch up to it has had its scalars fed to the detectors; ``embeddings``:
    every batch up to it that carried embeddings has had them evaluated. Saved in the same
    transaction as the detector state and the alerts they explain, so after a crash the
    detectors resume from a consistent point and replay exactly what they had not seen.
    """

    scalars: int = 0
    embeddings: int = 0


@dataclass(frozen=True)
class StoredBatch:
    """A stored client batch, read back for a replay through the detectors."""

    seq: int
    scalars: dict[str, tuple[np.ndarray, np.ndarray]]
    embeddings: list[EmbeddingRecord]


@dataclass(frozen=True)
class AlertChange:
    """What the alert manager wants written: a new alert or an update of an existing one."""

    run: str
    kind: str
    key: str
    severity: str
    status: str
    step: int
    message: str
    evidence: dict[str, float]
    remedies: list[dict[str, str]]
    detector: str
    subject: str | None
    #: The alert to change. None: the run's firing alert with this key (a new one is opened
    #: for a firing change when there is none; a resolving change without one does nothing).
    #: A resolved alert's id with status "firing" reopens it as a new episode.
    alert_id: int | None = None
    #: With no alert_id and no firing alert of this key: reopen the key's latest alert
    #: (a flapping finding stays one alert with several episodes) instead of opening one.
    reopen: bool = False


class RunNotFound(LookupError):
    """Raised when a run name is not in the store."""


class Store(Protocol):
    """What the server needs from a storage backend."""

    def close(self) -> None: ...

    # runs
    def upsert_run(
        self,
        name: str,
        *,
        config: Mapping[str, Any] | None = None,
        status: str | None = None,
        detectors: Mapping[str, Any] | None = None,
    ) -> RunRecord: ...

    def get_run(self, name: str) -> RunRecord: ...

    def list_runs(self) -> list[RunRecord]: ...

    def set_health(self, name: str, health: Mapping[str, Any]) -> None: ...

    # ingestion
    def ingest_batch(
        self,
        run: str,
        batch_id: str,
        scalars: Mapping[str, tuple[np.ndarray, np.ndarray]],
        embeddings: Sequence[EmbeddingInput],
    ) -> int | None:
        """Store one batch atomically; returns its sequence number within the run (1, 2, ...),
        or None (and nothing written) if ``batch_id`` was seen."""
        ...

    def batch_seqs(self, run: str, after: int) -> list[int]:
        """Sequence numbers of the run's stored batches after ``after``, in order."""
        ...

    def read_batch(self, run: str, seq: int) -> StoredBatch:
        """The scalars and embeddings one stored batch carried."""
        ...

    def append_series(self, run: str, series: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Store derived points (detector signals) outside any client batch."""
        ...

    # queries
    def list_series(self, run: str) -> list[SeriesInfo]: ...

    def read_series(
        self, run: str, name: str, *, start: int | None = None, end: int | None = None
    ) -> SeriesData: ...

    def list_embeddings(self, run: str) -> list[EmbeddingInfo]: ...

    def read_embeddings(self, run: str, step: int | None = None) -> list[EmbeddingRecord]:
        """All batches at ``step`` (the latest step with embeddings when None)."""
        ...

    # detector state
    def save_detector_state(
        self, run: str, state: Mapping[str, Any], cursors: DetectorCursors | None = None
    ) -> None: ...

    def load_detector_state(self, run: str) -> dict[str, Any] | None: ...

    def detector_cursors(self, run: str) -> DetectorCursors: ...

    def commit_detector_progress(
        self,
        run: str,
        *,
        state: Mapping[str, Any],
        cursors: DetectorCursors,
        signals: Mapping[str, tuple[np.ndarray, np.ndarray]],
        alert_changes: Sequence[AlertChange],
    ) -> list[AlertRecord]:
        """In one transaction: the alert changes, the derived signal points, the detector state
        and its cursors. Returns one record per applied change, as it stood after it."""
        ...

    # alerts
    def apply_alert_changes(self, changes: Sequence[AlertChange]) -> list[AlertRecord]:
        """Apply changes in order; one record per applied change, as it stood after it."""
        ...

    def latest_alerts_by_key(self, run: str) -> dict[str, AlertRecord]:
        """The most recent alert of each key (firing or resolved)."""
        ...

    def alert_history(self, run: str, alert_id: int | None = None) -> list[AlertEvent]:
        """Every recorded change of the run's alerts (or of one alert), oldest first."""
        ...

    def list_alerts(
        self, run: str, *, after_seq: int = 0, status: str | None = None
    ) -> list[AlertRecord]: ...

    def alert_cursor(self, run: str) -> int: ...
