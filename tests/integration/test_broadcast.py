"""broadcast=True with real workers: one copy per live worker of the group.

The template never runs itself; the ticker copies it to every live worker of its
group (args and vars intact) and moves it on by its period until its repeats are
used up. Heartbeats are 1 s, so the ticker acts within a second or two.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from harness import Cluster, cluster_for_test
from lifecycle_tasks import TASKS, audit, create_audit_table

from taskmill import TaskStatus
from taskmill.records import Task

APP = "lifecycle_app:sched"


@pytest.fixture
def cluster(request: pytest.FixtureRequest, db_url: str) -> Iterator[Cluster]:
    with cluster_for_test(request, db_url, app=APP, tasks=TASKS, heartbeat=1.0) as c:
        create_audit_table(c.sched.store.engine)
        yield c


def copies_of(cluster: Cluster, template_id: int) -> list[Task]:
    t = cluster.sched.tables.scheduler_task
    condition = sa.and_(t.c.broadcast == True, t.c.id != template_id)  # noqa: E712
    with cluster.sched.store.reading() as conn:
        rows = conn.execute(sa.select(t).where(condition).order_by(t.c.id)).all()
    return [cluster.sched.store._task(row) for row in rows]


def test_broadcast_runs_one_copy_on_every_live_worker_with_its_vars(cluster: Cluster) -> None:
    workers = cluster.start_workers(2)
    queued = cluster.sched.queue_task(
        "append_audit", pvars={"label": "to everyone"}, broadcast=True
    )
    assert queued.errors == {} and queued.id is not None

    template = cluster.wait_status(queued.id, TaskStatus.COMPLETED, timeout=20)
    assert template.times_run == 1

    def all_copies_done() -> list[Task] | None:
        copies = copies_of(cluster, queued.id or 0)
        done = [c for c in copies if c.status == TaskStatus.COMPLETED.value]
        return copies if len(copies) == 2 and len(done) == 2 else None

    copies = cluster.wait_for(all_copies_done, timeout=20, what="both copies to complete")
    assert sorted(c.assigned_worker_name or "" for c in copies) == sorted(w.name for w in workers)
    with cluster.sched.store.engine.connect() as conn:
        rows = conn.execute(sa.select(audit.c.task_id, audit.c.label, audit.c.pid)).all()
    assert sorted(row.task_id for row in rows) == [c.id for c in copies]
    assert {row.label for row in rows} == {"to everyone"}
    assert len({row.pid for row in rows}) == 2  # two different task children


def test_broadcast_template_repeats_by_its_period(cluster: Cluster) -> None:
    cluster.start_workers(1)
    queued = cluster.sched.queue_task("append_audit", broadcast=True, repeats=2, period=1)
    assert queued.id is not None
    template = cluster.wait_status(queued.id, TaskStatus.COMPLETED, timeout=20)
    assert template.times_run == 2
    copies = cluster.wait_for(
        lambda: (lambda c: c if len(c) == 2 else None)(copies_of(cluster, queued.id or 0)),
        timeout=20,
        what="two rounds of copies",
    )
    assert len(copies) == 2


def test_broadcast_waits_for_a_worker_of_its_group(cluster: Cluster) -> None:
    cluster.start_workers(1)
    queued = cluster.sched.queue_task("append_audit", broadcast=True, group_name="nobody")
    assert queued.id is not None
    explanation = cluster.sched.explain(queued.id)
    assert explanation.status == TaskStatus.QUEUED.value
    assert copies_of(cluster, queued.id) == []
    assert cluster.task(queued.id).status == TaskStatus.QUEUED.value
