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
    alert_id: int | None = None  # None creates a new alert


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
    ) -> bool:
        """Store one batch atomically; False (and nothing written) if ``batch_id`` was seen."""
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
    def save_detector_state(self, run: str, state: Mapping[str, Any]) -> None: ...

    def load_detector_state(self, run: str) -> dict[str, Any] | None: ...

    # alerts
    def apply_alert_changes(self, changes: Sequence[AlertChange]) -> list[AlertRecord]: ...

    def list_alerts(
        self, run: str, *, after_seq: int = 0, status: str | None = None
    ) -> list[AlertRecord]: ...

    def alert_cursor(self, run: str) -> int: ...
