"""Online training-health detectors (pure numpy/scipy).

The server holds one :class:`DetectorSuite` per run; each detector is also usable on its own.
Two shapes of detector: scalar detectors take ``update({name: (steps, values)})`` (a series,
gradient norms by parameter, or GAN roles), embedding detectors take
``update(step, {"fake": (n, d), "real": (m, d)})`` after an optional pure ``measure``. All
return lists of :class:`Finding`.
"""

from .balance import GANBalanceDetector
from .base import Detector, EmbeddingDetector, ScalarDetector, SeriesDetector
from .collapse import CollapseDetector
from .config import FAMILIES, SuiteConfig
from .findings import KINDS, SEVERITIES, DetectorStatus, Finding, Remedy
from .gradients import GradientDetector
from .metrics import (
    coverage,
    effective_rank,
    mean_pairwise_distance,
    near_duplicate_rate,
    precision,
    recall,
    vendi_score,
)
from .naming import is_loss, match_role, parse_grad_norm
from .nonfinite import NonFiniteDetector
from .oscillation import OscillationDetector
from .overfitting import DiscriminatorOverfittingDetector
from .rank import DimensionalCollapseDetector
from .spikes import DriftDetector, SpikeDetector
from .stall import PinnedLossDetector
from .suite import COLLAPSE_SIGNALS, DetectorSuite

__all__ = [
    "COLLAPSE_SIGNALS",
    "FAMILIES",
    "KINDS",
    "SEVERITIES",
    "CollapseDetector",
    "Detector",
    "DetectorStatus",
    "DetectorSuite",
    "DimensionalCollapseDetector",
    "DiscriminatorOverfittingDetector",
    "DriftDetector",
    "EmbeddingDetector",
    "Finding",
    "GANBalanceDetector",
    "GradientDetector",
    "NonFiniteDetector",
    "OscillationDetector",
    "PinnedLossDetector",
    "Remedy",
    "ScalarDetector",
    "SeriesDetector",
    "SpikeDetector",
    "SuiteConfig",
    "coverage",
    "effective_rank",
    "is_loss",
    "match_role",
    "mean_pairwise_distance",
    "near_duplicate_rate",
    "parse_grad_norm",
    "precision",
    "recall",
    "vendi_score",
]
