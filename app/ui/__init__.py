"""The live dashboard: Dash 4 pages served by the server's own FastAPI app under ``/ui/``.

``mount_dashboard(fastapi_app)`` is the one entry point. The dashboard reads the store in-process
(``fastapi_app.state.store``, looked up at callback time, since the app's lifespan creates it) and
keeps no state of its own between requests: each browser tab holds its drawing state in a
``dcc.Store``. Every asset (Dash, React, plotly.js, the stylesheet) is served from this process;
nothing is fetched from a CDN.
"""

from __future__ import annotations

import inspect
from typing import Any

import dash
from dash import _get_app, html
from dash.backends._fastapi import reset_current_request, set_current_request
from fastapi import FastAPI, Request, Response

from . import theme
from .components import URL_BASE
from .pages import run as run_page
from .pages import runs as runs_page

__all__ = ["URL_BASE", "mount_dashboard"]


def _shell() -> html.Div:
    return html.Div(
        [
            html.Div(
                [
                    html.A([html.Span("●"), "Stethoscope"], href=URL_BASE, className="st-brand"),
                    html.Div(
                        [html.A("Runs", href=URL_BASE), html.A("API", href="/docs")],
                        className="st-nav",
                    ),
                ],
                className="st-topbar",
            ),
            html.Div(dash.page_container, className="st-main"),
        ]
    )


def mount_dashboard(fastapi_app: FastAPI) -> dash.Dash:
    """Serve the dashboard at ``/ui/`` on ``fastapi_app`` and return the Dash app.

    Call it once per FastAPI app, before the app starts (it adds a middleware). Several apps may
    each get their own dashboard in one process: callbacks are registered on each Dash app, not
    in Dash's global callback list, and the page registry (global in Dash) only holds layout
    functions that depend on nothing but their arguments.
    """
    dash_app = dash.Dash(
        __name__,
        server=fastapi_app,
        url_base_pathname=URL_BASE,
        use_pages=True,
        pages_folder="",
        title="Stethoscope",
        update_title=None,
        suppress_callback_exceptions=True,
        serve_locally=True,
        include_assets_files=False,
        index_string=theme.INDEX_STRING,
    )
    # Dash registers its pages catch-all at startup on whichever Dash app was created last in
    # the process (dash.get_app()), and as a bare "{path:path}" route that would also answer
    # unknown API paths with the dashboard's HTML. Ours is explicit and bound to this app.
    dash_app.backend._setup_catchall = lambda: None  # noqa: SLF001
    _add_page_route(fastapi_app, dash_app)

    runs_page.register()
    run_page.register()
    dash_app.layout = _shell

    def get_store() -> Any:
        return getattr(fastapi_app.state, "store", None)

    runs_page.register_callbacks(dash_app, get_store)
    run_page.register_callbacks(dash_app, get_store)
    fastapi_app.state.dash_app = dash_app
    return dash_app


def _add_page_route(fastapi_app: FastAPI, dash_app: dash.Dash) -> None:
    prefix = dash_app.config.routes_pathname_prefix

    async def page(request: Request, path: str) -> Response:
        if path.startswith(("_dash-", "assets/", "_reload-hash")):
            return Response(status_code=404)
        token = set_current_request(request)
        _get_app.app_context.set(dash_app)
        try:
            # Dash's own hooks, as its middleware runs them for /ui/ itself: set up scripts and,
            # on the very first request, the pages router whose clientside callback must be
            # inlined in this very page
            for hook in dash_app.backend._before_request_funcs:  # noqa: SLF001
                result = hook()
                if inspect.isawaitable(result):
                    await result
            return Response(content=dash_app.index(), media_type="text/html")
        finally:
            reset_current_request(token)

    fastapi_app.add_api_route(
        prefix + "{path:path}", page, methods=["GET"], include_in_schema=False
    )
