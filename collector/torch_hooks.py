"""Per-parameter gradient L2 norms from torch hooks, computed on device in a few launches.

Imported lazily by ``Monitor.watch()``; importing this module imports torch.

When the norms are taken (``trigger=``):

- ``"optimizer"`` (default): just before an optimizer step that updates the module's parameters,
  so the norms are those of the final, accumulated gradients the optimizer uses. With
  ``optimizer=None`` a global optimizer step pre-hook is installed and filters by parameter
  identity, so any ``torch.optim.Optimizer`` works (several optimizers, GANs, schedulers).
- ``"backward"``: at the end of every backward pass that produced gradients for the module (for
  loops with hand-written updates and no ``torch.optim`` optimizer).

The norms of all parameters are computed with one ``torch._foreach_norm`` call and stacked into
one float32 tensor that stays on the device until the sender reads it back; the total norm is
computed from them at read-back time. Nothing is stored on the module; ``remove()`` removes
every hook.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from typing import Any

import torch
import torch.optim.optimizer as torch_optimizer

from .buffer import Recorder, Warn

__all__ = ["GradWatch"]

Schedule = int | Callable[[int], bool]


class GradWatch:
    """Hooks for one watched module. Use :meth:`remove` to detach them (idempotent)."""

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        name: str,
        every: Schedule,
        recorder: Recorder,
        warn: Warn,
        optimizer: torch.optim.Optimizer | None = None,
        trigger: str = "optimizer",
    ) -> None:
        params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if not params:
            raise ValueError(
                f"watch(): module {type(module).__name__} has no parameters that require "
                "gradients; nothing to watch"
            )
        self.name = name
        self.prefix = f"grad_norm/{name}"
        self._every = every
        self._recorder = recorder
        self._warn = warn
        self._key = id(self)
        self._names = tuple(n for n, _ in params)
        self._params = [p for _, p in params]
        self._param_ids = frozenset(id(p) for p in self._params)
        self._opt_cache: weakref.WeakKeyDictionary[Any, tuple[int, bool]] = (
            weakref.WeakKeyDictionary()
        )
        self._queued = False
        self._handles: list[Any] = []
        if trigger == "optimizer":
            if optimizer is not None:
                if not self._optimizer_has_params(optimizer):
                    raise ValueError(
                        f"watch(): the optimizer given for {name!r} updates none of the module's "
                        "parameters; pass the optimizer that steps this module"
                    )
                self._handles.append(optimizer.register_step_pre_hook(self._on_optimizer_step))
            else:
                self._handles.append(
                    torch_optimizer.register_optimizer_step_pre_hook(self._on_optimizer_step)
                )
        elif trigger == "backward":
            for p in self._params:
                self._handles.append(p.register_post_accumulate_grad_hook(self._on_accumulated))
        else:
            raise ValueError(f"watch(): trigger must be 'optimizer' or 'backward', got {trigger!r}")

    @property
    def series(self) -> list[str]:
        """The series names this watch produces."""
        return [f"{self.prefix}/{n}" for n in self._names] + [f"{self.prefix}/total"]

    @property
    def active(self) -> bool:
        return bool(self._handles)

    def remove(self) -> None:
        """Remove every hook this watch installed."""
        handles, self._handles = self._handles, []
        for h in handles:
            h.remove()

    # ------------------------------------------------------------------ hooks
    def _optimizer_has_params(self, optimizer: Any) -> bool:
        groups = optimizer.param_groups
        size = sum(len(g["params"]) for g in groups)
        try:
            cached = self._opt_cache.get(optimizer)
        except TypeError:
            cached = None
        if cached is not None and cached[0] == size:
            return cached[1]
        hit = any(id(p) in self._param_ids for g in groups for p in g["params"])
        with contextlib.suppress(TypeError):
            self._opt_cache[optimizer] = (size, hit)
        return hit

    def _on_optimizer_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        try:
            if self._handles and self._optimizer_has_params(optimizer):
                self._take()
        except Exception as exc:  # never raise into the user's optimizer step
            self._warn("hook:" + self.name, f"watch({self.name!r}): hook failed: {exc!r}")

    def _on_accumulated(self, param: torch.Tensor) -> None:
        try:
            if not self._queued:
                self._queued = True
                torch.autograd.Variable._execution_engine.queue_callback(self._on_backward_end)
        except Exception as exc:
            self._queued = False
            self._warn("hook:" + self.name, f"watch({self.name!r}): hook failed: {exc!r}")

    def _on_backward_end(self) -> None:
        self._queued = False
        try:
            if self._handles:
                self._take()
        except Exception as exc:
            self._warn("hook:" + self.name, f"watch({self.name!r}): hook failed: {exc!r}")

    def _due(self, step: int) -> bool:
        every = self._every
        if isinstance(every, int):
            return step % every == 0
        try:
            return bool(every(step))
        except Exception as exc:
            self._warn("every:" + self.name, f"watch({self.name!r}): every({step}) raised {exc!r}")
            return False

    def _take(self) -> None:
        step = self._recorder.trigger(self._key)
        if not self._due(step):
            return
        grads: list[torch.Tensor] = []
        names: list[str] = []
        for n, p in zip(self._names, self._params, strict=True):
            g = p.grad
            if g is not None and g.layout == torch.strided:
                grads.append(g)
                names.append(n)
        if not grads:
            return
        with torch.no_grad():
            norms = self._norms(grads)
            device = norms[0].device
            if any(n.device != device for n in norms):
                norms = [n.to(device, non_blocking=True) for n in norms]
            stacked = torch.stack(norms)
        key_names = self._names if len(names) == len(self._names) else tuple(names)
        self._recorder.add_grad(self._key, step, self.prefix, key_names, stacked)

    @staticmethod
    def _norms(grads: list[torch.Tensor]) -> list[torch.Tensor]:
        try:
            return list(torch._foreach_norm(grads, 2, dtype=torch.float32))
        except (RuntimeError, TypeError, AttributeError):
            return [torch.linalg.vector_norm(g, dtype=torch.float32) for g in grads]
