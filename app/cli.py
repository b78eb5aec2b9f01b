"""The ``stethoscope`` command: ``serve`` the server, or run the ``demo``."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from .main import create_app
from .settings import Settings

DEMO_SCENARIOS = (
    ("healthy", "demo-healthy"),
    ("collapse", "demo-collapse"),
    ("diverge", "demo-diverge"),
)


def _add_server_args(parser: argparse.ArgumentParser, default_db: str) -> None:
    # None means "not given": STETHOSCOPE_HOST/PORT/DB_PATH, then the defaults, apply
    parser.add_argument(
        "--host", default=None, help="interface (default STETHOSCOPE_HOST or 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=None, help="TCP port (default STETHOSCOPE_PORT or 8765)"
    )
    parser.add_argument(
        "--db",
        default=None,
        help=f"SQLite file, created if missing (default STETHOSCOPE_DB_PATH or {default_db})",
    )
    parser.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"]
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stethoscope",
        description="Live training-health monitor: divergence, vanishing gradients, mode collapse.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server and dashboard")
    _add_server_args(serve, "stethoscope.db")
    demo = sub.add_parser(
        "demo", help="run the server and real demo GAN trainings that stream to it"
    )
    _add_server_args(demo, "stethoscope-demo.db")
    demo.add_argument(
        "--keep-db", action="store_true", help="keep the demo database of an earlier demo"
    )
    demo.add_argument(
        "--speed",
        type=float,
        default=25.0,
        help="training steps per second, to pace the demo so it looks live (default 25; 0: full speed)",
    )
    return parser


def _server(settings: Settings, log_level: str) -> uvicorn.Server:
    folder = Path(settings.db_path).expanduser().resolve().parent
    if not folder.is_dir():
        raise SystemExit(f"error: folder {str(folder)!r} for --db does not exist; create it first")
    config = uvicorn.Config(
        create_app(settings), host=settings.host, port=settings.port, log_level=log_level
    )
    return uvicorn.Server(config)


def _announce(settings: Settings) -> None:
    base = f"http://{settings.host}:{settings.port}"
    print(f"Stethoscope dashboard: {base}/ui/", flush=True)
    print(f"API docs: {base}/docs   metrics: {base}/metrics   database: {settings.db_path}", flush=True)


def settings_from(args: argparse.Namespace, default_db: str, *, db_from_env: bool) -> Settings:
    """Settings from the flags given, then STETHOSCOPE_* variables, then the defaults.

    The demo deletes its database at start, so it never takes the path from the environment.
    """
    given = {"db_path": args.db, "host": args.host, "port": args.port}
    settings = Settings(**{k: v for k, v in given.items() if v is not None})
    if args.db is None and not (db_from_env and "STETHOSCOPE_DB_PATH" in os.environ):
        settings = settings.model_copy(update={"db_path": default_db})
    return settings


def serve(args: argparse.Namespace) -> int:
    settings = settings_from(args, "stethoscope.db", db_from_env=True)
    server = _server(settings, args.log_level)
    threading.Thread(target=_announce_when_started, args=(server, settings), daemon=True).start()
    server.run()
    return 0


def _announce_when_started(server: uvicorn.Server, settings: Settings) -> None:
    while not server.started and not server.should_exit:
        time.sleep(0.05)
    if server.started:
        _announce(settings)


def _start_trainings(
    server: uvicorn.Server, settings: Settings, speed: float
) -> list[subprocess.Popen[bytes]]:
    while not server.started and not server.should_exit:
        time.sleep(0.05)
    if server.should_exit:
        return []
    _announce(settings)
    url = f"http://{settings.host}:{settings.port}"
    procs = []
    for scenario, run in DEMO_SCENARIOS:
        cmd = [
            sys.executable,
            "-m",
            "stethoscope.collector.examples.gan_mixture",
            "--run",
            run,
            "--scenario",
            scenario,
            "--server",
            url,
        ]
        if speed > 0:
            cmd += ["--speed", str(speed)]
        procs.append(subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}))
        print(f"started training {run!r} ({scenario}): {url}/ui/run/{run}", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    return procs


def demo(args: argparse.Namespace) -> int:
    settings = settings_from(args, "stethoscope-demo.db", db_from_env=False)
    if not args.keep_db:
        for suffix in ("", "-wal", "-shm"):
            Path(settings.db_path + suffix).unlink(missing_ok=True)
    server = _server(settings, args.log_level)
    procs: list[subprocess.Popen[bytes]] = []

    def launch() -> None:
        procs.extend(_start_trainings(server, settings, args.speed))

    threading.Thread(target=launch, daemon=True).start()
    try:
        server.run()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        print("Stethoscope demo stopped.", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper()))
    if args.command == "serve":
        return serve(args)
    return demo(args)


if __name__ == "__main__":
    raise SystemExit(main())
