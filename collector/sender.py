"""The background thread: drain the recorder, encode batches, deliver them, read alerts back.

Error policy (the training thread never waits on any of this):

- transport errors (refused, timeout, DNS), ``408``, ``429`` and ``5xx``: keep the item at the
  head of the queue and retry it with exponential backoff (``Retry-After`` honoured); a batch
  keeps its ``batch_id`` across retries so the server stores it once;
- ``413`` (too large) on a batch that can be split: it is replaced in the queue by smaller
  batches (scalars and embeddings apart, one embedding per batch, scalar series halved; see
  :func:`~.wire.split_batch`) and those are sent, so one oversized item is dropped alone;
- any other ``4xx`` (and unexpected ``3xx``): the item is bad; the server's message is logged
  (once per distinct message) and the item dropped;
- ``2xx``: the item is done; alerts in the response go to the :class:`AlertBook`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from .alerts import Alert, AlertBook
from .buffer import Recorder, Warn
from .outbox import Outbox, RunUpdate
from .readback import materialize
from .wire import Batch, build_batches, split_batch

__all__ = ["Sender"]

_log = logging.getLogger("stethoscope.collector")


class Sender:
    """Owns the HTTP client and the background thread of one Monitor."""

    def __init__(
        self,
        *,
        run: str,
        client: httpx.Client | None,
        recorder: Recorder,
        outbox: Outbox,
        book: AlertBook,
        warn: Warn,
        flush_interval: float,
        max_batch_points: int,
        on_alerts: Callable[[list[Alert]], None],
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        self.run = run
        self._client = client
        self._recorder = recorder
        self._outbox = outbox
        self._book = book
        self._warn = warn
        self._interval = flush_interval
        self._max_batch_points = max_batch_points
        self._on_alerts = on_alerts
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._backoff = 0.0
        self._next_try = 0.0
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._deadline = float("inf")
        self._final_status: str | None = None
        self._failures = 0
        self._rejections_seen: set[str] = set()
        self.sent_batches = 0
        self.sent_points = 0
        self.rejected_batches = 0
        self.flushes = 0
        self._thread = threading.Thread(
            target=self._main, name=f"stethoscope-sender-{run}", daemon=True
        )

    # ------------------------------------------------------------------ control
    @property
    def online(self) -> bool:
        return self._client is not None

    @property
    def failures(self) -> int:
        """Consecutive failed delivery attempts (0 when the server answers)."""
        return self._failures

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def close(self, status: str | None, timeout: float, wait: bool = True) -> bool:
        """Final flush, then the final run status; waits at most ``timeout`` seconds.

        With ``wait=False`` the thread is only told to finish (delivering for at most
        ``timeout`` seconds) and this returns at once. Returns True when everything was
        delivered (always True offline).
        """
        self._final_status = status
        self._deadline = time.monotonic() + timeout
        self._closing.set()
        self._wake.set()
        if not wait and self._thread.ident:
            return self._client is None or len(self._outbox) == 0
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout + 1.0)
            if self._thread.is_alive():
                _log.warning(
                    "stethoscope: the sender of run %r is still busy after close(); it goes on "
                    "in the background until the process exits",
                    self.run,
                )
        elif not self._thread.ident:
            self._finish()  # never started
            self._close_client()
        return self._client is None or len(self._outbox) == 0

    # ------------------------------------------------------------------ thread
    def _main(self) -> None:
        next_flush = time.monotonic() + self._interval
        while not self._closing.is_set():
            now = time.monotonic()
            wait = next_flush - now
            if self.online and len(self._outbox) and self._next_try > now:
                wait = min(wait, self._next_try - now)
            elif self.online and len(self._outbox):
                wait = 0.0
            if wait > 0:
                self._wake.wait(wait)
            self._wake.clear()
            if self._closing.is_set():
                break
            now = time.monotonic()
            if now >= next_flush or self._recorder_wants_flush():
                self._guarded(self._flush, False)
                next_flush = time.monotonic() + self._interval
            if self.online and time.monotonic() >= self._next_try:
                self._guarded(self._send_some, time.monotonic() + self._interval)
        self._finish()
        self._close_client()

    def _close_client(self) -> None:
        if self._client is not None:
            self._client.close()

    def _recorder_wants_flush(self) -> bool:
        return self._recorder._woken  # set by the recorder when a size threshold is hit

    def _guarded(self, fn: Callable[..., None], arg: Any) -> None:
        try:
            fn(arg)
        except Exception:  # the thread must survive anything
            _log.exception("stethoscope: unexpected error in the sender thread")
            time.sleep(min(self._interval, 1.0))

    def _finish(self) -> None:
        self._guarded(self._flush, True)
        if self._final_status is not None:
            self._outbox.put(RunUpdate({"status": self._final_status}))
        if not self.online:
            return
        self._next_try = 0.0
        while len(self._outbox) and time.monotonic() < self._deadline:
            now = time.monotonic()
            if self._next_try > now:
                time.sleep(min(self._next_try - now, max(0.0, self._deadline - now)))
                continue
            self._guarded(self._send_some, self._deadline)
        left = self._outbox.batches()
        if left:
            _log.warning(
                "stethoscope: closing run %r with %d undelivered batches (%d points)%s",
                self.run,
                len(left),
                sum(b.points for b in left),
                "; they stay in the spool for the next start" if self._outbox._spool else "",
            )

    # ------------------------------------------------------------------ work
    def _flush(self, final: bool) -> None:
        drained = self._recorder.drain(final=final)
        if drained.empty():
            return
        self.flushes += 1
        series, embeddings = materialize(drained, self._warn)
        for batch in build_batches(series, embeddings, max_points=self._max_batch_points):
            self._outbox.put(batch)

    def _send_some(self, until: float) -> None:
        """Deliver queued items in order until the queue is empty, a failure, or ``until``."""
        while time.monotonic() < until or until == float("inf"):
            item = self._outbox.head()
            if item is None:
                return
            outcome = self._deliver(item)
            if outcome == "retry":
                return
            if outcome == "split":
                continue  # the parts are now at the head of the queue
            self._outbox.done(item)
            if outcome == "ok" and isinstance(item, Batch):
                self.sent_batches += 1
                self.sent_points += item.points

    def _deliver(self, item: Batch | RunUpdate) -> str:
        assert self._client is not None
        try:
            if isinstance(item, Batch):
                resp = self._client.post(
                    f"/api/v1/runs/{self.run}/batches",
                    content=item.body(self._book.cursor),
                    headers={"content-type": "application/json"},
                )
            else:
                resp = self._client.put(f"/api/v1/runs/{self.run}", json=item.body)
        except httpx.HTTPError as exc:
            return self._failed(f"{type(exc).__name__}: {exc}", None)
        code = resp.status_code
        if code in (408, 429) or code >= 500:
            return self._failed(f"HTTP {code}", resp.headers.get("retry-after"))
        if self._failures:
            _log.warning(
                "stethoscope: server reachable again after %d failed attempts; sending the "
                "%d queued items",
                self._failures,
                len(self._outbox),
            )
        self._failures = 0
        self._backoff = 0.0
        self._next_try = 0.0
        if 200 <= code < 300:
            if isinstance(item, Batch):
                self._read_alerts(resp)
            return "ok"
        if code == 413 and isinstance(item, Batch):
            parts = split_batch(item)
            if parts is not None and len(parts) > 1:
                _log.debug(
                    "stethoscope: batch %s too large for the server (HTTP 413); sending it as "
                    "%d smaller batches",
                    item.batch_id,
                    len(parts),
                )
                if self._outbox.replace(item, parts):
                    return "split"
        self._reject(item, resp)
        return "rejected"

    def _failed(self, why: str, retry_after: str | None) -> str:
        self._failures += 1
        self._backoff = min(
            self._backoff_max,
            self._backoff_initial if self._backoff == 0 else self._backoff * 2,
        )
        delay = self._backoff * (0.8 + 0.4 * random.random())
        if retry_after:
            with contextlib.suppress(ValueError):
                delay = min(self._backoff_max, max(delay, float(retry_after)))
        self._next_try = time.monotonic() + delay
        level = logging.WARNING if self._failures == 1 else logging.DEBUG
        _log.log(
            level,
            "stethoscope: cannot deliver to the server (%s); keeping %d queued items and "
            "retrying with backoff (next in %.1fs). Training is not affected.",
            why,
            len(self._outbox),
            delay,
        )
        return "retry"

    def _reject(self, item: Batch | RunUpdate, resp: httpx.Response) -> None:
        self.rejected_batches += isinstance(item, Batch)
        try:
            detail: Any = resp.json().get("detail", resp.text)
        except (ValueError, AttributeError):
            detail = resp.text
        message = json.dumps(detail)[:1000] if not isinstance(detail, str) else detail[:1000]
        key = f"{resp.status_code}:{message}"
        if key not in self._rejections_seen:
            self._rejections_seen.add(key)
            what = f"batch {item.batch_id}" if isinstance(item, Batch) else "run update"
            _log.warning(
                "stethoscope: the server rejected %s with HTTP %d and it was dropped: %s",
                what,
                resp.status_code,
                message,
            )

    def _read_alerts(self, resp: httpx.Response) -> None:
        try:
            data = resp.json()
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        raw = data.get("alerts") or []
        cursor = data.get("alert_cursor")
        due = self._book.update(raw if isinstance(raw, list) else [], cursor)
        if due:
            self._on_alerts(due)
