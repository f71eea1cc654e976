"""SQLite: many worker processes of one machine sharing one database file.

WAL lets readers run beside the single writer; every write transaction starts
with BEGIN IMMEDIATE so two workers never both read-then-upgrade and deadlock
into SQLITE_BUSY; the busy timeout makes a writer wait its turn instead of
failing. Claims are one UPDATE ... RETURNING. Idle workers sleep on a doorbell
socket (see doorbell.py) and start a new task within a millisecond or two of
its commit, without polling the file.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, event

from taskmill.store.base import DUE_IDS, Listener, Store, claim_returning
from taskmill.store.doorbell import Doorbell
from taskmill.timing import utc_now

#: seconds a writer waits for the write lock before "database is locked"
DEFAULT_BUSY_TIMEOUT = 30.0
#: execution option marking a connection that only reads (plain deferred BEGIN)
READ_ONLY = "taskmill_read_only"


def configure_sqlite_engine(engine: Engine, busy_timeout: float) -> None:
    """Take over transaction control from pysqlite and set the pragmas we rely on."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite would issue its own deferred BEGIN; we issue ours below
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


_CLAIM = claim_returning(DUE_IDS)


class WriterQueue:
    """Writers of one database file take turns through a kernel file lock.

    SQLite's own busy handler makes a blocked writer sleep and retry (1, 2, 5,
    10 ... 100 ms), so under contention a queue_task could wait 25 ms for a
    lock that was free after 1 ms. flock() blocks in the kernel instead and
    wakes the next writer the moment the lock is released. BEGIN IMMEDIATE
    still guards correctness (also against writers that do not use this lock).
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = 0
        self._thread_lock = threading.RLock()
        self._depth = 0

    def _file(self) -> int | None:
        if self.path is None:
            return None
        if self._fd is None or self._pid != os.getpid():
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                self.path = None  # a read-only directory: rely on SQLite alone
                return None
            self._pid = os.getpid()
        return self._fd

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        self._depth += 1
        fd = self._file() if self._depth == 1 else None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        try:
            if self._depth == 1 and self._fd is not None and self._pid == os.getpid():
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._depth -= 1
            self._thread_lock.release()

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None


class SQLiteStore(Store):
    claim_statement = _CLAIM
    poll_interval = 5.0  # only a safety net: wake-ups come from the doorbell

    def __init__(
        self, engine: Engine, *, local_time: bool = False, busy_timeout: float | None = None
    ) -> None:
        super().__init__(engine, local_time=local_time)
        if busy_timeout is None:
            # pysqlite's own URL parameter (sqlite:///tasks.db?timeout=5), else 30 s
            busy_timeout = float(str(engine.url.query.get("timeout", DEFAULT_BUSY_TIMEOUT)))
        configure_sqlite_engine(engine, busy_timeout)
        database = engine.url.database or ":memory:"
        key = database if database == ":memory:" else os.path.realpath(database)
        if key == ":memory:":
            key = f":memory:{os.getpid()}:{id(self)}"
        self.doorbell = Doorbell(key)
        self.write_lock = WriterQueue(
            None if key.startswith(":memory:") else f"{key}-taskmill.lock"
        )

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.write_lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn.execution_options(**{READ_ONLY: True})

    def ring(self, control: bool = False) -> None:
        self.doorbell.ring(control)

    def dispose(self) -> None:
        self.doorbell.close()
        self.write_lock.close()
        super().dispose()

    def now(self) -> datetime:
        return utc_now()  # one machine, one clock

    def sync_clock(self) -> None:
        pass

    def _set_column_default(self, table: str, column: str, value: int) -> bool:
        # SQLite cannot change a column's default without rebuilding the table;
        # rows web2py inserts there keep a NULL priority (ranked lowest)
        return False

    def _lock_workers(self, conn: Connection) -> None:
        pass  # BEGIN IMMEDIATE already serialises every write transaction

    def listen(self, worker_name: str) -> Listener | None:
        return self.doorbell.listen(worker_name)
