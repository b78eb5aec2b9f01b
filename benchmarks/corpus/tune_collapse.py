"""Replay measured embedding evaluations through the collapse detector's decision, quickly.

Usage (from the repository root; needs ``measure.py``'s output for the tuning split)::

    .venv/bin/python -m benchmarks.corpus.tune_collapse .corpus/measured-tune.json \\
        '{"threshold": 0.6}' '{"threshold": 0.55, "precision_floor": 0.4}' ...

The metrics are measured once (the expensive part); each parameter set only re-runs the
decisions, so many can be compared in seconds. Scored like ``evaluate.py``: collapse runs
caught within 500 steps of their onset, alarms on healthy runs, per extractor.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from typing import Any

from benchmarks.corpus.evaluate import DELAY, load_metas
from benchmarks.corpus.labels import label_run, learn_steps
from benchmarks.corpus.record import cache_dir
from stethoscope.detectors import CollapseDetector

_KEYS = ("coverage", "coverage_ref", "recall", "recall_ref", "precision", "precision_ref",
         "vendi", "vendi_ref", "coverage_ratio", "recall_ratio", "precision_ratio", "vendi_ratio",
         "coverage_score", "distance_ratio", "duplicate_rate", "duplicate_rate_ref", "samples",
         "bandwidth", "reference_is_real", "mean_distance", "spread")


def simulate(rows: list[dict[str, Any]], params: dict[str, Any],
             labels: dict[str, Any]) -> dict[str, Any]:
    """Outcome per (run, extractor) of the detector with ``params`` on measured ``rows``."""
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[(r["id"], r["extractor"])].append(r)
    out: dict[str, Any] = {"caught": defaultdict(list), "false": defaultdict(list)}
    for (rid, ex), rs in sorted(by.items()):
        label = labels[rid]
        det = CollapseDetector(**params)
        first = None
        critical = False
        for r in sorted(rs, key=lambda r: r["step"]):
            m = {k: r[k] for k in _KEYS if k in r}
            if "reference_is_real" not in m:  # the detector skipped it (too few finite rows)
                continue
            if "coverage_ratio" in m:
                m["coverage_score"] = min(m["coverage_ratio"], m["recall_ratio"])
                m["mode_score"] = m["coverage_score"] * min(1.0, m["vendi_ratio"])
            for f in det.update(r["step"], {}, m):
                if f.status == "firing":
                    first = f.step if first is None else first
                    critical |= f.severity == "critical"
        if label.label == "collapse":
            end = max(r["step"] for r in rs)
            if (label.onset or 0) + DELAY > end:
                continue
            ok = first is not None and first <= (label.onset or 0) + DELAY
            if label.critical:
                ok = ok and critical
            out["caught"][ex].append((rid, ok, first, label.onset, label.detail))
        elif label.label == "healthy":
            out["false"][ex].append((rid, first is not None, first))
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as fh:
        rows = json.load(fh)
    metas = {m["id"]: m for m in load_metas(cache_dir())}
    learn = learn_steps(metas.values())
    labels = {rid: label_run(m, learn) for rid, m in metas.items()}
    for spec in argv[1:] or ["{}"]:
        params = json.loads(spec)
        res = simulate(rows, params, labels)
        print(f"== {params}")
        for ex in sorted(set(res["caught"]) | set(res["false"])):
            c, f = res["caught"].get(ex, []), res["false"].get(ex, [])
            misses = [f"{r[0]}(first={r[2]}, onset={r[3]}, {r[4]})" for r in c if not r[1]]
            alarms = [f"{r[0]}@{r[2]}" for r in f if r[1]]
            print(f"  {ex:7s} collapse {sum(r[1] for r in c)}/{len(c)}  healthy alarms "
                  f"{len(alarms)}/{len(f)}")
            for x in misses:
                print(f"      miss {x}")
            for x in alarms:
                print(f"      FALSE {x}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
