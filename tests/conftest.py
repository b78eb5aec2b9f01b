"""Shared fixtures: a real uvicorn server on a free loopback port with a temporary SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import LiveServer, start_server, stop_server


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A real server (API and dashboard) on 127.0.0.1 with a fresh SQLite file."""
    live, server, thread = start_server(tmp_path / "stethoscope.db")
    try:
        yield live
    finally:
        stop_server(server, thread)
