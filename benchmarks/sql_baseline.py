"""The pure-SQL baseline: the same task life-cycle in plain DB-API code, no taskmill.

Each process of the baseline does, per task (or per batch with --batch N):

    begin; claim due QUEUED row(s) -> ASSIGNED; commit
    "run" the no-op (decode args/vars, call a function)
    begin; mark COMPLETED (and insert a scheduler_run row with --results); commit

on taskmill's own tables (created with taskmill's create_tables, so with its indexes),
with the same due condition and claim order as taskmill's claim. It is the floor a
queue written in Python pays for the same work on the same database: whatever taskmill
costs above it is taskmill's own.

  SQLite      plain sqlite3, WAL, synchronous=NORMAL and taskmill's busy timeout;
              BEGIN IMMEDIATE; claim with UPDATE .. RETURNING.
  PostgreSQL  plain psycopg 3; claim with UPDATE .. WHERE id IN (SELECT .. FOR UPDATE
              SKIP LOCKED) RETURNING; completions with executemany (pipelined by
              psycopg); the pickup enqueuer sends NOTIFY in its INSERT's transaction.
  MariaDB     plain PyMySQL; claim with SELECT .. FOR UPDATE SKIP LOCKED, then one
              UPDATE .. WHERE id IN (..); completions with executemany (one round
              trip per row: PyMySQL batches only INSERT .. VALUES).

Modes:
    drain   claim until nothing is due, then exit
    poll    an idle worker: look for due work every --interval seconds (a cheap read),
            claim and run it as above; the run row's result is the task's start time
            (time.time()), as the taskmill pickup workload records it; exit when the
            file --stop-file exists
    listen  (PostgreSQL) as poll, but sleep on LISTEN until the enqueuer's NOTIFY

Run by benchmarks/run.py; usable alone:
    python benchmarks/sql_baseline.py drain --db /tmp/x.db --name w1 --batch 50
    python benchmarks/sql_baseline.py drain --url postgresql+psycopg://u@h/db --batch 50
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import sqlite3
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BUSY_TIMEOUT_MS = 30_000  # taskmill's SQLiteStore default
CHANNEL = "taskmill_baseline"

# taskmill's due condition (store/base.py DUE) and claim order (DUE_IDS: the claim
# index's order), by hand
DUE = """
    status = 'QUEUED' AND enabled = 'T' AND group_name IN ('main')
    AND next_run_time <= :now AND (stop_time IS NULL OR stop_time > :now)
    AND (broadcast = 'F' OR broadcast IS NULL OR broadcast = 'T' AND assigned_worker_name = :worker)
    AND NOT EXISTS (
        SELECT 1 FROM scheduler_task_deps AS d
        WHERE d.task_parent = scheduler_task.id AND (d.can_visit = 'F' OR d.can_visit IS NULL)
    )
"""
CLAIM = f"""
UPDATE scheduler_task SET status = 'ASSIGNED', assigned_worker_name = :worker
WHERE id IN (
    SELECT id FROM scheduler_task WHERE {DUE}
    ORDER BY next_run_time, priority DESC, id LIMIT :limit
)
RETURNING id, function_name, args, vars, period
"""
ANY_DUE = f"SELECT 1 FROM scheduler_task WHERE {DUE} LIMIT 1"
COMPLETE = """
UPDATE scheduler_task
SET status = 'COMPLETED', times_run = times_run + 1, times_failed = 0,
    last_run_time = :started, next_run_time = :next_run
WHERE id = :id AND status IN ('ASSIGNED', 'RUNNING') AND assigned_worker_name = :worker
"""
INSERT_RUN = """
INSERT INTO scheduler_run (task_id, status, start_time, stop_time, run_output, run_result,
                           traceback, worker_name)
VALUES (:id, 'COMPLETED', :started, :stopped, '', :result, NULL, :worker)
"""
INSERT_TASK = """
INSERT INTO scheduler_task (
    application_name, task_name, group_name, status, broadcast, function_name, uuid, args,
    vars, enabled, start_time, next_run_time, stop_time, repeats, retry_failed, period,
    prevent_drift, cronline, timeout, sync_output, times_run, times_failed,
    assigned_worker_name, priority)
