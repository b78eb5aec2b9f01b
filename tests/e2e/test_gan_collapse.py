"""Real GAN trainings on the 8-Gaussian ring, streamed through the collector to a real server:
the collapsing run gets a mode-collapse alert and the healthy run gets no alert at all."""

from __future__ import annotations

import httpx
import pytest

from tests.support import LiveServer, require, wait_evaluated


def _train(scenario: str, run: str, server: str) -> object:
    try:
        from stethoscope.collector.examples.gan_mixture import config_for, train
    except ImportError as exc:  # torch missing
        require(False, f"torch is needed for the GAN trainings ({exc})")
    from stethoscope.collector import Monitor

    config = config_for(scenario, seed=0)
    with Monitor(run=run, server=server, config={"scenario": scenario}, flush_interval=0.25) as mon:
        result = train(config, monitor=mon)
    return result


@pytest.mark.parametrize("scenario", ["collapse", "healthy"])
def test_collapse_is_flagged_and_healthy_run_is_quiet(live_server: LiveServer, scenario: str) -> None:
    run = f"gan-{scenario}"
    result = _train(scenario, run, live_server.url)
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        health = wait_evaluated(http, run)["health"]
        alerts = http.get(f"/api/v1/runs/{run}/alerts").json()
        coverage = http.get(f"/api/v1/runs/{run}/series/stethoscope/collapse/coverage").json()
    assert coverage["steps"], "the collapse detector produced its coverage signal"
    if scenario == "collapse":
        onset = result.collapse_onset()
        assert result.final_modes <= 3 and onset is not None  # ground truth: it really collapsed
        collapse = [a for a in alerts if a["kind"] == "mode_collapse"]
        assert collapse, f"no mode-collapse alert; alerts: {alerts}"
        # flagged after the collapse began (the lr jump at 1200) and within 500 steps of onset
        assert 1200 <= collapse[0]["first_step"] <= onset + 500
        assert collapse[0]["remedies"] and "coverage" in str(collapse[0]["evidence"]) + collapse[0]["message"]
    else:
        assert result.final_modes >= 7
        assert [a for a in alerts if a["severity"] in ("warning", "critical")] == []
        assert health["state"] == "healthy"
