"""Pure helpers of the dashboard: chart assignment, projection, non-finite markers, health, HTML."""

from __future__ import annotations

import math

import numpy as np
import pytest
from dash import Patch, html

from stethoscope.app.storage import AlertRecord, RunRecord
from stethoscope.app.ui import components, figures, theme
from stethoscope.app.ui.data import (
    chart_sort_key,
    classify_series,
    group_series,
    health_view,
    nonfinite_points,
    project_2d,
    shown_by_default,
    subsample_rows,
    to_json_values,
)


def _alert(**kw: object) -> AlertRecord:
    base = dict(
        id=1, run="r", kind="divergence", key="divergence/nonfinite", severity="critical",
        status="firing", step=12, first_step=12, message="loss_D is NaN at step 12",
        evidence={"value": math.nan, "last_finite": 1.25},
        remedies=[{"action": "Lower the learning rate", "citation": "OLMo 2 (2024)"}],
        count=1, seq=1, created_at=0.0, updated_at=0.0, resolved_at=None,
        detector="nonfinite", subject="loss_D",
    )  # fmt: skip
    base.update(kw)
    return AlertRecord(**base)  # type: ignore[arg-type]


def _ops(patch: Patch) -> list[dict]:
    return patch.to_plotly_json()["operations"]


# ---------------------------------------------------------------------- chart assignment


@pytest.mark.parametrize(
    ("name", "chart", "label", "log_y"),
    [
        ("loss_D", "losses", "loss_D", False),
        ("errG_loss", "losses", "errG_loss", False),
        ("D_x", "d_outputs", "D_x", False),
        ("D_G_z1", "d_outputs", "D_G_z1", False),
        ("d_real", "d_outputs", "d_real", False),
        ("grad_norm/G/total", "grad_total", "G", True),
        ("grad_norm/D/main.0.weight", "grad_layers:D", "main.0.weight", True),
        ("grad_norm/enc/blocks/0/w", "grad_layers:enc", "blocks/0/w", True),
        ("stethoscope/collapse/coverage", "collapse", "coverage", False),
        ("stethoscope/spike/z", "signals", "spike/z", False),
        ("gt/modes_captured", "gt", "modes_captured", False),
        ("lr", "other", "lr", False),
        ("dropout", "other", "dropout", False),
    ],
)
def test_classify_series(name: str, chart: str, label: str, log_y: bool) -> None:
    slot = classify_series(name)
    assert (slot.chart, slot.label, slot.log_y) == (chart, label, log_y)


def test_secondary_collapse_signals_start_hidden() -> None:
    assert shown_by_default("loss_D") and shown_by_default("stethoscope/collapse/recall")
    assert not shown_by_default("stethoscope/collapse/vendi")
    s = np.arange(2, dtype=np.int64)
    fig = figures.series_figure(
        "c",
        {
            "stethoscope/collapse/coverage": (s, np.ones(2)),
            "stethoscope/collapse/vendi": (s, s * 5.0),
        },
        {},
    )
    assert [t["visible"] for t in fig["data"][figures.SPECIAL_TRACES :]] == [True, "legendonly"]


def test_group_series_keeps_page_order() -> None:
    names = [
        "lr",
        "grad_norm/G/a",
        "gt/x",
        "loss_G",
        "grad_norm/D/total",
        "loss_D",
        "grad_norm/D/a",
    ]
    groups = group_series(names)
    assert list(groups) == ["losses", "grad_total", "gt", "grad_layers:D", "grad_layers:G", "other"]
    assert groups["losses"] == ["loss_D", "loss_G"]
    assert chart_sort_key("embeddings") < chart_sort_key("gt") < chart_sort_key("grad_layers:A")


# ---------------------------------------------------------------------- non-finite values


