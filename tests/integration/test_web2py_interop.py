"""web2py interop: a web2py application and taskmill workers sharing one database.

The web2py side is pydal, web2py's DAL from PyPI, with the four tables defined the way
gluon/scheduler.py's ``Scheduler.define_tables`` defines them (same names, types and
defaults; ``migrate=True``, so pydal creates them as a web2py app does on its first
request). Tasks are queued the way ``Scheduler.queue_task`` does it: args and vars as
JSON text, a uuid, status QUEUED and naive datetimes, through ``validate_and_insert``.
Then taskmill's migration runs on those tables (`taskmill migrate` in the test of the
migration itself, ``Scheduler.create_tables()`` for the others), real `taskmill worker`
processes (tests/apps/web2py_app.py) run the tasks, and pydal reads back what they wrote.

Every test runs on SQLite, PostgreSQL and MariaDB (the `db_url` fixture), with pydal's
own drivers: sqlite3, psycopg2 and PyMySQL. MariaDB connections of pydal keep their read
snapshot until they commit, so every look at the tables through pydal commits first, as
each new web2py request would.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import harness  # before web2py_tasks: it puts tests/apps on sys.path
import pytest
import sqlalchemy as sa
from pydal import DAL, Field
from pydal.validators import (
    IS_DATETIME,
    IS_IN_DB,
    IS_IN_SET,
    IS_INT_IN_RANGE,
    IS_NOT_EMPTY,
    IS_NOT_IN_DB,
)
from web2py_tasks import TASKS, UTC_TIME_ENV

from taskmill import Scheduler
from taskmill.schema import metadata

Cluster = harness.Cluster

pytestmark = pytest.mark.filterwarnings(
    # pydal connects with PyMySQL's old keyword names (db=, passwd=)
    "ignore:'db' is deprecated:DeprecationWarning",
    "ignore:'passwd' is deprecated:DeprecationWarning",
)

APP = "web2py_app:sched"
HEARTBEAT = 1.0
#: what web2py puts in application_name when a controller queues a task
WEB2PY_APPLICATION = "w2papp/default"

# web2py's status strings, spelled here as gluon/scheduler.py spells them: this is the
# web2py side of the test, which must not borrow taskmill's constants
QUEUED, RUNNING, COMPLETED, FAILED = "QUEUED", "RUNNING", "COMPLETED", "FAILED"
TASK_STATUS = (QUEUED, "ASSIGNED", RUNNING, COMPLETED, FAILED, "TIMEOUT", "STOPPED", "EXPIRED")
RUN_STATUS = (RUNNING, COMPLETED, FAILED, "TIMEOUT", "STOPPED")
WORKER_STATUS = ("ACTIVE", "PICK", "DISABLED", "TERMINATE", "KILL", "STOP_TASK")

Clock = Callable[[], datetime]


def utc_clock() -> datetime:
    """web2py's Scheduler.now() with utc_time=True: naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def local_clock(zone: str) -> Clock:
    """web2py's Scheduler.now() with utc_time=False, in a process whose zone is `zone`."""
    return lambda: datetime.now(ZoneInfo(zone)).replace(tzinfo=None)


# ------------------------------------------------------------------ the web2py side


