"""Storage backends behind one interface (:class:`Store`); SQLite is the embedded default."""

from .base import (
    AlertChange,
    AlertRecord,
    EmbeddingInfo,
    EmbeddingInput,
    EmbeddingRecord,
    RunNotFound,
    RunRecord,
    SeriesData,
    SeriesInfo,
    Store,
)
from .sqlite import SQLiteStore

__all__ = [
    "AlertChange",
    "AlertRecord",
    "EmbeddingInfo",
    "EmbeddingInput",
    "EmbeddingRecord",
    "RunNotFound",
    "RunRecord",
    "SQLiteStore",
    "SeriesData",
    "SeriesInfo",
    "Store",
]
