"""Leader election across worker processes: exactly one ticker, and a quick successor.

Workers are separate `taskmill worker` processes with different names, sharing one
database, with 1 s heartbeats. The ticker lease lasts 1.5 heartbeats and is renewed
every half heartbeat; a worker is dead after 3 heartbeats (see taskmill/ticker.py).
Runs on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from harness import Cluster, WorkerProcess, cluster_for_test, process_running
from lifecycle_tasks import TASKS, audit_counts, create_audit_table

from taskmill import RunStatus, TaskStatus

APP = "lifecycle_app:sched"
HEARTBEAT = 1.0
#: the promise: a dead or stalled ticker is replaced within two heartbeats
TAKEOVER = 2 * HEARTBEAT


@pytest.fixture
def cluster(request: pytest.FixtureRequest, db_url: str) -> Iterator[Cluster]:
    with cluster_for_test(request, db_url, app=APP, tasks=TASKS, heartbeat=HEARTBEAT) as c:
        create_audit_table(c.sched.store.engine)
        yield c


def tickers(cluster: Cluster) -> set[str]:
    return {name for name, w in cluster.sched.get_workers().items() if w.is_ticker}


def the_ticker(cluster: Cluster, workers: dict[str, WorkerProcess]) -> str:
    """The one ticker, once there is one."""

    def single() -> str | None:
        found = tickers(cluster)
        return next(iter(found)) if len(found) == 1 else None

    name = cluster.wait_for(single, timeout=10, what="one ticker")
    assert name in workers
    return name


def assert_sole_ticker_for(cluster: Cluster, name: str, seconds: float) -> None:
    """Sample the worker table: `name` and nobody else holds the role throughout."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert tickers(cluster) == {name}
        time.sleep(0.05)


def wait_takeover(cluster: Cluster, old: str) -> tuple[str, float]:
    """The successor of `old` and how long after the call it took over."""
    since = time.monotonic()

    def successor() -> str | None:
        found = tickers(cluster) - {old}
        return next(iter(found)) if found else None

    name = cluster.wait_for(successor, timeout=10, interval=0.01, what=f"a successor of {old}")
    return name, time.monotonic() - since


def stop_between_beats(cluster: Cluster, worker: WorkerProcess) -> None:
    """SIGSTOP `worker` 0.2 s after a heartbeat of its committed (its next beat or
    lease renewal comes 0.5 s after one)."""
    W = cluster.sched.tables.scheduler_worker
    query = sa.select(W.c.last_heartbeat).where(W.c.worker_name == worker.name)

    def beat() -> Any:
        with cluster.sched.store.engine.connect() as conn:
            return conn.execute(query).scalar()

    before = beat()
    cluster.wait_for(lambda: beat() != before or None, timeout=5, interval=0.005, what="a beat")
    time.sleep(0.2)
    os.kill(worker.pid, signal.SIGSTOP)


def role_changes(worker: WorkerProcess) -> list[str]:
    """'is now' / 'is no longer', in order, from the worker's log."""
    return re.findall(rf"worker {worker.name} (is now|is no longer) the ticker", worker.log())


def test_sigkilled_ticker_is_replaced_within_two_heartbeats_and_its_task_requeued(
    cluster: Cluster, db_backend: str
) -> None:
    workers = {w.name: w for w in cluster.start_workers(3)}
    first = the_ticker(cluster, workers)
    # one 2 s task for each worker (an idle worker claims one at a time)
    task_ids = [cluster.sched.queue_task("append_audit", ["long", 2.0]).id for _ in range(3)]
    assert_sole_ticker_for(cluster, first, HEARTBEAT)

    def victims_task() -> int | None:
        for task_id in task_ids:
            assert task_id is not None
            task = cluster.task(task_id)
            if task.status == TaskStatus.RUNNING.value and task.assigned_worker_name == first:
                return task_id
        return None

    orphan = cluster.wait_for(victims_task, timeout=10, what="the ticker to run a task")
    victim = workers.pop(first)

    victim.kill()
    successor, took = wait_takeover(cluster, first)

    print(f"\n[{db_backend}] SIGKILLed ticker replaced after {took:.3f} s")
    assert took < TAKEOVER
    assert successor in workers
    task = cluster.wait_status(orphan, TaskStatus.COMPLETED, timeout=15)
    assert task.assigned_worker_name in workers
    lost, done = cluster.runs(orphan)
    assert (lost.worker_name, lost.status) == (first, RunStatus.FAILED.value)
    assert lost.traceback == "worker died during the run; task requeued"
    assert (done.worker_name, done.status) == (task.assigned_worker_name, RunStatus.COMPLETED.value)
    for task_id in task_ids:
        assert task_id is not None
        cluster.wait_status(task_id, TaskStatus.COMPLETED, timeout=10)
    assert audit_counts(cluster.sched.store.engine) == dict.fromkeys(task_ids, 1)
    assert [pid for pid in victim.orphans if process_running(pid)] == []
    # exactly one round of housekeeping found the dead worker: no round ran twice
    buried = [
        line for w in workers.values() for line in w.log().splitlines() if "stopped beating" in line
    ]
    assert len(buried) == 1, buried
    assert f"workers {first} stopped beating; 1 task(s) requeued" in buried[0]
    # the role moved once, to one worker, and stayed there
    assert role_changes(workers[successor]) == ["is now"]
    assert [role_changes(w) for n, w in workers.items() if n != successor] == [[]]
    assert tickers(cluster) == {successor}
    assert first not in cluster.sched.get_workers()


def test_stalled_ticker_hands_over_and_steps_down_when_it_wakes(
    cluster: Cluster, db_backend: str
) -> None:
    workers = {w.name: w for w in cluster.start_workers(2)}
    first = the_ticker(cluster, workers)
    (other,) = set(workers) - {first}
    stalled = workers[first]

    # two heartbeats stopped: past its lease, short of being taken for dead. Stopped
    # between two of its beats: a ticker paused inside its heartbeat transaction holds
    # the worker rows' locks, and the others' heartbeats wait for it (operations.md)
    stop_between_beats(cluster, stalled)
    try:
        successor, took = wait_takeover(cluster, first)
        time.sleep(max(0.0, 2 * HEARTBEAT - took))
    finally:
        os.kill(stalled.pid, signal.SIGCONT)

    print(f"\n[{db_backend}] stalled ticker replaced after {took:.3f} s")
    assert successor == other
    assert took < TAKEOVER
    # awake again, the old ticker finds the lease taken and gives the role up
    cluster.wait_for(
        lambda: role_changes(stalled) == ["is now", "is no longer"],
        timeout=5,
        what="the stalled ticker to step down",
    )
    assert_sole_ticker_for(cluster, other, HEARTBEAT)
    assert role_changes(workers[other]) == ["is now"]
    assert set(cluster.sched.get_workers()) == set(workers)
    assert all(w.alive() for w in workers.values())
