"""Collector overhead: log() hot-path cost and watch() hook cost as a fraction of a real step.

Run from the repository root (only torch, numpy and httpx are needed; the package need not be
installed)::

    python benchmarks/collector_overhead.py            # CPU, and CUDA too when available
    python benchmarks/collector_overhead.py --quick    # fewer repeats

The server is replaced by an in-process ``httpx.MockTransport`` that accepts every batch, so
the sender thread does its real work (read-back, encoding, JSON) concurrently with the loop,
as it would against a real server; only the network is left out.

On CUDA it also checks that the hot path never synchronises host and device: every training
step (forward, backward, optimizer step with the gradient hooks, ``log()`` of loss tensors)
runs under ``torch.cuda.set_sync_debug_mode("error")`` between flushes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import statistics
import sys
import time
import types
import warnings
from collections.abc import Callable
from pathlib import Path

import httpx
import torch

REPO = Path(__file__).resolve().parents[1]


def _import_collector() -> types.ModuleType:
    """``stethoscope.collector``, installed or straight from this checkout's ``collector/``."""
    try:
        import stethoscope.collector as collector

        return collector
    except ImportError:
        pass
    if "stethoscope" not in sys.modules:
        pkg = types.ModuleType("stethoscope")
        pkg.__path__ = []
        sys.modules["stethoscope"] = pkg
    spec = importlib.util.spec_from_file_location(
        "stethoscope.collector",
        REPO / "collector" / "__init__.py",
        submodule_search_locations=[str(REPO / "collector")],
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["stethoscope.collector"] = module
    spec.loader.exec_module(module)
    return module


collector = _import_collector()
Monitor = collector.Monitor
StethoscopeWarning = collector.StethoscopeWarning


def _null_transport() -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            bid = json.loads(request.content)["batch_id"]
            return httpx.Response(200, json={"batch_id": bid, "alerts": [], "alert_cursor": 0})
        return httpx.Response(200, json={})

    return httpx.MockTransport(handler)


def _monitor(run: str, **kw) -> Monitor:
    return Monitor(run, server="http://bench.invalid", transport=_null_transport(), **kw)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------- log() hot path
def bench_log(kind: str, device: torch.device, calls: int, repeats: int, sustained: bool
              ) -> float:
    """Microseconds per ``log()`` call with 4 values of ``kind``.

    Not ``sustained``: the calls are timed in chunks of 1,000 (about a second of a fast
    training loop); between chunks the sender drains and sends, untimed. This is the cost the
    loop itself pays per call. ``sustained``: the calls run back to back while the sender
    thread reads back, encodes and "sends" concurrently (Python's GIL makes the loop share the
    CPU with it): a stress far above real logging rates.
    """
    mon = _monitor(f"bench-log-{kind}", close_timeout=1.0,
                   **({} if sustained else {"flush_interval": 3600.0}))
    if kind == "float":
        vals = [0.5, 0.25, 1.5, 2.0]
    else:
        vals = [torch.tensor(v, device=device) for v in (0.5, 0.25, 1.5, 2.0)]
    a, b, c, d = vals
    chunk = calls if sustained else 1000
    times = []
    step = 0
    for _ in range(repeats):
        spent = 0.0
        for _ in range(calls // chunk):
            t0 = time.perf_counter()
            for _ in range(chunk):
                mon.log(step, loss_D=a, loss_G=b, D_x=c, D_G_z=d)
                step += 1
            spent += time.perf_counter() - t0
            if not sustained:
                mon.flush()
                while mon._recorder._points:  # let the sender drain, untimed
                    time.sleep(0.0005)
        times.append(spent / calls * 1e6)
    mon.close()
    return statistics.median(times)


def bench_hook(factory: Callable[[], torch.nn.Module], device: torch.device, every: int,
               calls: int) -> float:
    """Microseconds of host time per optimizer-step hook call of ``watch()`` (launches only;
    the norm kernels themselves run asynchronously on CUDA)."""
    net = factory().to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    out = net(torch.randn(8, 1, 28, 28, device=device)).sum()
    out.backward()
    mon = _monitor("bench-hook", close_timeout=1.0)
    watch = mon.watch(net, name="net", every=every)
    times = []
    for _ in range(5):
        _sync(device)
        t0 = time.perf_counter()
        for i in range(calls):
            watch._on_optimizer_step(opt, (), {})
            if i % 100 == 99:
                mon.log(i, x=1.0)
        _sync(device)
        times.append((time.perf_counter() - t0) / calls * 1e6)
    mon.close()
    return statistics.median(times)


def bench_item(device: torch.device, calls: int, repeats: int) -> float:
    """For comparison: microseconds for 4 ``.item()`` calls (what per-value loggers do)."""
    vals = [torch.tensor(v, device=device) for v in (0.5, 0.25, 1.5, 2.0)]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            for v in vals:
                v.item()
        times.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(times)


# ---------------------------------------------------------------------------- watch() overhead
def mlp() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 512), torch.nn.ReLU(),
        torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10),
    )


