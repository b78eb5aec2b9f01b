"""Seeded synthetic streams with known ground truth for the detector tests."""

from __future__ import annotations

import numpy as np

RING_ANGLES = 2 * np.pi * np.arange(8) / 8  # endpoint excluded: 8 distinct centres
RING_CENTRES = 2.0 * np.stack([np.cos(RING_ANGLES), np.sin(RING_ANGLES)], axis=1)


def healthy_loss(n: int, seed: int, noise: float = 0.1, start: float = 2.0,
                 floor: float = 0.3, tau: float = 3000.0) -> np.ndarray:
    """A noisy, decreasing, positive loss curve (multiplicative log-normal noise)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return (start * np.exp(-t / tau) + floor) * np.exp(noise * rng.standard_normal(n))


def ring(n: int, modes, seed: int, std: float = 0.02) -> np.ndarray:
    """``n`` samples of the 2-D ring of 8 Gaussians (radius 2), restricted to ``modes``."""
    rng = np.random.default_rng(seed)
    modes = np.asarray(modes)
    return RING_CENTRES[rng.choice(modes, n)] + std * rng.standard_normal((n, 2))


def batches(steps: np.ndarray, values: np.ndarray, size: int):
    """Split a stream into consecutive (steps, values) batches of ``size`` points."""
    for a in range(0, steps.size, size):
        yield steps[a : a + size], values[a : a + size]


def feed(detector, steps: np.ndarray, values: np.ndarray, size: int = 100) -> list:
    """Feed one series to a single-series detector in batches of ``size`` points."""
    name = getattr(detector, "series", "") or "series"
    out = []
    for s, v in batches(steps, values, size):
        out += detector.update({name: (s, v)})
    return out
