"""The whole path with real parts: torch training -> collector -> uvicorn server -> detectors ->
alerts back in the training process."""

from __future__ import annotations

import math
import threading
import time

import httpx
import pytest

from tests.support import LiveServer, ResponseDroppingProxy, require


def _torch():
    try:
        import torch as t
    except ImportError:
        t = None
    require(t is not None, "torch is not installed (pip install -c constraints-dev.txt '.[dev]')")
    return t


def _regression_problem(t, seed: int = 0):
    gen = t.Generator().manual_seed(seed)
    x = t.randn(256, 8, generator=gen)
    y = x @ t.randn(8, 1, generator=gen) + 0.1 * t.randn(256, 1, generator=gen)
    t.manual_seed(seed)
    net = t.nn.Sequential(t.nn.Linear(8, 32), t.nn.Tanh(), t.nn.Linear(32, 1))
    return x, y, net


def _series(http: httpx.Client, run: str, name: str) -> tuple[list[int], list]:
    body = http.get(f"/api/v1/runs/{run}/series/{name}")
    assert body.status_code == 200, body.text
    data = body.json()
    return data["steps"], data["values"]


def test_real_training_stream_is_stored_intact_including_nan(live_server: LiveServer) -> None:
    from stethoscope.collector import Monitor

    t = _torch()
    x, y, net = _regression_problem(t)
    opt = t.optim.SGD(net.parameters(), lr=0.05)
    sent: dict[int, float] = {}
    with Monitor(run="intact", server=live_server.url, config={"lr": 0.05}, flush_interval=0.2) as mon:
        mon.watch(net, name="net", every=5)
        for step in range(120):
            opt.zero_grad()
            loss = t.nn.functional.mse_loss(net(x), y)
            loss.backward()
            opt.step()
            aux = math.nan if step == 77 else float(step) * 0.5
            mon.log(step, loss=loss, loss_aux=aux)  # a 0-d tensor and a float
            sent[step] = float(loss.detach())
    with live_server.client() as http:
        steps, values = _series(http, "intact", "loss")
        assert steps == list(range(120))
        assert values == pytest.approx([sent[s] for s in range(120)], rel=1e-6)
        steps, aux = _series(http, "intact", "loss_aux")
        assert aux[77] == "NaN" and aux[76] == 38.0 and len(aux) == 120
        names = {s["name"] for s in http.get("/api/v1/runs/intact/series").json()}
        assert {"grad_norm/net/total", "grad_norm/net/0.weight", "grad_norm/net/2.bias"} <= names
        gsteps, gvals = _series(http, "intact", "grad_norm/net/total")
        assert gsteps == list(range(0, 120, 5)) and all(v > 0 for v in gvals)
        run = http.get("/api/v1/runs/intact").json()
        assert run["status"] == "finished" and run["config"] == {"lr": 0.05}
        # the NaN in `loss_aux` is a finding: a critical divergence alert
        alerts = http.get("/api/v1/runs/intact/alerts").json()
        assert any(a["key"] == "divergence/nonfinite" and a["step"] == 77 for a in alerts)


def test_injected_nan_alert_reaches_on_alert_and_stops_cleanly(live_server: LiveServer) -> None:
    from stethoscope.collector import Monitor, StopTraining

    t = _torch()
    x, y, net = _regression_problem(t, seed=1)
    opt = t.optim.SGD(net.parameters(), lr=0.05)
    received = []
    got_alert = threading.Event()

    def on_alert(alert) -> None:
        received.append(alert)
        got_alert.set()

    stopped_at = None
    mon = Monitor(run="nan-stop", server=live_server.url, on_alert=on_alert, stop_on="critical", flush_interval=0.1)
    deadline = time.monotonic() + 60
    step = 0
    try:
        while time.monotonic() < deadline:
            opt.zero_grad()
            loss = t.nn.functional.mse_loss(net(x), y)
            if step >= 40:
                loss = loss * float("nan")  # the training diverges
            loss.backward()
            opt.step()
            mon.log(step, loss=loss)
            step += 1
            time.sleep(0.005)
    except StopTraining as stop:
        stopped_at = step
        assert stop.alert.severity == "critical" and stop.alert.kind == "divergence"
    finally:
        mon.close()
    assert stopped_at is not None, "StopTraining was never raised"
    assert got_alert.is_set()
    critical = [a for a in received if a.severity == "critical"]
    assert critical and critical[0].key == "divergence/nonfinite" and critical[0].step == 40
    assert critical[0].remedies, "a critical alert carries remedies"
    assert mon.should_stop and any(a.key == "divergence/nonfinite" for a in mon.alerts)


