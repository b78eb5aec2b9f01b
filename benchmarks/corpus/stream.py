"""Recorded training streams: the in-memory recorder and the on-disk format.

A recorded run is what the collector would have streamed to the server, kept on disk so the
detectors can be replayed on it any number of times without training again:

- ``<run_id>.npz`` (compressed): for each scalar series ``i`` (names in the manifest, in the same
  order) ``s{i}_steps`` (int64) and ``s{i}_values`` (float64, non-finite values kept); for each
  embedding set ``e`` (``"main"`` for every run; ``"dfeat"`` for the digits GAN's discriminator
  features) ``emb_{e}_steps`` (int64, k), ``emb_{e}_fake`` (k, n, d) and, when the run has real
  embeddings, ``emb_{e}_real`` (k, m, d).
- ``manifest.json``: one entry per run (id, file, family, scenario, config, seed, label,
  expected detector kinds, ground truth); see ``record.py``.

This module imports numpy (and torch only inside :class:`StreamRecorder` methods that get torch
objects), so the evaluation harness reads recordings without torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RecordedRun", "StreamRecorder", "load_manifest", "load_run", "save_run"]


@dataclass
class RecordedRun:
    """One recorded stream, as loaded from disk.

    ``scalars`` maps a series name to ``(steps int64, values float64)``; ``embeddings`` maps an
    embedding set to ``(steps, fake (k, n, d), real (k, m, d) or None)``.
    """

    meta: dict[str, Any]
    scalars: dict[str, tuple[np.ndarray, np.ndarray]]
    embeddings: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]]

    @property
    def last_step(self) -> int:
        """Largest step of any scalar series."""
        return max(int(s[-1]) for s, _ in self.scalars.values() if len(s))


class StreamRecorder:
    """Stand-in for ``stethoscope.collector.Monitor`` that records instead of sending.

    It has the ``watch`` / ``log`` / ``log_embeddings`` surface the trainings call. Gradient norms
    follow the collector's defaults: an optimizer step pre-hook (global, filtered by parameter
    identity, like ``GradWatch(trigger="optimizer")``) takes the L2 norm of every parameter's
    gradient every ``grad_every`` steps (step = last logged step + 1) and the norms are labelled
    with the next ``log()`` step as ``grad_norm/<module>/<param>`` plus ``grad_norm/<module>/total``
    (the L2 norm over the module's parameters). Scalars whose name starts with ``gt/`` are ground
    truth: kept apart in :attr:`gt` and never replayed to the detectors.

    ``probe(step, recorder)``, when given, is called at every ``log_embeddings`` and may return
    extra ground-truth numbers (e.g. the discriminator's accuracy on held-out samples), stored in
    :attr:`gt` under their own names.
    """

    def __init__(
        self,
        grad_every: int = 10,
        embed_dtype: type[np.floating[Any]] = np.float32,
        probe: Callable[[int, StreamRecorder], dict[str, float]] | None = None,
    ) -> None:
        self.grad_every = grad_every
        self.embed_dtype = embed_dtype
        self.probe = probe
        self.scalars: dict[str, tuple[list[int], list[float]]] = {}
        self.gt: dict[str, tuple[list[int], list[float]]] = {}
        self.embeddings: dict[str, dict[str, list[Any]]] = {}
        self.modules: dict[str, Any] = {}
        self._last_step = -1
        self._pending: dict[str, tuple[list[str], Any]] = {}
        self._handles: list[Any] = []

    # -- Monitor surface -------------------------------------------------------------------
    def watch(self, module: Any, name: str) -> Any:
        """Record per-parameter gradient norms of ``module`` every ``grad_every`` steps."""
        import torch
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        ids = {id(p) for _, p in params}
        self.modules[name] = module

        def hook(opt: Any, args: Any, kwargs: Any) -> None:
            if not any(id(p) in ids for g in opt.param_groups for p in g["params"]):
                return
            if (self._last_step + 1) % self.grad_every:
                return
            named = [(n, p.grad) for n, p in params if p.grad is not None]
            if not named:
                return
            with torch.no_grad():
                norms = torch.stack(
                    torch._foreach_norm([g for _, g in named], 2, dtype=torch.float32)
                )
            self._pending[name] = ([n for n, _ in named], norms.double().numpy().copy())

        handle = register_optimizer_step_pre_hook(hook)
        self._handles.append(handle)
        return handle

    def log(self, step: int, /, **scalars: Any) -> None:
        """Record scalars (floats, numpy or 0-d torch tensors) at ``step``."""
        for key, value in scalars.items():
            target = self.gt if key.startswith("gt/") else self.scalars
            steps, values = target.setdefault(key, ([], []))
            steps.append(int(step))
            values.append(float(value))
        for module, (names, norms) in self._pending.items():
            for pname, v in zip(names, norms, strict=True):
                steps, values = self.scalars.setdefault(f"grad_norm/{module}/{pname}", ([], []))
                steps.append(int(step))
                values.append(float(v))
            steps, values = self.scalars.setdefault(f"grad_norm/{module}/total", ([], []))
            steps.append(int(step))
            values.append(float(np.sqrt(np.sum(np.square(norms)))))
        self._pending = {}
        self._last_step = max(self._last_step, int(step))

    def log_embeddings(self, step: int, fake: Any, real: Any = None, *, name: str = "main") -> None:
        """Record one embedding evaluation (``fake`` (n, d), optional ``real`` (m, d))."""
        entry = self.embeddings.setdefault(name, {"steps": [], "fake": [], "real": []})
        entry["steps"].append(int(step))
        entry["fake"].append(np.asarray(fake, dtype=self.embed_dtype))
        if real is not None:
            entry["real"].append(np.asarray(real, dtype=self.embed_dtype))
        if self.probe is not None and name == "main":
            for key, value in self.probe(int(step), self).items():
                steps, values = self.gt.setdefault(key, ([], []))
                steps.append(int(step))
                values.append(float(value))

    def close(self) -> None:
        """Remove the optimizer hooks (they are global)."""
        for h in self._handles:
            h.remove()
        self._handles = []


def save_run(path: Path, recorder: StreamRecorder) -> list[str]:
    """Write ``recorder``'s stream to ``path`` (npz); returns the series names in file order."""
    arrays: dict[str, np.ndarray] = {}
    names = sorted(recorder.scalars)
    for i, name in enumerate(names):
        steps, values = recorder.scalars[name]
        arrays[f"s{i}_steps"] = np.asarray(steps, dtype=np.int64)
        arrays[f"s{i}_values"] = np.asarray(values, dtype=np.float64)
    for set_name, entry in recorder.embeddings.items():
        arrays[f"emb_{set_name}_steps"] = np.asarray(entry["steps"], dtype=np.int64)
        arrays[f"emb_{set_name}_fake"] = np.stack(entry["fake"])
        if entry["real"]:
            arrays[f"emb_{set_name}_real"] = np.stack(entry["real"])
    np.savez_compressed(path, **arrays)
    return names


def load_manifest(directory: Path) -> list[dict[str, Any]]:
    """The run entries of ``directory/manifest.json``."""
    return list(json.loads((directory / "manifest.json").read_text())["runs"])


def load_run(directory: Path, meta: dict[str, Any]) -> RecordedRun:
    """Load the run described by manifest entry ``meta`` from ``directory``."""
    with np.load(directory / meta["file"]) as z:
        scalars = {
            name: (z[f"s{i}_steps"].astype(np.int64), z[f"s{i}_values"].astype(np.float64))
            for i, name in enumerate(meta["series"])
        }
        embeddings: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
        for set_name in meta.get("embedding_sets", []):
            real = z[f"emb_{set_name}_real"] if f"emb_{set_name}_real" in z.files else None
            embeddings[set_name] = (z[f"emb_{set_name}_steps"], z[f"emb_{set_name}_fake"], real)
    return RecordedRun(meta=meta, scalars=scalars, embeddings=embeddings)


@dataclass
class GroundTruth:
    """Helper to build the manifest's ``ground_truth`` entry (JSON-ready lists and ints)."""

    values: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """Plain JSON types (numpy scalars converted)."""
        return json.loads(json.dumps(self.values, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(type(obj).__name__)
