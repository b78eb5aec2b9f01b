"""Small HTML building blocks shared by the pages: badges, health header, alert cards, run table."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import anyio.to_thread
from dash import dcc, html

from . import figures, theme
from .data import HealthView, health_view

URL_BASE = "/ui/"


def run_href(name: str) -> str:
    """Link to a run's page (names may hold ``/`` and ``:``, which the path form keeps)."""
    return f"{URL_BASE}run/{quote(name, safe='/:._-')}"


def badge(text: str, state: str | None = None, *, title: str | None = None) -> html.Span:
    """A coloured pill; the colour follows ``state`` (default: the text itself)."""
    colour = theme.STATE_COLOURS.get((state or text).lower(), theme.MUTED)
    return html.Span(
        text,
        className="st-badge",
        style={"background": colour},
        title=title,
        **{"data-state": (state or text).lower()},
    )


_STATUS_STATES = {
    "running": "info",
    "finished": "ok",
    "completed": "ok",
    "done": "ok",
    "crashed": "critical",
    "failed": "critical",
    "stopped": "warning",
}


def status_badge(status: str) -> html.Span:
    """The run's lifecycle status (running, finished, crashed, ...): a coloured dot and the word,
    quieter than the health badge next to it."""
    colour = theme.STATE_COLOURS[_STATUS_STATES.get(str(status).lower(), "unknown")]
    return html.Span(
        [html.Span(className="st-dot", style={"background": colour}), str(status)],
        className="st-status",
        title="run status",
    )


def health_badge(health: Mapping[str, Any] | HealthView | None) -> html.Span:
    """The run's overall health state as a coloured badge ("unknown" when not reported)."""
    view = health if isinstance(health, HealthView) else health_view(health)
    return badge(view.state, view.state, title=f"health: {view.state}")


def firing_counts(view: HealthView) -> html.Span:
    """Firing alerts by severity: red count for critical, amber for warning."""
    parts = []
    for sev, n in (("critical", view.critical), ("warning", view.warning)):
        colour = theme.SEVERITY_COLOURS[sev] if n else theme.MUTED
        parts.append(
            html.Span(
                str(n),
                className="st-count",
                title=f"{n} firing {sev} alert(s)",
                style={"color": colour, "borderColor": colour if n else theme.BORDER},
                **{"data-severity": sev},
            )
        )
    return html.Span(parts, className="st-firing")


def detector_chips(view: HealthView) -> html.Div:
    """One chip per detector: its state and, for waiting/unavailable/alarm, the reason why."""
    if not view.detectors:
        return html.Div(
            "No detector status reported yet.", className="st-muted st-small st-detectors"
        )
    chips = []
    for d in view.detectors:
        colour = theme.STATE_COLOURS.get(d.state, theme.MUTED)
        chips.append(
            html.Div(
                [
                    html.Span(className="st-dot", style={"background": colour}),
                    html.B(d.name),
                    html.Span(d.state, style={"color": colour}),
                    html.Div(d.reason, className="st-muted") if d.reason else None,
                ],
                className="st-det",
                title=d.reason or d.state,
            )
        )
    return html.Div(chips, className="st-detectors")


def fmt_time(ts: float | None, now: float | None = None) -> str:
    """``HH:MM:SS (12 s ago)``, with the date when not today."""
    if ts is None:
        return "-"
    now = time.time() if now is None else now
    dt = datetime.fromtimestamp(ts)
    stamp = dt.strftime(
        "%H:%M:%S" if dt.date() == datetime.fromtimestamp(now).date() else "%Y-%m-%d %H:%M"
    )
    ago = max(0.0, now - ts)
    if ago < 60:
        rel = f"{ago:.0f} s ago"
    elif ago < 3600:
        rel = f"{ago / 60:.0f} min ago"
    elif ago < 86400:
        rel = f"{ago / 3600:.1f} h ago"
    else:
        rel = f"{ago / 86400:.0f} d ago"
    return f"{stamp} ({rel})"


def run_header(run: Any) -> list[Any]:
    """The run page's header: name, status, health badge, firing counts, detectors."""
    view = health_view(getattr(run, "health", None))
    step = "-" if run.last_step is None else f"{run.last_step:,}"
    return [
        html.Div(
            [
                html.H1(run.name),
                health_badge(view),
                status_badge(run.status),
                html.Span(["firing: ", firing_counts(view)], className="st-meta"),
                html.Span(f"last step {step}", className="st-meta", id="run-last-step"),
                html.Span(f"updated {fmt_time(run.updated_at)}", className="st-meta"),
            ],
            className="st-runhead",
        ),
        detector_chips(view),
    ]


def message_card(title: str, text: str, *, error: bool = False) -> html.Div:
    return html.Div(
        [html.H2(title), html.P(text, className="st-muted"), dcc.Link("← all runs", href=URL_BASE)],
        className="st-card st-error" if error else "st-card",
    )


