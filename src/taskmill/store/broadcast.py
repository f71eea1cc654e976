"""broadcast=True: one copy of a task for every live worker of its group.

As in web2py, the task queued with broadcast=True is a template that never runs
itself: when it is due, the ticker inserts one copy per live, active worker
serving its group, addressed to that worker, and moves the template on by its
period (or cron line) until its repeats are used up. Unlike web2py, a copy
keeps the template's vars as well as its args.

A copy is a row with broadcast 'T' and the addressee in assigned_worker_name;
only that worker claims it, and it keeps its addressee when it is released or
retried. A copy whose worker is gone can never run: the ticker expires it.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, case, insert, or_, select, update

from taskmill.lifecycle import following_run_time, run_again
from taskmill.records import Task, Worker
from taskmill.schema import scheduler_task as T
from taskmill.states import TaskStatus, WorkerStatus

#: copied from the template to each worker's copy
_COPIED = (
    "application_name",
    "task_name",
    "group_name",
    "function_name",
    "args",
    "vars",
    "timeout",
    "sync_output",
    "retry_failed",
    "retry_backoff",
    "stop_time",
    "priority",
)
_TAKING = (WorkerStatus.ACTIVE.value, WorkerStatus.PICK.value)


def is_plain() -> ColumnElement[bool]:
    """Not a broadcast row (web2py leaves broadcast NULL or 'F')."""
    return or_(T.c.broadcast == False, T.c.broadcast.is_(None))  # noqa: E712


def addressed_to(worker: Any) -> ColumnElement[bool]:
    """Rows this worker may claim: every plain task, and its own broadcast copies.

    (A plain QUEUED task may carry a stale assigned_worker_name, as web2py leaves
    it on a retry, so the name only matters for broadcast copies.)"""
    return or_(is_plain(), and_(T.c.broadcast == True, T.c.assigned_worker_name == worker))  # noqa: E712


def unassigned_unless_copy() -> Any:
    """The assigned_worker_name a task gets back when requeued or released."""
    return case((T.c.broadcast == True, T.c.assigned_worker_name), else_="")  # noqa: E712


def expire_undeliverable(conn: Connection, live: set[str]) -> int:
    """QUEUED copies addressed to workers that are gone can never run."""
    rows = conn.execute(
        select(T.c.id, T.c.assigned_worker_name).where(
            T.c.status == TaskStatus.QUEUED.value,
            T.c.broadcast == True,  # noqa: E712
            T.c.assigned_worker_name != "",
        )
    ).all()
    ids = sorted(row.id for row in rows if row.assigned_worker_name not in live)
    if not ids:
        return 0
    return conn.execute(
        update(T)
        .where(T.c.id.in_(ids), T.c.status == TaskStatus.QUEUED.value)
        .values(status=TaskStatus.EXPIRED.value)
    ).rowcount


def expand_due_templates(
    conn: Connection,
    now: datetime,
    stamp: Any,
    workers: Sequence[Worker],
    task_of: Callable[[Any], Task],
    to_db: Callable[[datetime | None], Any],
    *,
    local_time: bool,
) -> int:
    """Insert one copy per live worker of each due template; returns copies made."""
    templates = conn.execute(
        select(T).where(
            T.c.status == TaskStatus.QUEUED.value,
            T.c.broadcast == True,  # noqa: E712
            or_(T.c.assigned_worker_name == "", T.c.assigned_worker_name.is_(None)),
            T.c.enabled == True,  # noqa: E712
            T.c.next_run_time <= stamp,
        )
    ).all()
    made = 0
    for row in templates:
        template = task_of(row)
        targets = [
            w.worker_name
            for w in workers
            if w.status in _TAKING and template.group_name in (w.group_names or [])
        ]
        if not targets:
            continue  # nobody to send it to yet: it stays due until a worker shows up
        copies = [_copy(row, worker, stamp) for worker in targets]
        conn.execute(insert(T), copies)
        made += len(copies)
        _advance(conn, template, now, to_db, local_time=local_time)
    return made


def _copy(row: Any, worker: str, stamp: Any) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in _COPIED}
    values.update(
        uuid=str(uuidlib.uuid4()),
        status=TaskStatus.QUEUED.value,
        broadcast=True,
        assigned_worker_name=worker,
        enabled=True,
        start_time=stamp,
        next_run_time=stamp,
        repeats=1,
        period=0,
        prevent_drift=False,
        cronline=None,
        times_run=0,
        times_failed=0,
    )
    return values


def _advance(
    conn: Connection,
    template: Task,
    now: datetime,
    to_db: Callable[[datetime | None], Any],
    *,
    local_time: bool,
) -> None:
    times_run = (template.times_run or 0) + 1
    next_time = following_run_time(template, now, local_time=local_time)
    if not run_again(template, times_run):
        status = TaskStatus.COMPLETED
    elif template.stop_time is not None and next_time > template.stop_time:
        status = TaskStatus.EXPIRED
    else:
        status = TaskStatus.QUEUED
    conn.execute(
        update(T)
        .where(T.c.id == template.id)
        .values(
            status=status.value,
            times_run=times_run,
            last_run_time=to_db(now),
            next_run_time=to_db(next_time),
        )
    )