def define_web2py_tables(db: DAL, tasks: dict[str, Any], now: Clock, worker_name: str) -> None:
    """gluon/scheduler.py's Scheduler.define_tables, field for field.

    Left out: web2py's own validators TYPE(list), TYPE(dict) and IS_CRONLINE, which
    pydal does not ship; they only check values, the tables are the same without them.
    """
    db.define_table(
        "scheduler_task",
        Field("application_name", requires=IS_NOT_EMPTY(), default=None, writable=False),
        Field("task_name", default=None),
        Field("group_name", default="main"),
        Field("status", requires=IS_IN_SET(TASK_STATUS), default=QUEUED, writable=False),
        Field("broadcast", "boolean", default=False),
        Field("function_name", requires=IS_IN_SET(sorted(tasks))),
        Field(
            "uuid",
            length=255,
            requires=IS_NOT_IN_DB(db, "scheduler_task.uuid"),
            unique=True,
            default=lambda: str(uuidlib.uuid4()),  # web2py_uuid()
        ),
        Field("args", "text", default="[]"),
        Field("vars", "text", default="{}"),
        Field("enabled", "boolean", default=True),
        Field("start_time", "datetime", default=now, requires=IS_DATETIME()),
        Field("next_run_time", "datetime", default=now),
        Field("stop_time", "datetime"),
        Field("repeats", "integer", default=1, requires=IS_INT_IN_RANGE(0, None)),
        Field("retry_failed", "integer", default=0, requires=IS_INT_IN_RANGE(-1, None)),
        Field("period", "integer", default=60, requires=IS_INT_IN_RANGE(0, None)),
        Field("prevent_drift", "boolean", default=False),
        Field("cronline", default=None),
        Field("timeout", "integer", default=60, requires=IS_INT_IN_RANGE(1, None)),
        Field("sync_output", "integer", default=0, requires=IS_INT_IN_RANGE(0, None)),
        Field("times_run", "integer", default=0, writable=False),
        Field("times_failed", "integer", default=0, writable=False),
        Field("last_run_time", "datetime", writable=False, readable=False),
        Field("assigned_worker_name", default="", writable=False),
        migrate=True,
        format="(%(id)s) %(task_name)s",
    )
    # web2py's set_requirements: 'application/controller' of the queueing request
    db.scheduler_task.application_name.default = WEB2PY_APPLICATION
    db.define_table(
        "scheduler_run",
        Field("task_id", "reference scheduler_task"),
        Field("status", requires=IS_IN_SET(RUN_STATUS)),
        Field("start_time", "datetime"),
        Field("stop_time", "datetime"),
        Field("run_output", "text"),
        Field("run_result", "text"),
        Field("traceback", "text"),
        Field("worker_name", default=worker_name),
        migrate=True,
    )
    db.define_table(
        "scheduler_worker",
        Field("worker_name", length=255, unique=True),
        Field("first_heartbeat", "datetime"),
        Field("last_heartbeat", "datetime"),
        Field("status", requires=IS_IN_SET(WORKER_STATUS)),
        Field("is_ticker", "boolean", default=False, writable=False),
        Field("group_names", "list:string", default=["main"]),
        Field("worker_stats", "json"),
        migrate=True,
    )
    db.define_table(
        "scheduler_task_deps",
        Field("job_name", default="job_0"),
        Field(
            "task_parent", "integer", requires=IS_IN_DB(db, "scheduler_task.id", "%(task_name)s")
        ),
        Field("task_child", "reference scheduler_task"),
        Field("can_visit", "boolean", default=False),
        migrate=True,
    )
    db.commit()


def web2py_queue_task(
    db: DAL, function: str, pargs: list[Any] | None = None, pvars: Any = None, **kwargs: Any
) -> int:
    """gluon/scheduler.py's Scheduler.queue_task, then the request's commit."""
    kwargs.update(
        function_name=function,
        task_name=kwargs.pop("task_name", function),
        args=json.dumps(pargs or []),
        vars=json.dumps(pvars or {}),
        uuid=kwargs.pop("uuid", str(uuidlib.uuid4())),
    )
    immediate = kwargs.pop("immediate", False)
    if "start_time" in kwargs and "next_run_time" not in kwargs:
        kwargs["next_run_time"] = kwargs["start_time"]
    result = db.scheduler_task.validate_and_insert(**kwargs)
    assert not result["errors"], result["errors"]
    if immediate:  # web2py's way to make its ticker assign tasks at once
        db(db.scheduler_worker.is_ticker == True).update(status="PICK")  # noqa: E712
    db.commit()
    return int(result["id"])


def web2py_worker_died_running(db: DAL, task_id: int, worker_name: str) -> None:
    """What a web2py worker killed in the middle of a task leaves behind: its row with an
    old heartbeat (it was the ticker), the task RUNNING on it and a RUNNING run row."""
    then = db.scheduler_task(task_id).start_time - timedelta(minutes=5)
    db.scheduler_worker.insert(
        worker_name=worker_name,
        first_heartbeat=then,
        last_heartbeat=then,
        status="ACTIVE",
        is_ticker=True,
        group_names=["main"],
        worker_stats={"status": RUNNING, "total": 7, "errors": 0, "queue": 1},
    )
    db(db.scheduler_task.id == task_id).update(
        status=RUNNING, assigned_worker_name=worker_name, last_run_time=then
    )
    db.scheduler_run.insert(
        task_id=task_id, status=RUNNING, start_time=then, worker_name=worker_name
    )
    db.commit()


