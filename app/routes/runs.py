"""Runs: create/update, list with health, and read their series and embeddings."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query

from stethoscope.detectors import SuiteConfig

from ..deps import ExistingRun, RunName, RuntimeDep, StoreDep
from ..downsample import downsample_indices
from ..schemas import (
    EmbeddingInfoOut,
    EmbeddingOut,
    RunIn,
    RunOut,
    SeriesInfoOut,
    SeriesOut,
)
from ..storage import RunNotFound
from ..views import embedding_out, run_out

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])


@router.put(
    "/{run}",
    response_model=RunOut,
    summary="Create a run or update its config, status or detector configuration",
    description=(
        "Fields left out are kept. A new `detectors` configuration is validated (422 naming the "
        "bad key) and rebuilds the run's detectors; points stored before are not replayed."
    ),
)
def put_run(run: RunName, body: RunIn, store: StoreDep, runtime: RuntimeDep) -> RunOut:
    if body.detectors is not None:
        try:
            SuiteConfig.from_mapping(body.detectors)
        except (TypeError, ValueError) as exc:
            raise HTTPException(
                422, f"invalid request: detectors: {exc}. See docs/detectors.md, Configuration."
            ) from None
        try:
            previous = store.get_run(run).detectors
        except RunNotFound:
            previous = None
    record = store.upsert_run(
        run, config=body.config, status=body.status, detectors=body.detectors
    )
    if body.detectors is not None and body.detectors != previous:
        runtime.reconfigure(run)
        record = store.get_run(run)
    return run_out(record, runtime.pending(run))


@router.get("", response_model=list[RunOut], summary="Every run with its health, newest first")
def list_runs(store: StoreDep, runtime: RuntimeDep) -> list[RunOut]:
    return [run_out(r, runtime.pending(r.name)) for r in store.list_runs()]


@router.get("/{run}", response_model=RunOut, summary="One run with its health")
def get_run(run: ExistingRun, store: StoreDep, runtime: RuntimeDep) -> RunOut:
    return run_out(store.get_run(run), runtime.pending(run))


@router.get("/{run}/series", response_model=list[SeriesInfoOut], summary="The run's series")
def list_series(run: ExistingRun, store: StoreDep) -> list[SeriesInfoOut]:
    return [SeriesInfoOut(**vars(s)) for s in store.list_series(run)]


@router.get(
    "/{run}/series/{name:path}",
    response_model=SeriesOut,
    summary="Points of one series, optionally downsampled",
    description=(
        "With `max_points`, long series are reduced to per-bucket minima and maxima; non-finite "
        "points and the steps of the run's alerts are always kept."
    ),
)
def read_series(
    run: ExistingRun,
    name: Annotated[str, Path(description="Series name; may contain '/'.")],
    store: StoreDep,
    start: Annotated[int | None, Query(description="First step (inclusive).")] = None,
    end: Annotated[int | None, Query(description="Last step (inclusive).")] = None,
    max_points: Annotated[
        int | None, Query(ge=4, le=1_000_000, description="Downsample to about this many points.")
    ] = None,
) -> SeriesOut:
    if name not in {s.name for s in store.list_series(run)}:
        raise HTTPException(
            404, f"run {run!r} has no series {name!r}; list them with GET /api/v1/runs/{run}/series"
        )
    data = store.read_series(run, name, start=start, end=end)
    steps, values = data.steps, data.values
    downsampled = False
    if max_points is not None and len(steps) > max_points:
        alerts = store.list_alerts(run)
        alert_steps = {a.step for a in alerts} | {a.first_step for a in alerts} | {
            a.resolved_step for a in alerts if a.resolved_step is not None}
        idx = downsample_indices(steps, values, max_points, alert_steps)
        steps, values = steps[idx], values[idx]
        downsampled = True
    return SeriesOut(
        name=name,
        steps=steps.tolist(),
        values=values.tolist(),
        total_points=len(data.steps),
        downsampled=downsampled,
    )


@router.get(
    "/{run}/embeddings",
    response_model=list[EmbeddingInfoOut],
    summary="The run's stored embedding batches (without data)",
)
def list_embeddings(run: ExistingRun, store: StoreDep) -> list[EmbeddingInfoOut]:
    return [EmbeddingInfoOut(**vars(e)) for e in store.list_embeddings(run)]


@router.get(
    "/{run}/embeddings/{step}",
    response_model=list[EmbeddingOut],
    summary="Embedding batches at one step (`latest` for the newest)",
)
def read_embeddings(
    run: ExistingRun,
    step: Annotated[int | Literal["latest"], Path(description="A step, or 'latest'.")],
    store: StoreDep,
) -> list[EmbeddingOut]:
    records = store.read_embeddings(run, None if step == "latest" else int(step))
    if not records:
        raise HTTPException(
            404,
            f"run {run!r} has no embeddings at step {step}; list them with "
            f"GET /api/v1/runs/{run}/embeddings",
        )
    return [embedding_out(r) for r in records]
