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

from sqlalchemy import (
    ColumnElement,
    and_,
    delete,
    exists,
    func,
    null,
    or_,
    select,
    true,
    update,
)

from taskmill.records import Run, Task
from taskmill.schema import scheduler_run, scheduler_task, scheduler_task_deps
from taskmill.states import REQUEUEABLE, RunStatus, TaskStatus
from taskmill.store.base import Store
from taskmill.store.broadcast import unassigned_unless_copy
from taskmill.timing import from_storage
from taskmill.validation import MAX_INT

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

    def condition(self, *, like_ignores_case: bool = False) -> ColumnElement[bool]:
        """The filter as SQL; the text matches ignoring (ASCII) case on every backend.

        `like_ignores_case`: the database's LIKE does so already (SQLite), so the
        columns are not passed through lower(), which makes SQLite's scan 3x slower.
        """
        parts: list[ColumnElement[bool]] = []
        if self.status:
            parts.append(T.c.status == self.status)
        if self.group_name:
            parts.append(T.c.group_name == self.group_name)
        if self.function_name:
            parts.append(T.c.function_name == self.function_name)
        text = (self.text or "").strip()
        if text:
            if like_ignores_case:
                matches = [
                    T.c.task_name.contains(text, autoescape=True),
                    T.c.args.contains(text, autoescape=True),
                ]
            else:
                matches = [
                    T.c.task_name.icontains(text, autoescape=True),
                    T.c.args.icontains(text, autoescape=True),
                ]
            matches.append(T.c.uuid == text)
            if _is_id(text):
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


@dataclass(frozen=True, slots=True)
class GraphNode:
    """A task in a dependency graph, with what a drawing of it needs."""

    id: int
    task_name: str | None
    function_name: str | None
    status: str | None


@dataclass(frozen=True, slots=True)
class GraphEdge:
    """web2py's naming: `parent` runs only after `child` completed (`done`)."""

    parent: int
    child: int
    job_name: str | None
    done: bool


@dataclass(frozen=True, slots=True)
class DependencyGraph:
    """The tasks around one task, following scheduler_task_deps both ways."""

    task_id: int
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    #: True when the node limit cut the graph short
    truncated: bool


@dataclass(frozen=True, slots=True)
class RunNow:
    """What `run_now` changed: due tasks moved forward, finished tasks requeued."""

    moved: int
    requeued: int

    @property
    def count(self) -> int:
        return self.moved + self.requeued


#: statuses "run now" requeues: every final one, COMPLETED included (run it once more)
RUN_AGAIN = (TaskStatus.COMPLETED, *REQUEUEABLE)


