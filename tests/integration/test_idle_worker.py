"""An idle worker sleeps: tasks that are due but held back must not wake it in a loop."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest
from harness import Cluster, cluster_for_test
from lifecycle_tasks import TASKS

from taskmill import JobGraph, TaskStatus

APP = "lifecycle_app:sched"


@pytest.fixture
def cluster(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[Cluster]:
    with cluster_for_test(request, sqlite_url, app=APP, tasks=TASKS, heartbeat=1.0) as c:
        yield c


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_worker_does_not_spin_on_a_parent_held_back_by_its_dependency(cluster: Cluster) -> None:
    later = cluster.sched.queue_task("add", [1, 2], enabled=False).id
    parent = cluster.sched.queue_task("add", [3, 4]).id
    assert later is not None and parent is not None
    JobGraph(cluster.sched, "held").add_deps(parent, later)
    (worker,) = cluster.start_workers(1)
    time.sleep(1.0)  # let start-up costs pass before measuring
    before = cpu_seconds(worker.pid)
    time.sleep(3.0)
    used = cpu_seconds(worker.pid) - before
    # a busy loop burns ~3 s of CPU here; heartbeats and the ticker take a few ms
    assert used < 0.5, f"idle worker used {used:.2f} s of CPU in 3 s"
    assert cluster.task(parent).status == TaskStatus.QUEUED.value


# ------------------------------------------------------------------ MariaDB


@pytest.fixture
def mysql_cluster(request: pytest.FixtureRequest, mysql_url: str) -> Iterator[Cluster]:
    with cluster_for_test(request, mysql_url, app=APP, tasks=TASKS, heartbeat=1.0) as c:
        yield c


def pickup_seconds(cluster: Cluster, queue: Callable[[], int]) -> float:
    began = time.monotonic()
    task_id = queue()
    cluster.wait_status(task_id, TaskStatus.COMPLETED, timeout=10)
    return time.monotonic() - began


def test_idle_mariadb_worker_polls_slowly_and_is_rung_by_same_host_queue_task(
    mysql_cluster: Cluster,
) -> None:
    (worker,) = mysql_cluster.start_workers(1)
    time.sleep(1.5)  # start-up passes; the worker's poll interval grows to its cap
    before = cpu_seconds(worker.pid)
    time.sleep(3.0)
    used = cpu_seconds(worker.pid) - before
    # polling every 10 ms would cost ~0.3-0.6 s of CPU here; at 250 ms a few ms
    assert used < 0.25, f"idle worker used {used:.2f} s of CPU in 3 s"

    def queued() -> int:
        task_id = mysql_cluster.sched.queue_task("add", [1, 2]).id
        assert task_id is not None
        return task_id

    # the doorbell wakes it at once, not at its next poll (up to 250 ms away)
    times = sorted(pickup_seconds(mysql_cluster, queued) for _ in range(5))
    print(f"\n[mariadb] same-host pickups (incl. polling for COMPLETED): {times}")
    assert times[2] < 0.2


def test_idle_mariadb_worker_finds_a_task_nobody_rang_for(mysql_cluster: Cluster) -> None:
    mysql_cluster.start_workers(1)
    time.sleep(1.5)
    # as a process on another host would: committed, but no doorbell rung here
    took = pickup_seconds(mysql_cluster, lambda: mysql_cluster.insert_raw_task(args="[1, 2]"))
    assert took < 2.0  # the poll interval is at most 250 ms
