"""Downsampling keeps extremes, non-finite points and alert steps."""

from __future__ import annotations

import numpy as np
import pytest

from stethoscope.app.downsample import downsample_indices


def test_short_series_is_kept_whole() -> None:
    steps = np.arange(10)
    assert downsample_indices(steps, np.ones(10), 100).tolist() == list(range(10))


def test_spikes_nans_infs_and_alert_steps_survive() -> None:
    rng = np.random.default_rng(3)
    n = 100_003
    values = rng.normal(0, 1, n)
    values[5_000] = 1e6
    values[6_000] = -1e6
    values[70_000] = np.nan
    values[70_001] = np.inf
    values[99_999] = -np.inf
    steps = np.arange(n) * 2
    idx = downsample_indices(steps, values, 1_000, keep_steps=[2 * 42_424])
    assert len(idx) <= 1_000 + 4
    assert np.all(np.diff(idx) > 0)
    kept = set(idx.tolist())
    assert {5_000, 6_000, 70_000, 70_001, 99_999, 42_424} <= kept


def test_every_bucket_keeps_its_min_and_max() -> None:
    rng = np.random.default_rng(4)
    values = np.sin(np.linspace(0, 20 * np.pi, 10_000)) + 0.1 * rng.standard_normal(10_000)
    idx = downsample_indices(np.arange(10_000), values, 200)
    kept = set(idx.tolist())
    edges = np.linspace(0, 10_000, 101).astype(int)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        bucket = values[lo:hi]
        assert lo + int(bucket.argmin()) in kept and lo + int(bucket.argmax()) in kept


@pytest.mark.parametrize("n", [1_001, 2_001, 10_007])
def test_the_point_budget_is_used(n: int) -> None:
    values = np.random.default_rng(n).standard_normal(n)
    idx = downsample_indices(np.arange(n), values, 1_000)
    assert 900 <= len(idx) <= 1_000


def test_max_points_validated() -> None:
    with pytest.raises(ValueError, match="max_points"):
        downsample_indices(np.arange(10), np.ones(10), 2)
