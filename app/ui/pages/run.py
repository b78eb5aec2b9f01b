"""The run page (``/ui/run/<name>`` or ``/ui/run?name=...``): health, live charts, alerts.

The page's layout is only a skeleton; the first tick of its interval draws everything and the
following ticks append what is new (see :mod:`stethoscope.app.ui.live`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import dash
from dash import ALL, Input, Output, State, dcc, html

from .. import components, live

REFRESH_MS = 1500


def _name(name: str | None = None, **query: Any) -> str | None:
    raw = name if name else query.get("name")
    raw = unquote(str(raw)).strip("/") if raw else ""
    return raw or None


def title(name: str | None = None, **_: Any) -> str:
    run = _name(name)
    return f"{run} · Stethoscope" if run else "Stethoscope"


def layout(name: str | None = None, **query: Any) -> html.Div:
    run = _name(name, **query)
    if run is None:
        return components.message_card(
            "No run selected", "This page needs a run name: /ui/run/<name> or /ui/run?name=<name>."
        )
    return html.Div(
        [
            dcc.Store(id="run-state", data=live.initial_state(run)),
            dcc.Interval(id="run-tick", interval=REFRESH_MS),
            html.Div(
                html.Div("Loading…", className="st-muted"), id="run-header", className="st-card"
            ),
            html.Div(
                [
                    html.Div(
                        html.Div("Waiting for the first points…", className="st-empty st-card"),
                        id="run-charts",
                        className="st-grid",
                    ),
                    html.Div(id="run-alerts", className="st-card st-alerts"),
                ],
                className="st-runbody",
            ),
        ],
        **{"data-run": run},
    )


def register() -> None:
    """Put the page in Dash's page registry (global to the process; idempotent)."""
    dash.register_page(
        __name__,
        path="/run",
        path_template="/run/<name>",
        name="Run",
        title=title,
        order=1,
        layout=layout,
    )


def register_callbacks(app: dash.Dash, get_store: Callable[[], Any]) -> None:
    """The page's one live callback, on ``app`` itself."""

    @app.callback(
        Output("run-header", "children"),
        Output("run-charts", "children"),
        Output({"type": live.GRAPH_TYPE, "chart": ALL}, "figure"),
        Output("run-alerts", "children"),
        Output("run-state", "data"),
        Input("run-tick", "n_intervals"),
        State("run-state", "data"),
        State({"type": live.GRAPH_TYPE, "chart": ALL}, "id"),
        # no tick while one is being served: a slow first draw is never superseded by the next
        running=[(Output("run-tick", "disabled"), True, False)],
    )
    async def tick(
        _n: int | None, state: dict[str, Any] | None, graph_ids: list[dict[str, Any]]
    ) -> tuple:
        return await components.in_thread(_tick, get_store, state, graph_ids)


def _tick(
    get_store: Callable[[], Any], state: dict[str, Any] | None, graph_ids: list[dict[str, Any]]
) -> tuple:
    store = get_store()
    if store is None:
        nothing = [dash.no_update] * len(graph_ids)
        return components.store_missing(), dash.no_update, nothing, dash.no_update, dash.no_update
    up = live.refresh_run(store, state)
    return up.header, up.charts, up.figure_outputs(graph_ids), up.alerts, up.state
