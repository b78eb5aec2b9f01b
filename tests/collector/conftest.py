from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stethoscope.collector import Monitor
from tests.collector.fakes import FakeServer


@pytest.fixture
def fake() -> FakeServer:
    return FakeServer()


@pytest.fixture
def make_monitor(fake: FakeServer) -> Iterator[Callable[..., Monitor]]:
    """Monitor factory bound to the fake server, with short intervals; closes what it made."""
    made: list[Monitor] = []

    def make(run: str = "r", **kw: Any) -> Monitor:
        kw.setdefault("server", "http://stethoscope.test")
        kw.setdefault("transport", fake.transport)
        kw.setdefault("flush_interval", 0.02)
        kw.setdefault("backoff_initial", 0.01)
        kw.setdefault("backoff_max", 0.05)
        kw.setdefault("close_timeout", 5.0)
        mon = Monitor(run, **kw)
        made.append(mon)
        return mon

    yield make
    for mon in made:
        mon.close()
