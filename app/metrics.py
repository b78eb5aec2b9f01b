"""Prometheus metrics at /metrics, for teams that already run Alertmanager and Grafana.

Each app owns its registry (no process-wide globals), so several apps can live in one process.
Counters track ingestion; alert and run gauges are read from the store at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .storage import AlertRecord, Store


class StoreCollector(Collector):
    """Firing alerts and alert episodes per run/kind/severity and each run's last step, read
    at scrape time."""

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
        episodes = GaugeMetricFamily(
            "stethoscope_alert_episodes",
            "Alert episodes stored (firing and resolved), by run, kind and severity: the "
            "persistent count of what ever fired.",
            labels=["run", "kind", "severity"],
        )
        if store is not None:
            for run in store.list_runs():
                if run.last_step is not None:
                    last_step.add_metric([run.name], run.last_step)
                counts: dict[tuple[str, str], int] = {}
                fired: dict[tuple[str, str], int] = {}
                for alert in store.list_alerts(run.name):
                    key = (alert.kind, alert.severity)
                    fired[key] = fired.get(key, 0) + alert.episodes
                    if alert.status == "firing":
                        counts[key] = counts.get(key, 0) + 1
                for (kind, severity), n in counts.items():
                    firing.add_metric([run.name, kind, severity], n)
                for (kind, severity), n in fired.items():
                    episodes.add_metric([run.name, kind, severity], n)
        yield firing
        yield last_step
        yield episodes


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
        self.alerts_fired = Counter(
            "stethoscope_alerts_fired",
            "Alert episodes fired (new or reopened alerts), by run, kind and severity; an "
            "alert that fired and resolved between two scrapes is counted too.",
            ["run", "kind", "severity"],
            registry=self.registry,
        )
        self.registry.register(StoreCollector(store))

    def count_alert_change(self, alert: AlertRecord) -> None:
        """Alert-manager listener: count every stored alert change."""
        self.alert_changes.labels(alert.kind, alert.status).inc()
        if alert.last_event in ("fired", "reopened"):
            self.alerts_fired.labels(alert.run, alert.kind, alert.severity).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The metrics page and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
