"""The hot path: record scalars, gradient norms and embeddings until the sender drains them.

Recording only appends to lists under a lock. Torch tensors are detached and kept on their
device; they are read back later, in one batched copy per device (see ``readback.py``).
"""

from __future__ import annotations

import math
import numbers
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .wire import RESERVED_PREFIX, SERIES_NAME_RE

__all__ = ["Drained", "Recorder"]

Warn = Callable[[str, str], None]  # (once-key, message)
_PLAIN = frozenset((float, int))


class _Series:
    __slots__ = ("steps", "tensors", "tsteps", "values")

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.values: list[float] = []
        self.tsteps: list[int] = []
        self.tensors: list[tuple[Any, int]] = []  # (detached tensor, version at log time)


@dataclass
class Drained:
    """Everything recorded since the previous drain (raw: tensors not yet read back)."""

    series: dict[str, _Series] = field(default_factory=dict)
    grads: list[tuple[int, str, tuple[str, ...], Any]] = field(default_factory=list)
    embeddings: list[tuple[int, str, Any]] = field(default_factory=list)
    points: int = 0

    def empty(self) -> bool:
        return not (self.series or self.grads or self.embeddings)


def _torch_tensor_type() -> type | None:
    torch = sys.modules.get("torch")
    return None if torch is None else torch.Tensor


