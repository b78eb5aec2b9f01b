"""Two-dimensional Gaussian mixtures and their mode-coverage ground truth.

The ring of 8 and the 5x5 grid of 25 Gaussians are the standard toy problems for mode collapse
(Metz et al. 2017, "Unrolled GANs"; Srivastava et al. 2017, "VEEGAN"; Lin et al. 2018, "PacGAN").
They are useful because the truth is known exactly: a generated sample is *high quality* when it
lies within 3 standard deviations of the nearest centre, and a mode is *captured* when enough
high-quality samples land on it. The VEEGAN/PacGAN tables evaluate 2,500 samples.

This module is deliberately independent of every Stethoscope detector (it imports numpy only), so
the demo trainings can log it beside the detectors' own signals as the ground truth they are
checked against.

Capture threshold: the PacGAN paper counts a mode as captured as soon as a high-quality sample
lands on it; a single stray sample would then count, so here a mode needs at least
``min_share`` (default 1 %, i.e. 25 of 2,500) of *all* samples to be high-quality samples of that
mode. A perfectly balanced generator puts 12.5 % of its samples on each ring mode and 4 % on each
grid mode, so the threshold sits far below a real mode and far above noise.

Beware a common bug in copied ring code: ``np.linspace(0, 2*pi, 8)`` includes the endpoint and
repeats the first centre; the angles here are ``2*pi*k/8`` for ``k = 0..7``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "EVAL_SAMPLES",
    "MIN_SHARE",
    "Mixture",
    "make_grid25",
    "make_ring8",
    "mode_stats",
    "sample",
]

#: Number of generated samples the VEEGAN/PacGAN protocol evaluates.
EVAL_SAMPLES = 2500
#: Minimum share of all samples that must be high-quality samples of a mode for it to count.
MIN_SHARE = 0.01


@dataclass(frozen=True)
class Mixture:
    """An equal-weight isotropic Gaussian mixture in the plane.

    Attributes
    ----------
    name:
        Short identifier (``"ring8"`` or ``"grid25"``).
    centres:
        ``(k, 2)`` float64 array of component means.
    std:
        Common standard deviation of every component (per axis).
    """

    name: str
    centres: np.ndarray
    std: float

    @property
    def n_modes(self) -> int:
        """Number of mixture components."""
        return int(self.centres.shape[0])


def make_ring8(radius: float = 2.0, std: float = 0.02) -> Mixture:
    """Eight Gaussians evenly spaced on a circle (angles ``2*pi*k/8``, endpoint excluded)."""
    angles = np.linspace(0.0, 2.0 * np.pi, 8, endpoint=False)
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return Mixture(name="ring8", centres=centres, std=float(std))


def make_grid25(spacing: float = 2.0, std: float = 0.05) -> Mixture:
    """Twenty-five Gaussians on the grid ``{-4, -2, 0, 2, 4}^2`` (for the default spacing)."""
    axis = spacing * np.arange(-2, 3, dtype=np.float64)
    xx, yy = np.meshgrid(axis, axis, indexing="xy")
    centres = np.stack([xx.ravel(), yy.ravel()], axis=1)
    return Mixture(name="grid25", centres=centres, std=float(std))


def sample(mixture: Mixture, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` points from ``mixture`` (components chosen uniformly); returns ``(n, 2)`` float32."""
    idx = rng.integers(0, mixture.n_modes, size=n)
    noise = rng.standard_normal((n, 2)) * mixture.std
    return (mixture.centres[idx] + noise).astype(np.float32)


def mode_stats(
    samples: np.ndarray,
    centres: np.ndarray,
    std: float,
    min_share: float = MIN_SHARE,
) -> tuple[int, float]:
    """Count captured modes and the share of high-quality samples.

    Parameters
    ----------
    samples:
        ``(n, 2)`` generated points (the protocol uses ``n = 2500``). Non-finite rows count as
        low quality and land on no mode, so a diverged generator scores ``(0, 0.0)``.
    centres:
        ``(k, 2)`` mixture centres.
    std:
        Component standard deviation; "high quality" means within ``3 * std`` (Euclidean) of the
        nearest centre.
    min_share:
        A mode is captured when at least ``max(1, ceil(min_share * n))`` high-quality samples have
        it as their nearest centre.

    Returns
    -------
    (modes_captured, high_quality_share)
    """
    x = np.asarray(samples, dtype=np.float64)
    c = np.asarray(centres, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != c.shape[1]:
        raise ValueError(f"samples must be (n, {c.shape[1]}), got {x.shape}")
    n = x.shape[0]
    if n == 0:
        return 0, 0.0
    finite = np.all(np.isfinite(x), axis=1)
    xf = np.where(finite[:, None], x, 0.0)
    dist = np.linalg.norm(xf[:, None, :] - c[None, :, :], axis=2)
    nearest = np.argmin(dist, axis=1)
    good = finite & (dist[np.arange(n), nearest] <= 3.0 * std)
    counts = np.bincount(nearest[good], minlength=c.shape[0])
    min_count = max(1, int(np.ceil(min_share * n - 1e-9)))
    return int(np.sum(counts >= min_count)), float(np.mean(good))
