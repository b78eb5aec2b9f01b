"""Each run's label, from the ground truth measured during its training (never from detectors).

Labels and what a detector must do about them:

- ``healthy``: a GAN ending with at least 3/4 of the modes (digit classes), more than half of
  them at every evaluation of the last quarter of the run, and a discriminator that has not
  won; any other family's healthy twin. No warning or critical alert allowed.
- ``collapse``: a GAN ending with half of the modes or fewer (at the last three evaluations),
  or an encoder whose effective rank fell to half its peak or less. ``partial`` when more than a
  quarter of the modes remain, ``full`` otherwise (then the collapse must be critical). The
  onset is where the collapsed stretch that lasts to the end began *and* the generator had
  stopped gaining modes (from there on it never covers more than ``max(1, K/10)`` modes above
  its count there: a generator still learning new modes is not collapsed yet), but never
  before the family had time to learn (``learn_step``: the latest step at which a healthy run of
  the same data set, in the tuning split, first covered more than half of the modes); a run
  collapsed from its first evaluations has its onset there.
- ``broken``: a GAN that never learned (its samples never reached the data: high-quality share
  below 0.1 throughout) or whose generator stopped moving (weights unchanged between the last
  evaluations: dead gradients, a saturated D). Any warning or critical alert counts.
- ``dwins``: D's held-out accuracy at least 0.9 at each of the last five evaluations.
- ``diverge``: a non-finite loss (onset: the first one) or a held-out loss blow-up: above twice
  its best so far at three evaluations in a row (one noisy evaluation is no blow-up).
- ``vanishing``: the deep sigmoid MLP whose first layer barely moved.
- ``degraded`` (a GAN between half and 3/4 of the modes), ``unstable`` (a GAN that ends with
  most of its modes but falls to half or fewer at some evaluation of its last quarter: mode
  hopping) and ``unclear``: replayed and reported, not scored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Label", "label_run", "learn_steps", "EXPECTED_KINDS"]

#: Alert kinds that count as catching each label (broken: any warning or critical kind).
EXPECTED_KINDS: dict[str, tuple[str, ...]] = {
    "collapse": ("mode_collapse",),
    "diverge": ("divergence", "exploding_gradients"),
    "dwins": ("discriminator_wins", "stalled"),
    "vanishing": ("vanishing_gradients", "stalled"),
    "broken": ("mode_collapse", "stalled", "vanishing_gradients", "discriminator_wins",
               "divergence", "exploding_gradients"),
}
_GAN_DATASETS = {"gan_ring8", "gan_grid25", "gan_digits"}


@dataclass(frozen=True)
class Label:
    """A run's ground-truth label, when the trouble began, and why."""

    label: str
    onset: int | None
    detail: str = ""
    critical: bool = False  # the alert must be critical (non-finite, full collapse, dead)


def _first_persistent(steps: list[int], cond: list[bool]) -> int | None:
    """First step from which ``cond`` holds at every later evaluation."""
    start = None
    for step, c in zip(steps, cond, strict=True):
        if c and start is None:
            start = step
        elif not c:
            start = None
    return start


def _blowup_onset(gt: Mapping[str, Any], persist: int = 3) -> int | None:
    """First step of ``persist`` held-out evaluations in a row above twice the best so far."""
    losses = gt.get("heldout_loss")
    if not losses:
        return None
    best, start, run = math.inf, None, 0
    for step, loss in zip(gt["eval_steps"], losses, strict=True):
        bad = loss is None or not math.isfinite(loss) or (step >= 100 and loss > 2 * best)
        if bad:
            start = step if run == 0 else start
            run += 1
            if run >= persist:
                return start
        else:
            run = 0
        if loss is not None and math.isfinite(loss):
            best = min(best, loss)
    return None


