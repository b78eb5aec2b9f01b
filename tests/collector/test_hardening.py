"""The collector never raises into the loop, never loses unrelated data, never leaks its thread.

Inference-mode and exotic values, server size limits on embeddings (and a 413 that must only
drop the offending item), flush() wake-up ordering, the finalizer of a forgotten Monitor, and
the final status after StopTraining.
"""

from __future__ import annotations

import gc
import json
import numbers
import warnings
import weakref

import httpx
import numpy as np
import pytest

import stethoscope.collector.monitor as monitor_mod
from stethoscope.collector import Monitor, StethoscopeWarning, StopTraining, wire
from stethoscope.collector.wire import Batch, build_batches
from tests.collector.fakes import FakeServer, alert, wait_for


def _torch():
    return pytest.importorskip("torch")


# ---------------------------------------------------------------- 1. values that used to raise
def test_inference_mode_tensors_are_recorded(make_monitor, fake) -> None:
    torch = _torch()
    mon = make_monitor()
    with torch.inference_mode():
        v = torch.tensor([2.0]).mean()
        v1 = torch.tensor([3.0])  # one element, 1-D: reshaped in the hot path
    with warnings.catch_warnings():
        warnings.simplefilter("error", StethoscopeWarning)
        mon.log(1, val_loss=v, val_acc=v1)
        with torch.inference_mode():
            mon.log(2, val_loss=torch.tensor(4.0) * 2)
        mon.close()
    assert fake.series("val_loss") == ([1, 2], [2.0, 8.0])
    assert fake.series("val_acc") == ([1], [3.0])


class _FloatRaises(numbers.Real):
    """A numbers.Real whose conversion to float fails with an unexpected exception."""

    def __float__(self):
        raise RuntimeError("no float for you")

    def __getattr__(self, name):  # every other abstract method: irrelevant here
        raise AttributeError(name)


for _m in list(getattr(numbers.Real, "__abstractmethods__", ())):
    if _m != "__float__":
        setattr(_FloatRaises, _m, lambda self, *a: NotImplemented)
_FloatRaises.__abstractmethods__ = frozenset()


class _SizeRaises(np.ndarray):
    @property
    def size(self):
        raise MemoryError("size exploded")


def test_values_that_raise_are_dropped_one_by_one_with_a_warning(make_monitor, fake) -> None:
    mon = make_monitor()
    odd_array = np.ones(1).view(_SizeRaises)
    with pytest.warns(StethoscopeWarning) as rec:
        for step in range(3):
            mon.log(step, ok=1.0, weird=_FloatRaises(), odd=odd_array)
    mon.close()
    assert fake.series("ok") == ([0, 1, 2], [1.0, 1.0, 1.0])
    assert fake.series_names() == {"ok"}
    messages = [str(w.message) for w in rec]
    assert sum("'weird'" in m for m in messages) == 1, messages
    assert sum("'odd'" in m for m in messages) == 1, messages


