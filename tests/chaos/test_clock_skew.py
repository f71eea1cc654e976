"""A worker whose clock is off by half a minute neither steals tasks that are not due
yet nor lets due ones starve: on PostgreSQL and MariaDB the database clock decides what
is due (workers measure its offset at each heartbeat). SQLite serves one machine and
one clock, so it is not concerned.

The skew is set in the worker process only (see chaos_app, TASKMILL_TEST_CLOCK_SKEW);
this test process, like the database server, keeps the machine's real clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from chaos_support import APP, FULL
from chaos_tasks import TASKS
from harness import Cluster, cluster_for_test

from taskmill import TaskStatus

SKEW = 30.0
DUE_IN = 4.0
#: how late after its due time a task may start: polling, wake-ups, a loaded machine
LATE_OK = 3.0


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        *([pytest.param("mysql", marks=pytest.mark.mysql)] if FULL else []),
    ]
)
def server_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def cluster(request: pytest.FixtureRequest, server_url: str) -> Iterator[Cluster]:
    with cluster_for_test(request, server_url, app=APP, tasks=TASKS) as c:
        yield c


@pytest.mark.parametrize(
    "skew", [SKEW, -SKEW] if FULL else [SKEW], ids=["ahead", "behind"] if FULL else ["ahead"]
)
def test_skewed_worker_runs_a_task_when_the_database_says_it_is_due(
    cluster: Cluster, skew: float
) -> None:
    worker = cluster.start_worker(env={"TASKMILL_TEST_CLOCK_SKEW": str(skew)})
    due = cluster.sched.store.now() + timedelta(seconds=DUE_IN)
    queued = cluster.sched.queue_task("add", [1, 2], start_time=due)
    assert queued.id is not None
    task = cluster.wait_status(queued.id, TaskStatus.COMPLETED, timeout=DUE_IN + 20)
    assert task.last_run_time is not None
    started = task.last_run_time
    print(f"\nworker {skew:+.0f} s off: task due {due}, started {started}")
    # ahead by 30 s it would have taken the task at once; behind, 30 s late
    assert started >= due - timedelta(seconds=0.5), "a worker ahead took it early"
    assert started <= due + timedelta(seconds=LATE_OK), "a worker behind let it wait"
    assert worker.alive()
