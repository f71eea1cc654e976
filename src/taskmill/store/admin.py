"""Operator-facing queries: what the dashboard, the HTTP API and /metrics read and change.

Kept apart from `Store` (the worker's hot path) so that the claim and heartbeat code
stays small; it reaches the database only through the store it wraps. Listing uses
keyset pagination on the primary key (`id < before`, newest first), so a page costs
the same at row 1,000,000 as at row 1: no OFFSET, no COUNT over the filtered set.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, true, update

from taskmill.records import Run, Task
from taskmill.schema import scheduler_run, scheduler_task, scheduler_task_deps
from taskmill.states import TaskStatus
from taskmill.store.base import Store
from taskmill.timing import from_storage

T = scheduler_task
R = scheduler_run
D = scheduler_task_deps


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """What an operator narrows the task list to; empty fields match everything."""

    status: str | None = None
    group_name: str | None = None
    function_name: str | None = None
    #: matches a part of task_name or args, a whole uuid or a whole id
    text: str | None = None

    def condition(self) -> ColumnElement[bool]:
        parts: list[ColumnElement[bool]] = []
        if self.status:
            parts.append(T.c.status == self.status)
        if self.group_name:
            parts.append(T.c.group_name == self.group_name)
        if self.function_name:
            parts.append(T.c.function_name == self.function_name)
        text = (self.text or "").strip()
        if text:
            matches = [
                T.c.task_name.contains(text, autoescape=True),
                T.c.args.contains(text, autoescape=True),
                T.c.uuid == text,
            ]
            if text.isdigit():
                matches.append(T.c.id == int(text))
            parts.append(or_(*matches))
        return and_(true(), *parts)


@dataclass(frozen=True, slots=True)
class TaskPage:
    """One page of tasks, newest first, with the ids to ask for the neighbours."""

    tasks: list[Task]
    #: pass as `before` for the next (older) page; None on the last page
    older_than: int | None
    #: pass as `after` for the previous (newer) page; None on the first page
    newer_than: int | None


@dataclass(frozen=True, slots=True)
class DueSummary:
    """How many enabled QUEUED tasks are due now, and since when the oldest waits."""

    depth: int
    oldest_due: datetime | None


class AdminQueries:
    """Read and bulk-change tasks by filter, through an existing Store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ------------------------------------------------------------------ reads
    def list_tasks(
        self,
        task_filter: TaskFilter,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> TaskPage:
        """A page of matching tasks, newest first: older than `before` or newer than `after`."""
        condition = task_filter.condition()
        exact = self._exact_match(task_filter.text)
        if exact:
            # a whole uuid or id: found through its index instead of a LIKE scan
            condition = and_(
                TaskFilter(
                    task_filter.status, task_filter.group_name, task_filter.function_name
                ).condition(),
                T.c.id.in_(exact),
            )
        query = select(T).where(condition)
        if after is not None:
            query = query.where(T.c.id > after).order_by(T.c.id.asc())
        else:
            if before is not None:
                query = query.where(T.c.id < before)
            query = query.order_by(T.c.id.desc())
        with self.store.reading() as conn:
            rows = conn.execute(query.limit(limit + 1)).all()
        more = len(rows) > limit
        tasks = [self.store._task(row) for row in rows[:limit]]
        if after is not None:
            tasks.reverse()
            older = tasks[-1].id if tasks else None
            newer = tasks[0].id if tasks and more else None
        else:
            older = tasks[-1].id if tasks and more else None
            newer = tasks[0].id if tasks and before is not None else None
        return TaskPage(tasks=tasks, older_than=older, newer_than=newer)

    def _exact_match(self, text: str | None) -> list[int]:
        """Ids of the tasks whose uuid (or id) is exactly `text`."""
        text = (text or "").strip()
        if not text:
            return []
        match = T.c.uuid == text
        if text.isdigit():
            match = or_(match, T.c.id == int(text))
        with self.store.reading() as conn:
            return [row.id for row in conn.execute(select(T.c.id).where(match))]

    def counts_by_status_and_group(self) -> list[tuple[str, str, int]]:
        """(status, group_name, count) for every pair that has tasks."""
        query = select(T.c.status, T.c.group_name, func.count()).group_by(
            T.c.status, T.c.group_name
        )
        with self.store.reading() as conn:
            return [
                (str(status), str(group or ""), int(count))
                for status, group, count in conn.execute(query)
            ]

    def due_summary(self) -> DueSummary:
        now = self.store._db(self.store.now())
        query = select(func.count(), func.min(T.c.next_run_time)).where(
            T.c.status == TaskStatus.QUEUED.value,
            T.c.enabled == True,  # noqa: E712
            T.c.next_run_time <= now,
        )
        with self.store.reading() as conn:
            depth, oldest = conn.execute(query).one()
        return DueSummary(
            depth=int(depth), oldest_due=from_storage(oldest, local_time=self.store.local_time)
        )

    def run_counts_by_status(self) -> dict[str, int]:
        with self.store.reading() as conn:
            rows = conn.execute(select(R.c.status, func.count()).group_by(R.c.status))
            return {str(status): int(count) for status, count in rows}

    def runs_finished_since(self, since: datetime) -> list[Run]:
        """Runs that ended after `since` (for throughput charts and duration histograms)."""
        query = (
            select(R.c.id, R.c.task_id, R.c.status, R.c.start_time, R.c.stop_time)
            .where(R.c.stop_time >= self.store._db(since))
            .order_by(R.c.id)
        )
        with self.store.reading() as conn:
            return [self.store._run(row) for row in conn.execute(query)]

    def group_names(self) -> list[str]:
        with self.store.reading() as conn:
            rows = conn.execute(select(T.c.group_name).distinct().order_by(T.c.group_name))
            return [str(name) for (name,) in rows if name]

    # ----------------------------------------------------------------- writes
    def delete_tasks(self, condition: ColumnElement[bool]) -> int:
        """Delete tasks with their runs and dependency edges (removed explicitly: SQLite
        cascades only with foreign keys switched on, and task_parent has no key)."""
        with self.store.transaction() as conn:
            ids = [row.id for row in conn.execute(select(T.c.id).where(condition))]
            if not ids:
                return 0
            conn.execute(delete(R).where(R.c.task_id.in_(ids)))
            conn.execute(delete(D).where(or_(D.c.task_child.in_(ids), D.c.task_parent.in_(ids))))
            return conn.execute(delete(T).where(T.c.id.in_(ids))).rowcount

    def set_enabled(self, condition: ColumnElement[bool], enabled: bool) -> int:
        with self.store.transaction() as conn:
            count = conn.execute(update(T).where(condition).values(enabled=enabled)).rowcount
        if count and enabled:
            self.store.ring()
        return count


def per_minute(runs: Sequence[Run], now: datetime, minutes: int) -> list[Counter[str]]:
    """Run statuses counted per minute, oldest minute first, for the last `minutes`."""
    buckets: list[Counter[str]] = [Counter() for _ in range(minutes)]
    start = now - timedelta(minutes=minutes)
    for run in runs:
        if run.stop_time is None or run.stop_time < start:
            continue
        index = min(int((run.stop_time - start).total_seconds() // 60), minutes - 1)
        buckets[index][run.status or "?"] += 1
    return buckets
