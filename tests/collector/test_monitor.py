"""Monitor API: construction, the hot path's value handling, lifecycle, alerts and stop."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import numpy as np
import pytest

from stethoscope.collector import Monitor, StethoscopeWarning, StopTraining
from tests.collector.fakes import FakeServer, alert, wait_for

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"run": ""}, "run name"),
        ({"run": "-leading-dash"}, "run name"),
        ({"run": "has space"}, "run name"),
        ({"run": "x" * 129}, "run name"),
        ({"run": 5}, "run name"),
        ({"run": "ok", "server": "ftp://host"}, "http"),
        ({"run": "ok", "server": "not a url"}, "server"),
        ({"run": "ok", "config": [1, 2]}, "config must be a mapping"),
        ({"run": "ok", "on_alert": 3}, "on_alert"),
        ({"run": "ok", "stop_on": "fatal"}, "stop_on"),
        ({"run": "ok", "flush_interval": 0}, "flush_interval"),
        ({"run": "ok", "flush_interval": math.nan}, "flush_interval"),
        ({"run": "ok", "timeout": -1}, "timeout"),
        ({"run": "ok", "max_queue_points": 0}, "max_queue_points"),
        ({"run": "ok", "flush_points": 2.5}, "flush_points"),
        ({"run": "ok", "transport": object()}, "transport"),
    ],
)
def test_invalid_constructor_arguments_raise_value_error(kwargs: dict, match: str) -> None:
    kwargs.setdefault("server", "http://127.0.0.1:1")
    with pytest.raises(ValueError, match=match):
        Monitor(**kwargs)


def test_valid_run_names_accepted(make_monitor) -> None:
    for name in ("a", "dcgan-lr2e-4", "A.b_c-9", "x" * 128):
        make_monitor(name)


def test_server_from_environment_and_offline_warning(monkeypatch, fake: FakeServer) -> None:
    monkeypatch.setenv("STETHOSCOPE_SERVER", "http://from-env.test")
    with Monitor("envrun", transport=fake.transport, flush_interval=0.02) as mon:
        assert mon.server == "http://from-env.test"
        mon.log(0, x=1.0)
    assert fake.series("x") == ([0], [1.0])
    monkeypatch.delenv("STETHOSCOPE_SERVER")
    with pytest.warns(StethoscopeWarning, match="offline"):
        mon = Monitor("offline")
    mon.log(0, x=1.0)
    assert mon.close() is True


def test_start_and_finish_put_config_and_status(make_monitor, fake: FakeServer) -> None:
    mon = make_monitor(config={"lr": 2e-4, "beta": np.float64(0.5), "bad": math.inf})
    mon.log(0, loss=1.0)
    mon.close()
    puts = fake.puts()
    assert puts[0] == {"config": {"lr": 2e-4, "beta": 0.5, "bad": "Infinity"},
                       "status": "running"}
    assert puts[-1] == {"status": "finished"}
    # the run update comes before the data, the final status after it
    methods = [m for m, _p, _b in fake.requests]
    assert methods[0] == "PUT" and methods[-1] == "PUT" and "POST" in methods


def test_with_block_exception_marks_run_failed(make_monitor, fake: FakeServer) -> None:
    with pytest.raises(RuntimeError), make_monitor() as mon:
        mon.log(0, loss=1.0)
        raise RuntimeError("boom")
    assert fake.puts()[-1] == {"status": "failed"}
    assert fake.series("loss") == ([0], [1.0])


def test_close_is_idempotent_and_log_after_close_is_dropped(make_monitor, fake) -> None:
    mon = make_monitor()
    mon.log(0, a=1.0)
    assert mon.close() is True
    assert mon.close() is True
    with pytest.warns(StethoscopeWarning, match="after close"):
        mon.log(1, a=2.0)
    assert fake.series("a") == ([0], [1.0])
    assert [b for b in fake.puts() if b.get("status") == "finished"] == [{"status": "finished"}]


def test_values_of_every_accepted_kind_and_nonfinite_survive(make_monitor, fake) -> None:
    mon = make_monitor()
    mon.log(0, f=0.25, i=3, np32=np.float32(1.5), np0d=np.array(2.0), npint=np.int64(7),
            b=True, nan=math.nan, inf=math.inf, ninf=-math.inf)
    mon.log(np.int64(1), f=0.5)
    mon.close()
    assert fake.series("f") == ([0, 1], [0.25, 0.5])
    for name, value in [("i", 3.0), ("np32", 1.5), ("np0d", 2.0), ("npint", 7.0), ("b", 1.0),
                        ("inf", math.inf), ("ninf", -math.inf)]:
        assert fake.series(name) == ([0], [value]), name
    steps, vals = fake.series("nan")
    assert steps == [0] and math.isnan(vals[0])


def test_bad_values_warn_once_per_name_and_never_raise(make_monitor, fake) -> None:
    mon = make_monitor()
    with pytest.warns(StethoscopeWarning) as rec:
        for step in range(3):
            mon.log(step, ok=1.0, s="text", n=None, arr=np.ones(3))
            mon.log(step, **{"bad name!": 1.0, "stethoscope/x": 2.0})
        mon.log(-1, ok=5.0)
        mon.log(1.5, ok=5.0)
        mon.log(True, ok=5.0)
    mon.close()
    messages = [str(w.message) for w in rec]
    for needle in ("'s'", "'n'", "'arr'", "bad name!", "stethoscope/x", "step"):
        assert sum(needle in m for m in messages) == 1, (needle, messages)
    assert fake.series("ok") == ([0, 1, 2], [1.0, 1.0, 1.0])
    assert fake.series_names() == {"ok"}


def test_embeddings_are_sent_as_float32_and_bad_shapes_dropped(make_monitor, fake) -> None:
    mon = make_monitor()
    fake_emb = np.random.default_rng(0).normal(size=(5, 3))
    real_emb = np.arange(12, dtype=np.int32).reshape(4, 3)
    mon.log_embeddings(200, fake=fake_emb, real=real_emb)
    fake_emb[:] = 0  # the collector copied the array at log time
    with pytest.warns(StethoscopeWarning):
        mon.log_embeddings(300, fake=np.ones(3))
        mon.log_embeddings(300, fake=np.ones((2, 3)), real=np.ones((2, 4)))
        mon.log_embeddings(300, fake=np.ones((0, 3)))
        mon.log_embeddings(300, fake="nope")
    mon.close()
    got = fake.embeddings()
    assert [(s, n, a.shape) for s, n, a in got] == [(200, "fake", (5, 3)), (200, "real", (4, 3))]
    np.testing.assert_allclose(got[0][2], np.random.default_rng(0).normal(size=(5, 3)),
                               rtol=1e-6)
    np.testing.assert_array_equal(got[1][2], real_emb.astype(np.float32))


def test_alerts_come_back_to_the_callback_and_cursor_advances(make_monitor, fake) -> None:
    seen = []
    mon = make_monitor(on_alert=seen.append)
    fake.alerts.append(alert(1, severity="warning"))
    mon.log(0, loss=1.0)
    wait_for(lambda: len(seen) == 1, what="first alert")
    fake.alerts.append(alert(2, severity="critical"))
    mon.log(1, loss=math.nan)
    wait_for(lambda: len(seen) == 2, what="severity increase")
    assert [a.severity for a in seen] == ["warning", "critical"]
    assert [a.severity for a in mon.alerts] == ["critical"]  # latest state per alert id
    mon.log(2, loss=1.0)
    mon.close()
    cursors = [b["alert_cursor"] for m, _p, b in fake.requests if m == "POST"]
    assert cursors[0] == 0 and cursors[-1] == 2
    assert len(seen) == 2  # no repeats once the cursor moved on
    assert mon.should_stop is False  # no stop_on: never stops


def test_callback_exceptions_are_contained(make_monitor, fake, caplog) -> None:
    def bad(_a):
        raise RuntimeError("user bug")

    mon = make_monitor(on_alert=bad)
    fake.alerts.append(alert(1))
    mon.log(0, loss=1.0)
    wait_for(lambda: mon.alerts, what="alert")
    mon.log(1, loss=1.0)
    mon.close()
    assert "on_alert callback raised" in caplog.text
    assert fake.series("loss")[0] == [0, 1]


def test_stop_on_raises_stop_training_once_on_the_next_log(make_monitor, fake) -> None:
    mon = make_monitor(stop_on="critical")
    fake.alerts.append(alert(1, severity="warning"))
    mon.log(0, loss=1.0)
    wait_for(lambda: mon.alerts, what="warning alert")
    mon.log(1, loss=1.0)  # a warning does not stop with stop_on="critical"
    assert not mon.should_stop
    fake.alerts.append(alert(2, id=2, severity="critical", step=1))
    mon.flush()
    wait_for(lambda: mon.should_stop, what="stop request")
    with pytest.raises(StopTraining) as info:
        mon.log(2, loss=1.0)
    assert info.value.alert.severity == "critical" and info.value.alert.id == 2
    assert mon.stop_alert == info.value.alert
    mon.log(3, loss=1.0)  # raised once; the user decides what happens next
    mon.close()
    assert fake.series("loss")[0] == [0, 1, 3]


def test_an_alert_that_fired_and_resolved_between_flushes_still_stops_and_notifies(
        make_monitor, fake) -> None:
    seen = []
    mon = make_monitor(stop_on="critical", on_alert=seen.append)
    fake.alerts.append(alert(1, severity="critical", status="resolved", resolved_step=53))
    mon.log(0, loss=1.0)
    wait_for(lambda: mon.should_stop, what="stop request")
    assert [(a.status, a.severity, a.resolved_step) for a in seen] == [
        ("resolved", "critical", 53)]
    with pytest.raises(StopTraining):
        mon.log(1, loss=1.0)


def test_stop_on_warning(make_monitor, fake) -> None:
    mon = make_monitor(stop_on="warning")
    fake.alerts.append(alert(1, severity="warning"))
    mon.log(0, loss=1.0)
    wait_for(lambda: mon.should_stop, what="stop request")
    with pytest.raises(StopTraining):
        mon.log(1, loss=1.0)


def test_import_does_not_import_torch() -> None:
    code = "import sys, stethoscope.collector as c; c.Monitor; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_forgotten_close_still_flushes_at_exit(tmp_path: Path) -> None:
    out = tmp_path / "received.txt"
    script = textwrap.dedent(f"""
        import httpx, json
        from stethoscope.collector import Monitor
        def handler(req):
            body = json.loads(req.content)
            with open({str(out)!r}, "a") as f:
                f.write(req.method + " " + json.dumps(body) + "\\n")
            if req.method == "POST":
                return httpx.Response(200, json={{"alerts": [], "alert_cursor": 0}})
            return httpx.Response(200, json={{}})
        mon = Monitor("atexit", server="http://x.test", flush_interval=3600,
                      transport=httpx.MockTransport(handler))
        mon.log(0, loss=0.5)
        mon.log(1, loss=float("nan"))
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, timeout=60)
    lines = out.read_text().splitlines()
    assert any('"loss": {"steps": [0, 1], "values": [0.5, "NaN"]}' in ln for ln in lines)
    assert lines[-1] == 'PUT {"status": "finished"}'


def test_transport_seam_sees_json_content_type(make_monitor, fake) -> None:
    seen = []

    def responder(method: str, body):
        seen.append(method)
        return None

    fake.responder = responder
    mon = make_monitor()
    mon.log(0, x=1.0)
    mon.close()
    assert "POST" in seen
    assert isinstance(fake.transport, httpx.MockTransport)
