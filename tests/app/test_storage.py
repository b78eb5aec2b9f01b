"""SQLite store: chunks, idempotent batches, embeddings, alerts, state, on a real file."""

from __future__ import annotations

import numpy as np
import pytest

from stethoscope.app.storage import AlertChange, EmbeddingInput, RunNotFound, SQLiteStore


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "s.db")
    yield s
    s.close()


def test_series_from_many_batches_read_in_step_order(store: SQLiteStore) -> None:
    store.ingest_batch("r", "b2", {"x": (np.array([3, 4]), np.array([3.0, np.nan]))}, [])
    store.ingest_batch("r", "b1", {"x": (np.array([1, 2]), np.array([1.0, -np.inf]))}, [])
    data = store.read_series("r", "x")
    assert data.steps.tolist() == [1, 2, 3, 4]
    np.testing.assert_array_equal(data.values, [1.0, -np.inf, 3.0, np.nan])
    window = store.read_series("r", "x", start=2, end=3)
    assert window.steps.tolist() == [2, 3]
    assert store.get_run("r").last_step == 4


def test_duplicate_batch_writes_nothing(store: SQLiteStore) -> None:
    series = {"x": (np.array([1]), np.array([1.0]))}
    emb = [EmbeddingInput(1, "fake", np.zeros((2, 2)))]
    assert store.ingest_batch("r", "same", series, emb) == 1
    assert store.ingest_batch("r", "same", series, emb) is None
    assert store.ingest_batch("r", "next", series, []) == 2
    batch = store.read_batch("r", 1)
    assert list(batch.scalars) == ["x"] and batch.embeddings[0].data.shape == (2, 2)
    assert store.batch_seqs("r", after=0) == [1, 2] and store.batch_seqs("r", after=1) == [2]
    assert store.list_series("r")[0].points == 2  # "same" once, and "next"
    assert len(store.list_embeddings("r")) == 1


def test_same_batch_id_in_two_runs_is_two_batches(store: SQLiteStore) -> None:
    assert store.ingest_batch("a", "id", {}, []) and store.ingest_batch("b", "id", {}, [])


def test_data_persists_across_reopen(tmp_path) -> None:
    path = tmp_path / "p.db"
    s = SQLiteStore(path)
    s.upsert_run("r", config={"lr": 0.1, "nested": {"a": [1, 2]}})
    s.ingest_batch("r", "b", {"x": (np.array([0]), np.array([np.nan]))}, [])
    s.save_detector_state("r", {"k": [1, 2, 3]})
    s.close()
    s = SQLiteStore(path)
    assert s.get_run("r").config == {"lr": 0.1, "nested": {"a": [1, 2]}}
    assert np.isnan(s.read_series("r", "x").values[0])
    assert s.load_detector_state("r") == {"k": [1, 2, 3]}
    s.close()


def test_missing_folder_and_unknown_run_give_clear_errors(tmp_path, store: SQLiteStore) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        SQLiteStore(tmp_path / "no" / "such" / "x.db")
    with pytest.raises(RunNotFound):
        store.get_run("nope")
    with pytest.raises(RunNotFound):
        store.list_series("nope")


def test_alert_changes_bump_the_runs_sequence(store: SQLiteStore) -> None:
    store.upsert_run("r")
    change = AlertChange(
        run="r", kind="divergence", key="divergence/nonfinite", severity="critical",
        status="firing", step=5, message="NaN", evidence={"value": float("nan")},
        remedies=[{"action": "lower lr", "citation": "x"}], detector="nonfinite", subject="loss",
    )
    [created] = store.apply_alert_changes([change])
    assert created.seq == 1 and created.count == 1 and np.isnan(created.evidence["value"])
    resolved = AlertChange(**{**change.__dict__, "status": "resolved", "step": 9, "alert_id": created.id})
    [updated] = store.apply_alert_changes([resolved])
    assert (updated.id, updated.seq, updated.count, updated.status) == (created.id, 2, 2, "resolved")
    assert updated.first_step == 5 and updated.step == 5 and updated.resolved_step == 9
    assert updated.message == "NaN" and updated.resolved_at is not None
    assert store.list_alerts("r", after_seq=1) == [updated]
    assert store.list_alerts("r", status="firing") == []
    assert store.alert_cursor("r") == 2


def test_a_schema_1_database_is_migrated_in_place(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.execute("INSERT INTO runs (name, status, created_at, updated_at) VALUES ('old', 'finished', 1, 1)")
    conn.commit()
    conn.close()
    s = SQLiteStore(path)
    assert s.get_run("old").status == "finished" and s.batch_seqs("old", after=0) == []
    assert s.ingest_batch("old", "b", {"x": (np.array([0]), np.array([1.0]))}, []) == 1
    s.close()


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, status TEXT NOT NULL,
    config TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL, updated_at REAL NOT NULL,
    last_step INTEGER, health TEXT NOT NULL DEFAULT '{}', alert_seq INTEGER NOT NULL DEFAULT 0,
    detector_state TEXT, detectors TEXT NOT NULL DEFAULT '{}');
CREATE TABLE series (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL, points INTEGER NOT NULL DEFAULT 0, first_step INTEGER, last_step INTEGER,
    nonfinite INTEGER NOT NULL DEFAULT 0, UNIQUE (run_id, name));
CREATE TABLE chunks (id INTEGER PRIMARY KEY, series_id INTEGER NOT NULL REFERENCES series(id),
    first_step INTEGER NOT NULL, last_step INTEGER NOT NULL, n INTEGER NOT NULL,
    steps BLOB NOT NULL, vals BLOB NOT NULL);
CREATE TABLE batches (run_id INTEGER NOT NULL, batch_id TEXT NOT NULL, received_at REAL NOT NULL,
    PRIMARY KEY (run_id, batch_id)) WITHOUT ROWID;
CREATE TABLE embeddings (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL, name TEXT NOT NULL, n INTEGER NOT NULL, d INTEGER NOT NULL,
    data BLOB NOT NULL);
CREATE TABLE alerts (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),
    kind TEXT NOT NULL, key TEXT NOT NULL, severity TEXT NOT NULL, status TEXT NOT NULL,
    step INTEGER NOT NULL, first_step INTEGER NOT NULL, message TEXT NOT NULL,
    evidence TEXT NOT NULL, remedies TEXT NOT NULL, count INTEGER NOT NULL, seq INTEGER NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, resolved_at REAL, detector TEXT NOT NULL,
    subject TEXT);
"""
