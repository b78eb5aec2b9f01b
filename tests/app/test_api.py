"""The HTTP API against a real uvicorn server and SQLite file."""

from __future__ import annotations

import base64
import uuid

import numpy as np
import pytest

from tests.support import LiveServer, start_server, stop_server


def batch(scalars: dict, embeddings: list | None = None, batch_id: str | None = None, cursor: int = 0):
    return {
        "batch_id": batch_id or uuid.uuid4().hex,
        "alert_cursor": cursor,
        "scalars": scalars,
        "embeddings": embeddings or [],
    }


def emb(step: int, name: str, array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array, dtype="<f4")
    return {
        "step": step,
        "name": name,
        "dtype": "float32",
        "shape": list(array.shape),
        "data": base64.b64encode(array.tobytes()).decode(),
    }


def test_non_finite_values_survive_wire_storage_and_api(live_server: LiveServer) -> None:
    with live_server.client() as http:
        values = [0.5, "NaN", "Infinity", "-Infinity", 1e-300, -2.25]
        r = http.post("/api/v1/runs/r1/batches", json=batch({"loss": {"steps": list(range(6)), "values": values}}))
        assert r.status_code == 200, r.text
        assert r.json()["stored_points"] == 6
        got = http.get("/api/v1/runs/r1/series/loss").json()
        assert got["steps"] == list(range(6))
        assert got["values"] == [0.5, "NaN", "Infinity", "-Infinity", 1e-300, -2.25]
        info = http.get("/api/v1/runs/r1/series").json()
        assert info == [{"name": "loss", "points": 6, "first_step": 0, "last_step": 5, "nonfinite": 3}]


def test_retried_batch_is_stored_once(live_server: LiveServer) -> None:
    with live_server.client() as http:
        body = batch({"loss": {"steps": [1, 2, 3], "values": [1.0, 2.0, 3.0]}}, batch_id="retry-me")
        first = http.post("/api/v1/runs/r/batches", json=body).json()
        second = http.post("/api/v1/runs/r/batches", json=body).json()
        assert (first["duplicate"], second["duplicate"]) == (False, True)
        assert second["stored_points"] == 0
        assert http.get("/api/v1/runs/r/series/loss").json()["values"] == [1.0, 2.0, 3.0]


def test_run_create_update_and_list_newest_first(live_server: LiveServer) -> None:
    with live_server.client() as http:
        a = http.put("/api/v1/runs/older", json={"config": {"lr": 2e-4}, "status": "running"})
        assert a.status_code == 200 and a.json()["config"] == {"lr": 2e-4}
        http.put("/api/v1/runs/newer", json={})
        http.put("/api/v1/runs/older", json={"status": "finished"})
        runs = http.get("/api/v1/runs").json()
        assert [r["name"] for r in runs] == ["newer", "older"]
        older = http.get("/api/v1/runs/older").json()
        assert older["status"] == "finished" and older["config"] == {"lr": 2e-4}
        assert "state" in older["health"]


def test_series_names_with_slashes_and_downsampling_keeps_spike_and_nan(live_server: LiveServer) -> None:
    n = 20_000
    values = np.random.default_rng(0).normal(1.0, 0.01, n)
    values[12_345] = 50.0
    wire = values.tolist()
    wire[777] = "NaN"
    with live_server.client() as http:
        http.post("/api/v1/runs/long/batches", json=batch({"grad_norm/G/main.0.weight": {"steps": list(range(n)), "values": wire}}))
        r = http.get("/api/v1/runs/long/series/grad_norm/G/main.0.weight", params={"max_points": 500})
        body = r.json()
        assert body["downsampled"] is True and body["total_points"] == n
        assert len(body["steps"]) <= 510
        points = dict(zip(body["steps"], body["values"], strict=True))
        assert points[12_345] == 50.0
        assert points[777] == "NaN"
        window = http.get("/api/v1/runs/long/series/grad_norm/G/main.0.weight", params={"start": 100, "end": 199}).json()
        assert window["steps"] == list(range(100, 200))


def test_embeddings_round_trip_binary(live_server: LiveServer) -> None:
    fake = np.random.default_rng(1).normal(size=(64, 8)).astype(np.float32)
    real = np.random.default_rng(2).normal(size=(32, 8)).astype(np.float32)
    with live_server.client() as http:
        r = http.post("/api/v1/runs/e/batches", json=batch({}, [emb(100, "fake", fake), emb(100, "real", real)]))
        assert r.status_code == 200 and r.json()["stored_embeddings"] == 2
        assert http.get("/api/v1/runs/e/embeddings").json() == [
            {"step": 100, "name": "fake", "n": 64, "d": 8},
            {"step": 100, "name": "real", "n": 32, "d": 8},
        ]
        got = {e["name"]: e for e in http.get("/api/v1/runs/e/embeddings/latest").json()}
        decoded = np.frombuffer(base64.b64decode(got["fake"]["data"]), "<f4").reshape(got["fake"]["shape"])
        np.testing.assert_array_equal(decoded, fake)


