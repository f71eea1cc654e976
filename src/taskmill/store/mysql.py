"""MariaDB / MySQL: SKIP LOCKED claims, same-host doorbells and adaptive polling.

There is no NOTIFY. Processes on one machine wake each other through the same
Unix-socket doorbells as the SQLite store (doorbell.py), keyed by the server and
database: a task queued there is picked up within a millisecond or two. Changes
made on other machines are found by polling with a cheap indexed query, at an
interval that adapts: 10 ms right after work, growing with the idle time (a
quarter of it) up to 250 ms, so a busy queue is served at once and an idle
worker costs the server four queries a second. Because a ring may never come,
a worker re-reads its claimed batch before each task, so that stop_task still
keeps an ASSIGNED task from starting. Claims lock the due rows they read with
FOR UPDATE SKIP LOCKED (MariaDB >= 10.6, MySQL 8), so concurrent workers skip
each other's rows instead of waiting on them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from taskmill.errors import StoreError
from taskmill.store.base import Listener, Store
from taskmill.store.doorbell import Doorbell

log = logging.getLogger(__name__)

#: seconds serialised_transaction waits for another process to release its lock
LOCK_WAIT = 30


#: ER_LOCK_DEADLOCK and ER_LOCK_WAIT_TIMEOUT
_DEADLOCK_CODES = (1213, 1205)


class MySQLStore(Store):
    #: the longest an idle worker waits between looks (see poll_after)
    poll_interval = 0.25
    #: the shortest: right after work, when more is likely to follow
    poll_floor = 0.01
    wakeups_complete = False

    def __init__(self, engine: Engine, *, local_time: bool = False) -> None:
        super().__init__(engine, local_time=local_time)
        url = engine.url
        self.doorbell = Doorbell(f"mysql://{url.host}:{url.port or 3306}/{url.database}")

    def poll_after(self, idle_for: float) -> float:
        return min(self.poll_interval, max(self.poll_floor, idle_for / 4))

    def ring(self, control: bool = False) -> None:
        self.doorbell.ring(control)

    def listen(self, worker_name: str) -> Listener | None:
        return self.doorbell.listen(worker_name)

    def dispose(self) -> None:
        self.doorbell.close()
        super().dispose()

    def is_deadlock(self, exc: DBAPIError) -> bool:
        args: tuple[object, ...] = tuple(getattr(exc.orig, "args", ()))
        return bool(args) and args[0] in _DEADLOCK_CODES

    def _drop_index_sql(self, table: str, name: str) -> str:
        return f"DROP INDEX {name} ON {table}"

    def _database_utc_now(self, conn: Connection) -> datetime | None:
        value = conn.execute(text("SELECT UTC_TIMESTAMP(6)")).scalar()
        return value.replace(tzinfo=UTC) if isinstance(value, datetime) else None

    @contextlib.contextmanager
    def serialised_transaction(self, key: str) -> Iterator[Connection]:
        # GET_LOCK names are server-wide and at most 64 characters: hash the
        # database name with the key. The lock belongs to the session, not the
        # transaction, so it is released explicitly once the transaction ended
        # (and by the server if the connection dies first).
        database = self.engine.url.database or ""
        digest = hashlib.sha1(f"{database}\0{key}".encode()).hexdigest()
        name = f"taskmill:{digest}"
        with self.engine.connect() as conn:
            got = conn.execute(
                text("SELECT GET_LOCK(:name, :wait)"), {"name": name, "wait": LOCK_WAIT}
            ).scalar()
            # end the statement's transaction: the work below must read a
            # snapshot taken after the lock was granted, not before
            conn.commit()
            if got != 1:
                raise StoreError(f"could not take lock {key!r} within {LOCK_WAIT} s")
            try:
                with conn.begin():
                    yield conn
            finally:
                try:
                    conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
                    conn.commit()
                except Exception:  # the session is gone, and its lock with it
                    log.warning("could not release lock %r", key, exc_info=True)
