"""Task functions for the integration tests: one for every path through the lifecycle.

Kept apart from ``lifecycle_app`` (which builds its Scheduler from the environment at
import time) so that the test process can import the registry and the audit helpers
without a worker's environment.

``append_audit`` and ``flaky`` write to an ``audit`` table of their own, in the same
database but through their own connection, so a test can count how often each task
really ran, independently of what the scheduler's tables claim.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from taskmill import current_task

#: environment variable naming the database (set for every worker by the harness)
DB_ENV = "TASKMILL_TEST_DB"
#: where the audit table lives, if not in that database: the connection-fault tests
#: keep it elsewhere, so that killing the scheduler database's connections measures
#: the worker, not the task's own bookkeeping
AUDIT_DB_ENV = "TASKMILL_TEST_AUDIT_DB"

BIG_RESULT_SIZE = 100_000

audit_metadata = sa.MetaData()
audit = sa.Table(
    "audit",
    audit_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.Integer, nullable=False, index=True),
    sa.Column("label", sa.String(255), nullable=False, default=""),
    sa.Column("pid", sa.Integer, nullable=False),
)

_engines: dict[str, sa.Engine] = {}
_created: set[str] = set()


class TaskBoom(Exception):
    """What ``fail`` raises, so a traceback can be recognised."""


def audit_engine(url: str) -> sa.Engine:
    """One engine per database and process; the child runs many tasks."""
    engine = _engines.get(url)
    if engine is None:
        connect_args = {"timeout": 30} if url.startswith("sqlite") else {}
        engine = sa.create_engine(url, connect_args=connect_args)
        _engines[url] = engine
    return engine


def create_audit_table(engine: sa.Engine) -> None:
    audit_metadata.create_all(engine, checkfirst=True)


def audit_counts(engine: sa.Engine) -> dict[int, int]:
    """task id -> how many runs of it wrote an audit row."""
    query = sa.select(audit.c.task_id, sa.func.count()).group_by(audit.c.task_id)
    with engine.connect() as conn:
        return {task_id: count for task_id, count in conn.execute(query)}


def write_audit(label: str) -> int:
    """Insert one audit row for the running task; returns that task's row count."""
    context = current_task()
    if context is None:
        raise RuntimeError("audit tasks must run inside a worker")
    url = os.environ.get(AUDIT_DB_ENV) or os.environ[DB_ENV]
    engine = audit_engine(url)
    if url not in _created:
        create_audit_table(engine)
        _created.add(url)
    with engine.begin() as conn:
        conn.execute(sa.insert(audit).values(task_id=context.id, label=label, pid=os.getpid()))
        count = conn.execute(
            sa.select(sa.func.count()).where(audit.c.task_id == context.id)
        ).scalar_one()
    return int(count)


# ----------------------------------------------------------------- the tasks


def add(a: int, b: int) -> int:
    return a + b


def fail(message: str = "boom") -> None:
    raise TaskBoom(message)


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def print_progress(steps: int = 2, delay: float = 1.0) -> int:
    """Prints progress, each line clearing what came before (web2py's "!clear!")."""
    print("this line is cleared before anyone can see it")
    for step in range(1, steps + 1):
        print(f"!clear!step {step} of {steps}")
        time.sleep(delay)
    print("!clear!done")
    return steps


def big_result(size: int = BIG_RESULT_SIZE) -> str:
    return expected_big_result(size)


def expected_big_result(size: int = BIG_RESULT_SIZE) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(alphabet[i % len(alphabet)] for i in range(size))


def returns_none() -> None:
    return None


def append_audit(label: str = "", delay: float = 0) -> int:
    """Records that it ran (after `delay` seconds); returns how many times this task
    has run so far."""
    if delay:
        time.sleep(delay)
    return write_audit(label)


def flaky(failures: int) -> int:
    """Fails on its first `failures` runs, then succeeds; counts runs in the audit table."""
    run = write_audit("flaky")
    if run <= failures:
        raise TaskBoom(f"flaky failure {run} of {failures}")
    return run


def not_json() -> set[int]:
    return {1, 2, 3}


def whoami(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """What current_task() tells a running task about itself."""
    context = current_task()
    if context is None:
        return {}
    return {
        "id": context.id,
        "uuid": context.uuid,
        "name": context.name,
        "function_name": context.function_name,
        "run_id": context.run_id,
        "args": context.args,
        "vars": context.vars,
    }


TASKS: dict[str, Callable[..., Any]] = {
    "add": add,
    "fail": fail,
    "sleep_for": sleep_for,
    "print_progress": print_progress,
    "big_result": big_result,
    "returns_none": returns_none,
    "append_audit": append_audit,
    "flaky": flaky,
    "not_json": not_json,
    "whoami": whoami,
}
