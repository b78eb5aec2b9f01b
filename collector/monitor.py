"""``Monitor``: the object a training loop talks to."""

from __future__ import annotations

import contextlib
import logging
import math
import numbers
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import numpy as np

from .alerts import SEVERITY_RANK, Alert, AlertBook
from .buffer import Recorder
from .errors import StethoscopeWarning, StopTraining
from .outbox import Outbox, RunUpdate
from .readback import RowSample
from .sender import Sender
from .wire import RUN_NAME_RE, WATCH_NAME_RE, json_safe

__all__ = ["DEFAULT_WATCH_EVERY", "MAX_EMBEDDING_DIM", "MAX_EMBEDDING_ROWS", "Monitor"]

_log = logging.getLogger("stethoscope.collector")

DEFAULT_WATCH_EVERY = 10
"""Default ``watch(every=...)``: gradient norms every 10 optimizer steps (one
``_foreach_norm`` launch per watched module then; the hook is a cheap no-op in between)."""

# The server's defaults (``max_embedding_rows`` and ``max_embedding_dim`` in app/settings.py):
# it answers 413 to an embedding with more rows or columns. Rows above the limit are
# subsampled here (seeded, so reruns send the same rows); wider arrays are dropped.
MAX_EMBEDDING_ROWS = 16_384
MAX_EMBEDDING_DIM = 8_192
_MAX_EMBEDDING_VALUES = 1 << 24
"""Most values (n * d) of one embedding array kept in memory; above it rows are subsampled
too (at d = MAX_EMBEDDING_DIM that leaves 2,048 rows)."""
_EMBEDDING_SEED = 0x5E7


def _weak_method(method: Callable[..., Any]) -> Callable[..., None]:
    """A callable that calls ``method`` while its object lives and does nothing after.

    The recorder and the sender thread hold these instead of bound methods of the Monitor, so
    they do not keep an unclosed Monitor alive: dropping its last reference runs its finalizer
    (flush, final status, thread stopped).
    """
    ref = weakref.WeakMethod(method)

    def call(*args: Any) -> None:
        target = ref()
        if target is not None:
            target(*args)

    return call


