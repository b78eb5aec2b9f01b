"""Ingestion: the collector's batches (scalars and embeddings) for one run."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, HTTPException

from ..deps import MetricsDep, RunName, RuntimeDep, SettingsDep, StoreDep
from ..schemas import BatchIn, IngestOut, wire_values_to_array
from ..storage import EmbeddingInput
from ..views import alert_out

router = APIRouter(prefix="/api/v1/runs", tags=["ingest"])


@router.post(
    "/{run}/batches",
    response_model=IngestOut,
    summary="Ingest one batch of scalar points and embeddings",
    description=(
        "Stores the batch atomically and runs the detectors on it. The run is created if it "
        "does not exist. A batch whose `batch_id` was already stored for the run is not stored "
        "again (`duplicate: true`); a stored batch reaches the detectors exactly once, also "
        "when the server crashed before running them (they catch up on restart). The response "
        "carries the run's alerts changed since `alert_cursor`, each with its latest state: an "
        "alert that fired and resolved since then comes back resolved, with its firing step, "
        "message and evidence and `episodes` counting how often it fired."
    ),
)
def ingest_batch(
    run: RunName,
    batch: BatchIn,
    store: StoreDep,
    runtime: RuntimeDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> IngestOut:
    scalars = {}
    for name, series in batch.scalars.items():
        if len(series.steps) > settings.max_points_per_series:
            raise HTTPException(
                413,
                f"series {name!r} carries {len(series.steps)} points; at most "
                f"{settings.max_points_per_series} per batch are accepted: send smaller batches",
            )
        scalars[name] = (
            np.asarray(series.steps, dtype="int64"),
            wire_values_to_array(series.values),
        )
    embeddings = []
    for i, emb in enumerate(batch.embeddings):
        n, d = emb.shape
        if n > settings.max_embedding_rows or d > settings.max_embedding_dim:
            raise HTTPException(
                413,
                f"embeddings[{i}] has shape {[n, d]}; at most {settings.max_embedding_rows} rows "
                f"and {settings.max_embedding_dim} columns are accepted: subsample the batch",
            )
        embeddings.append(EmbeddingInput(step=emb.step, name=emb.name, data=emb.array()))
    seq = store.ingest_batch(run, batch.batch_id, scalars, embeddings)
    stored = seq is not None
    points = sum(len(s) for s, _ in scalars.values()) if stored else 0
    metrics.batches.labels("stored" if stored else "duplicate").inc()
    if seq is not None:
        metrics.points.inc(points)
        runtime.process(run, seq, scalars, embeddings)
    else:  # stored before, perhaps by a request that failed before its detectors ran
        runtime.catch_up(run)
    alerts = store.list_alerts(run, after_seq=batch.alert_cursor)
    return IngestOut(
        batch_id=batch.batch_id,
        duplicate=not stored,
        stored_points=points,
        stored_embeddings=len(embeddings) if stored else 0,
        alerts=[alert_out(a) for a in alerts],
        alert_cursor=max((a.seq for a in alerts), default=batch.alert_cursor),
    )
