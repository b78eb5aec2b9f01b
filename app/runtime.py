"""Runs the detectors of every run on what is ingested, and keeps each run's health current.

One :class:`~stethoscope.detectors.DetectorSuite` per run, built from the run's detector
configuration, created on the run's first batch and resumed from its saved state after a
restart. Scalar detectors run on the request path (microseconds per point), so a NaN alert is in
the very response to the batch that carried the NaN. Embedding evaluations (tens of
milliseconds each) run on a background worker, so a batch with embeddings is answered as soon
as it is stored; their alerts reach the collector on its next response. A detector that raises
is reported in the run's health view instead of failing the ingest: the data is stored by then.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

import numpy as np

from stethoscope.detectors import DetectorSuite

from .alerting import AlertManager, firing_counts
from .storage import AlertRecord, EmbeddingInput, Store

log = logging.getLogger("stethoscope.runtime")

ScalarBatch = Mapping[str, tuple[np.ndarray, np.ndarray]]
EmbeddingJob = tuple[str, int, dict[str, np.ndarray]]


class DetectorRuntime:
    """Feeds ingested batches to per-run detector suites and turns findings into alerts.

    ``embedding_workers=0`` evaluates embeddings inline (deterministic, for offline replays);
    the server uses one background worker. ``max_pending_evaluations`` bounds the worker's
    queue: when it is full the oldest evaluation is skipped and the run's health says so.
    """

    def __init__(
        self,
        store: Store,
        alerts: AlertManager,
        *,
        state_save_interval: float = 15.0,
        embedding_workers: int = 1,
        max_pending_evaluations: int = 64,
        suite_factory: Callable[[Mapping[str, Any] | None], DetectorSuite] = DetectorSuite,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.alerts = alerts
        self.state_save_interval = state_save_interval
        self._suite_factory = suite_factory
        self._clock = clock
        self._suites: dict[str, DetectorSuite] = {}
        self._saved_at: dict[str, float] = {}
        self._errors: dict[str, dict[str, str]] = defaultdict(dict)
        self._locks: dict[str, threading.RLock] = defaultdict(threading.RLock)
        self._guard = threading.Lock()
        self._pending: dict[str, int] = defaultdict(int)
        self._skipped: dict[str, int] = defaultdict(int)
        self._jobs: queue.Queue[EmbeddingJob | None] = queue.Queue(max_pending_evaluations)
        self._workers = [
            threading.Thread(target=self._work, name=f"stethoscope-embeddings-{i}", daemon=True)
            for i in range(embedding_workers)
        ]
        for worker in self._workers:
            worker.start()

    # ------------------------------------------------------------------ suites
    def _run_lock(self, run: str) -> threading.RLock:
        with self._guard:
            return self._locks[run]

    def _suite(self, run: str) -> DetectorSuite:
        suite = self._suites.get(run)
        if suite is None:
            config = self.store.get_run(run).detectors
            suite = self._suite_factory(config or None)
            state = self.store.load_detector_state(run)
            if state:
                try:
                    suite.load_state_dict(state)
                except Exception as exc:  # a state from another version: start afresh
                    log.warning("run %s: detector state not resumed (%s); starting afresh", run, exc)
                    suite = self._suite_factory(config or None)
            self._suites[run] = suite
            self._saved_at[run] = self._clock()
        return suite

    def reconfigure(self, run: str) -> list[AlertRecord]:
        """Rebuild the run's detectors from its stored configuration (history is not replayed).

        The new detectors never fired, so they could never resolve the run's firing alerts:
        those are resolved here, saying why.
        """
        with self._run_lock(run):
            self._suites.pop(run, None)
            self.store.save_detector_state(run, {})
            suite = self._suite(run)
            changed = self.alerts.resolve_all(
                run, "the run's detectors were reconfigured; they start afresh"
            )
            self._update_health(run, suite)
            return changed

    # ------------------------------------------------------------------ ingestion
    def process(
        self, run: str, scalars: ScalarBatch, embeddings: Sequence[EmbeddingInput]
    ) -> list[AlertRecord]:
        """Run the detectors on one stored batch; returns the alerts changed so far."""
        changed: list[AlertRecord] = []
        with self._run_lock(run):
            suite = self._suite(run)
            if scalars:
                findings = self._guarded(run, "scalars", suite.update_scalars, dict(scalars))
                changed = self._conclude(run, suite, findings)
        by_step: dict[int, dict[str, np.ndarray]] = defaultdict(dict)
        for emb in embeddings:
            by_step[int(emb.step)][emb.name] = emb.data
        for step in sorted(by_step):
            if self._workers:
                self._enqueue((run, step, by_step[step]))
            else:
                changed += self._evaluate(run, step, by_step[step])
        return changed

    def _enqueue(self, job: EmbeddingJob) -> None:
        with self._guard:
            self._pending[job[0]] += 1
        while True:
            try:
                self._jobs.put_nowait(job)
                return
            except queue.Full:
                try:
                    old = self._jobs.get_nowait()
                except queue.Empty:
                    continue
                if old is not None:
                    with self._guard:
                        self._pending[old[0]] -= 1
                        self._skipped[old[0]] += 1
                    log.warning("run %s: embedding evaluation at step %d skipped (queue full)",
                                old[0], old[1])
                self._jobs.task_done()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                run, step, arrays = job
                try:
                    self._evaluate(run, step, arrays)
                except Exception:
                    log.exception("run %s: embedding evaluation at step %d failed", run, step)
                finally:  # after its signals and alerts are stored: pending 0 means all visible
                    with self._guard:
                        self._pending[run] -= 1
            finally:
                self._jobs.task_done()

    def _evaluate(self, run: str, step: int, arrays: dict[str, np.ndarray]) -> list[AlertRecord]:
        with self._run_lock(run):
            suite = self._suite(run)
            findings = self._guarded(run, "embeddings", suite.update_embeddings, step, arrays)
            return self._conclude(run, suite, findings)

    def _conclude(self, run: str, suite: DetectorSuite, findings: list[Any]) -> list[AlertRecord]:
        signals = suite.drain_signals()
        if signals:
            self.store.append_series(run, signals)
        changed = self.alerts.process(run, findings)
        self._update_health(run, suite)
        # an alert change is saved with the state that explains it, so that after a crash the
        # resumed detectors can still resolve what they fired
        if changed or self._clock() - self._saved_at[run] >= self.state_save_interval:
            self._save(run, suite)
        return changed

    def _guarded(self, run: str, where: str, fn: Callable[..., list[Any]], *args: Any) -> list[Any]:
        errors = self._errors[run]
        try:
            out = list(fn(*args))
        except Exception as exc:
            log.exception("run %s: detectors failed on %s", run, where)
            errors[where] = f"{type(exc).__name__}: {exc}"
            return []
        errors.pop(where, None)
        return out

    def pending(self, run: str) -> int:
        """Embedding evaluations of ``run`` queued or running right now."""
        with self._guard:
            return self._pending.get(run, 0)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until every queued embedding evaluation is done (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._guard:
                if not any(self._pending.values()):
                    return True
            time.sleep(0.01)
        return False

    # ------------------------------------------------------------------ health
    def _update_health(self, run: str, suite: DetectorSuite) -> None:
        self.store.set_health(run, self.health(run, suite))

    def health(self, run: str, suite: DetectorSuite | None = None) -> dict[str, Any]:
        """The run's health summary: overall state, firing counts, each detector's status."""
        suite = suite or self._suites.get(run)
        counts = firing_counts(self.alerts.firing(run))
        detectors: list[dict[str, Any]] = []
        if suite is not None:
            for status in suite.health():
                detectors.append(asdict(status) if is_dataclass(status) else dict(status))
        for where, message in self._errors.get(run, {}).items():
            detectors.append({"name": f"runtime/{where}", "state": "error", "reason": message})
        with self._guard:
            pending, skipped = self._pending.get(run, 0), self._skipped.get(run, 0)
        if skipped:
            detectors.append({
                "name": "runtime/embeddings",
                "state": "waiting",
                "reason": f"{skipped} embedding evaluations skipped because the server fell "
                "behind; log embeddings less often",
            })
        if counts.get("critical"):
            state = "critical"
        elif counts.get("warning"):
            state = "warning"
        elif any(d.get("state") in ("ok", "alarm") for d in detectors):
            state = "healthy"
        else:
            state = "unknown"
        # the stored count can lag; the API reports the live one (DetectorRuntime.pending)
        return {
            "state": state,
            "firing": counts,
            "detectors": detectors,
            "pending_evaluations": pending,
        }

    # ------------------------------------------------------------------ state
    def _save(self, run: str, suite: DetectorSuite) -> None:
        try:
            self.store.save_detector_state(run, suite.state_dict())
        except Exception:
            log.exception("run %s: could not save detector state", run)
        self._saved_at[run] = self._clock()

    def close(self) -> None:
        """Finish queued evaluations, stop the workers and save every run's detector state."""
        self.wait_idle()
        for _ in self._workers:
            self._jobs.put(None)
        for worker in self._workers:
            worker.join(timeout=30)
        for run, suite in list(self._suites.items()):
            with self._run_lock(run):
                self._save(run, suite)
