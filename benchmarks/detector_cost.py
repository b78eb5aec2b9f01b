"""Cost of the detectors: microseconds per scalar point, milliseconds per embedding evaluation.

Run: ``.venv/bin/python benchmarks/detector_cost.py`` (add ``--quick`` for fewer repeats).
Scalars go through ``DetectorSuite.update_scalars`` in batches, as the server feeds them: a GAN
run logging 4 scalars, 8 per-layer gradient norms and a total per step (every series routed to
its detectors: NaN, spike, drift, oscillation, gradients, balance). Embedding evaluations go
through ``DetectorSuite.update_embeddings`` with fake and real batches of the same size.
Timings are medians over repeats; the table states the machine's CPU count and BLAS threads.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from stethoscope.detectors import DetectorSuite


def scalar_stream(n_steps: int, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    t = np.arange(n_steps, dtype=np.int64)
    out = {
        "loss_D": (t, 1.2 * np.exp(0.2 * rng.standard_normal(n_steps))),
        "loss_G": (t, (1 + t / n_steps) * np.exp(0.3 * rng.standard_normal(n_steps))),
        "D_x": (t, np.clip(0.6 + 0.1 * rng.standard_normal(n_steps), 0, 1)),
        "D_G_z1": (t, np.clip(0.4 + 0.1 * rng.standard_normal(n_steps), 0, 1)),
    }
    for i in range(8):
        out[f"grad_norm/G/main.{i}.weight"] = (t, (1 + i) * np.exp(0.3 * rng.standard_normal(
            n_steps)))
    out["grad_norm/G/total"] = (t, 10 * np.exp(0.2 * rng.standard_normal(n_steps)))
    return out


def bench_scalars(batch_steps: int, n_steps: int, repeats: int) -> float:
    stream = scalar_stream(n_steps)
    points = sum(v[0].size for v in stream.values())
    times = []
    for _ in range(repeats):
        suite = DetectorSuite()
        t0 = time.perf_counter()
        for a in range(0, n_steps, batch_steps):
            suite.update_scalars({k: (s[a : a + batch_steps], v[a : a + batch_steps])
                                  for k, (s, v) in stream.items()})
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / points * 1e6


def bench_embeddings(n: int, d: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    suite = DetectorSuite()
    times = []
    for i in range(repeats + 1):
        fake = rng.standard_normal((n, d)).astype(np.float32)
        real = rng.standard_normal((n, d)).astype(np.float32)
        t0 = time.perf_counter()
        suite.update_embeddings(i, {"fake": fake, "real": real})
        if i:  # the first call pays one-time BLAS start-up
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    args = ap.parse_args()
    reps = 3 if args.quick else 7
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
          f"numpy {np.__version__}")
    print("\n| scalar batch (steps x 13 series) | us per point |")
    print("|---|---|")
    for batch in (1, 10, 100, 1000):
        n_steps = 2000 if batch == 1 else 20000
        print(f"| {batch} | {bench_scalars(batch, n_steps, reps):.2f} |")
    print("\n| embedding evaluation (fake and real, n x d) | ms per evaluation |")
    print("|---|---|")
    for n, d in ((512, 2), (512, 512), (2048, 2048)):
        print(f"| {n} x {d} | {bench_embeddings(n, d, reps):.1f} |")


if __name__ == "__main__":
    main()