def test_a_nan_that_recovers_inside_one_flush_still_reaches_the_training(
        live_server: LiveServer) -> None:
    """One NaN loss followed by 60 finite values, all in one 1 s flush: the alert fires and
    resolves inside the batch, and still reaches on_alert and stop_on."""
    from stethoscope.collector import Monitor, StopTraining

    received = []
    mon = Monitor(run="blip", server=live_server.url, on_alert=received.append,
                  stop_on="critical", flush_interval=1.0)
    with pytest.raises(StopTraining) as info:
        for step in range(100):
            mon.log(step, loss=math.nan if step == 20 else 1.0 + 0.01 * (step % 5))
        mon.flush()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            mon.log(step, loss=1.0)  # raises once the alert came back
            step += 1
            time.sleep(0.05)
    mon.close()
    assert (info.value.alert.status, info.value.alert.severity) == ("resolved", "critical")
    assert [(a.key, a.first_step, a.status, a.resolved_step) for a in received] == [
        ("divergence/nonfinite", 20, "resolved", 70)]
    with live_server.client() as http:
        metrics = http.get("/metrics").text
        history = http.get("/api/v1/runs/blip/alerts/history").json()
    assert 'stethoscope_alert_episodes{kind="divergence",run="blip",severity="critical"} 1.0' \
        in metrics
    assert [e["event"] for e in history] == ["fired", "resolved"]


def test_retried_batch_after_lost_response_is_not_duplicated(live_server: LiveServer) -> None:
    from stethoscope.collector import Monitor

    proxy = ResponseDroppingProxy(live_server.url, drop=1)
    try:
        with Monitor(run="retry", server=proxy.url, flush_interval=0.2, backoff_initial=0.1) as mon:
            for step in range(200):
                mon.log(step, loss=1.0 / (step + 1))
                if step % 50 == 0:
                    time.sleep(0.3)  # several batches, the first of which loses its answer
    finally:
        proxy.close()
    assert len(proxy.dropped) == 1
    with live_server.client() as http:
        steps, values = _series(http, "retry", "loss")
        assert steps == list(range(200))
        assert values == pytest.approx([1.0 / (s + 1) for s in range(200)])


def test_collector_survives_an_absent_server_and_delivers_later(tmp_path) -> None:
    from stethoscope.collector import Monitor
    from tests.support import free_port, stop_server

    port = free_port()
    mon = Monitor(run="late", server=f"http://127.0.0.1:{port}", flush_interval=0.1, backoff_initial=0.1, backoff_max=0.5, close_timeout=30)
    for step in range(100):
        mon.log(step, loss=float(step))  # nothing listens yet: no exception, no wait
    # the server comes up on the same port afterwards
    import uvicorn

    from stethoscope.app import Settings, create_app

    app = create_app(Settings(db_path=str(tmp_path / "late.db"), port=port, ui=False))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for step in range(100, 150):
            mon.log(step, loss=float(step))
        assert mon.close() is True
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            steps, values = _series(http, "late", "loss")
        assert steps == list(range(150)) and values == [float(s) for s in range(150)]
    finally:
        stop_server(server, thread)


def test_detector_configuration_travels_with_the_run(live_server: LiveServer) -> None:
    from stethoscope.collector import Monitor

    with pytest.raises(ValueError, match="warn_zz"):
        Monitor(run="cfg", server=live_server.url, detectors={"spike": {"warn_zz": 8}})
    config = {"roles": {"loss_d": "critic_loss"}, "enabled": {"nonfinite": False}}
    with Monitor(run="cfg", server=live_server.url, detectors=config, flush_interval=0.1) as mon:
        for step in range(60):
            mon.log(step, critic_loss=float("nan") if step == 30 else 0.5 + 0.01 * (step % 3))
    with live_server.client() as http:
        run = http.get("/api/v1/runs/cfg").json()
        alerts = http.get("/api/v1/runs/cfg/alerts").json()
    assert run["detectors"] == config
    assert alerts == []  # the NaN detector was switched off for this run
    rows = {d["name"]: d for d in run["health"]["detectors"]}
    assert rows["nonfinite"]["state"] == "unavailable"
