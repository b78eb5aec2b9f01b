"""Turn drained records into numpy arrays, reading torch tensors back in one copy per device.

Runs in the sender thread. Torch is only touched when tensors were recorded (it is then already
imported by the user).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .buffer import Drained, Warn, merge_points, total_norm

__all__ = ["materialize", "read_tensors"]


def read_tensors(tensors: list[Any]) -> list[np.ndarray]:
    """Values of 1-D tensors as float64 numpy arrays, one device-to-host copy per device.

    Tensors on one device are concatenated there (one kernel; ``torch.cat`` promotes mixed
    dtypes), cast to float64 (float32 on devices without float64) and copied to the host at once.
    """
    if not tensors:
        return []
    torch = sys.modules["torch"]
    by_device: dict[Any, list[int]] = {}
    for i, t in enumerate(tensors):
        by_device.setdefault(t.device, []).append(i)
    out: list[np.ndarray] = [np.empty(0)] * len(tensors)
    with torch.no_grad():
        for device, idx in by_device.items():
            parts = [tensors[i].reshape(-1) for i in idx]
            cat = torch.cat(parts) if len(parts) > 1 else parts[0]
            wide = torch.float32 if device.type == "mps" else torch.float64
            host = cat.to(dtype=wide).cpu().numpy().astype(np.float64, copy=False)
            offsets = np.cumsum([p.numel() for p in parts])[:-1]
            for i, chunk in zip(idx, np.split(host, offsets), strict=True):
                out[i] = chunk
    return out


def _embedding_array(data: Any) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data
    return data.detach().to(dtype=sys.modules["torch"].float32).contiguous().cpu().numpy()


def materialize(
    drained: Drained, warn: Warn
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[tuple[int, str, np.ndarray]]]:
    """Series as ``name -> (steps, values)`` and embeddings as ``(step, name, array)``."""
    tensors: list[Any] = []
    for name, s in drained.series.items():
        for t, version in s.tensors:
            if t._version != version:
                warn(
                    "inplace:" + name,
                    f"log(): the tensor logged as {name!r} was modified in place after log(); "
                    "the value sent is the modified one. Log loss.detach().clone() or a new "
                    "tensor instead of one you keep updating.",
                )
            tensors.append(t)
    n_scalar_tensors = len(tensors)
    tensors.extend(g[3] for g in drained.grads)
    values = read_tensors(tensors)

    series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    pos = 0
    for name, s in drained.series.items():
        k = len(s.tensors)
        tv = np.concatenate(values[pos : pos + k]) if k else np.empty(0, dtype=np.float64)
        pos += k
        steps, vals = merge_points(s.steps, s.values, s.tsteps, tv)
        if len(steps):
            series[name] = (steps, vals)

    grad_points: dict[str, tuple[list[int], list[float]]] = {}
    for (step, prefix, names, _t), norms in zip(
        drained.grads, values[n_scalar_tensors:], strict=True
    ):
        for pname, v in zip(names, norms.tolist(), strict=True):
            entry = grad_points.setdefault(f"{prefix}/{pname}", ([], []))
            entry[0].append(step)
            entry[1].append(v)
        entry = grad_points.setdefault(f"{prefix}/total", ([], []))
        entry[0].append(step)
        entry[1].append(total_norm(norms))
    for name, (steps, vals) in grad_points.items():
        old = series.get(name)
        s_arr = np.asarray(steps, dtype=np.int64)
        v_arr = np.asarray(vals, dtype=np.float64)
        if old is not None:
            s_arr, v_arr = merge_points(old[0].tolist(), old[1].tolist(), steps, v_arr)
        series[name] = (s_arr, v_arr)

    embeddings = [(step, name, _embedding_array(d)) for step, name, d in drained.embeddings]
    return series, embeddings
