"""The stored encodings are pydal's on every backend, checked with raw SQL, and tables
that web2py created are adopted by create_tables."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from taskmill import Scheduler
from taskmill.records import Task
from taskmill.schema import metadata
from taskmill.store import Store, open_store

BERLIN = ZoneInfo("Europe/Berlin")

# scheduler_task as web2py's DAL (pydal) creates it on each backend: no priority or
# retry_backoff column.
WEB2PY_TYPES = {
    "sqlite": {
        "id": "id INTEGER PRIMARY KEY AUTOINCREMENT",
        "string": "CHAR(512)",
        "text": "TEXT",
        "datetime": "TIMESTAMP",
    },
    "postgres": {
        "id": "id SERIAL PRIMARY KEY",
        "string": "VARCHAR(512)",
        "text": "TEXT",
        "datetime": "TIMESTAMP",
    },
    "mysql": {
        "id": "id INT AUTO_INCREMENT NOT NULL PRIMARY KEY",
        "string": "VARCHAR(512)",
        "text": "LONGTEXT",
        "datetime": "DATETIME",
    },
}
WEB2PY_TASK_DDL = """
CREATE TABLE scheduler_task (
    {id},
    application_name {string},
    task_name {string},
    group_name {string},
    status {string},
    broadcast CHAR(1),
    function_name {string},
    uuid VARCHAR(255) UNIQUE,
    args {text},
    vars {text},
    enabled CHAR(1),
    start_time {datetime},
    next_run_time {datetime},
    stop_time {datetime},
    repeats INTEGER,
    retry_failed INTEGER,
    period INTEGER,
    prevent_drift CHAR(1),
    cronline {string},
    timeout INTEGER,
    sync_output INTEGER,
    times_run INTEGER,
    times_failed INTEGER,
    last_run_time {datetime},
    assigned_worker_name {string}
)
"""
WEB2PY_ROW = """
INSERT INTO scheduler_task (application_name, task_name, group_name, status, broadcast,
    function_name, uuid, args, vars, enabled, start_time, next_run_time, stop_time, repeats,
    retry_failed, period, prevent_drift, cronline, timeout, sync_output, times_run,
    times_failed, last_run_time, assigned_worker_name)
VALUES ('app/default', 'demo', 'main', 'QUEUED', 'F', 'demo', 'web2py-1', '[1, 2]', '{}',
    'T', :start, :start, NULL, 1, 0, 60, 'F', NULL, 60, 0, 0, 0, NULL, NULL)
