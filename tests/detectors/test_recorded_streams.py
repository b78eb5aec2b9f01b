"""Detectors on recorded real trainings (small CPU runs of ``benchmarks/scenarios/record.py``).

The streams in ``data/recorded/`` are copies of runs of the scenario suite (same format:
``benchmarks/scenarios/scenario_io.py``; the manifest there is the subset of the suite's
manifest for these runs). They are replayed through :class:`DetectorSuite` in batches of 25 steps
with each embedding evaluation after the scalars of its batch, as the server does, and the
alarms are checked against the ground truth measured during training (mode counts, first
non-finite loss, weight movement of the first layer), never against the detectors' own output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stethoscope.detectors import DetectorSuite

DATA = Path(__file__).parent / "data" / "recorded"
MANIFEST = {m["id"]: m for m in json.loads((DATA / "manifest.json").read_text())["runs"]}


def replay(run_id: str, batch: int = 25) -> list[Any]:
    """Firing warning/critical findings of a fresh suite fed the recorded run ``run_id``."""
    meta = MANIFEST[run_id]
    with np.load(DATA / meta["file"]) as z:
        scalars = {n: (z[f"s{i}_steps"], z[f"s{i}_values"]) for i, n in enumerate(meta["series"])}
        emb = None
        if "main" in meta["embedding_sets"]:
            real = z["emb_main_real"] if "emb_main_real" in z.files else None
            emb = (z["emb_main_steps"], z["emb_main_fake"], real)
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
    return [f for f in found if f.status == "firing" and f.severity in ("warning", "critical")]


def first(findings: list[Any], kind: str) -> int | None:
    """Step of the first finding of ``kind`` (None if none)."""
    steps = [f.step for f in findings if f.kind == kind]
    return min(steps) if steps else None


@pytest.mark.parametrize("run_id", [r for r, m in MANIFEST.items() if m["label"] == "healthy"])
def test_healthy_runs_raise_nothing(run_id: str) -> None:
    found = replay(run_id)
    assert not found, [(f.key, f.step, f.message) for f in found]


def test_gan_collapse_flagged_within_500_steps_of_onset() -> None:
    meta = MANIFEST["ring8_collapse-s0"]
    onset, fault = meta["onset_step"], meta["ground_truth"]["fault_step"]
    found = replay("ring8_collapse-s0")
    assert all(f.step >= fault for f in found), "alarm while the run was still healthy"
    step = first(found, "mode_collapse")
    assert step is not None and onset - 100 <= step <= onset + 500


def test_classifier_blowup_flagged_by_first_nonfinite_loss() -> None:
    meta = MANIFEST["clf_lr_blowup-s0"]
    gt = meta["ground_truth"]
    found = replay("clf_lr_blowup-s0")
    assert all(f.step >= gt["fault_step"] for f in found), "alarm before the lr started growing"
    step = first(found, "divergence")
    assert step is not None and step <= gt["first_nonfinite_step"]


def test_classifier_blowup_flagged_before_first_nonfinite_loss() -> None:
    gt = MANIFEST["clf_lr_blowup-s0"]["ground_truth"]
    found = [f for f in replay("clf_lr_blowup-s0") if f.kind in ("divergence",
                                                                  "exploding_gradients")]
    assert found and min(f.step for f in found) < gt["first_nonfinite_step"]


def test_deep_sigmoid_vanishing_gradients_flagged() -> None:
    found = replay("deep_sigmoid-s0")
    step = first(found, "vanishing_gradients")
    assert step is not None  # at step 700 on this seed (520-700 over seeds 0-2)
