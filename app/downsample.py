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
    size = -(-n // buckets)  # ceil
    padded = buckets * size
    finite = np.isfinite(values)

    low = np.full(padded, np.inf)
    low[:n] = np.where(finite, values, np.inf)
    high = np.full(padded, -np.inf)
    high[:n] = np.where(finite, values, -np.inf)
    offsets = np.arange(buckets) * size
    kept = [
        offsets + low.reshape(buckets, size).argmin(axis=1),
        offsets + high.reshape(buckets, size).argmax(axis=1),
    ]
    for mask in (np.isnan(values), np.isposinf(values), np.isneginf(values)):
        if mask.any():
            rows = np.zeros(padded, dtype=bool)
            rows[:n] = mask
            rows = rows.reshape(buckets, size)
            has = rows.any(axis=1)
            kept.append((offsets + rows.argmax(axis=1))[has])
    keep = np.fromiter(keep_steps, dtype=np.int64)
    if keep.size:
        kept.append(np.flatnonzero(np.isin(steps, keep)))
    idx = np.unique(np.concatenate(kept))
    idx = idx[idx < n]
    # a bucket whose values are all non-finite yields argmin/argmax at a non-finite point that
    # is already kept by its own mask, or at a finite one: both are genuine points of the series
    return idx
