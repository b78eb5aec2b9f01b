"""GAN balance: the discriminator has won.

For the BCE GAN the equilibrium is D(x) = D(G(z)) = 1/2, a summed discriminator loss of
2 ln 2 = 1.386 and a non-saturating generator loss of ln 2 (Goodfellow 2014). A discriminator
that separates real from fake almost perfectly (accuracy > 0.95, i.e. D(x) -> 1 and
D(G(z)) -> 0) or whose loss goes to 0 leaves the generator with vanishing gradients
(Arjovsky & Bottou 2017; ganhacks calls D loss -> 0 a failure mode).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import remedies
from .base import Detector, check_float, check_int, fmt, latch, run_lengths
from .findings import DetectorStatus, Finding

__all__ = ["GANBalanceDetector", "ROLES", "EQUILIBRIUM_SIGNAL"]

#: Inputs of the balance detector, in the order of ``update``'s keyword arguments.
ROLES = ("d_real", "d_fake", "loss_d", "loss_g")
KEY = "discriminator_wins"
LN2 = math.log(2.0)
#: Derived signal: distance of the rolling means from the BCE equilibrium (0 = at equilibrium).
EQUILIBRIUM_SIGNAL = "gan/equilibrium_distance"


class GANBalanceDetector(Detector):
    """Warns when the discriminator wins for good.

    Rolling means over the last ``window`` steps of D(x) (``d_real``), D(G(z)) (``d_fake``),
    the discriminator loss (``loss_d``) and the generator loss (``loss_g``) give two conditions:

    * accuracy proxy ``(mean D(x) + 1 - mean D(G(z))) / 2 > accuracy_threshold`` (needs both
      D(x) and D(G(z)) as probabilities in [0, 1]; logits switch this condition off, and
      :meth:`status` says so);
    * ``mean loss_d < d_loss_floor`` (switched off once ``loss_d`` is seen negative, as for
      Wasserstein or hinge losses).

    ``mean loss_d < d_loss_floor`` is ganhacks' "D loss -> 0" failure mode. Either condition
    holding for ``patience`` steps in a row fires a warning. It resolves after
    ``resolve_after`` steps in a row that are clearly healthy: accuracy proxy below
    ``accuracy_threshold - hysteresis`` and mean D loss above ``2 * d_loss_floor`` (whichever
    apply), so a run hovering at the threshold does not flap. Nothing fires before ``window``
    points.

    It also measures, never as an alert, how far the run is from the BCE equilibrium of
    Goodfellow et al. (2014), D(x) = D(G(z)) = 1/2 and summed D loss 2 ln 2:
    ``equilibrium distance = max(|D(x) - 1/2| / (1/2), |D(G(z)) - 1/2| / (1/2),
    min(1, |loss_d - loss_d_equilibrium| / loss_d_equilibrium))`` over the rolling means of the
    roles that are available and usable; 0 at equilibrium, 1 for a perfect discriminator. It is
    stored every ``window`` points as the signal ``stethoscope/gan/equilibrium_distance``
    (:meth:`pop_signals`) and summarised in :meth:`status` ("near equilibrium: D loss 1.37,
    D(x) 0.52, D(G(z)) 0.48").

    Parameters
    ----------
    window
        Rolling-mean length in points (default 100).
    patience
        Steps in a row the condition must hold (default 50).
    accuracy_threshold
        Accuracy proxy above which D wins (default 0.95).
    d_loss_floor
        Mean D loss below which D wins (default 0.05; equilibrium is 1.386).
    resolve_after
        Healthy steps in a row before the finding resolves (default 50).
    hysteresis
        How far below ``accuracy_threshold`` the accuracy proxy must fall to count as healthy
        again (default 0.05).
    loss_d_equilibrium
        The D loss at equilibrium (default 2 ln 2 = 1.386, the sum of the real and fake BCE
        terms; use ln 2 = 0.693 if your D loss averages them).
    equilibrium_tolerance
        Equilibrium distance up to which :meth:`status` says "near equilibrium" (default 0.2,
        heuristic: e.g. D(x) = 0.6).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(400)
    >>> d_x = np.where(t < 200, 0.6, 0.99); d_gz = np.where(t < 200, 0.4, 0.01)
    >>> [(f.kind, f.step) for f in GANBalanceDetector().update(t, d_real=d_x, d_fake=d_gz)]
    [('discriminator_wins', 338)]
    """

    family = "balance"

    def __init__(
        self,
        window: int = 100,
        patience: int = 50,
        accuracy_threshold: float = 0.95,
        d_loss_floor: float = 0.05,
        resolve_after: int = 50,
        hysteresis: float = 0.05,
        loss_d_equilibrium: float = 2 * LN2,
        equilibrium_tolerance: float = 0.2,
    ) -> None:
        super().__init__()
        self.window = window
        self.patience = patience
        self.accuracy_threshold = accuracy_threshold
        self.d_loss_floor = d_loss_floor
        self.resolve_after = resolve_after
        self.hysteresis = hysteresis
        self.loss_d_equilibrium = loss_d_equilibrium
        self.equilibrium_tolerance = equilibrium_tolerance
        check_int("window", window, 1)
        check_int("patience", patience, 1)
        check_float("accuracy_threshold", accuracy_threshold, 0.5, 1.0, low_open=True,
                    high_open=True)
        check_float("d_loss_floor", d_loss_floor, 0.0)
        check_int("resolve_after", resolve_after, 1)
        check_float("hysteresis", hysteresis, 0.0, accuracy_threshold - 0.5)
        check_float("loss_d_equilibrium", loss_d_equilibrium, 0.0, low_open=True)
        check_float("equilibrium_tolerance", equilibrium_tolerance, 0.0, 1.0, low_open=True)
        for role in ROLES:
            self._add_state(f"tail_{role}", np.zeros(0))
        self._add_state("seen", {r: 0 for r in ROLES})
        self._add_state("count", 0)
        self._add_state("probs_ok", True)
        self._add_state("loss_ok", True)
        self._add_state("latch", [0, 0, False])
        self._add_state("g_prev_mean", math.nan)
        self._add_state("last_means", {})  # rolling means at the last point, for status()
        self._add_state("signal_points", [])  # [step, equilibrium distance] not yet popped

    def update(
        self,
        steps: Any,
        *,
        d_real: Any = None,
        d_fake: Any = None,
        loss_d: Any = None,
        loss_g: Any = None,
    ) -> list[Finding]:
        """Consume aligned arrays (one value per step; NaN where a role has no value)."""
        s = np.asarray(steps, dtype=np.int64).reshape(-1)
        n = s.size
        if n == 0:
            return []
        given = {"d_real": d_real, "d_fake": d_fake, "loss_d": loss_d, "loss_g": loss_g}
        means: dict[str, np.ndarray] = {}
        for role, arr in given.items():
            v = np.full(n, np.nan) if arr is None else np.asarray(arr, np.float64).reshape(-1)
            if v.size != n:
                raise ValueError(f"{role} must have one value per step ({n}), got {v.size}")
            v = np.where(np.isfinite(v), v, np.nan)
            fin = v[~np.isnan(v)]
            if fin.size:
                self.seen[role] += int(fin.size)
                if role in ("d_real", "d_fake") and ((fin < 0) | (fin > 1)).any():
                    self.probs_ok = False
                if role == "loss_d" and (fin < 0).any():
                    self.loss_ok = False
            means[role] = self._rolling_mean(role, v)
        self.count += n
        warm = np.arange(self.count - n, self.count) >= self.window - 1
        with np.errstate(invalid="ignore"):
            acc = (means["d_real"] + 1.0 - means["d_fake"]) / 2.0
            cond_acc = (acc > self.accuracy_threshold) if self.probs_ok else np.zeros(n, bool)
            cond_loss = (means["loss_d"] < self.d_loss_floor) if self.loss_ok else np.zeros(n, bool)
            near_acc = (acc > self.accuracy_threshold - self.hysteresis) if self.probs_ok \
                else np.zeros(n, bool)
            near_loss = (means["loss_d"] < 2 * self.d_loss_floor) if self.loss_ok \
                else np.zeros(n, bool)
        self._equilibrium(s, means, warm)
        cond = warm & (cond_acc | cond_loss)
        clear = ~(cond | near_acc | near_loss)
        run_t, run_f, firing = self.latch
        out: list[Finding] = []
        if firing or cond.any():
            events, run_t, run_f, firing = latch(
                cond, run_t, run_f, firing, self.patience, self.resolve_after, clear
            )
            for i, what in events:
                out.append(self._event(what, int(s[i]), i, means, acc, cond_acc, cond_loss))
            self.latch = [run_t, run_f, firing]
        else:
            clear_runs = run_lengths(clear, run_f)
            self.latch = [0, int(clear_runs[-1]), False]
        return out

    def equilibrium_distance(self, means: dict[str, Any]) -> Any:
        """Distance from the BCE equilibrium of the given rolling means (NaN if none usable)."""
        parts = []
        if self.probs_ok:
            parts.append(np.abs(np.asarray(means["d_real"], float) - 0.5) / 0.5)
            parts.append(np.abs(np.asarray(means["d_fake"], float) - 0.5) / 0.5)
        if self.loss_ok:
            dev = np.abs(np.asarray(means["loss_d"], float) - self.loss_d_equilibrium)
            parts.append(np.minimum(dev / self.loss_d_equilibrium, 1.0))
        if not parts:
            return np.full(np.shape(means["loss_d"]), np.nan)
        out = parts[0]
        for p in parts[1:]:
            out = np.fmax(out, p)  # NaN (role not logged) is ignored
        return np.minimum(out, 1.0)

    def _equilibrium(self, s: np.ndarray, means: dict[str, np.ndarray], warm: np.ndarray):
        dist = self.equilibrium_distance(means)
        last = {r: float(means[r][-1]) for r in ROLES}
        last["distance"] = float(dist[-1])
        self.last_means = last
        pos = np.arange(self.count - s.size, self.count) + 1
        for i in np.flatnonzero(warm & (pos % self.window == 0) & ~np.isnan(dist)):
            self.signal_points.append([int(s[i]), float(dist[i])])

    def pop_signals(self) -> dict[str, tuple[list[int], list[float]]]:
        """Derived points since the last call: ``{"gan/equilibrium_distance": (steps, values)}``.

        One point every ``window`` points (after the first ``window``), so batching does not
        change them.
        """
        pts, self.signal_points = self.signal_points, []
        if not pts:
            return {}
        return {EQUILIBRIUM_SIGNAL: ([p[0] for p in pts], [p[1] for p in pts])}

    def equilibrium_summary(self) -> str:
        """E.g. "near equilibrium: D loss 1.37, D(x) 0.52, D(G(z)) 0.48"; "" before any data."""
        m = self.last_means
        dist = m.get("distance", math.nan)
        if not m or not math.isfinite(dist):
            return ""
        parts = []
        if self.loss_ok and math.isfinite(m["loss_d"]):
            parts.append(f"D loss {m['loss_d']:.2f}")
        if self.probs_ok:
            if math.isfinite(m["d_real"]):
                parts.append(f"D(x) {m['d_real']:.2f}")
            if math.isfinite(m["d_fake"]):
                parts.append(f"D(G(z)) {m['d_fake']:.2f}")
        where = ("near equilibrium" if dist <= self.equilibrium_tolerance
                 else f"away from equilibrium (distance {dist:.2f})")
        return f"{where}: " + ", ".join(parts)

    def _rolling_mean(self, role: str, v: np.ndarray) -> np.ndarray:
        tail = getattr(self, f"tail_{role}")
        full = np.concatenate([tail, v])
        ok = ~np.isnan(full)
        csum = np.concatenate([[0.0], np.cumsum(np.where(ok, full, 0.0))])
        ccnt = np.concatenate([[0], np.cumsum(ok)])
        end = np.arange(tail.size, full.size) + 1
        start = np.maximum(end - self.window, 0)
        cnt = ccnt[end] - ccnt[start]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(cnt > 0, (csum[end] - csum[start]) / np.maximum(cnt, 1), np.nan)
        keep = 2 * self.window if role == "loss_g" else self.window
        setattr(self, f"tail_{role}", full[-keep:])
        return mean

    def _event(self, what, step, i, means, acc, cond_acc, cond_loss) -> Finding:
        if what == "resolve":
            msg = (
                f"The discriminator no longer dominates: D's accuracy proxy and loss have been "
                f"in a healthy range for {self.resolve_after} steps (step {step})."
            )
            return self._finding("discriminator_wins", KEY, "warning", "resolved", step, msg,
                                 {"resolve_after": float(self.resolve_after)})
        dx, dgz = float(means["d_real"][i]), float(means["d_fake"][i])
        ld, lg = float(means["loss_d"][i]), float(means["loss_g"][i])
        g_tail = self.tail_loss_g
        g_prev = float(np.nanmean(g_tail[: self.window])) if g_tail.size > self.window and (
            ~np.isnan(g_tail[: self.window])).any() else math.nan
        parts = []
        if cond_acc[i]:
            parts.append(
                f"D(x) averages {fmt(dx)} and D(G(z)) {fmt(dgz)} (accuracy proxy "
                f"{fmt(float(acc[i]))} > {fmt(self.accuracy_threshold)})"
            )
        if cond_loss[i]:
            parts.append(f"D loss averages {fmt(ld)} (< {fmt(self.d_loss_floor)})")
        g_txt = ""
        if math.isfinite(lg):
            trend = ""
            if math.isfinite(g_prev):
                trend = " and rising" if lg > g_prev else " and not rising"
            g_txt = f" G loss averages {fmt(lg)}{trend}."
        msg = (
            f"The discriminator is winning: over the last {self.window} steps "
            + " and ".join(parts)
            + f", for {self.patience} steps in a row (step {step}).{g_txt} At equilibrium "
            f"D(x) = D(G(z)) = 0.5 and the summed D loss is 2 ln 2 = 1.386; a discriminator this "
            f"sure of itself leaves the generator with vanishing gradients."
        )
        evidence = {
            "d_real_mean": dx,
            "d_fake_mean": dgz,
            "accuracy_proxy": float(acc[i]),
            "loss_d_mean": ld,
            "loss_g_mean": lg,
            "loss_g_previous_mean": g_prev,
            "window": float(self.window),
        }
        return self._finding("discriminator_wins", KEY, "warning", "firing", step, msg, evidence,
                             remedies.DISCRIMINATOR_WINS, "D")

    def status(self) -> DetectorStatus:
        has_probs = self.seen["d_real"] > 0 and self.seen["d_fake"] > 0
        has_loss = self.seen["loss_d"] > 0
        usable = (has_probs and self.probs_ok) or (has_loss and self.loss_ok)
        if not usable:
            why = []
            if not has_probs:
                why.append("no D(x) and D(G(z)) series (e.g. D_x, D_G_z1)")
            elif not self.probs_ok:
                why.append("D(x)/D(G(z)) are not probabilities in [0, 1] (logits?)")
            if not has_loss:
                why.append("no discriminator loss (e.g. loss_D, errD)")
            elif not self.loss_ok:
                why.append("the D loss goes negative (WGAN/hinge), so 'D loss -> 0' means nothing")
            return DetectorStatus(self.name, "unavailable", "; ".join(why))
        if self.count < self.window:
            return DetectorStatus(self.name, "waiting",
                                  f"{self.count}/{self.window} points before the rolling means")
        eq = self.equilibrium_summary()
        eq = f"; {eq}" if eq else ""
        if self.latch[2]:
            return DetectorStatus(self.name, "alarm", "the discriminator is winning" + eq)
        notes = []
        if not (has_probs and self.probs_ok):
            notes.append("D loss only")
        if not (has_loss and self.loss_ok):
            notes.append("D(x)/D(G(z)) only")
        return DetectorStatus(self.name, "ok", "watching D's balance" +
                              (f" ({', '.join(notes)})" if notes else "") + eq)