def test_nonfinite_points_and_json_values() -> None:
    steps = np.array([1, 2, 3, 4, 5], dtype=np.int64)
    values = np.array([1.0, np.nan, np.inf, -np.inf, 0.0])
    bad, labels = nonfinite_points(steps, values)
    assert bad.tolist() == [2, 3, 4] and labels == ["NaN", "+Inf", "-Inf"]
    assert to_json_values(values) == [1.0, None, None, None, 0.0]
    assert to_json_values(values, log_y=True) == [1.0, None, None, None, None]
    assert nonfinite_points(steps[:1], values[:1])[1] == []


def test_series_figure_draws_nan_and_inf_as_markers_and_alerts_as_lines() -> None:
    steps = np.arange(10, dtype=np.int64)
    loss = np.linspace(1, 2, 10)
    loss[4], loss[7] = np.nan, np.inf
    fig = figures.series_figure(
        "Losses",
        {"loss_D": (steps, loss), "loss_G": (steps, np.ones(10))},
        {},
        alerts=[figures.alert_mark(_alert(first_step=4, step=4))],
    )
    data = fig["data"]
    assert len(data) == figures.SPECIAL_TRACES + 2
    nonfinite = data[figures.NONFINITE_TRACE]
    assert nonfinite["x"] == [4, 7]
    assert nonfinite["marker"]["symbol"] == ["x", "triangle-up"]
    assert all(y == figures.NONFINITE_Y for y in nonfinite["y"])
    assert nonfinite["yaxis"] == "y2" and fig["layout"]["yaxis2"]["range"] == [0, 1]
    assert "loss_D = NaN at step 4" in nonfinite["hovertext"][0]
    assert nonfinite["showlegend"] is True
    line = data[figures.SPECIAL_TRACES]
    assert line["name"] == "loss_D" and line["y"][4] is None and line["y"][7] is None
    assert len(line["x"]) == 10  # the gap is kept at its step, nothing is dropped
    alerts = data[figures.ALERT_TRACE]
    assert alerts["x"] == [4] and "CRITICAL divergence" in alerts["hovertext"][0]
    line_shape, band = fig["layout"]["shapes"]
    assert line_shape["x0"] == 4 and band["x0"] == 4 and band["x1"] == 4
    assert line_shape["line"]["color"] == theme.SEVERITY_COLOURS["critical"]


def test_alert_mark_spans_first_to_last_step() -> None:
    mark = figures.alert_mark(_alert(first_step=400, step=1700, status="resolved"))
    assert "steps 400–1700" in mark.text and "resolved" in mark.text
    line, band = figures.alert_shapes(mark)
    assert (line["x0"], band["x0"], band["x1"]) == (400, 400, 1700)
    assert band["type"] == "rect" and band["fillcolor"].startswith("rgba(248,81,73,")
    assert figures.alert_points([mark])["x"] == [400]


def test_log_chart_marks_non_positive_values() -> None:
    steps = np.arange(4, dtype=np.int64)
    fig = figures.series_figure(
        "g", {"grad_norm/G/a": (steps, np.array([1.0, 0.0, 1e-3, -1.0]))}, {}, log_y=True
    )
    assert fig["layout"]["yaxis"]["type"] == "log"
    assert fig["data"][figures.NONPOSITIVE_TRACE]["x"] == [1, 3]
    assert fig["data"][figures.SPECIAL_TRACES]["y"] == [1.0, None, 1e-3, None]


def test_series_patch_extends_adds_traces_and_marks_alerts() -> None:
    steps = np.array([10, 11], dtype=np.int64)
    patch, names = figures.series_patch(
        ["loss_D"],
        {"loss_D": (steps, np.array([1.0, np.nan])), "loss_G": (steps, np.array([2.0, 3.0]))},
        {},
        alerts=[figures.alert_mark(_alert(first_step=11, step=11, severity="warning"))],
    )
    assert names == ["loss_D", "loss_G"]
    ops = _ops(patch)
    extend_x = [o for o in ops if o["operation"] == "Extend" and o["location"][-1] == "x"]
    assert {
        "location": ["data", 3, "x"],
        "operation": "Extend",
        "params": {"value": [10, 11]},
    } in ops
    assert any(o["location"] == ["data", 0, "x"] and o["params"]["value"] == [11] for o in extend_x)
    appended = [o for o in ops if o["operation"] == "Append" and o["location"] == ["data"]]
    assert appended[0]["params"]["value"]["name"] == "loss_G"
    shapes = [o for o in ops if o["location"] == ["layout", "shapes"]]
    assert [sh["x0"] for sh in shapes[0]["params"]["value"]] == [11, 11]
    none, same = figures.series_patch(["loss_D"], {}, {})
    assert none is None and same == ["loss_D"]


