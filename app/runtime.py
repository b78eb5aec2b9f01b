"""Runs the detectors of every run on what is stored, exactly once, and keeps health current.

One :class:`~stethoscope.detectors.DetectorSuite` per run, built from the run's detector
configuration, created on the run's first batch and resumed from its saved state after a
restart. Scalar detectors run on the request path (microseconds per point), so a NaN alert is in
the very response to the batch that carried the NaN. Embedding evaluations (tens of
milliseconds each) run on a background worker, so a batch with embeddings is answered as soon
as it is stored; their alerts reach the collector on its next response.

Every stored batch has a sequence number within its run. The runtime feeds batches in that
order and keeps two cursors per run (scalars and embeddings consumed); the cursors are saved in
one transaction with the detector state, the derived signal points and the alert changes they
explain. After a crash (even ``kill -9`` between storing a batch and running its detectors) the
resumed detectors replay exactly the stored batches past their cursors: every stored point
reaches the detectors once, and no alert or signal point is written twice. A detector that
raises is reported in the run's health view instead of failing the ingest.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

import numpy as np

from stethoscope.detectors import DetectorSuite, SuiteConfig

from .alerting import AlertManager, firing_counts
from .storage import AlertChange, AlertRecord, DetectorCursors, EmbeddingInput, Store

log = logging.getLogger("stethoscope.runtime")

ScalarBatch = Mapping[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class _Job:
    """The embedding evaluations of one stored batch (one per logged step), done as one: a
    batch's evaluations are all in the saved state or none are."""

    run: str
    seq: int
    steps: tuple[tuple[int, dict[str, np.ndarray]], ...]
    generation: int


@dataclass
class _RunState:
    """The runtime's per-run bookkeeping (the run's lock guards it, but for ``inflight``, which
    the runtime's ``_guard`` does)."""

    suite: DetectorSuite
    scalars: int  # last batch whose scalars were fed
    enqueued: int  # last batch whose embeddings were queued (or evaluated inline)
    saved_at: float
    generation: int
    inflight: set[int] = field(default_factory=set)  # batches with a queued evaluation
    unsaved_changes: list[AlertChange] = field(default_factory=list)  # of a failed commit
    unsaved_signals: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


