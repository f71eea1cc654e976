"""An application shaped like Sahana Eden, using taskmill's Eden layer (TaskManager).

What it has of Eden:
- a database connection of its own, kept open like pydal's `db`: a transaction starts
  with the first statement and ends only in `db_commit()` or `db_rollback()`;
- a current user (`auth.user`) that `impersonate(user_id)` changes for a while;
- two recurring tasks queued at every start-up (Eden's zzz_1st_run) with
  `schedule_task`, whose duplicate check keeps that idempotent: a message outbox
  every 300 s forever, and nightly maintenance by cron (03:00 UTC);
- a request handler, `approve_record`, that pushes a slow "recompute the aggregates
  of this record" task with `run_async` as the user who made the request.

A worker imports this module by name (`--app eden_like_app:tm`): put examples/eden_like
on PYTHONPATH. The database is demo-data/eden_like.db at the repository root, or the
SQLAlchemy URL in EDEN_LIKE_DB; the app's tables and taskmill's live in the same one.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from taskmill import Scheduler, TaskManager

log = logging.getLogger("eden_like")

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = ROOT / "demo-data"
DB_URL = os.environ.get("EDEN_LIKE_DB") or f"sqlite:///{DATA_DIR / 'eden_like.db'}"

# ------------------------------------------------------------ the app's own tables

metadata = sa.MetaData()
msg_outbox = sa.Table(
    "msg_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("contact_method", sa.String(16), nullable=False),
    sa.Column("recipient", sa.String(255), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, default="QUEUED"),
)
stats_data = sa.Table(
    "stats_data",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
    sa.Column("approved_by", sa.Integer),
)
stats_aggregate = sa.Table(
    "stats_aggregate",
    metadata,
    sa.Column("data_id", sa.Integer, primary_key=True),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("computed_by", sa.Integer),  # the user the task ran as
)

# --------------------------------------------------- "db" and "auth", Eden-style


class Database:
    """One open connection per process, like pydal's db: commit() or rollback() end
    the transaction its first statement began."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._connection: sa.Connection | None = None

    @property
    def connection(self) -> sa.Connection:
        if self._connection is None:
            self._connection = sa.create_engine(self.url).connect()
        return self._connection

    def commit(self) -> None:
        if self._connection is not None:
            self._connection.commit()

    def rollback(self) -> None:
        if self._connection is not None:
            self._connection.rollback()


class Auth:
    """Who the current request (or task) acts as."""

    def __init__(self) -> None:
        self.user_id: int | None = None

    @contextmanager
    def impersonate(self, user_id: int) -> Iterator[None]:
        previous, self.user_id = self.user_id, user_id
        try:
            yield
        finally:
            self.user_id = previous


db = Database(DB_URL)
auth = Auth()

# ------------------------------------------------------------------------ tasks


def msg_process_outbox(contact_method: str = "EMAIL") -> int:
    """Send what waits in the outbox (here: mark it SENT); returns how many."""
    sent = db.connection.execute(
        sa.update(msg_outbox)
        .where(msg_outbox.c.status == "QUEUED", msg_outbox.c.contact_method == contact_method)
        .values(status="SENT")
    ).rowcount
    return int(sent)


def maintenance() -> int:
    """Nightly clean-up: forget messages already sent; returns how many."""
    return int(
        db.connection.execute(sa.delete(msg_outbox).where(msg_outbox.c.status == "SENT")).rowcount
    )


def stats_recompute(data_id: int) -> dict[str, Any]:
    """The slow part of approving a record: recompute its aggregate."""
    value = db.connection.execute(
        sa.select(stats_data.c.value).where(stats_data.c.id == data_id)
    ).scalar_one()
    time.sleep(2)  # the expensive computation a web request should not wait for
    total = value * 10
    db.connection.execute(sa.delete(stats_aggregate).where(stats_aggregate.c.data_id == data_id))
    db.connection.execute(
        sa.insert(stats_aggregate).values(data_id=data_id, total=total, computed_by=auth.user_id)
    )
    return {"data_id": data_id, "total": total, "computed_by": auth.user_id}


TASKS: dict[str, Callable[..., Any]] = {
    "msg_process_outbox": msg_process_outbox,
    "maintenance": maintenance,
    "stats_recompute": stats_recompute,
}

# ------------------------------------------------------- scheduler and TaskManager

DATA_DIR.mkdir(exist_ok=True)  # SQLite creates the file, not its directory
sched = Scheduler(DB_URL, tasks=TASKS)
tm = TaskManager(sched, impersonate=auth.impersonate, commit=db.commit, rollback=db.rollback)


def first_run() -> None:
    """At every start-up, like Eden's zzz_1st_run: tables, then the recurring tasks.
    schedule_task's duplicate check makes calling this again harmless."""
    sched.create_tables()
    metadata.create_all(sa.create_engine(DB_URL))
    outbox = tm.schedule_task(
        "msg_process_outbox", vars={"contact_method": "EMAIL"}, period=300, repeats=0, timeout=60
    )
    nightly = tm.schedule_task("maintenance", cronline="0 3 * * *", repeats=0, timeout=600)
    log.info("first_run: outbox task %s, maintenance task %s", outbox, nightly)


# ---------------------------------------------------------------- a request


def approve_record(data_id: int, user_id: int) -> Any:
    """The request handler: approve the record as `user_id`, then have its aggregate
    recomputed as that user. With a live worker run_async queues the task and returns
    its id at once; without one it runs here and returns the task's result."""
    with auth.impersonate(user_id):
        db.connection.execute(
            sa.update(stats_data).where(stats_data.c.id == data_id).values(approved_by=user_id)
        )
        db.commit()  # web2py commits at the end of a successful request
        return tm.run_async("stats_recompute", args=[data_id], user_id=auth.user_id)


def add_record(value: int) -> int:
    """A record to approve, and an e-mail telling someone about it."""
    data_id = db.connection.execute(sa.insert(stats_data).values(value=value)).inserted_primary_key
    assert data_id is not None
    db.connection.execute(
        sa.insert(msg_outbox).values(
            contact_method="EMAIL", recipient="admin@example.org", body=f"record {data_id[0]}"
        )
    )
    db.commit()
    return int(data_id[0])
