"""The runs page (``/ui/``): every run, newest first, with its health, refreshed every 2 s."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dash
from dash import Input, Output, dcc, html

from .. import components

REFRESH_MS = 2000


def layout(**_query: Any) -> html.Div:
    return html.Div(
        [
            dcc.Interval(id="runs-tick", interval=REFRESH_MS),
            html.Div(
                [
                    html.H2("Runs"),
                    html.Div(html.Div("Loading…", className="st-empty"), id="runs-body"),
                ],
                className="st-card",
            ),
        ]
    )


def register() -> None:
    """Put the page in Dash's page registry (global to the process; idempotent)."""
    dash.register_page(__name__, path="/", name="Runs", title="Stethoscope", order=0, layout=layout)


def register_callbacks(app: dash.Dash, get_store: Callable[[], Any]) -> None:
    """Callbacks of this page, on ``app`` itself (not the global ``dash.callback`` list)."""

    @app.callback(
        Output("runs-body", "children"),
        Input("runs-tick", "n_intervals"),
        running=[(Output("runs-tick", "disabled"), True, False)],
    )
    async def refresh(_n: int | None) -> Any:
        return await components.in_thread(_table, get_store)


def _table(get_store: Callable[[], Any]) -> Any:
    store = get_store()
    if store is None:
        return components.store_missing()
    return components.runs_table(store.list_runs())