def test_tensor_subclass_that_raises_is_dropped(make_monitor, fake) -> None:
    torch = _torch()

    class Exploding(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            raise RuntimeError("exploding tensor")

    bad = torch.Tensor._make_subclass(Exploding, torch.tensor(1.0))
    mon = make_monitor()
    with pytest.warns(StethoscopeWarning, match="'bad'"):
        mon.log(0, loss=torch.tensor(0.5), bad=bad)
        mon.log(1, loss=torch.tensor(0.25), bad=bad)
    mon.close()
    assert fake.series("loss") == ([0, 1], [0.5, 0.25])
    assert "bad" not in fake.series_names()


def test_tensor_that_fails_only_at_read_back_loses_only_itself(make_monitor, fake) -> None:
    torch = _torch()

    class NoCopy(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            if func in (torch.stack, torch.cat):
                raise RuntimeError("cannot be stacked")
            return super().__torch_function__(func, types, args, kwargs or {})

    bad = torch.Tensor._make_subclass(NoCopy, torch.tensor(7.0))
    mon = make_monitor(flush_interval=3600)
    mon.log(0, loss=torch.tensor(0.5), odd=bad)
    mon.log(1, loss=torch.tensor(0.25), plain=1.0)
    with pytest.warns(StethoscopeWarning, match="could not be read back"):
        mon.close()
    assert fake.series("loss") == ([0, 1], [0.5, 0.25])
    assert fake.series("plain") == ([1], [1.0])


def test_weird_step_and_embedding_objects_never_raise(make_monitor, fake) -> None:
    class BadInt(int):
        def __int__(self):
            raise RuntimeError("bad int")

        def __index__(self):
            raise RuntimeError("bad index")

    class Exploding:
        def __array__(self, *a, **k):
            raise RuntimeError("no array")

    mon = make_monitor()
    with pytest.warns(StethoscopeWarning):
        mon.log(BadInt(3), a=1.0)
        mon.log_embeddings(BadInt(3), fake=np.ones((2, 2)))
        mon.log_embeddings(1, fake=Exploding())
    mon.log(4, a=2.0)
    mon.close()
    assert fake.series("a")[1][-1] == 2.0


# ---------------------------------------------------------------- 2. server size limits
def test_limits_match_the_server_defaults() -> None:
    settings = pytest.importorskip("stethoscope.app.settings")
    fields = settings.Settings.model_fields
    assert fields["max_embedding_rows"].default == monitor_mod.MAX_EMBEDDING_ROWS
    assert fields["max_embedding_dim"].default == monitor_mod.MAX_EMBEDDING_DIM


def test_too_many_rows_are_subsampled_with_a_seeded_subset(make_monitor, fake) -> None:
    n = monitor_mod.MAX_EMBEDDING_ROWS + 3000
    data = np.arange(n, dtype=np.float64)[:, None] * np.ones((1, 2))
    mon = make_monitor()
    with pytest.warns(StethoscopeWarning, match="subset") as rec:
        mon.log_embeddings(5, fake=data, real=data[:100])
        mon.log_embeddings(6, fake=data)
    assert sum("subset" in str(w.message) for w in rec) == 1  # once
    mon.close()
    got = fake.embeddings()
    assert [(s, name, a.shape) for s, name, a in got] == [
        (5, "fake", (monitor_mod.MAX_EMBEDDING_ROWS, 2)),
        (5, "real", (100, 2)),
        (6, "fake", (monitor_mod.MAX_EMBEDDING_ROWS, 2)),
    ]
    rows = got[0][2][:, 0]
    assert np.all(np.diff(rows) > 0) and rows.min() >= 0 and rows.max() < n  # real rows, in order
    # seeded: a second monitor picks the same rows at the same step
    fake2 = FakeServer()
    with pytest.warns(StethoscopeWarning), Monitor(
        "r2", server="http://x.test", transport=fake2.transport, flush_interval=0.02
    ) as mon2:
        mon2.log_embeddings(5, fake=data)
    np.testing.assert_array_equal(fake2.embeddings()[0][2], got[0][2])


def test_torch_rows_are_subsampled_at_read_back(make_monitor, fake, monkeypatch) -> None:
    torch = _torch()
    monkeypatch.setattr(monitor_mod, "MAX_EMBEDDING_ROWS", 50)
    data = torch.arange(200, dtype=torch.float32)[:, None].repeat(1, 3).requires_grad_()
    mon = make_monitor()
    with pytest.warns(StethoscopeWarning, match="subset of 50 rows"):
        mon.log_embeddings(1, fake=data * 1)
    mon.close()
    (step, name, arr), = fake.embeddings()
    assert arr.shape == (50, 3) and np.all(np.diff(arr[:, 0]) > 0)
    np.testing.assert_array_equal(arr[:, 0], arr[:, 2])  # whole rows


def test_values_cap_lowers_the_row_cap(make_monitor, fake, monkeypatch) -> None:
    monkeypatch.setattr(monitor_mod, "_MAX_EMBEDDING_VALUES", 1000)
    mon = make_monitor()
    with pytest.warns(StethoscopeWarning, match="subset of 100 rows"):
        mon.log_embeddings(1, fake=np.ones((300, 10)))
    mon.close()
    assert [a.shape for _s, _n, a in fake.embeddings()] == [(100, 10)]


def test_too_wide_embeddings_are_dropped_with_a_clear_warning(make_monitor, fake) -> None:
    mon = make_monitor()
    wide = np.zeros((2, monitor_mod.MAX_EMBEDDING_DIM + 1), dtype=np.float32)
    with pytest.warns(StethoscopeWarning, match="at most 8192"):
        mon.log_embeddings(1, fake=wide)
    mon.log_embeddings(2, fake=np.ones((2, 3)))
    mon.close()
    assert [(s, a.shape) for s, _n, a in fake.embeddings()] == [(2, (2, 3))]


def _limit_rows(fake: FakeServer, max_rows: int, max_points: int = 10**9) -> None:
    """Make the fake answer 413 like the real server with lower limits."""

    def responder(method, body):
        if method != "POST":
            return None
        for i, e in enumerate(body.get("embeddings", [])):
            if e["shape"][0] > max_rows:
                return httpx.Response(413, json={"detail": f"embeddings[{i}] too large"})
        for name, s in body.get("scalars", {}).items():
            if len(s["steps"]) > max_points:
                return httpx.Response(413, json={"detail": f"series {name!r} too long"})
        return None

    fake.responder = responder


def test_a_413_drops_only_the_oversized_embedding(make_monitor, fake) -> None:
    _limit_rows(fake, max_rows=5)
    mon = make_monitor(flush_interval=3600)
    mon.log_embeddings(1, fake=np.ones((3, 2)))
    mon.log_embeddings(2, fake=np.ones((10, 2)))  # over this server's limit
    mon.log_embeddings(3, fake=np.ones((4, 2)), real=np.ones((2, 2)))
    mon.log(3, loss=1.0)
    assert mon.close() is True
    got = sorted((s, n, a.shape) for s, n, a in fake.embeddings())
    assert got == [(1, "fake", (3, 2)), (3, "fake", (4, 2)), (3, "real", (2, 2))]
    assert fake.series("loss") == ([3], [1.0])
    assert mon.stats["rejected_batches"] == 1


def test_a_413_on_a_long_series_splits_it_until_it_fits(make_monitor, fake) -> None:
    _limit_rows(fake, max_rows=10**9, max_points=40)
    mon = make_monitor(flush_interval=3600, max_batch_points=1000)
    for step in range(150):
        mon.log(step, a=float(step), b=-float(step))
    assert mon.close() is True
    assert fake.series("a") == (list(range(150)), [float(s) for s in range(150)])
    assert sorted(fake.series("b")[0]) == list(range(150))
    assert mon.stats["rejected_batches"] == 0


def test_split_batch_keeps_everything_and_ends_at_single_items() -> None:
    series = {"x": (np.arange(6), np.arange(6.0)), "y": (np.arange(2), np.array([np.nan, 1.0]))}
    embs = [(1, "fake", np.ones((2, 2), np.float32)), (1, "real", np.zeros((3, 2), np.float32))]
    (scal,) = build_batches(series, [])
    (emb,) = build_batches({}, embs)
    mixed = Batch("m" * 32, scal.fragment + "," + emb.fragment, scal.points, emb.embeddings)
    parts = wire.split_batch(mixed)
    assert [(p.points, p.embeddings) for p in parts] == [(8, 0), (0, 2)]
    assert [p.embeddings for p in wire.split_batch(parts[1])] == [1, 1]
    halves = wire.split_batch(parts[0])
    assert sorted(p.points for p in halves) == [2, 6]
    assert {next(iter(json.loads("{" + p.fragment + "}")["scalars"])) for p in halves} == {
        "x", "y"
    }
    x_only = next(p for p in halves if p.points == 6)
    assert [p.points for p in wire.split_batch(x_only)] == [3, 3]
    single = wire.split_batch(wire.split_batch(x_only)[0])[0]
    assert single.points == 1 and wire.split_batch(single) is None
    assert len({p.batch_id for p in parts + halves}) == len(parts + halves)


# ---------------------------------------------------------------- 3. flush() ordering
def test_flush_sets_the_flag_before_waking_the_sender(make_monitor, fake) -> None:
    mon = make_monitor(flush_interval=3600)
    seen = []
    real_wake = mon._sender.wake

    def spy():
        seen.append((mon._recorder._woken, mon._recorder._lock.locked()))
        real_wake()

    mon._sender.wake = spy
    mon.log(0, a=1.0)
    mon.flush()
    assert seen == [(True, True)]
    wait_for(lambda: fake.series("a") == ([0], [1.0]), what="flushed point")


# ---------------------------------------------------------------- 4. forgotten monitor
def test_dropping_an_unclosed_monitor_flushes_and_stops_its_thread(fake) -> None:
    torch = pytest.importorskip("torch")
    net = torch.nn.Linear(2, 1)
    seen = []
    mon = Monitor("gc", server="http://x.test", transport=fake.transport, flush_interval=3600,
                  on_alert=seen.append, close_timeout=5.0)
    handle = mon.watch(net, name="net", every=1, trigger="backward")
    thread = mon._sender._thread
    mon.log(0, loss=0.5)
    mon.log(1, loss=0.25)
    ref = weakref.ref(mon)
    del mon
    gc.collect()
    assert ref() is None, "the Monitor is still referenced (its thread or recorder holds it)"
    thread.join(10)
    assert not thread.is_alive()
    assert fake.series("loss") == ([0, 1], [0.5, 0.25])
    assert fake.puts()[-1] == {"status": "finished"}
    assert handle._handles == []  # hooks removed


def test_alerts_after_the_monitor_is_gone_are_ignored(fake) -> None:
    fake.alerts.append(alert(1))
    mon = Monitor("gc2", server="http://x.test", transport=fake.transport, flush_interval=0.01)
    sender = mon._sender
    callback = sender._on_alerts
    del mon
    gc.collect()
    callback([])  # a late call from the sender thread finds no Monitor: no error
    sender._thread.join(10)
    assert not sender._thread.is_alive()


# ---------------------------------------------------------------- 5. StopTraining status
def test_stop_training_out_of_a_with_block_finishes_the_run(make_monitor, fake) -> None:
    fake.alerts.append(alert(1, severity="critical"))
    with pytest.raises(StopTraining), make_monitor(stop_on="critical") as mon:
        mon.log(0, loss=1.0)
        wait_for(lambda: mon.should_stop, what="stop request")
        mon.log(1, loss=1.0)
    assert fake.puts()[-1] == {"status": "finished"}


def test_cuda_inference_tensor_and_row_subsample_never_synchronise(make_monitor, fake,
                                                                   monkeypatch) -> None:
    torch = _torch()
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    monkeypatch.setattr(monitor_mod, "MAX_EMBEDDING_ROWS", 50)
    dev = torch.device("cuda")
    mon = make_monitor(flush_interval=3600.0)
    emb = torch.arange(200.0, device=dev)[:, None].repeat(1, 3)
    with torch.inference_mode():
        v = torch.tensor([2.0], device=dev).mean()
    torch.cuda.synchronize()
    with pytest.warns(StethoscopeWarning, match="subset of 50 rows"):
        torch.cuda.set_sync_debug_mode("error")
        try:
            mon.log(0, val=v)
            mon.log_embeddings(0, fake=emb)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    mon.close()
    assert fake.series("val") == ([0], [2.0])
    (_s, _n, arr), = fake.embeddings()
    assert arr.shape == (50, 3) and np.all(np.diff(arr[:, 0]) > 0)