def test_series_patch_redraws_an_updated_alert_in_place() -> None:
    moved = figures.alert_mark(_alert(id=7, first_step=5, step=30, severity="warning"))
    patch, _ = figures.series_patch(["loss_D"], {}, {}, updated=[(1, moved)])
    ops = {tuple(o["location"]): o for o in _ops(patch)}
    assert ops[("layout", "shapes", 3)]["params"]["value"]["x1"] == 30
    assert ops[("layout", "shapes", 2)]["params"]["value"]["x0"] == 5
    assert "steps 5–30" in ops[("data", 1, "hovertext", 1)]["params"]["value"]
    assert (
        ops[("data", 1, "marker", "color", 1)]["params"]["value"]
        == theme.SEVERITY_COLOURS["warning"]
    )


# ---------------------------------------------------------------------- projection


def test_project_2d_raw_for_two_dimensions() -> None:
    fake = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    real = np.array([[5.0, 6.0]])
    proj = project_2d(fake, real)
    assert proj.method == "raw"
    np.testing.assert_array_equal(proj.fake, fake)
    np.testing.assert_array_equal(proj.real, real)


def test_project_2d_pca_is_fit_on_real_and_fake_together() -> None:
    rng = np.random.default_rng(1)
    real = rng.standard_normal((300, 6))
    fake = 0.1 * rng.standard_normal((200, 6)) + np.array([4.0, 0, 0, 0, 0, 0])
    proj = project_2d(fake.astype(np.float32), real)
    assert proj.method == "PCA" and proj.fake.shape == (200, 2) and proj.real.shape == (300, 2)
    both = np.concatenate([proj.fake, proj.real])
    np.testing.assert_allclose(both.mean(axis=0), 0, atol=1e-6)  # joint centring
    # the first component separates the collapsed fake clump from the real cloud
    assert abs(proj.fake[:, 0].mean() - proj.real[:, 0].mean()) > 3
    assert proj.explained is not None and proj.explained[0] > proj.explained[1] > 0
    # same variance as the top two eigenvalues of the joint covariance
    stacked = np.concatenate([fake, real])
    eig = np.sort(np.linalg.eigvalsh(np.cov(stacked.T, bias=True)))[::-1]
    np.testing.assert_allclose(both.var(axis=0), eig[:2], rtol=1e-4)
    # the sign convention makes a redraw of the same data identical
    again = project_2d(fake.astype(np.float32), real)
    np.testing.assert_allclose(again.fake, proj.fake)


def test_project_2d_drops_nonfinite_rows_and_handles_edge_shapes() -> None:
    real = np.ones((5, 3))
    real[2, 1] = np.nan
    proj = project_2d(np.zeros((4, 3)), real)
    assert proj.dropped == 1 and len(proj.real) == 4
    one_d = project_2d(np.array([[1.0], [2.0]]), None)
    assert one_d.method == "1D" and one_d.fake.tolist() == [[1.0, 0.0], [2.0, 0.0]]
    assert project_2d(np.zeros((3, 5)), None).fake.shape == (3, 2)
    with pytest.raises(ValueError, match="width"):
        project_2d(np.zeros((2, 3)), np.zeros((2, 4)))
    assert len(subsample_rows(np.arange(100).reshape(50, 2), 10)) == 10


