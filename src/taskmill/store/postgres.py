"""PostgreSQL: many workers on many machines sharing one database.

Claims are one statement (UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP
LOCKED) RETURNING), so concurrent workers never wait on each other's rows.
queue_task sends NOTIFY in its own transaction; idle workers LISTEN on a
dedicated connection and start a new task within milliseconds of its commit.
What is due is decided by the database's clock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, insert, select, text
from sqlalchemy.exc import DBAPIError

from taskmill.schema import scheduler_task as T
from taskmill.store.base import TASK_TIMES, Listener, Store, claim_returning, due_ids
from taskmill.timing import to_storage

log = logging.getLogger(__name__)

CHANNEL = "taskmill"
_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', '')")
#: the payload of a control ring (see Store.ring)
CONTROL = "control"
_NOTIFY_CONTROL = text(f"SELECT pg_notify('{CHANNEL}', '{CONTROL}')")


class PostgresListener:
    """A LISTEN connection outside the pool; reconnects when the server comes back.

    NOTIFYs sent while it was down are lost, so a reconnect wakes the worker once
    (through a pipe: select() on the pipe returns at once) to look at the queue.
    """

    #: seconds between attempts to reconnect while the server is unreachable
    retry_every = 1.0

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: Any = None
        self._retry_at = 0.0
        self._missed = False  # a wake-up is waiting in the pipe
        self._control = False  # a control ring was drained (see take_control)
        # while disconnected, select() waits on this pipe: empty, or holding the
        # wake-up for NOTIFYs that may have been missed
        self._pipe_r, self._pipe_w = os.pipe()
        os.set_blocking(self._pipe_r, False)
        self._connect(first=True)

    def _connect(self, first: bool = False) -> None:
        import psycopg

        self._retry_at = time.monotonic() + self.retry_every
        try:
            self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
            self._conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            log.warning("LISTEN connection failed (%s); polling until it is back", exc)
            self._close_connection()
            return
        if not first:
            log.info("LISTEN connection back")
            self._wake()

    def take_control(self) -> bool:
        control, self._control = self._control, False
        return control

    def _wake(self) -> None:
        self._control = True  # NOTIFYs were missed: any of them may have been control
        if not self._missed:
            self._missed = True
            os.write(self._pipe_w, b"!")

    def fileno(self) -> int:
        if (self._conn is None or self._conn.closed) and time.monotonic() >= self._retry_at:
            self._close_connection()
            self._connect()
        if self._missed or self._conn is None or self._conn.closed:
            return self._pipe_r
        return int(self._conn.fileno())

    def drain(self) -> int:
        count = 0
        if self._missed:
            with contextlib.suppress(BlockingIOError):
                os.read(self._pipe_r, 64)
            self._missed = False
            count = 1
        if self._conn is None or self._conn.closed:
            return count
        pgconn = self._conn.pgconn
        try:
            pgconn.consume_input()
        except Exception as exc:  # the server went away: reconnect on next fileno()
            log.warning("LISTEN connection lost: %s", exc)
            self._close_connection()
            self._retry_at = 0.0  # at once: most often it is back already
            self._control = True
            return count + 1  # wake the worker so it looks at the queue once
        while (notify := pgconn.notifies()) is not None:
            count += 1
            if notify.extra != b"":
                self._control = True
        return count

    def _close_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def close(self) -> None:
        self._close_connection()
        for fd in (self._pipe_r, self._pipe_w):
            with contextlib.suppress(OSError):
                os.close(fd)


#: PostgreSQL sorts NULL first in DESC order; the claim index says NULLS LAST too
_CLAIM = claim_returning(
    due_ids(T.c.priority.desc().nulls_last()).with_for_update(skip_locked=True, of=T)
)


class PostgresStore(Store):
    claim_statement = _CLAIM
    poll_interval = 5.0  # a safety net: NOTIFY does the waking

    def __init__(self, engine: Engine, *, local_time: bool = False) -> None:
        super().__init__(engine, local_time=local_time)
        self._insert_notify: dict[frozenset[str], Any] = {}

    def _insert_rows(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        # COPY streams the rows in one message flow: about twice executemany's rate.
        # It bypasses SQLAlchemy's parameter handling, so the column defaults and
        # the types' bind processing (pydal's 'T'/'F', naive UTC times) are applied
        # here, as insert() would. It runs on `conn`'s own DBAPI connection, so it
        # is part of that transaction (the caller's, for queue_tasks(db=...)).
        dialect = self.engine.dialect
        columns = [(c, _copy_filler(c, dialect, self.local_time)) for c in _COPIED]
        names = ", ".join(column.name for column, _ in columns)
        cursor = conn.connection.cursor()
        with cursor.copy(f"COPY {T.name} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([fill(row) for _, fill in columns])

    @contextlib.contextmanager
    def _autocommit(self) -> Iterator[Connection]:
        """A connection on which each statement is its own transaction: for work
        that is atomic statement by statement, BEGIN and COMMIT are round trips
        that buy nothing."""
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    def claim_transaction(self) -> contextlib.AbstractContextManager[Connection]:
        # A claim is UPDATE ... RETURNING, atomic on its own, so autocommit saves the
        # BEGIN and COMMIT round trips on every idle pickup. A weighted claim (several
        # groups with weights) is one such statement per group, each committed on its
        # own. That needs no transaction around them either: each hands its rows to
        # this worker whole, and the rows of the earlier ones, left ASSIGNED by a
        # database error in a later one, are released when the worker resyncs after
        # that error (or requeued by the ticker, if the worker died).
        return self._autocommit()

    def _insert_own(self, row: dict[str, Any]) -> int:
        # One round trip instead of four (BEGIN, INSERT, NOTIFY, COMMIT): a single
        # statement in autocommit is its own transaction, and the NOTIFY inside it
        # is delivered when it commits. This is queue_task's whole cost on a server.
        keys = frozenset(row)
        statement = self._insert_notify.get(keys)
        if statement is None:
            statement = self._insert_notify[keys] = _insert_and_notify(sorted(keys))
        params = {f"v_{key}": value for key, value in row.items()}
        with self._autocommit() as conn:
            return int(conn.execute(statement, params).scalar_one())

    def _database_utc_now(self, conn: Connection) -> datetime | None:
        value = conn.execute(text("SELECT clock_timestamp()")).scalar()
        return value.astimezone(UTC) if isinstance(value, datetime) else None

    def is_deadlock(self, exc: DBAPIError) -> bool:
        # deadlock_detected and lock_not_available (lock_timeout)
        return getattr(exc.orig, "sqlstate", None) in ("40P01", "55P03")

    def wake_in(self, conn: Connection) -> bool:
        conn.execute(_NOTIFY)
        return True

    def ring(self, control: bool = False) -> None:
        # Called after a commit: the work is done and workers poll as a safety net,
        # so a failed wake-up must not make the caller think its change failed
        # (a worker that lost its claim, an app that queued a task twice).
        try:
            with self.engine.begin() as conn:
                conn.execute(_NOTIFY_CONTROL if control else _NOTIFY)
        except DBAPIError as exc:
            log.warning("could not wake the workers (NOTIFY failed): %s", exc.orig or exc)

    def listen(self, worker_name: str) -> Listener | None:
        url = self.engine.url.set(drivername="postgresql")
        return PostgresListener(url.render_as_string(hide_password=False))

    @contextlib.contextmanager
    def serialised_transaction(self, key: str) -> Iterator[Connection]:
        # a transaction-level advisory lock: released by commit or rollback, and
        # by the server if this connection dies, so it can never be left behind.
        # Under READ COMMITTED (the default) each later statement sees what the
        # previous holder committed.
        with self.transaction() as conn:
            conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext('taskmill'), hashtext(:key))"),
                {"key": key},
            )
            yield conn

    def _lock_workers(self, conn: Connection) -> None:
        # one lock id for the ticker election; held until this transaction ends
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('taskmill-ticker'))"))


def _insert_and_notify(columns: list[str]) -> Any:
    """WITH new AS (INSERT ... RETURNING id) SELECT id, pg_notify(...) FROM new."""
    values = {name: bindparam(f"v_{name}", type_=T.c[name].type) for name in columns}
    new = insert(T).values(values).returning(T.c.id).cte("new_task")
    return select(new.c.id, func.pg_notify(CHANNEL, ""))


_COPIED = [column for column in T.columns if column.name != "id"]


def _copy_filler(column: Any, dialect: Any, local_time: bool) -> Callable[[dict[str, Any]], Any]:
    """What COPY writes for `column` of a task row: its value or Python-side default,
    through the column type's bind processing."""
    name = column.name
    default = column.default.arg if column.default is not None else None
    process = column.type.bind_processor(dialect)
    is_time = name in TASK_TIMES

    def fill(row: dict[str, Any]) -> Any:
        value = row.get(name, default)
        if is_time:
            value = to_storage(value, local_time=local_time)
        return value if process is None else process(value)

    return fill
