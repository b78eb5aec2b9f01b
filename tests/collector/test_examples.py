"""Tests of the demo trainings: the mixture ground truth and the GAN scenarios it measures."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from stethoscope.collector.examples.gan_mixture import (  # noqa: E402
    SCENARIOS,
    GanConfig,
    build_parser,
    config_for,
    train,
)
from stethoscope.collector.examples.mixtures import (  # noqa: E402
    EVAL_SAMPLES,
    make_grid25,
    make_ring8,
    mode_stats,
    sample,
)


def _on_modes(centres: np.ndarray, modes: list[int], n: int, std: float) -> np.ndarray:
    """``n`` points spread evenly over the given modes, each within 1 std of its centre."""
    rng = np.random.default_rng(0)
    idx = np.resize(np.asarray(modes), n)
    offsets = rng.uniform(-0.5, 0.5, size=(n, 2)) * std  # |offset| < 0.71 std < 3 std
    return centres[idx] + offsets


def test_ring_has_eight_distinct_centres_on_radius_two() -> None:
    ring = make_ring8()
    assert ring.centres.shape == (8, 2)
    assert len({tuple(np.round(c, 9)) for c in ring.centres}) == 8
    np.testing.assert_allclose(np.linalg.norm(ring.centres, axis=1), 2.0)
    # endpoint excluded: neighbouring centres are 45 degrees apart all the way round
    gaps = np.diff(np.unwrap(np.arctan2(ring.centres[:, 1], ring.centres[:, 0])))
    np.testing.assert_allclose(gaps, np.pi / 4)
    assert ring.std == 0.02


def test_grid_has_twenty_five_centres() -> None:
    grid = make_grid25()
    assert grid.centres.shape == (25, 2)
    assert set(np.unique(grid.centres)) == {-4.0, -2.0, 0.0, 2.0, 4.0}
    assert grid.std == 0.05


def test_real_samples_score_as_perfect() -> None:
    for mix in (make_ring8(), make_grid25()):
        x = sample(mix, EVAL_SAMPLES, np.random.default_rng(1))
        modes, hq = mode_stats(x, mix.centres, mix.std)
        assert modes == mix.n_modes
        assert hq > 0.97  # P(|N(0, I)| <= 3) = 1 - exp(-4.5) = 0.989


def test_mode_stats_all_eight_modes() -> None:
    ring = make_ring8()
    x = _on_modes(ring.centres, list(range(8)), EVAL_SAMPLES, ring.std)
    assert mode_stats(x, ring.centres, ring.std) == (8, 1.0)


def test_mode_stats_two_modes() -> None:
    ring = make_ring8()
    x = _on_modes(ring.centres, [0, 3], EVAL_SAMPLES, ring.std)
    assert mode_stats(x, ring.centres, ring.std) == (2, 1.0)


def test_mode_stats_off_mode_noise_counts_nothing() -> None:
    ring = make_ring8()
    # points on the ring but half-way between centres, and points at the origin
    half = np.pi / 8 + 2 * np.pi * np.arange(8) / 8
    between = 2.0 * np.stack([np.cos(half), np.sin(half)], axis=1)
    x = np.concatenate([np.resize(between, (1250, 2)), np.zeros((1250, 2))])
    assert mode_stats(x, ring.centres, ring.std) == (0, 0.0)


def test_mode_stats_needs_one_percent_per_mode() -> None:
    ring = make_ring8()
    # 24 of 2,500 samples (< 1 %) on mode 5, the rest on mode 0: only mode 0 is captured
    x = np.concatenate(
        [
            _on_modes(ring.centres, [5], 24, ring.std),
            _on_modes(ring.centres, [0], EVAL_SAMPLES - 24, ring.std),
        ]
    )
    assert mode_stats(x, ring.centres, ring.std)[0] == 1
    x[:25] = _on_modes(ring.centres, [5], 25, ring.std)
    assert mode_stats(x, ring.centres, ring.std)[0] == 2


def test_mode_stats_nonfinite_samples_are_low_quality() -> None:
    ring = make_ring8()
    x = _on_modes(ring.centres, list(range(8)), EVAL_SAMPLES, ring.std)
    x[:1250] = np.nan  # the other half still covers every mode (1,250 / 8 >= 25 each)
    modes, hq = mode_stats(x, ring.centres, ring.std)
    assert modes == 8
    assert hq == pytest.approx(0.5)


class _RecordingMonitor:
    """Stands in for ``stethoscope.collector.Monitor`` and records what the training sends."""

    def __init__(self) -> None:
        self.watched: list[str] = []
        self.scalars: dict[str, list[tuple[int, float]]] = {}
        self.embeddings: list[tuple[int, dict[str, np.ndarray]]] = []

    def watch(self, module: torch.nn.Module, name: str) -> None:
        assert isinstance(module, torch.nn.Module)
        self.watched.append(name)

    def log(self, step: int, **scalars: object) -> None:
        for k, v in scalars.items():
            self.scalars.setdefault(k, []).append((step, float(v)))  # type: ignore[arg-type]

    def log_embeddings(self, step: int, **arrays: np.ndarray) -> None:
        self.embeddings.append((step, arrays))


def test_short_training_runs_and_streams() -> None:
    mon = _RecordingMonitor()
    seen: list[int] = []
    result = train(
        config_for("healthy", steps=300), monitor=mon, on_step=lambda s, _: seen.append(s)
    )
    assert result.steps_run == 300
    assert result.losses_d.shape == result.losses_g.shape == (300,)
    assert np.all(np.isfinite(result.losses_d)) and np.all(np.isfinite(result.losses_g))
    assert seen == list(range(300))
    assert mon.watched == ["G", "D"]
    assert {"loss_D", "loss_G", "D_x", "D_G_z", "gt/modes_captured", "gt/high_quality"} <= set(
        mon.scalars
    )
    assert [s for s, _ in mon.scalars["gt/modes_captured"]] == [0, 100, 200, 299]
    step, arrays = mon.embeddings[0]
    assert step == 0 and arrays["fake"].shape == (512, 2) and arrays["real"].shape == (512, 2)


def test_on_step_can_stop_training() -> None:
    result = train(config_for("healthy", steps=300), on_step=lambda s, _: s == 9)
    assert result.steps_run == 10


def test_cli_overrides_scenario_defaults() -> None:
    args = build_parser().parse_args(["--run", "r", "--scenario", "collapse", "--seed", "3"])
    assert args.seed == 3 and args.steps is None and args.scenario == "collapse"
    assert set(SCENARIOS) == {"healthy", "collapse", "diverge"}
    assert config_for("collapse", seed=3, steps=None).steps == SCENARIOS["collapse"]["steps"]
    assert config_for("healthy") == GanConfig()
    with pytest.raises(ValueError):
        config_for("nope")


def test_healthy_keeps_the_ring() -> None:
    result = train(config_for("healthy", seed=0))
    assert result.final_modes >= 7
    assert result.high_quality[-1] > 0.7
    assert np.all(np.isfinite(result.losses_d)) and np.all(np.isfinite(result.losses_g))


def test_collapse_learns_then_collapses() -> None:
    result = train(config_for("collapse", seed=0))
    assert max(result.modes) >= 7  # it had the ring ...
    assert result.final_modes <= 3  # ... and lost it
    assert result.collapse_onset() is not None
    assert result.collapse_onset() > SCENARIOS["collapse"]["switch_step"]


def test_diverge_produces_nan() -> None:
    result = train(config_for("diverge", seed=0))
    assert result.first_nonfinite_step is not None
    assert result.first_nonfinite_step >= SCENARIOS["diverge"]["switch_step"]
    assert result.steps_run == result.first_nonfinite_step + 1 + GanConfig().nan_patience
    assert np.all(np.isfinite(result.losses_d[: SCENARIOS["diverge"]["switch_step"]]))
