"""The Stethoscope server: ingest and query API, detectors, alerting, dashboard."""

from .main import create_app
from .settings import Settings

__all__ = ["Settings", "create_app"]
