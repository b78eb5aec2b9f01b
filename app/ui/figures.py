"""Plotly figures of the run page, as plain JSON-ready dicts, and the patches that extend them.

Every time-series chart has the same trace layout, so live updates can address traces by index:

- ``data[0]`` non-finite markers (NaN: x, +Inf: triangle-up, -Inf: triangle-down), drawn near the
  top of the plot on a hidden second y axis fixed to [0, 1], so they are visible whatever the
  data's range (and on log axes, where NaN has no place);
- ``data[1]`` alert markers (a triangle at the very top, hover text with the alert), each with a
  dotted vertical line in ``layout.shapes`` at the alert's step;
- ``data[2]`` non-positive values of a log-scaled chart (a zero gradient norm is a finding too),
  near the bottom;
- ``data[3:]`` one line per series, in the order kept by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from dash import Patch

from . import theme
from .data import (
    Projection,
    nonfinite_points,
    shown_by_default,
    subsample_rows,
    to_json_values,
)

SPECIAL_TRACES = 3
NONFINITE_TRACE, ALERT_TRACE, NONPOSITIVE_TRACE = 0, 1, 2
NONFINITE_Y, ALERT_Y, NONPOSITIVE_Y = 0.93, 1.0, 0.04
_NONFINITE_SYMBOLS = {"NaN": "x", "+Inf": "triangle-up", "-Inf": "triangle-down"}


@dataclass(frozen=True)
class AlertMark:
    """One alert as marked on the time-series charts: a triangle and a dotted line where it
    first fired, and a light band over the steps it has covered since (``first_step..step``)."""

    id: int
    first_step: int
    step: int
    severity: str
    status: str
    text: str

    @property
    def signature(self) -> str:
        """Changes whenever the drawing of the alert must change."""
        return f"{self.step}|{self.severity}|{self.status}"


def alert_span(alert: Any) -> tuple[int, int]:
    """First and last step an alert covers: from its first firing to its resolution (or to
    its latest firing finding while it fires)."""
    first, last = int(alert.first_step), int(alert.step)
    resolved = getattr(alert, "resolved_step", None)
    if alert.status != "firing" and resolved is not None:
        last = max(last, int(resolved))
    return first, last


def alert_mark(alert: Any) -> AlertMark:
    """An :class:`AlertMark` from an ``AlertRecord`` (or anything with the same fields)."""
    first, step = alert_span(alert)
    where = f"step {first}" if first == step else f"steps {first}–{step}"
    status = "firing" if alert.status == "firing" else alert.status
    return AlertMark(
        id=int(alert.id),
        first_step=first,
        step=step,
        severity=str(alert.severity),
        status=str(alert.status),
        text=f"<b>{alert.severity.upper()} {alert.kind}</b> ({status}), {where}<br>"
        + _wrap(str(alert.message)),
    )


def _wrap(text: str, width: int = 70) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    if line:
        lines.append(line)
    return "<br>".join(lines[:6])


def _marker_trace(name: str, colour: str) -> dict[str, Any]:
    return {
        "type": "scatter",
        "mode": "markers",
        "name": name,
        "x": [],
        "y": [],
        "hovertext": [],
        "hovertemplate": "%{hovertext}<extra></extra>",
        "yaxis": "y2",
        "cliponaxis": False,
        "showlegend": False,
        "marker": {
            "symbol": [],
            "color": [],
            "size": 12,
            "line": {"width": 1.5, "color": colour},
        },
    }


def series_trace(
    label: str,
    index: int,
    steps: np.ndarray,
    values: np.ndarray,
    log_y: bool,
    *,
    shown: bool = True,
) -> dict[str, Any]:
    """One series as a line trace (non-finite values leave a gap; they get their own markers)."""
    return {
        "visible": True if shown else "legendonly",
        "type": "scatter",
        "mode": "lines",
        "name": label,
        "x": np.asarray(steps).tolist(),
        "y": to_json_values(values, log_y=log_y),
        "line": {"width": 1.6, "color": theme.PALETTE[index % len(theme.PALETTE)]},
        "hovertemplate": f"{label}<br>step %{{x}}: %{{y:.4g}}<extra></extra>",
        "connectgaps": False,
    }


def nonfinite_marks(label: str, steps: np.ndarray, values: np.ndarray) -> dict[str, list]:
    """Marker points (x, y, hovertext, symbol, colour) for the non-finite values of a series."""
    bad_steps, labels = nonfinite_points(steps, values)
    n = len(labels)
    return {
        "x": bad_steps.tolist(),
        "y": [NONFINITE_Y] * n,
        "hovertext": [
            f"{label} = {v} at step {s}" for s, v in zip(bad_steps.tolist(), labels, strict=True)
        ],
        "symbol": [_NONFINITE_SYMBOLS[v] for v in labels],
        "color": [theme.NONFINITE_COLOUR] * n,
    }


def nonpositive_marks(label: str, steps: np.ndarray, values: np.ndarray) -> dict[str, list]:
    """Marker points for the values <= 0 of a series drawn on a log axis."""
    values = np.asarray(values, dtype=np.float64)
    bad = np.isfinite(values) & (values <= 0)
    s = np.asarray(steps)[bad].tolist()
    v = values[bad].tolist()
    n = len(s)
    return {
        "x": s,
        "y": [NONPOSITIVE_Y] * n,
        "hovertext": [
            f"{label} = {val:g} at step {st} (not drawable on a log axis)"
            for st, val in zip(s, v, strict=True)
        ],
        "symbol": ["diamond"] * n,
        "color": [theme.NONPOSITIVE_COLOUR] * n,
    }


def _severity_colour(mark: AlertMark) -> str:
    return theme.SEVERITY_COLOURS.get(mark.severity, theme.MUTED)


def alert_points(marks: Sequence[AlertMark]) -> dict[str, list]:
    return {
        "x": [m.first_step for m in marks],
        "y": [ALERT_Y] * len(marks),
        "hovertext": [m.text for m in marks],
        "symbol": ["triangle-down"] * len(marks),
        "color": [_severity_colour(m) for m in marks],
    }


def alert_shapes(mark: AlertMark) -> list[dict[str, Any]]:
    """The two shapes of one alert: the line at its first step, the band up to its last."""
    colour = _severity_colour(mark)
    return [
        {
            "type": "line",
            "xref": "x",
            "yref": "paper",
            "x0": mark.first_step,
            "x1": mark.first_step,
            "y0": 0,
            "y1": 1,
            "line": {"color": colour, "width": 1.2, "dash": "dot"},
            "layer": "below",
        },
        {
            "type": "rect",
            "xref": "x",
            "yref": "paper",
            "x0": mark.first_step,
            "x1": mark.step,
            "y0": 0,
            "y1": 1,
            "fillcolor": theme.rgba(colour, 0.10 if mark.status == "firing" else 0.05),
            "line": {"width": 0},
            "layer": "below",
        },
    ]


def _merge_points(trace: dict[str, Any], pts: Mapping[str, list]) -> None:
    trace["x"].extend(pts["x"])
    trace["y"].extend(pts["y"])
    trace["hovertext"].extend(pts["hovertext"])
    trace["marker"]["symbol"].extend(pts["symbol"])
    trace["marker"]["color"].extend(pts["color"])
    if trace["x"]:
        trace["showlegend"] = True


def series_figure(
    title: str,
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    labels: Mapping[str, str],
    *,
    log_y: bool = False,
    alerts: Sequence[AlertMark] = (),
) -> dict[str, Any]:
    """A whole time-series chart: one line per series (in the mapping's order), non-finite
    markers, non-positive markers on log charts, and the alerts' markers and lines."""
    layout = theme.base_layout(title)
    layout["yaxis"]["type"] = "log" if log_y else "linear"
    if log_y:
        layout["yaxis"]["exponentformat"] = "power"
        layout["yaxis"]["nticks"] = 6  # decades (or 1-2-5) only, not every digit
    layout["yaxis2"] = {"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True}
    layout["shapes"] = [shape for m in alerts for shape in alert_shapes(m)]
    nonfinite = _marker_trace("non-finite (NaN/Inf)", theme.NONFINITE_COLOUR)
    alert_tr = _marker_trace("alerts", theme.MUTED)
    nonpos = _marker_trace("≤ 0 (log axis)", theme.NONPOSITIVE_COLOUR)
    data = [nonfinite, alert_tr, nonpos]
    _merge_points(alert_tr, alert_points(alerts))
    for i, (name, (steps, values)) in enumerate(series.items()):
        label = labels.get(name, name)
        data.append(series_trace(label, i, steps, values, log_y, shown=shown_by_default(name)))
        _merge_points(nonfinite, nonfinite_marks(label, steps, values))
        if log_y:
            _merge_points(nonpos, nonpositive_marks(label, steps, values))
    return {"data": data, "layout": layout}


def _extend_markers(patch: Patch, index: int, pts: Mapping[str, list]) -> bool:
    if not pts["x"]:
        return False
    tr = patch["data"][index]
    tr["x"].extend(pts["x"])
    tr["y"].extend(pts["y"])
    tr["hovertext"].extend(pts["hovertext"])
    tr["marker"]["symbol"].extend(pts["symbol"])
    tr["marker"]["color"].extend(pts["color"])
    tr["showlegend"] = True
    return True


def series_patch(
    trace_names: Sequence[str],
    new_points: Mapping[str, tuple[np.ndarray, np.ndarray]],
    labels: Mapping[str, str],
    *,
    log_y: bool = False,
    alerts: Sequence[AlertMark] = (),
    updated: Sequence[tuple[int, AlertMark]] = (),
) -> tuple[Patch | None, list[str]]:
    """A :class:`dash.Patch` appending ``new_points`` to a chart built by :func:`series_figure`
    whose series traces are ``trace_names``; a series not yet in the chart is added as a trace.

    ``alerts`` are marks new to the chart, ``updated`` are ``(rank, mark)`` of marks already
    drawn whose step, severity or status changed (rank: position among the chart's alerts, which
    are always drawn in order of alert id). Returns the patch (None when nothing changes) and
    the new list of trace names."""
    patch = Patch()
    names = list(trace_names)
    changed = False
    for name, (steps, values) in new_points.items():
        if len(steps) == 0:
            continue
        label = labels.get(name, name)
        if name in names:
            tr = patch["data"][SPECIAL_TRACES + names.index(name)]
            tr["x"].extend(np.asarray(steps).tolist())
            tr["y"].extend(to_json_values(values, log_y=log_y))
        else:
            patch["data"].append(
                series_trace(label, len(names), steps, values, log_y, shown=shown_by_default(name))
            )
            names.append(name)
        changed = True
        _extend_markers(patch, NONFINITE_TRACE, nonfinite_marks(label, steps, values))
        if log_y:
            _extend_markers(patch, NONPOSITIVE_TRACE, nonpositive_marks(label, steps, values))
    if alerts:
        _extend_markers(patch, ALERT_TRACE, alert_points(alerts))
        for m in alerts:
            patch["layout"]["shapes"].extend(alert_shapes(m))
        changed = True
    for rank, m in updated:
        line, band = alert_shapes(m)
        patch["layout"]["shapes"][2 * rank] = line
        patch["layout"]["shapes"][2 * rank + 1] = band
        patch["data"][ALERT_TRACE]["hovertext"][rank] = m.text
        patch["data"][ALERT_TRACE]["marker"]["color"][rank] = _severity_colour(m)
        changed = True
    return (patch if changed else None), names


# ---------------------------------------------------------------------- embeddings

MAX_CLOUD_POINTS = 1500


def _cloud_xy(a: np.ndarray) -> tuple[list[float], list[float]]:
    a = subsample_rows(a, MAX_CLOUD_POINTS)
    return a[:, 0].tolist() if len(a) else [], a[:, 1].tolist() if len(a) else []


def embedding_title(step: int | None, proj: Projection | None, counts: tuple[int, int]) -> str:
    if step is None or proj is None:
        return "Embeddings: fake vs real (none logged yet)"
    how = {"raw": "raw 2D", "1D": "1D", "PCA": "PCA on real+fake"}[proj.method]
    extra = f", {proj.dropped} non-finite rows dropped" if proj.dropped else ""
    return f"Embeddings at step {step}: {counts[0]} fake vs {counts[1]} real ({how}{extra})"


def _axis_titles(proj: Projection | None) -> tuple[str, str]:
    if proj is None or proj.method == "raw":
        return "dim 0", "dim 1"
    if proj.method == "1D":
        return "value", ""
    if proj.explained:
        return f"PC1 ({proj.explained[0]:.0%})", f"PC2 ({proj.explained[1]:.0%})"
    return "PC1", "PC2"


def embedding_figure(
    step: int | None, proj: Projection | None, counts: tuple[int, int] = (0, 0)
) -> dict[str, Any]:
    """The 2D cloud of the latest fake (orange) and real (blue) embeddings."""
    layout = theme.base_layout(embedding_title(step, proj, counts), height=380)
    xt, yt = _axis_titles(proj)
    layout["xaxis"]["title"] = {"text": xt, "standoff": 4}
    layout["yaxis"]["title"] = {"text": yt}
    layout["legend"] = {
        "orientation": "v",
        "x": 1,
        "xanchor": "right",
        "y": 1,
        "bgcolor": "rgba(13,17,23,.7)",
    }
    real_xy = _cloud_xy(proj.real) if proj is not None else ([], [])
    fake_xy = _cloud_xy(proj.fake) if proj is not None else ([], [])
    data = [
        {
            "type": "scatter",
            "mode": "markers",
            "name": "real",
            "x": real_xy[0],
            "y": real_xy[1],
            "marker": {"color": theme.REAL_COLOUR, "size": 5, "opacity": 0.55},
            "hovertemplate": "real<br>(%{x:.3g}, %{y:.3g})<extra></extra>",
        },
        {
            "type": "scatter",
            "mode": "markers",
            "name": "fake",
            "x": fake_xy[0],
            "y": fake_xy[1],
            "marker": {"color": theme.FAKE_COLOUR, "size": 5, "opacity": 0.75, "symbol": "circle"},
            "hovertemplate": "fake<br>(%{x:.3g}, %{y:.3g})<extra></extra>",
        },
    ]
    return {"data": data, "layout": layout}


def embedding_patch(step: int, proj: Projection, counts: tuple[int, int]) -> Patch:
    """Replace the cloud's points (a new embedding step is a new snapshot, not an extension)."""
    patch = Patch()
    for i, a in ((0, proj.real), (1, proj.fake)):
        x, y = _cloud_xy(a)
        patch["data"][i]["x"] = x
        patch["data"][i]["y"] = y
    patch["layout"]["title"]["text"] = embedding_title(step, proj, counts)
    xt, yt = _axis_titles(proj)
    patch["layout"]["xaxis"]["title"]["text"] = xt
    patch["layout"]["yaxis"]["title"]["text"] = yt
    return patch
