"""Alerts of a run."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from ..deps import ExistingRun, StoreDep
from ..schemas import AlertEventOut, AlertOut
from ..views import alert_out

router = APIRouter(prefix="/api/v1/runs", tags=["alerts"])


@router.get(
    "/{run}/alerts",
    response_model=list[AlertOut],
    summary="The run's alerts, oldest change first",
)
def list_alerts(
    run: ExistingRun,
    store: StoreDep,
    status: Annotated[Literal["firing", "resolved"] | None, Query()] = None,
    after_seq: Annotated[int, Query(ge=0, description="Only alerts changed after this seq.")] = 0,
) -> list[AlertOut]:
    return [alert_out(a) for a in store.list_alerts(run, after_seq=after_seq, status=status)]


@router.get(
    "/{run}/alerts/history",
    response_model=list[AlertEventOut],
    summary="Every change of the run's alerts, oldest first",
    description="Fired, updated, escalated, resolved and reopened events with the step, "
    "message and evidence of each; `alert_id` narrows it to one alert.",
)
def alert_history(
    run: ExistingRun,
    store: StoreDep,
    alert_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> list[AlertEventOut]:
    return [AlertEventOut(**vars(e)) for e in store.alert_history(run, alert_id)]