VALUES ('taskmill', :name, 'main', 'QUEUED', 'F', :name, :uuid, '[]', '{}', 'T', :now, :now,
        NULL, 1, 0, 60, 'F', NULL, 60, 0, 0, 0, '', 0)
"""


def pyformat(sql: str) -> str:
    """:name placeholders (sqlite3) -> %(name)s (psycopg, PyMySQL)."""
    return re.sub(r"(?<!:):([a-z_]+)", r"%(\1)s", sql)


PG_CLAIM = pyformat(
    CLAIM.replace("LIMIT :limit", "LIMIT :limit FOR UPDATE OF scheduler_task SKIP LOCKED").replace(
        "priority DESC", "priority DESC NULLS LAST"
    )
)
MY_CLAIM = pyformat(
    f"""
SELECT id, function_name, args, vars, period FROM scheduler_task WHERE {DUE}
ORDER BY next_run_time, priority DESC, id LIMIT :limit FOR UPDATE SKIP LOCKED
"""
)


def stamp(moment: datetime) -> str:
    """A naive UTC datetime as SQLAlchemy's SQLite dialect stores it."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)  # we issue BEGIN ourselves
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def insert_task(conn: sqlite3.Connection, name: str, uuid: str) -> int:
    """One task in its own transaction (the baseline's queue_task), SQLite."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        cursor = conn.execute(INSERT_TASK, {"name": name, "uuid": uuid, "now": stamp(utc_now())})
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def noop(*_args: Any, **_kwargs: Any) -> None:
    return None


# ------------------------------------------------------------------------ sessions
class Session:
    """One connection of one backend, doing the life-cycle's statements."""

    name = "sql-baseline"  # the worker name its due-task reads are made for

    def ts(self, moment: datetime) -> Any:
        return moment

    def claim(self, worker: str, limit: int) -> list[Any]:
        raise NotImplementedError

    def complete(self, finished: list[dict[str, Any]], runs: bool) -> None:
        raise NotImplementedError

    def any_due(self) -> bool:
        raise NotImplementedError

    def insert_task(self, name: str, uuid: str) -> int:
        raise NotImplementedError

    def bulk_insert(self, rows: Sequence[dict[str, Any]], method: str = "executemany") -> None:
        raise NotImplementedError

    def listener(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no LISTEN")

    def close(self) -> None:
        raise NotImplementedError


def _insert_rows_sql(columns: Sequence[str], placeholder: str) -> str:
    return (
        f"INSERT INTO scheduler_task ({', '.join(columns)}) "
        f"VALUES ({', '.join(placeholder.format(c) for c in columns)})"
    )


class SQLiteSession(Session):
    def __init__(self, path: str) -> None:
        self.conn = connect(path)

    def ts(self, moment: datetime) -> Any:
        return stamp(moment)

    def _write(self, statements: list[tuple[str, Any, bool]]) -> list[Any]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            rows: list[Any] = []
            for sql, params, many in statements:
                if many:
                    self.conn.executemany(sql, params)
                else:
                    rows = self.conn.execute(sql, params).fetchall()
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return rows

    def claim(self, worker: str, limit: int) -> list[Any]:
        params = {"worker": worker, "now": stamp(utc_now()), "limit": limit}
        return self._write([(CLAIM, params, False)])

    def complete(self, finished: list[dict[str, Any]], runs: bool) -> None:
        statements = [(COMPLETE, finished, True)]
        if runs:
            statements.append((INSERT_RUN, finished, True))
        self._write(statements)

    def any_due(self) -> bool:
        params = {"now": stamp(utc_now()), "worker": self.name}
        return self.conn.execute(ANY_DUE, params).fetchone() is not None

    def insert_task(self, name: str, uuid: str) -> int:
        return insert_task(self.conn, name, uuid)

    def bulk_insert(self, rows: Sequence[dict[str, Any]], method: str = "executemany") -> None:
        sql = _insert_rows_sql(list(rows[0]), ":{}")
        self._write([(sql, rows, True)])

    def close(self) -> None:
        self.conn.close()


class PostgresSession(Session):
    def __init__(self, dsn: str) -> None:
        import psycopg

        self.psycopg = psycopg
        self.dsn = dsn
        self.conn = psycopg.connect(dsn)

    def claim(self, worker: str, limit: int) -> list[Any]:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute(PG_CLAIM, {"worker": worker, "now": utc_now(), "limit": limit})
            return cur.fetchall()

    def complete(self, finished: list[dict[str, Any]], runs: bool) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(pyformat(COMPLETE), finished)
            if runs:
                cur.executemany(pyformat(INSERT_RUN), finished)

    def any_due(self) -> bool:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute(pyformat(ANY_DUE), {"now": utc_now(), "worker": self.name})
            return cur.fetchone() is not None

    def insert_task(self, name: str, uuid: str) -> int:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute(
                pyformat(INSERT_TASK) + " RETURNING id",
                {"name": name, "uuid": uuid, "now": utc_now()},
            )
            row = cur.fetchone()
            cur.execute(f"NOTIFY {CHANNEL}")  # delivered at commit
        assert row is not None
        return int(row[0])

    def bulk_insert(self, rows: Sequence[dict[str, Any]], method: str = "executemany") -> None:
        columns = list(rows[0])
        with self.conn.transaction(), self.conn.cursor() as cur:
            if method == "copy":
                with cur.copy(f"COPY scheduler_task ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row([row[c] for c in columns])
            else:
                cur.executemany(_insert_rows_sql(columns, "%({})s"), rows)

    def listener(self) -> Any:
        conn = self.psycopg.connect(self.dsn, autocommit=True)
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def close(self) -> None:
        self.conn.close()


class MySQLSession(Session):
    def __init__(self, params: dict[str, Any]) -> None:
        import pymysql

        self.conn = pymysql.connect(**params, autocommit=False)

    def claim(self, worker: str, limit: int) -> list[Any]:
        try:
            with self.conn.cursor() as cur:
                cur.execute(MY_CLAIM, {"now": utc_now(), "limit": limit, "worker": worker})
                rows = list(cur.fetchall())
                if rows:
                    marks = ", ".join(["%s"] * len(rows))
                    cur.execute(
                        "UPDATE scheduler_task SET status = 'ASSIGNED', "
                        f"assigned_worker_name = %s WHERE id IN ({marks})",
                        [worker, *(row[0] for row in rows)],
                    )
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        return rows

    def complete(self, finished: list[dict[str, Any]], runs: bool) -> None:
        try:
            with self.conn.cursor() as cur:
                cur.executemany(pyformat(COMPLETE), finished)
                if runs:
                    cur.executemany(pyformat(INSERT_RUN), finished)
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise

    def any_due(self) -> bool:
        with self.conn.cursor() as cur:
            cur.execute(pyformat(ANY_DUE), {"now": utc_now(), "worker": self.name})
            found = cur.fetchone() is not None
        self.conn.commit()  # end the read's snapshot (REPEATABLE READ)
        return found

    def insert_task(self, name: str, uuid: str) -> int:
        with self.conn.cursor() as cur:
            cur.execute(pyformat(INSERT_TASK), {"name": name, "uuid": uuid, "now": utc_now()})
            new_id = int(cur.lastrowid)
        self.conn.commit()
        return new_id

    def bulk_insert(self, rows: Sequence[dict[str, Any]], method: str = "executemany") -> None:
        # PyMySQL turns an executemany of INSERT .. VALUES into multi-row INSERTs
        with self.conn.cursor() as cur:
            cur.executemany(_insert_rows_sql(list(rows[0]), "%({})s"), rows)
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


def open_session(url: str) -> Session:
    """A session for a SQLite path or a SQLAlchemy-style server URL."""
    if "://" not in url:
        return SQLiteSession(url)
    from sqlalchemy import make_url

    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        return SQLiteSession(u.database or "")
    if u.get_backend_name() == "postgresql":
        parts = {
            "host": u.host or "127.0.0.1",
            "port": u.port or 5432,
            "user": u.username or "postgres",
            "dbname": u.database,
            **({"password": u.password} if u.password else {}),
        }
        return PostgresSession(" ".join(f"{k}={v}" for k, v in parts.items()))
    if u.get_backend_name() in ("mysql", "mariadb"):
        params = {
            "host": u.host or "127.0.0.1",
            "port": u.port or 3306,
            "user": u.username or "root",
            "password": u.password or "",
            "database": u.database,
            "charset": "utf8mb4",
        }
        return MySQLSession(params)
    raise SystemExit(f"no baseline for {u.get_backend_name()}")


def plain_row(row: dict[str, Any], session: Session) -> dict[str, Any]:
    """A row built by taskmill's validator, as the DB-API driver takes it: pydal's
    'T'/'F' booleans and naive UTC datetimes."""
    out = {}
    for key, value in row.items():
        if isinstance(value, bool):
            value = "T" if value else "F"
        elif isinstance(value, datetime):
            value = session.ts(value.astimezone(UTC).replace(tzinfo=None))
        out[key] = value
    return out


# ------------------------------------------------------------------------- worker
class BaselineWorker:
    def __init__(self, session: Session, name: str, batch: int, results: bool) -> None:
        self.session = session
        session.name = name
        self.name = name
        self.batch = batch
        self.results = results
        self.done = 0

    def claim(self) -> list[Any]:
        return self.session.claim(self.name, self.batch)

    def run(self, rows: list[Any], *, record_start: bool = False) -> None:
        ts = self.session.ts
        finished = []
        for task_id, _function, args, kwargs, period in rows:
            begun = time.time()
            started = utc_now()
            noop(*json.loads(args or "[]"), **json.loads(kwargs or "{}"))
            result = json.dumps(begun) if record_start else "1"
            finished.append(
                {
                    "id": task_id,
                    "worker": self.name,
                    "started": ts(started),
                    "next_run": ts(started + timedelta(seconds=period or 0)),
                    "stopped": ts(utc_now()),
                    "result": result,
                }
            )
        self.session.complete(finished, self.results or record_start)
        self.done += len(finished)

    def drain(self) -> None:
        while True:
            rows = self.claim()
            if not rows:
                return
            self.run(rows)

    def poll(self, interval: float, stop_file: Path) -> None:
        while not stop_file.exists():
            if not self.session.any_due():
                time.sleep(interval)
                continue
            rows = self.claim()
            if rows:
                self.run(rows, record_start=True)

    def listen(self, listener: Any, stop_file: Path) -> None:
        """Sleep on LISTEN; after a NOTIFY (or 0.1 s, to notice the stop file) claim."""
        pgconn = listener.pgconn
        while not stop_file.exists():
            rows = self.claim()
            if rows:
                self.run(rows, record_start=True)
                continue
            ready, _, _ = select.select([listener.fileno()], [], [], 0.1)
            if ready:
                pgconn.consume_input()
                while pgconn.notifies() is not None:
                    pass
        listener.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["drain", "poll", "listen"])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", help="SQLite database file")
    where.add_argument("--url", help="database URL (postgresql+psycopg://, mysql+pymysql://)")
    parser.add_argument("--name", default=f"sql-baseline-{os.getpid()}")
    parser.add_argument("--batch", type=int, default=1, help="tasks claimed per transaction")
    parser.add_argument("--results", action="store_true", help="write a scheduler_run row")
    parser.add_argument("--interval", type=float, default=0.001, help="poll interval (s)")
    parser.add_argument("--stop-file", type=Path, help="poll/listen: exit once this exists")
    parser.add_argument("--ready-file", type=Path, help="created once connected")
    options = parser.parse_args(argv)
    session = open_session(options.db or options.url)
    worker = BaselineWorker(session, options.name, options.batch, options.results)
    listener = session.listener() if options.mode == "listen" else None
    if options.ready_file is not None:
        options.ready_file.touch()
    if options.mode == "drain":
        worker.drain()
    elif options.stop_file is None:
        parser.error(f"{options.mode} mode needs --stop-file")
    elif options.mode == "poll":
        worker.poll(options.interval, options.stop_file)
    else:
        worker.listen(listener, options.stop_file)
    session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
