"""The four web2py-compatible tables, defined once with SQLAlchemy Core.

Column names, types and value encodings follow pydal (web2py's DAL) so that rows
written by a web2py application are run by taskmill workers and the other way
round: booleans are CHAR(1) 'T'/'F', list:string is '|a|b|', JSON is text and
datetimes carry no time zone (UTC unless the Scheduler runs with utc_time=False).
Everything else in taskmill reads the column objects from here instead of
retyping names.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CHAR,
    JSON,
    BindParameter,
    Column,
    ColumnElement,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    cast,
    literal_column,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from taskmill.states import TaskStatus

#: pydal's default length for a string field
STRING_LENGTH = 512


class PydalBoolean(TypeDecorator[bool]):
    """A boolean stored as pydal stores it: CHAR(1) holding 'T' or 'F'."""

    impl = CHAR(1)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return "T" if value else "F"

    def process_result_value(self, value: Any, dialect: Dialect) -> bool | None:
        if value is None:
            return None
        # pydal itself is lenient here (web2py rows may hold 'T', 't', '1' or 'F')
        return str(value).upper() in ("T", "1", "TRUE")


def bar_encode(items: Iterable[str]) -> str:
    """Encode a list of strings the way pydal stores list:string ('|a|b|').

    Blank items are left out, as pydal does: an empty one would write '||', which
    reads back as a literal bar joining its neighbours.
    """
    return "|{}|".format("|".join(item.replace("|", "||") for item in items if item.strip()))


def bar_decode(text: str | None) -> list[str]:
    """Decode pydal's list:string encoding; '||' inside an item is a literal bar."""
    if not text:
        return []
    body = text.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("||"):
        body = body[:-1]
    items: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "|":
            if i + 1 < len(body) and body[i + 1] == "|":
                current.append("|")
                i += 2
                continue
            items.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    items.append("".join(current))
    return [item for item in items if item != ""]


