"""Pure data helpers of the dashboard: which chart a series belongs to, embedding projection,
non-finite points and run health, all on plain numpy arrays and dicts (no Dash, no store).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

#: order of the chart kinds on the run page; per-module gradient charts sort by module after
#: their kind, the embedding cloud is its own kind
CHART_ORDER: tuple[str, ...] = (
    "losses",
    "d_outputs",
    "grad_total",
    "collapse",
    "embeddings",
    "gt",
    "grad_layers",
    "signals",
    "other",
)

_TITLES = {
    "losses": "Losses",
    "d_outputs": "Discriminator outputs",
    "grad_total": "Gradient norm per module (total)",
    "collapse": "Collapse signals (coverage, recall, Vendi ratio)",
    "gt": "Ground truth",
    "signals": "Detector signals",
    "other": "Other metrics",
}

_D_OUTPUT = re.compile(r"^(d_|d\(|disc)|d_real|d_fake|real_score|fake_score", re.IGNORECASE)


@dataclass(frozen=True)
class ChartSlot:
    """Where one series is drawn: chart id, chart title, trace label, log y axis or not."""

    chart: str
    title: str
    label: str
    log_y: bool = False


def classify_series(name: str) -> ChartSlot:
    """The chart a series belongs to, from its name alone (see docs/architecture.md)."""
    if name.startswith("grad_norm/"):
        parts = name.split("/", 2)
        if len(parts) == 2:
            return ChartSlot("grad_total", _TITLES["grad_total"], parts[1], True)
        module, param = parts[1], parts[2]
        if param == "total":
            return ChartSlot("grad_total", _TITLES["grad_total"], module, True)
        return ChartSlot(
            f"grad_layers:{module}", f"Per-layer gradient norms of {module}", param, True
        )
    if name.startswith("stethoscope/collapse/"):
        return ChartSlot("collapse", _TITLES["collapse"], name[len("stethoscope/collapse/") :])
    if name.startswith("stethoscope/"):
        return ChartSlot("signals", _TITLES["signals"], name[len("stethoscope/") :])
    if name.startswith("gt/"):
        return ChartSlot("gt", _TITLES["gt"], name[3:])
    if "loss" in name.lower():
        return ChartSlot("losses", _TITLES["losses"], name)
    if _D_OUTPUT.search(name):
        return ChartSlot("d_outputs", _TITLES["d_outputs"], name)
    return ChartSlot("other", _TITLES["other"], name)


#: collapse signals drawn at first; the others (absolute Vendi score, reference values, ...) are
#: one legend click away, so the ratios around 0..1 are not squashed by a series near 5
COLLAPSE_SHOWN = frozenset({"coverage", "recall", "vendi_ratio"})


def shown_by_default(name: str) -> bool:
    """Whether a series' line is visible when its chart is first drawn."""
    prefix = "stethoscope/collapse/"
    return not name.startswith(prefix) or name[len(prefix) :] in COLLAPSE_SHOWN


def chart_sort_key(chart: str) -> tuple[int, str]:
    """Sort key of a chart id, so charts keep one order however late they appear."""
    kind, _, sub = chart.partition(":")
    rank = CHART_ORDER.index(kind) if kind in CHART_ORDER else len(CHART_ORDER)
    return rank, sub


def group_series(names: Iterable[str]) -> dict[str, list[str]]:
    """Series names per chart id, charts in page order, series sorted by name within a chart.

    Within the gradient-norm charts the order of the names is kept as given (the store lists
    them alphabetically, which is as good as any for parameter names).
    """
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(classify_series(name).chart, []).append(name)
    return {k: sorted(groups[k]) for k in sorted(groups, key=chart_sort_key)}


# ---------------------------------------------------------------------- values


