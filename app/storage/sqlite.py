"""SQLite storage: the embedded default, one file, WAL mode.

Scalar series are stored in chunks (one row per series per ingested batch, steps and values as
little-endian binary arrays), not one row per point, so a million-point series is read with a few
thousand row fetches and no per-point Python work. NaN and +-Inf are kept bit for bit.

Each stored client batch gets a sequence number within its run, kept on its chunks and
embeddings, so the detectors can replay exactly the batches they have not consumed (their
cursors are saved with their state). Alerts keep their firing record when they resolve, and
every change is appended to ``alert_events``, the alert's history.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .base import (
    AlertChange,
    AlertEvent,
    AlertRecord,
    DetectorCursors,
    EmbeddingInfo,
    EmbeddingInput,
    EmbeddingRecord,
    RunNotFound,
    RunRecord,
    SeriesData,
    SeriesInfo,
    StoredBatch,
)

SCHEMA_VERSION = 2

#: What schema 2 added beside columns: batch-sequence indexes and the alerts' history.
_SCHEMA_2_TABLES = """
CREATE INDEX chunks_by_batch ON chunks (batch_seq, series_id);
CREATE INDEX batches_by_seq ON batches (run_id, seq);
CREATE INDEX embeddings_by_batch ON embeddings (run_id, batch_seq);
CREATE INDEX alerts_by_run_key ON alerts (run_id, key, id);
CREATE TABLE alert_events (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL REFERENCES alerts(id),
    run_id INTEGER NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    severity TEXT NOT NULL,
    step INTEGER NOT NULL,
    message TEXT NOT NULL,
    evidence TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX alert_events_by_run ON alert_events (run_id, alert_id, id);
"""

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    status TEXT NOT NULL,
    config TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_step INTEGER,
    health TEXT NOT NULL DEFAULT '{}',
    alert_seq INTEGER NOT NULL DEFAULT 0,
    detector_state TEXT,
    detectors TEXT NOT NULL DEFAULT '{}',
    batch_seq INTEGER NOT NULL DEFAULT 0,
    scalars_cursor INTEGER NOT NULL DEFAULT 0,
    embeddings_cursor INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE series (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    points INTEGER NOT NULL DEFAULT 0,
    first_step INTEGER,
    last_step INTEGER,
    nonfinite INTEGER NOT NULL DEFAULT 0,
    UNIQUE (run_id, name)
);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL REFERENCES series(id),
    first_step INTEGER NOT NULL,
    last_step INTEGER NOT NULL,
    n INTEGER NOT NULL,
    steps BLOB NOT NULL,
    vals BLOB NOT NULL,
    batch_seq INTEGER
);
CREATE INDEX chunks_by_series ON chunks (series_id, last_step);
CREATE TABLE batches (
    run_id INTEGER NOT NULL,
    batch_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    seq INTEGER,
    PRIMARY KEY (run_id, batch_id)
) WITHOUT ROWID;
CREATE TABLE embeddings (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    n INTEGER NOT NULL,
    d INTEGER NOT NULL,
    data BLOB NOT NULL,
    batch_seq INTEGER
);
CREATE INDEX embeddings_by_run ON embeddings (run_id, step);
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    step INTEGER NOT NULL,
    first_step INTEGER NOT NULL,
    message TEXT NOT NULL,
    evidence TEXT NOT NULL,
    remedies TEXT NOT NULL,
    count INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    resolved_at REAL,
    detector TEXT NOT NULL,
    subject TEXT,
    episodes INTEGER NOT NULL DEFAULT 1,
    resolved_step INTEGER,
    resolved_message TEXT,
    last_event TEXT NOT NULL DEFAULT 'fired'
);
CREATE INDEX alerts_by_run_seq ON alerts (run_id, seq);
""" + _SCHEMA_2_TABLES

#: From schema 1: batch sequence numbers and detector cursors (batches stored before have
#: none and are never replayed), the alerts' firing record and history.
_MIGRATE_1_TO_2 = """
ALTER TABLE runs ADD COLUMN batch_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN scalars_cursor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN embeddings_cursor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE chunks ADD COLUMN batch_seq INTEGER;
ALTER TABLE batches ADD COLUMN seq INTEGER;
ALTER TABLE embeddings ADD COLUMN batch_seq INTEGER;
ALTER TABLE alerts ADD COLUMN episodes INTEGER NOT NULL DEFAULT 1;
ALTER TABLE alerts ADD COLUMN resolved_step INTEGER;
ALTER TABLE alerts ADD COLUMN resolved_message TEXT;
ALTER TABLE alerts ADD COLUMN last_event TEXT NOT NULL DEFAULT 'fired';
""" + _SCHEMA_2_TABLES

_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


class SQLiteStore:
    """A :class:`~stethoscope.app.storage.base.Store` on one SQLite file.

    One connection serves every thread behind a lock: SQLite serialises writers anyway, and
    the server's work per request is small. ``path=":memory:"`` gives a throw-away store.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            parent = Path(self.path).expanduser().resolve().parent
            if not parent.is_dir():
                raise ValueError(
                    f"cannot create the database {self.path!r}: folder {str(parent)!r} does not "
                    "exist; create it or pass another --db path"
                )
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def _migrate(self) -> None:
        """Create the schema in a new file, or bring a schema-1 file to this version."""
        with self._transaction() as cur:
            fresh = cur.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='runs'"
            ).fetchone() is None
            if fresh:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        cur.execute(statement)
                cur.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                            (str(SCHEMA_VERSION),))
                return
            row = cur.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else 1
            if version == 1:
                for statement in _MIGRATE_1_TO_2.split(";"):
                    if statement.strip():
                        cur.execute(statement)
                cur.execute("UPDATE meta SET value=? WHERE key='schema_version'",
                            (str(SCHEMA_VERSION),))
            elif version != SCHEMA_VERSION:
                raise ValueError(
                    f"database {self.path!r} has schema version {version}, this server knows "
                    f"versions 1 to {SCHEMA_VERSION}; upgrade stethoscope or use another --db file"
                )

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _run_id(self, cur: sqlite3.Cursor | sqlite3.Connection, name: str) -> int:
        row = cur.execute("SELECT id FROM runs WHERE name=?", (name,)).fetchone()
        if row is None:
            raise RunNotFound(name)
        return int(row[0])

    def _ensure_run(self, cur: sqlite3.Cursor, name: str) -> int:
        row = cur.execute("SELECT id FROM runs WHERE name=?", (name,)).fetchone()
        if row is not None:
            return int(row[0])
        now = time.time()
        cur.execute(
            "INSERT INTO runs (name, status, config, created_at, updated_at) "
            "VALUES (?, 'running', '{}', ?, ?)",
            (name, now, now),
        )
        return int(cur.lastrowid)

    # ------------------------------------------------------------------ runs
    def upsert_run(
        self,
        name: str,
        *,
        config: Mapping[str, Any] | None = None,
        status: str | None = None,
        detectors: Mapping[str, Any] | None = None,
    ) -> RunRecord:
        with self._transaction() as cur:
            run_id = self._ensure_run(cur, name)
            now = time.time()
            if config is not None:
                cur.execute(
                    "UPDATE runs SET config=?, updated_at=? WHERE id=?",
                    (json.dumps(dict(config)), now, run_id),
                )
            if status is not None:
                cur.execute(
                    "UPDATE runs SET status=?, updated_at=? WHERE id=?", (status, now, run_id)
                )
            if detectors is not None:
                cur.execute(
                    "UPDATE runs SET detectors=?, updated_at=? WHERE id=?",
                    (json.dumps(dict(detectors)), now, run_id),
                )
        return self.get_run(name)

    _RUN_COLUMNS = "name, status, config, created_at, updated_at, last_step, health, detectors"

    @staticmethod
    def _run_record(row: tuple[Any, ...]) -> RunRecord:
        return RunRecord(
            name=row[0],
            status=row[1],
            config=json.loads(row[2]),
            created_at=row[3],
            updated_at=row[4],
            last_step=row[5],
            health=json.loads(row[6]),
            detectors=json.loads(row[7]),
        )

    def get_run(self, name: str) -> RunRecord:
        rows = self._read(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE name=?", (name,))
        if not rows:
            raise RunNotFound(name)
        return self._run_record(rows[0])

    def list_runs(self) -> list[RunRecord]:
        rows = self._read(f"SELECT {self._RUN_COLUMNS} FROM runs ORDER BY created_at DESC, id DESC")
        return [self._run_record(r) for r in rows]

    def set_health(self, name: str, health: Mapping[str, Any]) -> None:
        with self._transaction() as cur:
            cur.execute("UPDATE runs SET health=? WHERE name=?", (json.dumps(dict(health)), name))

    # ------------------------------------------------------------------ ingestion
    def ingest_batch(
        self,
        run: str,
        batch_id: str,
        scalars: Mapping[str, tuple[np.ndarray, np.ndarray]],
        embeddings: Sequence[EmbeddingInput],
    ) -> int | None:
        with self._transaction() as cur:
            run_id = self._ensure_run(cur, run)
            if cur.execute("SELECT 1 FROM batches WHERE run_id=? AND batch_id=?",
                           (run_id, batch_id)).fetchone():
                return None
            seq = int(cur.execute(
                "UPDATE runs SET batch_seq = batch_seq + 1 WHERE id=? RETURNING batch_seq",
                (run_id,),
            ).fetchone()[0])
            cur.execute(
                "INSERT INTO batches (run_id, batch_id, received_at, seq) VALUES (?, ?, ?, ?)",
                (run_id, batch_id, time.time(), seq),
            )
            self._write_series(cur, run_id, scalars, seq)
            for emb in embeddings:
                data = np.ascontiguousarray(emb.data, dtype="<f4")
                cur.execute(
                    "INSERT INTO embeddings (run_id, step, name, n, d, data, batch_seq) "
                    "VALUES (?,?,?,?,?,?,?)",
                    (run_id, int(emb.step), emb.name, data.shape[0], data.shape[1],
                     data.tobytes(), seq),
                )
            self._touch_run(cur, run_id, scalars, embeddings)
        return seq

    def batch_seqs(self, run: str, after: int) -> list[int]:
        with self._lock:
            run_id = self._run_id(self._conn, run)
            rows = self._conn.execute(
                "SELECT seq FROM batches WHERE run_id=? AND seq > ? ORDER BY seq",
                (run_id, int(after)),
            ).fetchall()
        return [int(r[0]) for r in rows]

    def read_batch(self, run: str, seq: int) -> StoredBatch:
        with self._lock:
            run_id = self._run_id(self._conn, run)
            rows = self._conn.execute(
                "SELECT s.name, c.steps, c.vals FROM chunks c JOIN series s ON s.id = c.series_id "
                "WHERE c.batch_seq=? AND s.run_id=? ORDER BY c.id",
                (int(seq), run_id),
            ).fetchall()
            erows = self._conn.execute(
                "SELECT step, name, n, d, data FROM embeddings WHERE run_id=? AND batch_seq=? "
                "ORDER BY id",
                (run_id, int(seq)),
            ).fetchall()
        scalars = {
            r[0]: (np.frombuffer(r[1], dtype="<i8").astype(np.int64),
                   np.frombuffer(r[2], dtype="<f8").astype(np.float64))
            for r in rows
        }
        return StoredBatch(int(seq), scalars, [self._embedding_record(r) for r in erows])

    def append_series(self, run: str, series: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        with self._transaction() as cur:
            run_id = self._run_id(cur, run)
            self._write_series(cur, run_id, series)

    def _write_series(
        self,
        cur: sqlite3.Cursor,
        run_id: int,
        series: Mapping[str, tuple[np.ndarray, np.ndarray]],
        batch_seq: int | None = None,
    ) -> None:
        for name, (steps, values) in series.items():
            steps = np.ascontiguousarray(steps, dtype="<i8")
            values = np.ascontiguousarray(values, dtype="<f8")
            if steps.size == 0:
                continue
            cur.execute(
                "INSERT INTO series (run_id, name) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (run_id, name),
            )
            series_id = cur.execute(
                "SELECT id FROM series WHERE run_id=? AND name=?", (run_id, name)
            ).fetchone()[0]
            first, last = int(steps.min()), int(steps.max())
            nonfinite = int(np.count_nonzero(~np.isfinite(values)))
            cur.execute(
                "INSERT INTO chunks (series_id, first_step, last_step, n, steps, vals, batch_seq) "
                "VALUES (?,?,?,?,?,?,?)",
                (series_id, first, last, steps.size, steps.tobytes(), values.tobytes(),
                 batch_seq),
            )
            cur.execute(
                "UPDATE series SET points = points + ?, nonfinite = nonfinite + ?, "
                "first_step = MIN(COALESCE(first_step, ?), ?), "
                "last_step = MAX(COALESCE(last_step, ?), ?) WHERE id=?",
                (steps.size, nonfinite, first, first, last, last, series_id),
            )

    @staticmethod
    def _touch_run(
        cur: sqlite3.Cursor,
        run_id: int,
        scalars: Mapping[str, tuple[np.ndarray, np.ndarray]],
        embeddings: Sequence[EmbeddingInput],
    ) -> None:
        last = [int(np.max(s)) for s, _ in scalars.values() if len(s)]
        last += [int(e.step) for e in embeddings]
        now = time.time()
        if last:
            cur.execute(
                "UPDATE runs SET last_step = MAX(COALESCE(last_step, ?), ?), updated_at=? "
                "WHERE id=?",
                (max(last), max(last), now, run_id),
            )
        else:
            cur.execute("UPDATE runs SET updated_at=? WHERE id=?", (now, run_id))

    # ------------------------------------------------------------------ queries
    def list_series(self, run: str) -> list[SeriesInfo]:
        with self._lock:
            run_id = self._run_id(self._conn, run)
            rows = self._conn.execute(
                "SELECT name, points, first_step, last_step, nonfinite FROM series "
                "WHERE run_id=? ORDER BY name",
                (run_id,),
            ).fetchall()
        return [SeriesInfo(*r) for r in rows]

    def read_series(
        self, run: str, name: str, *, start: int | None = None, end: int | None = None
    ) -> SeriesData:
        lo = -(2**63) if start is None else int(start)
        hi = 2**63 - 1 if end is None else int(end)
        with self._lock:
            run_id = self._run_id(self._conn, run)
            rows = self._conn.execute(
                "SELECT c.steps, c.vals FROM chunks c JOIN series s ON s.id = c.series_id "
                "WHERE s.run_id=? AND s.name=? AND c.last_step >= ? AND c.first_step <= ? "
                "ORDER BY c.id",
                (run_id, name, lo, hi),
            ).fetchall()
        if not rows:
            return SeriesData(name, np.empty(0, np.int64), np.empty(0, np.float64))
        steps = np.concatenate([np.frombuffer(r[0], dtype="<i8") for r in rows])
        values = np.concatenate([np.frombuffer(r[1], dtype="<f8") for r in rows])
        order = np.argsort(steps, kind="stable")
        steps, values = steps[order], values[order]
        keep = (steps >= lo) & (steps <= hi)
        return SeriesData(name, steps[keep].astype(np.int64), values[keep].astype(np.float64))

    def list_embeddings(self, run: str) -> list[EmbeddingInfo]:
        with self._lock:
            run_id = self._run_id(self._conn, run)
            rows = self._conn.execute(
                "SELECT step, name, n, d FROM embeddings WHERE run_id=? ORDER BY step, id",
                (run_id,),
            ).fetchall()
        return [EmbeddingInfo(*r) for r in rows]

    def read_embeddings(self, run: str, step: int | None = None) -> list[EmbeddingRecord]:
        with self._lock:
            run_id = self._run_id(self._conn, run)
            if step is None:
                row = self._conn.execute(
                    "SELECT MAX(step) FROM embeddings WHERE run_id=?", (run_id,)
                ).fetchone()
                if row[0] is None:
                    return []
                step = int(row[0])
            rows = self._conn.execute(
                "SELECT step, name, n, d, data FROM embeddings WHERE run_id=? AND step=? "
                "ORDER BY id",
                (run_id, int(step)),
            ).fetchall()
        return [self._embedding_record(r) for r in rows]

    @staticmethod
    def _embedding_record(row: tuple[Any, ...]) -> EmbeddingRecord:
        step, name, n, d, data = row
        return EmbeddingRecord(
            step=step, name=name,
            data=np.frombuffer(data, dtype="<f4").reshape(n, d).astype(np.float32),
        )

    # ------------------------------------------------------------------ detector state
    def save_detector_state(
        self, run: str, state: Mapping[str, Any], cursors: DetectorCursors | None = None
    ) -> None:
        with self._transaction() as cur:
            self._save_state(cur, self._run_id(cur, run), state, cursors)

    @staticmethod
    def _save_state(cur: sqlite3.Cursor, run_id: int, state: Mapping[str, Any],
                    cursors: DetectorCursors | None) -> None:
        cur.execute("UPDATE runs SET detector_state=? WHERE id=?",
                    (json.dumps(dict(state)), run_id))
        if cursors is not None:
            cur.execute("UPDATE runs SET scalars_cursor=?, embeddings_cursor=? WHERE id=?",
                        (int(cursors.scalars), int(cursors.embeddings), run_id))

    def load_detector_state(self, run: str) -> dict[str, Any] | None:
        rows = self._read("SELECT detector_state FROM runs WHERE name=?", (run,))
        if not rows:
            raise RunNotFound(run)
        return None if rows[0][0] is None else json.loads(rows[0][0])

    def detector_cursors(self, run: str) -> DetectorCursors:
        rows = self._read("SELECT scalars_cursor, embeddings_cursor FROM runs WHERE name=?",
                          (run,))
        if not rows:
            raise RunNotFound(run)
        return DetectorCursors(int(rows[0][0]), int(rows[0][1]))

    def commit_detector_progress(
        self,
        run: str,
        *,
        state: Mapping[str, Any],
        cursors: DetectorCursors,
        signals: Mapping[str, tuple[np.ndarray, np.ndarray]],
        alert_changes: Sequence[AlertChange],
    ) -> list[AlertRecord]:
        with self._transaction() as cur:
            run_id = self._run_id(cur, run)
            rows = [self._apply_change(cur, run_id, c) for c in alert_changes]
            self._write_series(cur, run_id, signals)
            self._save_state(cur, run_id, state, cursors)
        return [self._alert_record(r) for r in rows if r is not None]

    # ------------------------------------------------------------------ alerts
    _ALERT_COLUMNS = (
        "a.id, r.name, a.kind, a.key, a.severity, a.status, a.step, a.first_step, a.message, "
        "a.evidence, a.remedies, a.count, a.seq, a.created_at, a.updated_at, a.resolved_at, "
        "a.detector, a.subject, a.episodes, a.resolved_step, a.resolved_message, a.last_event"
    )

    @staticmethod
    def _alert_record(row: tuple[Any, ...]) -> AlertRecord:
        return AlertRecord(
            id=row[0],
            run=row[1],
            kind=row[2],
            key=row[3],
            severity=row[4],
            status=row[5],
            step=row[6],
            first_step=row[7],
            message=row[8],
            evidence=json.loads(row[9]),
            remedies=json.loads(row[10]),
            count=row[11],
            seq=row[12],
            created_at=row[13],
            updated_at=row[14],
            resolved_at=row[15],
            detector=row[16],
            subject=row[17],
            episodes=row[18],
            resolved_step=row[19],
            resolved_message=row[20],
            last_event=row[21],
        )

    def apply_alert_changes(self, changes: Sequence[AlertChange]) -> list[AlertRecord]:
        with self._transaction() as cur:
            rows = [self._apply_change(cur, self._run_id(cur, c.run), c) for c in changes]
        return [self._alert_record(r) for r in rows if r is not None]

    def _apply_change(
        self, cur: sqlite3.Cursor, run_id: int, change: AlertChange
    ) -> tuple[Any, ...] | None:
        """Apply one change; returns the alert's row after it (None when a resolving change
        finds nothing to resolve)."""
        if change.alert_id is not None:
            row = cur.execute(
                "SELECT id, status, severity FROM alerts WHERE id=? AND run_id=?",
                (change.alert_id, run_id),
            ).fetchone()
        else:
            row = cur.execute(
                "SELECT id, status, severity FROM alerts WHERE run_id=? AND key=? AND "
                "status='firing' ORDER BY id DESC LIMIT 1",
                (run_id, change.key),
            ).fetchone()
            if row is None and change.reopen and change.status == "firing":
                row = cur.execute(
                    "SELECT id, status, severity FROM alerts WHERE run_id=? AND key=? "
                    "ORDER BY id DESC LIMIT 1",
                    (run_id, change.key),
                ).fetchone()
        if row is None and change.status != "firing":
            return None
        seq = cur.execute(
            "UPDATE runs SET alert_seq = alert_seq + 1 WHERE id=? RETURNING alert_seq", (run_id,)
        ).fetchone()[0]
        now = time.time()
        evidence = json.dumps(change.evidence)
        remedies = json.dumps(change.remedies)
        if row is None:
            event = "fired"
            cur.execute(
                "INSERT INTO alerts (run_id, kind, key, severity, status, step, first_step,"
                " message, evidence, remedies, count, seq, created_at, updated_at,"
                " resolved_at, detector, subject, episodes, last_event) "
                "VALUES (?,?,?,?,'firing',?,?,?,?,?,1,?,?,?,NULL,?,?,1,?)",
                (run_id, change.kind, change.key, change.severity, change.step, change.step,
                 change.message, evidence, remedies, seq, now, now, change.detector,
                 change.subject, event),
            )
            alert_id = int(cur.lastrowid)
        else:
            alert_id, status, severity = int(row[0]), row[1], row[2]
            if change.status == "resolved":
                event = "resolved"
                # the firing record (step, message, evidence) stays; the resolution is added
                cur.execute(
                    "UPDATE alerts SET status='resolved', resolved_step=?, resolved_message=?, "
                    "resolved_at=?, count = count + 1, seq=?, updated_at=?, last_event=? "
                    "WHERE id=?",
                    (change.step, change.message, now, seq, now, event, alert_id),
                )
            else:
                if status == "resolved":
                    event = "reopened"
                elif _SEVERITY_RANK.get(change.severity, 0) > _SEVERITY_RANK.get(severity, 0):
                    event = "escalated"
                else:
                    event = "updated"
                reopen = status == "resolved"
                cur.execute(
                    "UPDATE alerts SET status='firing', severity=?, step=?, message=?, evidence=?,"
                    " remedies=?, count = count + 1, seq=?, updated_at=?, resolved_at=NULL,"
                    " resolved_step=NULL, resolved_message=NULL, episodes = episodes + ?,"
                    " last_event=? WHERE id=?",
                    (change.severity, change.step, change.message, evidence, remedies, seq,
                     now, int(reopen), event, alert_id),
                )
        cur.execute(
            "INSERT INTO alert_events (alert_id, run_id, seq, event, severity, step, message, "
            "evidence, at) VALUES (?,?,?,?,?,?,?,?,?)",
            (alert_id, run_id, seq, event, change.severity, change.step, change.message,
             evidence, now),
        )
        return cur.execute(
            f"SELECT {self._ALERT_COLUMNS} FROM alerts a JOIN runs r ON r.id = a.run_id "
            "WHERE a.id=?", (alert_id,),
        ).fetchone()

    def latest_alerts_by_key(self, run: str) -> dict[str, AlertRecord]:
        rows = self._read(
            f"SELECT {self._ALERT_COLUMNS} FROM alerts a JOIN runs r ON r.id = a.run_id "
            "WHERE r.name=? AND a.id IN (SELECT MAX(id) FROM alerts WHERE run_id = r.id "
            "GROUP BY key)",
            (run,),
        )
        return {rec.key: rec for rec in map(self._alert_record, rows)}

    def alert_history(self, run: str, alert_id: int | None = None) -> list[AlertEvent]:
        sql = ("SELECT e.alert_id, e.seq, e.event, e.severity, e.step, e.message, e.evidence, "
               "e.at FROM alert_events e JOIN runs r ON r.id = e.run_id WHERE r.name=?")
        params: list[Any] = [run]
        if alert_id is not None:
            sql += " AND e.alert_id=?"
            params.append(int(alert_id))
        rows = self._read(sql + " ORDER BY e.id", params)
        if not rows and not self._read("SELECT 1 FROM runs WHERE name=?", (run,)):
            raise RunNotFound(run)
        return [AlertEvent(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7])
                for r in rows]

    def list_alerts(
        self, run: str, *, after_seq: int = 0, status: str | None = None
    ) -> list[AlertRecord]:
        sql = (
            f"SELECT {self._ALERT_COLUMNS} FROM alerts a JOIN runs r ON r.id = a.run_id "
            "WHERE r.name=? AND a.seq > ?"
        )
        params: list[Any] = [run, int(after_seq)]
        if status is not None:
            sql += " AND a.status=?"
            params.append(status)
        rows = self._read(sql + " ORDER BY a.seq", params)
        if not rows and not self._read("SELECT 1 FROM runs WHERE name=?", (run,)):
            raise RunNotFound(run)
        return [self._alert_record(r) for r in rows]

    def alert_cursor(self, run: str) -> int:
        rows = self._read("SELECT alert_seq FROM runs WHERE name=?", (run,))
        if not rows:
            raise RunNotFound(run)
        return int(rows[0][0])
