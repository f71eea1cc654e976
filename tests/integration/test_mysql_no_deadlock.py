"""MariaDB: four worker processes drain a queue that grows while they work, with no
deadlock and every task run exactly once.

InnoDB takes next-key locks at REPEATABLE READ, so claims (SELECT ... FOR UPDATE SKIP
LOCKED), result writes, the ticker's housekeeping and inserts of new tasks can in
principle lock each other in a cycle; the server then kills one transaction with
error 1213. Workers retry such a transaction, so a deadlock would not lose a task:
it would only show as a DEADLOCK line in the worker's log and in its worker_stats
(see Worker._count_deadlock). This test counts them, and audits the runs through an
audit table written by the tasks themselves on their own connection.

The suite runs a short version (4 x 250 tasks); `make deadlock-proof` runs the full
one (4 x 5,000) and prints the figures recorded in benchmarks/RESULTS.md:

    TASKMILL_DEADLOCK_TASKS=5000 pytest tests/integration/test_mysql_no_deadlock.py -s
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from harness import Cluster, cluster_for_test
from lifecycle_tasks import TASKS, audit_counts, create_audit_table

from taskmill import RunStatus, TaskStatus

APP = "lifecycle_app:sched"
WORKERS = 4
#: tasks per worker; the full proof uses 5,000 (20,000 in all)
PER_WORKER = int(os.environ.get("TASKMILL_DEADLOCK_TASKS", "250"))
TOTAL = WORKERS * PER_WORKER
#: tasks queued per transaction while the workers drain
BATCH = 50


@pytest.fixture
def cluster(request: pytest.FixtureRequest, mysql_url: str) -> Iterator[Cluster]:
    with cluster_for_test(request, mysql_url, app=APP, tasks=TASKS, heartbeat=1.0) as c:
        create_audit_table(c.sched.store.engine)
        yield c


def queue_batches(cluster: Cluster, batches: int, first: int) -> None:
    for number in range(batches):
        with cluster.sched.store.engine.begin() as conn:
            for i in range(BATCH):
                label = f"t{first + number * BATCH + i}"
                queued = cluster.sched.queue_task("append_audit", [label], db=conn)
                assert queued.errors == {}


def finished(cluster: Cluster) -> int:
    task = cluster.sched.tables.scheduler_task
    query = sa.select(sa.func.count()).where(task.c.status == TaskStatus.COMPLETED.value)
    with cluster.sched.store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


@pytest.mark.slow
@pytest.mark.timeout(max(120, TOTAL // 8))
def test_four_workers_drain_a_growing_queue_without_deadlock(cluster: Cluster) -> None:
    # half queued up front, half while the workers claim: inserts land in the index
    # ranges the claims lock
    queue_batches(cluster, TOTAL // 2 // BATCH, 0)
    began = time.monotonic()
    workers = cluster.start_workers(WORKERS)
    producer = threading.Thread(
        target=queue_batches, args=(cluster, TOTAL // 2 // BATCH, TOTAL // 2)
    )
    producer.start()
    producer.join()
    cluster.wait_for(
        lambda: finished(cluster) == TOTAL, timeout=max(100, TOTAL // 10), interval=0.5
    )
    elapsed = time.monotonic() - began
    stats = {name: info.worker_stats or {} for name, info in cluster.sched.get_workers().items()}
    for worker in workers:
        worker.terminate()
        assert worker.wait(timeout=30) == 0

    logs = "\n".join(worker.log() for worker in workers)
    deadlock_lines = [line for line in logs.splitlines() if "DEADLOCK" in line]
    db_errors = [line for line in logs.splitlines() if "database error" in line]
    reported = sum(int(n) for n in re.findall(r"stopped after \d+ task\(s\), (\d+) dead", logs))
    ran = sum(int(n) for n in re.findall(r"stopped after (\d+) task\(s\)", logs))
    audit = audit_counts(cluster.sched.store.engine)
    runs = run_counts(cluster)
    print(
        f"\n[mariadb] {WORKERS} workers, {TOTAL:,} tasks ({TOTAL // 2:,} queued while they ran)"
        f" in {elapsed:.1f} s ({TOTAL / elapsed:,.0f} tasks/s); deadlocks: {len(deadlock_lines)}"
        f" logged, {reported} counted by the workers; other database errors: {len(db_errors)};"
        f" tasks per worker: {[s.get('total') for s in stats.values()]};"
        f" audit: {len(audit):,} tasks, runs per task {sorted(set(audit.values()))}"
    )
    assert deadlock_lines == []
    assert reported == 0
    assert db_errors == []
    assert ran == TOTAL
    assert len(audit) == TOTAL
    assert set(audit.values()) == {1}  # every task ran exactly once
    assert runs == {(RunStatus.COMPLETED.value, 1): TOTAL}


def run_counts(cluster: Cluster) -> dict[tuple[str, int], int]:
    """(run status, runs of the task) -> number of tasks."""
    run = cluster.sched.tables.scheduler_run
    per_task = (
        sa.select(
            run.c.task_id, sa.func.min(run.c.status).label("status"), sa.func.count().label("n")
        )
        .group_by(run.c.task_id)
        .subquery()
    )
    query = sa.select(per_task.c.status, per_task.c.n, sa.func.count()).group_by(
        per_task.c.status, per_task.c.n
    )
    with cluster.sched.store.engine.connect() as conn:
        return {(str(row[0]), int(row[1])): int(row[2]) for row in conn.execute(query)}
