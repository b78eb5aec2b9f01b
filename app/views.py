"""Store records as API response bodies."""

from __future__ import annotations

import base64
from dataclasses import asdict

import numpy as np

from .schemas import AlertOut, EmbeddingOut, HealthOut, RunOut
from .storage import AlertRecord, EmbeddingRecord, RunRecord


def run_out(record: RunRecord, pending_evaluations: int | None = None) -> RunOut:
    """The run as the API shows it; ``pending_evaluations`` is the live count, when known."""
    data = asdict(record)
    health = dict(record.health)
    if pending_evaluations is not None:
        health["pending_evaluations"] = pending_evaluations
    data["health"] = HealthOut(**health)
    return RunOut(**data)


def alert_out(record: AlertRecord) -> AlertOut:
    return AlertOut(**asdict(record))


def embedding_out(record: EmbeddingRecord) -> EmbeddingOut:
    data = np.ascontiguousarray(record.data, dtype="<f4")
    return EmbeddingOut(
        step=record.step,
        name=record.name,
        shape=(int(data.shape[0]), int(data.shape[1])),
        data=base64.b64encode(data.tobytes()).decode("ascii"),
    )
