"""The pure-SQL baseline: the same task life-cycle in plain sqlite3, no taskmill.

Each process of the baseline does, per task (or per batch with --batch N):

    BEGIN IMMEDIATE; claim due QUEUED row(s) -> ASSIGNED (UPDATE .. RETURNING); COMMIT
    "run" the no-op (decode args/vars, call a function)
    BEGIN IMMEDIATE; mark COMPLETED (and insert a scheduler_run row with --results); COMMIT

on taskmill's own tables (created with taskmill's create_tables), in WAL mode with
synchronous=NORMAL and the same busy timeout as taskmill's SQLite store, with the same
due condition and order as taskmill's claim. It is the floor a SQLite queue written in
Python pays for the same work: whatever taskmill costs above it is taskmill's own.

Modes:
    drain   claim until nothing is due, then exit
    poll    an idle worker: look for due work every --interval seconds (a cheap read),
            claim and run it as above; the run row's result is the task's start time
            (time.time()), as the taskmill pickup workload records it; exit when the
            file --stop-file exists

Run by benchmarks/run.py; usable alone:
    python benchmarks/sql_baseline.py drain --db /tmp/x.db --name w1 --batch 50
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BUSY_TIMEOUT_MS = 30_000  # taskmill's SQLiteStore default

# taskmill's due condition (store/base.py Store.due_condition) and claim order
# (Store._due_ids: the claim index's order), by hand
DUE = """
    status = 'QUEUED' AND enabled = 'T' AND group_name IN ('main')
    AND next_run_time <= :now AND (stop_time IS NULL OR stop_time > :now)
    AND NOT EXISTS (
        SELECT 1 FROM scheduler_task_deps AS d
        WHERE d.task_parent = scheduler_task.id AND (d.can_visit = 'F' OR d.can_visit IS NULL)
    )
"""
CLAIM = f"""
UPDATE scheduler_task SET status = 'ASSIGNED', assigned_worker_name = :worker
WHERE id IN (
    SELECT id FROM scheduler_task WHERE {DUE}
    ORDER BY next_run_time, id LIMIT :limit
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
    """One task in its own transaction (the baseline's queue_task)."""
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


class BaselineWorker:
    def __init__(self, conn: sqlite3.Connection, name: str, batch: int, results: bool) -> None:
        self.conn = conn
        self.name = name
        self.batch = batch
        self.results = results
        self.done = 0

    def claim(self) -> list[Any]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            params = {"worker": self.name, "now": stamp(utc_now()), "limit": self.batch}
            rows = self.conn.execute(CLAIM, params).fetchall()
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return rows

    def run(self, rows: list[Any], *, record_start: bool = False) -> None:
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
                    "started": stamp(started),
                    "next_run": stamp(started + timedelta(seconds=period or 0)),
                    "stopped": stamp(utc_now()),
                    "result": result,
                }
            )
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany(COMPLETE, finished)
            if self.results or record_start:
                self.conn.executemany(INSERT_RUN, finished)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.done += len(finished)

    def drain(self) -> None:
        while True:
            rows = self.claim()
            if not rows:
                return
            self.run(rows)

    def poll(self, interval: float, stop_file: Path) -> None:
        while not stop_file.exists():
            due = self.conn.execute(ANY_DUE, {"now": stamp(utc_now())}).fetchone()
            if due is None:
                time.sleep(interval)
                continue
            rows = self.claim()
            if rows:
                self.run(rows, record_start=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["drain", "poll"])
    parser.add_argument("--db", required=True, help="SQLite database file")
    parser.add_argument("--name", default=f"sql-baseline-{os.getpid()}")
    parser.add_argument("--batch", type=int, default=1, help="tasks claimed per transaction")
    parser.add_argument("--results", action="store_true", help="write a scheduler_run row")
    parser.add_argument("--interval", type=float, default=0.001, help="poll interval (s)")
    parser.add_argument("--stop-file", type=Path, help="poll mode: exit once this exists")
    parser.add_argument("--ready-file", type=Path, help="created once connected")
    options = parser.parse_args(argv)
    worker = BaselineWorker(connect(options.db), options.name, options.batch, options.results)
    if options.ready_file is not None:
        options.ready_file.touch()
    if options.mode == "drain":
        worker.drain()
    else:
        if options.stop_file is None:
            parser.error("poll mode needs --stop-file")
        worker.poll(options.interval, options.stop_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
