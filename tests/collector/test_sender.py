"""Delivery: server down, recovery, retries with the same batch id, rejected batches, bounds."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import httpx

from stethoscope.collector import Monitor
from tests.collector.fakes import FakeServer, wait_for


def test_server_down_never_raises_and_data_arrives_after_recovery(make_monitor, fake) -> None:
    fake.mode = "down"
    mon = make_monitor()
    for step in range(50):
        mon.log(step, loss=float(step))  # never raises, never waits on the network
    wait_for(lambda: mon.stats["failed_attempts"] >= 3, what="several failed attempts")
    for step in range(50, 100):
        mon.log(step, loss=float(step))
    assert fake.points() == 0
    fake.mode = "ok"
    wait_for(lambda: fake.points() == 100, what="delivery after recovery")
    assert fake.series("loss") == (list(range(100)), [float(s) for s in range(100)])
    assert mon.stats["failed_attempts"] == 0
    mon.close()


def test_retried_batch_reuses_its_batch_id(make_monitor, fake) -> None:
    def responder(method: str, body):
        if method == "POST" and len(fake.attempts) <= 3:
            return httpx.Response(503, json={"detail": "busy"})
        return None

    fake.responder = responder
    mon = make_monitor()
    mon.log(0, loss=1.0)
    wait_for(lambda: fake.points() == 1, what="delivery")
    assert len(fake.attempts) == 4
    first = fake.attempts[0]
    assert fake.attempts[:3] == [first] * 3
    assert list(fake.stored) == [first]
    mon.close()


def test_timeouts_and_429_are_retried(make_monitor, fake) -> None:
    calls = {"n": 0}

    def responder(method: str, body):
        if method != "POST":
            return None
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ReadTimeout("slow", request=httpx.Request("POST", "http://x"))
        if calls["n"] == 2:
            return httpx.Response(429, headers={"retry-after": "0"})
        if calls["n"] == 3:
            return httpx.Response(408)
        return None

    fake.responder = responder
    mon = make_monitor()
    mon.log(0, loss=1.0)
    mon.close()
    assert calls["n"] == 4 and len(set(fake.attempts)) == 1
    assert fake.series("loss") == ([0], [1.0])


def test_4xx_drops_the_batch_and_logs_the_message_once(make_monitor, fake, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="stethoscope.collector")
    rejected = []

    def responder(method: str, body):
        if method == "POST" and "bad" in body.get("scalars", {}):
            rejected.append(body["batch_id"])
            return httpx.Response(422, json={"detail": "series 'bad' is not allowed"})
        return None

    fake.responder = responder
    mon = make_monitor()
    mon.log(0, bad=1.0)
    wait_for(lambda: len(rejected) == 1, what="first rejection")
    mon.log(1, bad=2.0)
    wait_for(lambda: len(rejected) == 2, what="second rejection")
    mon.log(2, good=3.0)
    mon.close()
    assert len(set(rejected)) == 2  # each bad batch tried once, not retried
    assert fake.series("good") == ([2], [3.0])
    assert caplog.text.count("series 'bad' is not allowed") == 1
    assert mon.stats["rejected_batches"] == 2


def test_queue_is_bounded_and_drops_oldest_with_a_count(fake: FakeServer, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="stethoscope.collector")
    fake.mode = "down"
    mon = Monitor("bounded", server="http://x.test", transport=fake.transport,
                  flush_interval=0.01, max_queue_points=100, max_batch_points=10,
                  backoff_initial=0.01, backoff_max=0.02, close_timeout=2.0)
    for step in range(1000):
        mon.log(step, loss=float(step))
        if step % 10 == 9:
            mon.flush()
    wait_for(lambda: mon.stats["queued_points"] + mon.stats["dropped_points"] == 1000,
             what="everything queued or dropped")
    assert mon.stats["queued_points"] <= 100
    assert mon.stats["dropped_batches"] >= 1
    assert "dropped the oldest batch" in caplog.text
    fake.mode = "ok"
    mon.close()
    steps, _ = fake.series("loss")
    assert steps == sorted(steps) and steps[-1] == 999  # the newest survived, in order
    assert len(steps) == 1000 - mon.stats["dropped_points"]


def test_offline_monitor_keeps_a_bounded_queue() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mon = Monitor("off", flush_interval=0.01, max_queue_points=50, max_batch_points=10)
    for step in range(500):
        mon.log(step, x=1.0)
        if step % 10 == 9:
            mon.flush()
    assert mon.close() is True
    assert mon.stats["queued_points"] <= 50
    assert mon.stats["queued_points"] + mon.stats["dropped_points"] == 500


def test_spool_survives_a_restart(fake: FakeServer, tmp_path: Path) -> None:
    fake.mode = "down"
    common = dict(server="http://x.test", transport=fake.transport, flush_interval=0.01,
                  backoff_initial=0.01, backoff_max=0.02, spool_dir=tmp_path)
    first = Monitor("spooled", close_timeout=0.2, **common)
    for step in range(20):
        first.log(step, loss=float(step))
    assert first.close() is False  # could not deliver
    files = list((tmp_path / "spooled").glob("*.json"))
    assert files, "undelivered batches must stay in the spool"
    fake.mode = "ok"
    second = Monitor("spooled", close_timeout=5.0, **common)
    second.log(20, loss=20.0)
    assert second.close() is True
    assert fake.series("loss")[0] == list(range(21))
    assert list((tmp_path / "spooled").glob("*.json")) == []


def test_close_waits_at_most_its_timeout_when_the_server_is_down(fake: FakeServer) -> None:
    fake.mode = "down"
    mon = Monitor("down", server="http://x.test", transport=fake.transport,
                  flush_interval=0.01, backoff_initial=0.01, close_timeout=0.1)
    mon.log(0, loss=1.0)
    assert mon.close() is False
    assert mon.stats["queued_points"] == 1
