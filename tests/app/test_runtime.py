"""Detector runtime: suites per run, worker for embeddings, failures shown in health."""

from __future__ import annotations

import numpy as np
import pytest

from stethoscope.app.alerting import AlertManager
from stethoscope.app.runtime import DetectorRuntime
from stethoscope.app.storage import EmbeddingInput, SQLiteStore
from stethoscope.detectors import DetectorSuite


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "rt.db")
    yield s
    s.close()


_batch_ids = iter(range(10**9))


def feed(runtime: DetectorRuntime, run: str, scalars, embeddings=()) -> list:
    """Store one batch as the ingest route does, then run the detectors on it."""
    seq = runtime.store.ingest_batch(run, f"b{next(_batch_ids)}", scalars, list(embeddings))
    return runtime.process(run, seq, scalars, list(embeddings))


def _ring(rng: np.random.Generator, n: int, modes: int = 8) -> np.ndarray:
    angles = 2 * np.pi * rng.integers(0, modes, n) / 8
    return 2 * np.stack([np.cos(angles), np.sin(angles)], 1) + 0.02 * rng.standard_normal((n, 2))


def test_nan_alert_comes_back_from_the_same_call(store: SQLiteStore) -> None:
    runtime = DetectorRuntime(store, AlertManager(store), embedding_workers=0)
    store.upsert_run("r")
    changed = feed(runtime, "r", {"loss": (np.arange(3), np.array([1.0, 0.9, np.nan]))})
    assert [(a.key, a.step, a.severity) for a in changed] == [("divergence/nonfinite", 2, "critical")]
    assert store.get_run("r").health["state"] == "critical"


def test_worker_and_inline_evaluations_agree(store: SQLiteStore) -> None:
    rng = np.random.default_rng(0)
    batches = []
    for step in range(0, 800, 100):
        fake = _ring(rng, 256, modes=8 if step < 400 else 1)
        batches.append([EmbeddingInput(step, "fake", fake), EmbeddingInput(step, "real", _ring(rng, 256))])
    results = {}
    for workers in (0, 1):
        run = f"w{workers}"
        store.upsert_run(run)
        runtime = DetectorRuntime(store, AlertManager(store), embedding_workers=workers)
        for batch in batches:
            feed(runtime, run, {}, batch)
        assert runtime.wait_idle() and runtime.pending(run) == 0
        runtime.close()
        coverage = store.read_series(run, "stethoscope/collapse/coverage")
        results[workers] = (coverage.steps.tolist(), coverage.values.tolist(),
                            [(a.key, a.first_step) for a in store.list_alerts(run)])
    assert results[0] == results[1]
    assert results[0][2] and results[0][2][0][0] == "mode_collapse"


def test_full_queue_skips_oldest_evaluation_and_says_so(store: SQLiteStore) -> None:
    import threading

    release = threading.Event()

    class SlowSuite(DetectorSuite):
        def measure_embeddings(self, step, embeddings):
            release.wait(10)
            return super().measure_embeddings(step, embeddings)

    store.upsert_run("r")
    runtime = DetectorRuntime(store, AlertManager(store), max_pending_evaluations=2, suite_factory=SlowSuite)
    rng = np.random.default_rng(1)
    for step in range(6):
        feed(runtime, "r", {}, [EmbeddingInput(step, "fake", _ring(rng, 64))])
    release.set()
    assert runtime.wait_idle()
    runtime.close()
    rows = {d["name"]: d for d in runtime.health("r")["detectors"]}
    assert "skipped" in rows["runtime/embeddings"]["reason"]
    evaluated = store.read_series("r", "stethoscope/collapse/vendi").steps.tolist()
    assert 0 < len(evaluated) < 6 and evaluated[-1] == 5  # the newest is always kept


def test_a_failing_detector_is_reported_not_raised(store: SQLiteStore) -> None:
    class BrokenSuite(DetectorSuite):
        def update_scalars(self, series):
            raise RuntimeError("boom")

    store.upsert_run("r")
    runtime = DetectorRuntime(store, AlertManager(store), embedding_workers=0, suite_factory=BrokenSuite)
    assert feed(runtime, "r", {"loss": (np.arange(2), np.ones(2))}) == []
    rows = {d["name"]: d for d in store.get_run("r").health["detectors"]}
    assert rows["runtime/scalars"]["state"] == "error" and "boom" in rows["runtime/scalars"]["reason"]


