"""Pure diversity and fidelity metrics on embedding batches (numpy only).

All functions take ``(n, d)`` float arrays of embeddings from the same feature extractor and
work from full pairwise-distance matrices: ``scipy.spatial.distance.cdist`` in low dimension
(exact), one matrix product (``|a|^2 + |b|^2 - 2 a.b``) from d = 32 on. At the sizes the
collapse detector uses (at most ``max_samples`` points per set) this beats tree searches, which
degrade in high dimension.

References
----------
- Naeem et al. 2020, Reliable Fidelity and Diversity Metrics for Generative Models (coverage).
- Kynkäänniemi et al. 2019, Improved Precision and Recall Metric for Assessing Generative
  Models (recall).
- Friedman & Dieng 2022, The Vendi Score: A Diversity Evaluation Metric for Machine Learning.
- Arora et al. 2017/2018, Do GANs learn the distribution? (birthday paradox, near-duplicates).
- Roy & Vetterli 2007, The effective rank: a measure of effective dimensionality; Garrido et al.
  2023, RankMe; Jing et al. 2022, Understanding Dimensional Collapse in Contrastive
  Self-supervised Learning (effective rank).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

__all__ = [
    "pairwise_distances",
    "knn_radii",
    "median_pairwise_distance",
    "coverage",
    "recall",
    "precision",
    "vendi_score",
    "mean_pairwise_distance",
    "near_duplicate_rate",
    "effective_rank",
]


def _as2d(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n, d) array of embeddings, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or Inf; drop or fix those rows first")
    return a


def pairwise_distances(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` and ``b`` (``b = a`` when omitted).

    >>> pairwise_distances(np.array([[0.0, 0.0], [3.0, 4.0]])).tolist()
    [[0.0, 5.0], [5.0, 0.0]]
    """
    same = b is None
    b = a if same else b
    if a.shape[1] < 32:  # low dimension: exact distances straight from the differences
        return cdist(a, b)
    aa = np.einsum("ij,ij->i", a, a)
    bb = aa if same else np.einsum("ij,ij->i", b, b)
    # float32 product: about twice as fast, and accurate enough for neighbour radii
    ab = (a.astype(np.float32) @ b.astype(np.float32).T).astype(np.float64)
    d2 = aa[:, None] + bb[None, :] - 2.0 * ab
    np.maximum(d2, 0.0, out=d2)
    if same:
        np.fill_diagonal(d2, 0.0)
    return np.sqrt(d2, out=d2)


def knn_radii(d_self: np.ndarray, k: int) -> np.ndarray:
    """Distance of each point to its k-th nearest neighbour, itself excluded.

    ``d_self`` is a square distance matrix of one set.
    """
    n = d_self.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} points, got {k}")
    # the diagonal (0, itself) is the 0-th smallest: the k-th neighbour is at index k
    return np.partition(d_self, k, axis=1)[:, k]


def median_pairwise_distance(d_self: np.ndarray) -> float:
    """Median of the off-diagonal entries of a square distance matrix."""
    n = d_self.shape[0]
    iu = np.triu_indices(n, 1)
    return float(np.median(d_self[iu])) if n > 1 else 0.0


def coverage(real: np.ndarray, fake: np.ndarray, k: int = 5) -> float:
    """Share of real k-NN balls that contain at least one fake sample (Naeem et al. 2020).

    About 0.97 for identical distributions (k=5); falls when the generator misses modes.

    >>> rng = np.random.default_rng(0)
    >>> r = rng.standard_normal((500, 2))
    >>> round(coverage(r, rng.standard_normal((500, 2))), 1), coverage(r, np.zeros((500, 2))) < 0.1
    (1.0, True)
    """
    real, fake = _as2d(real, "real"), _as2d(fake, "fake")
    radii = knn_radii(pairwise_distances(real), k)
    return _coverage(radii, pairwise_distances(fake, real))


def _coverage(real_radii: np.ndarray, d_fake_real: np.ndarray) -> float:
    return float(np.mean(d_fake_real.min(axis=0) < real_radii))


def recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> float:
    """Share of real samples inside the generated manifold (Kynkäänniemi et al. 2019).

    The manifold is the union of balls around each fake sample reaching its k-th nearest fake
    neighbour. Low recall means the generator misses parts of the data: the collapse signal.
    """
    real, fake = _as2d(real, "real"), _as2d(fake, "fake")
    radii = knn_radii(pairwise_distances(fake), k)
    return _recall(radii, pairwise_distances(fake, real))


def _recall(fake_radii: np.ndarray, d_fake_real: np.ndarray) -> float:
    return float(np.mean((d_fake_real <= fake_radii[:, None]).any(axis=0)))


