"""Prometheus metrics at /metrics, for teams that already run Alertmanager and Grafana.

Each app owns its registry (no process-wide globals), so several apps can live in one process.
Counters track ingestion; alert and run gauges are read from the store at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .storage import Store


class StoreCollector(Collector):
    """Firing alerts per run/kind/severity and each run's last step, read at scrape time."""

    def __init__(self, store: Callable[[], Store | None]) -> None:
        self._store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        store = self._store()
        firing = GaugeMetricFamily(
            "stethoscope_alerts_firing",
            "Alerts currently firing, by run, kind and severity.",
            labels=["run", "kind", "severity"],
        )
        last_step = GaugeMetricFamily(
            "stethoscope_run_last_step", "Last step received for each run.", labels=["run"]
        )
        if store is not None:
            for run in store.list_runs():
                if run.last_step is not None:
                    last_step.add_metric([run.name], run.last_step)
                counts: dict[tuple[str, str], int] = {}
                for alert in store.list_alerts(run.name, status="firing"):
                    key = (alert.kind, alert.severity)
                    counts[key] = counts.get(key, 0) + 1
                for (kind, severity), n in counts.items():
                    firing.add_metric([run.name, kind, severity], n)
        yield firing
        yield last_step


class ServerMetrics:
    """The server's counters, and their exposition in Prometheus' text format."""

    def __init__(self, store: Callable[[], Store | None]) -> None:
        self.registry = CollectorRegistry()
        self.batches = Counter(
            "stethoscope_ingested_batches",
            "Batches ingested, by outcome (stored or duplicate).",
            ["outcome"],
            registry=self.registry,
        )
        self.points = Counter(
            "stethoscope_ingested_points", "Scalar points stored.", registry=self.registry
        )
        self.alert_changes = Counter(
            "stethoscope_alert_changes",
            "Alert creations, updates and resolutions, by kind and status.",
            ["kind", "status"],
            registry=self.registry,
        )
        self.registry.register(StoreCollector(store))

    def exposition(self) -> tuple[bytes, str]:
        """The metrics page and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
