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
    values = np.sin(np.linspace(0, 20 * np.pi, 10_000))
    idx = downsample_indices(np.arange(10_000), values, 200)
    assert values[idx].max() == values.max() and values[idx].min() == values.min()


def test_max_points_validated() -> None:
    with pytest.raises(ValueError, match="max_points"):
        downsample_indices(np.arange(10), np.ones(10), 2)
