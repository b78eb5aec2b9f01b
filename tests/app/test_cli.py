"""The command line: flags first, then STETHOSCOPE_* variables, then defaults."""

from __future__ import annotations

import pytest

from stethoscope.app.cli import build_parser, settings_from


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STETHOSCOPE_PORT", "9999")
    monkeypatch.setenv("STETHOSCOPE_DB_PATH", "/tmp/env.db")
    args = build_parser().parse_args(["serve", "--port", "8000"])
    settings = settings_from(args, "stethoscope.db", db_from_env=True)
    assert (settings.port, settings.db_path, settings.host) == (8000, "/tmp/env.db", "127.0.0.1")


def test_defaults_without_flags_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STETHOSCOPE_PORT", "STETHOSCOPE_DB_PATH", "STETHOSCOPE_HOST"):
        monkeypatch.delenv(name, raising=False)
    args = build_parser().parse_args(["serve"])
    settings = settings_from(args, "stethoscope.db", db_from_env=True)
    assert (settings.port, settings.db_path, settings.host) == (8765, "stethoscope.db", "127.0.0.1")


def test_demo_never_takes_its_database_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STETHOSCOPE_DB_PATH", "/data/production.db")
    args = build_parser().parse_args(["demo"])
    assert settings_from(args, "stethoscope-demo.db", db_from_env=False).db_path == "stethoscope-demo.db"
