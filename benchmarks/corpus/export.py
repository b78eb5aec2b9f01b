"""Copy a few recorded runs of the tuning split into the test data, small.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.corpus.export RUN_ID:EXTRACTOR ... \\
        [--out tests/detectors/data/corpus]

Only the named extractor's embeddings are kept, and the run's label (from its ground truth,
``labels.py``) is written into its JSON, so the tests need neither the cache nor the rest of
the corpus. Runs of the test split are refused: tests replay what the detectors were tuned on,
never what they are judged on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.corpus.evaluate import load_metas
from benchmarks.corpus.labels import label_run, learn_steps
from benchmarks.corpus.record import ROOT, cache_dir

OUT = ROOT / "tests" / "detectors" / "data" / "corpus"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="RUN_ID or RUN_ID:EXTRACTOR")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    directory = cache_dir()
    metas = {m["id"]: m for m in load_metas(directory)}
    learn = learn_steps(metas.values())
    args.out.mkdir(parents=True, exist_ok=True)
    for spec in args.runs:
        rid, _, extractor = spec.partition(":")
        meta = dict(metas[rid])
        if meta["split"] != "tune":
            raise SystemExit(f"{rid} is in the test split: tests replay tuning runs only")
        label = label_run(meta, learn)
        with np.load(directory / meta["file"]) as z:
            keep = {k: z[k] for k in z.files
                    if not k.startswith("emb_") or k.startswith(f"emb_{extractor}_")}
        np.savez_compressed(args.out / meta["file"], **keep)
        meta["embedding_sets"] = [extractor] if extractor else []
        meta["label"] = {"label": label.label, "onset": label.onset, "detail": label.detail,
                         "critical": label.critical}
        (args.out / f"{rid}.json").write_text(json.dumps(meta, indent=1))
        size = (args.out / meta["file"]).stat().st_size
        print(f"{rid:24s} {extractor or '-':7s} {label.label:9s} {size / 1e3:8.0f} kB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