def test_embedding_figure_and_patch() -> None:
    rng = np.random.default_rng(0)
    proj = project_2d(rng.standard_normal((30, 4)), rng.standard_normal((40, 4)))
    fig = figures.embedding_figure(200, proj, (30, 40))
    assert [t["name"] for t in fig["data"]] == ["real", "fake"]
    assert len(fig["data"][0]["x"]) == 40 and len(fig["data"][1]["x"]) == 30
    assert fig["data"][0]["marker"]["color"] != fig["data"][1]["marker"]["color"]
    assert "step 200" in fig["layout"]["title"]["text"] and "PCA" in fig["layout"]["title"]["text"]
    ops = _ops(figures.embedding_patch(400, proj, (30, 40)))
    assert any(
        o["location"] == ["layout", "title", "text"] and "400" in o["params"]["value"] for o in ops
    )
    assert "none logged" in figures.embedding_figure(None, None)["layout"]["title"]["text"]


# ---------------------------------------------------------------------- health and HTML


def test_health_view_is_defensive() -> None:
    assert health_view(None).state == "unknown"
    assert health_view({"state": "exploded", "firing": "many", "detectors": "x"}).state == "unknown"
    view = health_view(
        {
            "state": "warning",
            "firing": {"critical": 0, "warning": "2"},
            "detectors": [
                {"name": "collapse", "state": "waiting", "reason": "needs 2 evaluations"},
                {"state": "ok"},
                "junk",
            ],
        }
    )
    assert (view.state, view.critical, view.warning) == ("warning", 0, 2)
    assert [(d.name, d.state, d.reason) for d in view.detectors] == [
        ("collapse", "waiting", "needs 2 evaluations"),
        ("?", "ok", ""),
    ]


def test_health_badge_colours() -> None:
    badge = components.health_badge({"state": "critical"})
    assert badge.children == "critical"
    assert badge.style["background"] == theme.STATE_COLOURS["critical"]
    assert components.health_badge({}).children == "unknown"
    assert components.health_badge(None).style["background"] == theme.STATE_COLOURS["unknown"]


def _text(component: object) -> str:
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return " ".join(_text(c) for c in component)
    children = getattr(component, "children", None)
    return "" if children is None else _text(children)


def test_alert_card_shows_evidence_and_cited_remedies() -> None:
    card = components.alert_card(_alert(first_step=10, step=12, count=3))
    text = _text(card)
    assert "loss_D is NaN" in text and "steps 10–12" in text and "×3" in text
    assert "last_finite" in text and "1.25" in text and "nan" in text
    assert "Lower the learning rate" in text and "OLMo 2 (2024)" in text
    panel = components.alerts_panel(
        [
            _alert(id=1, status="resolved", severity="critical", step=5),
            _alert(id=2, severity="warning", kind="mode_collapse", step=9),
            _alert(id=3, severity="critical", step=7),
        ]
    )
    assert "2 firing, 3 total" in _text(panel[0])
    assert [getattr(c, "data-kind") for c in panel[1:]] == [
        "divergence",
        "mode_collapse",
        "divergence",
    ]
    assert [c.style["borderLeftColor"] for c in panel[1:]] == [
        theme.SEVERITY_COLOURS["critical"],
        theme.SEVERITY_COLOURS["warning"],
        theme.SEVERITY_COLOURS["critical"],
    ]
    assert "No alerts" in _text(components.alerts_panel([]))


def test_runs_table() -> None:
    runs = [
        RunRecord("a/b:c", "running", {}, 0.0, 100.0, 42, {"state": "healthy"}),
        RunRecord("empty", "running", {}, 0.0, 100.0, None, {}),
    ]
    table = components.runs_table(runs, now=110.0)
    assert isinstance(table, html.Table)
    text = _text(table)
    assert "a/b:c" in text and "healthy" in text and "unknown" in text and "10 s ago" in text
    assert components.run_href("a/b:c") == "/ui/run/a/b:c"
    assert components.run_href("x y") == "/ui/run/x%20y"
    assert "No runs yet" in _text(components.runs_table([]))
