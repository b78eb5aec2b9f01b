"""Downsampling that keeps what matters: extremes, non-finite values and alert steps.

Charts of long series are drawn from at most ``max_points`` points. The series is cut into
equal buckets by position; each bucket keeps its minimum and its maximum (so a one-step spike
always survives), its first NaN, +Inf and -Inf, and every point whose step is in ``keep_steps``
(the steps where alerts fired). Reservoir or fixed-stride sampling would hide exactly the spikes
a user is looking for.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def downsample_indices(
    steps: np.ndarray,
    values: np.ndarray,
    max_points: int,
    keep_steps: Iterable[int] = (),
) -> np.ndarray:
    """Sorted indices of the points to keep; all indices when the series is short enough.

    ``max_points`` must be at least 4. The result may exceed ``max_points`` by the non-finite
    and ``keep_steps`` points, which are never dropped.
    """
    if max_points < 4:
        raise ValueError(f"max_points must be >= 4, got {max_points}")
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    buckets = max_points // 2
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)  # every bucket holds >= 1 point
    starts = edges[:-1]
    finite = np.isfinite(values)
    low = np.where(finite, values, np.inf)
    high = np.where(finite, values, -np.inf)
    kept = [
        _argext(np.minimum, low, starts),
        _argext(np.maximum, high, starts),
    ]
    for mask in (np.isnan(values), np.isposinf(values), np.isneginf(values)):
        if mask.any():
            first = _argext(np.maximum, mask.astype(np.int8), starts)  # first True per bucket
            kept.append(first[mask[first]])
    keep = np.fromiter(keep_steps, dtype=np.int64)
    if keep.size:
        kept.append(np.flatnonzero(np.isin(steps, keep)))
    return np.unique(np.concatenate(kept))


def _argext(reduce: np.ufunc, values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Index of the first extreme (per ``reduce``) of each bucket starting at ``starts``."""
    extreme = reduce.reduceat(values, starts)
    bucket = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(values))))
    hit = np.flatnonzero(values == extreme[bucket])
    first = np.unique(bucket[hit], return_index=True)[1]
    return hit[first]
