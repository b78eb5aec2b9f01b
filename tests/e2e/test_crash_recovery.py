"""A real server killed with SIGKILL at any moment: every stored point reaches the detectors
exactly once, and no alert is lost or doubled."""

from __future__ import annotations

import random
import threading
import time

import httpx
import numpy as np
import pytest

from stethoscope.app.storage import SQLiteStore
from tests.support import ServerProcess

pytestmark = pytest.mark.timeout(240)


def _wait(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _checked_points(http: httpx.Client, run: str) -> int | None:
    """The values the run's NaN detector has checked (its health row, when all is finite)."""
    rows = {d["name"]: d for d in http.get(f"/api/v1/runs/{run}").json()["health"]["detectors"]}
    row = rows.get("nonfinite")
    return int(row["reason"].split()[0]) if row and row["state"] == "ok" else None


def test_a_batch_stored_just_before_a_crash_is_evaluated_on_restart(tmp_path) -> None:
    db = tmp_path / "s.db"
    server = ServerProcess(db)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            ok = {"loss": {"steps": list(range(100)), "values": [1.0 + 0.01 * (i % 7)
                                                                 for i in range(100)]}}
            assert http.post("/api/v1/runs/r/batches", json={"batch_id": "a", "scalars": ok}
                             ).status_code == 200
        server.kill()
        # the moment that used to lose it: the batch is committed, its detectors never ran
        store = SQLiteStore(db)
        values = [1.0] * 20
        values[5] = float("nan")
        assert store.ingest_batch("r", "b", {"loss": (np.arange(100, 120),
                                                      np.array(values))}, []) == 2
        store.close()
        server.start()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            alerts = _wait(lambda: http.get("/api/v1/runs/r/alerts").json(), what="the alert")
            assert [(a["key"], a["first_step"], a["severity"]) for a in alerts] == [
                ("divergence/nonfinite", 105, "critical")]
            # the collector's retry of that batch is a duplicate, and brings the alert back
            answer = http.post("/api/v1/runs/r/batches", json={
                "batch_id": "b", "scalars": {"loss": {"steps": list(range(100, 120)),
                                                      "values": [1.0] * 5 + ["NaN"] + [1.0] * 14}}})
            body = answer.json()
            assert body["duplicate"] is True and [a["key"] for a in body["alerts"]] == [
                "divergence/nonfinite"]
    finally:
        server.stop()


def test_kill_9_while_streaming_loses_and_repeats_nothing(tmp_path) -> None:
    from stethoscope.collector import Monitor

    db = tmp_path / "k.db"
    server = ServerProcess(db)
    server.start()
    rng = random.Random(7)
    steps = 3000
    bursts = list(range(400, 2600, 400))  # a 3-step NaN burst every 400 steps
    kill_at = {500, 1150, 1800, 2450}
    fired: list = []
    restart: threading.Thread | None = None

    def restart_later() -> None:
        time.sleep(rng.uniform(0.0, 0.5))
        server.start()

    try:
        with Monitor(run="crashy", server=server.url, flush_interval=0.05, on_alert=fired.append,
                     backoff_initial=0.05, backoff_max=0.3, timeout=5.0,
                     close_timeout=120.0) as mon:
            for step in range(steps):
                if step in kill_at:  # wherever the server is: mid-request, mid-commit, idle
                    if restart is not None:
                        restart.join()
                    server.kill()
                    restart = threading.Thread(target=restart_later, daemon=True)
                    restart.start()
                nan = any(b <= step < b + 3 for b in bursts)
                mon.log(step, loss=float("nan") if nan else 1.0 + 0.05 * np.sin(step / 7.0),
                        loss_G=0.7 + 0.05 * np.cos(step / 5.0))
                if step % 10 == 0:
                    time.sleep(0.01 + 0.02 * rng.random())
            assert restart is not None
            restart.join()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            series = {s["name"]: s for s in http.get("/api/v1/runs/crashy/series").json()}
            # every point stored once
            assert series["loss"]["points"] == steps and series["loss_G"]["points"] == steps
            assert series["loss"]["nonfinite"] == 3 * len(bursts)
            # every stored point reached the detectors once: the NaN detector checked exactly
            # the stored values of both series (once it has caught up after the last restart)
            checked = _wait(lambda: _checked_points(http, "crashy"), what="the detectors")
            assert checked == 2 * steps
            [alert] = http.get("/api/v1/runs/crashy/alerts").json()
            assert alert["key"] == "divergence/nonfinite" and alert["status"] == "resolved"
            assert alert["episodes"] == len(bursts)  # no burst missed, none counted twice
            history = http.get("/api/v1/runs/crashy/alerts/history").json()
            fired_steps = [e["step"] for e in history if e["event"] in ("fired", "reopened")]
            assert fired_steps == bursts
        # the training process heard of every burst that fired
        assert {a.id for a in fired} == {alert["id"]} and len(fired) >= 1
    finally:
        server.stop()
