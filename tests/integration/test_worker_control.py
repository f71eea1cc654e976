"""Worker control and weighted groups with real worker processes, on every backend.

disable / resume / terminate / kill address workers by group or by name; each test
runs a worker that must obey next to one that must not, and checks both. Weighted
groups (`-g high:3,low:1`) are checked by the order in which one worker ran a
backlog of two groups.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from harness import Cluster, WorkerProcess, cluster_for_test
from lifecycle_tasks import TASKS

from taskmill import RunStatus, TaskStatus

APP = "lifecycle_app:sched"
HEARTBEAT = 1.0


@pytest.fixture
def cluster(request: pytest.FixtureRequest, db_url: str) -> Iterator[Cluster]:
    with cluster_for_test(request, db_url, app=APP, tasks=TASKS, heartbeat=HEARTBEAT) as c:
        yield c


def queue(cluster: Cluster, function: str, *pargs: Any, **options: Any) -> int:
    queued = cluster.sched.queue_task(function, list(pargs), **options)
    assert queued.errors == {}
    assert queued.id is not None
    return queued.id


def serving(cluster: Cluster, group: str, name: str) -> WorkerProcess:
    return cluster.start_worker(name, args=["-g", group], timeout=60)


def worker_row_status(cluster: Cluster, name: str) -> str | None:
    found = cluster.sched.get_workers().get(name)
    return None if found is None else found.status


def stats_status(cluster: Cluster, name: str) -> str | None:
    """What the worker itself last reported (its obeyed status), not what was asked."""
    found = cluster.sched.get_workers().get(name)
    return None if found is None or not found.worker_stats else found.worker_stats["status"]


def beats(cluster: Cluster, name: str) -> Any:
    found = cluster.sched.get_workers().get(name)
    return None if found is None else found.last_heartbeat


def assert_runs_tasks_of(cluster: Cluster, worker: str, group: str) -> None:
    task_id = queue(cluster, "add", 1, 2, group_name=group)
    cluster.wait_status(task_id, TaskStatus.COMPLETED)
    assert cluster.runs(task_id)[0].worker_name == worker


def wait_for_two_beats(cluster: Cluster, name: str) -> None:
    """Two heartbeats of `name` later it has looked for work at least once more."""
    for _ in range(2):
        before = beats(cluster, name)
        cluster.wait_for(
            lambda seen=before: beats(cluster, name) != seen, timeout=10, what="a beat"
        )


# ------------------------------------------------------------ disable / resume


@pytest.mark.parametrize("by", ["group", "name"])
def test_disabled_worker_takes_no_task_until_resumed(cluster: Cluster, by: str) -> None:
    serving(cluster, "a", "wa")
    serving(cluster, "b", "wb")
    target = {"group_names": "a"} if by == "group" else {"worker_name": "wa"}

    assert cluster.sched.disable(**target) == 1

    cluster.wait_for(lambda: stats_status(cluster, "wa") == "DISABLED", what="wa disabled")
    waiting = queue(cluster, "add", 2, 2, group_name="a")
    assert_runs_tasks_of(cluster, "wb", "b")  # the other worker is untouched
    wait_for_two_beats(cluster, "wa")
    assert cluster.task(waiting).status == TaskStatus.QUEUED.value
    assert worker_row_status(cluster, "wa") == "DISABLED"

    assert cluster.sched.resume(**target) == 1

    cluster.wait_status(waiting, TaskStatus.COMPLETED)
    assert cluster.runs(waiting)[0].worker_name == "wa"
    # the stats written with the next heartbeat show the resumed status
    cluster.wait_for(lambda: stats_status(cluster, "wa") == "ACTIVE", what="wa active")


# ------------------------------------------------------------------ terminate


@pytest.mark.parametrize("by", ["group", "name"])
def test_terminated_worker_finishes_its_task_and_exits(cluster: Cluster, by: str) -> None:
    doomed = serving(cluster, "a", "wa")
    survivor = serving(cluster, "b", "wb")
    running = queue(cluster, "sleep_for", 2, group_name="a")
    cluster.wait_running(running)

    target = {"group_names": "a"} if by == "group" else {"worker_name": "wa"}
    assert cluster.sched.terminate(**target) == 1

    assert doomed.wait(timeout=20) == 0
    task = cluster.wait_status(running, TaskStatus.COMPLETED)
    assert task.times_run == 1
    (run,) = cluster.runs(running)
    assert run.status == RunStatus.COMPLETED.value
    assert "wa" not in cluster.sched.get_workers()  # it left cleanly
    assert survivor.alive()
    assert_runs_tasks_of(cluster, "wb", "b")


def test_terminate_by_group_reaches_every_worker_of_the_group_only(cluster: Cluster) -> None:
    first = serving(cluster, "a", "wa1")
    second = cluster.start_worker("wa2", args=["-g", "a", "-g", "c"])
    survivor = serving(cluster, "b", "wb")

    assert cluster.sched.terminate(group_names=["a"]) == 2

    assert first.wait(timeout=15) == 0
    assert second.wait(timeout=15) == 0
    assert survivor.alive()
    assert set(cluster.sched.get_workers()) == {"wb"}


# ----------------------------------------------------------------------- kill


@pytest.mark.parametrize("by", ["group", "name"])
def test_killed_worker_kills_its_task_requeues_it_and_exits(cluster: Cluster, by: str) -> None:
    doomed = serving(cluster, "a", "wa")
    survivor = serving(cluster, "b", "wb")
    running = queue(cluster, "sleep_for", 60, group_name="a", timeout=120)
    cluster.wait_running(running)

    target = {"group_names": "a"} if by == "group" else {"worker_name": "wa"}
    assert cluster.sched.kill(**target) == 1

    assert doomed.wait(timeout=15) == 0  # long before the task's 60 s
    task = cluster.wait_status(running, TaskStatus.QUEUED)
    assert (task.times_run, task.assigned_worker_name) == (0, "")
    (run,) = cluster.runs(running)
    assert run.status == RunStatus.STOPPED.value
    assert survivor.alive()
    assert_runs_tasks_of(cluster, "wb", "b")


def test_killed_task_is_run_by_the_next_worker_of_its_group(cluster: Cluster) -> None:
    doomed = serving(cluster, "a", "wa")
    running = queue(cluster, "sleep_for", 60, group_name="a", timeout=120)
    cluster.wait_running(running)
    assert cluster.sched.kill(worker_name="wa") == 1
    assert doomed.wait(timeout=15) == 0
    cluster.wait_status(running, TaskStatus.QUEUED, timeout=15)
    cluster.sched.stop_task(running)
    follow_up = queue(cluster, "add", 3, 4, group_name="a")

    serving(cluster, "a", "wa-next")

    cluster.wait_status(follow_up, TaskStatus.COMPLETED)
    assert cluster.runs(follow_up)[0].worker_name == "wa-next"


# ------------------------------------------------------------------ get_workers


def test_get_workers_shows_live_stats(cluster: Cluster) -> None:
    serving(cluster, "a", "wa")
    for i in range(3):
        task_id = queue(cluster, "add", i, i, group_name="a")
    cluster.wait_status(task_id, TaskStatus.COMPLETED)

    def counted() -> dict[str, Any] | None:
        stats = cluster.sched.get_workers()["wa"].worker_stats or {}
        return stats if stats.get("total") == 3 else None

    stats = cluster.wait_for(counted, timeout=10, what="the stats to count 3 tasks")
    info = cluster.sched.get_workers()["wa"]
    assert info.group_names == ["a"]
    assert info.status == "ACTIVE"
    assert (stats["errors"], stats["status"], stats["current_task"]) == (0, "ACTIVE", None)
    assert isinstance(stats["pid"], int)


# ------------------------------------------------------------------ weighted groups

BACKLOG = 40  # tasks in each group
SLOW = 0.025  # seconds a task takes: slow enough that the worker claims one at a time


def run_order(cluster: Cluster) -> list[str]:
    """Groups of the tasks in the order their runs started."""
    task, run = cluster.sched.tables.scheduler_task, cluster.sched.tables.scheduler_run
    query = (
        sa.select(task.c.group_name)
        .select_from(run.join(task, task.c.id == run.c.task_id))
        .order_by(run.c.start_time, run.c.id)
    )
    with cluster.sched.store.engine.connect() as conn:
        return [str(group) for group in conn.execute(query).scalars()]


def queue_backlog(cluster: Cluster) -> list[int]:
    """The high group's tasks are all due before the low group's."""
    with cluster.sched.store.engine.begin() as conn:
        ids = [
            cluster.sched.queue_task("sleep_for", [SLOW], group_name=group, db=conn).id
            for group in ("high", "low")
            for _ in range(BACKLOG)
        ]
    return [i for i in ids if i is not None]


def test_weighted_groups_share_the_worker_by_weight(cluster: Cluster) -> None:
    ids = queue_backlog(cluster)

    cluster.start_worker("weighted", args=["-g", "high:3,low:1"])

    cluster.wait_for(
        lambda: len(run_order(cluster)) == len(ids), timeout=60, what="the backlog to drain"
    )
    first = run_order(cluster)[:BACKLOG]
    print(f"\nfirst {BACKLOG} runs: high {first.count('high')}, low {first.count('low')}")
    # 3:1 would be 30/10; one claim of a few tasks more or less either way
    assert 26 <= first.count("high") <= 34
    assert "low" in first[:5]  # low is served from the start, not after high drained


def test_plain_groups_form_one_queue_earliest_first(cluster: Cluster) -> None:
    ids = queue_backlog(cluster)

    cluster.start_worker("plain", args=["-g", "high", "-g", "low"])

    cluster.wait_for(
        lambda: len(run_order(cluster)) == len(ids), timeout=60, what="the backlog to drain"
    )
    assert run_order(cluster) == ["high"] * BACKLOG + ["low"] * BACKLOG
