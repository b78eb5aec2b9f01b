"""The bounded queue of items waiting for the server, optionally mirrored to a disk spool.

Batches are dropped oldest-first (and counted) when the queue holds more than ``max_points``
scalar points or ``max_bytes`` of encoded data. Run updates (config, status) are never dropped.
With a spool directory every queued batch is also written to
``<spool_dir>/<run>/<seq>-<batch_id>.json`` and deleted once the server acknowledged it (or
rejected it, or it was dropped), so a restarted process with the same run name sends what the
previous one could not; the server de-duplicates by batch id.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .wire import Batch

__all__ = ["Outbox", "RunUpdate"]

_log = logging.getLogger("stethoscope.collector")


@dataclass(frozen=True)
class RunUpdate:
    """A ``PUT /api/v1/runs/{run}`` body (config and/or status)."""

    body: dict[str, Any] = field(default_factory=dict)


Item = Batch | RunUpdate


class Outbox:
    """FIFO of batches and run updates, bounded by points and bytes."""

    def __init__(
        self, *, run: str, max_points: int, max_bytes: int, spool_dir: Path | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._items: deque[Item] = deque()
        self._files: dict[str, Path] = {}
        self._max_points = max_points
        self._max_bytes = max_bytes
        self._points = 0
        self._bytes = 0
        self._seq = 0
        self.dropped_points = 0
        self.dropped_batches = 0
        self.dropped_embeddings = 0
        self._spool = None if spool_dir is None else Path(spool_dir) / run
        if self._spool is not None:
            self._spool.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ spool
    def load_spool(self) -> int:
        """Queue the batches a previous process left in the spool; returns how many."""
        if self._spool is None:
            return 0
        loaded = 0
        for path in sorted(self._spool.glob("*.json")):
            try:
                batch = Batch.from_json(path.read_text())
                self._seq = max(self._seq, int(path.name.split("-", 1)[0]))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                _log.warning("stethoscope: ignoring unreadable spool file %s (%s)", path, exc)
                continue
            self._append(batch, path)
            loaded += 1
        return loaded

    def _write_spool(self, batch: Batch) -> Path | None:
        if self._spool is None:
            return None
        self._seq += 1
        path = self._spool / f"{self._seq:012d}-{batch.batch_id}.json"
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(batch.to_json())
            os.replace(tmp, path)
        except OSError as exc:
            _log.warning("stethoscope: cannot write spool file %s (%s)", path, exc)
            return None
        return path

    def _unlink(self, item: Item) -> None:
        if isinstance(item, Batch):
            path = self._files.pop(item.batch_id, None)
            if path is not None:
                with contextlib.suppress(OSError):
                    path.unlink()

    # ------------------------------------------------------------------ queue
    def _append(self, item: Item, path: Path | None = None) -> None:
        with self._lock:
            self._items.append(item)
            if isinstance(item, Batch):
                self._points += item.points
                self._bytes += item.nbytes
                if path is not None:
                    self._files[item.batch_id] = path
            self._enforce_bounds()

    def put(self, item: Item) -> None:
        path = self._write_spool(item) if isinstance(item, Batch) else None
        self._append(item, path)

    def _enforce_bounds(self) -> None:
        while self._points > self._max_points or self._bytes > self._max_bytes:
            batches = [it for it in self._items if isinstance(it, Batch)]
            if len(batches) <= 1:
                break
            victim = batches[0]
            self._items.remove(victim)
            self._points -= victim.points
            self._bytes -= victim.nbytes
            self._unlink(victim)
            self.dropped_batches += 1
            self.dropped_points += victim.points
            self.dropped_embeddings += victim.embeddings
            if self.dropped_batches == 1 or self.dropped_batches % 100 == 0:
                _log.warning(
                    "stethoscope: send queue full (%d points, %d bytes queued); dropped the "
                    "oldest batch. Dropped so far: %d batches, %d points, %d embeddings. Start "
                    "the server, raise max_queue_points/max_queue_bytes, or log less often.",
                    self._points,
                    self._bytes,
                    self.dropped_batches,
                    self.dropped_points,
                    self.dropped_embeddings,
                )

    def replace(self, item: Item, parts: list[Batch]) -> bool:
        """Put ``parts`` where ``item`` is in the queue (and the spool); False if it is gone.

        The parts' spool files get new sequence numbers, so after a restart they are sent
        after batches queued later; the server does not depend on batch order.
        """
        paths = [self._write_spool(b) for b in parts]
        with self._lock:
            try:
                index = self._items.index(item)
            except ValueError:
                index = -1
            if index >= 0:
                del self._items[index]
                if isinstance(item, Batch):
                    self._points -= item.points
                    self._bytes -= item.nbytes
                self._unlink(item)
                for offset, (batch, path) in enumerate(zip(parts, paths, strict=True)):
                    self._items.insert(index + offset, batch)
                    self._points += batch.points
                    self._bytes += batch.nbytes
                    if path is not None:
                        self._files[batch.batch_id] = path
                return True
        for path in paths:
            if path is not None:
                with contextlib.suppress(OSError):
                    path.unlink()
        return False

    def head(self) -> Item | None:
        with self._lock:
            return self._items[0] if self._items else None

    def done(self, item: Item) -> None:
        """Remove ``item`` (delivered or rejected) from the queue and the spool."""
        with self._lock:
            try:
                self._items.remove(item)
            except ValueError:
                return
            if isinstance(item, Batch):
                self._points -= item.points
                self._bytes -= item.nbytes
            self._unlink(item)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def points(self) -> int:
        with self._lock:
            return self._points

    def batches(self) -> list[Batch]:
        with self._lock:
            return [it for it in self._items if isinstance(it, Batch)]
