"""The dashboard in a real browser: Debian's Chromium driven by playwright against a real server.

The server is the real one (``create_app`` under uvicorn on a free loopback port, the
``live_server`` fixture of ``tests/conftest.py``); the run is written straight into its store.
Skipped when Chromium or playwright is missing, except under ``CI=true`` where that fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stethoscope.app.storage import AlertChange, EmbeddingInput
from tests.support import LiveServer, require

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
RUN = "dcgan/lr2e-4:seed.0"  # slash and colon are allowed in run names and must survive URLs
NAN_STEP, INF_STEP, N = 412, 433, 600

pytestmark = pytest.mark.browser


def fill_run(store: Any) -> None:
    """A realistic GAN run: losses with a NaN and an Inf, D outputs, gradient norms of two
    modules (totals and per layer, one exact zero), collapse signals, ground truth, two embedding
    steps (8-d, fake collapsing) and one critical divergence alert."""
    rng = np.random.default_rng(0)
    steps = np.arange(N, dtype=np.int64)
    loss_d = 1.386 - 0.35 * (1 - np.exp(-steps / 200)) + 0.05 * rng.standard_normal(N)
    loss_g = 0.69 + 0.8 * (1 - np.exp(-steps / 150)) + 0.08 * rng.standard_normal(N)
    loss_d[NAN_STEP] = np.nan
    loss_g[INF_STEP] = np.inf
    d_x = 0.5 + 0.3 * (1 - np.exp(-steps / 300)) + 0.02 * rng.standard_normal(N)
    scalars = {
        "loss_D": (steps, loss_d),
        "loss_G": (steps, loss_g),
        "D_x": (steps, d_x),
        "D_G_z": (steps, 1 - d_x),
        "gt/modes_captured": (steps[::50], np.minimum(8, steps[::50] // 80 + 1).astype(float)),
    }
    for module, scale in (("G", 1.0), ("D", 4.0)):
        total = scale * np.exp(-steps / 250) + 1e-3
        scalars[f"grad_norm/{module}/total"] = (steps, total)
        for i, param in enumerate(("main.0.weight", "main.2.weight", "main.4.weight")):
            norms = total * 0.1**i * (1 + 0.2 * rng.random(N))
            scalars[f"grad_norm/{module}/{param}"] = (steps, norms)
    scalars["grad_norm/G/main.4.weight"][1][300] = 0.0
    embeddings = []
    for step, spread in ((200, 0.8), (400, 0.15)):
        real = rng.standard_normal((400, 8)).astype(np.float32)
        fake = (spread * rng.standard_normal((400, 8)) + 0.6).astype(np.float32)
        embeddings += [EmbeddingInput(step, "real", real), EmbeddingInput(step, "fake", fake)]
    store.ingest_batch(RUN, "batch-1", scalars, embeddings)
    at = np.array([200, 400], dtype=np.int64)
    store.append_series(
        RUN,
        {
            "stethoscope/collapse/coverage": (at, np.array([0.91, 0.38])),
            "stethoscope/collapse/recall": (at, np.array([0.88, 0.31])),
            "stethoscope/collapse/vendi_ratio": (at, np.array([0.95, 0.36])),
        },
    )
    store.apply_alert_changes(
        [
            AlertChange(
                run=RUN,
                kind="divergence",
                key="divergence/nonfinite",
                severity="critical",
                status="firing",
                step=NAN_STEP,
                message=f"loss_D is NaN at step {NAN_STEP}: the training has diverged.",
                evidence={"nonfinite_values": 1.0, "last_finite_loss_D": 1.09},
                remedies=[
                    {
                        "action": "Roll back to the last checkpoint and skip the batches",
                        "citation": "Chowdhery et al. 2022 (PaLM)",
                    },
                    {"action": "Lower the learning rate", "citation": "OLMo 2 (2024)"},
                ],
                detector="nonfinite",
                subject="loss_D",
            )
        ]
    )
    store.set_health(
        RUN,
        {
            "state": "critical",
            "firing": {"critical": 1, "warning": 0},
            "detectors": [
                {"name": "nonfinite", "state": "alarm", "reason": "loss_D is NaN"},
                {"name": "collapse", "state": "ok", "reason": ""},
                {"name": "gan_balance", "state": "waiting", "reason": "needs 200 steps, has 120"},
                {"name": "vanishing", "state": "unavailable", "reason": "no per-layer norms"},
            ],
        },
    )
    store.upsert_run("an-empty-run")


def _chromium() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - depends on the machine
        require(False, "the playwright Python package is not installed")
    require(
        shutil.which(CHROMIUM) is not None or Path(CHROMIUM).is_file(),
        f"Chromium not found at {CHROMIUM} (make browser installs Debian's)",
    )
    return sync_playwright


_FIGURES_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => ({
    title: (el.layout && el.layout.title && el.layout.title.text) || '',
    traces: (el.data || []).map(t => ({name: t.name, n: (t.x || []).length,
        x: Array.from(t.x || []).slice(-5), hover: Array.from(t.hovertext || [])})),
    all_x: (el.data || []).map(t => Array.from(t.x || [])),
    shapes: ((el.layout && el.layout.shapes) || []).map(s => s.x0),
}))"""