def test_state_resumes_after_restart(store: SQLiteStore) -> None:
    store.upsert_run("r")
    steady = 1.0 + 0.01 * np.random.default_rng(2).standard_normal(100)
    first = DetectorRuntime(store, AlertManager(store), embedding_workers=0)
    feed(first, "r", {"loss": (np.arange(100), steady)})
    first.close()  # saves the detectors' state
    # a fresh suite would still be warming up; the resumed one knows the history and sees a spike
    second = DetectorRuntime(store, AlertManager(store), embedding_workers=0)
    changed = feed(second, "r", {"loss": (np.array([100]), np.array([50.0]))})
    assert [a.key for a in changed] == ["divergence/spike:loss"]


def _checked(store: SQLiteStore, run: str) -> int:
    """Values the run's NaN detector has checked (its health row says), i.e. points seen."""
    [row] = [d for d in store.get_run(run).health["detectors"] if d["name"] == "nonfinite"]
    return int(row["reason"].split()[0]) if row["state"] == "ok" else -1


def test_batches_stored_before_a_crash_are_replayed_once_on_start(store: SQLiteStore) -> None:
    store.upsert_run("r")
    steady = 1.0 + 0.01 * np.random.default_rng(3).standard_normal(300)
    first = DetectorRuntime(store, AlertManager(store), embedding_workers=0,
                            state_save_interval=1e9)
    for lo in range(0, 200, 25):  # processed, but never saved: no alert, no signal, no interval
        feed(first, "r", {"loss": (np.arange(lo, lo + 25), steady[lo:lo + 25])})
    assert store.detector_cursors("r").scalars == 0
    # the process dies here (nothing closed); two more batches were stored, never processed
    store.ingest_batch("r", "late-1", {"loss": (np.arange(200, 250), steady[200:250])}, [])
    values = steady[250:300].copy()
    values[10] = np.nan
    store.ingest_batch("r", "late-2", {"loss": (np.arange(250, 300), values)}, [])
    second = DetectorRuntime(store, AlertManager(store), embedding_workers=0)
    assert second.recover() == 1
    [alert] = store.list_alerts("r")
    assert (alert.key, alert.first_step) == ("divergence/nonfinite", 260)
    assert store.detector_cursors("r").scalars == 10
    assert _checked(store, "r") == -1  # firing: the row says so instead of a count
    second.close()
    third = DetectorRuntime(store, AlertManager(store), embedding_workers=0)
    assert third.recover() == 0  # nothing left to replay
    assert [a.id for a in store.list_alerts("r")] == [alert.id]


def test_replay_neither_skips_nor_repeats_points_or_signals(store: SQLiteStore) -> None:
    store.upsert_run("r")
    rng = np.random.default_rng(4)
    d_x = 0.5 + 0.05 * rng.standard_normal(1000)
    series = lambda lo, hi: {"loss_D": (np.arange(lo, hi), 1.38 + 0.01 * rng.standard_normal(hi - lo)),  # noqa: E731
                             "D_x": (np.arange(lo, hi), d_x[lo:hi])}
    first = DetectorRuntime(store, AlertManager(store), embedding_workers=0,
                            state_save_interval=1e9, signal_flush_interval=0.0)
    for lo in range(0, 600, 50):
        feed(first, "r", series(lo, lo + 50))
    saved = store.detector_cursors("r").scalars  # the balance signal is saved with the state
    assert 0 < saved <= 12
    for lo in range(600, 1000, 50):  # stored after the crash of `first`
        store.ingest_batch("r", f"after-{lo}", series(lo, lo + 50), [])
    second = DetectorRuntime(store, AlertManager(store), embedding_workers=0)
    second.recover()
    second.close()
    assert _checked(store, "r") == 2000  # every stored value of both series, once
    signal = store.read_series("r", "stethoscope/gan/equilibrium_distance").steps
    assert signal.tolist() == list(range(99, 1000, 100))  # one point per window, none twice