def web2py_task_status(db: DAL, task_id: int) -> Any:
    """gluon/scheduler.py's Scheduler.task_status(ref, output=True)."""
    st, sr = db.scheduler_task, db.scheduler_run
    db.commit()  # end the read snapshot (MariaDB's REPEATABLE READ would keep it)
    row = (
        db(st.id == task_id)
        .select(st.ALL, sr.ALL, left=sr.on(sr.task_id == st.id), orderby=~st.id | ~sr.id)
        .first()
    )
    row.result = row.scheduler_run.run_result and json.loads(row.scheduler_run.run_result)
    return row


def raw_row(db: DAL, table: str, row_id: int) -> dict[str, Any]:
    """The values as stored, before pydal decodes them."""
    db.commit()
    cursor = db.executesql(f"SELECT * FROM {table} WHERE id = {int(row_id)}", as_dict=True)
    return dict(cursor[0])


def pydal_uri(url_text: str) -> str:
    """The pydal URI of the database a SQLAlchemy URL names."""
    url = sa.make_url(url_text)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return f"sqlite://{url.database}"
    where = f"{url.username}@{url.host}:{url.port}/{url.database}"
    if backend == "postgresql":
        return f"postgres:psycopg2://{where}"
    # pydal's MySQL adapter opens utf8 (3-byte) connections unless told otherwise
    return f"mysql://{where}?set_encoding=utf8mb4"


def column_types(engine: sa.Engine) -> dict[str, dict[str, str]]:
    """table -> column -> type, as the database describes them."""
    inspector = sa.inspect(engine)
    return {
        table.name: {
            column["name"]: str(column["type"]) for column in inspector.get_columns(table.name)
        }
        for table in metadata.sorted_tables
    }


@dataclass
class Web2pyDatabase:
    """The database as a web2py app sees it."""

    url: str
    uri: str
    folder: Path
    #: the columns web2py made, before taskmill touched the tables
    web2py_columns: dict[str, dict[str, str]]
    #: the web2py process's Scheduler.now(): the default of start_time, next_run_time
    now: Clock = utc_clock
    dals: list[DAL] = field(default_factory=list)

    def connect(self) -> DAL:
        """A DAL with the scheduler tables defined, as each web2py request makes one."""
        db = DAL(self.uri, folder=str(self.folder), migrate=True, pool_size=0)
        self.dals.append(db)
        define_web2py_tables(db, TASKS, lambda: self.now(), worker_name="web2py#1")
        return db


@pytest.fixture
def web2py_tables(db_url: str, tmp_path: Path) -> Iterator[Web2pyDatabase]:
    """The four tables as a web2py app's first request creates them, and no more."""
    folder = tmp_path / "databases"  # web2py's applications/<app>/databases
    folder.mkdir()
    database = Web2pyDatabase(db_url, pydal_uri(db_url), folder, web2py_columns={})
    database.connect()
    engine = sa.create_engine(db_url)
    try:
        database.web2py_columns = column_types(engine)
    finally:
        engine.dispose()
    yield database
    for db in database.dals:
        db.close()


@pytest.fixture
def web2py(web2py_tables: Web2pyDatabase) -> Web2pyDatabase:
    """web2py's tables after taskmill's migration (Scheduler.create_tables)."""
    sched = Scheduler(web2py_tables.url)
    try:
        sched.create_tables()
    finally:
        sched.store.dispose()
    return web2py_tables


def start_cluster(
    request: pytest.FixtureRequest, web2py: Web2pyDatabase, env: dict[str, str] | None = None
) -> contextlib.AbstractContextManager[Cluster]:
    return harness.cluster_for_test(
        request, web2py.url, app=APP, tasks=TASKS, heartbeat=HEARTBEAT, env=env
    )


def wait_web2py_status(cluster: Cluster, db: DAL, task_id: int, status: str) -> Any:
    """The task as pydal reads it, once it has `status`."""

    def reached() -> Any:
        db.commit()  # a new snapshot for each look, as a new web2py request has
        row = db.scheduler_task(task_id)
        return row if row.status == status else None

    return cluster.wait_for(reached, 15.0, what=f"task {task_id} to be {status} (pydal)")


def close_to(value: datetime, expected: datetime, seconds: float = 30.0) -> bool:
    return abs((value - expected).total_seconds()) <= seconds


# ------------------------------------------------------------------ migration


