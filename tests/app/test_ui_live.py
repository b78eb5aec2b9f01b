"""The run page's tick logic on a real SQLite store, and mounting the dashboard on several apps."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dash import Patch, no_update
from fastapi import FastAPI
from fastapi.testclient import TestClient

from stethoscope.app.storage import AlertChange, EmbeddingInput, SQLiteStore
from stethoscope.app.ui import figures, live, mount_dashboard

RUN = "gan:1"


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = SQLiteStore(tmp_path / "x.db")
    yield s
    s.close()


def _steps(a: int, b: int, step: int = 1) -> np.ndarray:
    return np.arange(a, b, step, dtype=np.int64)


def _alert(step: int, kind: str = "divergence", severity: str = "critical") -> AlertChange:
    return AlertChange(
        run=RUN, kind=kind, key=f"{kind}/x", severity=severity, status="firing", step=step,
        message=f"{kind} at {step}", evidence={"z": 11.0}, remedies=[], detector="d", subject=None,
    )  # fmt: skip


def _ops(patch: Any) -> list[dict[str, Any]]:
    assert isinstance(patch, Patch), patch
    return patch.to_plotly_json()["operations"]


def test_first_tick_draws_then_ticks_only_append(store: SQLiteStore) -> None:
    s = _steps(0, 100)
    loss = np.linspace(2, 1, 100)
    loss[50] = np.nan
    store.ingest_batch(
        RUN,
        "b1",
        {
            "loss_D": (s, loss),
            "grad_norm/G/total": (s, np.ones(100)),
            "grad_norm/G/w": (s, np.ones(100)),
        },
        [
            EmbeddingInput(80, "fake", np.zeros((10, 3))),
            EmbeddingInput(80, "real", np.ones((12, 3))),
        ],
    )
    store.apply_alert_changes([_alert(50)])

    first = live.refresh_run(store, live.initial_state(RUN))
    assert isinstance(first.charts, list)
    charts = [g.id["chart"] for g in first.charts]
    assert charts == ["losses", "grad_total", "embeddings", "grad_layers:G"]
    losses = first.charts[0].figure
    assert losses["data"][figures.NONFINITE_TRACE]["x"] == [50]
    assert losses["data"][figures.ALERT_TRACE]["x"] == [50]
    assert first.state["cursors"] == {"loss_D": 99, "grad_norm/G/total": 99, "grad_norm/G/w": 99}
    assert first.state["emb_step"] == 80 and first.alerts is not no_update
    graph_ids = [{"type": live.GRAPH_TYPE, "chart": c} for c in charts]

    # nothing new: nothing sent but the header
    idle = live.refresh_run(store, first.state)
    assert idle.charts is no_update and idle.figures == {} and idle.alerts is no_update
    assert idle.figure_outputs(graph_ids) == [no_update] * 4

    # new points, a new series, a new chart kind, a new alert and a new embedding step
    s2 = _steps(100, 110)
    store.ingest_batch(
        RUN,
        "b2",
        {
            "loss_D": (s2, np.full(10, np.inf)),
            "loss_G": (s2, np.ones(10)),
            "gt/modes": (s2, np.ones(10)),
        },
        [
            EmbeddingInput(100, "fake", np.zeros((10, 3))),
            EmbeddingInput(100, "real", np.ones((12, 3))),
        ],
    )
    store.apply_alert_changes([_alert(105, "mode_collapse", "warning")])
    up = live.refresh_run(store, first.state)
    ops = _ops(up.figures["losses"])
    assert {
        "location": ["data", 3, "x"],
        "operation": "Extend",
        "params": {"value": s2.tolist()},
    } in ops
    assert [
        o["params"]["value"]["name"]
        for o in ops
        if o["operation"] == "Append" and o["location"] == ["data"]
    ] == ["loss_G"]
    nonfinite_x = [o for o in ops if o["location"] == ["data", 0, "x"]]
    assert nonfinite_x[0]["params"]["value"] == s2.tolist()
    assert any(
        o["location"] == ["layout", "shapes"] and o["params"]["value"][0]["x0"] == 105 for o in ops
    )
    # the alert is marked on every chart already drawn, even one without new points
    assert "grad_total" in up.figures and any(
        o["location"] == ["layout", "shapes"] for o in _ops(up.figures["grad_total"])
    )
    # the new "gt" chart is inserted at its place, drawn whole; the cloud is patched
    inserts = _ops(up.charts)
    assert [(o["operation"], o["params"]["index"]) for o in inserts] == [("Insert", 3)]
    gt = inserts[0]["params"]["value"]
    assert gt.id == {"type": live.GRAPH_TYPE, "chart": "gt"}
    assert gt.figure["data"][figures.ALERT_TRACE]["x"] == [50, 105]
    assert isinstance(up.figures["embeddings"], Patch)
    assert up.state["order"] == ["losses", "grad_total", "embeddings", "gt", "grad_layers:G"]
    assert up.state["cursors"]["loss_D"] == 109 and up.state["emb_step"] == 100
    assert up.alerts is not no_update
    # one output per graph on the page, in its order (each got at least the new alert's mark)
    outs = up.figure_outputs(graph_ids)
    assert len(outs) == 4 and all(isinstance(o, Patch) for o in outs)

    # a second tick from the new state sends nothing again
    again = live.refresh_run(store, json.loads(json.dumps(up.state)))
    assert again.figures == {} and again.charts is no_update

    # the first alert resolves later: its band is redrawn in place on every chart
    first_alert = store.list_alerts(RUN)[0]
    store.apply_alert_changes(
        [
            AlertChange(
                run=RUN,
                kind="divergence",
                key="divergence/x",
                severity="critical",
                status="resolved",
                step=108,
                message="recovered",
                evidence={},
                remedies=[],
                detector="d",
                subject=None,
                alert_id=first_alert.id,
            )  # fmt: skip
        ]
    )
    resolved = live.refresh_run(store, again.state)
    assert set(resolved.figures) == {"losses", "grad_total", "gt", "grad_layers:G"}
    for patch in resolved.figures.values():
        ops = {tuple(o["location"]): o["params"]["value"] for o in _ops(patch)}
        assert ops[("layout", "shapes", 1)]["x1"] == 108  # rank 0: the first alert's band
        assert "resolved" in ops[("data", 1, "hovertext", 0)]
    assert resolved.state["alert_ids"] == again.state["alert_ids"]


def test_long_series_are_downsampled_keeping_nan_and_alert_steps(store: SQLiteStore) -> None:
    n = 50_000
    s = _steps(0, n)
    v = np.sin(s / 500.0)
    v[12_345] = np.nan
    v[40_000] = 50.0  # a one-step spike
    store.ingest_batch(RUN, "b", {"loss": (s, v)}, [])
    store.apply_alert_changes([_alert(33_333)])
    up = live.refresh_run(store, live.initial_state(RUN))
    fig = up.charts[0].figure
    line = fig["data"][figures.SPECIAL_TRACES]
    assert len(line["x"]) <= live.MAX_POINTS + 10
    assert 12_345 in fig["data"][figures.NONFINITE_TRACE]["x"]
    assert 33_333 in line["x"] and 40_000 in line["x"]
    assert up.state["cursors"]["loss"] == n - 1


def test_chart_grown_far_past_its_budget_is_redrawn_once(store: SQLiteStore) -> None:
    store.ingest_batch(RUN, "b0", {"loss": (_steps(0, 10), np.ones(10))}, [])
    state = live.refresh_run(store, None, RUN).state
    state["charts"]["losses"]["points"] = live.REDRAW_FACTOR * live.MAX_POINTS + 1
    store.ingest_batch(RUN, "b1", {"loss": (_steps(10, 20), np.ones(10))}, [])
    up = live.refresh_run(store, state)
    assert (
        isinstance(up.figures["losses"], dict) and len(up.figures["losses"]["data"][3]["x"]) == 20
    )
    assert up.state["charts"]["losses"]["points"] == 20


def test_late_points_below_the_cursor_redraw_the_chart_once(store: SQLiteStore) -> None:
    store.ingest_batch(
        RUN,
        "b0",
        {"loss_D": (_steps(0, 100, 2), np.ones(50)), "loss_G": (_steps(0, 10), np.ones(10))},
        [],
    )
    first = live.refresh_run(store, live.initial_state(RUN))
    assert first.state["cursors"]["loss_D"] == 98 and first.state["stored"]["loss_D"] == 50

    # an ordinary tick: points past the cursor only, sent as a patch
    store.ingest_batch(RUN, "b1", {"loss_D": (_steps(100, 110), np.ones(10))}, [])
    up = live.refresh_run(store, json.loads(json.dumps(first.state)))
    assert [(o["location"], o["params"]["value"]) for o in _ops(up.figures["losses"])] == [
        (["data", 3, "x"], _steps(100, 110).tolist()),
        (["data", 3, "y"], [1.0] * 10),
    ]
    assert up.state["stored"]["loss_D"] == 60

    # a replayed spool: odd steps below the cursor, one at the cursor, plus new points past it
    late = np.concatenate([_steps(1, 100, 2), [109], _steps(110, 115)])
    store.ingest_batch(RUN, "late", {"loss_D": (late, np.full(len(late), 0.5))}, [])
    redrawn = live.refresh_run(store, up.state)
    fig = redrawn.figures["losses"]
    assert isinstance(fig, dict) and redrawn.charts is no_update
    loss_d = fig["data"][figures.SPECIAL_TRACES]
    assert loss_d["x"][:4] == [0, 1, 2, 3] and len(loss_d["x"]) == 116
    assert len(fig["data"][figures.SPECIAL_TRACES + 1]["x"]) == 10  # loss_G redrawn whole too
    assert redrawn.state["cursors"]["loss_D"] == 114 and redrawn.state["stored"]["loss_D"] == 116
    assert redrawn.state["charts"]["losses"]["points"] == 126

    # once redrawn, ticks go back to patches; a late point on a series with nothing new past
    # its cursor is caught as well
    assert live.refresh_run(store, redrawn.state).figures == {}
    store.ingest_batch(RUN, "late2", {"loss_G": (_steps(3, 4), np.zeros(1))}, [])
    again = live.refresh_run(store, redrawn.state)
    assert isinstance(again.figures["losses"], dict)
    assert len(again.figures["losses"]["data"][figures.SPECIAL_TRACES + 1]["x"]) == 11
    store.ingest_batch(RUN, "b2", {"loss_G": (_steps(10, 12), np.ones(2))}, [])
    assert isinstance(live.refresh_run(store, again.state).figures["losses"], Patch)


def test_missing_run_says_so_and_is_drawn_once_it_exists(store: SQLiteStore) -> None:
    up = live.refresh_run(store, live.initial_state("later"))
    assert up.state["found"] is False and "not found" in json.dumps(
        up.header.to_plotly_json(), default=str
    )
    assert up.charts is no_update
    store.ingest_batch("later", "b", {"loss": (_steps(0, 5), np.ones(5))}, [])
    up = live.refresh_run(store, up.state)
    assert up.state["found"] is True and isinstance(up.charts, list)
    assert "No run selected" in str(
        live.refresh_run(store, live.initial_state("")).header.to_plotly_json()
    )


# ---------------------------------------------------------------------- mounting


def _app(db: Path) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.store = SQLiteStore(db)
        yield
        app.state.store.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/api/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    mount_dashboard(app)
    return app


def _runs_callback(client: TestClient) -> dict[str, Any]:
    """Call the runs page's callback the way the browser does."""
    body = {
        "output": "runs-body.children",
        "outputs": {"id": "runs-body", "property": "children"},
        "inputs": [{"id": "runs-tick", "property": "n_intervals", "value": 1}],
        "changedPropIds": ["runs-tick.n_intervals"],
        "state": [],
    }
    r = client.post("/ui/_dash-update-component", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_two_apps_in_one_process_each_serve_their_own_store(tmp_path: Path) -> None:
    apps = [_app(tmp_path / "a.db"), _app(tmp_path / "b.db")]
    with TestClient(apps[0]) as c0, TestClient(apps[1]) as c1:
        apps[0].state.store.upsert_run("run-of-app-0")
        apps[1].state.store.upsert_run("run-of-app-1")
        for i, c in enumerate((c0, c1)):
            for path in ("/ui/", "/ui/run/run-of-app-0", "/ui/run?name=x", "/ui/run/a/b:c"):
                r = c.get(path)
                assert r.status_code == 200 and "Stethoscope" in r.text, path
                assert "cdn." not in r.text and "https://" not in r.text.split("<footer>")[0]
            assert c.get("/api/ping").json() == {"pong": "yes"}
            assert c.get("/api/nothing-here").status_code == 404  # no catch-all over the API
            assert c.get("/ui").status_code == 200  # redirected to /ui/
            deps = c.get("/ui/_dash-dependencies").json()
            outputs = " ".join(d["output"] for d in deps)
            assert "runs-body.children" in outputs and "run-state.data" in outputs
            text = json.dumps(_runs_callback(c))
            assert f"run-of-app-{i}" in text and f"run-of-app-{1 - i}" not in text


def test_first_page_served_is_a_deep_link(tmp_path: Path) -> None:
    """A fresh server whose first request is /ui/run/<name> inlines every clientside callback
    the page's dependencies name (the pages router registers one on the first request)."""
    app = _app(tmp_path / "c.db")
    with TestClient(app) as client:
        html_text = client.get("/ui/run/some-run").text
        deps = client.get("/ui/_dash-dependencies").json()
        functions = [
            d["clientside_function"]["function_name"] for d in deps if d.get("clientside_function")
        ]
        assert functions and all(f in html_text for f in functions)
