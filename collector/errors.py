"""Exceptions and warnings of the collector.

Exception hierarchy::

    Exception
     └── StopTraining        raised by Monitor.log() after an opted-in stop alert (stop_on=...)
    UserWarning
     └── StethoscopeWarning  misuse found in the training loop (bad value, bad shape, ...);
                             the offending data is dropped and the loop goes on

Nothing else is ever raised into the training loop: construction (``Monitor(...)`` and
``Monitor.watch(...)``) is the only place that raises ``ValueError`` / ``TypeError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .alerts import Alert

__all__ = ["StethoscopeWarning", "StopTraining"]


class StethoscopeWarning(UserWarning):
    """Something given to the monitor was dropped; the message says what and how to fix it."""


class StopTraining(Exception):  # noqa: N818 - the name says what the caller should do
    """Raised by ``Monitor.log()`` once, after an alert at or above ``stop_on`` arrived.

    ``alert`` is the :class:`~stethoscope.collector.Alert` that asked for the stop. Catch it
    around the training loop to save a checkpoint and exit cleanly::

        try:
            for step, batch in enumerate(loader):
                ...
                mon.log(step, loss=loss)
        except StopTraining as stop:
            print("stopped:", stop.alert.message)
    """

    def __init__(self, alert: Alert) -> None:
        super().__init__(
            f"Stethoscope stop requested by a {alert.severity} {alert.kind} alert at step "
            f"{alert.step}: {alert.message}"
        )
        self.alert = alert
