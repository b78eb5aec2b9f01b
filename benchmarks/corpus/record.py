"""Record the corpus: real CPU trainings, streamed as the collector would stream them.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.corpus.record [--workers 2] [--split tune|test]
        [--only NAME_SUBSTRING ...] [--seeds 0 1 2 3 4] [--cache DIR]

Every (configuration, seed) of ``configs.py`` is trained once on one CPU thread, in
``--workers`` processes, and written to the cache (``$STETHOSCOPE_CORPUS`` or ``.corpus/`` at the
repository root) as ``<run>.npz`` (the stream; format in :mod:`stream`) and ``<run>.json`` (the
configuration and the ground truth measured during training). Runs already in the cache are
skipped, so an interrupted recording resumes. The whole corpus takes about two CPU-hours
(``wall_s`` of each run is in its JSON). Labels are derived from the ground truth afterwards
(``labels.py``); ``evaluate.py`` replays the runs through the server's detector pipeline.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.corpus.configs import CONFIGS, SEEDS, Config
from benchmarks.corpus.stream import GroundTruth, StreamRecorder, save_run

ROOT = Path(__file__).resolve().parents[2]
GRAD_EVERY = 10
#: Rough CPU seconds per run, to start the long ones first.
_COST = {"gan_grid25": 120, "gan_digits": 60, "gan_ring8": 20}


def cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where the corpus lives: ``explicit``, else ``$STETHOSCOPE_CORPUS``, else ``.corpus/``."""
    return Path(explicit or os.environ.get("STETHOSCOPE_CORPUS") or ROOT / ".corpus")


def run_id(cfg: Config, seed: int) -> str:
    return f"{cfg.name}-s{seed}"


def _train(cfg: Config, seed: int, rec: StreamRecorder) -> dict[str, Any]:
    if cfg.runner == "gan2d":
        from benchmarks.corpus import gan2d

        return gan2d.train(gan2d.Gan2dConfig(**cfg.params), seed, rec)
    if cfg.runner == "dcgan":
        from benchmarks.corpus import dcgan

        return dcgan.train(dcgan.DcganConfig(**cfg.params), seed, rec)
    from benchmarks.corpus import nongan

    fn = {"classifier": nongan.run_classifier, "deep_mlp": nongan.run_deep_mlp,
          "ssl": nongan.run_ssl}[cfg.runner]
    return fn(dict(cfg.params), seed, rec)


def record_one(task: tuple[Config, int, str]) -> str:
    """Train one (configuration, seed) and write it to the cache; returns a summary line."""
    cfg, seed, out = task
    import torch

    torch.set_num_threads(1)
    rid = run_id(cfg, seed)
    out_dir = Path(out)
    rec = StreamRecorder(grad_every=GRAD_EVERY, embed_dtype=np.float16)
    t0 = time.perf_counter()
    try:
        gt = _train(cfg, seed, rec)
    finally:
        rec.close()
    wall = time.perf_counter() - t0
    series = save_run(out_dir / f"{rid}.npz", rec)
    meta = {
        "id": rid, "file": f"{rid}.npz", "config": cfg.name, "family": cfg.family,
        "runner": cfg.runner, "split": cfg.split, "intent": cfg.intent, "seed": seed,
        "params": cfg.params, "series": series, "embedding_sets": sorted(rec.embeddings),
        "has_real": {k: bool(v["real"]) for k, v in rec.embeddings.items()},
        "grad_every": GRAD_EVERY, "torch": torch.__version__,
        "ground_truth": GroundTruth(gt).as_json(), "wall_s": round(wall, 1),
    }
    tmp = out_dir / f"{rid}.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(out_dir / f"{rid}.json")  # the JSON last: its presence marks a complete run
    modes = gt.get("modes") or gt.get("effective_rank") or []
    return (f"{rid:28s} {wall:6.1f}s modes/metric={modes[::4]} "
            f"first_nf={gt.get('first_nonfinite_step')}")


def main(argv: list[str] | None = None) -> int:
    """Command line: record every selected (configuration, seed) not yet in the cache."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", default=None, help="substrings of configuration names")
    p.add_argument("--split", choices=["tune", "test"], default=None)
    p.add_argument("--seeds", nargs="*", type=int, default=list(SEEDS))
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--cache", default=None)
    args = p.parse_args(argv)
    out = cache_dir(args.cache)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [
        (c, s, str(out)) for c in CONFIGS for s in args.seeds
        if (not args.only or any(o in c.name for o in args.only))
        and (args.split is None or c.split == args.split)
        and not (out / f"{run_id(c, s)}.json").exists()
    ]
    tasks.sort(key=lambda t: -_COST.get(t[0].family, 10))
    print(f"{len(tasks)} runs to record into {out} with {args.workers} worker(s)", flush=True)
    t0 = time.perf_counter()
    if args.workers > 1:
        with multiprocessing.get_context("spawn").Pool(args.workers, maxtasksperchild=4) as pool:
            for line in pool.imap_unordered(record_one, tasks):
                print(line, flush=True)
    else:
        for task in tasks:
            print(record_one(task), flush=True)
    print(f"done in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
