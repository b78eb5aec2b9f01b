"""The server's app factory: FastAPI with a lifespan that owns store, detectors and alerts."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response

from .alerting import AlertManager
from .metrics import ServerMetrics
from .routes import alerts, ingest, runs
from .runtime import DetectorRuntime
from .settings import Settings
from .storage import SQLiteStore

log = logging.getLogger("stethoscope.app")

API_DESCRIPTION = """
Training-health monitoring: ingest a run's scalars, gradient norms and embeddings; read its
series (downsampled on request), embeddings, health and alerts.

Non-finite values travel as the strings `"NaN"`, `"Infinity"` and `"-Infinity"` in both
directions; embeddings as base64 of little-endian C-order arrays.
"""


def _field(loc: tuple[object, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "path", "query")]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "request"


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with one readable sentence per problem: which field, what is wrong, how to fix it."""
    errors = []
    for err in exc.errors():
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "json_invalid":
            position = next((p for p in err.get("loc", ()) if isinstance(p, int)), None)
            where = f" at character {position}" if position is not None else ""
            errors.append({
                "field": "body",
                "message": f"not valid JSON{where} ({err.get('ctx', {}).get('error', message)}); "
                "send a JSON object with content-type application/json",
            })
            continue
        errors.append({"field": _field(tuple(err.get("loc", ()))), "message": message})
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    if len(errors) > 5:
        summary += f"; and {len(errors) - 5} more"
    return JSONResponse(
        status_code=422,
        content={
            "detail": f"invalid request: {summary}. See /docs for the expected format.",
            "errors": errors,
        },
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the server: API under /api/v1, dashboard under /ui/, metrics at /metrics."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = SQLiteStore(settings.db_path)
        alert_manager = AlertManager(store, update_interval=settings.alert_update_interval,
                                     reopen_steps=settings.alert_reopen_steps)
        alert_manager.listeners.append(app.state.metrics.count_alert_change)
        runtime = DetectorRuntime(
            store, alert_manager, state_save_interval=settings.state_save_interval
        )
        app.state.store = store
        app.state.alerts = alert_manager
        app.state.runtime = runtime
        # batches stored but not yet seen by the detectors (a crash): replayed in the
        # background; a run's new batches wait for its replay (the run's lock)
        recovery = threading.Thread(target=runtime.recover, name="stethoscope-recovery",
                                    daemon=True)
        recovery.start()
        try:
            yield
        finally:
            runtime.close()  # stops a replay still running, then saves every run's state
            recovery.join(timeout=60)
            store.close()
            app.state.store = None

    app = FastAPI(
        title="Stethoscope",
        version="1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = None
    app.state.metrics = ServerMetrics(lambda: app.state.store)
    app.add_exception_handler(RequestValidationError, _validation_error)

    @app.middleware("http")
    async def limit_body_size(request: Request, call_next):  # type: ignore[no-untyped-def]
        """413 before reading a body that announces more than ``max_request_bytes``."""
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_request_bytes:
            return JSONResponse(
                status_code=413,
                content={
                    "detail": f"request body of {int(length)} bytes exceeds the server's limit "
                    f"of {settings.max_request_bytes} bytes; send smaller batches (or raise "
                    "STETHOSCOPE_MAX_REQUEST_BYTES)"
                },
            )
        return await call_next(request)
    app.include_router(ingest.router)
    app.include_router(runs.router)
    app.include_router(alerts.router)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        body, content_type = app.state.metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/healthz", tags=["server"], summary="Liveness check")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    if settings.ui:
        from .ui import mount_dashboard

        mount_dashboard(app)

        @app.get("/", include_in_schema=False)
        def root() -> RedirectResponse:
            return RedirectResponse("/ui/")

    return app
