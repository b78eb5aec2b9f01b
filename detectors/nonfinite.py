"""Non-finite values (NaN, +Inf, -Inf): the run has diverged.

NaN is the finding: one non-finite value in a loss or a gradient norm raises a critical
divergence at once, naming the series and the step. The alert resolves only after every series
that went non-finite has produced ``resolve_after`` finite values in a row.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import remedies
from .base import Detector, as_arrays, check_int, fmt, run_lengths
from .findings import DetectorStatus, Finding

__all__ = ["NonFiniteDetector"]

KEY = "divergence/nonfinite"


class NonFiniteDetector(Detector):
    """Critical divergence on the first NaN or Inf in any series it is fed.

    One instance watches every series of a run (so one key, ``divergence/nonfinite``, per run).

    Parameters
    ----------
    resolve_after
        Finite values in a row, in every series that went non-finite, before the finding
        resolves. Default 50.

    Examples
    --------
    >>> import numpy as np
    >>> det = NonFiniteDetector()
    >>> det.update("loss_D", np.arange(5), [0.7, 0.69, 0.68, float("nan"), 0.7])[0].message[:40]
    'loss_D became NaN at step 3 (last finite'
    >>> det.firing
    True
    """

    family = "nonfinite"

    def __init__(self, resolve_after: int = 50) -> None:
        super().__init__()
        self.resolve_after = resolve_after
        check_int("resolve_after", resolve_after, 1)
        self._add_state("firing", False)
        self._add_state("first_step", -1)
        self._add_state("nonfinite_count", 0)
        self._add_state("finite_runs", {})  # series -> finite values in a row (while firing)
        self._add_state("last_finite", {})  # series -> last finite value
        self._add_state("points", 0)

    def update(self, series: str, steps: Any, values: Any) -> list[Finding]:
        """Consume new points of one series; returns findings (usually none)."""
        s, v = as_arrays(steps, values)
        n = v.size
        if n == 0:
            return []
        self.points += n
        finite = np.isfinite(v)
        all_finite = bool(finite.all())
        out: list[Finding] = []
        if all_finite and not self.firing:
            self.last_finite[series] = float(v[-1])
            return out
        pos = 0
        while pos < n:
            fin = finite[pos:]
            if not self.firing:
                bad = np.flatnonzero(~fin)
                if bad.size == 0:
                    break
                j = pos + int(bad[0])
                if j > pos:
                    self.last_finite[series] = float(v[j - 1])
                out.append(self._fire(series, int(s[j]), float(v[j]), int((~finite[j:]).sum())))
                self.finite_runs = {series: 0}
                pos = j + 1
                continue
            if series not in self.finite_runs:
                bad = np.flatnonzero(~fin)
                if bad.size == 0:
                    break
                self.nonfinite_count += int(bad.size)
                self.finite_runs[series] = 0
                pos += int(bad[0]) + 1
                continue
            others_ok = all(
                r >= self.resolve_after for k, r in self.finite_runs.items() if k != series
            )
            runs = run_lengths(fin, self.finite_runs[series])
            if not others_ok:
                self.finite_runs[series] = int(runs[-1])
                break
            hits = np.flatnonzero(runs >= self.resolve_after)
            if hits.size == 0:
                self.finite_runs[series] = int(runs[-1])
                break
            i = pos + int(hits[0])
            out.append(self._resolve(series, int(s[i])))
            pos = i + 1
        if finite[-1]:
            self.last_finite[series] = float(v[-1])
        return out

    def _fire(self, series: str, step: int, value: float, count: int) -> Finding:
        self.firing = True
        self.first_step = step
        self.nonfinite_count = count
        word = "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
        last = self.last_finite.get(series)
        last_txt = f"last finite value {fmt(last)}" if last is not None else "no finite value before"
        message = (
            f"{series} became {word} at step {step} ({last_txt}). A non-finite loss or gradient "
            f"norm means the run has diverged: every update from here on is garbage. "
            f"{count} non-finite value(s) in this batch."
        )
        evidence = {
            "value": value,
            "last_finite_value": last if last is not None else math.nan,
            "nonfinite_in_batch": float(count),
        }
        return self._finding(
            "divergence", KEY, "critical", "firing", step, message, evidence,
            remedies.NONFINITE, series,
        )

    def _resolve(self, series: str, step: int) -> Finding:
        first = self.first_step
        self.firing = False
        self.finite_runs = {}
        message = (
            f"Every series that went non-finite after step {first} has had "
            f"{self.resolve_after} finite values in a row (last: {series} at step {step})."
        )
        return self._finding(
            "divergence", KEY, "critical", "resolved", step, message,
            {"first_step": float(first), "resolve_after": float(self.resolve_after)},
            (), series,
        )

    def status(self) -> DetectorStatus:
        if self.points == 0:
            return DetectorStatus(self.name, "waiting", "no loss or gradient-norm values yet")
        if self.firing:
            return DetectorStatus(
                self.name, "alarm", f"non-finite values since step {self.first_step}"
            )
        return DetectorStatus(self.name, "ok", f"{self.points} values checked, all finite")
