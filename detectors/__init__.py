"""Online training-health detectors (pure numpy/scipy).

The server holds one :class:`DetectorSuite` per run; each detector is also usable on its own.
Scalar-stream detectors (spike, drift, oscillation, discriminator overfitting) take
``update(steps, values)`` arrays, the gradient detector a mapping of
per-parameter norms, the balance detector aligned role arrays, and the collapse detector
embedding batches (``update(step, fake, real=None)``). All return lists of :class:`Finding`.
"""

from .balance import GANBalanceDetector
from .base import Detector
from .collapse import CollapseDetector
from .findings import KINDS, DetectorStatus, Finding, Remedy
from .gradients import GradientDetector
from .metrics import (
    coverage,
    effective_rank,
    mean_pairwise_distance,
    near_duplicate_rate,
    recall,
    vendi_score,
)
from .naming import is_loss, match_role, parse_grad_norm
from .nonfinite import NonFiniteDetector
from .oscillation import OscillationDetector
from .overfitting import DiscriminatorOverfittingDetector
from .runtime import COLLAPSE_SIGNALS, FAMILIES, DetectorSuite, SuiteConfig
from .spikes import DriftDetector, SpikeDetector

__all__ = [
    "COLLAPSE_SIGNALS",
    "FAMILIES",
    "KINDS",
    "CollapseDetector",
    "Detector",
    "DetectorStatus",
    "DetectorSuite",
    "DiscriminatorOverfittingDetector",
    "DriftDetector",
    "Finding",
    "GANBalanceDetector",
    "GradientDetector",
    "NonFiniteDetector",
    "OscillationDetector",
    "Remedy",
    "SpikeDetector",
    "SuiteConfig",
    "coverage",
    "effective_rank",
    "is_loss",
    "match_role",
    "mean_pairwise_distance",
    "near_duplicate_rate",
    "parse_grad_norm",
    "recall",
    "vendi_score",
]
