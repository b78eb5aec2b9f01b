"""Vanishing and exploding gradients, per layer, against each layer's own history.

Fed the per-parameter gradient norms of one module (series ``grad_norm/<module>/<param>``, and
``grad_norm/<module>/total``). Every ``warmup`` observations, each layer's block median is
recorded. A layer vanishes when its norm stays below ``vanish_ratio`` times its healthy level
(the largest block median so far), or below the absolute ``floor`` (a last resort, only for
weights; a bias can be structurally silent, e.g. before batch norm), or when the first-to-last layer norm ratio stays below
``first_last_ratio``. A layer (or the module total) explodes when its norm stays above
``explode_ratio`` times that same healthy level: the level follows slow growth (GAN layers'
gradients often grow 100x over the first thousand steps) but not a sudden jump, and a layer
that recovers after vanishing is not mistaken for an explosion.
"Stays" means for ``vanish_patience`` / ``explode_patience`` observations in a row. Layer order
is the order in which parameter names first appear; the first/last ratio skips biases.

Exactly zero is different from small. A weight whose gradient is exactly 0 learns nothing,
whatever its history (a dead ReLU layer, a saturated sigmoid in float32), so it counts as
vanishing from its first observation, without warm-up. Biases are never judged alone: their
gradient is legitimately zero in healthy networks (before a batch norm; a discriminator's
output bias under a hinge loss). When every layer of the module is
exactly 0 for ``zero_patience`` observations the module has stopped learning altogether: a
critical finding of kind ``stalled`` (key ``stalled/gradients:<module>``), with no warm-up either
(a DCGAN whose D saturated at step 1 has zero gradients from then on).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import remedies
from .base import ScalarDetector, as_arrays, check_float, check_int, fmt, latch, run_lengths
from .findings import DetectorStatus, Finding

__all__ = ["GradientDetector"]

TOTAL = "total"


class GradientDetector(ScalarDetector):
    """Vanishing / exploding gradients of one module's layers.

    Parameters
    ----------
    module
        Module name as given to ``Monitor.watch(module, name=...)`` (keys
        ``vanishing_gradients/<module>`` and ``exploding_gradients/<module>``).
    warmup
        Observations per reference block (default 20); nothing fires before a layer's first
        block is complete.
    vanish_ratio
        Norm / healthy level (largest block median) below which a layer counts as vanishing
        (default 1e-3, heuristic).
    first_last_ratio
        First-layer / last-layer norm ratio below which gradients vanish towards the input
        (default 1e-3, heuristic).
    floor
        Absolute norm below which a layer counts as vanishing whatever its history (last
        resort; default 1e-7).
    explode_ratio
        Norm / healthy level (largest block median) above which a layer (or the total) counts as
        exploding (default 100).
    vanish_patience, explode_patience
        Observations in a row needed to fire (defaults 20 and 3).
    resolve_after
        Healthy observations in a row before a finding resolves (default 20).
    zero_patience
        Observations in a row with every layer's gradient exactly 0 before the module is
        reported as stalled (default 5; at the collector's default of one observation every
        10 steps, 50 steps).

    Examples
    --------
    >>> import numpy as np
    >>> steps = np.arange(200)
    >>> first = np.where(steps < 100, 1.0, 1e-6)
    >>> det = GradientDetector("G")
    >>> fs = det.update({"main.0.weight": (steps, first), "main.4.weight": (steps, np.ones(200))})
    >>> [(f.kind, f.step, f.subject) for f in fs]
    [('vanishing_gradients', 119, 'G/main.0.weight')]
    """

    family = "gradients"

    def __init__(
        self,
        module: str,
        warmup: int = 20,
        vanish_ratio: float = 1e-3,
        first_last_ratio: float = 1e-3,
        floor: float = 1e-7,
        explode_ratio: float = 100.0,
        vanish_patience: int = 20,
        explode_patience: int = 3,
        resolve_after: int = 20,
        zero_patience: int = 5,
    ) -> None:
        super().__init__()
        self.module = module
        self.warmup = warmup
        self.vanish_ratio = vanish_ratio
        self.first_last_ratio = first_last_ratio
        self.floor = floor
        self.explode_ratio = explode_ratio
        self.vanish_patience = vanish_patience
        self.explode_patience = explode_patience
        self.resolve_after = resolve_after
        self.zero_patience = zero_patience
        check_int("zero_patience", zero_patience, 1)
        if not isinstance(module, str) or not module:
            raise ValueError(f"module must be a non-empty string, got {module!r}")
        check_int("warmup", warmup, 1)
        check_float("vanish_ratio", vanish_ratio, 0.0, 1.0, low_open=True, high_open=True)
        check_float("first_last_ratio", first_last_ratio, 0.0, 1.0, low_open=True, high_open=True)
        check_float("floor", floor, 0.0)
        check_float("explode_ratio", explode_ratio, 1.0, low_open=True)
        check_int("vanish_patience", vanish_patience, 1)
        check_int("explode_patience", explode_patience, 1)
        check_int("resolve_after", resolve_after, 1)
        self._add_state("layers", [])  # order of first appearance (excluding "total")
        self._add_state("block", {})  # layer -> finite values of the current block
        self._add_state("peak", {})  # layer -> largest block median so far (healthy level)
        self._add_state("low_runs", {})
        self._add_state("high_runs", {})
        self._add_state("fl_run", 0)
        self._add_state("vanish", [0, 0, False])  # run_true, run_false, firing
        self._add_state("explode", [0, 0, False])
        self._add_state("zero", [0, 0, False])
        self._add_state("observations", 0)

    # ------------------------------------------------------------------------------ update
    def update(self, series: Mapping[str, tuple[Any, Any]]) -> list[Finding]:
        """Consume new gradient norms: ``{param_name or "total": (steps, values)}``."""
        if not series:
            return []
        cols: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, (steps, values) in series.items():
            s, v = as_arrays(steps, values)
            if s.size:
                cols[name] = (s, v)
                if name != TOTAL and name not in self.layers:
                    self.layers.append(name)
        if not cols:
            return []
        names = [n for n in self.layers if n in cols] + ([TOTAL] if TOTAL in cols else [])
        all_steps = np.unique(np.concatenate([cols[n][0] for n in names]))
        mat = np.full((all_steps.size, len(names)), np.nan)
        for j, n in enumerate(names):
            s, v = cols[n]
            mat[np.searchsorted(all_steps, s), j] = v
        mat[~np.isfinite(mat)] = np.nan  # non-finite norms belong to the NaN detector
        peak = self._references(names, mat)
        is_layer = np.array([n != TOTAL for n in names])
        # biases are not judged alone: theirs is legitimately zero in healthy networks (a bias
        # before batch norm; D's output bias under a hinge loss whenever both margins are
        # violated equally), and a weight of the same layer tells whether the layer learns
        weights = is_layer & np.array([not n.endswith("bias") for n in names])
        with np.errstate(invalid="ignore", divide="ignore"):
            exact_zero = is_layer[None, :] & (mat == 0)
            present = is_layer[None, :] & ~np.isnan(mat)
            all_zero = present.any(axis=1) & ~(present & ~exact_zero).any(axis=1)
            # weights only: a bias can be structurally silent (before batch norm), a weight
            # below the floor or at exactly 0 learns nothing; a whole module at 0 is stalled
            low = weights[None, :] & ((mat < self.vanish_ratio * peak) | (mat < self.floor)
                                      | exact_zero) & ~all_zero[:, None]
            high = mat > self.explode_ratio * peak
            fl = self._first_last(names, mat, ~np.isnan(peak))
        low_runs = run_lengths(low, np.array([self.low_runs.get(n, 0) for n in names]))
        high_runs = run_lengths(high, np.array([self.high_runs.get(n, 0) for n in names]))
        fl_cond = fl < self.first_last_ratio
        fl_runs = run_lengths(fl_cond, self.fl_run)
        for j, n in enumerate(names):
            self.low_runs[n] = int(low_runs[-1, j])
            self.high_runs[n] = int(high_runs[-1, j])
        self.fl_run = int(fl_runs[-1])
        vanish_cond = (low_runs >= self.vanish_patience).any(axis=1) | (
            fl_runs >= self.vanish_patience
        )
        explode_cond = (high_runs >= self.explode_patience).any(axis=1)
        out: list[Finding] = []
        ctx = (names, all_steps, mat, peak, fl, low_runs, high_runs, fl_runs)
        for kind, cond, attr, fire_after in (
            ("vanishing_gradients", vanish_cond, "vanish", 1),
            ("exploding_gradients", explode_cond, "explode", 1),
            ("stalled", all_zero, "zero", self.zero_patience),
        ):
            run_t, run_f, firing = getattr(self, attr)
            if not firing and not cond.any():
                setattr(self, attr, [0, int(run_f) + cond.size, False])
                continue
            events, run_t, run_f, firing = latch(cond, run_t, run_f, firing, fire_after,
                                                 self.resolve_after)
            setattr(self, attr, [run_t, run_f, firing])
            for i, what in events:
                out.append(self._zero_event(what, i, ctx, run_t) if kind == "stalled"
                           else self._event(kind, what, i, ctx))
        return out

    def _zero_event(self, what: str, i: int, ctx: tuple, run: int) -> Finding:
        names, steps = ctx[0], ctx[1]
        step = int(steps[i])
        key = f"stalled/gradients:{self.module}"
        layers = sum(1 for n in names if n != TOTAL)
        if what == "resolve":
            msg = (f"Gradients of {self.module} are flowing again: not all exactly zero for "
                   f"{self.resolve_after} observations in a row (step {step}).")
            return self._finding("stalled", key, "critical", "resolved", step, msg,
                                 {"resolve_after": float(self.resolve_after)}, (), self.module)
        msg = (
            f"{self.module} has stopped learning: the gradient of every one of its {layers} "
            f"watched parameters is exactly 0 at step {step}, for {self.zero_patience} "
            f"observations in a row. Exactly zero (not small) means nothing flows back: a "
            f"saturated output (sigmoid or tanh at exactly 0/1 in float32, e.g. a "
            f"discriminator whose BCE loss is clamped at 100), dead ReLUs, or a loss that does "
            f"not depend on {self.module}'s parameters (a detach() in the wrong place)."
        )
        evidence = {"layers": float(layers), "consecutive": float(max(run, self.zero_patience)),
                    "total_norm": 0.0}
        return self._finding("stalled", key, "critical", "firing", step, msg, evidence,
                             remedies.STALLED, self.module)

    def _references(self, names: list[str], mat: np.ndarray) -> np.ndarray:
        """Per-row healthy level (largest block median so far) of each layer; NaN before.

        Rows are cut at block boundaries of the running observation count, so the references
        a row sees do not depend on how the stream was batched.
        """
        n_rows = mat.shape[0]
        peak = np.full(mat.shape, np.nan)
        pos = 0
        while pos < n_rows:
            take = min(n_rows - pos, self.warmup - self.observations % self.warmup)
            for j, n in enumerate(names):
                if n in self.peak:
                    peak[pos : pos + take, j] = self.peak[n]
                col = mat[pos : pos + take, j]
                col = col[~np.isnan(col)]
                if col.size:
                    self.block.setdefault(n, []).extend(col.tolist())
            self.observations += take
            pos += take
            if self.observations % self.warmup == 0:
                for n, vals in self.block.items():
                    if vals:
                        med = float(np.median(vals))
                        old = self.peak.get(n, med)
                        if med <= self.explode_ratio * old:  # an exploded block is no level
                            self.peak[n] = max(old, med)
                self.block = {}
        return peak

    def _first_last(self, names: list[str], mat: np.ndarray, active: np.ndarray) -> np.ndarray:
        first, last = self._ends()
        if first is None or first not in names or last not in names:
            return np.full(mat.shape[0], np.inf)
        a, b = names.index(first), names.index(last)
        ratio = mat[:, a] / mat[:, b]
        ok = active[:, a] & active[:, b] & np.isfinite(ratio)
        return np.where(ok, ratio, np.inf)

    def _ends(self) -> tuple[str | None, str | None]:
        weights = [n for n in self.layers if not n.endswith("bias")] or list(self.layers)
        if len(weights) < 2:
            return None, None
        return weights[0], weights[-1]

    # ------------------------------------------------------------------------------ findings
    def _event(self, kind: str, what: str, i: int, ctx: tuple) -> Finding:
        names, steps, mat, peak, fl, low_runs, high_runs, fl_runs = ctx
        step = int(steps[i])
        key = f"{kind}/{self.module}"
        if what == "resolve":
            word = "vanishing" if kind == "vanishing_gradients" else "exploding"
            sev = "warning" if kind == "vanishing_gradients" else "critical"
            msg = (
                f"Gradients of {self.module} are no longer {word}: every layer has been within "
                f"its healthy range for {self.resolve_after} observations (step {step})."
            )
            return self._finding(kind, key, sev, "resolved", step, msg,
                                 {"resolve_after": float(self.resolve_after)}, (), self.module)
        if kind == "vanishing_gradients":
            row_ratio = mat[i] / peak[i]
            cand = [j for j in range(len(names)) if low_runs[i, j] >= self.vanish_patience]
            first, _ = self._ends()
            if not cand and first in names:
                cand = [names.index(first)]
            j = min(cand, key=lambda c: (np.nan_to_num(row_ratio[c], nan=np.inf), c))
            layer = names[j]
            consecutive = max(int(low_runs[i, j]), int(fl_runs[i]))
            norm, ref = float(mat[i, j]), float(peak[i, j])
            fl_txt = f"; first/last layer norm ratio {fmt(float(fl[i]))}" if math.isfinite(
                float(fl[i])) else ""
            msg = (
                f"Gradients of {self.module} are vanishing in layer {layer}: norm {fmt(norm)} "
                f"at step {step}, {fmt(norm / ref if ref else math.nan)} times its healthy level "
                f"{fmt(ref)} (largest median of {self.warmup} observations so far), for {consecutive} observations in a row{fl_txt}. A layer whose "
                f"gradient vanishes stops learning; in a GAN this usually means the "
                f"discriminator saturates."
            )
            sev, rem = "warning", remedies.VANISHING
        else:
            row_ratio = mat[i] / peak[i]
            cand = [j for j in range(len(names)) if high_runs[i, j] >= self.explode_patience]
            j = max(cand, key=lambda c: (np.nan_to_num(row_ratio[c], nan=-np.inf), -c))
            layer = names[j]
            consecutive = int(high_runs[i, j])
            norm, ref = float(mat[i, j]), float(peak[i, j])
            msg = (
                f"Gradients of {self.module} are exploding in {layer}: norm {fmt(norm)} at step "
                f"{step}, {fmt(norm / ref if ref else math.nan)} times its healthy level "
                f"{fmt(ref)}, for {consecutive} observations in a row. Exploding gradients "
                f"usually end in a loss spike or NaN."
            )
            sev, rem = "critical", remedies.EXPLODING
        evidence = {
            "norm": norm,
            "reference": ref,
            "ratio_to_reference": norm / ref if ref else math.nan,
            "first_last_ratio": float(fl[i]) if math.isfinite(float(fl[i])) else math.nan,
            "consecutive": float(consecutive),
            "layer_index": float(self.layers.index(layer)) if layer in self.layers else -1.0,
        }
        return self._finding(kind, key, sev, "firing", step, msg, evidence, rem,
                             f"{self.module}/{layer}")

    def status(self) -> DetectorStatus:
        if not self.layers and not self.observations:
            return DetectorStatus(self.name, "waiting", f"no gradient norms of {self.module} yet")
        if self.zero[2]:
            return DetectorStatus(self.name, "alarm", f"every gradient of {self.module} is 0")
        missing = [n for n in self.layers if n not in self.peak]
        if missing:
            have = min(len(self.block.get(n, [])) for n in missing)
            return DetectorStatus(
                self.name, "waiting",
                f"{have}/{self.warmup} warm-up observations for {len(missing)} layer(s) of "
                f"{self.module}",
            )
        if self.vanish[2] or self.explode[2]:
            what = "vanishing" if self.vanish[2] else "exploding"
            return DetectorStatus(self.name, "alarm", f"{what} gradients in {self.module}")
        note = "" if self._ends()[0] else " (one layer only: no first/last ratio)"
        return DetectorStatus(
            self.name, "ok", f"{len(self.layers)} layers of {self.module} watched{note}"
        )
