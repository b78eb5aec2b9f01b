"""Discriminator overfitting: StyleGAN2-ADA's ``r_t`` heuristic.

Karras et al. (2020, "Training Generative Adversarial Networks with Limited Data") measure
discriminator overfitting with ``r_t = E[sign(D(x_real))]``, the mean sign of D's raw outputs
(logits) on the training reals: 0 when D cannot tell the reals from the fakes, 1 when it calls
every training real "real" with certainty. On limited data, ``r_t -> 1`` means D has memorised the
training set (its outputs on held-out reals fall towards those on fakes) and the generator's
results start to degrade. ADA steers ``r_t`` to a target of 0.6 by adjusting the augmentation
probability. This detector watches the logged ``r_t`` and warns when it stays near 1.

The input is the role ``d_real_sign``: the mean of ``sign(real_logits)`` per step, e.g.
``mon.log(step, r_t=real_logits.sign().mean())`` (StyleGAN2-ADA reports the same number as
``Loss/signs/real``). A mean of raw logits or of probabilities is not ``r_t``: values outside
[-1, 1] switch the detector off and :meth:`status` says so.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import remedies
from .base import SeriesDetector, as_arrays, check_float, check_int, fmt, latch, run_lengths
from .findings import DetectorStatus, Finding

__all__ = ["DiscriminatorOverfittingDetector", "KEY", "ADA_TARGET"]

KEY = "discriminator_overfitting"
#: The value StyleGAN2-ADA steers r_t to (Karras et al. 2020).
ADA_TARGET = 0.6


class DiscriminatorOverfittingDetector(SeriesDetector):
    """Warns when ``r_t = E[sign(D(x_real))]`` stays near 1 (D memorises the training reals).

    The rolling mean of ``r_t`` over the last ``window`` finite points is compared with
    ``threshold``; above it for ``patience`` points in a row fires a ``warning`` of kind
    ``discriminator_wins`` and key ``discriminator_overfitting``. It resolves after
    ``resolve_after`` points in a row with the rolling mean below ``threshold - hysteresis``.
    Nothing fires before ``window`` points. Values outside [-1, 1] are not ``r_t`` (logits or
    probabilities were logged): the detector switches itself off and says so in :meth:`status`.

    Parameters
    ----------
    window
        Rolling-mean length in points (default 100): per-step ``r_t`` from one minibatch is
        noisy (ADA averages it over 4 minibatches).
    threshold
        Rolling mean of ``r_t`` above which D is overfitting (default 0.9, heuristic; ADA's
        target is 0.6 and a fully overfitted D reaches 1).
    patience
        Points in a row above ``threshold`` to fire (default 50).
    resolve_after
        Points in a row below ``threshold - hysteresis`` to resolve (default 50).
    hysteresis
        How far below ``threshold`` the mean must fall to count as healthy (default 0.1).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(600)
    >>> r_t = np.where(t < 300, 0.5, 0.98)
    >>> [(f.key, f.step) for f in DiscriminatorOverfittingDetector().update({"r_t": (t, r_t)})]
    [('discriminator_overfitting', 432)]
    """

    family = "overfitting"
    series = ""  # the suite routes the r_t series (role d_real_sign) here, whatever its name

    def __init__(
        self,
        window: int = 100,
        threshold: float = 0.9,
        patience: int = 50,
        resolve_after: int = 50,
        hysteresis: float = 0.1,
    ) -> None:
        super().__init__()
        self.window = window
        self.threshold = threshold
        self.patience = patience
        self.resolve_after = resolve_after
        self.hysteresis = hysteresis
        check_int("window", window, 1)
        check_float("threshold", threshold, ADA_TARGET, 1.0, high_open=True)
        check_int("patience", patience, 1)
        check_int("resolve_after", resolve_after, 1)
        check_float("hysteresis", hysteresis, 0.0, threshold + 1.0)
        self._add_state("tail", np.zeros(0))
        self._add_state("count", 0)
        self._add_state("valid", True)
        self._add_state("bad_value", math.nan)
        self._add_state("latch", [0, 0, False])
        self._add_state("last_mean", math.nan)

    def _update(self, steps: Any, values: Any) -> list[Finding]:
        """Consume new ``r_t`` points (NaN or Inf are skipped: the NaN detector sees them)."""
        s, v = as_arrays(steps, values)
        keep = np.isfinite(v)
        s, v = s[keep], v[keep]
        if s.size == 0 or not self.valid:
            return []
        bad = (v < -1.0) | (v > 1.0)
        if bad.any():
            self.valid = False
            self.bad_value = float(v[np.argmax(bad)])
            out: list[Finding] = []
            if self.latch[2]:
                out.append(self._resolved(int(s[0]), "the r_t series is no longer usable"))
            self.latch = [0, 0, False]
            return out
        full = np.concatenate([self.tail, v])
        csum = np.concatenate([[0.0], np.cumsum(full)])
        end = np.arange(self.tail.size, full.size) + 1
        start = np.maximum(end - self.window, 0)
        mean = (csum[end] - csum[start]) / (end - start)
        self.tail = full[-self.window:]
        warm = np.arange(self.count, self.count + v.size) >= self.window - 1
        self.count += int(v.size)
        self.last_mean = float(mean[-1])
        cond = warm & (mean > self.threshold)
        clear = mean < self.threshold - self.hysteresis
        run_t, run_f, firing = self.latch
        out = []
        if firing or cond.any():
            events, run_t, run_f, firing = latch(
                cond, run_t, run_f, firing, self.patience, self.resolve_after, clear
            )
            for i, what in events:
                if what == "fire":
                    out.append(self._fire(int(s[i]), float(mean[i])))
                else:
                    out.append(self._resolved(
                        int(s[i]), f"the mean r_t has been below "
                        f"{fmt(self.threshold - self.hysteresis)} for {self.resolve_after} points"))
            self.latch = [run_t, run_f, firing]
        else:
            self.latch = [0, int(run_lengths(clear, run_f)[-1]), False]
        return out

    def _fire(self, step: int, mean: float) -> Finding:
        msg = (
            f"The discriminator is overfitting: r_t = E[sign(D(x_real))] averages {fmt(mean)} "
            f"over the last {min(self.count, self.window)} points (> {fmt(self.threshold)}, for "
            f"{self.patience} points in a row; step {step}). D calls nearly every training real "
            f"'real' with certainty, which on limited data means it memorises the training set; "
            f"StyleGAN2-ADA steers r_t to {ADA_TARGET} with augmentation. (r_t also nears 1 when "
            f"D simply dominates: check the discriminator_wins finding and D(G(z)).)"
        )
        evidence = {
            "r_t_mean": mean,
            "threshold": float(self.threshold),
            "ada_target": ADA_TARGET,
            "window": float(self.window),
        }
        return self._finding("discriminator_wins", KEY, "warning", "firing", step, msg, evidence,
                             remedies.DISCRIMINATOR_OVERFITTING, "D")

    def _resolved(self, step: int, why: str) -> Finding:
        msg = f"The discriminator no longer looks overfitted: {why} (step {step})."
        return self._finding("discriminator_wins", KEY, "warning", "resolved", step, msg,
                             {"r_t_mean": self.last_mean}, (), "D")

    def status(self) -> DetectorStatus:
        if not self.valid:
            return DetectorStatus(
                self.name, "unavailable",
                f"the r_t series had the value {fmt(self.bad_value)}, outside [-1, 1]: it is not "
                f"a mean sign (logits or probabilities?); log r_t=real_logits.sign().mean()",
            )
        if self.count == 0:
            return DetectorStatus(
                self.name, "unavailable",
                "no r_t series (mean sign of D's logits on reals, e.g. "
                "r_t=real_logits.sign().mean(), or StyleGAN2-ADA's Loss/signs/real)",
            )
        if self.count < self.window:
            return DetectorStatus(self.name, "waiting",
                                  f"{self.count}/{self.window} points before the rolling mean")
        if self.latch[2]:
            return DetectorStatus(self.name, "alarm",
                                  f"discriminator overfitting (mean r_t {fmt(self.last_mean)})")
        return DetectorStatus(
            self.name, "ok",
            f"mean r_t {fmt(self.last_mean)} (ADA target {ADA_TARGET}, alarm above "
            f"{fmt(self.threshold)})",
        )