def precision(real: np.ndarray, fake: np.ndarray, k: int = 3) -> float:
    """Share of fake samples inside the real manifold (Kynkäänniemi et al. 2019): fidelity.

    The manifold is the union of balls around each real sample reaching its k-th nearest real
    neighbour. Low precision means generated samples lie off the data.
    """
    real, fake = _as2d(real, "real"), _as2d(fake, "fake")
    radii = knn_radii(pairwise_distances(real), k)
    return _precision(radii, pairwise_distances(fake, real))


def _precision(real_radii: np.ndarray, d_fake_real: np.ndarray) -> float:
    return float(np.mean((d_fake_real <= real_radii[None, :]).any(axis=1)))


def vendi_score(x: np.ndarray, bandwidth: float, *, d_self: np.ndarray | None = None) -> float:
    """Vendi score with an RBF kernel: the effective number of distinct samples.

    ``exp(-sum_i l_i log l_i)`` over the eigenvalues ``l_i`` of ``K / n`` with
    ``K_ij = exp(-|x_i - x_j|^2 / (2 bandwidth^2))`` (Friedman & Dieng 2022). Ranges from 1 (all
    samples identical at this bandwidth) to n (all far apart).

    >>> round(vendi_score(np.zeros((10, 3)), 1.0), 6)
    1.0
    >>> round(vendi_score(np.eye(4) * 100, 1.0), 6)
    4.0
    """
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
    if d_self is None:
        d_self = pairwise_distances(_as2d(x, "x"))
    n = d_self.shape[0]
    k = np.exp(-(d_self**2) / (2.0 * bandwidth**2))
    lam = np.linalg.eigvalsh(k / n)
    lam = lam[lam > 1e-12]
    return float(np.exp(-np.sum(lam * np.log(lam))))


def mean_pairwise_distance(x: np.ndarray, *, d_self: np.ndarray | None = None) -> float:
    """Mean distance between distinct samples."""
    if d_self is None:
        d_self = pairwise_distances(_as2d(x, "x"))
    n = d_self.shape[0]
    return float(d_self.sum() / (n * (n - 1))) if n > 1 else 0.0


def near_duplicate_rate(x: np.ndarray, eps: float, *, d_self: np.ndarray | None = None) -> float:
    """Share of samples whose nearest other sample is closer than ``eps`` (birthday paradox)."""
    if d_self is None:
        d_self = pairwise_distances(_as2d(x, "x"))
    n = d_self.shape[0]
    if n < 2:
        return 0.0
    nn = knn_radii(d_self, 1)
    return float(np.mean(nn < eps))


def effective_rank(x: np.ndarray, *, center: bool = True) -> float:
    """Effective rank of an embedding matrix (Roy & Vetterli 2007).

    ``exp(-sum_i p_i log p_i)`` with ``p_i = s_i / sum_j s_j`` over the singular values ``s_i``
    of ``x`` (rows centred by default, so a shared offset is not a dimension: the spectrum is
    that of the covariance, as in Jing et al. 2022; RankMe, Garrido et al. 2023, uses the same
    entropy). Ranges from 1 (all variation along one direction, or none) to ``min(n - 1, d)``
    (isotropic); singular values below float64 round-off of the largest one are not
    dimensions, so near-identical points do not score as many. It grows with n while n < d:
    compare values at the same n.

    >>> rng = np.random.default_rng(0)
    >>> round(effective_rank(rng.standard_normal((2000, 8))), 1)
    8.0
    >>> round(effective_rank(rng.standard_normal((2000, 2)) @ rng.standard_normal((2, 64))), 1)
    2.0
    >>> effective_rank(np.ones((50, 64)) + 1e-9 * rng.standard_normal((50, 64))) <= 49
    True
    """
    a = _as2d(x, "x")
    if center:
        a = a - a.mean(axis=0, keepdims=True)
    n, d = a.shape
    if n < 2:
        return 1.0
    # singular values from the smaller Gram matrix (one BLAS product and a small symmetric
    # eigendecomposition: several times faster than an SVD of the n x d matrix)
    gram = a @ a.T if n <= d else a.T @ a
    lam = np.linalg.eigvalsh(gram)
    s = np.sqrt(np.clip(lam, 0.0, None))[::-1]
    top = float(s[0]) if s.size else 0.0
    scale = float(np.abs(x).max()) if np.size(x) else 0.0
    # spread at the level of float round-off of the data is no spread at all
    if not top > 1e-7 * max(scale, 1e-300) * np.sqrt(n):
        return 1.0
    s = s[s > top * 1e-7]  # below that, the Gram's round-off, not a dimension
    p = s / s.sum()
    return float(min(np.exp(-np.sum(p * np.log(p))), min(n - 1, d)))