@pytest.mark.parametrize(
    ("body", "field", "hint"),
    [
        (batch({"loss": {"steps": [1, 2], "values": [1.0]}}), "scalars.loss", "one value per step"),
        (batch({"loss": {"steps": [1], "values": ["nan-ish"]}}), "scalars.loss.values[0]", ""),
        (batch({"loss": {"steps": [-1], "values": [1.0]}}), "scalars.loss.steps[0]", "greater than or equal to 0"),
        (batch({"bad name!": {"steps": [1], "values": [1.0]}}), "scalars", "not allowed"),
        (batch({"stethoscope/collapse/coverage": {"steps": [1], "values": [1.0]}}), "scalars", "reserved"),
        ({"scalars": {}}, "batch_id", "Field required"),
        (batch({}, [{"step": 1, "name": "fake", "shape": [2, 2], "data": "!!"}]), "embeddings[0].data", "base64"),
        (batch({}, [{"step": 1, "name": "fake", "shape": [3, 2], "data": base64.b64encode(b"0" * 8).decode()}]), "embeddings[0]", "needs 24"),
        (batch({}) | {"extra": 1}, "extra", "Extra inputs"),
        (batch({"loss": {"steps": [1], "values": ["nan"]}}), "scalars.loss.values[0]", ""),
        (batch({"loss": {"steps": [1], "values": [True]}}), "scalars.loss.values[0]", ""),
        (batch({"loss": {"steps": [1], "values": ["1.5"]}}), "scalars.loss.values[0]", ""),
        (batch({"loss": {"steps": [2**64], "values": [1.0]}}), "scalars.loss.steps[0]", "less than or equal"),
        (batch({}, cursor=2**64), "alert_cursor", "less than or equal"),
    ],
)
def test_invalid_batches_get_422_naming_field_and_fix_and_lose_nothing(
    live_server: LiveServer, body: dict, field: str, hint: str
) -> None:
    with live_server.client() as http:
        http.post("/api/v1/runs/keep/batches", json=batch({"loss": {"steps": [0], "values": [0.25]}}))
        r = http.post("/api/v1/runs/keep/batches", json=body)
        assert r.status_code == 422
        detail = r.json()["detail"]
        assert field in detail and hint in detail, detail
        assert http.get("/api/v1/runs/keep/series/loss").json()["values"] == [0.25]


