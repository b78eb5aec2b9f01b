"""Losses pinned to a constant: training that has silently stopped.

A loss that repeats the same value, to the last few digits, for ``patience`` points in a row is
not being learned from: a BCE loss clamped at 100 (``nn.BCELoss`` clamps log at -100) with its
partner pinned at 0, a saturated network that outputs the same thing whatever the batch, an
optimiser that no longer changes anything. Nothing is NaN and nothing spikes, so without this
check such a run reads as healthy. Each pinned series is a critical finding of kind
``stalled`` (key ``stalled/pinned:<series>``); it resolves once the series has moved again for
``resolve_after`` points in a row.

A series that was constant from its very first point is only reported when it is a main loss
(:meth:`PinnedLossDetector.mark_main`, the suite marks the GAN losses): a constant auxiliary
term (a disabled penalty logged as 0) is a placeholder, not a stall.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from . import remedies
from .base import ScalarDetector, as_arrays, check_float, check_int, fmt, latch, run_lengths
from .findings import DetectorStatus, Finding

__all__ = ["PinnedLossDetector"]


class PinnedLossDetector(ScalarDetector):
    """Critical when a loss stays at one value for ``patience`` points in a row.

    Parameters
    ----------
    patience
        Points in a row at the same value (within ``rtol``) to fire (default 50).
    rtol
        Relative tolerance of "the same value" (default 1e-6; float32 losses that still learn
        move far more than that between steps).
    resolve_after
        Points in a row that move again before the finding resolves (default 20).

    Examples
    --------
    >>> import numpy as np
    >>> det = PinnedLossDetector()
    >>> det.mark_main(["loss_D"])
    >>> t = np.arange(200)
    >>> loss = np.where(t < 100, 1.3 + 0.01 * np.sin(t), 100.0)
    >>> [(f.key, f.step, f.severity) for f in det.update({"loss_D": (t, loss)})]
    [('stalled/pinned:loss_D', 149, 'critical')]
    """

    family = "stall"

    def __init__(self, patience: int = 50, rtol: float = 1e-6, resolve_after: int = 20) -> None:
        super().__init__()
        self.patience = patience
        self.rtol = rtol
        self.resolve_after = resolve_after
        check_int("patience", patience, 2)
        check_float("rtol", rtol, 0.0, 0.1)
        check_int("resolve_after", resolve_after, 1)
        self._add_state("last", {})  # series -> last finite value
        self._add_state("same", {})  # series -> points in a row at that value
        self._add_state("held", {})  # series -> points in a row pinned for `patience` or more
        self._add_state("moved", {})  # series -> points in a row that moved
        self._add_state("varied", [])  # series seen moving at least once
        self._add_state("main", [])  # series reported even if constant from the start
        self._add_state("firing", [])
        self._add_state("points", 0)

    def mark_main(self, names: Iterable[str]) -> None:
        """Report these series even when they never moved (the run's main losses)."""
        for name in names:
            if name not in self.main:
                self.main.append(name)

    def update(self, series: Mapping[str, tuple[Any, Any]]) -> list[Finding]:
        out: list[Finding] = []
        for name, pair in series.items():
            s, v = as_arrays(*pair)
            keep = np.isfinite(v)
            s, v = s[keep], v[keep]
            if not s.size:
                continue
            self.points += int(s.size)
            prev = self.last.get(name)
            seq = np.concatenate([[prev], v]) if prev is not None else v
            same = np.abs(np.diff(seq)) <= self.rtol * np.maximum(np.abs(seq[:-1]), 1e-12)
            if prev is None:  # the first point starts a run of one
                same = np.concatenate([[False], same])
            out += self._walk(name, s, v, same)
            self.last[name] = float(v[-1])
        return out

    def _walk(self, name: str, s: np.ndarray, v: np.ndarray, same: np.ndarray) -> list[Finding]:
        moves = ~same
        if name not in self.last:
            moves[0] = False  # a series' very first point is no move
        if name not in self.varied and moves.any():
            self.varied.append(name)
            first_move = int(np.argmax(moves))
        else:
            first_move = 0
        eligible = name in self.main or name in self.varied
        # points in a row at the same value, counting the first of them
        run = run_lengths(same, max(self.same.get(name, 0) - 1, 0)) + 1
        cond = run >= self.patience
        if not eligible:
            cond[:] = False
        elif name not in self.main and first_move:
            cond[:first_move] = False  # it had not moved yet
        firing = name in self.firing
        held, moved = self.held.get(name, 0), self.moved.get(name, 0)
        out: list[Finding] = []
        if firing or cond.any():
            events, held, moved, firing = latch(cond, held, moved, firing, 1,
                                                self.resolve_after, moves)
            for i, what in events:
                if what == "fire":
                    self.firing.append(name)
                    out.append(self._fire(name, int(s[i]), float(v[i]), int(run[i])))
                else:
                    self.firing.remove(name)
                    out.append(self._resolve(name, int(s[i])))
        else:
            moved = int(run_lengths(moves, moved)[-1])
        self.same[name] = int(run[-1])
        self.held[name], self.moved[name] = int(held), int(moved)
        return out

    def _fire(self, name: str, step: int, value: float, run: int) -> Finding:
        clamp = " (nn.BCELoss clamps log at -100: a clamped BCE term)" if math.isclose(
            abs(value) % 100.0, 0.0, abs_tol=1e-3) and abs(value) >= 100 else ""
        msg = (
            f"{name} is stuck at {fmt(value)}{clamp}: the same value for {run} points in a row "
            f"(step {step}). A loss that no longer changes from batch to batch is not being "
            f"learned from: the network is saturated, its gradients are zero, or its update "
            f"does nothing. Nothing is NaN, so the run looks alive; it is not."
        )
        evidence = {"value": value, "points_in_a_row": float(run), "rtol": float(self.rtol)}
        return self._finding("stalled", f"stalled/pinned:{name}", "critical", "firing", step,
                             msg, evidence, remedies.STALLED, name)

    def _resolve(self, name: str, step: int) -> Finding:
        msg = f"{name} is moving again: {self.resolve_after} changes in a row (step {step})."
        return self._finding("stalled", f"stalled/pinned:{name}", "critical", "resolved", step,
                             msg, {"resolve_after": float(self.resolve_after)}, (), name)

    def status(self) -> DetectorStatus:
        if self.points == 0:
            return DetectorStatus(self.name, "waiting", "no loss values yet")
        if self.firing:
            return DetectorStatus(self.name, "alarm", "pinned: " + ", ".join(self.firing))
        return DetectorStatus(self.name, "ok", f"{len(self.last)} loss series moving")
