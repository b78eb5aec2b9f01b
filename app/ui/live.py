"""The run page's live logic: what to draw first, and what to append on each tick.

:func:`refresh_run` is called on every interval tick with the client's state (a JSON dict kept
in a ``dcc.Store``) and returns the page's outputs. It never rebuilds a drawn figure on a tick:

- a chart not on the page yet is built whole (series downsampled server-side to
  :data:`MAX_POINTS` points per trace, keeping NaN/Inf, spikes and alert steps);
- a chart already drawn receives a :class:`dash.Patch` that extends its traces with the points
  after the last step drawn of each series (``read_series(start=cursor + 1)``), adds traces for
  series that just appeared, and marks new alerts;
- new charts are inserted into the chart grid with a ``Patch`` at their place in the page order;
- points that arrive late, with a step at or below the last one drawn (a collector's spool
  replayed after an outage, several writers to one run), are never read past the cursor: the
  state keeps each series' stored point count as last accounted for, and a chart whose series'
  count (from the one ``list_series`` query of the tick) grew by more than the points read past
  the cursor is redrawn once, downsampled as on its first draw, instead of patched;
- the embedding cloud is patched with the latest step's points when a new step arrives.

A chart that has grown past :data:`REDRAW_FACTOR` times its first-draw budget through appends is
redrawn once, downsampled again, so a browser tab left open on a long run stays responsive.
Everything here is plain Python on a :class:`~stethoscope.app.storage.Store`; the Dash callback
is a thin shell around it, which keeps this testable without a browser.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from dash import Patch, dcc, no_update

from ..downsample import downsample_indices
from ..storage import RunNotFound
from . import components, figures
from .data import chart_sort_key, classify_series, group_series, project_2d

MAX_POINTS = 2000
REDRAW_FACTOR = 5
GRAPH_TYPE = "st-graph"

GRAPH_CONFIG = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["lasso2d", "select2d"],
}


def initial_state(run: str) -> dict[str, Any]:
    """The client-side state of a run page before its first tick."""
    return {
        "run": run,
        "found": False,
        "cursors": {},  # series name -> last step drawn
        "stored": {},  # series name -> stored point count accounted for by the drawing
        "charts": {},  # chart id -> {"traces": [series names], "points": int}
        "order": [],  # chart ids in page order
        "alert_seq": -1,
        "alert_ids": [],  # ids of the alerts marked on the charts, in drawing order
        "alert_sigs": {},  # alert id -> AlertMark.signature as drawn
        "emb_step": None,
    }


@dataclass
class RunUpdate:
    """The outputs of one tick. ``figures`` maps chart ids to a figure (dict) or a Patch."""

    header: Any = no_update
    charts: Any = no_update  # full children list, a Patch inserting new charts, or no_update
    figures: dict[str, Any] = field(default_factory=dict)
    alerts: Any = no_update
    state: dict[str, Any] = field(default_factory=dict)

    def figure_outputs(self, graph_ids: Sequence[Mapping[str, Any]]) -> list[Any]:
        """One output per graph on the page, in the order Dash lists them."""
        return [self.figures.get(g["chart"], no_update) for g in graph_ids]


def graph(chart: str, figure: Mapping[str, Any]) -> dcc.Graph:
    return dcc.Graph(
        id={"type": GRAPH_TYPE, "chart": chart},
        figure=figure,
        config=GRAPH_CONFIG,
        className="st-graph",
    )


def _read(
    store: Any, run: str, name: str, start: int | None, keep: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, int | None, int]:
    """Points of one series from ``start`` on, downsampled to :data:`MAX_POINTS`, the last step
    read (the cursor: downsampling may drop the very last point from the drawing) and the number
    of stored points read (before downsampling)."""
    data = store.read_series(run, name, start=start)
    steps, values = data.steps, data.values
    last = int(steps[-1]) if len(steps) else None
    read = len(steps)
    if len(steps) > MAX_POINTS:
        idx = downsample_indices(steps, values, MAX_POINTS, keep)
        steps, values = steps[idx], values[idx]
    return steps, values, last, read


def _labels(names: Sequence[str]) -> dict[str, str]:
    return {n: classify_series(n).label for n in names}


def _build_chart(
    store: Any,
    run: str,
    names: Sequence[str],
    marks: Sequence[figures.AlertMark],
    keep: Sequence[int],
    cursors: dict[str, int],
    stored: dict[str, int],
    counts: Mapping[str, int],
) -> tuple[dict[str, Any], int]:
    """A whole chart of ``names``; updates ``cursors`` and ``stored`` (the larger of the point
    count listed this tick, ``counts``, and the points actually read); returns the figure and
    its point count."""
    data = {}
    for n in names:
        s, v, last, read = _read(store, run, n, None, keep)
        data[n] = (s, v)
        stored[n] = max(counts.get(n, 0), read)
        if last is not None:
            cursors[n] = last
    slot = classify_series(names[0])
    fig = figures.series_figure(slot.title, data, _labels(names), log_y=slot.log_y, alerts=marks)
    return fig, sum(len(s) for s, _ in data.values())


def refresh_run(store: Any, state: Mapping[str, Any] | None, run: str | None = None) -> RunUpdate:
    """Compute one tick of the run page (the first tick draws everything there is)."""
    state = dict(state or initial_state(run or ""))
    run = state.get("run") or run
    up = RunUpdate(state=state)
    if not run:
        up.header = components.message_card("No run selected", "Open a run from the list of runs.")
        return up
    try:
        record = store.get_run(run)
    except RunNotFound:
        up.header = components.message_card(
            f"Run {run!r} not found",
            "No run of this name is in the store (yet). This page keeps checking and draws the "
            "run as soon as it receives data.",
            error=True,
        )
        state["found"] = False
        return up
    state["found"] = True
    up.header = components.run_header(record)

    cursors: dict[str, int] = dict(state.get("cursors") or {})
    stored: dict[str, int] = dict(state.get("stored") or {})
    charts: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (state.get("charts") or {}).items()}
    order: list[str] = list(state.get("order") or [])
    alert_ids: list[int] = list(state.get("alert_ids") or [])
    sigs: dict[str, str] = dict(state.get("alert_sigs") or {})

    # alerts: refetched only when the run's alert cursor moved. Every chart draws them in order
    # of id, so an alert's rank in ``alert_ids`` addresses its shapes and marker in any chart.
    new_marks: list[figures.AlertMark] = []
    updated: list[tuple[int, figures.AlertMark]] = []
    all_marks: list[figures.AlertMark] | None = None
    seq = store.alert_cursor(run)
    if seq != state.get("alert_seq"):
        alerts = store.list_alerts(run)
        up.alerts = components.alerts_panel(alerts)
        all_marks = sorted((figures.alert_mark(a) for a in alerts), key=lambda m: m.id)
        for m in all_marks:
            if m.id not in alert_ids:
                alert_ids.append(m.id)
                new_marks.append(m)
            elif sigs.get(str(m.id)) != m.signature:
                updated.append((alert_ids.index(m.id), m))
            sigs[str(m.id)] = m.signature
        state["alert_seq"] = seq
    keep = sorted({s for m in all_marks or () for s in (m.first_step, m.step)})

    # series: read only what is newer than the last drawn step of each; a series whose stored
    # count grew by more than that got late points (steps already passed): redraw its chart
    infos = store.list_series(run)
    groups = group_series(i.name for i in infos)
    last = {i.name: i.last_step for i in infos}
    counts = {i.name: i.points for i in infos}
    new_charts: list[str] = []
    for chart, names in groups.items():
        slot = classify_series(names[0])
        info = charts.get(chart)
        redraw = info is not None and info["points"] > REDRAW_FACTOR * MAX_POINTS * max(
            1, len(info["traces"])
        )
        new_points: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        new_cursors: dict[str, int] = {}
        new_stored: dict[str, int] = {}
        if info is not None and not redraw:
            for n in names:
                cur = cursors.get(n)
                before = stored.get(n)
                if before is None and cur is not None:
                    before = counts[n]  # state from before counts were kept: take them as is
                grown = counts[n] - (before or 0)
                if last.get(n) is None or (cur is not None and last[n] <= cur):
                    if grown > 0:  # stored points, none past the cursor: late ones
                        redraw = True
                        break
                    continue
                s, v, last_read, read = _read(store, run, n, None if cur is None else cur + 1, keep)
                if read < grown:  # more points stored than read past the cursor: late ones
                    redraw = True
                    break
                # points stored after list_series may have been read too: count them as well
                new_stored[n] = max(counts[n], (before or 0) + read)
                if last_read is not None:
                    new_points[n] = (s, v)
                    new_cursors[n] = last_read
        if info is None or redraw:
            if all_marks is None:
                all_marks = sorted(
                    (figures.alert_mark(a) for a in store.list_alerts(run)), key=lambda m: m.id
                )
            keep = sorted({s for m in all_marks for s in (m.first_step, m.step)})
            fig, points = _build_chart(store, run, names, all_marks, keep, cursors, stored, counts)
            up.figures[chart] = fig
            charts[chart] = {"traces": list(names), "points": points}
            if info is None:
                new_charts.append(chart)
            continue
        cursors.update(new_cursors)
        stored.update(new_stored)
        patch, traces = figures.series_patch(
            info["traces"],
            new_points,
            _labels(names),
            log_y=slot.log_y,
            alerts=new_marks,
            updated=updated,
        )
        if patch is not None:
            up.figures[chart] = patch
            info["traces"] = traces
            info["points"] += sum(len(s) for s, _ in new_points.values())
            charts[chart] = info

    # embeddings: a new step replaces the cloud
    emb = _embedding_update(store, run, state.get("emb_step"), "embeddings" in charts)
    if emb is not None:
        step, fig_or_patch = emb
        up.figures["embeddings"] = fig_or_patch
        state["emb_step"] = step
        if "embeddings" not in charts:
            charts["embeddings"] = {"traces": ["real", "fake"], "points": 0}
            new_charts.append("embeddings")

    # chart grid: built whole on the first draw, new charts inserted in page order afterwards
    if new_charts:
        final = sorted(set(order) | set(new_charts), key=chart_sort_key)
        if not order:
            up.charts = [graph(c, up.figures.pop(c)) for c in final]
        else:
            patch = Patch()
            for c in sorted(new_charts, key=final.index):
                patch.insert(final.index(c), graph(c, up.figures.pop(c)))
            up.charts = patch
        order = final

    state.update(
        cursors=cursors,
        stored=stored,
        charts=charts,
        order=order,
        alert_ids=alert_ids,
        alert_sigs=sigs,
    )
    return up


def _embedding_update(
    store: Any, run: str, drawn_step: int | None, on_page: bool
) -> tuple[int, Any] | None:
    infos = store.list_embeddings(run)
    if not infos:
        return None
    latest = max(i.step for i in infos)
    if latest == drawn_step and on_page:
        return None
    recs = store.read_embeddings(run, latest)
    by_name = {r.name: r.data for r in recs}
    fake, real = by_name.get("fake"), by_name.get("real")
    if fake is None and real is None and recs:  # unknown names: draw the first batch as "fake"
        fake = recs[0].data
    try:
        proj = project_2d(fake, real)
    except ValueError:
        return None
    counts = (0 if fake is None else len(fake), 0 if real is None else len(real))
    if on_page:
        return latest, figures.embedding_patch(latest, proj, counts)
    return latest, figures.embedding_figure(latest, proj, counts)
