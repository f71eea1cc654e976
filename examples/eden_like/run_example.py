"""The whole Eden-style flow, end to end, on SQLite (or EDEN_LIKE_DB).

1. first_run(): tables, and the two recurring tasks (run twice: still two tasks);
2. a request approves a record with no worker running: run_async runs the slow task
   in this process, as the user, and returns its result;
3. a worker starts (`python -m taskmill worker --app eden_like_app:tm`, log in
   demo-data/eden_like_worker.log); it sends the outbox at once;
4. another request approves a record: run_async queues the task and returns its id
   at once; the worker runs it as the same user;
5. the worker is stopped with SIGTERM.

Run from the repository root: `.venv/bin/python examples/eden_like/run_example.py`.
The exit code is non-zero if something did not happen as described.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa

# examples/eden_like is sys.path[0] when this file runs as a script
from eden_like_app import (
    DATA_DIR,
    DB_URL,
    add_record,
    approve_record,
    first_run,
    msg_outbox,
    sched,
    stats_aggregate,
    tm,
)

from taskmill import TaskReport, TaskStatus

T = TypeVar("T")
HERE = os.path.dirname(os.path.abspath(__file__))
WORKER_LOG = DATA_DIR / "eden_like_worker.log"
engine = sa.create_engine(DB_URL)  # the runner's own look at the tables


def wait_for(what: str, predicate: Callable[[], T | None], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.2)


def outbox_sent() -> int:
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).where(msg_outbox.c.status == "SENT")
        return int(conn.execute(query).scalar_one())


def aggregate_of(data_id: int) -> tuple[int, int | None] | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(stats_aggregate.c.total, stats_aggregate.c.computed_by).where(
                stats_aggregate.c.data_id == data_id
            )
        ).first()
    return None if row is None else (row.total, row.computed_by)


def finished(task_id: int) -> TaskReport | None:
    report = sched.task_status(task_id, output=True)
    assert isinstance(report, TaskReport)
    return None if report.scheduler_task.status in ("QUEUED", "ASSIGNED", "RUNNING") else report


def recurring_tasks() -> list[str]:
    table = sched.tables.scheduler_task
    with engine.connect() as conn:
        return list(
            conn.execute(sa.select(table.c.task_name).where(table.c.repeats == 0)).scalars()
        )


def start_worker() -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    with WORKER_LOG.open("wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "taskmill", "worker", "--app", "eden_like_app:tm"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="   log: %(message)s", stream=sys.stdout)
    if not os.environ.get("EDEN_LIKE_DB"):
        for leftover in DATA_DIR.glob("eden_like.db*"):
            leftover.unlink()  # start from an empty database
    first_run()
    first_run()  # a second start-up queues nothing new
    recurring = recurring_tasks()
    print(f"recurring tasks after two start-ups: {recurring}")
    if sorted(recurring) != ["maintenance", "msg_process_outbox"]:
        return 1

    print("\n-- no worker: run_async runs the task here, as user 7, and returns its result")
    started = time.monotonic()
    result = approve_record(add_record(4), user_id=7)
    print(f"   result {result} after {time.monotonic() - started:.1f} s")
    if not isinstance(result, dict) or result.get("computed_by") != 7:
        return 1

    print("\n-- starting a worker")
    worker = start_worker()
    try:
        wait_for("the worker", lambda: tm.worker_alive())
        sent = wait_for("the outbox to be sent", outbox_sent)
        print(f"   the outbox task sent {sent} message(s)")

        print("\n-- with a worker: run_async queues the task for user 8 and returns at once")
        data_id = add_record(5)
        started = time.monotonic()
        task_id = approve_record(data_id, user_id=8)
        print(f"   task id {task_id} after {time.monotonic() - started:.2f} s")
        report = wait_for("the task to complete", lambda: finished(task_id))
        aggregate = aggregate_of(data_id) or (None, None)
        print(f"   the worker computed {aggregate[0]} as user {aggregate[1]}")
        print(f"   task {task_id} is {report.scheduler_task.status}, result {report.result}")
        if aggregate[1] != 8 or report.scheduler_task.status != TaskStatus.COMPLETED.value:
            return 1
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    print(f"\nworker stopped (exit {worker.returncode}); its log is {WORKER_LOG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
