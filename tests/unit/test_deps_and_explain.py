"""JobGraph and explain() against a real SQLite database, without workers.

Worker rows are written through the store's own heartbeat API, exactly as a
worker writes them; the end-to-end versions with real worker processes live in
tests/integration/test_explain_workers.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from taskmill import JobGraph, Scheduler
from taskmill.deps import run_order
from taskmill.errors import TaskNotFound


def noop() -> None:
    return None


@pytest.fixture
def sched(sqlite_url: str) -> Scheduler:
    scheduler = Scheduler(sqlite_url, tasks={"noop": noop, "other": noop}, heartbeat=1)
    scheduler.create_tables()
    return scheduler


def beat(sched: Scheduler, name: str, *, groups: list[str], stats: dict[str, object]) -> None:
    sched.store.register_worker(name, groups, stats, sched.dead_after)
    sched.store.heartbeat(name, groups, stats, ticker_lease=2)


def test_run_order_layers_children_first() -> None:
    assert run_order([(1, 2), (1, 3), (2, 3)]) == [{3}, {2}, {1}]


def test_run_order_ignores_self_dependency() -> None:
    assert run_order([(1, 1), (1, 2)]) == [{2}, {1}]


def test_run_order_detects_cycle() -> None:
    assert run_order([(1, 2), (2, 3), (3, 1)]) is None


def test_validate_returns_order_and_keeps_edges(sched: Scheduler) -> None:
    a, b = sched.queue_task("noop").id, sched.queue_task("noop").id
    assert a is not None and b is not None
    graph = JobGraph(sched, "job1")
    graph.add_deps(a, b)
    assert graph.validate() == [{b}, {a}]
    assert sched.store.dependencies("job1") == [(a, b)]


def test_validate_on_cycle_returns_none_and_stores_nothing(sched: Scheduler) -> None:
    a, b = sched.queue_task("noop").id, sched.queue_task("noop").id
    assert a is not None and b is not None
    graph = JobGraph(sched, "job1")
    graph.add_deps(a, b)
    graph.add_deps(b, a)
    assert graph.validate() is None
    assert sched.store.dependencies("job1") == []


def test_cycle_in_one_job_leaves_other_jobs_alone(sched: Scheduler) -> None:
    a, b = sched.queue_task("noop").id, sched.queue_task("noop").id
    assert a is not None and b is not None
    JobGraph(sched, "keep").add_deps(a, b)
    bad = JobGraph(sched, "bad")
    bad.add_deps(a, b)
    bad.add_deps(b, a)
    assert bad.validate() is None
    assert sched.store.dependencies("keep") == [(a, b)]


def test_add_deps_refuses_unknown_task(sched: Scheduler) -> None:
    a = sched.queue_task("noop").id
    assert a is not None
    with pytest.raises(TaskNotFound):
        JobGraph(sched, "job1").add_deps(a, 999)


def test_add_deps_refuses_non_int(sched: Scheduler) -> None:
    with pytest.raises(TypeError):
        JobGraph(sched, "job1").add_deps("1", 2)  # type: ignore[arg-type]


def test_parent_with_unfinished_child_is_not_claimed(sched: Scheduler) -> None:
    parent, child = sched.queue_task("noop").id, sched.queue_task("noop").id
    assert parent is not None and child is not None
    JobGraph(sched, "job1").add_deps(parent, child)
    with sched.store.transaction() as conn:
        claimed = sched.store.claim_due_tasks(conn, "w1", ["main"], 10)
    assert [t.id for t in claimed] == [child]


def test_explain_unknown_task(sched: Scheduler) -> None:
    explanation = sched.explain(12345)
    assert explanation.task_id is None
    assert explanation.reasons == ["no task matches this reference"]


def test_explain_start_time_in_future(sched: Scheduler) -> None:
    later = datetime.now(UTC) + timedelta(hours=2)
    task_id = sched.queue_task("noop", start_time=later).id
    beat(sched, "w1", groups=["main"], stats={"tasks": ["noop"]})
    reasons = sched.explain(task_id or 0).reasons
    assert reasons == [
        f"its start_time {later.isoformat(sep=' ', timespec='seconds')} is in the future"
    ]


def test_explain_waiting_for_parents(sched: Scheduler) -> None:
    parent, child = sched.queue_task("noop").id, sched.queue_task("noop").id
    assert parent is not None and child is not None
    JobGraph(sched, "job1").add_deps(parent, child)
    beat(sched, "w1", groups=["main"], stats={"tasks": ["noop"]})
    assert sched.explain(parent).reasons == [
        f"it waits for task(s) {child} (QUEUED) to complete first"
    ]


def test_explain_failed_dependency_says_it_waits(sched: Scheduler) -> None:
    parent, child = sched.queue_task("noop").id, sched.queue_task("noop").id
    assert parent is not None and child is not None
    JobGraph(sched, "job1").add_deps(parent, child)
    sched.stop_task(child)
    reasons = sched.explain(parent).reasons
    assert f"task(s) {child} ended without completing" in reasons[1]


def test_explain_stop_time_passed(sched: Scheduler) -> None:
    start = datetime.now(UTC) - timedelta(hours=2)
    stop = datetime.now(UTC) - timedelta(hours=1)
    task_id = sched.queue_task("noop", start_time=start, stop_time=stop).id
    beat(sched, "w1", groups=["main"], stats={"tasks": ["noop"]})
    reasons = sched.explain(task_id or 0).reasons
    assert reasons[0].startswith("its stop_time") and reasons[0].endswith("it will be EXPIRED")


def test_explain_no_live_worker_for_group(sched: Scheduler) -> None:
    task_id = sched.queue_task("noop", group_name="reports").id
    beat(sched, "w1", groups=["main"], stats={"tasks": ["noop"]})
    assert sched.explain(task_id or 0).reasons == [
        "no live worker serves group 'reports' (live workers serve main)"
    ]


def test_explain_workers_disabled(sched: Scheduler) -> None:
    task_id = sched.queue_task("noop").id
    beat(sched, "w1", groups=["main"], stats={"tasks": ["noop"]})
    sched.disable(worker_name="w1")
    assert sched.explain(task_id or 0).reasons == [
        "all 1 worker(s) serving group 'main' are disabled or stopping"
    ]


def test_explain_function_not_registered_on_any_worker(sched: Scheduler) -> None:
    task_id = sched.queue_task("other").id
    beat(sched, "w1", groups=["main"], stats={"tasks": ["noop"]})
    assert sched.explain(task_id or 0).reasons == [
        "no live worker of group 'main' has function 'other' registered"
    ]


def test_explain_all_workers_busy_counts_tasks_ahead(sched: Scheduler) -> None:
    first = sched.queue_task("noop").id
    second = sched.queue_task("noop").id
    assert first is not None and second is not None
    beat(sched, "w1", groups=["main"], stats={"tasks": ["noop"], "current_task": 99})
    assert sched.explain(second).reasons == [
        "all 1 worker(s) are busy; 1 due task(s) are ahead of it"
    ]


def test_explain_a_pool_worker_with_a_free_slot_is_not_busy(sched: Scheduler) -> None:
    sched.queue_task("noop")
    second = sched.queue_task("noop").id
    assert second is not None
    stats = {"tasks": ["noop"], "current_task": 98, "current_tasks": [98], "concurrency": 2}
    beat(sched, "w1", groups=["main"], stats=stats)
    assert sched.explain(second).runnable is True
    sched.store.heartbeat("w1", ["main"], {**stats, "current_tasks": [98, 99]}, ticker_lease=2)
    assert sched.explain(second).reasons == [
        "all 1 worker(s) are busy; 1 due task(s) are ahead of it"
    ]


def test_explain_disabled_task(sched: Scheduler) -> None:
    task_id = sched.queue_task("noop", enabled=False).id
    beat(sched, "w1", groups=["main"], stats={"tasks": ["noop"]})
    assert sched.explain(task_id or 0).reasons == ["the task is disabled (enabled=False)"]


def test_explain_runnable_task(sched: Scheduler) -> None:
    task_id = sched.queue_task("noop").id
    beat(sched, "w1", groups=["main"], stats={"tasks": ["noop"]})
    explanation = sched.explain(task_id or 0)
    assert explanation.runnable is True
    assert "should start within moments" in explanation.reasons[0]


def test_explain_stopped_task(sched: Scheduler) -> None:
    task_id = sched.queue_task("noop").id
    sched.stop_task(task_id or 0)
    assert sched.explain(task_id or 0).reasons == [
        "it was stopped (stop_task); requeue() runs it again"
    ]


def test_add_deps_in_the_same_transaction_as_the_tasks(sched: Scheduler) -> None:
    with sched.store.engine.begin() as conn:
        parent = sched.queue_task("noop", db=conn).id
        child = sched.queue_task("noop", db=conn).id
        assert parent is not None and child is not None
        JobGraph(sched, "atomic").add_deps(parent, child, db=conn)
    assert sched.store.dependencies("atomic") == [(parent, child)]
