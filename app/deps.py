"""Request dependencies: the lifespan-owned objects, injected with ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request

from .alerting import AlertManager
from .metrics import ServerMetrics
from .runtime import DetectorRuntime
from .schemas import RUN_NAME_PATTERN
from .settings import Settings
from .storage import RunNotFound, Store


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_runtime(request: Request) -> DetectorRuntime:
    return request.app.state.runtime


def get_alerts(request: Request) -> AlertManager:
    return request.app.state.alerts


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_metrics(request: Request) -> ServerMetrics:
    return request.app.state.metrics


def existing_run(
    run: Annotated[str, Path(pattern=RUN_NAME_PATTERN, description="The run's name.")],
    store: Annotated[Store, Depends(get_store)],
) -> str:
    """The path's run name, or 404 with a hint when no such run is stored."""
    try:
        store.get_run(run)
    except RunNotFound:
        raise HTTPException(
            404,
            f"run {run!r} not found; list the runs with GET /api/v1/runs "
            "(a run is created by PUT /api/v1/runs/{run} or its first batch)",
        ) from None
    return run


StoreDep = Annotated[Store, Depends(get_store)]
RuntimeDep = Annotated[DetectorRuntime, Depends(get_runtime)]
AlertsDep = Annotated[AlertManager, Depends(get_alerts)]
MetricsDep = Annotated[ServerMetrics, Depends(get_metrics)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RunName = Annotated[str, Path(pattern=RUN_NAME_PATTERN, description="The run's name.")]
ExistingRun = Annotated[str, Depends(existing_run)]