def test_other_client_errors_are_clear(live_server: LiveServer) -> None:
    with live_server.client() as http:
        r = http.post("/api/v1/runs/bad%20name/batches", json=batch({}))
        assert r.status_code == 422 and "run" in r.json()["detail"]
        r = http.get("/api/v1/runs/missing")
        assert r.status_code == 404 and "GET /api/v1/runs" in r.json()["detail"]
        http.put("/api/v1/runs/x", json={})
        r = http.get("/api/v1/runs/x/series/nope")
        assert r.status_code == 404 and "no series" in r.json()["detail"]
        r = http.get("/api/v1/runs/x/embeddings/latest")
        assert r.status_code == 404
        r = http.put("/api/v1/runs/x", json={"status": "exploded"})
        assert r.status_code == 422 and "status" in r.json()["detail"]
        r = http.post("/api/v1/runs/x/batches", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422 and "not valid JSON at character" in r.json()["detail"]


def test_nan_raises_critical_divergence_alert_returned_on_ingest(live_server: LiveServer) -> None:
    with live_server.client() as http:
        steps = list(range(50))
        values = [1.0 / (1 + s) for s in steps]
        http.post("/api/v1/runs/nan/batches", json=batch({"loss_D": {"steps": steps, "values": values}}))
        r = http.post("/api/v1/runs/nan/batches", json=batch({"loss_D": {"steps": [50], "values": ["NaN"]}}))
        alerts = r.json()["alerts"]
        critical = [a for a in alerts if a["kind"] == "divergence" and a["severity"] == "critical"]
        assert critical and critical[0]["status"] == "firing" and critical[0]["step"] == 50
        assert critical[0]["remedies"] and critical[0]["message"]
        cursor = r.json()["alert_cursor"]
        assert cursor >= critical[0]["seq"]
        # the cursor hides what the client has already seen; the run's health shows it
        again = http.post("/api/v1/runs/nan/batches", json=batch({}, cursor=cursor)).json()
        assert again["alerts"] == []
        assert http.get("/api/v1/runs/nan").json()["health"]["state"] == "critical"
        listed = http.get("/api/v1/runs/nan/alerts", params={"status": "firing"}).json()
        assert [a["id"] for a in listed] == [critical[0]["id"]]
        metrics = http.get("/metrics").text
        assert 'stethoscope_alerts_firing{kind="divergence",run="nan",severity="critical"} 1.0' in metrics
        assert "stethoscope_ingested_points_total 51.0" in metrics


def test_data_and_alerts_survive_a_restart(tmp_path) -> None:
    db = tmp_path / "restart.db"
    live, server, thread = start_server(db, ui=False)
    with live.client() as http:
        http.post("/api/v1/runs/r/batches", json=batch({"loss": {"steps": [0, 1], "values": [1.0, "NaN"]}}))
        before = http.get("/api/v1/runs/r/alerts").json()
    stop_server(server, thread)
    live, server, thread = start_server(db, ui=False)
    try:
        with live.client() as http:
            assert http.get("/api/v1/runs/r/series/loss").json()["values"] == [1.0, "NaN"]
            assert http.get("/api/v1/runs/r/alerts").json() == before
            # a second NaN updates the existing firing alert instead of opening another
            http.post("/api/v1/runs/r/batches", json=batch({"loss": {"steps": [2], "values": ["NaN"]}}))
            after = http.get("/api/v1/runs/r/alerts", params={"status": "firing"}).json()
            assert len([a for a in after if a["key"] == "divergence/nonfinite"]) == 1
    finally:
        stop_server(server, thread)


def test_openapi_documents_the_api(live_server: LiveServer) -> None:
    with live_server.client() as http:
        spec = http.get("/openapi.json").json()
        paths = set(spec["paths"])
        for path in [
            "/api/v1/runs",
            "/api/v1/runs/{run}",
            "/api/v1/runs/{run}/batches",
            "/api/v1/runs/{run}/series/{name}",
            "/api/v1/runs/{run}/embeddings/{step}",
            "/api/v1/runs/{run}/alerts",
        ]:
            assert path in paths, path


def test_per_run_detector_configuration(live_server: LiveServer) -> None:
    with live_server.client() as http:
        bad = http.put("/api/v1/runs/cfg", json={"detectors": {"spike": {"warn_zz": 3}}})
        assert bad.status_code == 422
        assert "warn_zz" in bad.json()["detail"] and "valid" in bad.json()["detail"]
        bad = http.put("/api/v1/runs/cfg", json={"detectors": {"roles": {"loss_x": "errD"}}})
        assert bad.status_code == 422 and "loss_x" in bad.json()["detail"]
        ok = http.put("/api/v1/runs/cfg", json={"detectors": {"enabled": {"nonfinite": False}}})
        assert ok.status_code == 200 and ok.json()["detectors"] == {"enabled": {"nonfinite": False}}
        r = http.post("/api/v1/runs/cfg/batches", json=batch({"loss": {"steps": [0, 1], "values": [1.0, "NaN"]}}))
        assert r.json()["alerts"] == []  # the NaN detector is off for this run, as configured
        rows = {d["name"]: d for d in http.get("/api/v1/runs/cfg").json()["health"]["detectors"]}
        assert rows["nonfinite"]["state"] == "unavailable" and "disabled" in rows["nonfinite"]["reason"]
        # switching it back on rebuilds the detectors: the next NaN is caught
        http.put("/api/v1/runs/cfg", json={"detectors": {}})
        r = http.post("/api/v1/runs/cfg/batches", json=batch({"loss": {"steps": [2], "values": ["NaN"]}}))
        assert [a["key"] for a in r.json()["alerts"]] == ["divergence/nonfinite"]


def test_embedding_evaluations_run_off_the_request_path(live_server: LiveServer) -> None:
    from tests.support import wait_evaluated

    rng = np.random.default_rng(0)
    angles = 2 * np.pi * np.arange(8) / 8
    centres = 2 * np.stack([np.cos(angles), np.sin(angles)], 1)
    with live_server.client() as http:
        for step in range(0, 1000, 100):
            real = centres[rng.integers(0, 8, 512)] + 0.02 * rng.standard_normal((512, 2))
            fake = centres[rng.integers(0, 8, 512)] + 0.02 * rng.standard_normal((512, 2))
            if step >= 500:
                fake = centres[0] + 0.02 * rng.standard_normal((512, 2))  # collapsed to one mode
            r = http.post("/api/v1/runs/emb/batches", json=batch({}, [emb(step, "fake", fake), emb(step, "real", real)]))
            assert r.status_code == 200 and r.json()["stored_embeddings"] == 2
        record = wait_evaluated(http, "emb")
        coverage = http.get("/api/v1/runs/emb/series/stethoscope/collapse/coverage").json()
        assert coverage["steps"] == list(range(0, 1000, 100))
        assert min(coverage["values"][:5]) > 0.8 and max(coverage["values"][5:]) < 0.3
        alerts = http.get("/api/v1/runs/emb/alerts").json()
        assert [a["kind"] for a in alerts] == ["mode_collapse"] and alerts[0]["first_step"] == 700
        assert record["health"]["state"] in ("warning", "critical")
        # the alert reaches the collector on its next batch
        again = http.post("/api/v1/runs/emb/batches", json=batch({})).json()
        assert [a["kind"] for a in again["alerts"]] == ["mode_collapse"]


def test_a_duplicate_batch_is_not_fed_to_the_detectors_again(live_server: LiveServer) -> None:
    from tests.support import wait_evaluated

    rng = np.random.default_rng(5)
    body = batch({}, [emb(100, "fake", rng.normal(size=(64, 4))), emb(100, "real", rng.normal(size=(64, 4)))], batch_id="twice")
    with live_server.client() as http:
        http.post("/api/v1/runs/dup/batches", json=body)
        http.post("/api/v1/runs/dup/batches", json=body)
        wait_evaluated(http, "dup")
        vendi = http.get("/api/v1/runs/dup/series/stethoscope/collapse/vendi").json()
    assert vendi["steps"] == [100]  # evaluated once, not once per delivery


def test_api_downsampling_keeps_alert_steps(live_server: LiveServer) -> None:
    n = 10_000
    smooth = np.linspace(2.0, 1.0, n)
    with live_server.client() as http:
        http.post("/api/v1/runs/ds/batches", json=batch({"loss": {"steps": list(range(n)), "values": smooth.tolist()}}))
        http.post("/api/v1/runs/ds/batches", json=batch({"aux_loss": {"steps": [4321], "values": ["NaN"]}}))
        got = http.get("/api/v1/runs/ds/series/loss", params={"max_points": 100}).json()
    assert got["downsampled"] and 4321 in got["steps"]  # the alert's step, though loss is smooth there


def test_reconfiguring_detectors_resolves_their_firing_alerts(live_server: LiveServer) -> None:
    with live_server.client() as http:
        http.post("/api/v1/runs/rc/batches", json=batch({"loss": {"steps": [0, 1], "values": [1.0, "NaN"]}}))
        http.put("/api/v1/runs/rc", json={"detectors": {"spike": {"warn_z": 8}}})
        [alert] = http.get("/api/v1/runs/rc/alerts").json()
        assert alert["status"] == "resolved" and "reconfigured" in alert["resolved_message"]
        assert "NaN" in alert["message"]  # the firing record is kept
        assert http.get("/api/v1/runs/rc").json()["health"]["state"] != "critical"


def test_alerts_resolve_after_a_crash_and_restart(tmp_path) -> None:
    """The detector state is saved with each alert change, so resumed detectors resolve it."""
    import signal
    import subprocess
    import sys
    import time

    import httpx

    from tests.support import free_port

    db = tmp_path / "crash.db"
    port = free_port()
    cmd = [sys.executable, "-m", "stethoscope.app.cli", "serve", "--port", str(port), "--db", str(db)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    http.get("/healthz")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the server did not start"
                    time.sleep(0.1)
            http.post("/api/v1/runs/c/batches", json=batch({"loss": {"steps": [0, 1], "values": [1.0, "NaN"]}}))
    finally:
        proc.send_signal(signal.SIGKILL)  # a crash: no shutdown, nothing saved at exit
        proc.wait(timeout=30)
    live, server, thread = start_server(db, ui=False)
    try:
        with live.client() as http:
            steps = list(range(2, 80))
            http.post("/api/v1/runs/c/batches", json=batch({"loss": {"steps": steps, "values": [1.0] * len(steps)}}))
            [alert] = http.get("/api/v1/runs/c/alerts").json()
        assert alert["status"] == "resolved"
    finally:
        stop_server(server, thread)


def test_oversized_body_is_refused_before_reading(tmp_path) -> None:
    live, server, thread = start_server(tmp_path / "big.db", ui=False, max_request_bytes=4096)
    try:
        with live.client() as http:
            values = list(range(2000))
            r = http.post("/api/v1/runs/big/batches", json=batch({"loss": {"steps": values, "values": values}}))
            assert r.status_code == 413 and "STETHOSCOPE_MAX_REQUEST_BYTES" in r.json()["detail"]
            small = http.post("/api/v1/runs/big/batches", json=batch({"loss": {"steps": [0], "values": [1.0]}}))
            assert small.status_code == 200
    finally:
        stop_server(server, thread)
