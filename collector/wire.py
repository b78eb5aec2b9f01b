"""The wire format of docs/architecture.md: names, value encoding, batch bodies.

Pure functions and one small value class; no I/O, no torch. JSON has no NaN, so non-finite
values travel as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``; embeddings travel as
base64 of little-endian float32 C-order bytes.
"""

from __future__ import annotations

import base64
import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "EMBEDDING_NAME_RE",
    "RESERVED_PREFIX",
    "RUN_NAME_RE",
    "SERIES_NAME_RE",
    "WATCH_NAME_RE",
    "Batch",
    "build_batches",
    "decode_value",
    "encode_values",
    "json_safe",
    "new_batch_id",
    "split_batch",
]

RUN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
SERIES_NAME_RE = re.compile(r"[A-Za-z0-9_.:/-]{1,200}\Z")
EMBEDDING_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
WATCH_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")
RESERVED_PREFIX = "stethoscope/"

_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def new_batch_id() -> str:
    """A fresh batch id (uuid4 hex, 32 chars of ``[0-9a-f]``)."""
    return uuid.uuid4().hex


def encode_values(values: np.ndarray) -> list[float | str]:
    """Float values as JSON-ready items: finite numbers stay numbers, others become strings."""
    arr = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(arr)
    out: list[Any] = arr.tolist()
    if not finite.all():
        for i in np.flatnonzero(~finite).tolist():
            v = out[i]
            out[i] = "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    return out


def decode_value(value: Any) -> float:
    """One wire value (number or NaN/Infinity string) as a float; unknown input gives NaN."""
    if isinstance(value, str):
        return _NONFINITE.get(value, math.nan)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def json_safe(obj: Any, _depth: int = 0) -> Any:
    """A JSON-serialisable copy of ``obj`` (for run configs).

    Mappings keep their keys as strings, sequences become lists, numpy and other scalars become
    Python numbers, non-finite floats become the wire strings, and anything else its ``str()``.
    """
    if _depth > 20:
        return str(obj)
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else encode_values(np.array([obj]))[0]
    if isinstance(obj, np.generic):
        return json_safe(obj.item(), _depth + 1)
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        return [json_safe(v, _depth + 1) for v in items]
    if isinstance(obj, np.ndarray) and obj.size <= 1024:
        return json_safe(obj.tolist(), _depth + 1)
    return str(obj)


