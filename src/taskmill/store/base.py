"""The store: every SQL statement taskmill runs, written once with SQLAlchemy Core.

`Store` holds the dialect-neutral implementation; a backend subclass overrides
only what its database does better (a one-statement claim, push wake-ups). The
rest of taskmill never asks which database it talks to.

Times cross this boundary as aware UTC datetimes; the store converts them to and
from the naive values web2py keeps in its tables.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    Connection,
    CursorResult,
    Engine,
    Integer,
    Select,
    and_,
    bindparam,
    delete,
    event,
    exists,
    false,
    func,
    insert,
    inspect,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import DBAPIError

from taskmill.errors import ConfigurationError
from taskmill.groups import GroupShares
from taskmill.lifecycle import Outcome, Settlement
from taskmill.records import Run, Task, Worker
from taskmill.schema import (
    RETIRED_INDEXES,
    indexes_for,
    metadata,
    scheduler_run,
    scheduler_task,
    scheduler_task_deps,
    scheduler_worker,
)
from taskmill.states import ACTIVE, IN_FLIGHT, REQUEUEABLE, RunStatus, TaskStatus, WorkerStatus
from taskmill.store.broadcast import (
    addressed_to,
    expand_due_templates,
    expire_undeliverable,
    unassigned_unless_copy,
)
from taskmill.timing import from_storage, to_storage, utc_now

log = logging.getLogger(__name__)

T = scheduler_task
R = scheduler_run
W = scheduler_worker
D = scheduler_task_deps

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: below every priority queue_task accepts: how a NULL priority ranks
_NULL_PRIORITY = -(2**31)
TASK_TIMES = ("start_time", "next_run_time", "stop_time", "last_run_time")
#: scheduler_task's columns in table order, which is Task's field order (checked in tests)
_TASK_FIELDS = tuple(T.c.keys())
_TASK_TIME_INDEXES = tuple(_TASK_FIELDS.index(name) for name in TASK_TIMES)
_RUN_TIMES = ("start_time", "stop_time")
_WORKER_TIMES = ("first_heartbeat", "last_heartbeat")


class Listener(Protocol):
    """Something a worker can select() on to learn that there may be work."""

    def fileno(self) -> int: ...

    def drain(self) -> int: ...

    def take_control(self) -> bool:
        """True once after a control ring (stop_task, delete, disable, orphans
        requeued) was drained: the worker must re-read the tasks it holds."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Beat:
    """What a heartbeat learned: the worker's commanded status and ticker role."""

    status: WorkerStatus
    is_ticker: bool
    #: when another worker's ticker lease runs out unless it renews it (None: we
    #: hold the lease); a follower beats then, so a dead ticker is replaced at once
    lease_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Housekeeping:
    """What one round of ticker duties changed."""

    dead_workers: list[str]
    requeued: int
    expired: int
    #: False when the caller turned out not to hold the ticker lease: nothing done
    held: bool = True


