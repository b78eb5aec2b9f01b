"""Runs the detectors of every run on what is ingested, and keeps each run's health current.

One :class:`~stethoscope.detectors.DetectorSuite` per run, created on the run's first batch and
resumed from its saved state after a server restart. A detector that raises is reported in the
run's health view instead of failing the ingest: the data is already stored by then.
"""

from __future__ import annotations

import logging
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


class DetectorRuntime:
    """Feeds ingested batches to per-run detector suites and turns findings into alerts."""

    def __init__(
        self,
        store: Store,
        alerts: AlertManager,
        *,
        state_save_interval: float = 15.0,
        suite_factory: Callable[[], DetectorSuite] = DetectorSuite,
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
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._guard = threading.Lock()

    def _run_lock(self, run: str) -> threading.Lock:
        with self._guard:
            return self._locks[run]

    def _suite(self, run: str) -> DetectorSuite:
        suite = self._suites.get(run)
        if suite is None:
            suite = self._suite_factory()
            state = self.store.load_detector_state(run)
            if state:
                try:
                    suite.load_state_dict(state)
                except Exception as exc:  # a state from another version: start afresh
                    log.warning("run %s: detector state not resumed (%s); starting afresh", run, exc)
                    suite = self._suite_factory()
            self._suites[run] = suite
            self._saved_at[run] = self._clock()
        return suite

    def process(
        self, run: str, scalars: ScalarBatch, embeddings: Sequence[EmbeddingInput]
    ) -> list[AlertRecord]:
        """Run the detectors on one stored batch; returns the alerts it changed."""
        with self._run_lock(run):
            suite = self._suite(run)
            findings: list[Any] = []
            errors = self._errors[run]
            if scalars:
                findings += self._guarded(errors, "scalars", suite.update_scalars, dict(scalars))
            by_step: dict[int, dict[str, np.ndarray]] = defaultdict(dict)
            for emb in embeddings:
                by_step[int(emb.step)][emb.name] = emb.data
            for step in sorted(by_step):
                findings += self._guarded(
                    errors, "embeddings", suite.update_embeddings, step, by_step[step]
                )
            signals = suite.drain_signals()
            if signals:
                self.store.append_series(run, signals)
            changed = self.alerts.process(run, findings)
            self._update_health(run, suite)
            if self._clock() - self._saved_at[run] >= self.state_save_interval:
                self._save(run, suite)
        return changed

    @staticmethod
    def _guarded(
        errors: dict[str, str], where: str, fn: Callable[..., list[Any]], *args: Any
    ) -> list[Any]:
        try:
            out = list(fn(*args))
        except Exception as exc:
            log.exception("detectors failed on %s", where)
            errors[where] = f"{type(exc).__name__}: {exc}"
            return []
        errors.pop(where, None)
        return out

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
            detectors.append(
                {"name": f"runtime/{where}", "state": "error", "reason": message}
            )
        if counts.get("critical"):
            state = "critical"
        elif counts.get("warning"):
            state = "warning"
        elif any(d.get("state") in ("ok", "alarm") for d in detectors):
            state = "healthy"
        else:
            state = "unknown"
        return {"state": state, "firing": counts, "detectors": detectors}

    def _save(self, run: str, suite: DetectorSuite) -> None:
        try:
            self.store.save_detector_state(run, suite.state_dict())
        except Exception:
            log.exception("run %s: could not save detector state", run)
        self._saved_at[run] = self._clock()

    def save_all(self) -> None:
        """Save every run's detector state (at shutdown)."""
        for run, suite in list(self._suites.items()):
            with self._run_lock(run):
                self._save(run, suite)
