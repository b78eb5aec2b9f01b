"""GAN balance: the discriminator has won.

For the BCE GAN the equilibrium is D(x) = D(G(z)) = 1/2, a summed discriminator loss of
2 ln 2 = 1.386 and a non-saturating generator loss of ln 2 (Goodfellow 2014). A discriminator
that separates real from fake almost perfectly (accuracy > 0.95, i.e. D(x) -> 1 and
D(G(z)) -> 0) or whose loss goes to 0 leaves the generator with vanishing gradients
(Arjovsky & Bottou 2017; ganhacks calls D loss -> 0 a failure mode).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import remedies
from .base import ScalarDetector, as_arrays, check_float, check_int, fmt, latch, run_lengths
from .findings import DetectorStatus, Finding

__all__ = ["GANBalanceDetector", "ROLES", "EQUILIBRIUM_SIGNAL"]

#: Inputs of the balance detector, in the order of ``update``'s keyword arguments.
ROLES = ("d_real", "d_fake", "loss_d", "loss_g")
KEY = "discriminator_wins"
LN2 = math.log(2.0)
#: Derived signal: distance of the rolling means from the BCE equilibrium (0 = at equilibrium).
EQUILIBRIUM_SIGNAL = "gan/equilibrium_distance"


class GANBalanceDetector(ScalarDetector):
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

    A discriminator whose outputs are saturated on both sides, rolling means of D(x) and
    D(G(z)) both above ``1 - saturation`` or both below ``saturation`` for ``patience`` steps,
    tells reals from fakes not at all and, through a saturated sigmoid, passes no gradient: a
    critical finding of kind ``stalled`` (key ``stalled/d_saturated``). The accuracy proxy
    reads such a D as 0.5, a perfect balance, which is why it is checked apart.

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
        The D loss at equilibrium: 2 ln 2 = 1.386 when it sums the real and fake BCE terms,
        ln 2 = 0.693 when it averages them. ``"auto"`` (default) infers which from D's outputs
        once they have been logged for ``window`` steps (the summed BCE is at least
        ``-ln mean D(x) - ln(1 - mean D(G(z)))``, so a D loss far below that is an average);
        without D's outputs it assumes the sum and :meth:`status` says how to change it.
    equilibrium_tolerance
        Equilibrium distance up to which :meth:`status` says "near equilibrium" (default 0.2,
        heuristic: e.g. D(x) = 0.6).
    saturation
        Distance from 0 or 1 within which both D outputs count as saturated (default 0.01).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(400)
    >>> d_x = np.where(t < 200, 0.6, 0.99); d_gz = np.where(t < 200, 0.4, 0.01)
    >>> det = GANBalanceDetector()
    >>> [(f.kind, f.step) for f in det.update({"d_real": (t, d_x), "d_fake": (t, d_gz)})]
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
        loss_d_equilibrium: float | str = "auto",
        equilibrium_tolerance: float = 0.2,
        saturation: float = 0.01,
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
        self.saturation = saturation
        check_float("saturation", saturation, 0.0, 0.5, low_open=True, high_open=True)
        check_int("window", window, 1)
        check_int("patience", patience, 1)
        check_float("accuracy_threshold", accuracy_threshold, 0.5, 1.0, low_open=True,
                    high_open=True)
        check_float("d_loss_floor", d_loss_floor, 0.0)
        check_int("resolve_after", resolve_after, 1)
        check_float("hysteresis", hysteresis, 0.0, accuracy_threshold - 0.5)
        if loss_d_equilibrium != "auto":
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
        # the D loss at equilibrium: NaN until inferred ("auto"), else the configured value
        self._add_state("equilibrium", math.nan if loss_d_equilibrium == "auto"
                        else float(loss_d_equilibrium))
        self._add_state("saturated", [0, 0, False])  # latch of the saturation finding

    def update(self, series: Mapping[str, tuple[Any, Any]]) -> list[Finding]:
        """Consume new points by role: ``{"d_real": (steps, values), "loss_d": ..., ...}``
        (any subset of :data:`ROLES`); they are aligned on the union of their steps."""
        unknown = sorted(set(series) - set(ROLES))
        if unknown:
            raise ValueError(f"unknown roles {unknown}; the balance detector takes {ROLES}")
        cols = {r: as_arrays(*pair) for r, pair in series.items()}
        cols = {r: sv for r, sv in cols.items() if sv[0].size}
        if not cols:
            return []
        steps = np.unique(np.concatenate([s for s, _ in cols.values()]))
        aligned: dict[str, np.ndarray] = {}
        for role, (s, v) in cols.items():
            col = np.full(steps.size, np.nan)
            col[np.searchsorted(steps, s)] = v
            aligned[role] = col
        return self._update_aligned(steps, **aligned)

    def _update_aligned(
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
        self._infer_equilibrium(means, warm)
        self._equilibrium(s, means, warm)
        out = self._saturation(s, means, warm)
        cond = warm & (cond_acc | cond_loss)
        clear = ~(cond | near_acc | near_loss)
        run_t, run_f, firing = self.latch
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

    @property
    def loss_d_eq(self) -> float:
        """The D loss at equilibrium in use (the summed convention until inferred)."""
        return self.equilibrium if math.isfinite(self.equilibrium) else 2 * LN2

    def _infer_equilibrium(self, means: dict[str, np.ndarray], warm: np.ndarray) -> None:
        """``"auto"``: decide once whether the D loss sums or averages its two BCE terms."""
        if math.isfinite(self.equilibrium) or not self.probs_ok or not self.loss_ok:
            return
        ok = warm & np.isfinite(means["d_real"]) & np.isfinite(means["d_fake"]) & np.isfinite(
            means["loss_d"])
        if not ok.any():
            return
        i = int(np.flatnonzero(ok)[-1])
        dx = min(max(float(means["d_real"][i]), 1e-6), 1 - 1e-6)
        dgz = min(max(float(means["d_fake"][i]), 1e-6), 1 - 1e-6)
        implied = -math.log(dx) - math.log(1 - dgz)  # a lower bound of the summed BCE
        self.equilibrium = LN2 if float(means["loss_d"][i]) < 0.75 * implied else 2 * LN2

    def _saturation(self, s: np.ndarray, means: dict[str, np.ndarray],
                    warm: np.ndarray) -> list[Finding]:
        """D's outputs saturated on both sides (both near 1 or both near 0): stalled."""
        if not self.probs_ok:
            if self.saturated[2]:
                self.saturated = [0, 0, False]
                return [self._saturation_event("resolve", int(s[0]), means, 0)]
            return []
        lo, hi = self.saturation, 1.0 - self.saturation
        with np.errstate(invalid="ignore"):
            dx, dgz = means["d_real"], means["d_fake"]
            cond = warm & (((dx >= hi) & (dgz >= hi)) | ((dx <= lo) & (dgz <= lo)))
        run_t, run_f, firing = self.saturated
        if not firing and not cond.any():
            self.saturated = [0, int(run_f) + cond.size, False]
            return []
        events, run_t, run_f, firing = latch(cond, run_t, run_f, firing, self.patience,
                                             self.resolve_after)
        self.saturated = [run_t, run_f, firing]
        return [self._saturation_event(what, int(s[i]), means, i) for i, what in events]

    def _saturation_event(self, what: str, step: int, means: dict[str, np.ndarray],
                          i: int) -> Finding:
        key = "stalled/d_saturated"
        if what == "resolve":
            msg = f"D's outputs are no longer saturated on both sides (step {step})."
            return self._finding("stalled", key, "critical", "resolved", step, msg,
                                 {"resolve_after": float(self.resolve_after)}, (), "D")
        dx, dgz = float(means["d_real"][i]), float(means["d_fake"][i])
        side = "1 (everything looks real)" if dx > 0.5 else "0 (everything looks fake)"
        msg = (
            f"The discriminator is saturated: over the last {self.window} steps D(x) averages "
            f"{fmt(dx)} and D(G(z)) {fmt(dgz)}, both at {side}, for {self.patience} steps in a "
            f"row (step {step}). Such a D cannot tell reals from fakes, and through a saturated "
            f"sigmoid it passes no gradient to G: the run has stopped learning. Its accuracy "
            f"reads as 0.5, which is why this is checked apart from the balance."
        )
        evidence = {"d_real_mean": dx, "d_fake_mean": dgz,
                    "loss_d_mean": float(means["loss_d"][i]),
                    "loss_g_mean": float(means["loss_g"][i]),
                    "saturation": float(self.saturation), "window": float(self.window)}
        return self._finding("stalled", key, "critical", "firing", step, msg, evidence,
                             remedies.STALLED, "D")

    def equilibrium_distance(self, means: dict[str, Any]) -> Any:
        """Distance from the BCE equilibrium of the given rolling means (NaN if none usable)."""
        parts = []
        if self.probs_ok:
            parts.append(np.abs(np.asarray(means["d_real"], float) - 0.5) / 0.5)
            parts.append(np.abs(np.asarray(means["d_fake"], float) - 0.5) / 0.5)
        if self.loss_ok:
            dev = np.abs(np.asarray(means["loss_d"], float) - self.loss_d_eq)
            parts.append(np.minimum(dev / self.loss_d_eq, 1.0))
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
        out = f"{where}: " + ", ".join(parts)
        if self.loss_ok and math.isfinite(m["loss_d"]):
            if self.loss_d_equilibrium == "auto" and math.isfinite(self.equilibrium):
                how = "averages" if self.equilibrium < 1.0 else "sums"
                out += (f" (the D loss {how} its real and fake terms: equilibrium "
                        f"{self.equilibrium:.3f}, inferred from D's outputs)")
            elif (not math.isfinite(self.equilibrium) and dist > self.equilibrium_tolerance
                  and abs(m["loss_d"] - LN2) < 0.15):
                out += ("; a D loss near 0.69 is the equilibrium of a D loss that averages its "
                        "real and fake terms: if yours does, set balance.loss_d_equilibrium="
                        "0.693 (or log D(x) and D(G(z)) so it is inferred)")
        return out

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
        if self.saturated[2]:
            return DetectorStatus(self.name, "alarm", "D's outputs are saturated" + eq)
        if self.latch[2]:
            return DetectorStatus(self.name, "alarm", "the discriminator is winning" + eq)
        notes = []
        if not (has_probs and self.probs_ok):
            notes.append("D loss only")
        if not (has_loss and self.loss_ok):
            notes.append("D(x)/D(G(z)) only")
        return DetectorStatus(self.name, "ok", "watching D's balance" +
                              (f" ({', '.join(notes)})" if notes else "") + eq)