def test_taskmill_migrate_keeps_web2py_tables_and_adds_only_its_own_columns(
    web2py_tables: Web2pyDatabase,
) -> None:
    migrated = subprocess.run(
        [sys.executable, "-m", "taskmill", "migrate", "--db", web2py_tables.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert migrated.returncode == 0, migrated.stderr
    assert "tables are up to date" in migrated.stdout
    engine = sa.create_engine(web2py_tables.url)
    try:
        after = column_types(engine)
        indexes = {
            table.name: {ix["name"] for ix in sa.inspect(engine).get_indexes(table.name)}
            for table in metadata.sorted_tables
        }
    finally:
        engine.dispose()
    for table, columns in web2py_tables.web2py_columns.items():
        # web2py's columns untouched; only taskmill's extras (priority, ...) added
        assert {name: after[table][name] for name in columns} == columns
        assert set(after[table]) == set(metadata.tables[table].columns.keys()) | set(columns)
    assert "priority" in set(after["scheduler_task"]) - set(web2py_tables.web2py_columns)
    for table in metadata.sorted_tables:
        assert {index.name for index in table.indexes} <= indexes[table.name]
    # web2py's next request defines the tables again with migrate=True: pydal takes
    # them as they are, and the rows it inserts get taskmill's defaults
    db = web2py_tables.connect()
    task_id = web2py_queue_task(db, "demo_add", [1, 2])
    assert raw_row(db, "scheduler_task", task_id)["priority"] == 0


# ------------------------------------------------------------------ web2py -> taskmill


def test_tasks_queued_by_web2py_run_on_a_taskmill_worker_and_pydal_reads_the_results(
    request: pytest.FixtureRequest, web2py: Web2pyDatabase
) -> None:
    db = web2py.connect()
    queued_at = utc_clock()
    added = web2py_queue_task(db, "demo_add", [2, 3])
    echoed = web2py_queue_task(
        db, "demo_echo", [1, "zwei", [3.5]], {"name": "Zoë", "nested": {"ok": True}}
    )
    silent = web2py_queue_task(db, "demo_print")
    failing = web2py_queue_task(db, "demo_fail", ["kaput"])
    orphan = web2py_queue_task(db, "demo_add", [20, 22])
    web2py_worker_died_running(db, orphan, "web2pyhost#4242")

    with start_cluster(request, web2py) as cluster:
        worker = cluster.start_worker()
        for task_id in (added, echoed, silent):
            wait_web2py_status(cluster, db, task_id, COMPLETED)
        wait_web2py_status(cluster, db, failing, FAILED)
        # the dead web2py worker's task is requeued and run; its run row is closed
        wait_web2py_status(cluster, db, orphan, COMPLETED)
        assert web2py_task_status(db, orphan).result == 42
        old_run, new_run = db(db.scheduler_run.task_id == orphan).select(
            orderby=db.scheduler_run.id
        )
        assert (old_run.worker_name, old_run.status) == ("web2pyhost#4242", FAILED)
        assert (new_run.worker_name, new_run.status) == (worker.name, COMPLETED)
        assert db(db.scheduler_worker.worker_name == "web2pyhost#4242").count() == 0

        task = web2py_task_status(db, added)
        assert task.scheduler_task.status == COMPLETED
        assert (task.scheduler_task.times_run, task.scheduler_task.times_failed) == (1, 0)
        assert task.scheduler_task.assigned_worker_name == worker.name
        assert task.scheduler_task.enabled is True
        assert raw_row(db, "scheduler_task", added)["enabled"] == "T"
        assert isinstance(task.scheduler_task.last_run_time, datetime)
        assert task.scheduler_task.last_run_time.tzinfo is None
        assert close_to(task.scheduler_task.last_run_time, queued_at)
        run = task.scheduler_run
        assert (run.status, run.run_result, run.worker_name) == (COMPLETED, "5", worker.name)
        assert task.result == 5
        assert run.traceback is None
        assert run.start_time.tzinfo is None and run.stop_time.tzinfo is None
        assert queued_at - timedelta(seconds=1) <= run.start_time <= run.stop_time
        assert close_to(run.stop_time, utc_clock())

        assert web2py_task_status(db, echoed).result == {
            "args": [1, "zwei", [3.5]],
            "vars": {"name": "Zoë", "nested": {"ok": True}},
        }
        # web2py keeps no run row for a task that completed returning None
        assert db(db.scheduler_run.task_id == silent).count() == 0
        failed = web2py_task_status(db, failing)
        assert failed.scheduler_task.times_failed == 1
        assert failed.scheduler_run.status == FAILED
        assert "ValueError: kaput" in failed.scheduler_run.traceback

        def ticker_row() -> Any:
            db.commit()
            row = db(db.scheduler_worker.worker_name == worker.name).select().first()
            return row if row is not None and row.is_ticker else None

        beat = cluster.wait_for(ticker_row, 10.0, what="the worker to hold the ticker")
        assert beat.group_names == ["main"]
        assert beat.status == "ACTIVE"
        assert beat.is_ticker is True
        assert isinstance(beat.worker_stats, dict)
        assert beat.first_heartbeat <= beat.last_heartbeat
        assert close_to(beat.last_heartbeat, utc_clock())
        stored = raw_row(db, "scheduler_worker", beat.id)
        assert (stored["group_names"], stored["is_ticker"]) == ("|main|", "T")

        # web2py's immediate=True sets the ticker to PICK; a taskmill worker needs no
        # nudge (it is woken or polls) and goes on taking tasks
        urgent = web2py_queue_task(db, "demo_add", [1, 1], immediate=True)
        wait_web2py_status(cluster, db, urgent, COMPLETED)


# ------------------------------------------------------------------ taskmill -> web2py


def test_tasks_queued_by_taskmill_have_the_values_a_web2py_app_expects(
    web2py: Web2pyDatabase,
) -> None:
    sched = Scheduler(web2py.url, tasks=dict(TASKS))
    try:
        start = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
        plain = sched.queue_task("demo_add", [2, 3])
        full = sched.queue_task(
            "demo_echo",
            [1, "zwei"],
            {"name": "Zoë"},
            uuid="11111111-2222-3333-4444-555555555555",
            task_name="echo it",
            group_name="reports",
            start_time=start,
            stop_time=start + timedelta(days=1),
            repeats=3,
            period=120,
            prevent_drift=True,
            retry_failed=-1,
            timeout=30,
        )
    finally:
        sched.store.dispose()
    assert plain.errors == {} and full.errors == {}
    assert plain.id is not None and full.id is not None

    db = web2py.connect()
    row = db.scheduler_task(plain.id)
    assert row.status == QUEUED
    assert row.function_name == row.task_name == "demo_add"
    assert row.group_name == "main"
    assert row.uuid == plain.uuid
    assert str(uuidlib.UUID(row.uuid)) == row.uuid
    assert (row.args, row.vars) == ("[2, 3]", "{}")
    assert (row.enabled, row.broadcast, row.prevent_drift) == (True, False, False)
    assert isinstance(row.start_time, datetime) and row.start_time.tzinfo is None
    assert close_to(row.start_time, utc_clock())
    assert row.next_run_time == row.start_time
    assert (row.stop_time, row.last_run_time, row.cronline) == (None, None, None)
    assert (row.repeats, row.retry_failed, row.period, row.timeout) == (1, 0, 60, 60)
    assert (row.sync_output, row.times_run, row.times_failed) == (0, 0, 0)
    assert row.assigned_worker_name == ""
    stored = raw_row(db, "scheduler_task", plain.id)
    assert (stored["enabled"], stored["broadcast"], stored["prevent_drift"]) == ("T", "F", "F")

    row = db.scheduler_task(full.id)
    assert (row.uuid, row.task_name, row.group_name) == (full.uuid, "echo it", "reports")
    # the very text web2py's dumps() writes: Eden finds its tasks by comparing it
    assert (row.args, row.vars) == (json.dumps([1, "zwei"]), json.dumps({"name": "Zoë"}))
    st = db.scheduler_task
    found = db((st.args == json.dumps([1, "zwei"])) & (st.vars == json.dumps({"name": "Zoë"})))
    assert [task.id for task in found.select(st.id)] == [full.id]
    assert row.start_time == row.next_run_time == datetime(2031, 5, 6, 7, 8, 9)
    assert row.stop_time == datetime(2031, 5, 7, 7, 8, 9)
    assert (row.repeats, row.period, row.prevent_drift, row.retry_failed) == (3, 120, True, -1)
    assert row.timeout == 30
    # the validators of web2py's define_tables (its forms, appadmin) accept the values
    checked = ("function_name", "uuid", "start_time", "repeats", "retry_failed", "period")
    result = db.scheduler_task.validate_and_update(full.id, **{n: row[n] for n in checked})
    assert result["errors"] == {}


# ------------------------------------------------------------------ local time


# West of UTC, a local time taken for UTC lies hours in the future: a task would run
# early and one with a stop_time expire at once. East of it, due tasks would wait for
# hours. The storage of naive times is the backends' part: the west is checked on each.
LOCAL_TIME_CASES = [
    pytest.param("sqlite", "Europe/Berlin", id="sqlite-Europe/Berlin"),
    pytest.param("sqlite", "America/New_York", id="sqlite-America/New_York"),
    pytest.param(
        "postgres", "America/New_York", id="postgres-America/New_York", marks=pytest.mark.postgres
    ),
    pytest.param("mysql", "America/New_York", id="mysql-America/New_York", marks=pytest.mark.mysql),
]


@pytest.mark.parametrize(("db_url", "zone"), LOCAL_TIME_CASES, indirect=["db_url"])
def test_local_time_database_runs_tasks_when_due_and_writes_local_times(
    request: pytest.FixtureRequest,
    web2py: Web2pyDatabase,
    monkeypatch: pytest.MonkeyPatch,
    zone: str,
) -> None:
    """web2py's default, utc_time=False: every time in the tables is the local wall
    clock of the web2py app, and so of the workers (same TZ). A worker that took these
    times for UTC would run tasks hours early (west of UTC) or late (east of it)."""
    monkeypatch.setenv("TZ", zone)  # for the test's own taskmill Scheduler
    local_now = local_clock(zone)
    web2py.now = local_now
    db = web2py.connect()
    now = local_now()
    at_once = web2py_queue_task(db, "demo_add", [1, 1])
    soon = web2py_queue_task(db, "demo_add", [2, 2], start_time=now + timedelta(seconds=2))
    later = web2py_queue_task(db, "demo_add", [3, 3], start_time=now + timedelta(minutes=30))
    hourly = web2py_queue_task(db, "demo_add", [4, 4], repeats=2, period=3600)
    bounded = web2py_queue_task(db, "demo_add", [5, 5], stop_time=now + timedelta(minutes=20))
    failing = web2py_queue_task(db, "demo_fail", ["once"])
    sched = Scheduler(web2py.url, tasks=dict(TASKS), utc_time=False)
    try:
        by_taskmill = sched.queue_task(
            "demo_add", [6, 6], start_time=datetime.now(UTC) + timedelta(seconds=1)
        )
    finally:
        sched.store.dispose()
    assert by_taskmill.id is not None
    assert close_to(db.scheduler_task(by_taskmill.id).start_time, local_now(), 10)

    env = {UTC_TIME_ENV: "0", "TZ": zone}
    with start_cluster(request, web2py, env) as cluster:
        worker = cluster.start_worker()
        for task_id in (at_once, soon, bounded, by_taskmill.id):
            wait_web2py_status(cluster, db, task_id, COMPLETED)
        repeating = wait_web2py_status(cluster, db, hourly, QUEUED)
        cluster.wait_for(lambda: db.scheduler_task(hourly).times_run == 1 or None, 10.0)

        run = web2py_task_status(db, soon).scheduler_run
        # not before its start_time, as stored: MySQL's DATETIME keeps whole seconds
        assert run.start_time >= db.scheduler_task(soon).start_time
        assert close_to(run.start_time, local_now(), 15)
        assert close_to(run.stop_time, local_now(), 15)
        repeating = db.scheduler_task(hourly)
        assert close_to(repeating.last_run_time, local_now(), 15)
        assert repeating.next_run_time == repeating.last_run_time + timedelta(hours=1)
        beat = db(db.scheduler_worker.worker_name == worker.name).select().first()
        assert close_to(beat.last_heartbeat, local_now(), 15)

        # the command line on the same database, given by URL: --local-time
        wait_web2py_status(cluster, db, failing, FAILED)
        requeued = cluster.run_cli("--local-time", "requeue", "--db", web2py.url, str(failing))
        assert requeued.returncode == 0, requeued.stderr

        def ran_again() -> bool:
            db.commit()
            return db(db.scheduler_run.task_id == failing).count() == 2

        cluster.wait_for(ran_again, 10.0, what="the requeued task to run again")

        # nothing ran before its time
        db.commit()
        assert db.scheduler_task(later).status == QUEUED
        assert db.scheduler_task(hourly).times_run == 1
