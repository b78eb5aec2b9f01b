"""Turn drained records into numpy arrays, reading torch tensors back in one copy per device.

Runs in the sender thread. Torch is only touched when tensors were recorded (it is then already
imported by the user).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .buffer import Drained, Warn, merge_points, total_norm

__all__ = ["RowSample", "materialize", "read_tensors"]


def read_tensors(scalars: list[Any], vectors: list[Any]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Values of 0-d ``scalars`` and 1-D ``vectors`` as float64, one host copy per device.

    On each device the scalars are stacked and concatenated with the vectors (``torch.stack``
    and ``torch.cat`` promote mixed dtypes), cast to float64 (float32 on devices without
    float64) and copied to the host at once.
    """
    svals = np.empty(len(scalars), dtype=np.float64)
    vvals: list[np.ndarray] = [np.empty(0)] * len(vectors)
    if not scalars and not vectors:
        return svals, vvals
    torch = sys.modules["torch"]
    by_device: dict[Any, tuple[list[int], list[int]]] = {}
    for i, t in enumerate(scalars):
        by_device.setdefault(t.device, ([], []))[0].append(i)
    for i, t in enumerate(vectors):
        by_device.setdefault(t.device, ([], []))[1].append(i)
    with torch.no_grad():
        for device, (si, vi) in by_device.items():
            parts = []
            if si:
                parts.append(torch.stack([scalars[i] for i in si]))
            parts.extend(vectors[i] for i in vi)
            cat = torch.cat(parts) if len(parts) > 1 else parts[0]
            wide = torch.float32 if device.type == "mps" else torch.float64
            host = cat.to(dtype=wide).cpu().numpy().astype(np.float64, copy=False)
            svals[si] = host[: len(si)]
            offset = len(si)
            for i in vi:
                n = vectors[i].shape[0]
                vvals[i] = host[offset : offset + n]
                offset += n
    return svals, vvals


class RowSample:
    """A torch tensor of which only ``rows`` (sorted int64 indices) are sent.

    The row selection runs in the sender thread at read-back time, so the training thread
    never copies an index tensor to the device.
    """

    __slots__ = ("rows", "tensor")

    def __init__(self, tensor: Any, rows: np.ndarray) -> None:
        self.tensor = tensor
        self.rows = rows


def _embedding_array(data: Any) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data
    torch = sys.modules["torch"]
    with torch.no_grad():
        if isinstance(data, RowSample):
            rows = torch.from_numpy(data.rows).to(data.tensor.device)
            data = data.tensor.detach().index_select(0, rows)
        return data.detach().to(dtype=torch.float32).contiguous().cpu().numpy()


def _modified(t: Any, version: int) -> bool:
    try:
        return bool(t._version != version)
    except Exception:
        return False


def _read_or_salvage(
    scalars: list[Any], vectors: list[Any], warn: Warn
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray | None]]:
    """:func:`read_tensors` plus a mask of the scalars read; if the batched copy fails (an
    exotic tensor subclass, a device error), the tensors are read one by one so that only the
    unreadable ones are lost (``False`` in the mask, ``None`` for a vector)."""
    try:
        svals, vvals = read_tensors(scalars, vectors)
        return svals, np.ones(len(scalars), dtype=bool), list(vvals)
    except Exception as exc:
        first_error = exc
    svals = np.full(len(scalars), np.nan)
    ok = np.zeros(len(scalars), dtype=bool)
    out: list[np.ndarray | None] = []
    for i, t in enumerate(scalars):
        try:
            svals[i] = read_tensors([t], [])[0][0]
            ok[i] = True
        except Exception:
            pass
    for v in vectors:
        try:
            out.append(read_tensors([], [v])[1][0])
        except Exception:
            out.append(None)
    bad = int((~ok).sum()) + sum(v is None for v in out)
    if bad:
        warn(
            "readback",
            f"log(): {bad} logged tensor(s) could not be read back "
            f"({type(first_error).__name__}: {first_error}); they were dropped",
        )
    return svals, ok, out


def materialize(
    drained: Drained, warn: Warn
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[tuple[int, str, np.ndarray]]]:
    """Series as ``name -> (steps, values)`` and embeddings as ``(step, name, array)``.

    A tensor or embedding that cannot be read back is dropped with a warning; the rest of the
    flush goes on.
    """
    scalars: list[Any] = []
    for name, s in drained.series.items():
        for t, version in s.tensors:
            if version >= 0 and _modified(t, version):  # -1: inference tensor, no counter
                warn(
                    "inplace:" + name,
                    f"log(): the tensor logged as {name!r} was modified in place after log(); "
                    "the value sent is the modified one. Log loss.detach().clone() or a new "
                    "tensor instead of one you keep updating.",
                )
            scalars.append(t)
    svals, sok, gvals = _read_or_salvage(scalars, [g[3] for g in drained.grads], warn)

    series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    pos = 0
    for name, s in drained.series.items():
        k = len(s.tensors)
        tv = svals[pos : pos + k]
        tsteps = s.tsteps
        keep = sok[pos : pos + k]
        if not keep.all():
            tv = tv[keep]
            tsteps = [st for st, good in zip(tsteps, keep.tolist(), strict=True) if good]
        pos += k
        steps, vals = merge_points(s.steps, s.values, tsteps, tv)
        if len(steps):
            series[name] = (steps, vals)

    grad_points: dict[str, tuple[list[int], list[float]]] = {}
    for (step, prefix, names, _t), norms in zip(drained.grads, gvals, strict=True):
        if norms is None:
            continue
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

    embeddings = []
    for step, name, d in drained.embeddings:
        try:
            embeddings.append((step, name, _embedding_array(d)))
        except Exception as exc:
            warn(
                "readback:emb",
                f"log_embeddings(): an embedding ({name!r}, step {step}) could not be read "
                f"back ({type(exc).__name__}: {exc}); dropped",
            )
    return series, embeddings
