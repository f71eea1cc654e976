"""An idle worker sleeps: tasks that are due but held back must not wake it in a loop."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

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
