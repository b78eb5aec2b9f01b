"""Loss spikes and upward drift, both scored against a rolling robust reference.

Both detectors keep the last ``window`` finite values of one series and, every ``refresh``
points, recompute a robust reference from them: the median and the scaled median absolute
deviation (1.4826 MAD, which equals the standard deviation for Gaussian noise) of log(value), or
of the raw value for series that can be zero or negative. New points are scored with the robust
z-score ``z = (x - median) / (1.4826 MAD)`` against the reference of the last refresh, which
makes the per-point cost a few vectorised numpy operations and keeps the result independent of
how points are batched.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import ndtri

from . import remedies
from .base import SeriesDetector, as_arrays, check_choice, check_float, check_int, fmt
from .findings import DetectorStatus, Finding
from .naming import parse_grad_norm

__all__ = ["SpikeDetector", "DriftDetector"]

MAD_TO_SIGMA = 1.4826


class _RollingReference(SeriesDetector):
    """Rolling median / MAD reference shared by the spike and drift detectors."""

    def _init_reference(self) -> None:
        check_int("window", self.window, 10)
        check_int("refresh", self.refresh, 1)
        check_int("min_points", self.min_points, 2)
        if self.min_points > self.window:
            raise ValueError(
                f"min_points must be <= window ({self.window}), got {self.min_points}"
            )
        check_float("min_scale", self.min_scale, 0.0, low_open=True)
        check_choice("scale", self.scale, ("auto", "log", "linear"))
        self._add_state("buffer", np.zeros(0))
        self._add_state("count", 0)
        self._add_state("center", math.nan)
        self._add_state("spread", math.nan)
        self._add_state("ready", False)
        self._add_state("log_mode", self.scale != "linear")

    def _transform(self, x: np.ndarray) -> np.ndarray:
        return np.log(x) if self.log_mode else x

    def _recompute(self) -> None:
        x = self._transform(self.buffer)
        center = float(np.median(x))
        mad = float(np.median(np.abs(x - center))) * MAD_TO_SIGMA
        floor = self.min_scale if self.log_mode else self.min_scale * max(abs(center), 1e-12)
        q = getattr(self, "tail_quantile", 0.0)
        if q:  # heavy upper tail: the quantile's excess, in Gaussian sigmas, if MAD understates it
            tail = (float(np.quantile(x, q)) - center) / float(ndtri(q))
            mad = max(mad, tail)
        self.center = center
        self.spread = max(mad, floor)
        self.ready = True

    def _clean(self, steps: Any, values: Any) -> tuple[np.ndarray, np.ndarray]:
        s, v = as_arrays(steps, values)
        keep = np.isfinite(v)
        if self.log_mode:
            nonpos = keep & (v <= 0)
            if nonpos.any():
                if self.scale == "log":
                    keep &= ~nonpos  # the caller promised positive values: ignore the others
                else:  # auto: this series can be <= 0, score raw values from now on
                    self.log_mode = False
                    if self.ready:
                        self._recompute()
        if not keep.all():
            s, v = s[keep], v[keep]
        return s, v

    def _segments(self, v: np.ndarray):
        """Yield ``(start, stop, scoreable)`` chunks that end on refresh boundaries."""
        pos = 0
        n = v.size
        while pos < n:
            take = min(n - pos, self.refresh - (self.count % self.refresh))
            seg = v[pos : pos + take]
            yield pos, pos + take, self.ready
            buf = np.concatenate([self.buffer, seg])
            self.buffer = buf[-self.window :] if buf.size > self.window else buf
            self.count += take
            if self.count % self.refresh == 0 and self.buffer.size >= self.min_points:
                self._recompute()
            pos += take

    def _z(self, seg: np.ndarray) -> np.ndarray:
        return (self._transform(seg) - self.center) / self.spread

    def _median_raw(self) -> float:
        return math.exp(self.center) if self.log_mode else self.center

    def _waiting(self) -> DetectorStatus | None:
        if not self.ready:
            have = min(self.buffer.size, self.count)
            need = max(self.min_points, self.refresh * math.ceil(self.min_points / self.refresh))
            return DetectorStatus(
                self.name,
                "waiting",
                f"{have}/{need} finite points of {self.series} before the rolling reference "
                f"is ready",
            )
        return None


class SpikeDetector(_RollingReference):
    """Sudden upward jumps of one loss (or gradient-norm) series, graded by how long they last.

    Works on log(value) for positive series (a loss that doubles is one step whatever its
    scale) and on the raw value once the series shows a value <= 0 (``scale="auto"``).
    A point is a spike when its robust z-score exceeds ``warn_z`` (and, for positive series,
    the value is at least ``min_ratio`` times the rolling median). Severity says what to do:

    - ``info``: a spike, the first of an excursion. Losses and gradient norms, of GANs above
      all, jump and come back in healthy runs; an excursion that recovers is a marker on the
      chart, not an alert;
    - ``warning``: the excursion has lasted ``sustain`` points in a row (once started, an
      excursion goes on while the series stays above half the spike level);
    - ``critical``: it has lasted that long *and* is a blow-up: z above ``critical_z`` or the
      value above ``critical_ratio`` times the rolling median.

    The finding resolves after ``resolve_after`` points in a row below half the spike level.

    Parameters
    ----------
    series
        Name of the watched series (used in messages and the key
        ``divergence/spike:<series>``).
    window
        Points in the rolling reference (default 200).
    min_points
        Points needed before anything can fire (warm-up; default 50).
    refresh
        The reference is recomputed every ``refresh`` points (default 25).
    warn_z, critical_z
        Robust z thresholds (defaults 6 and 10).
    critical_ratio
        Value / rolling median above which a spike is critical (default 5).
    min_ratio
        Value / rolling median a spike must also reach (positive series; default 1.5), so that
        a very smooth loss's small bumps are not spikes however many MADs they are.
    min_scale
        Floor of the robust scale, in log units (relative change) for log-scored series and as a
        fraction of ``|median|`` for raw ones, so a flat series does not turn noise into spikes
        (default 0.01).
    scale
        ``"auto"`` (log while all values are > 0), ``"log"`` or ``"linear"``.
    resolve_after
        Spike-free points in a row before the finding resolves (default 50).
    sustain
        Spike points in a row that make an excursion a warning (or, if it is a blow-up, a
        critical finding); shorter ones stay ``info`` (default 25).
    tail_quantile
        The robust scale is at least ``(quantile_q - median) / Phi^-1(q)`` of the window (default
        0.99; 0 = MAD only). Equal to the MAD-based scale for Gaussian noise, larger for
        heavy-tailed series: adversarial GAN losses jump to 2x their median now and then in
        healthy runs, which the MAD alone scores as 6-7 sigma.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> loss = 0.7 * np.exp(0.02 * rng.standard_normal(500))
    >>> loss[250] = 5.0
    >>> loss[400:460] = 6.0
    >>> det = SpikeDetector("loss_D")
    >>> found = det.update({"loss_D": (np.arange(500), loss)})
    >>> [(f.step, f.severity, f.status) for f in found]  # doctest: +NORMALIZE_WHITESPACE
    [(250, 'info', 'firing'), (300, 'info', 'resolved'), (400, 'info', 'firing'),
     (424, 'critical', 'firing')]
    """

    family = "spike"

    def __init__(
        self,
        series: str,
        window: int = 200,
        min_points: int = 50,
        refresh: int = 25,
        warn_z: float = 6.0,
        critical_z: float = 10.0,
        critical_ratio: float = 5.0,
        min_ratio: float = 1.5,
        min_scale: float = 0.01,
        scale: str = "auto",
        resolve_after: int = 50,
        tail_quantile: float = 0.99,
        sustain: int = 25,
    ) -> None:
        super().__init__()
        self.series = series
        self.sustain = sustain
        check_int("sustain", sustain, 1)
        self.window = window
        self.min_points = min_points
        self.tail_quantile = tail_quantile
        check_float("tail_quantile", tail_quantile, 0.0, 1.0, high_open=True)
        if 0 < tail_quantile <= 0.5:
            raise ValueError(f"tail_quantile must be 0 (off) or in (0.5, 1), got {tail_quantile}")
        self.refresh = refresh
        self.warn_z = warn_z
        self.critical_z = critical_z
        self.critical_ratio = critical_ratio
        self.min_ratio = min_ratio
        self.min_scale = min_scale
        self.scale = scale
        self.resolve_after = resolve_after
        if not isinstance(series, str) or not series:
            raise ValueError(f"series must be a non-empty string, got {series!r}")
        check_float("warn_z", warn_z, 0.0, low_open=True)
        check_float("critical_z", critical_z, warn_z)
        check_float("critical_ratio", critical_ratio, 1.0, low_open=True)
        check_float("min_ratio", min_ratio, 1.0, critical_ratio)
        check_int("resolve_after", resolve_after, 1)
        self._init_reference()
        self._add_state("firing", False)
        self._add_state("severity", "")
        self._add_state("quiet", 0)
        self._add_state("spikes", 0)
        self._add_state("run", 0)  # spike points in a row
        self._add_state("excursion_ref", [math.nan, math.nan, math.nan])  # center, spread, median

    @property
    def key(self) -> str:
        return f"divergence/spike:{self.series}"

    def _update(self, steps: Any, values: Any) -> list[Finding]:
        """Consume new points (arrays of steps and values); returns findings."""
        s, v = self._clean(steps, values)
        out: list[Finding] = []
        for a, b, scoreable in self._segments(v):
            if not scoreable:
                continue
            seg = v[a:b]
            # an excursion is judged against the reference from before it: the rolling
            # reference soaks up a sustained excursion, which would then look normal
            center, spread, med = (self.excursion_ref if self.firing else
                                   (self.center, self.spread, self._median_raw()))
            z = (self._transform(seg) - center) / spread
            ratio = seg / med if self.log_mode else np.zeros_like(seg)
            spike = z > self.warn_z  # a jump within the series' own noise is no spike
            if self.log_mode:
                spike &= ratio >= self.min_ratio
            # once an excursion started, it goes on while the series stays above half the
            # spike level (noise dips a sustained excursion below warn_z now and then)
            high = z > 0.5 * self.warn_z
            if self.log_mode:
                high &= ratio >= 1.0 + 0.5 * (self.min_ratio - 1.0)
            if not self.firing and not spike.any():
                self.run = 0
                continue
            if self.firing and not high.any() and self.quiet + seg.size < self.resolve_after:
                self.quiet += seg.size
                self.run = 0
                continue
            crit = (z > self.critical_z) | (ratio > self.critical_ratio)
            rank = {"": -1, "info": 0, "warning": 1, "critical": 2}
            for i in range(seg.size):
                if spike[i] or (self.firing and high[i]):
                    self.quiet = 0
                    self.spikes += int(spike[i])
                    self.run += 1
                    if self.run < self.sustain:
                        sev = "info"
                    else:
                        sev = "critical" if crit[i] else "warning"
                    if not self.firing or rank[sev] > rank[self.severity]:
                        if not self.firing:
                            self.excursion_ref = [self.center, self.spread, self._median_raw()]
                        self.firing = True
                        self.severity = sev
                        out.append(self._fire(int(s[a + i]), float(seg[i]), float(z[i]), sev))
                else:
                    self.run = 0
                    if self.firing:
                        self.quiet += 1
                        if self.quiet >= self.resolve_after:
                            out.append(self._resolve(int(s[a + i])))
        return out

    def _fire(self, step: int, value: float, z: float, severity: str) -> Finding:
        med = self.excursion_ref[2]
        unit = "log-scale " if self.log_mode else ""
        ratio_txt = f" ({fmt(value / med)}x the median)" if self.log_mode else ""
        grad = parse_grad_norm(self.series)
        if grad is not None:
            why = (
                f" An early sign of divergence: spikes in {grad[0]}'s gradient norm usually come "
                f"before the loss spikes or turns NaN (OLMo 2; ZClip clips on the same signal)."
            )
        else:
            why = " Loss spikes often precede divergence; gradient-norm spikes usually come first."
        if severity == "info":
            lasting = " A short excursion: drawn on the chart; it becomes an alert only if it lasts."
        else:
            lasting = (f" It has stayed that high for {self.run} points in a row"
                       + (": a blow-up." if severity == "critical" else "."))
        message = (
            f"{self.series} jumped to {fmt(value)} at step {step}: {fmt(z)} robust standard "
            f"deviations ({unit}median/MAD over the last {self.buffer.size} points) above its "
            f"rolling median {fmt(med)}{ratio_txt}.{lasting}{why}"
        )
        evidence = {
            "value": value,
            "z": z,
            "median": med,
            "robust_scale": self.excursion_ref[1],
            "ratio_to_median": value / med if self.log_mode and med else math.nan,
            "window_points": float(self.buffer.size),
            "gradient_norm": 1.0 if grad is not None else 0.0,
            "points_in_a_row": float(self.run),
        }
        return self._finding(
            "divergence", self.key, severity, "firing", step, message, evidence,
            remedies.DIVERGENCE, self.series,
        )

    def _resolve(self, step: int) -> Finding:
        sev = self.severity or "info"
        self.firing = False
        self.severity = ""
        self.quiet = 0
        self.run = 0
        message = f"{self.series}: no spike for {self.resolve_after} points (step {step})."
        return self._finding(
            "divergence", self.key, sev, "resolved", step, message,
            {"resolve_after": float(self.resolve_after)}, (), self.series,
        )

    def status(self) -> DetectorStatus:
        waiting = self._waiting()
        if waiting is not None:
            return waiting
        if self.firing:
            return DetectorStatus(self.name, "alarm", f"{self.severity} spike in {self.series}")
        mode = "log" if self.log_mode else "raw"
        return DetectorStatus(
            self.name, "ok",
            f"{self.series}: {self.count} points, rolling median {fmt(self._median_raw())} "
            f"({mode} scale)",
        )


class DriftDetector(_RollingReference):
    """Sustained upward drift or blow-up of one loss series (Page-Hinkley / CUSUM).

    The clipped robust z-score of each new point against the rolling reference feeds a one-sided
    Page-Hinkley (CUSUM) statistic ``S_t = max(0, S_{t-1} + min(z_t, z_clip) - delta)``; the
    detector fires when ``S_t > threshold``. Because ``z`` is already centred on the rolling
    median and scaled to unit noise, ``delta`` is in standard deviations: with ``delta = 1`` pure
    noise drifts ``S`` downwards and healthy runs of any length stay quiet, while a loss that
    climbs steadily (exponential blow-up is a straight line in log space) accumulates fast. A
    decreasing loss gives negative z and never accumulates. The finding is critical when the
    latest value is more than ``critical_ratio`` times the rolling median, a warning otherwise,
    and resolves after ``resolve_after`` points with ``S = 0``.

    Parameters
    ----------
    series
        Name of the watched series (key ``divergence/drift:<series>``).
    min_instances
        Points needed before the reference exists and anything can fire (default 30, river's).
    delta
        Allowed drift per point, in robust standard deviations (default 1.0; river's 0.005 is
        in raw units against a running mean, which makes pure noise a random walk that crosses
        any threshold on long runs).
    threshold
        Alarm level of the cumulative statistic (default 50, river's).
    window, refresh, scale
        As for :class:`SpikeDetector` (defaults 200, 25, ``"auto"``).
    min_scale
        Floor of the robust scale (default 0.1, i.e. 10 % in log space): a drift is a material
        rise, not a few per cent on a very smooth loss, which GAN losses often show.
    z_clip
        Largest z a single point contributes, so one spike cannot make a drift (default 10).
    critical_ratio
        Value / rolling median above which the finding is critical (default 5).
    resolve_after
        Points in a row with ``S = 0`` before the finding resolves (default 100).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> t = np.arange(600)
    >>> loss = np.where(t < 400, 1.0, np.exp(0.02 * (t - 400))) * np.exp(0.05 * rng.standard_normal(600))
    >>> [(f.step, f.kind) for f in DriftDetector("loss").update({"loss": (t, loss)})]
    [(427, 'divergence')]
    """

    family = "drift"

    def __init__(
        self,
        series: str,
        min_instances: int = 30,
        delta: float = 1.0,
        threshold: float = 50.0,
        window: int = 200,
        refresh: int = 25,
        z_clip: float = 10.0,
        min_scale: float = 0.1,
        scale: str = "auto",
        critical_ratio: float = 5.0,
        resolve_after: int = 100,
    ) -> None:
        super().__init__()
        self.series = series
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.window = window
        self.refresh = refresh
        self.z_clip = z_clip
        self.min_scale = min_scale
        self.scale = scale
        self.critical_ratio = critical_ratio
        self.resolve_after = resolve_after
        if not isinstance(series, str) or not series:
            raise ValueError(f"series must be a non-empty string, got {series!r}")
        check_int("min_instances", min_instances, 2)
        check_float("delta", delta, 0.0)
        check_float("threshold", threshold, 0.0, low_open=True)
        check_float("z_clip", z_clip, 0.0, low_open=True)
        check_float("critical_ratio", critical_ratio, 1.0, low_open=True)
        check_int("resolve_after", resolve_after, 1)
        self.min_points = min_instances
        self._init_reference()
        self._add_state("stat", 0.0)
        self._add_state("zero_run", 0)
        self._add_state("firing", False)
        self._add_state("severity", "")
        self._add_state("fired_step", -1)

    @property
    def key(self) -> str:
        return f"divergence/drift:{self.series}"

    def _update(self, steps: Any, values: Any) -> list[Finding]:
        """Consume new points (arrays of steps and values); returns findings."""
        s, v = self._clean(steps, values)
        out: list[Finding] = []
        for a, b, scoreable in self._segments(v):
            if not scoreable:
                continue
            seg = v[a:b]
            x = np.minimum(self._z(seg), self.z_clip) - self.delta
            if self.stat == 0.0 and not self.firing and (x <= 0).all():
                continue  # the common healthy case: the statistic stays at zero
            w = self.stat + np.cumsum(x)
            stat = w - np.minimum.accumulate(np.minimum(w, 0.0))
            pos = 0
            while pos < seg.size:
                if not self.firing:
                    hits = np.flatnonzero(stat[pos:] > self.threshold)
                    if hits.size == 0:
                        break
                    i = pos + int(hits[0])
                    out.append(self._fire(int(s[a + i]), float(seg[i]), float(stat[i])))
                    pos = i + 1
                else:
                    zero = stat[pos:] == 0.0
                    idx = np.arange(zero.size)
                    last_nz = np.maximum.accumulate(np.where(zero, -1, idx))
                    runs = np.where(last_nz < 0, idx + 1 + self.zero_run, idx - last_nz)
                    hits = np.flatnonzero(runs >= self.resolve_after)
                    if hits.size == 0:
                        self.zero_run = int(runs[-1])
                        break
                    i = pos + int(hits[0])
                    out.append(self._resolve(int(s[a + i])))
                    pos = i + 1
            self.stat = float(stat[-1])
        return out

    def _fire(self, step: int, value: float, stat: float) -> Finding:
        med = self._median_raw()
        ratio = value / med if self.log_mode and med > 0 else math.nan
        sev = "critical" if ratio > self.critical_ratio else "warning"
        self.firing = True
        self.severity = sev
        self.fired_step = step
        self.zero_run = 0
        scale_txt = "log " if self.log_mode else ""
        ratio_txt = f" ({fmt(ratio)}x)" if math.isfinite(ratio) else ""
        message = (
            f"{self.series} has been drifting upwards: at step {step} it is {fmt(value)} against "
            f"a rolling median of {fmt(med)}{ratio_txt}; the Page-Hinkley statistic on its "
            f"{scale_txt}robust z-score reached {fmt(stat)} (> {fmt(self.threshold)}). A loss "
            f"that keeps climbing is blowing up or diverging."
        )
        evidence = {
            "value": value,
            "median": med,
            "ratio_to_median": ratio,
            "statistic": stat,
            "threshold": float(self.threshold),
        }
        return self._finding(
            "divergence", self.key, sev, "firing", step, message, evidence,
            remedies.DIVERGENCE, self.series,
        )

    def _resolve(self, step: int) -> Finding:
        sev = self.severity or "warning"
        first = self.fired_step
        self.firing = False
        self.severity = ""
        self.zero_run = 0
        message = (
            f"{self.series} stopped drifting upwards (fired at step {first}; no excess over "
            f"the rolling median for {self.resolve_after} points at step {step})."
        )
        return self._finding(
            "divergence", self.key, sev, "resolved", step, message,
            {"fired_step": float(first)}, (), self.series,
        )

    def status(self) -> DetectorStatus:
        waiting = self._waiting()
        if waiting is not None:
            return waiting
        if self.firing:
            return DetectorStatus(self.name, "alarm", f"{self.series} drifting upwards")
        return DetectorStatus(
            self.name, "ok", f"{self.series}: drift statistic {fmt(self.stat)} / "
            f"{fmt(self.threshold)}"
        )
