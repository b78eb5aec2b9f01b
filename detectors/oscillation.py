"""Growing oscillation of a GAN loss (non-convergence).

The loss is cut into consecutive windows of ``window`` points. For each window the standard
deviation of its first differences measures how hard the loss swings from step to step. A window
whose swing exceeds ``growth`` times the median of the previous ``baseline_windows`` windows is
"elevated". A finding fires once ``patience`` windows in a row are elevated *and* the swing is
still growing: the latest is at least ``growth`` times the first of the elevated run. The
second condition tells growing oscillation from a one-off step up in noise level, which GAN losses
show when the generator starts to learn (heuristic, see DESIGN.md). The finding is ``info``: a
marker on the chart, never an alert that asks for action. Measured on the corpus' tuning split:
healthy GANs on the 5x5 grid grow their G loss's swing 5x over 800 steps while they learn new
modes, and every one raised this finding; no failing run needed it to be caught.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import remedies
from .base import SeriesDetector, as_arrays, check_float, check_int, fmt
from .findings import DetectorStatus, Finding

__all__ = ["OscillationDetector"]


class OscillationDetector(SeriesDetector):
    """Marks where a loss oscillates more and more (GAN non-convergence, or a GAN learning).

    Parameters
    ----------
    series
        Name of the watched series (key ``divergence/oscillation:<series>``).
    window
        Points per window (default 100).
    growth
        Ratio of a window's swing to the baseline that counts as elevated (default 2).
    patience
        Elevated windows in a row to fire (with the swing still growing), and healthy windows
        in a row to resolve (default 3).
    baseline_windows
        Previous windows whose median swing is the baseline (default 20).
    min_windows
        Windows needed before anything can fire (default 10: the first thousand steps of a GAN
        often ramp from near-silence to their working noise level).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(2000)
    >>> amp = np.where(t < 1000, 0.05, 0.05 * 1.004 ** (t - 1000))
    >>> loss = 1.0 + amp * rng.standard_normal(2000)
    >>> found = OscillationDetector("loss_G").update({"loss_G": (t, loss)})
    >>> [(f.key, f.step, f.severity) for f in found]
    [('divergence/oscillation:loss_G', 1499, 'info')]
    """

    family = "oscillation"

    def __init__(
        self,
        series: str,
        window: int = 100,
        growth: float = 2.0,
        patience: int = 3,
        baseline_windows: int = 20,
        min_windows: int = 10,
    ) -> None:
        super().__init__()
        self.series = series
        self.window = window
        self.growth = growth
        self.patience = patience
        self.baseline_windows = baseline_windows
        self.min_windows = min_windows
        if not isinstance(series, str) or not series:
            raise ValueError(f"series must be a non-empty string, got {series!r}")
        check_int("window", window, 3)
        check_float("growth", growth, 1.0, low_open=True)
        check_int("patience", patience, 1)
        check_int("baseline_windows", baseline_windows, 1)
        check_int("min_windows", min_windows, 1)
        self._add_state("block", np.zeros(0))
        self._add_state("last", math.nan)
        self._add_state("swings", [])
        self._add_state("windows", 0)
        self._add_state("elevated_run", 0)
        self._add_state("run_start_swing", 0.0)
        self._add_state("healthy_run", 0)
        self._add_state("firing", False)

    @property
    def key(self) -> str:
        return f"divergence/oscillation:{self.series}"

    def _update(self, steps: Any, values: Any) -> list[Finding]:
        """Consume new points (arrays of steps and values); returns findings."""
        s, v = as_arrays(steps, values)
        keep = np.isfinite(v)
        s, v = s[keep], v[keep]
        out: list[Finding] = []
        pos = 0
        while pos < v.size:
            take = min(v.size - pos, self.window - self.block.size)
            self.block = np.concatenate([self.block, v[pos : pos + take]])
            pos += take
            if self.block.size < self.window:
                break
            seq = self.block if math.isnan(self.last) else np.concatenate([[self.last],
                                                                            self.block])
            swing = float(np.std(np.diff(seq)))
            self.last = float(self.block[-1])
            self.block = np.zeros(0)
            f = self._close_window(int(s[pos - 1]), swing)
            if f is not None:
                out.append(f)
        return out

    def _close_window(self, step: int, swing: float) -> Finding | None:
        base = float(np.median(self.swings)) if self.swings else math.nan
        self.windows += 1
        elevated = (
            len(self.swings) >= self.min_windows and base > 0 and swing > self.growth * base
        )
        self.swings = (self.swings + [swing])[-self.baseline_windows :]
        if elevated:
            if self.elevated_run == 0:
                self.run_start_swing = swing
            self.elevated_run += 1
            self.healthy_run = 0
        else:
            self.healthy_run += 1
            self.elevated_run = 0
        growing = swing >= self.growth * self.run_start_swing
        if not self.firing and self.elevated_run >= self.patience and growing:
            self.firing = True
            msg = (
                f"{self.series} oscillates more and more: the standard deviation of its step-to-"
                f"step changes is {fmt(swing)} in the window ending at step {step}, "
                f"{fmt(swing / base)}x the median of the previous windows ({fmt(base)}), for "
                f"{self.elevated_run} windows of {self.window} steps in a row, and still "
                f"growing ({fmt(swing / self.run_start_swing)}x since the first). Growing "
                f"oscillation can mean a GAN that does not converge; healthy GANs also swing "
                f"harder for a while as they learn new modes, so this is a marker, not an alert."
            )
            ev = {"swing": swing, "baseline": base, "ratio": swing / base,
                  "growth_in_run": swing / self.run_start_swing,
                  "windows": float(self.elevated_run)}
            return self._finding("divergence", self.key, "info", "firing", step, msg, ev,
                                 remedies.OSCILLATION, self.series)
        if self.firing and self.healthy_run >= self.patience:
            self.firing = False
            msg = (f"{self.series} oscillations back within {fmt(self.growth)}x of the baseline "
                   f"for {self.healthy_run} windows (step {step}).")
            return self._finding("divergence", self.key, "info", "resolved", step, msg,
                                 {"swing": swing, "baseline": base}, (), self.series)
        return None

    def status(self) -> DetectorStatus:
        if self.windows < self.min_windows + 1:
            return DetectorStatus(
                self.name, "waiting",
                f"{self.windows}/{self.min_windows + 1} windows of {self.window} points of "
                f"{self.series}",
            )
        if self.firing:
            return DetectorStatus(self.name, "alarm", f"{self.series} oscillation growing")
        return DetectorStatus(self.name, "ok", f"{self.series}: {self.windows} windows checked")
