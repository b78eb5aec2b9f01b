import json
import math

import pytest

from stethoscope.detectors import DetectorStatus, Finding, Remedy


def make(**kw):
    base = dict(detector="nonfinite", kind="divergence", key="divergence/nonfinite",
                severity="critical", status="firing", step=3, message="m",
                evidence={"value": math.nan, "n": 2}, remedies=(Remedy("a", "b"),),
                subject="loss")
    base.update(kw)
    return Finding(**base)


def test_to_dict_is_json_ready_and_keeps_nan():
    d = make().to_dict()
    assert d["remedies"] == [{"action": "a", "citation": "b"}]
    assert math.isnan(d["evidence"]["value"]) and d["evidence"]["n"] == 2.0
    assert isinstance(d["evidence"]["n"], float)
    json.dumps(d)  # Python's json writes NaN; strict encoders must map it themselves


def test_finding_is_frozen_and_evidence_read_only():
    f = make()
    with pytest.raises(AttributeError):
        f.step = 4
    with pytest.raises(TypeError):
        f.evidence["x"] = 1.0


def test_equal_findings_with_nan_evidence_compare_equal():
    assert make() == make()
    assert make() != make(step=4)


@pytest.mark.parametrize("field,value", [("kind", "boom"), ("severity", "high"),
                                         ("status", "open")])
def test_invalid_enumerations_are_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        make(**{field: value})


def test_detector_status_validates_state():
    assert DetectorStatus("x", "waiting", "r").to_dict()["state"] == "waiting"
    with pytest.raises(ValueError, match="state"):
        DetectorStatus("x", "broken", "r")


def test_findings_pickle_and_deepcopy():
    import copy
    import pickle

    f = make()
    assert pickle.loads(pickle.dumps(f)) == f
    assert copy.deepcopy(f) == f
    with pytest.raises(TypeError):
        f.evidence.update(x=1.0)