def _figure(page: Any, title_start: str) -> dict[str, Any]:
    for fig in page.evaluate(_FIGURES_JS):
        if fig["title"].startswith(title_start):
            return fig
    raise AssertionError(f"no chart titled {title_start!r} on the page")


def test_dashboard_in_chromium(live_server: LiveServer) -> None:
    sync_playwright = _chromium()
    store = live_server.app.state.store
    fill_run(store)
    ARTIFACTS.mkdir(exist_ok=True)
    base = live_server.url
    foreign: list[str] = []
    callback_bodies: list[str] = []

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.on(
                "request",
                lambda r: (
                    None if r.url.startswith((base, "data:", "blob:")) else foreign.append(r.url)
                ),
            )
            page.on(
                "response",
                lambda r: (
                    callback_bodies.append(r.text())
                    if "_dash-update-component" in r.url and r.ok
                    else None
                ),
            )
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))

            # -- runs page: the run, its health badge and firing counts
            page.goto(base + "/ui/")
            row = page.locator(f'#runs-table tr[data-run="{RUN}"]')
            row.wait_for(timeout=20_000)
            assert row.locator('.st-badge[title^="health"]').inner_text().lower() == "critical"
            assert row.locator('[data-severity="critical"]').inner_text() == "1"
            assert page.locator('#runs-table tr[data-run="an-empty-run"]').count() == 1
            assert page.title() == "Stethoscope"
            page.screenshot(path=str(ARTIFACTS / "runs_page.png"), full_page=True)

            # -- run page through the link
            row.locator("a").click()
            page.wait_for_url("**/ui/run/**")
            page.wait_for_function(
                "document.querySelectorAll('.js-plotly-plot').length >= 8", timeout=20_000
            )
            assert RUN in page.locator("#run-header h1").inner_text()
            header = page.locator("#run-header").inner_text()
            assert "needs 200 steps, has 120" in header and "no per-layer norms" in header
            assert "Stethoscope" in page.title()

            figs = page.evaluate(_FIGURES_JS)
            titles = [f["title"] for f in figs]
            for expected in (
                "Losses",
                "Discriminator outputs",
                "Gradient norm per module",
                "Collapse signals",
                "Embeddings at step 400",
                "Ground truth",
                "Per-layer gradient norms of D",
                "Per-layer gradient norms of G",
            ):
                assert any(t.startswith(expected) for t in titles), (expected, titles)
            for fig in figs:
                assert sum(t["n"] for t in fig["traces"]) > 0, fig["title"]

            losses = _figure(page, "Losses")
            nonfinite, alert_marks = losses["all_x"][0], losses["all_x"][1]
            assert NAN_STEP in nonfinite and INF_STEP in nonfinite
            hover = " ".join(losses["traces"][0]["hover"])
            assert "NaN" in hover and "+Inf" in hover
            assert NAN_STEP in alert_marks and NAN_STEP in losses["shapes"]
            grads = _figure(page, "Per-layer gradient norms of G")
            assert 300 in grads["all_x"][2]  # the zero norm, drawn at the bottom of the log axis

            # -- the alert is listed with its evidence and cited remedies
            card = page.locator('.st-alert[data-kind="divergence"]')
            assert card.count() == 1
            text = card.inner_text()
            assert "loss_D is NaN" in text and "PaLM" in text and "last_finite_loss_D" in text

            # -- live: new points, a new series and a new alert arrive without a reload
            page.evaluate("window.__no_reload = 1")
            loss_trace = next(t for t in losses["traces"] if t["name"] == "loss_D")
            before = loss_trace["n"]
            callback_bodies.clear()
            new = np.arange(N, N + 40, dtype=np.int64)
            store.ingest_batch(
                RUN,
                "batch-2",
                {
                    "loss_D": (new, np.full(40, 1.05)),
                    "loss_G": (new, np.full(40, 1.4)),
                    "loss_aux": (new, np.full(40, 0.2)),
                },
                [],
            )
            page.wait_for_function(
                """n => Array.from(document.querySelectorAll('.js-plotly-plot')).some(el =>
                    el.layout.title.text === 'Losses' &&
                    el.data.some(t => t.name === 'loss_D' && t.x[t.x.length - 1] === n) &&
                    el.data.some(t => t.name === 'loss_aux'))""",
                arg=int(new[-1]),
                timeout=20_000,
            )
            assert page.evaluate("window.__no_reload") == 1
            grown = _figure(page, "Losses")
            after = next(t for t in grown["traces"] if t["name"] == "loss_D")["n"]
            assert after == before + 40
            # the growth came as patches, not as whole figures
            patched = [b for b in callback_bodies if "run-state" in b]
            assert patched and any("__dash_patch_update" in b for b in patched)
            assert not any('"figure":{"data"' in b.replace(" ", "") for b in patched)

            store.apply_alert_changes(
                [
                    AlertChange(
                        run=RUN,
                        kind="mode_collapse",
                        key="mode_collapse/embeddings",
                        severity="warning",
                        status="firing",
                        step=N + 20,
                        message="Recall fell to 0.31 of the real reference in 2 evaluations.",
                        evidence={"recall": 0.31},
                        remedies=[
                            {"action": "Minibatch discrimination", "citation": "Salimans 2016"}
                        ],
                        detector="collapse",
                        subject=None,
                    )
                ]
            )
            page.locator('.st-alert[data-kind="mode_collapse"]').wait_for(timeout=20_000)
            page.wait_for_function(
                """s => Array.from(document.querySelectorAll('.js-plotly-plot')).some(el =>
                    el.layout.title.text === 'Losses' && el.data[1].x.includes(s))""",
                arg=N + 20,
                timeout=20_000,
            )
            # the divergence alert resolves: its band is redrawn in place, on every chart
            first = next(a for a in store.list_alerts(RUN) if a.kind == "divergence")
            store.apply_alert_changes(
                [
                    AlertChange(
                        run=RUN,
                        kind="divergence",
                        key="divergence/nonfinite",
                        severity="critical",
                        status="resolved",
                        step=N + 30,
                        message="Finite again for 50 steps.",
                        evidence={},
                        remedies=[],
                        detector="nonfinite",
                        subject="loss_D",
                        alert_id=first.id,
                    )
                ]
            )
            page.wait_for_function(
                """s => Array.from(document.querySelectorAll('.js-plotly-plot')).every(el =>
                    el.layout.title.text.startsWith('Embeddings') ||
                    (el.layout.shapes[1].x1 === s && el.data[1].hovertext[0].includes('resolved')))""",
                arg=N + 30,
                timeout=20_000,
            )
            assert page.evaluate("window.__no_reload") == 1
            assert not errors, errors
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "run_page.png"), full_page=True)

            # -- a run that does not exist says so
            page.goto(base + "/ui/run/no-such-run")
            page.get_by_text("not found").first.wait_for(timeout=20_000)
            page.goto(base + "/ui/run?name=" + RUN.replace("/", "%2F").replace(":", "%3A"))
            page.wait_for_function(
                "document.querySelectorAll('.js-plotly-plot').length >= 8", timeout=20_000
            )
        finally:
            browser.close()
    assert not foreign, f"the dashboard fetched from outside the server: {foreign[:5]}"