"""


def add(a: int, b: int) -> int:
    return a + b


@pytest.fixture
def sched(db_url: str) -> Iterator[Scheduler]:
    scheduler = Scheduler(db_url, tasks={"add": add, "demo": add})
    scheduler.create_tables()
    yield scheduler
    scheduler.store.dispose()


@pytest.fixture
def bare_store(db_url: str) -> Iterator[Store]:
    """A store on an empty database: no tables yet."""
    store = open_store(db_url)
    yield store
    store.dispose()


def raw(store: Store, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql), params)]


def raw_value(store: Store, sql: str, **params: Any) -> Any:
    rows = raw(store, sql, **params)
    assert len(rows) == 1
    return rows[0][0]


def naive(value: Any) -> datetime:
    """A stored datetime as the driver returns it (SQLite: text) as a datetime."""
    result = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(result, datetime)
    return result


# ------------------------------------------------------------------ encodings


def test_booleans_are_stored_as_t_and_f(sched: Scheduler) -> None:
    result = sched.queue_task("add", [1, 2], prevent_drift=True, broadcast=False)
    row = raw(
        sched.store,
        "SELECT enabled, prevent_drift, broadcast FROM scheduler_task WHERE id = :id",
        id=result.id,
    )
    assert row == [("T", "T", "F")]


def test_stored_booleans_read_back_as_bools(sched: Scheduler) -> None:
    task = sched.task_status(sched.queue_task("add", [1, 2], enabled=False).id or 0)
    assert isinstance(task, Task)
    assert (task.enabled, task.prevent_drift) == (False, False)


def test_worker_groups_are_stored_as_list_string(sched: Scheduler) -> None:
    sched.store.register_worker("w1", ["main", "a|b"], {}, dead_after=9)
    stored = raw_value(sched.store, "SELECT group_names FROM scheduler_worker")
    assert stored == "|main|a||b|"
    assert raw_value(sched.store, "SELECT is_ticker FROM scheduler_worker") == "F"
    assert sched.get_workers()["w1"].group_names == ["main", "a|b"]


def test_datetimes_are_stored_naive_utc(sched: Scheduler) -> None:
    start = datetime(2030, 7, 1, 12, 0, 0, 250_000, tzinfo=BERLIN)
    result = sched.queue_task("add", [1, 2], start_time=start)
    stored = naive(
        raw_value(sched.store, "SELECT start_time FROM scheduler_task WHERE id = :id", id=result.id)
    )
    assert stored == datetime(2030, 7, 1, 10, 0, 0, 250_000)
    assert stored.tzinfo is None


def test_args_and_vars_are_stored_as_json_text(sched: Scheduler) -> None:
    result = sched.queue_task("add", [1, "ü"], {"k": None})
    row = raw(sched.store, "SELECT args, vars FROM scheduler_task WHERE id = :id", id=result.id)
    assert row == [('[1, "\\u00fc"]', '{"k": null}')]


def test_large_result_is_stored_whole(sched: Scheduler) -> None:
    task_id = sched.queue_task("add", [1, 2]).id
    big = '"' + "x" * 100_000 + '"'  # beyond MySQL's 64 kB TEXT
    with sched.store.transaction() as conn:
        conn.execute(
            sched.tables.scheduler_run.insert().values(
                task_id=task_id, status="COMPLETED", run_result=big
            )
        )
    report = sched.task_status(task_id or 0, output=True)
    assert report is not None
    assert report.result == "x" * 100_000  # type: ignore[union-attr]


# ------------------------------------------------------------------ create_tables


def test_task_fields_follow_the_tables_column_order() -> None:
    # Store._task builds claimed rows positionally (Task(*row)) on this promise
    columns = list(metadata.tables["scheduler_task"].c.keys())
    assert [f.name for f in fields(Task)] == columns


def test_create_tables_makes_the_four_tables(bare_store: Store) -> None:
    bare_store.create_tables()
    names = set(sa.inspect(bare_store.engine).get_table_names())
    assert {"scheduler_task", "scheduler_run", "scheduler_worker", "scheduler_task_deps"} <= names


def test_create_tables_is_idempotent(bare_store: Store) -> None:
    bare_store.create_tables()
    with bare_store.transaction() as conn:
        conn.execute(
            metadata.tables["scheduler_task"].insert().values(function_name="f", uuid="keep")
        )
    bare_store.create_tables()
    assert raw(bare_store, "SELECT uuid FROM scheduler_task") == [("keep",)]
    columns = sa.inspect(bare_store.engine).get_columns("scheduler_task")
    assert [c["name"] for c in columns].count("priority") == 1
    assert [c["name"] for c in columns].count("retry_backoff") == 1


def test_create_tables_makes_the_claim_index(bare_store: Store) -> None:
    bare_store.create_tables()
    indexes = {i["name"] for i in sa.inspect(bare_store.engine).get_indexes("scheduler_task")}
    assert {"ix_scheduler_task_claim", "ix_scheduler_task_worker"} <= indexes


def create_web2py_task_table(store: Store, backend: str) -> None:
    with store.engine.begin() as conn:
        conn.exec_driver_sql(WEB2PY_TASK_DDL.format(**WEB2PY_TYPES[backend]))
        conn.execute(sa.text(WEB2PY_ROW), {"start": datetime(2020, 1, 1, 0, 0)})


def test_web2py_table_gets_the_extra_columns(bare_store: Store, db_backend: str) -> None:
    create_web2py_task_table(bare_store, db_backend)
    bare_store.create_tables()
    columns = {c["name"] for c in sa.inspect(bare_store.engine).get_columns("scheduler_task")}
    assert {"priority", "retry_backoff"} <= columns
    # existing rows get the default, so web2py's tasks keep web2py's retry rule
    assert raw(bare_store, "SELECT uuid, priority, retry_backoff FROM scheduler_task") == [
        ("web2py-1", 0, 0)
    ]


def test_web2py_row_inserted_after_the_upgrade_gets_the_defaults(
    bare_store: Store, db_backend: str
) -> None:
    create_web2py_task_table(bare_store, db_backend)
    bare_store.create_tables()
    with bare_store.engine.begin() as conn:  # web2py's INSERT names only its own columns
        conn.execute(
            sa.text(WEB2PY_ROW.replace("web2py-1", "web2py-2")), {"start": datetime(2020, 1, 1)}
        )
    assert raw(
        bare_store, "SELECT priority, retry_backoff FROM scheduler_task WHERE uuid = 'web2py-2'"
    ) == [(0, 0)]


def test_web2py_table_gets_taskmills_indexes(bare_store: Store, db_backend: str) -> None:
    create_web2py_task_table(bare_store, db_backend)
    bare_store.create_tables()
    indexes = {i["name"] for i in sa.inspect(bare_store.engine).get_indexes("scheduler_task")}
    assert {"ix_scheduler_task_claim", "ix_scheduler_task_worker"} <= indexes


def test_create_tables_on_a_web2py_table_is_idempotent(bare_store: Store, db_backend: str) -> None:
    create_web2py_task_table(bare_store, db_backend)
    bare_store.create_tables()
    bare_store.create_tables()
    assert raw(bare_store, "SELECT COUNT(*) FROM scheduler_task") == [(1,)]


def test_web2py_row_is_read_and_claimed(bare_store: Store, db_backend: str) -> None:
    create_web2py_task_table(bare_store, db_backend)
    bare_store.create_tables()
    task = bare_store.find_task(metadata.tables["scheduler_task"].c.uuid == "web2py-1")
    assert task is not None
    assert (task.enabled, task.prevent_drift, task.broadcast) == (True, False, False)
    assert task.start_time == datetime(2020, 1, 1, tzinfo=UTC)
    with bare_store.transaction() as conn:
        claimed = bare_store.claim_due_tasks(conn, "w1", ["main"], 10)
    assert [t.uuid for t in claimed] == ["web2py-1"]
    assert claimed[0].status == "ASSIGNED"


def create_earlier_taskmill_table(store: Store, backend: str) -> None:
    """scheduler_task as taskmill made it before the claim index held priority: a
    priority column without a server default and the old ix_scheduler_task_due."""
    create_web2py_task_table(store, backend)
    prefix = "(32)" if backend == "mysql" else ""
    group_prefix = "(191)" if backend == "mysql" else ""
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE scheduler_task ADD COLUMN priority INTEGER")
        conn.exec_driver_sql(
            "ALTER TABLE scheduler_task ADD COLUMN retry_backoff INTEGER DEFAULT 0"
        )
        conn.exec_driver_sql(
            f"CREATE INDEX ix_scheduler_task_due ON scheduler_task (status{prefix},"
            f" group_name{group_prefix}, next_run_time, id)"
        )


def test_migration_replaces_the_claim_index(bare_store: Store, db_backend: str) -> None:
    create_earlier_taskmill_table(bare_store, db_backend)
    bare_store.create_tables()
    indexes = {
        i["name"]: i["column_names"]
        for i in sa.inspect(bare_store.engine).get_indexes("scheduler_task")
    }
    assert "ix_scheduler_task_due" not in indexes
    assert indexes["ix_scheduler_task_claim"] == [
        "status",
        "group_name",
        "next_run_time",
        "priority",
        "id",
    ]


def test_migration_gives_queued_tasks_without_priority_priority_zero(
    bare_store: Store, db_backend: str
) -> None:
    create_earlier_taskmill_table(bare_store, db_backend)
    assert raw(bare_store, "SELECT priority FROM scheduler_task") == [(None,)]
    bare_store.create_tables()
    assert raw(bare_store, "SELECT priority FROM scheduler_task") == [(0,)]


def test_migration_gives_priority_a_default_where_the_database_can(
    bare_store: Store, db_backend: str
) -> None:
    create_earlier_taskmill_table(bare_store, db_backend)
    bare_store.create_tables()
    with bare_store.engine.begin() as conn:  # web2py's INSERT names only its own columns
        conn.execute(
            sa.text(WEB2PY_ROW.replace("web2py-1", "web2py-2")), {"start": datetime(2020, 1, 1)}
        )
    # SQLite cannot ALTER a column's default: such a row keeps NULL (ranked lowest)
    expected = None if db_backend == "sqlite" else 0
    assert raw(bare_store, "SELECT priority FROM scheduler_task WHERE uuid = 'web2py-2'") == [
        (expected,)
    ]


@pytest.mark.parametrize(
    ("server", "schemes"),
    [
        pytest.param("postgres", ["postgresql", "postgres"], marks=pytest.mark.postgres),
        pytest.param("mysql", ["mysql", "mariadb"], marks=pytest.mark.mysql),
    ],
)
def test_urls_without_a_driver_use_the_installed_one(
    request: pytest.FixtureRequest, server: str, schemes: list[str]
) -> None:
    """The contract's `postgresql://...` and web2py's `postgres://` must work as
    written: SQLAlchemy alone would pick psycopg2 or mysqlclient, not installed."""
    url = sa.make_url(request.getfixturevalue(f"{server}_url"))
    for scheme in schemes:
        plain = url.set(drivername=scheme).render_as_string(hide_password=False)
        sched = Scheduler(plain, tasks={"noop": print})
        try:
            sched.create_tables()
            queued = sched.queue_task("noop")
            assert queued.errors == {}
            assert sched.store.engine.driver in ("psycopg", "pymysql")
            task = sched.task_status(queued.id)
            assert task is not None and task.status == "QUEUED"
        finally:
            sched.store.dispose()