class _WarnOnce:
    """Warn once per key (thread-safe); later repeats are counted only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def __call__(self, key: str, message: str) -> None:
        with self._lock:
            n = self.counts.get(key, 0)
            self.counts[key] = n + 1
        if n == 0:
            warnings.warn(message, StethoscopeWarning, stacklevel=4)


def _shutdown(
    sender: Sender, watches: list[Any], status: str | None, timeout: float, wait: bool = True
) -> None:
    for w in list(watches):
        w.remove()
    sender.close(status, timeout, wait=wait)


def _finalize(sender: Sender, watches: list[Any], status: str, timeout: float) -> None:
    """Finalizer of an unclosed Monitor. At interpreter exit it waits for delivery (at most
    ``timeout``); when the Monitor is garbage-collected earlier (e.g. a notebook cell run again)
    it only starts the final flush, which the sender thread finishes in the background, so
    whatever thread dropped the last reference is never blocked on the network."""
    exiting = bool(getattr(weakref.finalize, "_shutdown", False)) or (
        not threading.main_thread().is_alive()
    )
    _shutdown(sender, watches, status, timeout, wait=exiting)


class Monitor:
    """Record a training run and stream it to a Stethoscope server.

    Parameters
    ----------
    run : str
        Run name, 1-128 characters ``[A-Za-z0-9][A-Za-z0-9._-]*``. Reusing a name appends.
    server : str, optional
        Base URL, e.g. ``"http://127.0.0.1:8765"``. Falls back to the ``STETHOSCOPE_SERVER``
        environment variable; with neither, the monitor runs offline (data is kept in a bounded
        queue, and in ``spool_dir`` if given) and warns once.
    config : mapping, optional
        Hyper-parameters; sent (made JSON-safe) with the run at start.
    on_alert : callable, optional
        Called with an :class:`Alert` for every new firing alert and every severity increase,
        from the sender thread. Exceptions it raises are logged, never propagated.
    stop_on : {"warning", "critical"}, optional
        Opt into a clean stop: once an alert of at least this severity fires,
        :attr:`should_stop` becomes True and the next :meth:`log` raises :class:`StopTraining`
        (once). Without it nothing is ever raised into the training loop. A StopTraining
        that leaves a ``with Monitor(...)`` block ends the run with status ``"finished"``
        (a clean stop), not ``"failed"``.
    flush_interval : float
        Seconds between sends (default 1.0). A batch also goes early when ``flush_points``
        points are pending.
    flush_points : int
        Pending points that trigger an early flush (default 10,000).
    max_pending_points : int
        Hard cap on recorded-but-not-yet-flushed points; above it new points are dropped and
        counted (default 1,000,000; only reached if the sender thread is starved).
    max_queue_points, max_queue_bytes : int
        Bound of the queue of encoded batches waiting for the server (defaults 2,000,000
        points, 256 MiB); when full the oldest batch is dropped with a counted warning.
    max_batch_points : int
        Most scalar points in one HTTP batch (default 50,000).
    timeout : float
        HTTP timeout per request in seconds (default 10.0).
    close_timeout : float
        Longest :meth:`close` waits for delivery (default 10.0 seconds).
    detectors : mapping, optional
        Per-run detector configuration sent with the run: series roles, thresholds and which
        detectors run, e.g. ``{"roles": {"loss_d": "errD"}, "spike": {"warn_z": 8}}`` (see
        docs/detectors.md). Checked here, so a typo fails at construction, not on the server.
    spool_dir : str or Path, optional
        Directory where queued batches are also written until acknowledged; a later Monitor
        with the same run name and spool_dir sends what was left.
    transport : httpx.BaseTransport, optional
        Custom httpx transport (tests use ``httpx.MockTransport``).
    backoff_initial, backoff_max : float
        Retry backoff bounds in seconds (defaults 0.5 and 30; doubled per failure, jittered).
    """

    def __init__(
        self,
        run: str,
        server: str | None = None,
        config: Mapping[str, Any] | None = None,
        on_alert: Callable[[Alert], Any] | None = None,
        *,
        stop_on: str | None = None,
        detectors: Mapping[str, Any] | None = None,
        flush_interval: float = 1.0,
        flush_points: int = 10_000,
        max_pending_points: int = 1_000_000,
        max_queue_points: int = 2_000_000,
        max_queue_bytes: int = 256 << 20,
        max_batch_points: int = 50_000,
        timeout: float = 10.0,
        close_timeout: float = 10.0,
        spool_dir: str | os.PathLike[str] | None = None,
        transport: httpx.BaseTransport | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        if not isinstance(run, str) or not RUN_NAME_RE.match(run):
            raise ValueError(
                f"run={run!r} is not a valid run name: use 1-128 characters, letters, digits, "
                "'.', '_' or '-', starting with a letter or digit (e.g. 'dcgan-lr2e-4')"
            )
        if server is None:
            server = os.environ.get("STETHOSCOPE_SERVER") or None
        if server is not None:
            if not isinstance(server, str):
                raise ValueError(f"server must be a URL string, got {type(server).__name__}")
            try:
                url = httpx.URL(server)
            except Exception as exc:
                raise ValueError(f"server={server!r} is not a URL ({exc})") from exc
            if url.scheme not in ("http", "https") or not url.host:
                raise ValueError(
                    f"server={server!r} must be an http:// or https:// URL with a host, "
                    "e.g. 'http://127.0.0.1:8765'"
                )
            server = server.rstrip("/")
        if config is not None and not isinstance(config, Mapping):
            raise ValueError(
                f"config must be a mapping (e.g. vars(args)), got {type(config).__name__}"
            )
        if on_alert is not None and not callable(on_alert):
            raise ValueError("on_alert must be callable (it receives an Alert), e.g. print")
        if detectors is not None:
            from stethoscope.detectors import SuiteConfig

            if not isinstance(detectors, Mapping):
                raise ValueError(
                    f"detectors must be a mapping, got {type(detectors).__name__}; "
                    'e.g. {"roles": {"loss_d": "errD"}}'
                )
            SuiteConfig.from_mapping(detectors)  # raises ValueError naming the bad key
        if stop_on is not None and stop_on not in ("warning", "critical"):
            raise ValueError(f"stop_on must be None, 'warning' or 'critical', got {stop_on!r}")
        _positive("flush_interval", flush_interval)
        _positive("timeout", timeout)
        _positive("close_timeout", close_timeout, allow_zero=True)
        _positive("backoff_initial", backoff_initial)
        _positive("backoff_max", backoff_max)
        for pname, pval in (
            ("flush_points", flush_points),
            ("max_pending_points", max_pending_points),
            ("max_queue_points", max_queue_points),
            ("max_queue_bytes", max_queue_bytes),
            ("max_batch_points", max_batch_points),
        ):
            if isinstance(pval, bool) or not isinstance(pval, int) or pval < 1:
                raise ValueError(f"{pname} must be a positive int, got {pval!r}")
        if transport is not None and not isinstance(transport, httpx.BaseTransport):
            raise ValueError("transport must be an httpx.BaseTransport (e.g. MockTransport)")

        self.run = run
        self.server = server
        self._on_alert = on_alert
        self._stop_rank = None if stop_on is None else SEVERITY_RANK[stop_on]
        self._close_timeout = float(close_timeout)
        self._stop_alert: Alert | None = None
        self._stop_raised = False
        self._closed = False
        self._close_lock = threading.Lock()
        self._warn = _WarnOnce()
        self._watches: list[Any] = []
        self._watch_names: set[str] = set()
        self._book = AlertBook()
        self._outbox = Outbox(
            run=run,
            max_points=max_queue_points,
            max_bytes=max_queue_bytes,
            spool_dir=None if spool_dir is None else Path(spool_dir),
        )
        self._recorder = Recorder(
            flush_points=flush_points,
            max_pending_points=max_pending_points,
            max_pending_embeddings=64,
            wake=_weak_method(self._wake),
            warn=self._warn,
        )
        client = None
        if server is not None:
            client = httpx.Client(
                base_url=server,
                transport=transport,
                timeout=timeout,
                headers={"user-agent": "stethoscope-collector/0.1"},
            )
        self._sender = Sender(
            run=run,
            client=client,
            recorder=self._recorder,
            outbox=self._outbox,
            book=self._book,
            warn=self._warn,
            flush_interval=float(flush_interval),
            max_batch_points=max_batch_points,
            on_alerts=_weak_method(self._alerts_arrived),
            backoff_initial=float(backoff_initial),
            backoff_max=float(backoff_max),
        )
        start: dict[str, Any] = {"config": json_safe(dict(config or {})), "status": "running"}
        if detectors is not None:
            start["detectors"] = json_safe(dict(detectors))
        self._outbox.put(RunUpdate(start))
        if self._outbox.load_spool():
            _log.info("stethoscope: resending batches left in the spool for run %r", run)
        if server is None:
            warnings.warn(
                f"Monitor(run={run!r}): no server given (server= or STETHOSCOPE_SERVER); "
                "running offline, keeping at most max_queue_points points in memory"
                + (" and the spool" if spool_dir is not None else ""),
                StethoscopeWarning,
                stacklevel=2,
            )
        self._finalizer = weakref.finalize(
            self, _finalize, self._sender, self._watches, "finished", self._close_timeout
        )
        self._sender.start()

    # ------------------------------------------------------------------ recording
    def log(self, step: int, /, **scalars: Any) -> None:
        """Record scalar values at ``step`` (a non-negative int).

        Values may be Python numbers, numpy scalars or one-element torch tensors (kept on their
        device, read back in one batched copy per flush; inference-mode tensors too). NaN and
        Inf are kept. Anything else is dropped with one warning per name; an unexpected error
        while recording a value drops that value with a warning. Raises
        :class:`StopTraining` only with ``stop_on``.
        """
        if self._stop_alert is not None and not self._stop_raised:
            self._stop_raised = True
            raise StopTraining(self._stop_alert)
        try:
            if type(step) is not int:
                step = self._coerce_step(step)
                if step is None:
                    return
            elif step < 0:
                self._warn("step", f"log(): step must be >= 0, got {step}; call dropped")
                return
            if self._closed:
                self._warn("closed", "log() after close(): values dropped")
                return
            self._recorder.add_scalars(step, scalars)
        except Warning:
            raise  # the user turned StethoscopeWarning into an error
        except Exception as exc:
            self._internal_error("log", exc)

    def _internal_error(self, where: str, exc: Exception) -> None:
        with contextlib.suppress(Exception):
            self._warn(
                "internal:" + where,
                f"{where}(): unexpected {type(exc).__name__} while recording ({exc}); this "
                "call's data was dropped and training goes on",
            )

    def _coerce_step(self, step: Any) -> int | None:
        if isinstance(step, (numbers.Integral, np.integer)) and not isinstance(step, bool):
            with contextlib.suppress(Exception):
                value = int(step)
                if value >= 0:
                    return value
        self._warn(
            "step",
            f"log(): step must be a non-negative int, got {step!r} ({type(step).__name__}); "
            "call dropped. Pass the Python int of your loop counter.",
        )
        return None

    def log_embeddings(self, step: int, fake: Any, real: Any = None) -> None:
        """Record an ``(n, d)`` batch of generated (``fake``) and optionally ``real`` embeddings.

        numpy arrays are copied now as float32; torch tensors are detached and read back at
        flush. A wrong shape (not 2-D, empty, different ``d``) is warned about and dropped, as is
        an array wider than the server accepts (``d`` > 8,192). More rows than the server
        accepts (16,384, fewer when ``n * d`` exceeds 2**24) are subsampled: a seeded random
        subset of rows, kept in order, with one warning.
        """
        try:
            self._log_embeddings(step, fake, real)
        except Warning:
            raise  # the user turned StethoscopeWarning into an error
        except Exception as exc:
            self._internal_error("log_embeddings", exc)

    def _log_embeddings(self, step: Any, fake: Any, real: Any) -> None:
        if self._closed:
            self._warn("closed", "log_embeddings() after close(): dropped")
            return
        if type(step) is not int or step < 0:
            step = self._coerce_step(step)
            if step is None:
                return
        items = [("fake", fake)] + ([] if real is None else [("real", real)])
        checked = []
        for name, data in items:
            arr = self._check_embedding(name, data)
            if arr is None:
                return
            checked.append((name, arr))
        if len(checked) == 2 and checked[0][1].shape[1] != checked[1][1].shape[1]:
            self._warn(
                "emb:d",
                f"log_embeddings(): fake has d={checked[0][1].shape[1]} but real has "
                f"d={checked[1][1].shape[1]}; embed both with the same extractor. Dropped.",
            )
            return
        for which, (name, arr) in enumerate(checked):
            self._recorder.add_embedding(step, name, self._subsample(step, which, name, arr))

    def _check_embedding(self, name: str, data: Any) -> Any:
        """The detached tensor or the numpy array (not yet copied), or None if unusable."""
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(data, torch.Tensor):
            ok = data.dim() == 2 and not data.is_complex()
            shape = tuple(data.shape)
            checked = data.detach() if ok else None
        else:
            try:
                arr = np.asarray(data)
                ok = arr.ndim == 2 and arr.dtype.kind in "biuf"
            except Exception:
                arr, ok = None, False
            shape = getattr(arr, "shape", ())
            checked = arr if ok else None
        if not ok or shape[0] < 1 or shape[1] < 1:
            self._warn(
                "emb:" + name,
                f"log_embeddings(): {name} must be a 2-D (n, d) real array or tensor with n, d "
                f">= 1, got shape {shape}; dropped",
            )
            return None
        if shape[1] > MAX_EMBEDDING_DIM:
            self._warn(
                "emb:dim",
                f"log_embeddings(): {name} has d={shape[1]} features; the server accepts at "
                f"most {MAX_EMBEDDING_DIM}. Dropped: project the features to fewer dimensions "
                "(e.g. a pooled layer or PCA) before logging.",
            )
            return None
        return checked

    def _subsample(self, step: int, which: int, name: str, arr: Any) -> Any:
        """At most :func:`_row_cap` rows (a seeded, sorted random subset), numpy as float32."""
        n, d = arr.shape[0], arr.shape[1]
        cap = _row_cap(d)
        rows = None
        if n > cap:
            rng = np.random.default_rng([_EMBEDDING_SEED, step, which])
            rows = np.sort(rng.choice(n, size=cap, replace=False)).astype(np.int64)
            self._warn(
                "emb:rows",
                f"log_embeddings(): {name} has {n} rows of d={d}; sending a seeded random "
                f"subset of {cap} rows (the server accepts at most {MAX_EMBEDDING_ROWS} rows "
                f"and the collector keeps at most {_MAX_EMBEDDING_VALUES} values per array). "
                "Log fewer samples to choose them yourself.",
            )
        if isinstance(arr, np.ndarray):
            if rows is not None:
                arr = arr[rows]
            return np.ascontiguousarray(arr, dtype=np.float32)
        return arr if rows is None else RowSample(arr, rows)

    def watch(
        self,
        module: Any,
        name: str | None = None,
        *,
        every: int | Callable[[int], bool] = DEFAULT_WATCH_EVERY,
        optimizer: Any = None,
        trigger: str = "optimizer",
    ) -> Any:
        """Record per-parameter gradient L2 norms of a torch module, and their total.

        Series: ``grad_norm/<name>/<parameter name>`` and ``grad_norm/<name>/total``.

        ``every`` is an int N (norms every N-th step, default 10) or a callable
        ``step -> bool``. The step is estimated when the hook fires (last logged step + 1,
        counting hook calls since) and the norms are labelled with the step of the next
        :meth:`log` call, so call ``log()`` after the optimizer step, as usual.

        ``trigger="optimizer"`` (default) takes the norms just before an optimizer step that
        updates the module (``optimizer=`` restricts it to that optimizer; by default any
        ``torch.optim.Optimizer`` holding the module's parameters). ``trigger="backward"``
        takes them at the end of each backward pass instead (no optimizer needed).

        Returns a handle whose ``remove()`` removes every hook. Raises ValueError or TypeError
        for invalid arguments (this is set-up, not the loop).
        """
        torch = sys.modules.get("torch")
        if torch is None or not isinstance(module, torch.nn.Module):
            raise TypeError(f"watch() needs a torch.nn.Module, got {type(module).__name__}")
        if self._closed:
            raise ValueError("watch() after close()")
        if name is None:
            name = type(module).__name__
        if not isinstance(name, str) or not WATCH_NAME_RE.match(name):
            raise ValueError(
                f"watch(): name={name!r} must be 1-64 letters, digits, '_', '.', ':' or '-' "
                "(it becomes part of the series name grad_norm/<name>/...)"
            )
        if name in self._watch_names:
            raise ValueError(
                f"watch(): name {name!r} is already watched; give each module its own name"
            )
        if isinstance(every, bool) or not (
            (isinstance(every, int) and every >= 1) or callable(every)
        ):
            raise ValueError(f"watch(): every must be an int >= 1 or a callable, got {every!r}")
        if optimizer is not None and trigger != "optimizer":
            raise ValueError("watch(): optimizer= only applies to trigger='optimizer'")
        from .torch_hooks import GradWatch

        handle = GradWatch(
            module,
            name=name,
            every=every,
            recorder=self._recorder,
            warn=self._warn,
            optimizer=optimizer,
            trigger=trigger,
        )
        self._watch_names.add(name)
        self._watches.append(handle)
        return handle

    # ------------------------------------------------------------------ alerts
    def _wake(self) -> None:
        self._sender.wake()

    def _alerts_arrived(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            if (
                self._stop_rank is not None
                and self._stop_alert is None
                and alert.rank >= self._stop_rank
            ):
                self._stop_alert = alert
            if self._on_alert is not None:
                try:
                    self._on_alert(alert)
                except Exception:
                    _log.exception("stethoscope: the on_alert callback raised; ignored")

    @property
    def alerts(self) -> list[Alert]:
        """Every alert of this run seen so far, latest state per alert id, in seq order."""
        return self._book.alerts()

    @property
    def should_stop(self) -> bool:
        """True once an alert at or above ``stop_on`` fired (always False without stop_on)."""
        return self._stop_alert is not None

    @property
    def stop_alert(self) -> Alert | None:
        return self._stop_alert

    # ------------------------------------------------------------------ lifecycle
    @property
    def stats(self) -> dict[str, int]:
        """Counters: delivered, queued, dropped and rejected data (for logs and tests)."""
        return {
            "sent_batches": self._sender.sent_batches,
            "sent_points": self._sender.sent_points,
            "queued_items": len(self._outbox),
            "queued_points": self._outbox.points,
            "dropped_points": self._outbox.dropped_points + self._recorder.dropped_points,
            "dropped_batches": self._outbox.dropped_batches,
            "dropped_embeddings": (
                self._outbox.dropped_embeddings + self._recorder.dropped_embeddings
            ),
            "rejected_batches": self._sender.rejected_batches,
            "failed_attempts": self._sender.failures,
        }

    def flush(self) -> None:
        """Ask the sender to flush now (does not wait)."""
        self._recorder.request_flush()

    def close(self, status: str = "finished", timeout: float | None = None) -> bool:
        """Flush, send the final ``status`` and stop; waits at most ``timeout`` seconds
        (default ``close_timeout``). Idempotent. Removes all watch hooks. Returns True when
        everything was delivered (always True offline)."""
        if status not in ("finished", "failed"):
            raise ValueError(f"status must be 'finished' or 'failed', got {status!r}")
        with self._close_lock:
            if self._closed:
                return len(self._outbox) == 0 or self.server is None
            self._closed = True
        self._finalizer.detach()
        _shutdown(
            self._sender,
            self._watches,
            status,
            self._close_timeout if timeout is None else float(timeout),
        )
        return self.server is None or len(self._outbox) == 0

    def __enter__(self) -> Monitor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # StopTraining is the clean stop the user opted into with stop_on, so the run ends
        # "finished" (the server knows running, finished and failed); any other exception
        # marks it "failed". The exception itself is not suppressed.
        clean = exc_type is None or issubclass(exc_type, StopTraining)
        self.close("finished" if clean else "failed")

    def __repr__(self) -> str:
        where = self.server or "offline"
        return f"Monitor(run={self.run!r}, server={where!r}, closed={self._closed})"


def _row_cap(d: int) -> int:
    """Most rows of a ``d``-column embedding that are kept."""
    return max(1, min(MAX_EMBEDDING_ROWS, _MAX_EMBEDDING_VALUES // d))


def _positive(name: str, value: Any, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
