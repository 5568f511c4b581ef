"""The results store: one SQLite file, the single source of every leaderboard and export.

Every write is one short ``BEGIN IMMEDIATE`` transaction in WAL mode with a busy timeout, so
a crash or Ctrl-C loses nothing already committed and several processes can write at once.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .components import MetricResult
from .errors import RunBusyError, StoreError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60.0
NOTICE_AFTER_S = 2.0  # a wait for another writer longer than this is announced

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id       TEXT PRIMARY KEY,
    generator    TEXT NOT NULL,
    classifier   TEXT NOT NULL,
    benchmark    TEXT NOT NULL,
    mix          TEXT NOT NULL,
    seed         INTEGER NOT NULL,
    data_source  TEXT NOT NULL,
    spec         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('running', 'incomplete', 'complete')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL,
    started_at   TEXT,
    finished_at  TEXT,
    wall_time_s  REAL,
    provenance   TEXT,
    workdir      TEXT,
    error        TEXT,
    host         TEXT,
    pid          INTEGER
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id           TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    key              TEXT NOT NULL DEFAULT '',
    value            REAL,
    n                INTEGER NOT NULL,
    protocol         TEXT NOT NULL DEFAULT '',
    higher_is_better INTEGER NOT NULL DEFAULT 1,
    main             INTEGER NOT NULL DEFAULT 0,
    wall_time_s      REAL,
    extra            TEXT,
    recorded_at      TEXT NOT NULL,
    PRIMARY KEY (run_id, name, key)
);
CREATE INDEX IF NOT EXISTS runs_by_benchmark ON runs(benchmark);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class RunRecord:
    run_id: str
    generator: str
    classifier: str
    benchmark: str
    mix: str
    seed: int
    data_source: str
    spec: dict[str, Any]
    status: str
    attempts: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    wall_time_s: float | None
    provenance: dict[str, Any]
    workdir: str | None
    error: str | None
    host: str | None
    pid: int | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunRecord:
        data = dict(row)
        data["spec"] = json.loads(data["spec"] or "{}")
        data["provenance"] = json.loads(data["provenance"] or "{}")
        return cls(**data)

    def is_stale(self) -> bool:
        """A 'running' record whose process is gone (killed): it may be resumed."""
        if self.status != "running":
            return False
        if self.host != socket.gethostname() or self.pid is None:
            return True
        return not _pid_alive(self.pid)


def _retry_while_locked(
    statement: Callable[[], Any], on_long_wait: Callable[[], None] | None = None
) -> Any:
    """Run ``statement``, retrying for up to ``BUSY_TIMEOUT_S`` while another process holds
    the lock (then the last ``OperationalError`` is raised); ``on_long_wait`` is called once
    when the wait passes ``NOTICE_AFTER_S``. Needed beyond SQLite's busy timeout: switching a
    new file to WAL fails at once when two processes open a fresh store together."""
    started, told = time.monotonic(), False
    while True:
        try:
            return statement()
        except sqlite3.OperationalError as exc:
            waited = time.monotonic() - started
            if "locked" not in str(exc) or waited > BUSY_TIMEOUT_S:
                raise
            if on_long_wait is not None and not told and waited >= NOTICE_AFTER_S:
                on_long_wait()
                told = True
            time.sleep(0.05)


def _damaged(text: str) -> bool:
    return "malformed" in text or "not a database" in text or "corrupt" in text


def _held_elsewhere(record: RunRecord) -> bool:
    """A live 'running' record of another process."""
    ours = record.host == socket.gethostname() and record.pid == os.getpid()
    return record.status == "running" and not record.is_stale() and not ours


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed child not yet reaped) is not running
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


class ResultsStore:
    """Runs and their metrics in a SQLite database file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the results folder {self.path.parent}: {exc}"
            ) from None
        self._connection = self._connect()
        with self._reading():
            self._migrate()

    def _connect(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA foreign_keys = ON")
            _retry_while_locked(lambda: connection.execute("PRAGMA journal_mode = WAL"))
            connection.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            if _damaged(str(exc)):
                raise self._damaged_error(str(exc)) from None
            raise StoreError(
                f"cannot open the results store {self.path}: {exc} "
                "(use --results or CGNBENCH_HOME to choose a writable location)"
            ) from None
        return connection

    def _migrate(self) -> None:
        version = self._connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the results store {self.path} was written by a newer cgnbench "
                f"(schema {version} > {SCHEMA_VERSION}); upgrade cgnbench or use another --results"
            )
        if version < SCHEMA_VERSION:
            with self.transaction() as cursor:
                for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                    cursor.execute(statement)
                cursor.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """One atomic write; retried while another process holds the write lock."""
        cursor = self._connection.cursor()
        self._begin(cursor)
        try:
            yield cursor
        except sqlite3.Error as exc:  # e.g. SQLITE_FULL: SQLite may already have rolled back
            self._rollback()
            raise self._store_error(exc) from None
        except BaseException:
            self._rollback()
            raise
        try:
            cursor.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise self._store_error(exc) from None

    def _begin(self, cursor: sqlite3.Cursor) -> None:
        """Take the write lock, waiting up to ``BUSY_TIMEOUT_S`` for another writer, and saying
        so on stderr once the wait is noticeable (a silent two-minute pause looks like a hang)."""

        def announce() -> None:
            print(
                f"waiting for the results store {self.path}: another process is writing to "
                f"it (giving up after {BUSY_TIMEOUT_S:.0f} s)",
                file=sys.stderr,
                flush=True,
            )

        self._connection.execute("PRAGMA busy_timeout = 200")  # short waits: we can speak
        try:
            _retry_while_locked(lambda: cursor.execute("BEGIN IMMEDIATE"), announce)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise self._store_error(exc) from None
            raise StoreError(
                f"the results store {self.path} has been locked by another process for "
                f"{BUSY_TIMEOUT_S:.0f} s: wait for it to finish, or stop it if it hangs "
                "(`fuser` shows which process holds the file)"
            ) from None
        finally:
            self._connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")

    def _rollback(self) -> None:
        if self._connection.in_transaction:
            self._connection.execute("ROLLBACK")

    def _store_error(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        if _damaged(text):
            return self._damaged_error(text)
        if "readonly" in text or "read-only" in text:
            hint = "the location is read-only; choose another with --results or CGNBENCH_HOME"
        elif "full" in text:
            hint = "the disk is full; free space or choose another --results location"
        else:
            hint = "check the --results location"
        return StoreError(f"cannot write the results store {self.path}: {text} ({hint})")

    def _damaged_error(self, text: str) -> StoreError:
        return StoreError(
            f"the results store {self.path} is damaged ({text.splitlines()[-1].split(': ')[-1]}): "
            f"check it with `sqlite3 {self.path} 'PRAGMA integrity_check'`, restore a backup "
            "of it, or start a new store with --results NEW.sqlite (or another CGNBENCH_HOME)"
        )

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Reads: a damaged file is one :class:`StoreError` saying which file and what to do."""
        try:
            yield
        except (sqlite3.Error, pd.errors.DatabaseError) as exc:  # pandas wraps sqlite's
            if _damaged(str(exc)):
                raise self._damaged_error(str(exc)) from None
            raise StoreError(f"cannot read the results store {self.path}: {exc}") from None

    # -- runs -----------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunRecord | None:
        with self._reading():
            row = self._connection.execute(
                "SELECT * FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        return RunRecord.from_row(row) if row else None

    def find_runs(self, prefix: str) -> list[RunRecord]:
        with self._reading():
            rows = self._connection.execute(
                "SELECT * FROM runs WHERE run_id LIKE ? ORDER BY created_at", (prefix + "%",)
            ).fetchall()
        return [RunRecord.from_row(row) for row in rows]

    def list_runs(self, benchmark: str | None = None) -> list[RunRecord]:
        query, params = "SELECT * FROM runs", ()
        if benchmark:
            query, params = query + " WHERE benchmark = ?", (benchmark,)
        with self._reading():
            rows = self._connection.execute(query + " ORDER BY created_at, run_id", params)
            return [RunRecord.from_row(row) for row in rows.fetchall()]

    def start_run(
        self,
        run_id: str,
        *,
        generator: str,
        classifier: str,
        benchmark: str,
        mix: str,
        seed: int,
        data_source: str,
        spec: dict[str, Any],
        provenance: dict[str, Any],
        workdir: str,
        fresh: bool = False,
        unless_complete: bool = False,
    ) -> RunRecord:
        """Mark a run as running (creating it, or resuming/restarting an earlier attempt).

        ``fresh`` deletes the metrics of earlier attempts (``--force``). The check and the
        claim are one transaction, so of two processes starting the same run at once one
        claims it and the other gets :class:`RunBusyError` (the run is live in another
        process), or, with ``unless_complete``, the finished record unchanged.
        """
        now = _now()
        with self.transaction() as cursor:
            row = cursor.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            current = RunRecord.from_row(row) if row else None
            if current is not None and current.status == "complete" and unless_complete:
                return current
            if current is not None and _held_elsewhere(current):
                raise RunBusyError(
                    f"run {run_id} is being run by process {current.pid} on {current.host} "
                    f"(started {current.started_at}); wait for it to finish"
                )
            if fresh:
                cursor.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            cursor.execute(
                """
                INSERT INTO runs (run_id, generator, classifier, benchmark, mix, seed, data_source,
                                  spec, status, attempts, created_at, started_at, provenance,
                                  workdir, host, pid)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', 1, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(run_id) DO UPDATE SET
                    status = 'running', attempts = attempts + 1, started_at = excluded.started_at,
                    finished_at = NULL, error = NULL, provenance = excluded.provenance,
                    wall_time_s = CASE WHEN ? THEN NULL ELSE runs.wall_time_s END,
                    workdir = excluded.workdir, host = excluded.host, pid = excluded.pid
                """,
                (
                    run_id,
                    generator,
                    classifier,
                    benchmark,
                    mix,
                    seed,
                    data_source,
                    json.dumps(spec, sort_keys=True, default=str),
                    now,
                    now,
                    json.dumps(provenance, sort_keys=True, default=str),
                    workdir,
                    socket.gethostname(),
                    os.getpid(),
                    int(fresh),
                ),
            )
        record = self.get_run(run_id)
        assert record is not None
        return record

    def record_metric(
        self,
        run_id: str,
        result: MetricResult,
        *,
        higher_is_better: bool = True,
        main: bool = False,
        wall_time_s: float | None = None,
    ) -> None:
        with self.transaction() as cursor:
            cursor.execute(
                """
                INSERT OR REPLACE INTO metrics (run_id, name, key, value, n, protocol,
                    higher_is_better, main, wall_time_s, extra, recorded_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                (
                    run_id,
                    result.name,
                    result.key,
                    float(result.value),
                    int(result.n),
                    result.protocol,
                    int(higher_is_better),
                    int(main),
                    wall_time_s,
                    json.dumps(result.extra, sort_keys=True, default=str),
                    _now(),
                ),
            )

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        wall_time_s: float,
        error: str | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        """Close an attempt: ``complete``, or ``incomplete`` with the error that stopped it."""
        with self.transaction() as cursor:
            if provenance is not None:
                cursor.execute(
                    "UPDATE runs SET provenance = ? WHERE run_id = ?",
                    (json.dumps(provenance, sort_keys=True, default=str), run_id),
                )
            cursor.execute(
                "UPDATE runs SET status = ?, finished_at = ?,"
                " wall_time_s = COALESCE(wall_time_s, 0) + ?, error = ?, pid = NULL"
                " WHERE run_id = ?",
                (status, _now(), wall_time_s, error, run_id),
            )

    def delete_run(self, run_id: str) -> None:
        with self.transaction() as cursor:
            cursor.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))

    # -- metrics ----------------------------------------------------------------------------
    def recorded_metric_keys(self, run_id: str) -> set[tuple[str, str]]:
        with self._reading():
            rows = self._connection.execute(
                "SELECT name, key FROM metrics WHERE run_id = ?", (run_id,)
            ).fetchall()
        return {(row["name"], row["key"]) for row in rows}

    def metrics_frame(self, *, benchmark: str | None = None, complete_only: bool = True):
        """All metrics joined with their runs, as a pandas DataFrame (one row per metric)."""
        query = """
            SELECT r.run_id, r.generator, r.classifier, r.benchmark, r.mix, r.seed,
                   r.data_source, r.status, r.wall_time_s AS run_wall_time_s, r.finished_at,
                   m.name AS metric, m.key, m.value, m.n, m.protocol, m.higher_is_better,
                   m.main, m.wall_time_s, m.extra
            FROM metrics m JOIN runs r USING (run_id)
        """
        clauses, params = [], []
        if complete_only:
            clauses.append("r.status = 'complete'")
        if benchmark:
            clauses.append("r.benchmark = ?")
            params.append(benchmark)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY r.benchmark, r.generator, r.classifier, r.seed, m.name, m.key"
        with self._reading():
            return pd.read_sql_query(query, self._connection, params=params)