class PydalListString(TypeDecorator[list[str]]):
    """A list of strings stored as pydal's list:string text."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            return value
        return bar_encode(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> list[str] | None:
        if value is None:
            return None
        return bar_decode(value)


class JsonText(TypeDecorator[str]):
    """JSON kept as text in a column that may be of PostgreSQL's type JSON.

    web2py (pydal with psycopg2) creates scheduler_worker.worker_stats as JSON on
    PostgreSQL, taskmill as TEXT. A JSON column refuses the VARCHAR parameter a text
    value is bound as, so values are cast to JSON on the way in (a TEXT column takes
    that too) and to TEXT on the way out (psycopg would hand back decoded objects).
    """

    impl = Text
    cache_ok = True

    def bind_expression(self, bindvalue: BindParameter[str]) -> ColumnElement[str] | None:
        return cast(bindvalue, JSON)

    def column_expression(self, column: ColumnElement[str]) -> ColumnElement[str] | None:
        return cast(column, Text)


def _is_mysql(dialect: Dialect) -> bool:
    return dialect.name in ("mysql", "mariadb")


# The MariaDB/MySQL types below are chosen in load_dialect_impl rather than with
# with_variant(mysql.X()), which would import the MySQL dialect into every process
# that imports the schema (task children, SQLite workers): 0.1 s of start-up each.


class _Timestamp(TypeDecorator[datetime]):
    """Datetimes keep microseconds on every backend (MySQL's plain DATETIME drops them)."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if _is_mysql(dialect):
            from sqlalchemy.dialects.mysql import DATETIME

            return dialect.type_descriptor(DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())


Timestamp = _Timestamp()


class ExactName(TypeDecorator[str]):
    """A short string compared exactly. MariaDB/MySQL's default collations ignore
    case and trailing spaces, so 'MAIN' would match a worker of group 'main' and a
    uuid 'ABC' would count as a duplicate of 'abc'. utf8mb4_bin fixes the case but
    still pads ('main ' = 'main'); MariaDB has a NO PAD binary collation, chosen
    here when the server turns out to be MariaDB (SQLAlchemy names both dialects
    "mysql" on a mysql:// URL). MySQL 8 keeps utf8mb4_bin (its NO PAD
    utf8mb4_0900_bin is untested here)."""

    impl = String
    cache_ok = True

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.length = length

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if _is_mysql(dialect):
            from sqlalchemy.dialects.mysql import VARCHAR

            nopad = getattr(dialect, "is_mariadb", False) or dialect.name == "mariadb"
            collation = "utf8mb4_nopad_bin" if nopad else "utf8mb4_bin"
            return dialect.type_descriptor(VARCHAR(self.length, collation=collation))
        return dialect.type_descriptor(String(self.length))


def Name(length: int) -> Any:
    return ExactName(length)


class _LongText(TypeDecorator[str]):
    """MySQL's TEXT stops at 64 kB; results and arguments may be larger."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if _is_mysql(dialect):
            from sqlalchemy.dialects.mysql import LONGTEXT

            return dialect.type_descriptor(LONGTEXT())
        return dialect.type_descriptor(Text())


LongText = _LongText()

metadata = MetaData()

scheduler_task = Table(
    "scheduler_task",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("application_name", Name(STRING_LENGTH)),
    Column("task_name", Name(STRING_LENGTH)),
    Column("group_name", Name(STRING_LENGTH), default="main"),
    Column("status", Name(STRING_LENGTH), default=TaskStatus.QUEUED.value),
    Column("broadcast", PydalBoolean, default=False),
    Column("function_name", Name(STRING_LENGTH)),
    Column("uuid", Name(255), unique=True),
    Column("args", LongText, default="[]"),
    Column("vars", LongText, default="{}"),
    Column("enabled", PydalBoolean, default=True),
    Column("start_time", Timestamp),
    Column("next_run_time", Timestamp),
    Column("stop_time", Timestamp),
    Column("repeats", Integer, default=1),
    Column("retry_failed", Integer, default=0),
    Column("period", Integer, default=60),
    Column("prevent_drift", PydalBoolean, default=False),
    Column("cronline", Name(STRING_LENGTH)),
    Column("timeout", Integer, default=60),
    Column("sync_output", Integer, default=0),
    Column("times_run", Integer, default=0),
    Column("times_failed", Integer, default=0),
    Column("last_run_time", Timestamp),
    Column("assigned_worker_name", Name(STRING_LENGTH), default=""),
    # taskmill extra: among tasks due at the same time, higher runs first. The server
    # default gives rows that web2py writes (it never names the column) priority 0
    Column("priority", Integer, default=0, server_default="0"),
    # taskmill extra: seconds before the first retry of a failed run, doubled for each
    # further consecutive failure; 0 keeps web2py's rule (retry at start + period)
    Column("retry_backoff", Integer, default=0),
    # ids never reused on SQLite, so "the most recent task" is the highest id
    sqlite_autoincrement=True,
)

scheduler_run = Table(
    "scheduler_run",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", Integer, ForeignKey("scheduler_task.id", ondelete="CASCADE")),
    Column("status", Name(STRING_LENGTH)),
    Column("start_time", Timestamp),
    Column("stop_time", Timestamp),
    Column("run_output", LongText),
    Column("run_result", LongText),
    Column("traceback", LongText),
    Column("worker_name", Name(STRING_LENGTH)),
    sqlite_autoincrement=True,
)

scheduler_worker = Table(
    "scheduler_worker",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("worker_name", Name(255), unique=True),
    Column("first_heartbeat", Timestamp),
    Column("last_heartbeat", Timestamp),
    Column("status", Name(STRING_LENGTH)),
    Column("is_ticker", PydalBoolean, default=False),
    Column("group_names", PydalListString),
    Column("worker_stats", Text().with_variant(JsonText(), "postgresql")),
)

scheduler_task_deps = Table(
    "scheduler_task_deps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_name", Name(STRING_LENGTH), default="job_0"),
    Column("task_parent", Integer),
    Column("task_child", Integer, ForeignKey("scheduler_task.id", ondelete="CASCADE")),
    Column("can_visit", PydalBoolean, default=False),
)


def _mysql_prefixes(**lengths: int) -> Any:
    """Index key prefixes for MySQL/MariaDB: InnoDB keys stop at 3072 bytes, and two
    utf8mb4 VARCHAR(512) columns (4 bytes a character) already take 4096."""
    return {"mysql_length": lengths, "mariadb_length": lengths}


# The claim reads due QUEUED tasks of a group in exactly this order (next_run_time,
# higher priority first, then id), so it stops after the batch it takes: without an
# index in that order the database sorts every due task of a backlog on each claim
# (25 ms at 4,400 due tasks on PostgreSQL; 55 ms at 20,000). A NULL priority (a row
# inserted with an explicit NULL) ranks below every number on every backend: SQLite
# and MariaDB sort NULL lowest, PostgreSQL needs NULLS LAST in the index and the
# query alike. Descending index keys need MariaDB >= 10.8 (earlier ones ignore DESC
# and sort); MySQL 8 has them.
CLAIM_INDEX = "ix_scheduler_task_claim"
#: indexes of earlier taskmill versions that `create_tables` drops (the claim index
#: replaced ix_scheduler_task_due, which had no priority)
RETIRED_INDEXES = {"scheduler_task": ("ix_scheduler_task_due",)}


def _claim_index(priority_order: Any) -> Index:
    return Index(
        CLAIM_INDEX,
        scheduler_task.c.status,
        scheduler_task.c.group_name,
        scheduler_task.c.next_run_time,
        priority_order,
        scheduler_task.c.id,
        **_mysql_prefixes(status=32, group_name=191),
    )


def _not_postgresql(
    ddl: Any,
    target: Any,
    bind: Any,
    tables: Any = None,
    state: Any = None,
    *,
    dialect: Dialect,
    compiler: Any = None,
    checkfirst: bool = False,
) -> bool:
    return dialect.name != "postgresql"


_POSTGRES_CLAIM_INDEX = _claim_index(scheduler_task.c.priority.desc().nulls_last())
_POSTGRES_CLAIM_INDEX.ddl_if(dialect="postgresql")
# spelled as text: SQLAlchemy's MySQL dialect cannot combine key prefix lengths with
# an expression (it would also wrap one in parentheses, a functional key part)
_OTHER_CLAIM_INDEX = _claim_index(literal_column("priority DESC"))
_OTHER_CLAIM_INDEX.ddl_if(callable_=_not_postgresql)


def indexes_for(table: Table, dialect: Dialect) -> list[Index]:
    """The table's indexes as `dialect` gets them (create_all applies ddl_if itself;
    this is for creating the indexes of tables that already exist)."""
    skip = _OTHER_CLAIM_INDEX if dialect.name == "postgresql" else _POSTGRES_CLAIM_INDEX
    return [index for index in table.indexes if index is not skip]


# The dashboard's task list filtered by status, newest first (keyset on id): without
# it, "all COMPLETED tasks" sorts every completed row of a large table.
Index("ix_scheduler_task_status_id", scheduler_task.c.status, scheduler_task.c.id)
# Finding the tasks a dead worker held.
Index(
    "ix_scheduler_task_worker",
    scheduler_task.c.assigned_worker_name,
    scheduler_task.c.status,
    **_mysql_prefixes(assigned_worker_name=191, status=32),
)
Index("ix_scheduler_run_task", scheduler_run.c.task_id, scheduler_run.c.id)
Index(
    "ix_scheduler_run_worker",
    scheduler_run.c.worker_name,
    scheduler_run.c.status,
    **_mysql_prefixes(worker_name=191, status=32),
)
Index("ix_scheduler_task_deps_parent", scheduler_task_deps.c.task_parent)
Index("ix_scheduler_task_deps_child", scheduler_task_deps.c.task_child)


class Tables:
    """The four tables as attributes, as `sched.tables.scheduler_task`."""

    scheduler_task = scheduler_task
    scheduler_run = scheduler_run
    scheduler_worker = scheduler_worker
    scheduler_task_deps = scheduler_task_deps
    metadata = metadata


tables = Tables()