class Recorder:
    """Thread-safe store of pending data; the training thread writes, the sender drains."""

    def __init__(
        self,
        *,
        flush_points: int,
        max_pending_points: int,
        max_pending_embeddings: int,
        wake: Callable[[], None],
        warn: Warn,
    ) -> None:
        self._lock = threading.Lock()
        self._flush_points = flush_points
        self._max_points = max_pending_points
        self._max_embeddings = max_pending_embeddings
        self._wake = wake
        self._warn = warn
        self._records: list[tuple[int, dict[str, Any]]] = []
        self._points = 0
        self._woken = False
        self._grads_ready: list[tuple[int, str, tuple[str, ...], Any]] = []
        self._grads_pending: dict[int, tuple[int, str, tuple[str, ...], Any]] = {}
        self._embeddings: list[tuple[int, str, Any]] = []
        self._good_names: set[str] = set()
        self._last_step: int | None = None
        self._log_serial = 0
        self._prev_step: int | None = None  # the step logged before the last one
        # watch -> (log serial, hooks since that log, hooks per logged step)
        self._triggers: dict[int, tuple[int, int, int]] = {}
        self.dropped_points = 0
        self.dropped_embeddings = 0

    # ------------------------------------------------------------------ hot path
    @property
    def last_step(self) -> int | None:
        return self._last_step

    def add_scalars(self, step: int, scalars: dict[str, Any]) -> None:
        """Record ``scalars`` at ``step`` (already a validated non-negative int).

        Fast path (only Python floats/ints under already-seen names): one list append of the
        call's own kwargs dict. Otherwise values are checked one by one: tensors are detached
        (so no autograd graph is kept alive), numpy and other numbers converted, the rest
        dropped with one warning per name.
        """
        if not (set(map(type, scalars.values())) <= _PLAIN and scalars.keys() <= self._good_names):
            scalars = self._slow_values(scalars)
        n = len(scalars)
        with self._lock:
            if step != self._last_step:
                self._prev_step = self._last_step
            self._last_step = step
            self._log_serial += 1
            if self._grads_pending:
                for _est, prefix, names, tensor in self._grads_pending.values():
                    self._grads_ready.append((step, prefix, names, tensor))
                self._grads_pending.clear()
            if self._points + n > self._max_points:
                self.dropped_points += n
                return
            if n:
                self._records.append((step, scalars))
                self._points += n
            if self._points >= self._flush_points and not self._woken:
                self._woken = True
                self._wake()

    def request_flush(self) -> None:
        """Ask the sender for a flush now: the flag is set before the wake-up, under the lock,
        so the sender (which reads the flag after waking) cannot miss it."""
        with self._lock:
            self._woken = True
            self._wake()

    def _slow_values(self, scalars: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        tensor_type = _torch_tensor_type() or ()
        for name, value in scalars.items():
            try:
                if name not in self._good_names and not self._check_name(name):
                    continue
                t = type(value)
                if t is float or t is int:
                    out[name] = value
                elif tensor_type and isinstance(value, tensor_type):
                    entry = self._tensor_entry(name, value)
                    if entry is not None:
                        out[name] = entry
                else:
                    f = self._to_float(name, value)
                    if f is not None:
                        out[name] = f
            except Warning:
                raise  # the user turned StethoscopeWarning into an error
            except Exception as exc:  # never into the training loop: drop this value only
                self._warn(
                    "error:" + str(name),
                    f"log(): could not record {name!r} ({type(value).__name__}): "
                    f"{type(exc).__name__}: {exc}; dropped. Pass a float, an int, a numpy "
                    "scalar or a one-element torch tensor.",
                )
        return out

    def _tensor_entry(self, name: str, value: Any) -> tuple[Any, int] | None:
        """``(detached 0-d tensor, version at log time)``; version -1 for inference tensors,
        which have no version counter (so no in-place check for them)."""
        if value.numel() != 1 or value.is_complex():
            self._warn(
                "value:" + name,
                f"log(): {name!r} is a tensor of shape {tuple(value.shape)} and "
                f"dtype {value.dtype}; only one-element real tensors are "
                "scalars. Dropped (reduce it first, e.g. .mean()).",
            )
            return None
        if value.requires_grad:
            value = value.detach()  # keep no autograd graph alive
        if value.dim():
            value = value.reshape(())
        return value, (-1 if value.is_inference() else value._version)

    def _check_name(self, name: str) -> bool:
        if SERIES_NAME_RE.match(name) and not name.startswith(RESERVED_PREFIX):
            self._good_names.add(name)
            return True
        self._warn(
            "name:" + name,
            f"log(): series name {name!r} is not allowed (1-200 letters, digits or _ . : / -, "
            f"not starting with {RESERVED_PREFIX!r}); its values are dropped.",
        )
        return False

    def _to_float(self, name: str, value: Any) -> float | None:
        if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "biuf":
            return float(value.reshape(()))
        if isinstance(value, (np.floating, np.integer, np.bool_, numbers.Real)):
            try:
                return float(value)
            except (TypeError, ValueError, OverflowError):
                pass
        self._warn(
            "value:" + name,
            f"log(): {name!r} got {type(value).__name__!s}, not a number; dropped. Pass a float, "
            "an int, a numpy scalar or a one-element torch tensor.",
        )
        return None

    def trigger(self, key: int) -> int:
        """Called by a gradient watch when its hook fires; returns the estimated step.

        Estimate: ``last logged step + 1 + hooks since that log / hooks per step``. The rate
        is learnt from the previous interval between two logs: a discriminator stepped 5 times
        per logged step fires 5 hooks per step, so all 5 map to the same step and its norms land
        on the same steps as the generator's (the last of the 5 is kept); a loop that logs every
        10 steps fires 10 hooks per 10 steps, which map to the 10 steps in between. The record
        itself is attributed to the step of the next ``log()`` call (see :meth:`add_grad`).
        """
        with self._lock:
            serial, n, rate = self._triggers.get(key, (-1, -1, 1))
            if serial == self._log_serial:
                n += 1
            else:
                if (serial == self._log_serial - 1 and self._prev_step is not None
                        and self._last_step is not None):
                    delta = max(1, self._last_step - self._prev_step)
                    rate = max(1, round((n + 1) / delta))
                n = 0
            self._triggers[key] = (self._log_serial, n, rate)
            if self._last_step is None:
                return n // rate
            return self._last_step + 1 + n // rate

    def add_grad(
        self, key: int, estimate: int, prefix: str, names: tuple[str, ...], norms: Any
    ) -> None:
        """Gradient norms of one watch; the next ``log()`` step labels them (last one wins)."""
        with self._lock:
            if key not in self._grads_pending and self._points >= self._max_points:
                self.dropped_points += len(names)
                return
            if key not in self._grads_pending:
                self._points += len(names) + 1
            self._grads_pending[key] = (estimate, prefix, names, norms)

    def add_embedding(self, step: int, name: str, data: Any) -> None:
        with self._lock:
            if len(self._embeddings) >= self._max_embeddings:
                self.dropped_embeddings += 1
                return
            self._embeddings.append((step, name, data))
            if not self._woken and len(self._embeddings) >= max(1, self._max_embeddings // 2):
                self._woken = True
                self._wake()

    # ------------------------------------------------------------------ sender side
    def drain(self, final: bool = False) -> Drained:
        """Take everything recorded; with ``final`` also the not-yet-labelled gradient norms."""
        with self._lock:
            records = self._records
            out = Drained({}, self._grads_ready, self._embeddings, self._points)
            self._records = []
            self._grads_ready = []
            self._embeddings = []
            self._points = 0
            if final and self._grads_pending:
                out.grads.extend(self._grads_pending.values())
                self._grads_pending.clear()
            for _est, _prefix, names, _t in self._grads_pending.values():
                self._points += len(names) + 1
            self._woken = False
        series = out.series
        for step, values in records:
            for name, value in values.items():
                entry = series.get(name)
                if entry is None:
                    entry = series[name] = _Series()
                if type(value) is tuple:
                    entry.tsteps.append(step)
                    entry.tensors.append(value)
                else:
                    entry.steps.append(step)
                    entry.values.append(value)
        return out


def merge_points(
    steps: list[int], values: list[float], tsteps: list[int], tvalues: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Parallel step/value arrays of one series from its float and tensor parts."""
    s = np.asarray(steps, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    if len(tsteps):
        s = np.concatenate([s, np.asarray(tsteps, dtype=np.int64)])
        v = np.concatenate([v, tvalues])
        if len(steps):
            order = np.argsort(s, kind="stable")
            s, v = s[order], v[order]
    return s, v


def total_norm(norms: np.ndarray) -> float:
    """L2 norm over per-parameter L2 norms (float64; NaN and Inf propagate)."""
    if norms.size == 0:
        return math.nan
    return float(np.sqrt(np.sum(np.square(norms.astype(np.float64)))))
