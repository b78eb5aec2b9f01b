"""One run's detectors behind one object: routing, lazy creation, health and persistence.

:class:`DetectorSuite` is what the server holds per run (see docs/architecture.md). It routes each
series to the detectors that apply to it, from its name (:mod:`.naming`) or the config's explicit
mapping, creates per-series detectors lazily, collects derived signals for storage, reports every
detector's health (including the ones that cannot run and why) and serialises everything to JSON.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from .balance import GANBalanceDetector
from .base import STATE_VERSION, Detector, _from_json, _to_json, as_arrays
from .collapse import CollapseDetector
from .findings import DetectorStatus, Finding
from .gradients import GradientDetector
from .naming import (
    GRAD_PREFIX,
    ROLE_NAMES,
    SIGNAL_PREFIX,
    is_loss,
    match_role,
    parse_grad_norm,
    role_priority,
)
from .nonfinite import NonFiniteDetector
from .oscillation import OscillationDetector
from .overfitting import DiscriminatorOverfittingDetector
from .spikes import DriftDetector, SpikeDetector

__all__ = ["SuiteConfig", "DetectorSuite", "FAMILIES", "COLLAPSE_SIGNALS"]

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
}
_SUBJECT_ARG = {"spike": "series", "drift": "series", "oscillation": "series",
                "gradients": "module"}

#: Collapse metrics stored as ``stethoscope/collapse/<name>`` after each evaluation.
COLLAPSE_SIGNALS = (
    "coverage", "recall", "vendi", "vendi_ratio", "coverage_ratio", "recall_ratio",
    "distance_ratio", "duplicate_rate", "effective_rank", "effective_rank_ratio",
    "effective_rank_vs_best",
)
#: Roles whose series are D's outputs, not losses (never fed to the spike and drift detectors).
_OUTPUT_ROLES = ("d_real", "d_fake", "d_real_sign")


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
        ``overfitting``, ``collapse``.
    spike_grad_norms
        Also run the spike detector on each module's total gradient norm
        (``grad_norm/<module>/total``), since gradient-norm spikes often come before loss
        spikes (default True).
    drift_gan_losses
        Also run the drift detector on the GAN discriminator and generator losses (default
        False: adversarial losses rise and fall in healthy runs, e.g. the D loss climbs towards
        2 ln 2 as G catches up; their divergence is covered by the NaN, spike, oscillation and
        balance detectors).
    nonfinite, spike, drift, oscillation, gradients, balance, overfitting, collapse
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
                _build(fam, "probe", params)
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
    import inspect

    sig = inspect.signature(cls.__init__)
    subject = {"series", "module"}
    return [n for n in sig.parameters if n != "self" and n not in subject]


def _build(family: str, subject: str | None, params: Mapping[str, Any]) -> Detector:
    cls = FAMILIES[family]
    arg = _SUBJECT_ARG.get(family)
    if arg:
        return cls(**{arg: subject}, **dict(params))
    return cls(**dict(params))


class DetectorSuite:
    """Every detector of one run.

    Parameters
    ----------
    config
        A :class:`SuiteConfig`, a plain mapping accepted by :meth:`SuiteConfig.from_mapping`,
        or None for the defaults.

    Examples
    --------
    >>> import numpy as np
    >>> suite = DetectorSuite({"spike": {"warn_z": 8.0}})
    >>> steps = np.arange(100)
    >>> loss = np.r_[np.full(60, 0.7), np.nan, np.full(39, 0.7)]
    >>> [(f.key, f.step) for f in suite.update_scalars({"errD": (steps, loss)})]
    [('divergence/nonfinite', 60)]
    >>> sorted({s.name: s.state for s in suite.health()}.items())[:3]
    [('balance', 'ok'), ('collapse', 'unavailable'), ('drift:gan_losses', 'unavailable')]
    """

    def __init__(self, config: SuiteConfig | Mapping[str, Any] | None = None) -> None:
        self.config = SuiteConfig.from_mapping(config)
        self._init_state()

    def _init_state(self) -> None:
        cfg = self.config
        self._seen: list[str] = []
        self._seen_set: set[str] = set()
        self._roles: dict[str, str] = dict(cfg.roles)
        self._nonfinite = _build("nonfinite", None, cfg.nonfinite)
        self._balance = _build("balance", None, cfg.balance)
        self._overfitting = _build("overfitting", None, cfg.overfitting)
        self._collapse = _build("collapse", None, cfg.collapse)
        self._per: dict[str, dict[str, Detector]] = {
            "spike": {}, "drift": {}, "oscillation": {}, "gradients": {}
        }
        self._signals: dict[str, tuple[list[int], list[float]]] = {}
        self._embedding_note = ""

    # ------------------------------------------------------------------------------ routing
    def _bind_roles(self, names: Iterable[str]) -> None:
        explicit = set(self.config.roles.values())
        candidates: dict[str, list[str]] = {}
        for name in names:
            if name in explicit:
                continue
            role = match_role(name)
            if role is not None and role not in self._roles:
                candidates.setdefault(role, []).append(name)
        for role, names_ in candidates.items():
            self._roles[role] = min(names_, key=lambda n: (role_priority(role, n), n))

    def _role_of(self) -> dict[str, str]:
        return {name: role for role, name in self._roles.items()}

    def _is_loss(self, name: str, role: str | None) -> bool:
        if role in _OUTPUT_ROLES:
            return self.config.losses is not None and name in self.config.losses
        if self.config.losses is not None:
            return name in self.config.losses or role in ("loss_d", "loss_g")
        return is_loss(name) or role in ("loss_d", "loss_g")

    def _get(self, family: str, subject: str) -> Detector:
        det = self._per[family].get(subject)
        if det is None:
            det = _build(family, subject, getattr(self.config, family))
            self._per[family][subject] = det
        return det

    # ------------------------------------------------------------------------------ scalars
    def update_scalars(self, batch: Mapping[str, tuple[Any, Any]]) -> list[Finding]:
        """Feed new points: ``{series name: (steps int64 array, values float64 array)}``.

        Returns the findings they caused, ordered by step.
        """
        cfg = self.config
        clean: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, pair in batch.items():
            if name.startswith(SIGNAL_PREFIX) or name in cfg.ignore:
                continue
            try:
                steps, values = pair
            except (TypeError, ValueError):
                raise ValueError(
                    f"series {name!r}: expected a (steps, values) pair of arrays"
                ) from None
            s, v = as_arrays(steps, values)
            if s.size == 0:
                continue
            clean[name] = (s, v)
            if name not in self._seen_set:
                self._seen_set.add(name)
                self._seen.append(name)
        self._bind_roles(clean)
        role_of = self._role_of()
        out: list[Finding] = []
        on = cfg.is_enabled
        grads: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        role_data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        watched: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, (s, v) in clean.items():
            gn = parse_grad_norm(name)
            role = role_of.get(name)
            if gn is not None:
                grads.setdefault(gn[0], {})[gn[1]] = (s, v)
                watched[name] = (s, v)
                if gn[1] == "total" and cfg.spike_grad_norms and on("spike"):
                    out += self._get("spike", name).update(s, v)
                continue
            loss = self._is_loss(name, role)
            if loss or role:
                watched[name] = (s, v)
            if loss:
                if on("spike"):
                    out += self._get("spike", name).update(s, v)
                gan = role in ("loss_d", "loss_g")
                if on("drift") and (cfg.drift_gan_losses or not gan):
                    out += self._get("drift", name).update(s, v)
            if role == "d_real_sign":
                if on("overfitting"):
                    out += self._overfitting.update(s, v)
            elif role is not None:
                role_data[role] = (s, v)
                if role in ("loss_d", "loss_g") and on("oscillation"):
                    out += self._get("oscillation", name).update(s, v)
        if watched and on("nonfinite"):
            out += self._nonfinite.update_many(watched)
        if on("gradients"):
            for module, norms in grads.items():
                out += self._get("gradients", module).update(norms)
        if role_data and on("balance"):
            out += self._update_balance(role_data)
            for key, (steps, values) in self._balance.pop_signals().items():
                sig = self._signals.setdefault(f"{SIGNAL_PREFIX}{key}", ([], []))
                sig[0].extend(steps)
                sig[1].extend(values)
        out.sort(key=lambda f: f.step)
        return out

    def _update_balance(self, role_data: Mapping[str, tuple[np.ndarray, np.ndarray]]):
        steps = np.unique(np.concatenate([s for s, _ in role_data.values()]))
        aligned: dict[str, np.ndarray] = {}
        for role, (s, v) in role_data.items():
            col = np.full(steps.size, np.nan)
            col[np.searchsorted(steps, s)] = v
            aligned[role] = col
        return self._balance.update(steps, **aligned)

    # ------------------------------------------------------------------------------ embeddings
    def update_embeddings(self, step: int, embeddings: Mapping[str, Any]) -> list[Finding]:
        """Feed one evaluation: ``{"fake": (n, d) array, "real": (m, d) array (optional)}``."""
        if not self.config.is_enabled("collapse"):
            return []
        fake = embeddings.get("fake")
        if fake is None:
            self._embedding_note = (
                f"embeddings at step {step} had no 'fake' batch (got {sorted(embeddings)}); "
                f"log generated samples as fake=..."
            )
            return []
        self._embedding_note = ""
        found = self._nonfinite_embeddings(int(step), embeddings)
        found += self._collapse.update(int(step), fake, embeddings.get("real"))
        for key in COLLAPSE_SIGNALS:
            value = self._collapse.last_metrics.get(key)
            # a derived ratio without a reference yet (NaN) is no point: NaN markers are for
            # what the training itself produced
            if value is not None and np.isfinite(value):
                steps, values = self._signals.setdefault(f"{SIGNAL_PREFIX}collapse/{key}",
                                                         ([], []))
                steps.append(int(step))
                values.append(float(value))
        return found

    def _nonfinite_embeddings(self, step: int, embeddings: Mapping[str, Any]) -> list[Finding]:
        """NaN is the finding in embeddings too: each batch's mean goes to the NaN detector as
        the series ``embeddings/<name>``, so a NaN or Inf anywhere in it raises the critical
        divergence alert (the collapse detector itself skips non-finite rows)."""
        if not self.config.is_enabled("nonfinite"):
            return []
        batch = {}
        for name, data in embeddings.items():
            arr = np.asarray(data, dtype=np.float64)
            if arr.size:
                batch[f"embeddings/{name}"] = (np.array([step]), np.array([arr.mean()]))
        with np.errstate(invalid="ignore", over="ignore"):
            return self._nonfinite.update_many(batch) if batch else []

    def drain_signals(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Derived series produced since the last call, ``{name: (steps, values)}``."""
        out = {
            name: (np.asarray(s, dtype=np.int64), np.asarray(v, dtype=np.float64))
            for name, (s, v) in self._signals.items()
        }
        self._signals = {}
        return out

    # ------------------------------------------------------------------------------ health
    def health(self) -> list[DetectorStatus]:
        """One status per detector, including those that cannot run, and why."""
        cfg = self.config
        rows: list[DetectorStatus] = []
        seen = self._seen

        def off(family: str) -> DetectorStatus:
            return DetectorStatus(family, "unavailable",
                                  f"disabled in config (enabled.{family} = false)")

        rows.append(self._nonfinite.status() if cfg.is_enabled("nonfinite") else off("nonfinite"))
        some = ", ".join(seen[:5]) + (" ..." if len(seen) > 5 else "")
        for fam in ("spike", "drift"):
            if not cfg.is_enabled(fam):
                rows.append(off(fam))
                continue
            dets = [d for k, d in self._per[fam].items() if not k.startswith(GRAD_PREFIX)]
            if fam == "drift" and not cfg.drift_gan_losses:
                gan = [self._roles[r] for r in ("loss_d", "loss_g") if r in self._roles]
                if gan:
                    rows.append(DetectorStatus(
                        "drift:gan_losses", "unavailable",
                        f"not run on the GAN losses {', '.join(gan)} (adversarial losses rise "
                        f"and fall in healthy runs); set config drift_gan_losses=true to enable",
                    ))
                    if not dets:
                        continue
            if not dets:
                rows.append(DetectorStatus(
                    fam, "unavailable",
                    "no loss series yet: no series name contains 'loss' or matches a GAN loss "
                    f"({len(seen)} series seen{': ' + some if seen else ''}); "
                    "list yours in config losses=[...]",
                ))
            rows += [d.status() for d in self._per[fam].values()]
        if not cfg.is_enabled("oscillation"):
            rows.append(off("oscillation"))
        elif not self._per["oscillation"]:
            rows.append(DetectorStatus(
                "oscillation", "unavailable",
                "needs a GAN loss series (loss_D, errD, loss_G, errG, ...) or config roles",
            ))
        else:
            rows += [d.status() for d in self._per["oscillation"].values()]
        if not cfg.is_enabled("gradients"):
            rows.append(off("gradients"))
        elif not self._per["gradients"]:
            rows.append(DetectorStatus(
                "gradients", "unavailable",
                "no gradient norms (grad_norm/<module>/<param>); call "
                "Monitor.watch(module, name=...)",
            ))
        else:
            rows += [d.status() for d in self._per["gradients"].values()]
        if not cfg.is_enabled("balance"):
            rows.append(off("balance"))
        else:
            st = self._balance.status()
            if st.state == "unavailable":
                st = DetectorStatus(st.name, st.state, st.reason + (
                    f" among {len(seen)} series ({some})" if seen else "") +
                    "; map yours with config roles={'d_real': ..., 'd_fake': ..., 'loss_d': ...}")
            rows.append(st)
        if not cfg.is_enabled("overfitting"):
            rows.append(off("overfitting"))
        else:
            rows.append(self._overfitting.status())
        if not cfg.is_enabled("collapse"):
            rows.append(off("collapse"))
        else:
            st = self._collapse.status()
            if self._embedding_note:
                st = DetectorStatus(st.name, st.state, f"{st.reason}; {self._embedding_note}")
            rows.append(st)
        return rows

    @property
    def roles(self) -> Mapping[str, str]:
        """The series bound to each GAN role so far (explicit config first)."""
        return MappingProxyType(dict(self._roles))

    # ------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable snapshot of the whole suite (config included)."""
        return {
            "version": STATE_VERSION,
            "config": _to_json(self.config.to_dict()),
            "seen": list(self._seen),
            "roles": dict(self._roles),
            "nonfinite": self._nonfinite.state_dict(),
            "balance": self._balance.state_dict(),
            "overfitting": self._overfitting.state_dict(),
            "collapse": self._collapse.state_dict(),
            "per_series": {
                fam: {k: d.state_dict() for k, d in dets.items()} for fam, dets in self._per.items()
            },
            "signals": {k: [s, _to_json(v)] for k, (s, v) in self._signals.items()},
            "embedding_note": self._embedding_note,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict`; the saved config replaces the current one."""
        if not isinstance(state, Mapping) or state.get("version") != STATE_VERSION:
            raise ValueError(
                f"not a DetectorSuite state of version {STATE_VERSION} "
                f"(got version {state.get('version') if isinstance(state, Mapping) else None})"
            )
        self.config = SuiteConfig.from_mapping(state["config"])
        self._init_state()
        self._seen = list(state["seen"])
        self._seen_set = set(self._seen)
        self._roles = dict(state["roles"])
        self._nonfinite.load_state_dict(state["nonfinite"])
        self._balance.load_state_dict(state["balance"])
        if "overfitting" in state:  # absent from states saved before it existed
            self._overfitting.load_state_dict(state["overfitting"])
        self._collapse.load_state_dict(state["collapse"])
        for fam, dets in state["per_series"].items():
            if fam not in self._per:
                raise ValueError(f"unknown detector family {fam!r} in state")
            for subject, sd in dets.items():
                self._get(fam, subject).load_state_dict(sd)
        self._signals = {
            k: (list(map(int, s)), [float(x) for x in _from_json(v)])
            for k, (s, v) in state["signals"].items()
        }
        self._embedding_note = state.get("embedding_note", "")


