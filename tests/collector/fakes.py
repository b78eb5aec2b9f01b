"""A fake Stethoscope server behind ``httpx.MockTransport`` (httpx is the seam, not our code)."""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np

_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``cond`` until true (behaviour, not timing: the timeout is only a safety net)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def alert(seq: int, *, id: int = 1, severity: str = "critical", status: str = "firing",
          kind: str = "divergence", step: int = 3, episodes: int = 1,
          resolved_step: int | None = None) -> dict[str, Any]:
    return {
        "episodes": episodes, "resolved_step": resolved_step,
        "id": id, "run": "r", "kind": kind, "key": f"{kind}/x", "severity": severity,
        "status": status, "step": step, "first_step": step, "message": f"{kind} seen",
        "evidence": {"value": "NaN", "z": 12.5},
        "remedies": [{"action": "lower the learning rate", "citation": "Goodfellow 2014"}],
        "count": 1, "seq": seq, "created_at": 1.0, "updated_at": 2.0, "resolved_at": None,
        "detector": "nonfinite", "subject": "loss",
    }


class FakeServer:
    """Records every request; ``mode`` is "ok", "down" (connection refused) or an HTTP status.

    ``responder(method, body) -> Response | None`` may override the answer of a request.
    Stored batches are de-duplicated by batch id, like the real server.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mode: str | int = "ok"
        self.requests: list[tuple[str, str, Any]] = []
        self.attempts: list[str] = []
        self.stored: dict[str, dict[str, Any]] = {}
        self.alerts: list[dict[str, Any]] = []
        self.responder: Callable[[str, Any], httpx.Response | None] | None = None
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        with self.lock:
            self.requests.append((request.method, request.url.path, body))
            if request.method == "POST":
                self.attempts.append(body["batch_id"])
            mode = self.mode
        if mode == "down":
            raise httpx.ConnectError("connection refused", request=request)
        if isinstance(mode, int):
            return httpx.Response(mode, json={"detail": f"fake server says {mode}"})
        if self.responder is not None:
            resp = self.responder(request.method, body)
            if resp is not None:
                return resp
        if request.method == "PUT":
            return httpx.Response(200, json={"name": "r"})
        with self.lock:
            duplicate = body["batch_id"] in self.stored
            if not duplicate:
                self.stored[body["batch_id"]] = body
            cursor = body["alert_cursor"]
            alerts = [a for a in self.alerts if a["seq"] > cursor]
            top = max([cursor, *(a["seq"] for a in self.alerts)])
        return httpx.Response(
            200,
            json={"batch_id": body["batch_id"], "duplicate": duplicate, "stored_points": 0,
                  "stored_embeddings": 0, "alerts": alerts, "alert_cursor": top},
        )

    # ------------------------------------------------------------------ views
    def puts(self) -> list[Any]:
        with self.lock:
            return [b for m, _p, b in self.requests if m == "PUT"]

    def series(self, name: str) -> tuple[list[int], list[float]]:
        """All stored points of one series, in arrival order, values decoded."""
        steps: list[int] = []
        values: list[float] = []
        with self.lock:
            batches = list(self.stored.values())
        for b in batches:
            s = b.get("scalars", {}).get(name)
            if s:
                steps.extend(s["steps"])
                values.extend(_SPECIAL[v] if isinstance(v, str) else v for v in s["values"])
        return steps, values

    def series_names(self) -> set[str]:
        with self.lock:
            return {n for b in self.stored.values() for n in b.get("scalars", {})}

    def points(self) -> int:
        with self.lock:
            return sum(len(s["steps"]) for b in self.stored.values()
                       for s in b.get("scalars", {}).values())

    def embeddings(self) -> list[tuple[int, str, np.ndarray]]:
        out = []
        with self.lock:
            batches = list(self.stored.values())
        for b in batches:
            for e in b.get("embeddings", []):
                arr = np.frombuffer(base64.b64decode(e["data"]), dtype="<f4").reshape(e["shape"])
                out.append((e["step"], e["name"], arr))
        return out
