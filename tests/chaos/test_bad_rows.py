"""Rows written straight into scheduler_task by raw SQL (a web2py app, a hand-made
fix, a bug elsewhere): malformed JSON, wrong shapes, unknown functions and statuses,
NULL columns. Each malformed task ends FAILED with a message naming the problem (or,
with a status no worker claims, is left alone), and the worker keeps serving.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from chaos_support import APP, full_only, on_backends
from chaos_tasks import TASKS
from harness import Cluster, cluster_for_test

from taskmill import RunStatus, TaskStatus

pytestmark = on_backends("sqlite")
FINAL = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.TIMEOUT, TaskStatus.EXPIRED)


@pytest.fixture
def cluster(request: pytest.FixtureRequest, db_url: str) -> Iterator[Cluster]:
    with cluster_for_test(request, db_url, app=APP, tasks=TASKS) as c:
        yield c


#: (row values, the message its FAILED run must contain)
FAILING_ROWS: list[tuple[dict[str, Any], str]] = [
    ({"args": "[1, 2"}, "args of task {id} is not valid JSON"),
    ({"args": '{"a": 1}'}, "args of task {id} must be a JSON list"),
    ({"vars": "[1, 2]"}, "vars of task {id} must be a JSON object"),
    ({"vars": "{'a': 1}"}, "vars of task {id} is not valid JSON"),
    ({"args": "[NaN, 1]"}, "TypeError"),  # Python's json reads NaN; the task then fails
    ({"args": None, "vars": None}, "missing 2 required positional arguments"),
    ({"function_name": "os.system", "args": '["true"]'}, "'os.system' is not registered"),
    ({"function_name": "__import__", "args": '["os"]'}, "'__import__' is not registered"),
    ({"function_name": None}, "None' is not registered"),
    ({"args": "[" * 100_000 + "]" * 100_000}, "args of task {id}"),
]


def test_malformed_rows_fail_with_a_clear_message_and_the_worker_serves_on(
    cluster: Cluster,
) -> None:
    worker = cluster.start_worker()
    failing = {cluster.insert_raw_task(**values): text for values, text in FAILING_ROWS}
    for task_id, text in failing.items():
        task = cluster.wait_status(task_id, *FINAL, timeout=30)
        assert task.status == TaskStatus.FAILED.value, (task_id, task.status)
        [run] = cluster.runs(task_id)
        assert run.status == RunStatus.FAILED.value
        assert text.format(id=task_id) in (run.traceback or ""), run.traceback
    sane = cluster.sched.queue_task("add", [2, 3])
    assert sane.id is not None
    cluster.wait_status(sane.id, TaskStatus.COMPLETED, timeout=20)
    assert worker.alive()


@full_only
def test_rows_with_null_or_odd_columns_end_in_a_final_state(cluster: Cluster) -> None:
    worker = cluster.start_worker()
    now = datetime.now(UTC).replace(tzinfo=None)
    odd = [
        {"args": "[1, 2]", "timeout": None},
        {"args": "[1, 2]", "repeats": None, "period": None},
        {"args": "[1, 2]", "times_run": None, "times_failed": None},
        {"args": "[1, 2]", "retry_failed": None, "retry_backoff": None},
        {"args": "[1, 2]", "timeout": -5},
        {"args": "[1, 2]", "repeats": -3},
        {"args": "[1, 2]", "sync_output": None, "priority": None},
        {"args": "[1, 2]", "start_time": None, "stop_time": None},
        {"args": "[1, 2]", "cronline": "not a cron line", "repeats": 2},
        {"args": "[1, 2]", "uuid": None, "task_name": None, "application_name": None},
        {"args": "[1, 2]", "last_run_time": now + timedelta(days=400)},
        {"function_name": "nan"},
        {"function_name": "an_object"},
        {"function_name": "deep", "args": "[100000]"},
    ]
    ids = [cluster.insert_raw_task(**values) for values in odd]
    for task_id in ids:
        task = cluster.wait_status(task_id, *FINAL, TaskStatus.QUEUED, timeout=30)
        if task.status == TaskStatus.QUEUED.value:
            # a repeating task is QUEUED again after its run: it must have run
            assert (task.times_run or 0) >= 1 or (task.times_failed or 0) >= 1, task
    results = {task_id: cluster.runs(task_id)[-1].traceback or "" for task_id in ids[-3:]}
    for text in results.values():
        assert "is not JSON-serialisable" in text, results
    sane = cluster.sched.queue_task("add", [2, 3])
    assert sane.id is not None
    cluster.wait_status(sane.id, TaskStatus.COMPLETED, timeout=20)
    assert worker.alive()


def test_unknown_statuses_and_orphaned_claims_do_not_stop_the_worker(cluster: Cluster) -> None:
    worker = cluster.start_worker()
    ignored = [
        cluster.insert_raw_task(args="[1, 2]", status="BOGUS"),
        cluster.insert_raw_task(args="[1, 2]", status=None),
        cluster.insert_raw_task(args="[1, 2]", status="queued"),  # web2py's are upper case
        cluster.insert_raw_task(args="[1, 2]", enabled=None),
        cluster.insert_raw_task(args="[1, 2]", group_name=None),
        cluster.insert_raw_task(args="[1, 2]", next_run_time=None),
    ]
    # claimed by workers that never existed: the ticker gives them back, they run
    orphans = [
        cluster.insert_raw_task(
            args="[1, 2]", status=TaskStatus.ASSIGNED.value, assigned_worker_name="ghost"
        ),
        cluster.insert_raw_task(
            args="[1, 2]", status=TaskStatus.RUNNING.value, assigned_worker_name=None
        ),
    ]
    for task_id in orphans:
        cluster.wait_status(task_id, TaskStatus.COMPLETED, timeout=30)
    sane = cluster.sched.queue_task("add", [2, 3])
    assert sane.id is not None
    cluster.wait_status(sane.id, TaskStatus.COMPLETED, timeout=20)
    table = cluster.sched.tables.scheduler_task
    with cluster.sched.store.engine.connect() as conn:
        rows = conn.execute(sa.select(table.c.id, table.c.status).where(table.c.id.in_(ignored)))
        statuses = {task_id: status for task_id, status in rows}
    assert statuses == dict(zip(ignored, ["BOGUS", None, "queued"] + ["QUEUED"] * 3, strict=True))
    assert worker.alive()
