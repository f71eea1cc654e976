"""Task functions and application hooks of the Eden-style test app (``eden_app``).

Kept apart from ``eden_app`` (which builds its Scheduler from the environment at import
time) so that tests can import the hooks and the helpers without a worker's environment.

The hooks behave like an Eden application's: ``impersonate(user_id)`` makes that user
the current one (``current_user()``) until it exits, and ``commit()``/``rollback()`` end
the transaction of the application's own database connection, on which ``write_note``
writes. So a test sees a note only if the process that ran the task committed it. Every
hook call and task call is also appended to the events file named by EVENTS_ENV (when
set), so a test can check their order.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

#: environment variables: the database (as for every test app) and the events file
DB_ENV = "TASKMILL_TEST_DB"
EVENTS_ENV = "TASKMILL_TEST_EVENTS"

notes_metadata = sa.MetaData()
notes = sa.Table(
    "eden_notes",
    notes_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("label", sa.String(255), nullable=False),
    sa.Column("user_id", sa.String(64)),
    sa.Column("pid", sa.Integer, nullable=False),
)


class TaskBoom(Exception):
    """What the failing tasks raise."""


class CommitRefused(Exception):
    """What commit() raises after poison_commit ran."""


_state: dict[str, Any] = {"user": None, "connection": None, "poisoned": False}


def record_event(event: str) -> None:
    path = os.environ.get(EVENTS_ENV)
    if path:
        with open(path, "a") as events:
            events.write(f"{event}\n")


def read_events(path: os.PathLike[str] | str) -> list[str]:
    try:
        with open(path) as events:
            return events.read().splitlines()
    except FileNotFoundError:
        return []


def create_notes_table(engine: sa.Engine) -> None:
    notes_metadata.create_all(engine, checkfirst=True)


def notes_of(engine: sa.Engine) -> list[tuple[str, str | None]]:
    """(label, user_id) of every committed note, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(notes.c.label, notes.c.user_id).order_by(notes.c.id))
        return [(row.label, row.user_id) for row in rows]


# ------------------------------------------------------------------ the hooks


def current_user() -> Any:
    return _state["user"]


@contextmanager
def impersonate(user_id: Any) -> Iterator[None]:
    previous = _state["user"]
    _state["user"] = user_id
    record_event(f"impersonate {user_id}")
    try:
        yield
    finally:
        _state["user"] = previous
        record_event(f"end impersonation {user_id}")


def app_connection() -> sa.Connection:
    """The application's own connection, kept open as pydal's db is; a transaction
    begins with its first statement and ends only in commit() or rollback()."""
    connection = _state["connection"]
    if connection is None:
        connection = sa.create_engine(os.environ[DB_ENV]).connect()
        _state["connection"] = connection
    assert isinstance(connection, sa.Connection)
    return connection


def commit() -> None:
    record_event("commit")
    if _state["poisoned"]:
        _state["poisoned"] = False
        raise CommitRefused("the database refused the commit")
    if _state["connection"] is not None:
        _state["connection"].commit()


def rollback() -> None:
    record_event("rollback")
    if _state["connection"] is not None:
        _state["connection"].rollback()


# ------------------------------------------------------------------ the tasks


def whoami() -> Any:
    """The user the task runs as."""
    record_event("task whoami")
    return current_user()


def write_note(label: str, fail: bool = False, then_sleep: float = 0) -> str:
    """Writes a note (as the current user) on the app's connection, then sleeps and
    fails if asked; the note is seen only once the hooks commit it."""
    record_event(f"task write_note {label}")
    user = current_user()
    app_connection().execute(
        sa.insert(notes).values(
            label=label, user_id=None if user is None else str(user), pid=os.getpid()
        )
    )
    if then_sleep:
        time.sleep(then_sleep)
    if fail:
        raise TaskBoom(f"write_note {label} failed after writing")
    return label


def poison_commit(label: str) -> str:
    """Writes a note, then makes the commit that follows fail."""
    write_note(label)
    _state["poisoned"] = True
    return label


def not_json() -> set[int]:
    record_event("task not_json")
    return {1, 2}


TASKS: dict[str, Callable[..., Any]] = {
    "whoami": whoami,
    "write_note": write_note,
    "poison_commit": poison_commit,
    "not_json": not_json,
}
