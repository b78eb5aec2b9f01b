"""Every embedding evaluation of the corpus measured, beside its ground truth (for tuning).

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.corpus.measure --split tune --out .corpus/measured-tune.json

For each GAN run, extractor and evaluation: the step, the measured modes (classes), their
high-quality share, and the collapse and rank detectors' measurements. This is what the
collapse thresholds are chosen from; it never reads the test split unless asked to.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.corpus.evaluate import load_metas
from benchmarks.corpus.labels import label_run, learn_steps
from benchmarks.corpus.record import cache_dir
from benchmarks.corpus.stream import load_run


def _measure(args: tuple[str, dict[str, Any], str]) -> list[dict[str, Any]]:
    from stethoscope.detectors import CollapseDetector, DimensionalCollapseDetector

    directory, meta, label = args
    run = load_run(Path(directory), meta)
    gt = meta["ground_truth"]
    modes = dict(zip(gt["eval_steps"], gt.get("modes") or [None] * len(gt["eval_steps"]),
                     strict=True))
    hq = dict(zip(gt["eval_steps"], gt.get("high_quality") or [None] * len(gt["eval_steps"]),
                  strict=True))
    rows = []
    col, rank = CollapseDetector(), DimensionalCollapseDetector()
    for ex, (steps, fake, real) in run.embeddings.items():
        for i, step in enumerate(steps.tolist()):
            emb = {"fake": fake[i].astype(np.float32)}
            if real is not None:
                emb["real"] = real[i].astype(np.float32)
            m = col.measure(step, emb)
            r = rank.measure(step, emb)
            rows.append({"id": meta["id"], "config": meta["config"], "family": meta["family"],
                         "label": label, "extractor": ex, "step": step,
                         "modes": modes.get(step), "n_modes": gt.get("n_modes"),
                         "hq": hq.get(step), **{k: v for k, v in m.items()
                                                if isinstance(v, int | float)},
                         **{f"rank_{k}": v for k, v in r.items() if isinstance(v, int | float)}})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", choices=["tune", "test"], default="tune")
    p.add_argument("--cache", default=None)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    directory = cache_dir(args.cache)
    metas = load_metas(directory)
    learn = learn_steps(metas)
    todo = [(str(directory), m, label_run(m, learn).label) for m in metas
            if m["split"] == args.split and m["embedding_sets"]]
    rows: list[dict[str, Any]] = []
    if args.workers > 1:
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            for part in pool.imap_unordered(_measure, todo):
                rows += part
    else:
        for t in todo:
            rows += _measure(t)
    args.out.write_text(json.dumps(rows))
    print(f"{len(rows)} evaluations of {len(todo)} runs -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
