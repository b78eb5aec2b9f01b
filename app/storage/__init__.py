"""Storage backends behind one interface (:class:`Store`); SQLite is the embedded default."""

from .base import (
    ALERT_EVENTS,
    AlertChange,
    AlertEvent,
    AlertRecord,
    DetectorCursors,
    EmbeddingInfo,
    EmbeddingInput,
    EmbeddingRecord,
    RunNotFound,
    RunRecord,
    SeriesData,
    SeriesInfo,
    Store,
    StoredBatch,
)
from .sqlite import SQLiteStore

__all__ = [
    "ALERT_EVENTS",
    "AlertChange",
    "AlertEvent",
    "AlertRecord",
    "DetectorCursors",
    "EmbeddingInfo",
    "EmbeddingInput",
    "EmbeddingRecord",
    "RunNotFound",
    "RunRecord",
    "SQLiteStore",
    "SeriesData",
    "SeriesInfo",
    "Store",
    "StoredBatch",
]
