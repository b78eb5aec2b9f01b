from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest

from stethoscope.collector import Alert, Remedy
from stethoscope.collector.alerts import AlertBook
from stethoscope.collector.wire import (
    Batch,
    build_batches,
    decode_value,
    encode_values,
    json_safe,
)
from tests.collector.fakes import alert


def test_nonfinite_values_become_wire_strings_and_back() -> None:
    vals = np.array([0.5, math.nan, math.inf, -math.inf, -2.0])
    enc = encode_values(vals)
    assert enc == [0.5, "NaN", "Infinity", "-Infinity", -2.0]
    json.dumps(enc, allow_nan=False)  # valid strict JSON
    dec = [decode_value(v) for v in enc]
    assert dec[0] == 0.5 and math.isnan(dec[1]) and dec[2] == math.inf and dec[3] == -math.inf


def test_build_batches_splits_long_series_and_keeps_order() -> None:
    steps = np.arange(25)
    vals = np.where(steps == 7, np.nan, steps.astype(float))
    batches = build_batches({"a": (steps, vals), "b": (steps[:3], vals[:3])}, [], max_points=10)
    assert [b.points for b in batches] == [10, 10, 8]
    assert len({b.batch_id for b in batches}) == 3
    got_a: list[int] = []
    for b in batches:
        body = json.loads(b.body(alert_cursor=4))
        assert body["alert_cursor"] == 4 and body["batch_id"] == b.batch_id
        if "a" in body["scalars"]:
            got_a += body["scalars"]["a"]["steps"]
            if 7 in body["scalars"]["a"]["steps"]:
                i = body["scalars"]["a"]["steps"].index(7)
                assert body["scalars"]["a"]["values"][i] == "NaN"
    assert got_a == list(range(25))


def test_embeddings_are_base64_float32_c_order() -> None:
    arr = np.arange(12, dtype=np.float64).reshape(3, 4)
    (batch,) = build_batches({}, [(200, "fake", np.asfortranarray(arr))])
    body = json.loads(batch.body(0))
    (item,) = body["embeddings"]
    assert item["dtype"] == "float32" and item["shape"] == [3, 4] and item["step"] == 200
    back = np.frombuffer(base64.b64decode(item["data"]), dtype="<f4").reshape(3, 4)
    np.testing.assert_array_equal(back, arr.astype(np.float32))
    assert "scalars" not in body


def test_batch_survives_json_round_trip_for_the_spool() -> None:
    (b,) = build_batches({"x": (np.array([1]), np.array([2.0]))}, [])
    assert Batch.from_json(b.to_json()) == b


def test_json_safe_config() -> None:
    class Opaque:
        def __str__(self) -> str:
            return "opaque"

    cfg = json_safe({"lr": np.float32(0.5), "n": np.int64(3), "bad": math.nan, "t": (1, 2),
                     "o": Opaque(), 4: None, "nested": {"flag": True}})
    assert cfg == {"lr": 0.5, "n": 3, "bad": "NaN", "t": [1, 2], "o": "opaque", "4": None,
                   "nested": {"flag": True}}
    json.dumps(cfg, allow_nan=False)


def test_alert_parsing_and_book_notifications() -> None:
    book = AlertBook()
    due = book.update([alert(1, severity="warning")], 1)
    assert len(due) == 1 and isinstance(due[0], Alert)
    a = due[0]
    assert a.severity == "warning" and a.firing and a.kind == "divergence"
    assert math.isnan(a.evidence["value"]) and a.evidence["z"] == 12.5
    assert a.remedies == (Remedy("lower the learning rate", "Goodfellow 2014"),)
    assert book.cursor == 1
    # same severity again: no new notification; increase: notified
    assert book.update([alert(2, severity="warning")], 2) == []
    assert [x.severity for x in book.update([alert(3, severity="critical")], 3)] == ["critical"]
    # resolved: no notification, latest state kept; a new episode (reopened) is notified
    assert book.update([alert(4, status="resolved")], 4) == []
    assert book.alerts()[0].status == "resolved"
    assert len(book.update([alert(5, severity="warning", episodes=2)], 5)) == 1
    # stale update (lower seq) is ignored
    book.update([alert(2, severity="info")], None)
    assert book.alerts()[0].seq == 5 and book.cursor == 5


def test_an_episode_that_fired_and_resolved_unseen_is_notified_once() -> None:
    book = AlertBook()
    [a] = book.update([alert(7, severity="critical", status="resolved", resolved_step=53)], 7)
    assert (a.status, a.severity, a.resolved_step) == ("resolved", "critical", 53)
    assert "resolved at step 53" in str(a)
    assert book.update([alert(8, severity="critical", status="resolved")], 8) == []
    # info alerts (transient excursions) are never pushed to the training process
    assert book.update([{**alert(9, severity="info"), "id": 2}], 9) == []


def test_alert_is_frozen() -> None:
    a = Alert.from_wire(alert(1))
    with pytest.raises(AttributeError):
        a.severity = "info"  # type: ignore[misc]