@dataclass(frozen=True)
class Batch:
    """One encoded batch waiting to be sent.

    ``fragment`` is the JSON text of the ``"scalars"`` and ``"embeddings"`` members (without the
    braces), so the body can be completed with the alert cursor current at send time while the
    ``batch_id`` stays the same across retries.
    """

    batch_id: str
    fragment: str
    points: int
    embeddings: int

    @property
    def nbytes(self) -> int:
        return len(self.fragment) + 64

    def body(self, alert_cursor: int) -> bytes:
        head = f'{{"batch_id":"{self.batch_id}","alert_cursor":{int(alert_cursor)}'
        if self.fragment:
            return f"{head},{self.fragment}}}".encode()
        return f"{head}}}".encode()

    def to_json(self) -> str:
        """For the disk spool."""
        return json.dumps(
            {
                "batch_id": self.batch_id,
                "fragment": self.fragment,
                "points": self.points,
                "embeddings": self.embeddings,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Batch:
        d = json.loads(text)
        return cls(str(d["batch_id"]), str(d["fragment"]), int(d["points"]), int(d["embeddings"]))


def _embedding_item(step: int, name: str, arr: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(arr, dtype="<f4")
    return {
        "step": int(step),
        "name": name,
        "dtype": "float32",
        "shape": [int(a.shape[0]), int(a.shape[1])],
        "data": base64.b64encode(a.tobytes(order="C")).decode("ascii"),
    }


def build_batches(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    embeddings: list[tuple[int, str, np.ndarray]],
    *,
    max_points: int = 50_000,
    max_embedding_bytes: int = 8 << 20,
) -> list[Batch]:
    """Cut scalar series and embeddings into batches of bounded size.

    ``series`` maps a name to parallel ``(steps int64[], values float64[])`` arrays;
    ``embeddings`` holds ``(step, name, (n, d) float32 array)``. A batch holds at most
    ``max_points`` scalar points (a long series is split across batches) and about
    ``max_embedding_bytes`` of embedding data (at least one embedding).
    """
    batches: list[Batch] = []
    cur: dict[str, dict[str, list[Any]]] = {}
    cur_points = 0

    def emit_scalars() -> None:
        nonlocal cur, cur_points
        if cur:
            frag = json.dumps({"scalars": cur}, separators=(",", ":"), allow_nan=False)[1:-1]
            batches.append(Batch(new_batch_id(), frag, cur_points, 0))
        cur, cur_points = {}, 0

    for name, (steps, values) in series.items():
        steps = np.asarray(steps, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        start = 0
        while start < len(steps):
            take = min(len(steps) - start, max_points - cur_points)
            part = slice(start, start + take)
            entry = cur.setdefault(name, {"steps": [], "values": []})
            entry["steps"].extend(steps[part].tolist())
            entry["values"].extend(encode_values(values[part]))
            cur_points += take
            start += take
            if cur_points >= max_points:
                emit_scalars()
    emit_scalars()

    group: list[dict[str, Any]] = []
    group_bytes = 0
    for step, name, arr in embeddings:
        item = _embedding_item(step, name, arr)
        size = len(item["data"])
        if group and group_bytes + size > max_embedding_bytes:
            frag = json.dumps({"embeddings": group}, separators=(",", ":"))[1:-1]
            batches.append(Batch(new_batch_id(), frag, 0, len(group)))
            group, group_bytes = [], 0
        group.append(item)
        group_bytes += size
    if group:
        frag = json.dumps({"embeddings": group}, separators=(",", ":"))[1:-1]
        batches.append(Batch(new_batch_id(), frag, 0, len(group)))
    return batches


def _fragment(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)[1:-1]


def split_batch(batch: Batch) -> list[Batch] | None:
    """Smaller batches holding together what ``batch`` held, or None if it cannot be split.

    Used when the server rejects a batch as too large (HTTP 413), so that one offending item
    does not take the rest of the batch down with it. Scalars and embeddings are separated;
    embeddings are sent one per batch; scalar series are split in two halves (by series, then
    by points), so repeated 413s end with the offending part alone. Every part gets a new
    ``batch_id`` (the server stored nothing of the rejected batch).
    """
    try:
        doc = json.loads("{" + batch.fragment + "}")
    except ValueError:
        return None
    scalars: dict[str, Any] = doc.get("scalars") or {}
    embeddings: list[Any] = doc.get("embeddings") or []
    parts: list[tuple[dict[str, Any], list[Any]]] = []
    if scalars and embeddings:
        parts = [(scalars, []), ({}, embeddings)]
    elif len(embeddings) > 1:
        parts = [({}, [e]) for e in embeddings]
    elif len(scalars) > 1:
        names = sorted(scalars, key=lambda n: len(scalars[n]["steps"]))
        total = sum(len(scalars[n]["steps"]) for n in names)
        first: dict[str, Any] = {}
        count = 0
        for n in names:
            if first and count + len(scalars[n]["steps"]) > total / 2:
                break
            first[n] = scalars[n]
            count += len(scalars[n]["steps"])
        parts = [(first, []), ({n: v for n, v in scalars.items() if n not in first}, [])]
    elif len(scalars) == 1:
        (name, series), = scalars.items()
        k = len(series["steps"])
        if k < 2:
            return None
        half = k // 2
        parts = [
            ({name: {"steps": series["steps"][:half], "values": series["values"][:half]}}, []),
            ({name: {"steps": series["steps"][half:], "values": series["values"][half:]}}, []),
        ]
    else:
        return None
    out = []
    for sc, em in parts:
        body: dict[str, Any] = {}
        if sc:
            body["scalars"] = sc
        if em:
            body["embeddings"] = em
        points = sum(len(v["steps"]) for v in sc.values())
        out.append(Batch(new_batch_id(), _fragment(body), points, len(em)))
    return out
