"""Detectors on recorded real trainings of the corpus' tuning split.

The streams in ``data/corpus/`` are small copies of tuning-split runs of ``benchmarks/corpus``
(``benchmarks.corpus.export``: one embedding extractor kept, the label measured during training
written into the JSON). Each is replayed through a :class:`DetectorSuite` in batches of 25 steps,
with each embedding evaluation after the scalars of its batch, as the server does, and the alarms
are checked against the ground-truth label (mode counts, first non-finite loss, weight movement,
effective rank), never against the detectors' own output. Healthy runs must raise no warning or
critical finding; every other label must be caught, collapse within 500 steps of its onset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stethoscope.detectors import DetectorSuite

DATA = Path(__file__).parent / "data" / "corpus"
RUNS = {p.stem: json.loads(p.read_text()) for p in sorted(DATA.glob("*.json"))}
CAUGHT_BY = {
    "collapse": ("mode_collapse",),
    "diverge": ("divergence", "exploding_gradients"),
    "vanishing": ("vanishing_gradients", "stalled"),
    "broken": ("mode_collapse", "stalled", "vanishing_gradients", "discriminator_wins"),
}


def replay(meta: dict[str, Any], batch: int = 25) -> tuple[list[Any], DetectorSuite]:
    """Firing warning/critical findings of a fresh suite fed the recorded run, and the suite."""
    with np.load(DATA / meta["file"]) as z:
        scalars = {n: (z[f"s{i}_steps"], z[f"s{i}_values"]) for i, n in enumerate(meta["series"])}
        emb = None
        for name in meta["embedding_sets"]:
            real = z[f"emb_{name}_real"] if f"emb_{name}_real" in z.files else None
            emb = (z[f"emb_{name}_steps"], z[f"emb_{name}_fake"], real)
    suite = DetectorSuite()
    found = []
    last = max(int(s[-1]) for s, _ in scalars.values())
    for lo in range(0, last + 1, batch):
        part = {}
        for name, (steps, values) in scalars.items():
            a, b = np.searchsorted(steps, [lo, lo + batch])
            if b > a:
                part[name] = (steps[a:b].astype(np.int64), values[a:b].astype(np.float64))
        found += suite.update_scalars(part)
        if emb is not None:
            for i in np.nonzero((emb[0] >= lo) & (emb[0] < lo + batch))[0]:
                arrays = {"fake": emb[1][i].astype(np.float32)}
                if emb[2] is not None:
                    arrays["real"] = emb[2][i].astype(np.float32)
                found += suite.update_embeddings(int(emb[0][i]), arrays)
    alarms = [f for f in found if f.status == "firing" and f.severity in ("warning", "critical")]
    return alarms, suite


def test_the_test_data_holds_tuning_runs_only():
    assert RUNS and all(m["split"] == "tune" for m in RUNS.values())
    assert {m["label"]["label"] for m in RUNS.values()} >= {
        "healthy", "collapse", "diverge", "broken", "vanishing"}


@pytest.mark.parametrize("run_id", [r for r, m in RUNS.items() if m["label"]["label"] == "healthy"])
def test_healthy_real_runs_raise_nothing(run_id):
    alarms, suite = replay(RUNS[run_id])
    assert alarms == [], [(f.key, f.step, f.severity) for f in alarms]
    assert not [s for s in suite.health() if s.state == "alarm"]


@pytest.mark.parametrize("run_id", [r for r, m in RUNS.items()
                                    if m["label"]["label"] in CAUGHT_BY])
def test_every_failing_real_run_is_caught(run_id):
    meta = RUNS[run_id]
    label = meta["label"]
    alarms, _ = replay(meta)
    hits = [f for f in alarms if f.kind in CAUGHT_BY[label["label"]]]
    assert hits, f"{run_id} ({label}) raised {[(f.key, f.step) for f in alarms]}"
    first = min(f.step for f in hits)
    if label["label"] == "collapse":
        assert first <= label["onset"] + 500, (first, label)
        if label["critical"]:
            assert any(f.severity == "critical" for f in hits)
    if label["label"] == "diverge" and meta["ground_truth"].get("first_nonfinite_step"):
        assert first <= meta["ground_truth"]["first_nonfinite_step"]


def test_silent_failures_are_named():
    """A dead generator's zero gradients, and the classic DCGAN's sigmoid + BCELoss D saturated
    at step ~500 (loss_D pinned at 100, loss_G at 0, every gradient exactly 0, no NaN): stalls,
    critical, within 100 steps."""
    dead, _ = replay(RUNS["r8_dead_g-s0"])
    assert "stalled/gradients:G" in {f.key for f in dead}
    clamped, suite = replay(RUNS["dc_bce_clamp_hard-s0"])
    first = {f.key: f.step for f in clamped if f.kind == "stalled"}
    assert {"stalled/gradients:D", "stalled/gradients:G", "stalled/pinned:loss_D",
            "stalled/pinned:loss_G", "stalled/d_saturated"} <= set(first), first
    assert max(first[k] for k in first if not k.endswith("d_saturated")) <= 600
    assert all(f.severity == "critical" for f in clamped if f.kind == "stalled")
    assert "clamped BCE term" in next(f.message for f in clamped
                                      if f.key == "stalled/pinned:loss_D")
