"""Crash tests: workers and task children SIGKILLed at random while a queue drains.

Four `taskmill worker` processes drain a queue of audited tasks while a killer, every
second or so, SIGKILLs either a random worker (which is then replaced by a new one,
as a supervisor or systemd would) or the task child of a random worker. Afterwards:

- every task is COMPLETED (none RUNNING, ASSIGNED or QUEUED), with one COMPLETED run;
- the audit table (written by each run before it works, with its pid) shows that every
  task started at least once, and that every start but one was in a process the killer
  killed: a task ran more than once only when its run was killed.

Short form in `make test`; `make chaos` (TASKMILL_CHAOS=full) runs 10,000 tasks and
100 kills per backend. Runs on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from chaos_support import APP, FULL, status_counts
from chaos_tasks import TASKS, audit_rows
from harness import Cluster, WorkerProcess, cluster_for_test, descendants, wait_for
from lifecycle_tasks import AUDIT_DB_ENV, create_audit_table

from taskmill import TaskStatus


@dataclass(frozen=True)
class Size:
    tasks: int
    kills: int
    kill_every: float  # seconds between kills, on average
    task_seconds: float  # how long each task works
    heartbeat: float
    drain: float  # seconds allowed for the rest of the queue after the last kill
    timeout: float  # the whole test


SIZE = (
    Size(
        10_000,
        kills=100,
        kill_every=1.5,
        task_seconds=0.005,
        heartbeat=2.0,
        drain=1800,
        timeout=3000,
    )
    if FULL
    else Size(300, kills=4, kill_every=0.5, task_seconds=0.02, heartbeat=1.5, drain=60, timeout=110)
)
WORKERS = 4
#: a task fails when its child is killed; it is retried (web2py's retry_failed)
RETRIES = 50


@dataclass
class Killer:
    """SIGKILLs workers and task children; remembers every pid it killed."""

    cluster: Cluster
    live: list[WorkerProcess]
    rng: random.Random
    killed_pids: set[int] = field(default_factory=set)
    kills: collections.Counter[str] = field(default_factory=collections.Counter)

    def _victim(self) -> WorkerProcess:
        alive = [w for w in self.live if w.alive()]
        return self.rng.choice(alive or self.live)

    def kill_worker(self) -> None:
        victim = self._victim()
        # its task child dies with it (child.die_with_worker): its runs count as killed
        self.killed_pids.update({victim.pid, *descendants(victim.pid)})
        victim.kill()
        self.live.remove(victim)
        self.live.append(self.cluster.start_worker(wait=False))
        self.kills["worker"] += 1

    def kill_child(self) -> bool:
        victim = self._victim()
        # its task children: forked by its fork server, or its own children
        children = [p for p in descendants(victim.pid) if _name(p) == "taskmill-child"]
        if not children:
            return False  # still starting, or between two children
        self.killed_pids.update(children)
        try:
            for pid in children:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False  # it ended on its own meanwhile (a timeout, a recycle)
        self.kills["task child"] += 1
        return True


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@pytest.fixture
def audit_url(db_backend: str, new_db_url: Callable[[str], str]) -> Iterator[str]:
    url = new_db_url(db_backend)
    engine = sa.create_engine(url)
    create_audit_table(engine)
    engine.dispose()
    yield url


def queue_audited(cluster: Cluster, count: int, seconds: float) -> list[int]:
    ids: list[int] = []
    for start in range(0, count, 500):
        with cluster.sched.store.engine.begin() as conn:
            for _ in range(start, min(count, start + 500)):
                # a retry is due at the failed run's start + period (web2py's rule)
                queued = cluster.sched.queue_task(
                    "audited", [seconds], retry_failed=RETRIES, period=1, db=conn
                )
                assert queued.errors == {} and queued.id is not None
                ids.append(queued.id)
    return ids


@pytest.mark.timeout(SIZE.timeout)
def test_random_sigkills_of_workers_and_children_lose_no_task_and_repeat_only_killed_runs(
    request: pytest.FixtureRequest, db_url: str, db_backend: str, audit_url: str
) -> None:
    env = {AUDIT_DB_ENV: audit_url}
    audit = sa.create_engine(audit_url, pool_pre_ping=True)
    request.addfinalizer(audit.dispose)
    with cluster_for_test(
        request, db_url, app=APP, tasks=TASKS, heartbeat=SIZE.heartbeat, env=env
    ) as cluster:
        task_ids = queue_audited(cluster, SIZE.tasks, SIZE.task_seconds)
        started = time.monotonic()
        seed = random.randrange(2**32)
        killer = Killer(cluster, cluster.start_workers(WORKERS), random.Random(seed))
        wait_for(lambda: len(audit_rows(audit)) >= 10, timeout=30, what="the drain to start")

        while sum(killer.kills.values()) < SIZE.kills:
            time.sleep(SIZE.kill_every * killer.rng.uniform(0.5, 1.5))
            remaining = SIZE.tasks - status_counts(cluster)[TaskStatus.COMPLETED.value]
            if not FULL and remaining < SIZE.tasks // 10:
                break  # a quiet machine drains the short queue fast: enough kills landed
            assert remaining > 0, f"the queue drained after only {dict(killer.kills)} kills"
            if killer.rng.random() < 0.5:
                killer.kill_worker()
            elif not killer.kill_child():
                killer.kill_worker()
        left_at_last_kill = remaining
        assert sum(killer.kills.values()) >= (SIZE.kills if FULL else 2)

        def all_completed() -> bool:
            return status_counts(cluster)[TaskStatus.COMPLETED.value] == SIZE.tasks

        # the last killed worker's claims come back after dead_after (3 heartbeats)
        cluster.wait_for(all_completed, timeout=SIZE.drain, interval=0.5)
        elapsed = time.monotonic() - started

        statuses = status_counts(cluster)
        runs = audit_rows(audit)
        starts = collections.Counter(task_id for task_id, _ in runs)
        unkilled = collections.Counter(
            task_id for task_id, pid in runs if pid not in killer.killed_pids
        )
        repeated = {task_id: n for task_id, n in starts.items() if n > 1}
        completed_runs = _completed_runs(cluster)
        print(
            f"\n[{db_backend}] seed {seed}: {SIZE.tasks} tasks, {WORKERS} workers, kills "
            f"{dict(killer.kills)}; {left_at_last_kill} tasks left at the last kill; all "
            f"final after {elapsed:.1f} s; {len(runs)} starts, {len(repeated)} tasks started "
            f"more than once (all in killed processes)"
        )
        assert statuses == {TaskStatus.COMPLETED.value: SIZE.tasks}
        assert set(starts) == set(task_ids), "every task ran at least once"
        twice = {task_id: n for task_id, n in unkilled.items() if n > 1}
        assert twice == {}, "a task ran more than once in processes nobody killed"
        assert completed_runs == dict.fromkeys(task_ids, 1), "one COMPLETED run per task"
        assert all(w.alive() for w in killer.live if w.exit_expected is False)


def _completed_runs(cluster: Cluster) -> dict[int, int]:
    run = cluster.sched.tables.scheduler_run
    query = (
        sa.select(run.c.task_id, sa.func.count())
        .where(run.c.status == "COMPLETED")
        .group_by(run.c.task_id)
    )
    with cluster.sched.store.engine.connect() as conn:
        return {task_id: count for task_id, count in conn.execute(query)}
