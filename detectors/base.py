"""Shared machinery of every detector: parameters, registered state, reset and serialisation.

Parameters are stored verbatim as attributes and validated in the constructor, so a wrong
threshold fails at once with a message naming the parameter and its valid range (river style).
State is registered with :meth:`Detector._add_state` (torchmetrics' ``add_state`` idea), so
:meth:`~Detector.reset`, :meth:`~Detector.state_dict` and :meth:`~Detector.load_state_dict` are
generic: no detector writes its own serialisation. State dicts hold only plain JSON types (lists,
floats, ints, strings, bools, None); non-finite floats are written as the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"`` like the wire format, so ``json.dumps(..., allow_nan=False)``
works.
"""

from __future__ import annotations

import copy
import inspect
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .findings import DetectorStatus, Finding, Remedy

__all__ = [
    "Detector",
    "ScalarDetector",
    "SeriesDetector",
    "EmbeddingDetector",
    "check_int",
    "check_float",
    "check_choice",
    "run_lengths",
    "latch",
]

STATE_VERSION = 1
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


# --------------------------------------------------------------------------- validation
def check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    """Raise ``ValueError`` unless ``value`` is an int in ``[low, high]``."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok:
        ok = value >= low and (high is None or value <= high)
    if not ok:
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {rng}, got {value!r}")


def check_float(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite real number in the given interval."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high
        )
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(
            f"{name} must be a finite number in {lo}{low}, {high}{hi}, got {value!r}"
        )


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


# --------------------------------------------------------------------------- vector helpers
def run_lengths(cond: np.ndarray, carry: int = 0) -> np.ndarray:
    """Length of the run of True ending at each position (``carry`` continues a previous run).

    Works along axis 0; ``carry`` may be an array for 2-D ``cond``.

    >>> run_lengths(np.array([True, True, False, True]), carry=2).tolist()
    [3, 4, 0, 1]
    """
    cond = np.asarray(cond, dtype=bool)
    n = cond.shape[0]
    idx = np.arange(n).reshape((n,) + (1,) * (cond.ndim - 1))
    last_false = np.maximum.accumulate(np.where(cond, -1, idx), axis=0)
    return np.where(last_false < 0, idx + 1 + np.asarray(carry), idx - last_false)


def latch(
    cond: np.ndarray,
    run_true: int,
    run_false: int,
    firing: bool,
    fire_after: int,
    resolve_after: int,
    clear: np.ndarray | None = None,
) -> tuple[list[tuple[int, str]], int, int, bool]:
    """Turn a boolean stream into fire / resolve events with persistence (hysteresis in time).

    Fires when ``cond`` has been True ``fire_after`` times in a row, resolves when ``clear``
    (default ``~cond``; pass a stricter one for hysteresis in value) has been True
    ``resolve_after`` times in a row. Returns ``(events, run_true, run_clear, firing)`` where
    ``events`` are ``(index, "fire" | "resolve")`` pairs and the rest is the carried state.
    """
    cond = np.asarray(cond, dtype=bool)
    if cond.size == 0:
        return [], run_true, run_false, firing
    rt = run_lengths(cond, run_true)
    rf = run_lengths(~cond if clear is None else np.asarray(clear, dtype=bool), run_false)
    events: list[tuple[int, str]] = []
    pos = 0
    n = cond.size
    while pos < n:
        hits = np.flatnonzero((rf[pos:] >= resolve_after) if firing else (rt[pos:] >= fire_after))
        if hits.size == 0:
            break
        i = pos + int(hits[0])
        events.append((i, "resolve" if firing else "fire"))
        firing = not firing
        pos = i + 1
    return events, int(rt[-1]), int(rf[-1]), firing


# --------------------------------------------------------------------------- JSON encoding
def _to_json(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return _to_json(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"cannot serialise state of type {type(value).__name__}")


def _from_json(value: Any) -> Any:
    if isinstance(value, str) and value in _NONFINITE:
        return _NONFINITE[value]
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    return value


def _restore(default: Any, value: Any) -> Any:
    value = _from_json(value)
    if isinstance(default, np.ndarray):
        arr = np.asarray(value, dtype=default.dtype)
        if arr.size == 0:
            return np.zeros(default.shape if default.size == 0 else (0,), dtype=default.dtype)
        return arr
    if isinstance(default, float) and value is not None:
        return float(value)
    if isinstance(default, bool):
        return bool(value)
    if isinstance(default, int) and value is not None:
        return int(value)
    if isinstance(default, tuple):
        return tuple(value)
    return value


# --------------------------------------------------------------------------- base class
class Detector:
    """Base of all detectors: verbatim parameters, registered state, generic (de)serialisation.

    Subclasses call ``super().__init__()`` first, store their parameters as attributes of the
    same name, validate them, then register state with :meth:`_add_state`.
    """

    #: Short family name used in detector names and health rows (set by subclasses).
    family: str = "detector"

    def __init__(self) -> None:
        self._state_defaults: dict[str, Any] = {}

    # state registration ------------------------------------------------------------------
    def _add_state(self, name: str, default: Any) -> None:
        """Register ``name`` as state: reset restores ``default``; state_dict serialises it."""
        if name in self._state_defaults:
            raise RuntimeError(f"state {name!r} registered twice")
        self._state_defaults[name] = copy.deepcopy(default)
        setattr(self, name, copy.deepcopy(default))

    def reset(self) -> None:
        """Forget everything seen; the detector is then equivalent to a fresh instance."""
        for name, default in self._state_defaults.items():
            setattr(self, name, copy.deepcopy(default))

    def _get_params(self) -> dict[str, Any]:
        sig = inspect.signature(type(self).__init__)
        return {
            name: getattr(self, name)
            for name, p in sig.parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }

    def clone(self) -> Detector:
        """A fresh detector with the same parameters."""
        return type(self)(**self._get_params())

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable snapshot: parameters (for information) and registered state."""
        return {
            "version": STATE_VERSION,
            "class": type(self).__name__,
            "params": _to_json(self._get_params()),
            "state": {name: _to_json(getattr(self, name)) for name in self._state_defaults},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a snapshot made by :meth:`state_dict` (parameters stay those of ``self``)."""
        if not isinstance(state, Mapping) or "state" not in state:
            raise ValueError("load_state_dict expects a dict made by state_dict()")
        if state.get("class") not in (None, type(self).__name__):
            raise ValueError(
                f"state was saved by {state.get('class')}, cannot load it into "
                f"{type(self).__name__}"
            )
        saved = state["state"]
        missing = [n for n in self._state_defaults if n not in saved]
        if missing:
            raise ValueError(f"state dict lacks {missing}; was it saved by another version?")
        for name, default in self._state_defaults.items():
            setattr(self, name, _restore(default, saved[name]))

    # helpers for subclasses --------------------------------------------------------------
    @property
    def name(self) -> str:
        """Name of this detector instance (family, plus its subject if any)."""
        subject = getattr(self, "series", None) or getattr(self, "module", None)
        return f"{self.family}:{subject}" if subject else self.family

    def _finding(
        self,
        kind: str,
        key: str,
        severity: str,
        status: str,
        step: int,
        message: str,
        evidence: Mapping[str, float],
        remedies: Sequence[Remedy] = (),
        subject: str | None = None,
    ) -> Finding:
        return Finding(
            detector=self.name,
            kind=kind,
            key=key,
            severity=severity,
            status=status,
            step=int(step),
            message=message,
            evidence=evidence,
            remedies=tuple(remedies),
            subject=subject,
        )

    def status(self) -> DetectorStatus:  # pragma: no cover - overridden
        """This detector's row in the run's health view."""
        return DetectorStatus(self.name, "ok", "running")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._get_params().items())
        return f"{type(self).__name__}({params})"


SeriesBatch = Mapping[str, tuple[Any, Any]]


class ScalarDetector(Detector):
    """A detector of scalar streams: ``update({name: (steps, values)})`` consumes new points.

    The names are what the detector is about: series names, gradient-norm parameter names or
    GAN roles, depending on the detector; the suite routes each series to the detectors that
    want it.
    """

    def update(self, series: SeriesBatch) -> list[Finding]:  # pragma: no cover - abstract
        """Consume new points of the named series; returns the findings they caused."""
        raise NotImplementedError


class SeriesDetector(ScalarDetector):
    """A scalar detector that watches one series, named by its ``series`` parameter.

    ``update({name: (steps, values)})`` takes the entry of that name (or the only entry).
    """

    series: str

    def update(self, series: SeriesBatch) -> list[Finding]:
        if not series:
            return []
        if self.series in series:
            steps, values = series[self.series]
        elif len(series) == 1:
            steps, values = next(iter(series.values()))
        else:
            raise ValueError(
                f"{type(self).__name__} watches {self.series!r}; got series {sorted(series)}"
            )
        return self._update(steps, values)

    def _update(self, steps: Any, values: Any) -> list[Finding]:  # pragma: no cover
        raise NotImplementedError


class EmbeddingDetector(Detector):
    """A detector of embedding batches logged at one step (``{"fake": (n, d), "real": ...}``).

    The expensive part is :meth:`measure`, a pure function of the arrays and the detector's
    parameters that touches no state (the server runs it outside the run's lock); :meth:`update`
    takes its result (or measures itself) and decides.
    """

    def measure(self, step: int, embeddings: Mapping[str, Any]) -> dict[str, Any]:
        """The measurements one evaluation needs (no state is read or changed)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def update(self, step: int, embeddings: Mapping[str, Any],
               measured: Mapping[str, Any] | None = None) -> list[Finding]:
        """Judge one evaluation; ``measured`` is :meth:`measure`'s result when already known."""
        raise NotImplementedError  # pragma: no cover - abstract


def as_arrays(steps: Any, values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert a ``(steps, values)`` pair to int64 / float64 arrays of one length."""
    s = np.asarray(steps, dtype=np.int64).reshape(-1)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if s.shape != v.shape:
        raise ValueError(
            f"steps and values must have the same length, got {s.size} steps and {v.size} values"
        )
    return s, v


def fmt(x: float) -> str:
    """Compact number formatting for messages."""
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if abs(x) >= 1e4 or abs(x) < 1e-3:
        return f"{x:.3g}"
    return f"{x:.4g}"
