"""Colours, the plotly layout defaults and the page stylesheet of the dashboard (one dark theme).

The stylesheet is inlined into the page's ``<head>`` through Dash's ``index_string``, so the
dashboard needs no asset folder, no CDN and no package data besides this module.
"""

from __future__ import annotations

from typing import Any

BG = "#0d1117"
CARD = "#161b22"
BORDER = "#30363d"
TEXT = "#e6edf3"
MUTED = "#8b949e"
GRID = "#262c36"

#: health state -> colour of its badge
STATE_COLOURS: dict[str, str] = {
    "healthy": "#2ea043",
    "ok": "#2ea043",
    "warning": "#d29922",
    "critical": "#f85149",
    "alarm": "#f85149",
    "waiting": "#58a6ff",
    "unavailable": "#8b949e",
    "unknown": "#8b949e",
    "info": "#58a6ff",
    "resolved": "#8b949e",
    "firing": "#f85149",
}

SEVERITY_COLOURS: dict[str, str] = {
    "critical": "#f85149",
    "warning": "#d29922",
    "info": "#58a6ff",
}

NONFINITE_COLOUR = "#ff4d4f"
NONPOSITIVE_COLOUR = "#bc8cff"

#: line colours, in order, for the traces of one chart
PALETTE: tuple[str, ...] = (
    "#58a6ff",
    "#f0883e",
    "#3fb950",
    "#d2a8ff",
    "#ffa198",
    "#79c0ff",
    "#e3b341",
    "#56d4dd",
    "#ff7b72",
    "#a5d6ff",
    "#7ee787",
    "#f778ba",
)

FAKE_COLOUR = "#f0883e"
REAL_COLOUR = "#58a6ff"

FONT = "Inter, 'Segoe UI', system-ui, -apple-system, 'Helvetica Neue', Arial, sans-serif"


def rgba(hex_colour: str, alpha: float) -> str:
    """``#rrggbb`` as a CSS ``rgba()`` with the given opacity."""
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def base_layout(title: str, *, height: int = 320) -> dict[str, Any]:
    """The layout every chart starts from (plain dict, JSON-ready)."""
    return {
        "title": {"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 14}},
        "height": height,
        "margin": {"l": 56, "r": 16, "t": 40, "b": 40},
        "paper_bgcolor": CARD,
        "plot_bgcolor": CARD,
        "font": {"family": FONT, "color": TEXT, "size": 11},
        "hovermode": "closest",
        "hoverlabel": {"namelength": -1},
        "legend": {
            "orientation": "h",
            "y": -0.18,
            "x": 0,
            "font": {"size": 10},
            "bgcolor": "rgba(0,0,0,0)",
        },
        "xaxis": {
            "title": {"text": "step", "standoff": 4},
            "gridcolor": GRID,
            "zerolinecolor": GRID,
            "linecolor": BORDER,
        },
        "yaxis": {"gridcolor": GRID, "zerolinecolor": GRID, "linecolor": BORDER},
        "uirevision": "keep",  # zoom and legend toggles survive incremental updates
    }


CSS = f"""
*{{box-sizing:border-box}}
html,body{{margin:0;background:{BG};color:{TEXT};font-family:{FONT};font-size:14px}}
a{{color:#58a6ff;text-decoration:none}} a:hover{{text-decoration:underline}}
.st-topbar{{display:flex;align-items:center;gap:18px;padding:10px 24px;border-bottom:1px solid {BORDER};
  background:#010409;position:sticky;top:0;z-index:10}}
.st-brand{{font-weight:700;font-size:17px;color:{TEXT};letter-spacing:.2px}}
.st-brand span{{color:#f85149;margin-right:6px}}
.st-topbar .st-nav a{{color:{MUTED};margin-right:14px}}
.st-main{{padding:18px 24px 40px;max-width:1680px;margin:0 auto}}
.st-card{{background:{CARD};border:1px solid {BORDER};border-radius:8px;padding:14px 16px;margin-bottom:16px}}
.st-card h2,.st-card h3{{margin:0 0 10px;font-size:15px;font-weight:600}}
.st-muted{{color:{MUTED}}}
.st-small{{font-size:12px}}
.st-badge{{display:inline-block;padding:2px 9px;border-radius:999px;font-size:12px;font-weight:600;
  color:#0d1117;text-transform:uppercase;letter-spacing:.4px;white-space:nowrap}}
.st-count{{display:inline-block;min-width:22px;padding:1px 7px;margin-right:4px;border-radius:6px;
  font-size:12px;font-weight:600;text-align:center;border:1px solid {BORDER}}}
table.st-table{{width:100%;border-collapse:collapse}}
.st-table th{{text-align:left;color:{MUTED};font-weight:500;font-size:12px;text-transform:uppercase;
  letter-spacing:.4px;padding:8px 10px;border-bottom:1px solid {BORDER}}}
.st-table td{{padding:9px 10px;border-bottom:1px solid {GRID};vertical-align:middle}}
.st-table tr:hover td{{background:#1c232c}}
.st-runhead{{display:flex;flex-wrap:wrap;align-items:center;gap:14px}}
.st-runhead h1{{margin:0;font-size:22px;font-weight:650;word-break:break-all}}
.st-meta{{color:{MUTED};font-size:13px}}
.st-detectors{{display:flex;flex-wrap:wrap;gap:8px;margin-top:12px}}
.st-det{{border:1px solid {BORDER};border-radius:6px;padding:6px 10px;font-size:12px;max-width:420px;
  background:#0d1117}}
.st-det b{{margin-right:6px}}
.st-dot{{display:inline-block;width:8px;height:8px;border-radius:50%;margin-right:6px}}
.st-grid{{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:16px}}
.st-graph{{background:{CARD};border:1px solid {BORDER};border-radius:8px;padding:4px;min-width:0}}
.st-alert{{border-left:4px solid {BORDER};padding:8px 12px;margin:8px 0;background:#0d1117;
  border-radius:0 6px 6px 0}}
.st-alert-head{{display:flex;flex-wrap:wrap;align-items:center;gap:8px}}
.st-alert-msg{{margin:6px 0 4px}}
.st-alert ul{{margin:4px 0 0 18px;padding:0}}
.st-alert li{{margin:2px 0}}
.st-kv{{display:inline-block;margin:2px 10px 2px 0;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;
  font-size:12px;color:{MUTED}}}
.st-kv b{{color:{TEXT};font-weight:500}}
.st-cite{{color:{MUTED};font-style:italic}}
.st-status{{white-space:nowrap;color:{TEXT}}}
.st-empty{{color:{MUTED};padding:18px;text-align:center}}
.st-error{{border-color:#f85149}}
.st-runbody{{display:grid;grid-template-columns:minmax(0,1fr) 400px;gap:16px;align-items:start}}
.st-alerts{{position:sticky;top:64px;max-height:calc(100vh - 80px);overflow-y:auto;margin-bottom:0}}
@media (max-width:1200px){{.st-runbody{{grid-template-columns:1fr}} .st-alerts{{position:static;max-height:none}}}}
.st-grid{{grid-template-columns:repeat(auto-fill,minmax(520px,1fr))}}
"""

INDEX_STRING = f"""<!DOCTYPE html>
<html lang="en">
    <head>
        {{%metas%}}
        <title>{{%title%}}</title>
        {{%favicon%}}
        {{%css%}}
        <style>{CSS}</style>
    </head>
    <body>
        {{%app_entry%}}
        <footer>
            {{%config%}}
            {{%scripts%}}
            {{%renderer%}}
        </footer>
    </body>
</html>
"""
