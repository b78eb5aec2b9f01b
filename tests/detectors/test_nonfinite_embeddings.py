"""NaN is the finding in embeddings too: a non-finite embedding batch raises critical divergence."""

from __future__ import annotations

import numpy as np

from stethoscope.detectors import DetectorSuite


def test_nan_embeddings_raise_critical_divergence() -> None:
    rng = np.random.default_rng(0)
    suite = DetectorSuite()
    assert suite.update_embeddings(100, {"fake": rng.normal(size=(64, 4)), "real": rng.normal(size=(64, 4))}) == []
    fake = rng.normal(size=(64, 4))
    fake[3, 1] = np.nan
    [finding] = suite.update_embeddings(200, {"fake": fake, "real": rng.normal(size=(64, 4))})
    assert (finding.key, finding.severity, finding.step) == ("divergence/nonfinite", "critical", 200)
    assert "embeddings/fake" in finding.message


def test_all_nan_batch_is_not_silently_skipped() -> None:
    suite = DetectorSuite()
    found = suite.update_embeddings(300, {"fake": np.full((64, 4), np.nan)})
    assert [f.key for f in found] == ["divergence/nonfinite"]


def test_finite_embeddings_raise_nothing_and_the_switch_is_honoured() -> None:
    rng = np.random.default_rng(1)
    quiet = DetectorSuite({"enabled": {"nonfinite": False}})
    assert quiet.update_embeddings(300, {"fake": np.full((64, 4), np.inf)}) == []
    suite = DetectorSuite()
    for step in range(0, 1000, 100):
        assert suite.update_embeddings(step, {"fake": rng.normal(size=(64, 4))}) == []
