"""Stethoscope collector: record a training run from inside the training process.

Quick start::

    from stethoscope.collector import Monitor
    mon = Monitor(run="dcgan-lr2e-4", server="http://127.0.0.1:8765", config=vars(args),
                  on_alert=print)
    mon.watch(netG, name="G"); mon.watch(netD, name="D")
    for step, (x, _) in enumerate(loader):
        ...
        mon.log(step, loss_D=errD, loss_G=errG)
    mon.close()

Importing this package does not import torch.
"""

from __future__ import annotations

from .alerts import Alert, Remedy
from .errors import StethoscopeWarning, StopTraining
from .monitor import DEFAULT_WATCH_EVERY, Monitor

__all__ = [
    "DEFAULT_WATCH_EVERY",
    "Alert",
    "Monitor",
    "Remedy",
    "StethoscopeWarning",
    "StopTraining",
]