def convnet() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(64 * 7 * 7, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 10),
    )


def make_step(net: torch.nn.Module, device: torch.device, batch: int, mon: Monitor | None
              ) -> Callable[[int], None]:
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(i: int) -> None:
        out = net(x)
        loss = loss_fn(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if mon is not None:
            mon.log(i, loss=loss.detach(), lr=1e-3)

    return step


def time_steps(step: Callable[[int], None], device: torch.device, n: int, start: int) -> float:
    _sync(device)
    t0 = time.perf_counter()
    for i in range(start, start + n):
        step(i)
    _sync(device)
    return (time.perf_counter() - t0) / n * 1e3


def bench_watch(factory: Callable[[], torch.nn.Module], device: torch.device, batch: int,
                steps: int, repeats: int) -> dict[str, float]:
    """ms/step for: no monitor, log() only, watch(every=10) (default), watch(every=1)."""
    variants = ["plain", "log", "watch10", "watch1"]
    runs: dict[str, tuple[Callable[[int], None], Monitor | None]] = {}
    for v in variants:
        torch.manual_seed(0)
        net = factory().to(device)
        mon = None if v == "plain" else _monitor(f"bench-watch-{v}")
        if v == "watch10":
            mon.watch(net, name="net")
        elif v == "watch1":
            mon.watch(net, name="net", every=1)
        runs[v] = (make_step(net, device, batch, mon), mon)
    for v in variants:  # warm-up
        time_steps(runs[v][0], device, max(5, steps // 5), 0)
    samples: dict[str, list[float]] = {v: [] for v in variants}
    counter = 10_000
    for _ in range(repeats):  # interleaved so drift hits every variant alike
        for v in variants:
            samples[v].append(time_steps(runs[v][0], device, steps, counter))
            counter += steps
    for _, mon in runs.values():
        if mon is not None:
            mon.close()
    return {v: statistics.median(s) for v, s in samples.items()}


# ---------------------------------------------------------------------------- CUDA sync check
def check_no_sync(device: torch.device, steps: int = 50) -> tuple[str, str]:
    """Run whole training steps under sync_debug_mode="error": without, then with the monitor."""
    results = []
    for with_monitor in (False, True):
        torch.manual_seed(0)
        net = convnet().to(device)
        mon = _monitor("bench-sync", flush_interval=3600.0) if with_monitor else None
        if mon is not None:
            mon.watch(net, name="net", every=1)
            mon.watch(net, name="net10")  # every 10: exercises the skip path too
        step = make_step(net, device, 64, mon)
        step(0)  # warm-up outside the check (cuDNN autotuning, allocator)
        _sync(device)
        outcome = "pass"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("error")
            try:
                for i in range(1, steps):
                    step(i)
            except RuntimeError as exc:
                outcome = f"FAIL: {str(exc).splitlines()[0][:120]}"
            finally:
                torch.cuda.set_sync_debug_mode(0)
        ours = [w for w in caught if issubclass(w.category, StethoscopeWarning)]
        if ours and outcome == "pass":
            outcome = f"FAIL: {str(ours[0].message)[:120]}"
        if mon is not None:
            mon.close()
        results.append(outcome)
    return results[0], results[1]


# ---------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and repeats")
    parser.add_argument("--cpu-only", action="store_true", help="skip CUDA even if available")
    args = parser.parse_args()
    logging.getLogger("stethoscope.collector").setLevel(logging.ERROR)
    calls, repeats, steps = (20_000, 3, 20) if args.quick else (50_000, 7, 150)

    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.cpu_only:
        devices.append(torch.device("cuda"))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"devices: {', '.join(str(d) for d in devices)}"
          + (f" ({torch.cuda.get_device_name()})" if len(devices) > 1 else ""))
    print()
    print("log() hot path, 4 values per call (median of repeats)")
    print(f"{'values':<28}{'us/call':>10}{'us/value':>10}{'sustained us/call':>20}")
    rows = [("python floats", "float", torch.device("cpu"))]
    for d in devices:
        rows.append((f"0-d tensors on {d.type}", "tensor", d))
    for label, kind, d in rows:
        us = bench_log(kind, d, calls, repeats, sustained=False)
        sus = bench_log(kind, d, calls, repeats, sustained=True)
        print(f"{label:<28}{us:>10.2f}{us / 4:>10.2f}{sus:>20.2f}")
    for d in devices:
        us = bench_item(d, calls // 10, repeats)
        print(f"{'(4x .item() on ' + d.type + ', avoided)':<28}{us:>10.2f}{us / 4:>10.2f}")
    print()
    print("watch() hook, host microseconds per optimizer step (median)")
    print(f"{'model':<22}{'device':<8}{'params':>8}{'every=1':>10}{'every=10':>10}")
    hook_us: dict[tuple[str, str], float] = {}
    for name, factory in (("MLP 784-512-512-10", mlp), ("ConvNet 2conv+2fc", convnet)):
        for d in devices:
            n = len(list(factory().parameters()))
            one = bench_hook(factory, d, 1, 2000)
            ten = bench_hook(factory, d, 10, 2000)
            hook_us[(name, d.type)] = one
            print(f"{name:<22}{d.type:<8}{n:>8}{one:>10.1f}{ten:>10.1f}")
    print()
    print("Training step with the monitor (Adam; median ms/step; overhead vs no monitor)")
    print(f"{'model':<22}{'device':<8}{'plain':>9}{'log()':>15}{'watch every=10':>22}"
          f"{'watch every=1':>22}")
    derived: list[str] = []
    for name, factory, batch in (("MLP 784-512-512-10", mlp, 128),
                                 ("ConvNet 2conv+2fc", convnet, 64)):
        for d in devices:
            r = bench_watch(factory, d, batch, steps, repeats)
            base = r["plain"]

            def fmt(v: float, base: float = base) -> str:
                return f"{v:.3f} ({(v / base - 1) * 100:+.1f}%)"

            print(f"{name:<22}{d.type:<8}{base:>9.3f}{fmt(r['log']):>15}"
                  f"{fmt(r['watch10']):>22}{fmt(r['watch1']):>22}")
            derived.append(f"  {name} on {d.type}: every=1 hook {hook_us[(name, d.type)]:.0f} us"
                           f" = {hook_us[(name, d.type)] / (base * 10):.2f}% of a {base:.2f} ms"
                           " step; every=10 about a tenth of that")
    print("Hook cost as a share of the plain step, from the direct hook timing (less noisy):")
    print("\n".join(derived))
    if len(devices) > 1:
        print()
        base, ours = check_no_sync(devices[1])
        print('CUDA sync check (set_sync_debug_mode("error") over whole steps between flushes)')
        print(f"  training step without monitor: {base}")
        print(f"  with log() + watch(every=1) + watch(every=10): {ours}")


if __name__ == "__main__":
    main()
