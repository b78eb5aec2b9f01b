"""Non-finite values (NaN, +Inf, -Inf): the run has diverged.

NaN is the finding: one non-finite value in a loss or a gradient norm raises a critical
divergence at once, naming the series and the step. The alert resolves only after every series
that went non-finite has produced ``resolve_after`` finite values in a row.
"""

from __future__ import annotations

import math

import numpy as np

from . import remedies
from .base import ScalarDetector, SeriesBatch, as_arrays, check_int, fmt
from .findings import DetectorStatus, Finding

__all__ = ["NonFiniteDetector"]

KEY = "divergence/nonfinite"


class NonFiniteDetector(ScalarDetector):
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
    >>> det.update({"loss_D": (np.arange(5), [0.7, 0.69, 0.68, float("nan"), 0.7])})[0].message[:40]
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

    def update(self, series: SeriesBatch) -> list[Finding]:
        """Consume new points of several series at once, in step order across series."""
        clean = {}
        for name, (steps, values) in series.items():
            s, v = as_arrays(steps, values)
            if s.size:
                clean[name] = (s, v)
                self.points += int(s.size)
        if not clean:
            return []
        finite = {name: np.isfinite(v) for name, (_, v) in clean.items()}
        if not self.firing and all(f.all() for f in finite.values()):
            for name, (_, v) in clean.items():
                self.last_finite[name] = float(v[-1])
            return []
        # slow path (something is or was non-finite): walk the points in step order
        names = list(clean)
        who = np.concatenate([np.full(clean[n][0].size, i) for i, n in enumerate(names)])
        steps = np.concatenate([clean[n][0] for n in names])
        values = np.concatenate([clean[n][1] for n in names])
        fin = np.concatenate([finite[n] for n in names])
        order = np.argsort(steps, kind="stable")
        bad_total = int((~fin).sum())
        out: list[Finding] = []
        for k in order.tolist():
            name = names[who[k]]
            if fin[k]:
                self.last_finite[name] = float(values[k])
                if self.firing and name in self.finite_runs:
                    self.finite_runs[name] += 1
                    if self.finite_runs[name] == self.resolve_after and all(
                        r >= self.resolve_after for r in self.finite_runs.values()
                    ):
                        out.append(self._resolve(name, int(steps[k])))
            elif not self.firing:
                out.append(self._fire(name, int(steps[k]), float(values[k]), bad_total))
                self.finite_runs = {name: 0}
            else:
                self.nonfinite_count += 1
                self.finite_runs[name] = 0
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
