"""Server throughput: ingest rate through a real uvicorn server, and reads of long series.

Prints two tables:
- ingest: batches and points per second for collector-like batches (a GAN's 4 losses plus the
  gradient norms of two small modules) posted over loopback HTTP, detectors included;
- reads: milliseconds to read a series of N points whole and downsampled to 2,000 points.

Run from the repository root with the dev environment:
    .venv/bin/python benchmarks/server_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import start_server, stop_server  # noqa: E402


def collector_like_batch(first_step: int, steps: int, rng: np.random.Generator) -> dict:
    """One batch as the collector sends it after ``steps`` training steps."""
    names = ["loss_D", "loss_G", "D_x", "D_G_z"]
    names += [f"grad_norm/{m}/{i}.{p}" for m in "GD" for i in range(3) for p in ("weight", "bias")]
    names += ["grad_norm/G/total", "grad_norm/D/total"]
    step_list = list(range(first_step, first_step + steps))
    return {
        "batch_id": uuid.uuid4().hex,
        "scalars": {
            n: {"steps": step_list, "values": (1.0 + 0.05 * rng.standard_normal(steps)).tolist()}
            for n in names
        },
    }


def bench_ingest(url: str, batches: int, steps_per_batch: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    bodies = [
        collector_like_batch(i * steps_per_batch, steps_per_batch, rng) for i in range(batches)
    ]
    points = sum(len(s["steps"]) for b in bodies for s in b["scalars"].values())
    with httpx.Client(base_url=url, timeout=60) as http:
        start = time.perf_counter()
        for body in bodies:
            r = http.post("/api/v1/runs/bench-ingest/batches", json=body)
            r.raise_for_status()
        elapsed = time.perf_counter() - start
    return batches / elapsed, points / elapsed


def bench_reads(url: str, n_points: int, chunk: int) -> tuple[float, float]:
    run = f"bench-read-{n_points}"
    rng = np.random.default_rng(1)
    with httpx.Client(base_url=url, timeout=120) as http:
        for first in range(0, n_points, chunk):
            steps = list(range(first, min(first + chunk, n_points)))
            values = rng.standard_normal(len(steps)).tolist()
            body = {"batch_id": uuid.uuid4().hex,
                    "scalars": {"signal": {"steps": steps, "values": values}}}
            http.post(f"/api/v1/runs/{run}/batches", json=body).raise_for_status()
        whole, small = [], []
        for _ in range(3):
            t = time.perf_counter()
            http.get(f"/api/v1/runs/{run}/series/signal").raise_for_status()
            whole.append(time.perf_counter() - t)
            t = time.perf_counter()
            http.get(f"/api/v1/runs/{run}/series/signal", params={"max_points": 2000})
            small.append(time.perf_counter() - t)
    return statistics.median(whole) * 1e3, statistics.median(small) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer batches and shorter series")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        live, server, thread = start_server(Path(tmp) / "bench.db", ui=False)
        try:
            print("ingest over loopback HTTP (18 series per batch, detectors on)")
            print(f"{'steps/batch':>12} {'batches/s':>10} {'points/s':>10}")
            for steps in (10, 100) if args.quick else (10, 50, 100, 500):
                batches = 40 if args.quick else 150
                rate_b, rate_p = bench_ingest(live.url, batches, steps)
                print(f"{steps:>12} {rate_b:>10.1f} {rate_p:>10.0f}")
            print("\nreading one series (chunks of 1,000 points as ingested; median of 3)")
            print(f"{'points':>10} {'whole ms':>10} {'max_points=2000 ms':>19}")
            for n in (10_000, 100_000) if args.quick else (10_000, 100_000, 1_000_000):
                whole, small = bench_reads(live.url, n, 1_000)
                print(f"{n:>10} {whole:>10.1f} {small:>19.1f}")
        finally:
            stop_server(server, thread)


if __name__ == "__main__":
    main()