class DetectorRuntime:
    """Feeds stored batches to per-run detector suites and turns findings into alerts.

    Derived signal points (collapse metrics, the equilibrium distance) reach the store within
    ``signal_flush_interval`` seconds, with the state that produced them: saving the state is
    what costs, so a run ingesting many batches a second saves it at most that often.
    ``embedding_workers=0`` evaluates embeddings inline (deterministic, for offline replays);
    the server uses one background worker (more would reorder a run's evaluations).
    ``max_pending_evaluations`` bounds the worker's queue (in batches with embeddings): when it
    is full the oldest is skipped and the run's health says so.
    """

    def __init__(
        self,
        store: Store,
        alerts: AlertManager,
        *,
        state_save_interval: float = 15.0,
        signal_flush_interval: float = 2.0,
        embedding_workers: int = 1,
        max_pending_evaluations: int = 64,
        suite_factory: Callable[[Mapping[str, Any] | None], DetectorSuite] = DetectorSuite,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if embedding_workers not in (0, 1):
            raise ValueError("embedding_workers must be 0 (inline) or 1")
        self.store = store
        self.alerts = alerts
        self.state_save_interval = state_save_interval
        self.signal_flush_interval = signal_flush_interval
        self._suite_factory = suite_factory
        self._clock = clock
        self._runs: dict[str, _RunState] = {}
        self._generations: dict[str, int] = defaultdict(int)
        self._errors: dict[str, dict[str, str]] = defaultdict(dict)
        self._locks: dict[str, threading.RLock] = defaultdict(threading.RLock)
        self._guard = threading.Lock()
        self._closing = threading.Event()
        self._pending: dict[str, int] = defaultdict(int)
        self._skipped: dict[str, int] = defaultdict(int)
        self._jobs: queue.Queue[_Job | None] = queue.Queue(max_pending_evaluations)
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

    def _state(self, run: str) -> _RunState:
        """The run's suite and cursors, loaded from the store the first time (caller holds the
        run's lock). A saved state that cannot be resumed, or whose configuration is not the
        run's (a crash between storing a new configuration and resetting the detectors), makes
        the detectors start afresh, as a reconfiguration does."""
        rs = self._runs.get(run)
        if rs is not None:
            return rs
        config = self.store.get_run(run).detectors or None
        suite = self._suite_factory(config)
        state = self.store.load_detector_state(run)
        if state:
            try:
                suite.load_state_dict(state)
            except Exception as exc:  # a state from another version
                return self._fresh(run, f"their saved state could not be resumed ({exc})",
                                   skip_stored=False)
            if suite.config != SuiteConfig.from_mapping(config):
                return self._fresh(run, "the run's detector configuration changed",
                                   skip_stored=False)
        cursors = self.store.detector_cursors(run)
        rs = _RunState(suite, cursors.scalars, cursors.embeddings, self._clock(),
                       self._generations[run])
        self._runs[run] = rs
        return rs

    def _fresh(self, run: str, reason: str, skip_stored: bool = True) -> _RunState:
        """New detectors from the run's stored configuration; the firing alerts the old ones
        raised (which the new ones could never resolve) are resolved in the transaction that
        resets the state (caller holds the run's lock). ``skip_stored``: the history is not
        replayed (a reconfiguration); otherwise the stored batches the old detectors had not
        seen are replayed to the new ones."""
        log.warning("run %s: detectors start afresh: %s", run, reason)
        with self._guard:
            self._generations[run] += 1  # queued evaluations belong to the old detectors
            self._runs.pop(run, None)
        if skip_stored:
            seqs = self.store.batch_seqs(run, after=0)
            last = seqs[-1] if seqs else 0
            scalars = embeddings = last
        else:
            old = self.store.detector_cursors(run)
            scalars, embeddings = old.scalars, old.embeddings
        changes = self.alerts.resolve_changes(run, f"the run's detectors start afresh: {reason}")
        records = self.store.commit_detector_progress(
            run, state={}, cursors=DetectorCursors(scalars, embeddings), signals={},
            alert_changes=changes)
        self.alerts.applied(run, records)
        rs = _RunState(self._suite_factory(self.store.get_run(run).detectors or None), scalars,
                       embeddings, self._clock(), self._generations[run])
        self._runs[run] = rs
        return rs

    def reconfigure(self, run: str) -> list[AlertRecord]:
        """Rebuild the run's detectors from its stored configuration (history is not replayed),
        resolving the alerts the old ones fired."""
        with self._run_lock(run):
            before = {a.id for a in self.alerts.firing(run)}
            rs = self._fresh(run, "they were reconfigured")
            self._update_health(run, rs.suite)
            return [a for a in self.store.list_alerts(run) if a.id in before]

    # ------------------------------------------------------------------ ingestion
    def process(
        self,
        run: str,
        seq: int,
        scalars: ScalarBatch,
        embeddings: Sequence[EmbeddingInput],
    ) -> list[AlertRecord]:
        """Run the detectors on stored batch ``seq`` (and on any stored batch before it that
        they have not seen); returns the alerts changed so far."""
        with self._run_lock(run):
            rs = self._state(run)
            if seq <= rs.scalars:
                return []  # already replayed from the store
            changed = self._catch_up(run, rs, upto=seq - 1, conclude=False)
            changed += self._feed(run, rs, seq, scalars, embeddings)
        return changed

    def catch_up(self, run: str) -> list[AlertRecord]:
        """Replay every stored batch of ``run`` the detectors have not consumed yet."""
        with self._run_lock(run):
            return self._catch_up(run, self._state(run), upto=None, conclude=True)

    def recover(self) -> int:
        """Catch every run up with its stored batches (at start, after a crash); returns the
        number of runs that had batches to replay. Stops early when the runtime closes."""
        behind = 0
        for record in self.store.list_runs():
            if self._closing.is_set():
                break
            cursors = self.store.detector_cursors(record.name)
            if self.store.batch_seqs(record.name, after=min(cursors.scalars,
                                                            cursors.embeddings)):
                behind += 1
                try:
                    self.catch_up(record.name)
                except Exception:
                    log.exception("run %s: replay of stored batches failed", record.name)
        return behind

    def _catch_up(self, run: str, rs: _RunState, upto: int | None,
                  conclude: bool) -> list[AlertRecord]:
        seqs = self.store.batch_seqs(run, after=min(rs.scalars, rs.enqueued))
        todo = [s for s in seqs if upto is None or s <= upto]
        if not todo:
            return []
        log.info("run %s: replaying %d stored batches the detectors had not seen", run,
                 len(todo))
        findings: list[Any] = []
        for seq in todo:
            if self._closing.is_set():
                break
            batch = self.store.read_batch(run, seq)
            if seq > rs.scalars:
                findings += self._scalars(run, rs, seq, batch.scalars)
            if seq > rs.enqueued:  # evaluated here: a replay must not overflow the queue
                emb = [EmbeddingInput(e.step, e.name, e.data) for e in batch.embeddings]
                findings += self._embeddings(run, rs, seq, emb, inline=True)
        if conclude or findings:
            return self._conclude(run, rs, findings, force=True)
        return []

    def _scalars(self, run: str, rs: _RunState, seq: int, scalars: ScalarBatch) -> list[Any]:
        findings: list[Any] = []
        if scalars:
            findings = self._guarded(run, "scalars", rs.suite.update_scalars, dict(scalars)) or []
        rs.scalars = seq
        return findings

    def _embeddings(self, run: str, rs: _RunState, seq: int,
                    embeddings: Sequence[EmbeddingInput], inline: bool = False) -> list[Any]:
        """Queue (or evaluate here) the batch's embedding evaluations, one per logged step."""
        rs.enqueued = max(rs.enqueued, seq)
        by_step: dict[int, dict[str, np.ndarray]] = defaultdict(dict)
        for emb in embeddings:
            by_step[int(emb.step)][emb.name] = emb.data
        if not by_step:
            return []
        steps = tuple((step, by_step[step]) for step in sorted(by_step))
        if self._workers and not inline:
            with self._guard:
                rs.inflight.add(seq)
            self._enqueue(_Job(run, seq, steps, rs.generation))
            return []
        findings: list[Any] = []
        for step, arrays in steps:
            findings += self._guarded(run, "embeddings", rs.suite.update_embeddings, step,
                                      arrays) or []
        return findings

    def _feed(self, run: str, rs: _RunState, seq: int, scalars: ScalarBatch,
              embeddings: Sequence[EmbeddingInput]) -> list[AlertRecord]:
        findings = self._scalars(run, rs, seq, scalars)
        findings += self._embeddings(run, rs, seq, embeddings)
        return self._conclude(run, rs, findings)

    def _enqueue(self, job: _Job) -> None:
        with self._guard:
            self._pending[job.run] += 1
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
                    self._done(old, skipped=True)
                    log.warning("run %s: embedding evaluations of batch %d skipped (queue "
                                "full)", old.run, old.seq)
                self._jobs.task_done()

    def _done(self, job: _Job, skipped: bool = False) -> None:
        """A job left the queue: no longer pending, and no longer holding its run's embeddings
        cursor back. Only the runtime's guard is taken (never another run's lock: a request
        holding its own run's lock may be the one that skips this job)."""
        with self._guard:
            rs = self._runs.get(job.run)
            if rs is not None and rs.generation == job.generation:
                rs.inflight.discard(job.seq)
            self._pending[job.run] -= 1
            if skipped:
                self._skipped[job.run] += 1

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                try:
                    self._evaluate(job)
                except Exception:
                    log.exception("run %s: embedding evaluations of batch %d failed", job.run,
                                  job.seq)
                finally:  # after its signals and alerts are stored: pending 0 means all visible
                    self._done(job)
            finally:
                self._jobs.task_done()

    def _evaluate(self, job: _Job) -> list[AlertRecord]:
        with self._run_lock(job.run):
            rs = self._state(job.run)
            if rs.generation != job.generation:
                return []  # queued for detectors that were replaced since
        # the expensive part (tens of milliseconds per step) outside the run's lock, so the
        # run's next batches are not held up by it
        measured = [self._guarded(job.run, "embeddings", rs.suite.measure_embeddings, step,
                                  arrays) for step, arrays in job.steps]
        with self._run_lock(job.run):
            if self._runs.get(job.run) is not rs or rs.generation != job.generation:
                return []
            findings: list[Any] = []
            for (step, arrays), m in zip(job.steps, measured, strict=True):
                if m is not None:
                    findings += self._guarded(job.run, "embeddings", rs.suite.update_embeddings,
                                              step, arrays, m) or []
            with self._guard:  # the state now includes this batch's evaluations
                rs.inflight.discard(job.seq)
                last = self._pending.get(job.run, 0) <= 1
            # the run's last queued evaluation: store its signals now, so that "no pending
            # evaluation" means every result is visible
            return self._conclude(job.run, rs, findings, force=last)

    def _conclude(self, run: str, rs: _RunState, findings: list[Any],
                  force: bool = False) -> list[AlertRecord]:
        """Plan the alert changes; store them with the derived signal points, the state and
        the cursors, in one transaction, when there are alert changes, when signal points have
        waited ``signal_flush_interval`` seconds, or every ``state_save_interval`` seconds."""
        changes: list[AlertChange] = self.alerts.plan(run, findings)
        since = self._clock() - rs.saved_at
        due = since >= self.state_save_interval or (
            rs.suite.has_signals and since >= self.signal_flush_interval)
        if not (changes or rs.unsaved_changes or due or force):
            self._update_health(run, rs.suite)
            return []
        records = self._commit(run, rs, changes)
        self._update_health(run, rs.suite)
        return records

    def _commit(self, run: str, rs: _RunState, changes: list[AlertChange]) -> list[AlertRecord]:
        """Store the state with its cursors, signals and alert changes; what a failed commit
        could not store is kept and stored by the next one (the state has moved on)."""
        signals = rs.suite.drain_signals()  # first: the saved state must not hold them too
        for name, (steps, values) in rs.unsaved_signals.items():
            new = signals.get(name, (np.empty(0, np.int64), np.empty(0)))
            signals[name] = (np.concatenate([steps, new[0]]), np.concatenate([values, new[1]]))
        changes = rs.unsaved_changes + changes
        with self._guard:
            waiting = min(rs.inflight) - 1 if rs.inflight else rs.scalars
        cursors = DetectorCursors(rs.scalars, max(0, waiting))
        try:
            records = self.store.commit_detector_progress(
                run, state=rs.suite.state_dict(), cursors=cursors, signals=signals,
                alert_changes=changes)
        except Exception:
            log.exception("run %s: could not store the detectors' progress; retrying with the "
                          "next batch", run)
            rs.unsaved_changes, rs.unsaved_signals = changes, signals
            return []
        rs.unsaved_changes, rs.unsaved_signals = [], {}
        rs.saved_at = self._clock()
        return self.alerts.applied(run, records)

    def _guarded(self, run: str, where: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, or None when it raised (logged, and shown in the run's health)."""
        errors = self._errors[run]
        try:
            out = fn(*args)
        except Exception as exc:
            log.exception("run %s: detectors failed on %s", run, where)
            errors[where] = f"{type(exc).__name__}: {exc}"
            return None
        errors.pop(where, None)
        return list(out) if isinstance(out, list | tuple) else out

    def pending(self, run: str) -> int:
        """Batches of ``run`` whose embedding evaluations are queued or running right now."""
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
        if suite is None and run in self._runs:
            suite = self._runs[run].suite
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
    def close(self) -> None:
        """Stop replays, finish queued evaluations, stop the workers and save every run's
        detector state."""
        self._closing.set()
        self.wait_idle()
        for _ in self._workers:
            self._jobs.put(None)
        for worker in self._workers:
            worker.join(timeout=30)
        for run, rs in list(self._runs.items()):
            with self._run_lock(run):
                self._commit(run, rs, [])
