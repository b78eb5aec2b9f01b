"""A run's detector configuration: which detectors run, on which series, with which parameters.

:class:`SuiteConfig` is what a user sends as a run's ``detectors`` (JSON) or passes to
``Monitor(detectors=...)``; every field is checked at once and an error names the bad key, with
the closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .balance import GANBalanceDetector
from .base import Detector
from .collapse import CollapseDetector
from .gradients import GradientDetector
from .naming import ROLE_NAMES
from .nonfinite import NonFiniteDetector
from .oscillation import OscillationDetector
from .overfitting import DiscriminatorOverfittingDetector
from .rank import DimensionalCollapseDetector
from .spikes import DriftDetector, SpikeDetector
from .stall import PinnedLossDetector

__all__ = ["SuiteConfig", "FAMILIES", "build"]

#: Detector families, the keys of :attr:`SuiteConfig.enabled` and of the per-family parameters.
FAMILIES: dict[str, type[Detector]] = {
    "nonfinite": NonFiniteDetector,
    "spike": SpikeDetector,
    "drift": DriftDetector,
    "oscillation": OscillationDetector,
    "gradients": GradientDetector,
    "balance": GANBalanceDetector,
    "overfitting": DiscriminatorOverfittingDetector,
    "collapse": CollapseDetector,
    "rank": DimensionalCollapseDetector,
    "stall": PinnedLossDetector,
}
_SUBJECT_ARG = {"spike": "series", "drift": "series", "oscillation": "series",
                "gradients": "module"}

def _frozen(m: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(m or {}))


def _unknown(where: str, what: str, bad: Iterable[Any], valid: Iterable[str]) -> ValueError:
    """``ValueError`` naming each bad key (with a close match, if any) and every valid one."""
    valid = list(valid)
    parts = []
    for key in sorted(map(str, bad)):
        close = [key.lower()] if key.lower() in valid else difflib.get_close_matches(
            key, valid, n=1)
        parts.append(repr(key) + (f" (did you mean {close[0]!r}?)" if close else ""))
    plural = "s" if len(parts) > 1 else ""
    return ValueError(f"{where}: unknown {what}{plural} {', '.join(parts)}; valid {what}s: "
                      f"{', '.join(valid)}")


@dataclass(frozen=True)
class SuiteConfig:
    """Per-run configuration of a :class:`DetectorSuite`; every field is optional.

    Parameters
    ----------
    roles
        Explicit ``{role: series name}``, overriding name matching. Roles: ``loss_d``,
        ``loss_g``, ``d_real`` (D(x)), ``d_fake`` (D(G(z))), ``d_real_sign`` (StyleGAN2-ADA's
        ``r_t = E[sign(D(x_real))]``).
    losses
        Explicit list of loss series for the spike and drift detectors; ``None`` (default)
        means every series whose name contains "loss" plus the GAN loss roles.
    ignore
        Series no detector looks at.
    enabled
        ``{family: bool}`` to switch families off (the health view then says so). Families:
        ``nonfinite``, ``spike``, ``drift``, ``oscillation``, ``gradients``, ``balance``,
        ``overfitting``, ``collapse``, ``rank``, ``stall``.
    spike_grad_norms
        Also run the spike detector on each module's total gradient norm
        (``grad_norm/<module>/total``), since gradient-norm spikes often come before loss
        spikes (default True).
    drift_gan_losses
        Also run the drift detector on the GAN discriminator and generator losses (default
        False: adversarial losses rise and fall in healthy runs, e.g. the D loss climbs towards
        2 ln 2 as G catches up; their divergence is covered by the NaN, spike, oscillation and
        balance detectors).
    nonfinite, spike, drift, oscillation, gradients, balance, overfitting, collapse, rank, stall
        Keyword arguments overriding the defaults of each family's detector class, e.g.
        ``spike={"warn_z": 8.0}``. Checked at once by building a detector with them.

    Examples
    --------
    A run's ``detectors`` config, as a user would write it in JSON:

    >>> cfg = SuiteConfig.from_mapping({"roles": {"loss_d": "errD", "loss_g": "errG"},
    ...                                 "spike": {"warn_z": 8}, "enabled": {"drift": False}})
    >>> cfg.spike["warn_z"], cfg.roles["loss_d"], cfg.is_enabled("drift")
    (8, 'errD', False)
    >>> SuiteConfig.from_mapping({"spike": {"warn_z": -1}})
    Traceback (most recent call last):
    ...
    ValueError: config.spike: warn_z must be a finite number in (0.0, inf], got -1
    >>> SuiteConfig.from_mapping({"spikes": {"warn_z": 8}})
    Traceback (most recent call last):
    ...
    ValueError: config: unknown field 'spikes' (did you mean 'spike'?); valid fields: roles, ...
    """

    roles: Mapping[str, str] = field(default_factory=dict)
    losses: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ()
    enabled: Mapping[str, bool] = field(default_factory=dict)
    spike_grad_norms: bool = True
    drift_gan_losses: bool = False
    nonfinite: Mapping[str, Any] = field(default_factory=dict)
    spike: Mapping[str, Any] = field(default_factory=dict)
    drift: Mapping[str, Any] = field(default_factory=dict)
    oscillation: Mapping[str, Any] = field(default_factory=dict)
    gradients: Mapping[str, Any] = field(default_factory=dict)
    balance: Mapping[str, Any] = field(default_factory=dict)
    overfitting: Mapping[str, Any] = field(default_factory=dict)
    collapse: Mapping[str, Any] = field(default_factory=dict)
    rank: Mapping[str, Any] = field(default_factory=dict)
    stall: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("roles", "enabled"):
            if not isinstance(getattr(self, name) or {}, Mapping):
                raise ValueError(f"config.{name} must be a mapping, got {getattr(self, name)!r}")
        roles = dict(self.roles or {})
        for role, name in roles.items():
            if role not in ROLE_NAMES:
                raise _unknown("config.roles", "role", [role], ROLE_NAMES)
            if not isinstance(name, str) or not name:
                raise ValueError(f"config.roles[{role!r}] must be a series name, got {name!r}")
        object.__setattr__(self, "roles", _frozen(roles))
        if self.losses is not None:
            if isinstance(self.losses, str) or not all(isinstance(x, str) for x in self.losses):
                raise ValueError(f"config.losses must be a list of series names, got "
                                 f"{self.losses!r}")
            object.__setattr__(self, "losses", tuple(self.losses))
        if isinstance(self.ignore, str) or not all(isinstance(x, str) for x in self.ignore):
            raise ValueError(f"config.ignore must be a list of series names, got {self.ignore!r}")
        object.__setattr__(self, "ignore", tuple(self.ignore))
        enabled = dict(self.enabled or {})
        for fam, on in enabled.items():
            if fam not in FAMILIES:
                raise _unknown("config.enabled", "detector", [fam], FAMILIES)
            if not isinstance(on, bool):
                raise ValueError(f"config.enabled[{fam!r}] must be true or false, got {on!r}")
        object.__setattr__(self, "enabled", _frozen(enabled))
        for flag in ("spike_grad_norms", "drift_gan_losses"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"config.{flag} must be true or false, got "
                                 f"{getattr(self, flag)!r}")
        for fam, cls in FAMILIES.items():
            params = getattr(self, fam)
            if not isinstance(params, Mapping):
                raise ValueError(f"config.{fam} must be a mapping of parameters, got {params!r}")
            params = dict(params)
            valid = _param_names(cls)
            unknown = sorted(set(params) - set(valid))
            if unknown:
                raise _unknown(f"config.{fam}", "parameter", unknown, valid)
            try:
                build(fam, "probe", params)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"config.{fam}: {exc}") from None
            object.__setattr__(self, fam, _frozen(params))

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | SuiteConfig | None) -> SuiteConfig:
        """Build (and validate) a config from a plain dict, e.g. one read from JSON."""
        if m is None:
            return cls()
        if isinstance(m, SuiteConfig):
            return m
        if not isinstance(m, Mapping):
            raise ValueError(f"config must be a mapping or SuiteConfig, got {type(m).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(m) - set(names), key=str)
        if unknown:
            raise _unknown("config", "field", unknown, names)
        return cls(**dict(m))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (inverse of :meth:`from_mapping`)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Mapping):
                v = dict(v)
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    def is_enabled(self, family: str) -> bool:
        return bool(self.enabled.get(family, True))


def _param_names(cls: type[Detector]) -> list[str]:
    sig = inspect.signature(cls.__init__)
    subject = {"series", "module"}
    return [n for n in sig.parameters if n != "self" and n not in subject]


def build(family: str, subject: str | None, params: Mapping[str, Any]) -> Detector:
    """A detector of ``family`` (about ``subject``, for per-series families) with ``params``."""
    cls = FAMILIES[family]
    arg = _SUBJECT_ARG.get(family)
    if arg:
        return cls(**{arg: subject}, **dict(params))
    return cls(**dict(params))