class AdminQueries:
    """Read and bulk-change tasks by filter, through an existing Store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        #: SQLite's LIKE ignores ASCII case; PostgreSQL's and (on binary collations)
        #: MariaDB's do not
        self.like_ignores_case = store.engine.dialect.name == "sqlite"

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
        condition = task_filter.condition(like_ignores_case=self.like_ignores_case)
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
        if _is_id(text):
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

    def completions_without_run_since(self, since: datetime) -> list[datetime]:
        """Start times of successful runs that left no scheduler_run row (they returned
        None, as web2py does) since `since`: the task row keeps only the latest such
        run, as last_run_time, so a repeating task counts once at most."""
        query = select(T.c.last_run_time).where(
            T.c.last_run_time >= self.store._db(since),
            T.c.times_run > 0,
            T.c.status.in_([TaskStatus.COMPLETED.value, TaskStatus.QUEUED.value]),
            ~exists().where(R.c.task_id == T.c.id, R.c.start_time == T.c.last_run_time),
        )
        with self.store.reading() as conn:
            stamps = [
                from_storage(value, local_time=self.store.local_time)
                for (value,) in conn.execute(query)
            ]
        return [stamp for stamp in stamps if stamp is not None]

    def pickup_latencies_since(self, since: datetime) -> list[float]:
        """Seconds from due to started, for the runs whose due time the tables still hold.

        The tables keep a run's due time only in a few cases, which are the ones
        measured: a RUNNING task's next_run_time is still the due time of the run in
        progress (it moves on when the run ends); and a one-shot task (repeats=1, no
        cronline) was first due at its start_time, so its first run, the oldest run
        row, or its only success when that left no row, measures from there.
        """
        started = self.store._db(since)
        earlier = R.alias("earlier_run")
        first_run = (
            select(func.min(earlier.c.id))
            .where(earlier.c.task_id == T.c.id)
            .correlate(T)
            .scalar_subquery()
        )
        one_shot = and_(T.c.repeats == 1, or_(T.c.cronline.is_(None), T.c.cronline == ""))
        queries = [
            # in progress (repeating tasks; one-shot ones are counted by their run row)
            select(T.c.last_run_time, T.c.next_run_time).where(
                T.c.status == TaskStatus.RUNNING.value,
                T.c.last_run_time >= started,
                ~one_shot,
            ),
            # one-shot tasks: their first run row
            select(R.c.start_time, T.c.start_time)
            .select_from(R.join(T, T.c.id == R.c.task_id))
            .where(R.c.start_time >= started, one_shot, R.c.id == first_run),
            # one-shot tasks that completed without leaving a run row
            select(T.c.last_run_time, T.c.start_time).where(
                T.c.last_run_time >= started,
                T.c.status == TaskStatus.COMPLETED.value,
                T.c.times_run == 1,
                one_shot,
                ~exists().where(R.c.task_id == T.c.id),
            ),
        ]
        latencies: list[float] = []
        with self.store.reading() as conn:
            for query in queries:
                for begun, due in conn.execute(query):
                    if begun is not None and due is not None:
                        latencies.append(max(0.0, (begun - due).total_seconds()))
        return latencies

    def running_run(self, task_id: int) -> Run | None:
        """The task's run in progress (RUNNING row), if it has one."""
        query = (
            select(R)
            .where(R.c.task_id == task_id, R.c.status == RunStatus.RUNNING.value)
            .order_by(R.c.id.desc())
            .limit(1)
        )
        with self.store.reading() as conn:
            row = conn.execute(query).first()
        return None if row is None else self.store._run(row)

    def get_run(self, run_id: int) -> Run | None:
        with self.store.reading() as conn:
            row = conn.execute(select(R).where(R.c.id == run_id)).first()
        return None if row is None else self.store._run(row)

    def dependency_graph(
        self, task_id: int, *, depth: int = 2, max_nodes: int = 40
    ) -> DependencyGraph:
        """The task's parents and children up to `depth` edges away (both directions).

        Breadth first, so when `max_nodes` cuts it short the nearest tasks are kept.
        """
        seen: set[int] = {task_id}
        edges: dict[tuple[int, int], GraphEdge] = {}
        frontier = {task_id}
        truncated = False
        with self.store.reading() as conn:
            for _ in range(depth):
                if not frontier:
                    break
                rows = conn.execute(
                    select(D.c.task_parent, D.c.task_child, D.c.job_name, D.c.can_visit).where(
                        or_(D.c.task_parent.in_(frontier), D.c.task_child.in_(frontier))
                    )
                ).all()
                found: set[int] = set()
                for parent, child, job_name, can_visit in rows:
                    if parent is None or child is None or parent == child:
                        continue
                    for node in (int(parent), int(child)):
                        if node not in seen and node not in found:
                            if len(seen) + len(found) >= max_nodes:
                                truncated = True
                                continue
                            found.add(node)
                    if {int(parent), int(child)} <= seen | found:
                        edges[(int(parent), int(child))] = GraphEdge(
                            int(parent), int(child), job_name, bool(can_visit)
                        )
                seen |= found
                frontier = found
            nodes = {
                row.id: GraphNode(row.id, row.task_name, row.function_name, row.status)
                for row in conn.execute(
                    select(T.c.id, T.c.task_name, T.c.function_name, T.c.status).where(
                        T.c.id.in_(sorted(seen))
                    )
                )
            }
        # an edge may name a deleted task (task_parent has no foreign key): shown as such
        ordered = [nodes.get(node, GraphNode(node, None, None, None)) for node in sorted(seen)]
        if len(ordered) == 1:
            return DependencyGraph(task_id, [], [], False)
        return DependencyGraph(task_id, ordered, list(edges.values()), truncated)

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
            count = conn.execute(delete(T).where(T.c.id.in_(ids))).rowcount
        self.store.ring(control=True)  # a worker may hold one in its claimed batch
        return count

    def run_now(self, condition: ColumnElement[bool]) -> RunNow:
        """Make the matching tasks due now: QUEUED ones move their next_run_time
        forward (disabled ones stay disabled), finished ones (COMPLETED, FAILED,
        TIMEOUT, STOPPED, EXPIRED) go back to QUEUED, due now, failures forgotten;
        times_run is kept, so a COMPLETED one-shot task runs exactly once more."""
        now = self.store._db(self.store.now())
        with self.store.transaction() as conn:
            moved = conn.execute(
                update(T)
                .where(
                    condition,
                    T.c.status == TaskStatus.QUEUED.value,
                    T.c.enabled == True,  # noqa: E712
                    or_(T.c.next_run_time.is_(None), T.c.next_run_time > now),
                )
                .values(next_run_time=now)
            ).rowcount
            again = [s.value for s in RUN_AGAIN]
            # a stop_time already passed would expire the task again at once
            conn.execute(
                update(T)
                .where(condition, T.c.status.in_(again), T.c.stop_time <= now)
                .values(stop_time=null())
            )
            requeued = conn.execute(
                update(T)
                .where(condition, T.c.status.in_(again))
                .values(
                    status=TaskStatus.QUEUED.value,
                    next_run_time=now,
                    times_failed=0,
                    assigned_worker_name=unassigned_unless_copy(),
                )
            ).rowcount
        if moved or requeued:
            self.store.ring()
        return RunNow(moved=moved, requeued=requeued)

    def set_enabled(self, condition: ColumnElement[bool], enabled: bool) -> int:
        with self.store.transaction() as conn:
            count = conn.execute(update(T).where(condition).values(enabled=enabled)).rowcount
        if count:
            # enabled: may be due now; disabled: may sit in a worker's claimed batch
            self.store.ring(control=not enabled)
        return count


def _is_id(text: str) -> bool:
    """Digits that could be a task id (a longer number would overflow the column)."""
    return text.isdigit() and 0 < int(text) <= MAX_INT


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
