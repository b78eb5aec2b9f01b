"""Per-run configuration: the documented example, and errors that name the bad key."""

from __future__ import annotations

import json

import numpy as np
import pytest
from streams import healthy_loss

from stethoscope.detectors import FAMILIES, DetectorSuite, SuiteConfig

EXAMPLE = {"roles": {"loss_d": "errD", "loss_g": "errG"}, "spike": {"warn_z": 8},
           "enabled": {"drift": False}}


def test_documented_example_mapping():
    cfg = SuiteConfig.from_mapping(json.loads(json.dumps(EXAMPLE)))
    suite = DetectorSuite(cfg)
    t = np.arange(600)
    suite.update_scalars({"errD": (t, healthy_loss(600, 1)), "errG": (t, healthy_loss(600, 2)),
                          "val_loss": (t, healthy_loss(600, 3))})
    assert suite.roles["loss_d"] == "errD" and suite.roles["loss_g"] == "errG"
    rows = {s.name: s for s in suite.health()}
    assert rows["drift"].state == "unavailable" and "disabled" in rows["drift"].reason
    assert "spike:errD" in rows and "oscillation:errG" in rows
    assert suite._get("spike", "errD").warn_z == 8
    assert SuiteConfig.from_mapping(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "config,bad,valid",
    [
        ({"spikes": {"warn_z": 8}}, "'spikes' (did you mean 'spike'?)", "spike_grad_norms"),
        ({"spike": {"warm_z": 8}}, "'warm_z' (did you mean 'warn_z'?)", "critical_z"),
        ({"roles": {"loss_D": "errD"}}, "'loss_D' (did you mean 'loss_d'?)", "d_real_sign"),
        ({"enabled": {"drfit": False}}, "'drfit' (did you mean 'drift'?)", "overfitting"),
        ({"overfitting": {"treshold": 0.95}}, "'treshold' (did you mean 'threshold'?)",
         "hysteresis"),
        ({"collapse": {"zzz": 1}}, "'zzz'", "plateau_delta"),
    ],
)
def test_unknown_keys_are_named_with_every_valid_one(config, bad, valid):
    with pytest.raises(ValueError) as err:
        SuiteConfig.from_mapping(config)
    msg = str(err.value)
    assert bad in msg and valid in msg


def test_wrongly_typed_sections_and_values_name_the_field():
    for config, where in [({"roles": ["errD"]}, "config.roles"),
                          ({"enabled": {"drift": "no"}}, "config.enabled['drift']"),
                          ({"balance": 3}, "config.balance"),
                          ({"overfitting": {"threshold": 0.5}}, "config.overfitting: threshold"),
                          ({"collapse": {"blas_threads": 0}}, "config.collapse: blas_threads")]:
        with pytest.raises(ValueError, match=where.replace("[", r"\[").replace("]", r"\]")):
            SuiteConfig.from_mapping(config)


def test_every_family_is_configurable():
    assert set(FAMILIES) <= {f for f in SuiteConfig.__dataclass_fields__}