def learn_steps(metas: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Per GAN family: the latest step at which a healthy tuning-split run first covered more
    than half of its modes (the time a working GAN of that data set needs to learn)."""
    out: dict[str, int] = {}
    for meta in metas:
        gt = meta["ground_truth"]
        if meta["family"] not in _GAN_DATASETS or meta["split"] != "tune":
            continue
        if _gan_state(gt)[0] != "healthy":
            continue
        k = gt["n_modes"]
        first = next((s for s, m in zip(gt["eval_steps"], gt["modes"], strict=True)
                      if m > k / 2), None)
        if first is not None:
            out[meta["family"]] = max(out.get(meta["family"], 0), first)
    return out


def _gan_state(gt: Mapping[str, Any]) -> tuple[str, str]:
    """The GAN's final state from its measurements alone: (label, detail)."""
    k = gt["n_modes"]
    modes, hq = gt["modes"], gt["high_quality"]
    tail = sorted(modes[-3:])
    final = tail[len(tail) // 2]
    change = [c for c in gt.get("g_weight_change", [])[1:] if c is not None]
    if len(change) >= 3 and max(change[-3:]) <= 1e-7:
        return "broken", "generator stopped moving"
    if max(hq[1:] or [0.0]) < 0.1:
        return "broken", "never reached the data"
    if final <= k / 2:
        return "collapse", "full" if final <= k / 4 else "partial"
    acc = [a for a in gt.get("d_heldout_accuracy", []) if a is not None]
    if len(acc) >= 5 and min(acc[-5:]) >= 0.9:
        return "dwins", "D's held-out accuracy >= 0.9"
    if final >= 0.75 * k:
        last_quarter = modes[len(modes) - max(1, len(modes) // 4):]
        if min(last_quarter) <= k / 2:
            return "unstable", f"falls to {min(last_quarter)} of {k} modes late in the run"
        return "healthy", ""
    return "degraded", f"{final} of {k} modes"


def label_run(meta: Mapping[str, Any], learn: Mapping[str, int]) -> Label:
    """The label of one recorded run (``learn``: :func:`learn_steps` of the corpus)."""
    gt = meta["ground_truth"]
    family, intent = meta["family"], meta["intent"]
    nf = gt.get("first_nonfinite_step")
    if nf is not None:
        return Label("diverge", nf, "non-finite loss", True)
    blowup = _blowup_onset(gt)
    if blowup is not None:
        return Label("diverge", blowup, "held-out loss blow-up")
    if family in _GAN_DATASETS:
        state, detail = _gan_state(gt)
        steps, modes = gt["eval_steps"], gt["modes"]
        grace = learn.get(family, 0)
        if state == "collapse":
            k = gt["n_modes"]
            slack = max(1, k // 10)
            stuck = [m <= k / 2 and max(modes[i:]) <= m + slack for i, m in enumerate(modes)]
            start = _first_persistent(steps, stuck)
            return Label("collapse", max(start or 0, grace), detail, detail == "full")
        if state == "broken":
            if detail.startswith("generator"):
                change = gt["g_weight_change"]
                start = _first_persistent(steps[1:], [c is not None and c <= 1e-7
                                                      for c in change[1:]])
                return Label("broken", start if start is not None else grace, detail, True)
            return Label("broken", grace, detail)
        if state == "dwins":
            acc = gt["d_heldout_accuracy"]
            start = _first_persistent(steps, [a is not None and a >= 0.9 for a in acc])
            return Label("dwins", start, detail)
        return Label(state, None, detail)
    if family == "ssl":
        ranks = gt["effective_rank"]
        peak, start = -math.inf, None
        for step, r in zip(gt["eval_steps"], ranks, strict=True):
            low = peak >= 2 and r <= peak / 2
            start = (start if start is not None else step) if low else None
            peak = max(peak, r)
        if start is not None:
            return Label("collapse", start, "effective rank at half its peak or less")
        return Label("healthy", None) if intent == "healthy" else Label("unclear", None)
    if family == "deep_mlp":
        d0, d1 = gt["first_layer_rel_change"][-1], gt["last_layer_rel_change"][-1]
        if d0 < 0.01 and d1 > 10 * d0:
            return Label("vanishing", 0, "first layer moved < 1 %")
    if intent == "healthy":
        return Label("healthy", None)
    return Label("unclear", None)
