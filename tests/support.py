"""Test helpers: a real uvicorn server on a free loopback port, and CI-aware skipping."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip when a dependency is missing locally; fail loudly under CI, where it must be there."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"missing under CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    """A running server: its base URL, database path and the FastAPI app."""

    url: str
    db_path: Path
    app: object

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


def start_server(
    db_path: Path, *, ui: bool = True, **settings: object
) -> tuple[LiveServer, object, threading.Thread]:
    import uvicorn

    from stethoscope.app import Settings, create_app

    port = free_port()
    options = {"alert_update_interval": 0.0, **settings}
    app = create_app(Settings(db_path=str(db_path), port=port, ui=ui, **options))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    return LiveServer(f"http://127.0.0.1:{port}", db_path, app), server, thread


def stop_server(server: object, thread: threading.Thread) -> None:
    server.should_exit = True  # type: ignore[attr-defined]
    thread.join(timeout=30)


class ResponseDroppingProxy:
    """A loopback HTTP proxy that forwards requests but drops the first N batch responses.

    The server stores each dropped batch, yet the client sees the connection close without an
    answer and must retry: exactly the case idempotent batch ids exist for.
    """

    def __init__(self, upstream: str, drop: int = 1) -> None:
        import http.server

        self.upstream = upstream
        self.remaining = drop
        self.dropped: list[str] = []
        self.forwarded = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {"content-type": self.headers.get("content-type", "application/json")}
                with httpx.Client(base_url=proxy.upstream, timeout=30) as client:
                    answer = client.request(self.command, self.path, content=body, headers=headers)
                proxy.forwarded += 1
                if self.path.endswith("/batches") and proxy.remaining > 0:
                    proxy.remaining -= 1
                    proxy.dropped.append(self.path)
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(answer.status_code)
                self.send_header("content-type", answer.headers.get("content-type", "text/plain"))
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PUT = _forward

        port = free_port()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def wait_evaluated(http: httpx.Client, run: str, timeout: float = 60.0) -> dict:
    """Wait until the server has run every queued embedding evaluation of ``run``; its record."""
    deadline = time.monotonic() + timeout
    while True:
        record = http.get(f"/api/v1/runs/{run}").json()
        if record["health"].get("pending_evaluations", 0) == 0:
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run!r} still has queued evaluations after {timeout} s")
        time.sleep(0.05)


class ServerProcess:
    """``stethoscope serve`` in a child process on a fixed loopback port, killable with
    SIGKILL (``kill()``) and restartable on the same port and database (``start()``)."""

    def __init__(self, db_path: Path, port: int | None = None, **env: str) -> None:
        self.db_path = db_path
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "STETHOSCOPE_UI": "false", "STETHOSCOPE_ALERT_UPDATE_INTERVAL":
                    "0", **env}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        cmd = [sys.executable, "-c", "from stethoscope.app.cli import main; main()", "serve",
               "--db", str(self.db_path), "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"the server exited with {self.proc.returncode}: {err}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the server did not answer /healthz in time")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
