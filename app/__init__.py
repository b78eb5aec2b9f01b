"""The Stethoscope server: ingest and query API, detectors, alerting, dashboard.

``create_app`` and ``Settings`` are imported on first use, so that importing one small module
(``stethoscope.app.downsample``, say) does not load the whole server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .main import create_app
    from .settings import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .main import create_app

        return create_app
    if name == "Settings":
        from .settings import Settings

        return Settings
    raise AttributeError(f"module 'stethoscope.app' has no attribute {name!r}")
