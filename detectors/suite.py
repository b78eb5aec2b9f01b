"""One run's detectors behind one object: routing, lazy creation, health and persistence.

:class:`DetectorSuite` is what the server holds per run (see docs/architecture.md). It routes each
series to the detectors that apply to it, from its name (:mod:`.naming`) or the config's explicit
mapping, creates per-series detectors lazily, picks remedies that fit the model family (GAN
remedies for GANs), collects derived signals for storage, reports every detector's health
(including the ones that cannot run, and why) and serialises everything to JSON.

Two shapes of input, as the detectors have: scalar points (:meth:`DetectorSuite.update_scalars`)
and embedding evaluations (:meth:`DetectorSuite.measure_embeddings`, the expensive pure part,
then :meth:`DetectorSuite.update_embeddings`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from . import remedies
from .balance import GANBalanceDetector
from .base import STATE_VERSION, Detector, _from_json, _to_json, as_arrays
from .collapse import SIGNALS as COLLAPSE_METRICS
from .collapse import CollapseDetector
from .config import SuiteConfig, build
from .findings import DetectorStatus, Finding
from .naming import GRAD_PREFIX, SIGNAL_PREFIX, is_loss, match_role, parse_grad_norm, role_priority
from .nonfinite import NonFiniteDetector
from .overfitting import DiscriminatorOverfittingDetector
from .rank import DimensionalCollapseDetector
from .stall import PinnedLossDetector

__all__ = ["DetectorSuite", "COLLAPSE_SIGNALS"]

SUITE_STATE_VERSION = 2
#: Embedding metrics stored as ``stethoscope/collapse/<name>`` after each evaluation.
COLLAPSE_SIGNALS = COLLAPSE_METRICS + (
    "effective_rank", "effective_rank_ratio", "effective_rank_vs_best")
#: Roles whose series are D's outputs, not losses (never fed to the spike and drift detectors).
_OUTPUT_ROLES = ("d_real", "d_fake", "d_real_sign")
_GAN_ROLES = ("loss_d", "loss_g", "d_real", "d_fake")
_PER_SERIES = ("spike", "drift", "oscillation", "gradients")


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
    >>> loss = 0.7 + 0.01 * np.sin(steps)
    >>> loss[60] = np.nan
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
        self._nonfinite: NonFiniteDetector = build("nonfinite", None, cfg.nonfinite)
        self._balance: GANBalanceDetector = build("balance", None, cfg.balance)
        self._overfitting: DiscriminatorOverfittingDetector = build(
            "overfitting", None, cfg.overfitting)
        self._collapse: CollapseDetector = build("collapse", None, cfg.collapse)
        self._rank: DimensionalCollapseDetector = build("rank", None, cfg.rank)
        self._stall: PinnedLossDetector = build("stall", None, cfg.stall)
        self._per: dict[str, dict[str, Detector]] = {fam: {} for fam in _PER_SERIES}
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

    @property
    def is_gan(self) -> bool:
        """True once a GAN role (D or G loss, D's outputs) is bound: GAN remedies apply."""
        return any(role in self._roles for role in _GAN_ROLES)

    def _is_loss(self, name: str, role: str | None) -> bool:
        if role in _OUTPUT_ROLES:
            return self.config.losses is not None and name in self.config.losses
        if self.config.losses is not None:
            return name in self.config.losses or role in ("loss_d", "loss_g")
        return is_loss(name) or role in ("loss_d", "loss_g")

    def _get(self, family: str, subject: str) -> Detector:
        det = self._per[family].get(subject)
        if det is None:
            det = build(family, subject, getattr(self.config, family))
            self._per[family][subject] = det
        return det

    def _fit(self, findings: list[Finding]) -> list[Finding]:
        """Remedies that fit the model family, ordered by step."""
        if self.is_gan:
            findings = [
                dataclasses.replace(f, remedies=remedies.for_gan(f.key, f.remedies))
                if f.status == "firing" else f
                for f in findings
            ]
        findings.sort(key=lambda f: f.step)
        return findings

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
        on = cfg.is_enabled
        out: list[Finding] = []
        grads: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        by_role: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        watched: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        losses: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, sv in clean.items():
            gn = parse_grad_norm(name)
            role = role_of.get(name)
            if gn is not None:
                grads.setdefault(gn[0], {})[gn[1]] = sv
                watched[name] = sv
                if gn[1] == "total" and cfg.spike_grad_norms and on("spike"):
                    out += self._get("spike", name).update({name: sv})
                continue
            loss = self._is_loss(name, role)
            if loss or role:
                watched[name] = sv
            if loss:
                losses[name] = sv
                if on("spike"):
                    out += self._get("spike", name).update({name: sv})
                gan = role in ("loss_d", "loss_g")
                if on("drift") and (cfg.drift_gan_losses or not gan):
                    out += self._get("drift", name).update({name: sv})
            if role == "d_real_sign":
                if on("overfitting"):
                    out += self._overfitting.update({name: sv})
            elif role is not None:
                by_role[role] = sv
                if role in ("loss_d", "loss_g") and on("oscillation"):
                    out += self._get("oscillation", name).update({name: sv})
        if watched and on("nonfinite"):
            out += self._nonfinite.update(watched)
        if losses and on("stall"):
            self._stall.mark_main(self._roles[r] for r in ("loss_d", "loss_g")
                                  if r in self._roles)
            out += self._stall.update(losses)
        if on("gradients"):
            for module, norms in grads.items():
                out += self._get("gradients", module).update(norms)
        if by_role and on("balance"):
            out += self._balance.update(by_role)
            for key, (steps, values) in self._balance.pop_signals().items():
                self._add_signal(key, steps, values)
        return self._fit(out)

    def _add_signal(self, key: str, steps: Iterable[int], values: Iterable[float]) -> None:
        sig = self._signals.setdefault(f"{SIGNAL_PREFIX}{key}", ([], []))
        sig[0].extend(int(s) for s in steps)
        sig[1].extend(float(v) for v in values)

    # ------------------------------------------------------------------------------ embeddings
    def measure_embeddings(self, step: int, embeddings: Mapping[str, Any]) -> dict[str, Any]:
        """The expensive, pure part of one evaluation (safe to run outside any lock); pass the
        result to :meth:`update_embeddings`."""
        out: dict[str, Any] = {}
        if self.config.is_enabled("collapse"):
            out["collapse"] = self._collapse.measure(step, embeddings)
        if self.config.is_enabled("rank"):
            out["rank"] = self._rank.measure(step, embeddings)
        return out

    def update_embeddings(self, step: int, embeddings: Mapping[str, Any],
                          measured: Mapping[str, Any] | None = None) -> list[Finding]:
        """Feed one evaluation: ``{"fake": (n, d) array, "real": (m, d) array (optional)}``."""
        cfg = self.config
        if not (cfg.is_enabled("collapse") or cfg.is_enabled("rank")):
            return []
        if embeddings.get("fake") is None:
            self._embedding_note = (
                f"embeddings at step {step} had no 'fake' batch (got {sorted(embeddings)}); "
                f"log generated samples as fake=..."
            )
            return []
        self._embedding_note = ""
        if measured is None:
            measured = self.measure_embeddings(step, embeddings)
        found = self._nonfinite_embeddings(int(step), embeddings)
        if "collapse" in measured:
            found += self._collapse.update(step, embeddings, measured["collapse"])
        if "rank" in measured:
            # point collapse implies rank collapse: say it once, as mode collapse (also while
            # the collapse detector's smoothed score is still catching up with a low batch)
            point = self._collapse.firing or self._collapse.last_metrics.get(
                "mode_score", 1.0) <= self._collapse.threshold
            found += [f for f in self._rank.update(step, embeddings, measured["rank"])
                      if not (f.status == "firing" and point)]
        metrics = {**self._collapse.last_metrics, **self._rank.last_metrics}
        for key in COLLAPSE_SIGNALS:
            value = metrics.get(key)
            # a derived ratio without a reference yet (NaN) is no point: NaN markers are for
            # what the training itself produced
            if value is not None and np.isfinite(value):
                self._add_signal(f"collapse/{key}", [int(step)], [float(value)])
        return self._fit(found)

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
                with np.errstate(invalid="ignore", over="ignore"):
                    batch[f"embeddings/{name}"] = (np.array([step]), np.array([arr.mean()]))
        return self._nonfinite.update(batch) if batch else []

    @property
    def has_signals(self) -> bool:
        """True when derived points are waiting for :meth:`drain_signals`."""
        return any(steps for steps, _ in self._signals.values())

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
        rows.append(self._stall.status() if cfg.is_enabled("stall") else off("stall"))
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
        rows.append(self._overfitting.status() if cfg.is_enabled("overfitting")
                    else off("overfitting"))
        for fam, det in (("collapse", self._collapse), ("rank", self._rank)):
            if not cfg.is_enabled(fam):
                rows.append(off(fam))
                continue
            st = det.status()
            if self._embedding_note:
                st = DetectorStatus(st.name, st.state, f"{st.reason}; {self._embedding_note}")
            rows.append(st)
        return rows

    @property
    def roles(self) -> Mapping[str, str]:
        """The series bound to each GAN role so far (explicit config first)."""
        return MappingProxyType(dict(self._roles))

    # ------------------------------------------------------------------------------ state
    def _singles(self) -> dict[str, Detector]:
        return {"nonfinite": self._nonfinite, "balance": self._balance,
                "overfitting": self._overfitting, "collapse": self._collapse,
                "rank": self._rank, "stall": self._stall}

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable snapshot of the whole suite (config included)."""
        return {
            "version": SUITE_STATE_VERSION,
            "detector_version": STATE_VERSION,
            "config": _to_json(self.config.to_dict()),
            "seen": list(self._seen),
            "roles": dict(self._roles),
            **{name: det.state_dict() for name, det in self._singles().items()},
            "per_series": {
                fam: {k: d.state_dict() for k, d in dets.items()} for fam, dets in self._per.items()
            },
            "signals": {k: [s, _to_json(v)] for k, (s, v) in self._signals.items()},
            "embedding_note": self._embedding_note,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict`; the saved config replaces the current one."""
        if not isinstance(state, Mapping) or state.get("version") != SUITE_STATE_VERSION:
            raise ValueError(
                f"not a DetectorSuite state of version {SUITE_STATE_VERSION} "
                f"(got version {state.get('version') if isinstance(state, Mapping) else None})"
            )
        self.config = SuiteConfig.from_mapping(state["config"])
        self._init_state()
        self._seen = list(state["seen"])
        self._seen_set = set(self._seen)
        self._roles = dict(state["roles"])
        for name, det in self._singles().items():
            det.load_state_dict(state[name])
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
