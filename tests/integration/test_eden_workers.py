"""The Eden layer with real worker processes.

Workers run `taskmill worker --app eden_app:tm` (tests/apps/eden_app.py): a TaskManager
whose hooks are an Eden application's. `impersonate(user_id)` sets the current user,
and `commit()`/`rollback()` end the transaction of the app's own connection, on which
`write_note` writes; so a note the test can read proves that the run was committed,
and its user column shows whom the task ran as. Every hook call is also appended, in
order, to an events file.

The hook tests run on SQLite (the hooks do not depend on the backend; one of them
runs on every backend all the same). The rules of schedule_task/reset/run_async that
touch the store, and the duplicate check racing between processes, run on SQLite,
PostgreSQL and MariaDB.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import harness  # before eden_tasks: it puts tests/apps on sys.path
import pytest
import sqlalchemy as sa
from eden_tasks import (
    EVENTS_ENV,
    TASKS,
    commit,
    create_notes_table,
    impersonate,
    notes_of,
    rollback,
)
from eden_tasks import read_events as read_events_file

from taskmill import RunStatus, Task, TaskManager, TaskReport, TaskStatus
from taskmill.eden import USER_ID_KEY

Cluster = harness.Cluster
WorkerProcess = harness.WorkerProcess

APP = "eden_app:tm"
HEARTBEAT = 1.0


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    return tmp_path / "events.log"


def backends(*names: str) -> pytest.MarkDecorator:
    """Run the test once on each of these backends (the default is SQLite only)."""
    marks = {"postgres": [pytest.mark.postgres], "mysql": [pytest.mark.mysql]}
    params = [pytest.param(name, id=name, marks=marks.get(name, [])) for name in names]
    return pytest.mark.parametrize("database", params, indirect=True)


EVERY_BACKEND = backends("sqlite", "postgres", "mysql")


@pytest.fixture
def database(request: pytest.FixtureRequest) -> str:
    """The database under test: SQLite unless the test asks for other backends."""
    backend = getattr(request, "param", "sqlite")
    url: str = request.getfixturevalue(f"{backend}_url")
    return url


@pytest.fixture
def cluster(request: pytest.FixtureRequest, database: str, events_file: Path) -> Iterator[Cluster]:
    with harness.cluster_for_test(
        request,
        database,
        app=APP,
        tasks=TASKS,
        heartbeat=HEARTBEAT,
        env={EVENTS_ENV: str(events_file)},
    ) as c:
        create_notes_table(c.sched.store.engine)
        yield c


@pytest.fixture
def tm(cluster: Cluster) -> TaskManager:
    """The test process' own TaskManager on the cluster's database."""
    return TaskManager(cluster.sched, impersonate=impersonate, commit=commit, rollback=rollback)


@pytest.fixture
def worker(cluster: Cluster) -> WorkerProcess:
    return cluster.start_worker()


def notes(cluster: Cluster) -> list[tuple[str, str | None]]:
    return notes_of(cluster.sched.store.engine)


def events(path: Path) -> list[str]:
    return read_events_file(path)


def report(cluster: Cluster, task_id: int) -> TaskReport:
    found = cluster.sched.task_status(task_id, output=True)
    assert isinstance(found, TaskReport)
    return found


def stored(cluster: Cluster, task_id: int) -> Task:
    return cluster.task(task_id)


def schedule(tm: TaskManager, task: str, *args: Any, **options: Any) -> int:
    task_id = tm.schedule_task(task, args=list(args), **options)
    assert isinstance(task_id, int)
    return task_id


# ------------------------------------------------------- hooks in a worker's child


@EVERY_BACKEND
def test_task_runs_as_the_user_who_scheduled_it(
    cluster: Cluster, tm: TaskManager, worker: WorkerProcess
) -> None:
    task_id = schedule(tm, "whoami", user_id=7)
    cluster.wait_status(task_id, TaskStatus.COMPLETED)
    assert report(cluster, task_id).result == 7


def test_successful_run_is_committed_as_the_user(
    cluster: Cluster, tm: TaskManager, worker: WorkerProcess, events_file: Path
) -> None:
    task_id = schedule(tm, "write_note", "ok", user_id=7)
    cluster.wait_status(task_id, TaskStatus.COMPLETED)
    assert notes(cluster) == [("ok", "7")]
    assert events(events_file) == [
        "impersonate 7",
        "task write_note ok",
        "commit",
        "end impersonation 7",
    ]


def test_failed_run_is_rolled_back(
    cluster: Cluster, tm: TaskManager, worker: WorkerProcess, events_file: Path
) -> None:
    failed = schedule(tm, "write_note", "bad", user_id=7, vars={"fail": True})
    cluster.wait_status(failed, TaskStatus.FAILED)
    (run,) = cluster.runs(failed)
    assert "TaskBoom: write_note bad failed after writing" in (run.traceback or "")
    assert events(events_file) == [
        "impersonate 7",
        "task write_note bad",
        "end impersonation 7",
        "rollback",
    ]
    # the same child, on the same app connection, carries on cleanly
    after = schedule(tm, "write_note", "after", user_id=8)
    cluster.wait_status(after, TaskStatus.COMPLETED)
    assert notes(cluster) == [("after", "8")]


def test_failing_commit_fails_the_run_and_rolls_it_back(
    cluster: Cluster, tm: TaskManager, worker: WorkerProcess, events_file: Path
) -> None:
    task_id = schedule(tm, "poison_commit", "poisoned", user_id=7)
    cluster.wait_status(task_id, TaskStatus.FAILED)
    (run,) = cluster.runs(task_id)
    assert run.status == RunStatus.FAILED.value
    assert "CommitRefused: the database refused the commit" in (run.traceback or "")
    assert "the application's commit() failed" in (run.traceback or "")
    assert notes(cluster) == []
    assert events(events_file)[-3:] == ["commit", "end impersonation 7", "rollback"]


def test_recurring_task_runs_without_a_user(
    cluster: Cluster, tm: TaskManager, worker: WorkerProcess
) -> None:
    task_id = schedule(tm, "write_note", "tick", repeats=2, period=1)
    task = cluster.wait_status(task_id, TaskStatus.COMPLETED, timeout=15)
    assert task.times_run == 2
    assert notes(cluster) == [("tick", None), ("tick", None)]


def test_run_async_with_a_live_worker_queues_the_task_for_the_user(
    cluster: Cluster, tm: TaskManager, worker: WorkerProcess, events_file: Path
) -> None:
    task_id = tm.run_async("write_note", args=["async"], user_id=8)
    assert isinstance(task_id, int)
    cluster.wait_status(task_id, TaskStatus.COMPLETED)
    assert notes(cluster) == [("async", "8")]
    assert "task write_note async" in events(events_file)  # it ran in the worker


def test_run_async_without_a_worker_runs_in_the_caller(cluster: Cluster, tm: TaskManager) -> None:
    assert tm.run_async("whoami", user_id=5) == 5
    assert cluster.sched.task_status(cluster.sched.tables.scheduler_task.c.id > 0) is None


# not on SQLite: a task holding a write transaction there locks the whole file, the
# worker's own writes included, until the task ends
@backends("postgres", "mysql")
def test_timed_out_run_loses_its_uncommitted_work(
    cluster: Cluster, tm: TaskManager, worker: WorkerProcess, events_file: Path
) -> None:
    task_id = schedule(tm, "write_note", "slow", user_id=7, vars={"then_sleep": 30}, timeout=2)
    cluster.wait_status(task_id, TaskStatus.TIMEOUT, timeout=15)
    # the child was killed: no rollback hook ran, but its connection died with it
    assert "rollback" not in events(events_file)
    assert notes(cluster) == []
    after = schedule(tm, "write_note", "after")
    cluster.wait_status(after, TaskStatus.COMPLETED)
    assert notes(cluster) == [("after", None)]


def test_worker_of_a_bare_scheduler_refuses_a_task_queued_for_a_user(
    cluster: Cluster, tm: TaskManager
) -> None:
    cluster.app = "eden_app:sched"
    cluster.start_worker()
    task_id = schedule(tm, "whoami", user_id=7)
    cluster.wait_status(task_id, TaskStatus.FAILED)
    (run,) = cluster.runs(task_id)
    assert "--app MODULE:TASKMANAGER" in (run.traceback or "")


def test_run_task_command_runs_as_the_user_and_commits(
    cluster: Cluster, tm: TaskManager, events_file: Path
) -> None:
    task_id = schedule(tm, "write_note", "by hand", user_id=9)
    done = cluster.run_cli("run-task", str(task_id), "--app", APP)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '"by hand"'
    assert notes(cluster) == [("by hand", "9")]
    assert events(events_file) == [
        "impersonate 9",
        "task write_note by hand",
        "commit",
        "end impersonation 9",
    ]


# ------------------------------------------------------- store rules, every backend


@EVERY_BACKEND
def test_duplicate_check_compares_decoded_json(tm: TaskManager) -> None:
    schedule(tm, "write_note", "x", vars={"fail": False, "then_sleep": 0})
    again = tm.schedule_task("write_note", args=["x"], vars={"then_sleep": 0, "fail": False})
    assert again is False
    other = tm.schedule_task("write_note", args=["x"], vars={"then_sleep": 0})
    assert isinstance(other, int)


@EVERY_BACKEND
def test_ignore_duplicate_queues_a_second_copy(cluster: Cluster, tm: TaskManager) -> None:
    first = schedule(tm, "whoami")
    second = schedule(tm, "whoami", ignore_duplicate=True)
    assert second != first


@EVERY_BACKEND
def test_reset_requeues_a_failed_task_with_counters_cleared(
    cluster: Cluster, tm: TaskManager
) -> None:
    task_id = schedule(tm, "whoami", repeats=3)
    table = cluster.sched.tables.scheduler_task
    with cluster.sched.store.transaction() as conn:
        conn.execute(
            sa.update(table)
            .where(table.c.id == task_id)
            .values(status="FAILED", times_run=2, times_failed=1)
        )
    assert tm.reset(task_id) is True
    task = stored(cluster, task_id)
    assert (task.status, task.times_run, task.times_failed) == ("QUEUED", 0, 0)
    assert tm.reset(task_id) is False


@EVERY_BACKEND
def test_run_async_queues_only_when_a_worker_beat_within_a_minute(
    cluster: Cluster, tm: TaskManager
) -> None:
    worker_table = cluster.sched.tables.scheduler_worker
    beat = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=30)
    with cluster.sched.store.transaction() as conn:
        conn.execute(
            sa.insert(worker_table).values(
                worker_name="elsewhere#1",
                first_heartbeat=beat,
                last_heartbeat=beat,
                status="ACTIVE",
                is_ticker=False,
                group_names=["main"],
                worker_stats="{}",
            )
        )
    task_id = tm.run_async("whoami", vars={}, user_id=4)
    assert isinstance(task_id, int)
    assert json.loads(stored(cluster, task_id).vars or "") == {USER_ID_KEY: 4}


# ------------------------------------------------------- the duplicate check racing

RACER = """
import json, sys
from eden_app import tm
tm.worker_alive()  # connect before the start signal
print("ready", flush=True)
sys.stdin.readline()
orders = [{"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}]
results = [
    tm.schedule_task("whoami", vars=orders[i % 2], period=300, repeats=0) for i in range(3)
]
print(json.dumps(results), flush=True)
"""


@EVERY_BACKEND
def test_duplicate_check_holds_between_racing_processes(cluster: Cluster) -> None:
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cluster.env(),
            cwd=cluster.workdir,
        )
        for _ in range(4)
    ]
    try:
        for racer in racers:
            assert racer.stdout is not None
            line = racer.stdout.readline()
            assert line == "ready\n", racer.communicate(timeout=30)[1]
        for racer in racers:  # as close together as we can make them
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.flush()
        outputs = [racer.communicate(timeout=60) for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
                racer.wait()
    results = []
    for racer, (stdout, stderr) in zip(racers, outputs, strict=True):
        assert racer.returncode == 0, stderr
        results.extend(json.loads(stdout))
    ids = [r for r in results if r is not False]
    assert len(ids) == 1, results
    assert results.count(False) == len(results) - 1
    table = cluster.sched.tables.scheduler_task
    with cluster.sched.store.reading() as conn:
        rows = conn.execute(sa.select(table.c.id).where(table.c.function_name == "whoami")).all()
    assert [row.id for row in rows] == ids