def test_a_failed_commit_keeps_its_alerts_and_signals_for_the_next_one(store: SQLiteStore) -> None:
    store.upsert_run("r")
    runtime = DetectorRuntime(store, AlertManager(store), embedding_workers=0)
    good = store.commit_detector_progress

    def disk_full(*args, **kwargs):
        raise OSError("database or disk is full")

    store.commit_detector_progress = disk_full
    feed(runtime, "r", {"loss": (np.arange(3), np.array([1.0, 0.9, np.nan]))})
    assert store.list_alerts("r") == []  # nothing could be written
    store.commit_detector_progress = good
    feed(runtime, "r", {"loss": (np.arange(3, 6), np.array([0.9, 0.8, 0.7]))})
    [alert] = store.list_alerts("r")
    assert (alert.key, alert.first_step) == ("divergence/nonfinite", 2)
    assert store.detector_cursors("r").scalars == 2


def test_detectors_whose_saved_configuration_is_stale_start_afresh(store: SQLiteStore) -> None:
    """A crash between storing a new configuration and resetting the detectors: on restart
    the new configuration wins and the old detectors' alerts are resolved."""
    store.upsert_run("r")
    first = DetectorRuntime(store, AlertManager(store), embedding_workers=0)
    feed(first, "r", {"loss": (np.arange(3), np.array([1.0, 0.9, np.nan]))})
    store.upsert_run("r", detectors={"enabled": {"nonfinite": False}})  # then the process dies
    second = DetectorRuntime(store, AlertManager(store), embedding_workers=0)
    feed(second, "r", {"loss": (np.arange(3, 6), np.array([np.nan, 1.0, 1.0]))})
    [alert] = store.list_alerts("r")
    assert alert.status == "resolved" and "configuration changed" in alert.resolved_message
    rows = {d["name"]: d for d in store.get_run("r").health["detectors"]}
    assert rows["nonfinite"]["state"] == "unavailable"


def test_a_full_queue_never_takes_another_runs_lock(store: SQLiteStore) -> None:
    """Skipping the oldest job of another run must not wait for that run's lock: two requests,
    each holding its own run's lock, would otherwise wait for each other forever."""
    import threading

    release = threading.Event()

    class SlowSuite(DetectorSuite):
        def measure_embeddings(self, step, embeddings):
            release.wait(10)
            return super().measure_embeddings(step, embeddings)

    for run in ("x", "y", "z"):
        store.upsert_run(run)
    runtime = DetectorRuntime(store, AlertManager(store), max_pending_evaluations=1,
                              suite_factory=SlowSuite)
    rng = np.random.default_rng(2)
    feed(runtime, "z", {}, [EmbeddingInput(0, "fake", _ring(rng, 64))])  # occupies the worker
    feed(runtime, "y", {}, [EmbeddingInput(0, "fake", _ring(rng, 64))])  # fills the queue
    done = threading.Event()

    def x_while_y_is_locked() -> None:
        feed(runtime, "x", {}, [EmbeddingInput(0, "fake", _ring(rng, 64))])  # skips y's job
        done.set()

    with runtime._run_lock("y"):  # a request of run y in progress
        thread = threading.Thread(target=x_while_y_is_locked, daemon=True)
        thread.start()
        assert done.wait(5), "a request of run x waited for run y's lock"
    release.set()
    assert runtime.wait_idle()
    runtime.close()
    assert "skipped" in {d["name"]: d for d in runtime.health("y")["detectors"]}[
        "runtime/embeddings"]["reason"]


def test_a_batch_with_several_embedding_steps_is_evaluated_as_one(store: SQLiteStore) -> None:
    """Its evaluations are all in a saved state or none are: a replay after a crash never
    evaluates half of a batch twice."""
    store.upsert_run("r")
    runtime = DetectorRuntime(store, AlertManager(store), signal_flush_interval=0.0)
    rng = np.random.default_rng(3)
    emb = [EmbeddingInput(s, n, _ring(rng, 128)) for s in (10, 20) for n in ("fake", "real")]
    feed(runtime, "r", {}, emb)
    assert runtime.wait_idle()
    runtime.close()
    assert store.read_series("r", "stethoscope/collapse/coverage").steps.tolist() == [10, 20]
    assert store.detector_cursors("r").embeddings == 1
    again = DetectorRuntime(store, AlertManager(store))
    assert again.recover() == 0
    again.close()
    assert store.read_series("r", "stethoscope/collapse/coverage").steps.tolist() == [10, 20]