def nonfinite_points(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Steps of the non-finite values and their labels (``"NaN"``, ``"+Inf"``, ``"-Inf"``)."""
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values)
    if not bad.any():
        return np.empty(0, dtype=np.int64), []
    labels = [
        "NaN" if math.isnan(v) else ("+Inf" if v > 0 else "-Inf") for v in values[bad].tolist()
    ]
    return np.asarray(steps)[bad].astype(np.int64), labels


def to_json_values(values: np.ndarray, *, log_y: bool = False) -> list[float | None]:
    """Values as JSON-ready floats; non-finite (and, on a log axis, non-positive) become None,
    which plotly draws as a gap. Those points are drawn as separate markers instead."""
    values = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(values)
    if log_y:
        ok &= values > 0
    out: list[float | None] = values.tolist()
    for i in np.flatnonzero(~ok).tolist():
        out[i] = None
    return out


# ---------------------------------------------------------------------- embeddings


@dataclass(frozen=True)
class Projection:
    """2D coordinates of the fake and real samples of one embedding step."""

    fake: np.ndarray  # (n, 2)
    real: np.ndarray  # (m, 2)
    method: str  # "raw", "PCA" or "1D"
    explained: tuple[float, float] | None  # share of variance of the two components (PCA)
    dropped: int  # rows dropped because they held NaN/Inf


def project_2d(fake: np.ndarray | None, real: np.ndarray | None) -> Projection:
    """Project fake and real embeddings into one shared 2D space.

    PCA is fit on real and fake together (centred with their joint mean; components from the
    SVD of the stacked matrix), so both clouds are drawn in the same coordinates and a collapsed
    generator shows as a tight clump inside the real cloud. d == 2 is drawn raw, d == 1 along x.
    Each component's sign is fixed so its largest loading is positive, which keeps the picture
    from flipping between steps. Rows with NaN/Inf are dropped and counted.
    """
    parts = [
        np.empty((0, 0)) if a is None else np.asarray(a, dtype=np.float64) for a in (fake, real)
    ]
    dims = {a.shape[1] for a in parts if a.ndim == 2 and a.shape[0] > 0}
    if len(dims) > 1:
        raise ValueError(f"fake and real embeddings differ in width: {sorted(dims)}")
    d = dims.pop() if dims else 2
    parts = [a.reshape(-1, d) if a.size else np.empty((0, d)) for a in parts]
    dropped = 0
    clean = []
    for a in parts:
        ok = np.isfinite(a).all(axis=1)
        dropped += int((~ok).sum())
        clean.append(a[ok])
    fake_c, real_c = clean
    if d == 1:
        return Projection(
            np.column_stack([fake_c[:, 0], np.zeros(len(fake_c))]),
            np.column_stack([real_c[:, 0], np.zeros(len(real_c))]),
            "1D",
            None,
            dropped,
        )
    if d == 2:
        return Projection(fake_c, real_c, "raw", None, dropped)
    both = np.concatenate([fake_c, real_c])
    if len(both) < 2:
        z = np.zeros((0, 2))
        return Projection(
            np.zeros((len(fake_c), 2)) if len(fake_c) else z,
            np.zeros((len(real_c), 2)) if len(real_c) else z,
            "PCA",
            None,
            dropped,
        )
    mean = both.mean(axis=0)
    _, s, vt = np.linalg.svd(both - mean, full_matrices=False)
    comps = vt[:2]
    if comps.shape[0] < 2:  # a single sample dimension left: pad with a zero axis
        comps = np.vstack([comps, np.zeros((2 - comps.shape[0], d))])
    signs = np.sign(comps[np.arange(2), np.abs(comps).argmax(axis=1)])
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    var = s**2
    total = float(var.sum())
    explained = (
        (float(var[0] / total), float(var[1] / total if len(var) > 1 else 0.0))
        if total > 0
        else None
    )
    return Projection(
        (fake_c - mean) @ comps.T, (real_c - mean) @ comps.T, "PCA", explained, dropped
    )


def subsample_rows(a: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """At most ``n`` rows of ``a``, chosen by a fixed seed (so a redraw shows the same points)."""
    if len(a) <= n:
        return a
    idx = np.sort(np.random.default_rng(seed).choice(len(a), size=n, replace=False))
    return a[idx]


# ---------------------------------------------------------------------- health

HEALTH_STATES = ("healthy", "warning", "critical", "unknown")
DETECTOR_STATES = ("ok", "alarm", "waiting", "unavailable")


@dataclass(frozen=True)
class DetectorView:
    name: str
    state: str
    reason: str


@dataclass(frozen=True)
class HealthView:
    """A run's ``health`` dict, made safe to render whatever keys are missing or odd."""

    state: str
    critical: int
    warning: int
    detectors: tuple[DetectorView, ...]


def _as_int(x: Any) -> int:
    try:
        return max(0, int(x))
    except (TypeError, ValueError, OverflowError):
        return 0


def health_view(health: Mapping[str, Any] | None) -> HealthView:
    """Read the server-written health dict defensively (missing or malformed -> "unknown")."""
    health = health if isinstance(health, Mapping) else {}
    state = health.get("state")
    state = state if isinstance(state, str) and state in HEALTH_STATES else "unknown"
    firing = health.get("firing")
    firing = firing if isinstance(firing, Mapping) else {}
    dets = []
    raw = health.get("detectors")
    for d in raw if isinstance(raw, list | tuple) else []:
        if not isinstance(d, Mapping):
            continue
        dstate = d.get("state")
        dets.append(
            DetectorView(
                name=str(d.get("name") or "?"),
                state=dstate if isinstance(dstate, str) and dstate else "unknown",
                reason=str(d.get("reason") or ""),
            )
        )
    return HealthView(
        state, _as_int(firing.get("critical")), _as_int(firing.get("warning")), tuple(dets)
    )