class Store:
    """Dialect-neutral SQL. Subclasses: SQLiteStore (and the server stores)."""

    #: seconds an idle worker waits before looking again when nobody rings it
    poll_interval: float = 0.5
    #: True where every change that should wake a worker rings its listener (one
    #: machine for SQLite, NOTIFY for PostgreSQL). False where wake-ups are only a
    #: same-host shortcut (MariaDB/MySQL): workers then also poll, and re-read
    #: their claimed batch before each task instead of after a ring
    wakeups_complete: bool = True
    #: a one-statement UPDATE ... RETURNING claim (see claim_returning), for the
    #: backends that have RETURNING; None: select the due ids, then update them
    claim_statement: Any = None

    def __init__(self, engine: Engine, *, local_time: bool = False) -> None:
        self.engine = engine
        self.local_time = local_time
        self._clock_offset = timedelta(0)
        self._clock_synced: float | None = None

    # ----------------------------------------------------------------- plumbing
    def now(self) -> datetime:
        """The clock that decides what is due (aware UTC): the database's where
        there is one, so workers on machines with skewed clocks agree."""
        if self._clock_synced is None or time.monotonic() - self._clock_synced > 60:
            self._clock_synced = time.monotonic()
            try:
                self.sync_clock()
            except DBAPIError as exc:
                # reading the time must not fail the caller (a worker stamping a
                # finished run): keep the last offset; the next heartbeat measures again
                log.warning("cannot read the database clock, using the last offset: %s", exc)
        return utc_now() + self._clock_offset

    def sync_clock(self) -> None:
        """Measure how far the database clock is from ours (called each heartbeat)."""
        with self.reading() as conn:
            before = utc_now()
            database_now = self._database_utc_now(conn)
            after = utc_now()
        self._clock_synced = time.monotonic()
        if database_now is not None:
            self._clock_offset = database_now - (before + (after - before) / 2)

    def _database_utc_now(self, conn: Connection) -> datetime | None:
        return None

    def _db(self, value: datetime | None) -> datetime | None:
        return to_storage(value, local_time=self.local_time)

    def _times_from_db(self, row: Any, names: Iterable[str]) -> dict[str, Any]:
        data = dict(row._mapping)
        for name in names:
            if name in data:
                data[name] = from_storage(data[name], local_time=self.local_time)
        return data

    def _task(self, row: Any) -> Task:
        """A Task from a row; rows of every column in table order (claims,
        get_task) take the positional path, which builds a batch of 50 several
        times faster than going through a mapping: claims are on the hot path."""
        fields = row._fields
        if fields == _TASK_FIELDS:
            values = list(row)
            for index in _TASK_TIME_INDEXES:
                value = values[index]
                if value is not None:
                    values[index] = from_storage(value, local_time=self.local_time)
            return Task(*values)
        return Task.from_mapping(self._times_from_db(row, TASK_TIMES))

    def _run(self, row: Any) -> Run:
        return Run.from_mapping(self._times_from_db(row, _RUN_TIMES))

    def _worker(self, row: Any) -> Worker:
        data = self._times_from_db(row, _WORKER_TIMES)
        try:
            data["worker_stats"] = json.loads(data.get("worker_stats") or "null")
        except ValueError:
            data["worker_stats"] = None  # a hand-edited row must not break get_workers
        return Worker.from_mapping(data)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A short write transaction; commits on success, rolls back on error."""
        with self.engine.begin() as conn:
            yield conn

    def claim_transaction(self) -> AbstractContextManager[Connection]:
        """Where a claim runs alone (nothing to record with it); backends whose claim
        is one statement run it without BEGIN/COMMIT round trips."""
        return self.transaction()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads that must not take write locks."""
        with self.engine.connect() as conn:
            yield conn

    def poll_after(self, idle_for: float) -> float:
        """Seconds an idle worker waits before it looks again, having found nothing
        for `idle_for` seconds; a fixed safety net where wake-ups are complete."""
        return self.poll_interval

    def ring(self, control: bool = False) -> None:
        """Tell idle workers there may be something to do (no-op where they poll);
        `control`: a task a worker may hold was stopped, deleted, disabled or taken
        back, so busy workers re-read their claimed batch (a plain ring does not
        make them, so a stream of queue_task calls costs a draining worker nothing)."""

    def wake_in(self, conn: Connection) -> bool:
        """Queue a wake-up delivered when `conn` commits; False if unsupported."""
        return False

    def ring_on_commit(self, conn: Connection) -> None:
        """Wake workers once the caller's own transaction commits."""
        if not self.wake_in(conn):
            event.listen(conn, "commit", lambda _conn: self.ring(), once=True)

    def listen(self, worker_name: str) -> Listener | None:
        """A wake-up source for an idle worker, or None if this backend only polls."""
        return None

    def is_deadlock(self, exc: DBAPIError) -> bool:
        """Was this error the database breaking a lock cycle (or a lock wait timing
        out)? Workers retry such a transaction like any database error, but count
        them apart, so a deadlock never hides among reconnects."""
        return False

    def url_text(self) -> str:
        """The database URL with any password hidden, for messages and logs."""
        return self.engine.url.render_as_string(hide_password=True)

    def tables_exist(self) -> bool:
        return inspect(self.engine).has_table(T.name)

    def dispose(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ schema
    def create_tables(self) -> None:
        """Create missing tables, indexes and taskmill's extra columns; idempotent.

        Also the migration of databases made by web2py or an earlier taskmill:
        indexes that were replaced are dropped (a claim index without priority
        would only slow down every write), and a priority column without a
        server default gets one, so rows web2py inserts rank as priority 0."""
        existing = set(inspect(self.engine).get_table_names())
        metadata.create_all(self.engine, checkfirst=True)
        self._add_missing_columns()
        self._add_priority_default()
        # create_all skips the indexes of tables that existed (e.g. made by web2py)
        for table in metadata.sorted_tables:
            if table.name in existing:
                for index in indexes_for(table, self.engine.dialect):
                    index.create(self.engine, checkfirst=True)
        self._drop_retired_indexes()

    def _drop_retired_indexes(self) -> None:
        inspector = inspect(self.engine)
        for table_name, names in RETIRED_INDEXES.items():
            present = {index["name"] for index in inspector.get_indexes(table_name)}
            for name in names:
                if name in present:
                    with self.engine.begin() as conn:
                        conn.exec_driver_sql(self._drop_index_sql(table_name, name))
                    log.info("dropped index %s (replaced)", name)

    def _drop_index_sql(self, table: str, name: str) -> str:
        return f"DROP INDEX {name}"

    def _add_priority_default(self) -> None:
        column = next(
            c for c in inspect(self.engine).get_columns(T.name) if c["name"] == "priority"
        )
        if column.get("default") is not None:
            return
        if self._set_column_default(T.name, "priority", 0):
            log.info("gave %s.priority the default 0", T.name)
        # queued rows web2py wrote meanwhile: NULL would rank below every priority
        with self.engine.begin() as conn:
            conn.execute(
                update(T)
                .where(T.c.status == TaskStatus.QUEUED.value, T.c.priority.is_(None))
                .values(priority=0)
            )

    def _set_column_default(self, table: str, column: str, value: int) -> bool:
        """ALTER a column's server default; False where the database cannot (SQLite)."""
        with self.engine.begin() as conn:
            conn.exec_driver_sql(
                f"ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT {int(value)}"
            )
        return True

    def _add_missing_columns(self) -> None:
        # Tables created by web2py lack taskmill's extra columns; add them in place.
        inspector = inspect(self.engine)
        for table in metadata.sorted_tables:
            present = {col["name"] for col in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in present:
                    continue
                ddl = column.type.compile(dialect=self.engine.dialect)
                default = getattr(column.default, "arg", None)
                clause = f" DEFAULT {int(default)}" if isinstance(default, int) else ""
                with self.engine.begin() as conn:
                    conn.exec_driver_sql(
                        f"ALTER TABLE {table.name} ADD COLUMN {column.name} {ddl}{clause}"
                    )
                log.info("added column %s.%s", table.name, column.name)

    # ------------------------------------------------------------------- tasks
    def insert_task(self, values: dict[str, Any], conn: Connection | None = None) -> int:
        row = {k: (self._db(v) if k in TASK_TIMES else v) for k, v in values.items()}
        if conn is not None:
            # insert(T) with the row as parameters: one cached compiled statement per
            # set of columns, where .values(**row) would be built and keyed each time
            new_id = _new_id(conn.execute(insert(T), row))
            self.ring_on_commit(conn)
            return new_id
        return self._insert_own(row)

    def _insert_own(self, row: dict[str, Any]) -> int:
        """Insert one task row in a transaction of its own and wake the workers."""
        with self.transaction() as own:
            new_id = _new_id(own.execute(insert(T), row))
            woken = self.wake_in(own)
        if not woken:
            self.ring()
        return new_id

    def insert_unique_task(
        self, values: dict[str, Any], same_as: Callable[[str | None, str | None], bool]
    ) -> int | None:
        """Insert a task unless an active (QUEUED/ASSIGNED/RUNNING) task of the same
        function has args and vars text for which `same_as(args, vars)` is true;
        None when there is one. The check and the insert are atomic across
        processes: writers of the same function name are serialised."""
        function_name = str(values["function_name"])
        row = {k: (self._db(v) if k in TASK_TIMES else v) for k, v in values.items()}
        query = select(T.c.args, T.c.vars).where(
            T.c.function_name == function_name, T.c.status.in_(ACTIVE)
        )
        with self.serialised_transaction(f"unique-task:{function_name}") as conn:
            if any(same_as(found.args, found.vars) for found in conn.execute(query)):
                return None
            new_id = _new_id(conn.execute(insert(T).values(**row)))
            woken = self.wake_in(conn)
        if not woken:
            self.ring()
        return new_id

    @contextmanager
    def serialised_transaction(self, key: str) -> Iterator[Connection]:
        """A write transaction that never runs beside another one holding the same
        key, in any process. The default relies on the database serialising
        writers (SQLite's BEGIN IMMEDIATE); server backends take a named lock."""
        with self.transaction() as conn:
            yield conn

    def insert_tasks(self, rows: Sequence[dict[str, Any]], conn: Connection | None = None) -> None:
        """Bulk insert in one transaction, the caller's `conn` if given (ids are not
        returned)."""
        if not rows:
            return
        if conn is not None:
            self._insert_rows(conn, rows)
            self.ring_on_commit(conn)
            return
        with self.transaction() as own:
            self._insert_rows(own, rows)
            woken = self.wake_in(own)
        if not woken:
            self.ring()

    def _insert_rows(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        converted = [
            {k: (self._db(v) if k in TASK_TIMES else v) for k, v in row.items()} for row in rows
        ]
        # executemany needs the same columns in every row: one call per run of
        # rows with the same keys, which keeps the insertion order
        for _, same_keys in groupby(converted, key=lambda row: sorted(row)):
            conn.execute(insert(T), list(same_keys))

    def uuid_taken(self, uuid: str, conn: Connection | None = None) -> bool:
        query = select(T.c.id).where(T.c.uuid == uuid)
        if conn is not None:
            return conn.execute(query).first() is not None
        with self.reading() as own:
            return own.execute(query).first() is not None

    def find_task(self, condition: ColumnElement[bool]) -> Task | None:
        with self.reading() as conn:
            row = conn.execute(select(T).where(condition).order_by(T.c.id.desc()).limit(1)).first()
        return None if row is None else self._task(row)

    def task_exists(self, task_id: int, conn: Connection | None = None) -> bool:
        query = select(T.c.id).where(T.c.id == task_id)
        if conn is not None:
            return conn.execute(query).first() is not None
        with self.reading() as own:
            return own.execute(query).first() is not None

    def get_task(self, task_id: int) -> Task | None:
        return self.find_task(T.c.id == task_id)

    def latest_run(self, task_id: int) -> Run | None:
        with self.reading() as conn:
            row = conn.execute(
                select(R).where(R.c.task_id == task_id).order_by(R.c.id.desc()).limit(1)
            ).first()
        return None if row is None else self._run(row)

    def runs_of(self, task_id: int) -> list[Run]:
        with self.reading() as conn:
            rows = conn.execute(select(R).where(R.c.task_id == task_id).order_by(R.c.id))
            return [self._run(row) for row in rows]

    def stop_tasks(self, condition: ColumnElement[bool]) -> int:
        """QUEUED/ASSIGNED/RUNNING -> STOPPED; a worker running one kills it."""
        active = (TaskStatus.QUEUED, TaskStatus.ASSIGNED, TaskStatus.RUNNING)
        with self.transaction() as conn:
            count = conn.execute(
                update(T)
                .where(condition, T.c.status.in_(active))
                .values(status=TaskStatus.STOPPED.value)
            ).rowcount
        if count:
            self.ring(control=True)
        return count

    def requeue_tasks(self, condition: ColumnElement[bool], *, restart: bool = False) -> int:
        """FAILED/TIMEOUT/STOPPED/EXPIRED -> QUEUED, due now, failures forgotten;
        `restart` also clears times_run, so the repeats start over (Eden's reset)."""
        now = self._db(self.now())
        counters = {"times_failed": 0, **({"times_run": 0} if restart else {})}
        with self.transaction() as conn:
            # a stop_time already passed would expire the task again at once
            conn.execute(
                update(T)
                .where(condition, T.c.status.in_(REQUEUEABLE), T.c.stop_time <= now)
                .values(stop_time=None)
            )
            count = conn.execute(
                update(T)
                .where(condition, T.c.status.in_(REQUEUEABLE))
                .values(
                    status=TaskStatus.QUEUED.value,
                    next_run_time=now,
                    assigned_worker_name=unassigned_unless_copy(),
                    **counters,
                )
            ).rowcount
        if count:
            self.ring()
        return count

    def task_statuses(self, task_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
        """id -> (status, assigned_worker_name), for a worker watching its tasks."""
        if not task_ids:
            return {}
        with self.reading() as conn:
            rows = conn.execute(
                select(T.c.id, T.c.status, T.c.assigned_worker_name).where(T.c.id.in_(task_ids))
            )
            return {row.id: (row.status, row.assigned_worker_name or "") for row in rows}

    # ------------------------------------------------------------ dependencies
    def add_dependency(
        self, job_name: str, parent: int, child: int, conn: Connection | None = None
    ) -> int:
        values = {"job_name": job_name, "task_parent": parent, "task_child": child}
        statement = insert(D).values(can_visit=self._child_done(child, conn), **values)
        if conn is not None:
            return _new_id(conn.execute(statement))
        with self.transaction() as own:
            return _new_id(own.execute(statement))

    def _child_done(self, child: int, conn: Connection | None) -> bool:
        # an edge to an already completed child must not hold the parent forever
        query = select(T.c.status).where(T.c.id == child)
        if conn is not None:
            status = conn.execute(query).scalar()
        else:
            with self.reading() as own:
                status = own.execute(query).scalar()
        return status == TaskStatus.COMPLETED.value

    def dependencies(self, job_name: str) -> list[tuple[int, int]]:
        with self.reading() as conn:
            rows = conn.execute(
                select(D.c.task_parent, D.c.task_child).where(D.c.job_name == job_name)
            )
            return [(int(row.task_parent), int(row.task_child)) for row in rows]

    def delete_dependencies(self, job_name: str) -> int:
        with self.transaction() as conn:
            count = conn.execute(delete(D).where(D.c.job_name == job_name)).rowcount
        self.ring()  # parents held by those edges may be due now
        return count

    def blocking_tasks(self, task_id: int) -> list[tuple[int, str | None]]:
        """(child id, child status) of the edges still holding task_id back."""
        with self.reading() as conn:
            rows = conn.execute(
                select(D.c.task_child, T.c.status)
                .select_from(D.outerjoin(T, T.c.id == D.c.task_child))
                .where(
                    D.c.task_parent == task_id,
                    or_(D.c.can_visit == False, D.c.can_visit.is_(None)),  # noqa: E712
                )
            )
            return [(int(row.task_child), row.status) for row in rows]

    def count_due_ahead(self, task: Task) -> int:
        """Due QUEUED tasks of the same group that a worker would claim first."""
        stamp = self._db(task.next_run_time)
        # NULL ranks below every priority, as in the claim
        rank = func.coalesce(T.c.priority, _NULL_PRIORITY)
        mine = _NULL_PRIORITY if task.priority is None else task.priority
        query = (
            select(func.count())
            .select_from(T)
            .where(
                DUE,
                or_(
                    T.c.next_run_time < stamp,
                    and_(
                        T.c.next_run_time == stamp,
                        or_(rank > mine, and_(rank == mine, T.c.id < task.id)),
                    ),
                ),
            )
        )
        with self.reading() as conn:
            value = conn.execute(query, self.due_params([task.group_name or ""])).scalar()
        return int(value or 0)

    # ------------------------------------------------------------------ claims
    def due_params(
        self, groups: Sequence[str], limit: int = 1, worker_name: str = ""
    ) -> dict[str, Any]:
        """Parameters of the prebuilt due-task statements (DUE_IDS, DUE_EXISTS)."""
        return {
            "due_now": self._db(self.now()),
            "due_groups": list(groups),
            "due_limit": limit,
            "due_worker": worker_name,
        }

    def has_due_task(self, groups: Sequence[str], worker_name: str = "") -> bool:
        """Is anything claimable now (by this worker, counting its broadcast copies)?"""
        params = self.due_params(groups, worker_name=worker_name)
        with self.reading() as conn:
            return conn.execute(DUE_EXISTS, params).first() is not None

    def next_due_time(self, groups: Sequence[str], worker_name: str = "") -> datetime | None:
        """When the next task of these groups falls due (None: nothing scheduled)."""
        params = self.due_params(groups, worker_name=worker_name)
        with self.reading() as conn:
            value = conn.execute(NEXT_DUE, params).scalar()
        return from_storage(value, local_time=self.local_time)

    def claim_due_tasks(
        self,
        conn: Connection,
        worker_name: str,
        groups: Sequence[str],
        limit: int,
        shares: GroupShares | None = None,
    ) -> list[Task]:
        """Mark up to `limit` due tasks ASSIGNED to this worker; no two workers get one.

        With `shares` (weighted groups) the batch is split among the groups by
        weight, one claim per group: each stays a read of the claim index in its
        order, so a claim costs the same however many tasks are queued."""
        if limit <= 0:
            return []
        if shares is None:
            return sort_claimed(self._claim_from(conn, worker_name, groups, limit))
        claimed: list[Task] = []
        open_groups = [g for g in groups if g in shares.weights]
        idle: list[str] = []
        while limit > 0 and open_groups:
            for group, wanted in shares.plan(limit, open_groups):
                got = self._claim_from(conn, worker_name, [group], wanted)
                shares.charge(group, len(got))
                claimed += got
                limit -= len(got)
                if len(got) < wanted:  # nothing more due there (or locked by others)
                    open_groups.remove(group)
                    idle.append(group)
        shares.settle(idle)
        return sort_claimed(claimed)

    def _claim_from(
        self, conn: Connection, worker_name: str, groups: Sequence[str], limit: int
    ) -> list[Task]:
        params = self.due_params(groups, limit, worker_name)
        if self.claim_statement is not None:
            rows = conn.execute(self.claim_statement, {"claimer": worker_name, **params}).all()
            return [self._task(row) for row in rows]
        # lock and read the due rows whole, then mark them: two statements, not a
        # third to read back what the UPDATE changed (we know what it wrote)
        found = [
            self._times_from_db(row, TASK_TIMES) for row in conn.execute(_DUE_ROWS_LOCKED, params)
        ]
        if not found:
            return []
        conn.execute(
            update(T)
            .where(T.c.id.in_([data["id"] for data in found]))
            .values(status=TaskStatus.ASSIGNED.value, assigned_worker_name=worker_name)
        )
        assigned = {"status": TaskStatus.ASSIGNED.value, "assigned_worker_name": worker_name}
        return [Task.from_mapping({**data, **assigned}) for data in found]

    def assign_task(self, conn: Connection, task_id: int, worker_name: str) -> bool:
        """Take a task for a foreground run (`taskmill run-task --record`)."""
        return bool(
            conn.execute(
                update(T)
                .where(T.c.id == task_id)
                .values(status=TaskStatus.ASSIGNED.value, assigned_worker_name=worker_name)
            ).rowcount
        )

    def release_tasks(self, conn: Connection, worker_name: str, task_ids: Sequence[int]) -> int:
        """Give claimed tasks that were never started back to the queue."""
        if not task_ids:
            return 0
        return conn.execute(
            update(T)
            .where(
                T.c.id.in_(list(task_ids)),
                T.c.status == TaskStatus.ASSIGNED.value,
                T.c.assigned_worker_name == worker_name,
            )
            .values(status=TaskStatus.QUEUED.value, assigned_worker_name=unassigned_unless_copy())
        ).rowcount

    def release_forgotten_tasks(
        self, conn: Connection, worker_name: str, keep: Iterable[int]
    ) -> int:
        """Release the tasks ASSIGNED to this worker but `keep`: after a connection
        failure a claim may have committed although its worker never saw the reply,
        and such a task would wait for its (live) worker forever."""
        assigned = conn.execute(
            select(T.c.id).where(
                T.c.status == TaskStatus.ASSIGNED.value, T.c.assigned_worker_name == worker_name
            )
        )
        forgotten = sorted({row.id for row in assigned} - set(keep))
        return self.release_tasks(conn, worker_name, forgotten)

    def start_run(
        self, conn: Connection, worker_name: str, task: Task, started: datetime
    ) -> int | None:
        """ASSIGNED -> RUNNING with a RUNNING run row; None if the task is no longer ours.

        Idempotent: retried after a commit whose reply was lost, it returns the
        run row that commit made."""
        moved = conn.execute(
            update(T)
            .where(
                T.c.id == task.id,
                T.c.status == TaskStatus.ASSIGNED.value,
                T.c.assigned_worker_name == worker_name,
            )
            .values(status=TaskStatus.RUNNING.value, last_run_time=self._db(started))
        ).rowcount
        if not moved:
            return self._running_run_id(conn, worker_name, task.id)
        return self._insert_run(
            conn,
            task_id=task.id,
            status=RunStatus.RUNNING.value,
            start_time=self._db(started),
            worker_name=worker_name,
        )

    def _running_run_id(self, conn: Connection, worker_name: str, task_id: int) -> int | None:
        return conn.execute(
            select(R.c.id)
            .select_from(R.join(T, T.c.id == R.c.task_id))
            .where(
                R.c.task_id == task_id,
                R.c.status == RunStatus.RUNNING.value,
                R.c.worker_name == worker_name,
                T.c.status == TaskStatus.RUNNING.value,
                T.c.assigned_worker_name == worker_name,
            )
            .order_by(R.c.id.desc())
            .limit(1)
        ).scalar()

    def _insert_run(self, conn: Connection, **values: Any) -> int:
        return _new_id(conn.execute(insert(R).values(**values)))

    def save_output(self, run_id: int, output: str) -> None:
        with self.transaction() as conn:
            conn.execute(update(R).where(R.c.id == run_id).values(run_output=output))

    def record_outcomes(
        self,
        conn: Connection,
        worker_name: str,
        finished: Sequence[tuple[Outcome, Settlement]],
    ) -> Recorded:
        """Write finished runs; says which tasks were no longer ours.

        A batch costs a fixed number of statements, not a few per task: one
        locking read finds which tasks are still ours, then one executemany per
        shape of update and one multi-row insert of run rows.
        """
        if not finished:
            return Recorded(lost=[], unblocked=False)
        ids = sorted({outcome.task.id for outcome, _ in finished})
        mine = conn.execute(_OWNED_TASKS, {"ids": ids, "worker": worker_name}).all()
        owned = {row.id for row in mine}
        running = {row.id for row in mine if row.status == TaskStatus.RUNNING.value}
        self._find_lost_run_ids(conn, worker_name, [o for o, _ in finished], running)
        lost = [outcome for outcome, _ in finished if outcome.task.id not in owned]
        existing = owned | (
            set(conn.execute(_EXISTING_TASKS, {"ids": ids}).scalars()) if lost else set()
        )
        self._update_owned_tasks(conn, [(o, s) for o, s in finished if o.task.id in owned])
        written = self._runs_written(conn, worker_name, lost)
        new_runs: list[dict[str, Any]] = []
        for outcome, settlement in finished:
            if outcome.task.id not in existing:
                continue  # deleted meanwhile: a run row would break its foreign key
            if (outcome.task.id, self._db(outcome.started)) in written:
                continue  # written before, by a commit whose reply the worker lost
            row = self._write_run(conn, worker_name, outcome, settlement)
            if row is not None:
                new_runs.append(row)
        if new_runs:
            conn.execute(insert(R), new_runs)
        resolved = [
            o.task.id for o, s in finished if o.task.id in owned and s.resolves_dependencies
        ]
        unblocked = bool(resolved) and conn.execute(_UNBLOCK, {"ids": resolved}).rowcount > 0
        return Recorded(lost=lost, unblocked=unblocked)

    def _find_lost_run_ids(
        self, conn: Connection, worker_name: str, outcomes: Sequence[Outcome], running: set[int]
    ) -> None:
        """A RUNNING task whose outcome has no run row id was marked RUNNING by a
        commit whose reply the worker lost: its outcome belongs on that run row,
        not on a second one (the first would stay RUNNING forever)."""
        unmarked = sorted({o.task.id for o in outcomes if o.run_id is None} & running)
        if not unmarked:
            return
        rows = conn.execute(
            select(R.c.task_id, func.max(R.c.id).label("run_id"))
            .where(
                R.c.task_id.in_(unmarked),
                R.c.status == RunStatus.RUNNING.value,
                R.c.worker_name == worker_name,
            )
            .group_by(R.c.task_id)
        )
        run_ids = {row.task_id: row.run_id for row in rows}
        for outcome in outcomes:
            if outcome.run_id is None and outcome.task.id in run_ids:
                outcome.run_id = run_ids[outcome.task.id]

    def _runs_written(
        self, conn: Connection, worker_name: str, lost: Sequence[Outcome]
    ) -> set[tuple[int, datetime | None]]:
        """(task id, start time) of the run rows this worker already wrote for
        `lost` outcomes that have no run row id of their own."""
        ids = sorted({o.task.id for o in lost if o.run_id is None})
        if not ids:
            return set()
        rows = conn.execute(
            select(R.c.task_id, R.c.start_time).where(
                R.c.task_id.in_(ids), R.c.worker_name == worker_name
            )
        )
        return {(row.task_id, row.start_time) for row in rows}

    def _update_owned_tasks(
        self, conn: Connection, finished: Sequence[tuple[Outcome, Settlement]]
    ) -> None:
        """One executemany per set of columns changed (usually a single one)."""
        shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for outcome, settlement in finished:
            values = {
                k: (self._db(v) if k in TASK_TIMES else v)
                for k, v in settlement.task_values.items()
            }
            shape = tuple(sorted(values))
            shapes.setdefault(shape, []).append(
                {"task_id_": outcome.task.id, **{f"{k}_": v for k, v in values.items()}}
            )
        for shape, params in shapes.items():
            conn.execute(_owned_task_update(shape), params)

    def _write_run(
        self, conn: Connection, worker_name: str, outcome: Outcome, settlement: Settlement
    ) -> dict[str, Any] | None:
        """Update or delete the run's row; a new row is returned for a batch insert."""
        if outcome.requeue:
            if outcome.run_id is not None:
                conn.execute(
                    update(R)
                    .where(R.c.id == outcome.run_id)
                    .values(
                        status=RunStatus.STOPPED.value,
                        stop_time=self._db(outcome.finished),
                        run_output=outcome.output,
                        traceback=outcome.traceback,
                    )
                )
            return None
        if not settlement.keep_run:
            if outcome.run_id is not None:
                conn.execute(delete(R).where(R.c.id == outcome.run_id))
            return None
        values = {
            "status": outcome.status.value,
            "start_time": self._db(outcome.started),
            "stop_time": self._db(outcome.finished),
            "run_output": outcome.output,
            "run_result": outcome.result,
            "traceback": outcome.traceback,
            "worker_name": worker_name,
        }
        if outcome.run_id is None:
            return {"task_id": outcome.task.id, **values}
        conn.execute(update(R).where(R.c.id == outcome.run_id).values(**values))
        return None

    # ----------------------------------------------------------------- workers
    def register_worker(
        self, worker_name: str, groups: Sequence[str], stats: dict[str, Any], dead_after: float
    ) -> None:
        """Insert (or take over a dead) worker row; refuse a name a live worker uses.

        Tasks still in flight under this name belong to an earlier worker of the
        same name that died (a restart with a fixed --name, quicker than the
        ticker noticed): they are requeued, or they would wait for it forever."""
        now = self.now()
        with self.transaction() as conn:
            row = conn.execute(
                select(W.c.last_heartbeat).where(W.c.worker_name == worker_name)
            ).first()
            if row is not None:
                last = from_storage(row.last_heartbeat, local_time=self.local_time)
                if last is not None and last > now - timedelta(seconds=dead_after):
                    raise ConfigurationError(
                        f"a live worker named {worker_name!r} already beats in this database"
                    )
                conn.execute(delete(W).where(W.c.worker_name == worker_name))
            left = [
                row.id
                for row in conn.execute(
                    select(T.c.id).where(
                        T.c.status.in_(IN_FLIGHT), T.c.assigned_worker_name == worker_name
                    )
                )
            ]
            if left:
                requeued = self._requeue_orphans(
                    conn, [worker_name], left, self._db(now), "worker restarted during the run"
                )
                log.warning(
                    "worker %s: requeued %d task(s) of its previous life", worker_name, requeued
                )
            conn.execute(
                insert(W).values(
                    worker_name=worker_name,
                    first_heartbeat=self._db(now),
                    last_heartbeat=self._db(now),
                    status=WorkerStatus.ACTIVE.value,
                    is_ticker=False,
                    group_names=list(groups),
                    worker_stats=json.dumps(stats),
                )
            )

    def heartbeat(
        self,
        worker_name: str,
        groups: Sequence[str],
        stats: dict[str, Any],
        ticker_lease: float,
    ) -> Beat:
        """Record liveness, read the commanded status and hold or take the ticker lease."""
        now = self.now()
        stamp = self._db(now)
        with self.transaction() as conn:
            self._lock_workers(conn)
            updated = conn.execute(
                update(W)
                .where(W.c.worker_name == worker_name)
                .values(last_heartbeat=stamp, worker_stats=json.dumps(stats))
            ).rowcount
            if not updated:
                # our row was removed (we were taken for dead): come back as new
                log.warning("worker %s: row missing, registering again", worker_name)
                conn.execute(
                    insert(W).values(
                        worker_name=worker_name,
                        first_heartbeat=stamp,
                        last_heartbeat=stamp,
                        status=WorkerStatus.ACTIVE.value,
                        is_ticker=False,
                        group_names=list(groups),
                        worker_stats=json.dumps(stats),
                    )
                )
            status_text = conn.execute(
                select(W.c.status).where(W.c.worker_name == worker_name)
            ).scalar()
            lease_until = self._hold_ticker_lease(conn, worker_name, now, ticker_lease)
        try:
            status = WorkerStatus(str(status_text))
        except ValueError:
            status = WorkerStatus.ACTIVE  # an unknown hand-written status must not stop us
        return Beat(status=status, is_ticker=lease_until is None, lease_until=lease_until)

    def _lock_workers(self, conn: Connection) -> None:
        """Serialise heartbeats so two workers never both take a free ticker lease."""
        conn.execute(select(W.c.id).order_by(W.c.id).with_for_update())

    def _hold_ticker_lease(
        self, conn: Connection, worker_name: str, now: datetime, lease: float
    ) -> datetime | None:
        """Hold or take the lease; None if we hold it, else when the holder's runs out."""
        fresh = self._db(now - timedelta(seconds=lease))
        other = conn.execute(
            select(W.c.worker_name, W.c.last_heartbeat)
            .where(W.c.is_ticker == True, W.c.last_heartbeat >= fresh)  # noqa: E712
            .where(W.c.worker_name != worker_name)
            .limit(1)
        ).first()
        if other is not None:
            conn.execute(
                update(W)
                .where(W.c.worker_name == worker_name, W.c.is_ticker == True)  # noqa: E712
                .values(is_ticker=False)
            )
            renewed = from_storage(other.last_heartbeat, local_time=self.local_time)
            return (renewed or now) + timedelta(seconds=lease)
        conn.execute(
            update(W)
            .where(W.c.worker_name != worker_name, W.c.is_ticker == True)  # noqa: E712
            .values(is_ticker=False)
        )
        conn.execute(update(W).where(W.c.worker_name == worker_name).values(is_ticker=True))
        return None

    def unregister_worker(self, worker_name: str) -> None:
        with self.transaction() as conn:
            conn.execute(delete(W).where(W.c.worker_name == worker_name))

    def list_workers(self) -> list[Worker]:
        with self.reading() as conn:
            return [self._worker(row) for row in conn.execute(select(W).order_by(W.c.id))]

    def set_worker_status(
        self,
        status: WorkerStatus,
        *,
        group_names: Sequence[str] | None = None,
        worker_names: Sequence[str] | None = None,
    ) -> int:
        # None means "any"; an empty list matches no worker (never all of them)
        conditions: list[ColumnElement[bool]] = []
        if group_names is not None:
            conditions.append(_serving_any(group_names))
        if worker_names is not None:
            conditions.append(W.c.worker_name.in_(list(worker_names)))
        with self.transaction() as conn:
            count = conn.execute(update(W).where(*conditions).values(status=status.value)).rowcount
        if count:
            self.ring()
        return count

    def live_workers(self, groups: Sequence[str] | None, alive_within: float) -> list[Worker]:
        fresh = self._db(self.now() - timedelta(seconds=alive_within))
        query = select(W).where(W.c.last_heartbeat >= fresh)
        if groups:
            query = query.where(_serving_any(groups))
        with self.reading() as conn:
            return [self._worker(row) for row in conn.execute(query)]

    # ----------------------------------------------------------------- ticker
    def housekeeping(self, dead_after: float, ticker: str | None = None) -> Housekeeping:
        """Leader-only duties: bury dead workers, requeue their tasks, expire tasks.

        With `ticker`, only while that worker holds the lease: the check runs under
        the heartbeats' lock, so a ticker that lost the lease to a quicker worker
        (it stalled, say) never does a round beside its successor."""
        now = self.now()
        stamp = self._db(now)
        cutoff = self._db(now - timedelta(seconds=dead_after))
        with self.transaction() as conn:
            if ticker is not None and not self._holds_lease(conn, ticker):
                return Housekeeping(dead_workers=[], requeued=0, expired=0, held=False)
            dead = [
                row.worker_name
                for row in conn.execute(select(W.c.worker_name).where(W.c.last_heartbeat < cutoff))
            ]
            if dead:
                conn.execute(delete(W).where(W.c.worker_name.in_(dead)))
            live = {row.worker_name for row in conn.execute(select(W.c.worker_name))}
            # Read first, then update by primary key with the conditions checked
            # again: a range UPDATE would lock index ranges that claiming workers
            # hold, which is how MySQL deadlocks.
            in_flight = conn.execute(
                select(T.c.id, T.c.assigned_worker_name, T.c.broadcast).where(
                    T.c.status.in_(IN_FLIGHT)
                )
            ).all()
            in_flight = [row for row in in_flight if row.assigned_worker_name not in live]
            # a broadcast copy was meant for its dead worker alone: it expires below
            orphans = sorted(row.id for row in in_flight if not row.broadcast)
            lost_copies = sorted(row.id for row in in_flight if row.broadcast)
            owners = sorted({row.assigned_worker_name or "" for row in in_flight})
            requeued = 0
            if orphans:
                requeued = self._requeue_orphans(
                    conn, owners, orphans, stamp, "worker died during the run"
                )
            stale = sorted(
                row.id
                for row in conn.execute(
                    select(T.c.id).where(
                        T.c.status == TaskStatus.QUEUED.value,
                        T.c.stop_time.is_not(None),
                        T.c.stop_time < stamp,
                    )
                )
            )
            expired = 0
            if stale:
                expired = conn.execute(
                    update(T)
                    .where(T.c.id.in_(stale), T.c.status == TaskStatus.QUEUED.value)
                    .values(status=TaskStatus.EXPIRED.value)
                ).rowcount
            if lost_copies:
                expired += conn.execute(
                    update(T)
                    .where(T.c.id.in_(lost_copies), T.c.status.in_(IN_FLIGHT))
                    .values(status=TaskStatus.EXPIRED.value)
                ).rowcount
            expired += expire_undeliverable(conn, live)
            fresh = self._db(now - timedelta(seconds=dead_after))
            workers = [
                self._worker(row)
                for row in conn.execute(select(W).where(W.c.last_heartbeat >= fresh))
            ]
            copies = expand_due_templates(
                conn, now, stamp, workers, self._task, self._db, local_time=self.local_time
            )
        if requeued:
            log.warning("requeued %d task(s) of dead worker(s) %s", requeued, dead)
        if requeued or copies or expired:
            # a worker taken for dead may still be alive and holding those tasks,
            # and an expired broadcast copy may sit in its worker's batch
            self.ring(control=bool(requeued or expired))
        return Housekeeping(dead_workers=dead, requeued=requeued, expired=expired)

    def _holds_lease(self, conn: Connection, worker_name: str) -> bool:
        self._lock_workers(conn)
        return (
            conn.execute(
                select(W.c.id).where(
                    W.c.worker_name == worker_name,
                    W.c.is_ticker == True,  # noqa: E712
                )
            ).first()
            is not None
        )

    def _requeue_orphans(
        self,
        conn: Connection,
        owners: Sequence[str],
        task_ids: Sequence[int],
        stamp: datetime | None,
        why: str,
    ) -> int:
        """Requeue in-flight tasks of workers that are gone, failing their RUNNING runs."""
        conn.execute(
            update(R)
            .where(R.c.status == RunStatus.RUNNING.value, R.c.worker_name.in_(list(owners)))
            .values(
                status=RunStatus.FAILED.value, stop_time=stamp, traceback=f"{why}; task requeued"
            )
        )
        return conn.execute(
            update(T)
            .where(
                T.c.id.in_(list(task_ids)),
                T.c.status.in_(IN_FLIGHT),
                # a row written by hand may be in flight with no worker at all (NULL):
                # IN never matches NULL, and the task would stay RUNNING for ever
                or_(T.c.assigned_worker_name.in_(list(owners)), T.c.assigned_worker_name.is_(None)),
            )
            .values(status=TaskStatus.QUEUED.value, assigned_worker_name=unassigned_unless_copy())
        ).rowcount


def _serving_any(groups: Sequence[str]) -> ColumnElement[bool]:
    """Workers whose list:string group_names holds one of these groups, matched as whole
    names: autoescape keeps a '_' or '%' in a group name from acting as a LIKE wildcard."""
    return or_(false(), *(W.c.group_names.contains(f"|{g}|", autoescape=True) for g in groups))


@dataclass(frozen=True)
class Recorded:
    """What writing a batch of outcomes found: `lost` outcomes whose task was no
    longer ours (stopped, requeued or deleted meanwhile: their runs are recorded
    only), and whether a finished task `unblocked` dependency edges (its
    dependents may now be claimable: idle workers should look)."""

    lost: list[Outcome]
    unblocked: bool


# Prebuilt with expanding IN parameters: compiled once, where `in_(ids)` built
# fresh would coerce a bound parameter per id on every batch.
_OWNED_TASKS = (
    select(T.c.id, T.c.status)
    .where(
        T.c.id.in_(bindparam("ids", expanding=True)),
        T.c.status.in_(IN_FLIGHT),
        T.c.assigned_worker_name == bindparam("worker"),
    )
    .with_for_update()
)
_EXISTING_TASKS = select(T.c.id).where(T.c.id.in_(bindparam("ids", expanding=True)))
_UNBLOCK = (
    update(D).where(D.c.task_child.in_(bindparam("ids", expanding=True))).values(can_visit=True)
)


@functools.lru_cache(maxsize=64)
def _owned_task_update(shape: tuple[str, ...]) -> Any:
    """The executemany UPDATE of finished tasks for one set of changed columns,
    built once per set: building it per batch cost more than running it."""
    return (
        update(T)
        .where(T.c.id == bindparam("task_id_"))
        .values({name: bindparam(f"{name}_") for name in shape})
    )


def _new_id(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _due_clause(*, due_now: bool = True) -> ColumnElement[bool]:
    """What makes a task claimable now, with the clock and groups as parameters so
    the statement is built and compiled once, not on every claim. Without
    `due_now` it is "claimable once its time comes"."""
    now = bindparam("due_now", type_=T.c.next_run_time.type)
    unfinished_parent = exists().where(
        D.c.task_parent == T.c.id,
        or_(D.c.can_visit == False, D.c.can_visit.is_(None)),  # noqa: E712
    )
    return and_(
        T.c.status == TaskStatus.QUEUED.value,
        T.c.enabled == True,  # noqa: E712
        T.c.group_name.in_(bindparam("due_groups", expanding=True)),
        T.c.next_run_time <= now if due_now else true(),
        or_(T.c.stop_time.is_(None), T.c.stop_time > now),
        addressed_to(bindparam("due_worker")),
        ~unfinished_parent,
    )


DUE = _due_clause()
DUE_EXISTS = select(T.c.id).where(DUE).limit(1)


def due_ids(priority_order: ColumnElement[Any]) -> Select[Any]:
    """Due task ids in exactly the claim index's order (see schema.CLAIM_INDEX), so
    the database reads the first `due_limit` index entries and stops: anything
    the index does not hold in this order makes it sort every due task of a
    backlog on each claim (55 ms instead of 0.2 ms with 20,000 tasks queued at one
    instant). `priority_order` is the dialect's spelling of "higher priority
    first, NULL lowest"."""
    return (
        select(T.c.id)
        .where(DUE)
        .order_by(T.c.next_run_time, priority_order, T.c.id)
        .limit(bindparam("due_limit", type_=Integer))
    )


#: NULL sorts lowest on SQLite and MariaDB/MySQL, so DESC puts it last already
DUE_IDS = due_ids(T.c.priority.desc())
#: the same, whole rows, locked: the claim of backends without UPDATE ... RETURNING
_DUE_ROWS_LOCKED = DUE_IDS.with_only_columns(*T.c).with_for_update(skip_locked=True)
#: when the next claimable task falls due: the same conditions as a claim but
#: the time, so a task held back (by a dependency, say) cannot make an idle
#: worker wake in a busy loop
NEXT_DUE = select(func.min(T.c.next_run_time)).where(_due_clause(due_now=False))


def claim_returning(due_ids: Select[Any]) -> Any:
    """UPDATE ... WHERE id IN (due ids) RETURNING *, for backends that have it."""
    return (
        update(T)
        .where(T.c.id.in_(due_ids.scalar_subquery()))
        .values(status=TaskStatus.ASSIGNED.value, assigned_worker_name=bindparam("claimer"))
        .returning(*T.c)
    )


def sort_claimed(tasks: list[Task]) -> list[Task]:
    """Run order of a claimed batch, the claim's own order: due first, then higher
    priority (NULL lowest), then older. A batch claimed from several groups (see
    claim_due_tasks with shares) arrives group by group and is merged here."""
    return sorted(
        tasks,
        key=lambda t: (
            t.next_run_time or _EPOCH,
            float("inf") if t.priority is None else -t.priority,
            t.id,
        ),
    )