def _fmt_num(v: Any) -> str:
    try:
        return f"{float(v):.4g}"
    except (TypeError, ValueError):
        return str(v)


def alert_card(alert: Any) -> html.Div:
    """One alert: severity, kind, status, steps, message, evidence numbers, remedies + papers."""
    colour = theme.SEVERITY_COLOURS.get(alert.severity, theme.MUTED)
    first, last = figures.alert_span(alert)
    steps = f"step {first:,}" if first == last else f"steps {first:,}–{last:,}"
    evidence = alert.evidence if isinstance(alert.evidence, Mapping) else {}
    remedies: Sequence[Any] = alert.remedies if isinstance(alert.remedies, list | tuple) else []
    items = []
    for r in remedies:
        if isinstance(r, Mapping):
            cite = r.get("citation")
            items.append(
                html.Li(
                    [
                        str(r.get("action", "")),
                        html.Span(f" — {cite}", className="st-cite") if cite else None,
                    ]
                )
            )
        else:
            items.append(html.Li(str(r)))
    return html.Div(
        [
            html.Div(
                [
                    badge(alert.severity, alert.severity),
                    html.B(alert.kind),
                    badge(alert.status, "firing" if alert.status == "firing" else "resolved"),
                    html.Span(steps, className="st-meta"),
                    html.Span(f"×{alert.count}", className="st-meta", title="updates")
                    if getattr(alert, "count", 1) > 1
                    else None,
                    html.Span(f"{alert.episodes} episodes", className="st-meta",
                              title="times it fired")
                    if getattr(alert, "episodes", 1) > 1
                    else None,
                    html.Span(alert.key, className="st-muted st-small"),
                ],
                className="st-alert-head",
            ),
            html.Div(alert.message, className="st-alert-msg"),
            html.Div(f"Resolved at step {alert.resolved_step:,}: {alert.resolved_message}",
                     className="st-alert-msg st-muted")
            if getattr(alert, "resolved_step", None) is not None
            and getattr(alert, "resolved_message", None) else None,
            html.Div(
                [
                    html.Span([f"{k} ", html.B(_fmt_num(v))], className="st-kv")
                    for k, v in evidence.items()
                ]
            )
            if evidence
            else None,
            html.Div([html.Span("Remedies", className="st-muted st-small"), html.Ul(items)])
            if items
            else None,
        ],
        className="st-alert",
        style={"borderLeftColor": colour},
        **{"data-kind": alert.kind, "data-severity": alert.severity},
    )


def alerts_panel(alerts: Sequence[Any]) -> list[Any]:
    """The run's alerts, firing first (critical before warning), then resolved, newest first."""
    title = html.H2(
        f"Alerts ({sum(a.status == 'firing' for a in alerts)} firing, {len(alerts)} total)"
    )
    if not alerts:
        return [title, html.Div("No alerts for this run.", className="st-empty")]
    rank = {"critical": 0, "warning": 1, "info": 2}
    ordered = sorted(
        alerts,
        key=lambda a: (a.status != "firing", rank.get(a.severity, 3), -a.step),
    )
    return [title, *[alert_card(a) for a in ordered]]


def runs_table(runs: Sequence[Any], now: float | None = None) -> html.Table | html.Div:
    """Every run: name (link), status, health badge, firing counts, last step, updated time."""
    if not runs:
        return html.Div(
            "No runs yet. Attach a Monitor to a training loop and its run appears here.",
            className="st-empty",
        )
    head = html.Thead(
        html.Tr(
            [
                html.Th(h)
                for h in (
                    "Run",
                    "Status",
                    "Health",
                    "Firing (critical / warning)",
                    "Last step",
                    "Updated",
                )
            ]
        )
    )
    rows = []
    for r in runs:
        view = health_view(r.health)
        rows.append(
            html.Tr(
                [
                    html.Td(dcc.Link(r.name, href=run_href(r.name), className="st-runlink")),
                    html.Td(status_badge(r.status)),
                    html.Td(health_badge(view)),
                    html.Td(firing_counts(view)),
                    html.Td("-" if r.last_step is None else f"{r.last_step:,}"),
                    html.Td(fmt_time(r.updated_at, now), className="st-muted"),
                ],
                **{"data-run": r.name},
            )
        )
    return html.Table([head, html.Tbody(rows)], className="st-table", id="runs-table")


async def in_thread(fn: Any, *args: Any) -> Any:
    """Run blocking store reads off the event loop the API shares with the dashboard."""
    return await anyio.to_thread.run_sync(lambda: fn(*args))


def store_missing() -> html.Div:
    return message_card(
        "Store not available",
        "The server has no store yet (is the application's lifespan running?).",
        error=True,
    )
