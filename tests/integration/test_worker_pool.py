"""Workers that run several tasks at once (`--concurrency N`, `--pool`), issue 9.

Real worker processes of `tests/apps/pool_app.py` on every backend (`db_url`).
Overlap is proven from the runs' own clocks: every task of a group started before
the first of them ended. Each kind of slot is covered: a child process per slot
(a plain function, and an `async def` one run on the child's own event loop), a
thread of the worker (@thread_safe) and the worker's event loop (@thread_safe async).
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from harness import Cluster, WorkerProcess, cluster_for_test
from pool_tasks import TASKS

from taskmill import RunStatus, TaskReport, TaskStatus

APP = "pool_app:sched"

#: kind -> (worker options, the task function that kind runs)
KINDS: dict[str, tuple[list[str], str]] = {
    "processes": (["--pool", "processes"], "span"),
    "processes-async": (["--pool", "processes"], "span_async_process"),
    "threads": (["--pool", "threads"], "span_thread"),
    "threads-async": (["--pool", "threads"], "span_async"),
}


@pytest.fixture
def cluster(request: pytest.FixtureRequest, db_url: str) -> Iterator[Cluster]:
    with cluster_for_test(request, db_url, app=APP, tasks=TASKS, heartbeat=1.0) as c:
        yield c


def queue(cluster: Cluster, function: str, *pargs: Any, **options: Any) -> int:
    queued = cluster.sched.queue_task(function, list(pargs), **options)
    assert queued.errors == {}
    assert queued.id is not None
    return queued.id


def result_of(cluster: Cluster, task_id: int) -> Any:
    found = cluster.sched.task_status(task_id, output=True)
    assert isinstance(found, TaskReport)
    return found.result


def start_pool_worker(
    cluster: Cluster, kind: str, concurrency: int, **options: Any
) -> WorkerProcess:
    """A worker whose every slot is ready: it starts work as soon as its first child
    has imported the app, and a test of overlap needs them all."""
    args, _ = KINDS[kind]
    worker = cluster.start_worker(args=[*args, "--concurrency", str(concurrency)], **options)

    def all_slots_ready() -> bool:
        stats = cluster.sched.get_workers()[worker.name].worker_stats or {}
        return stats.get("ready_slots") == concurrency

    cluster.wait_for(all_slots_ready, timeout=60, what=f"{concurrency} slots of {worker.name}")
    return worker


@pytest.mark.parametrize("kind", list(KINDS))
def test_n_tasks_run_at_once_in_one_worker_each_with_its_own_output(
    cluster: Cluster, kind: str
) -> None:
    worker = start_pool_worker(cluster, kind, 4)
    function = KINDS[kind][1]
    ids = [queue(cluster, function, 1.5) for _ in range(4)]
    for task_id in ids:
        cluster.wait_status(task_id, TaskStatus.COMPLETED, timeout=30)
    spans = [result_of(cluster, task_id) for task_id in ids]
    assert [span["task_id"] for span in spans] == ids
    # all four had started before the first of them ended
    assert max(span["start"] for span in spans) < min(span["end"] for span in spans)
    pids = {span["pid"] for span in spans}
    if kind.startswith("processes"):
        assert len(pids) == 4 and worker.pid not in pids
    else:
        assert pids == {worker.pid}
        threads = {span["thread"] for span in spans}
        assert len(threads) == (4 if kind == "threads" else 1)  # async: one event loop
        # prints of concurrent tasks in one process end up in their own run's output
        for task_id in ids:
            (run,) = cluster.runs(task_id)
            assert run.run_output is not None
            assert run.run_output.strip().endswith(f"task {task_id} slept")
            assert run.run_output.count("slept") == 1


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_task_past_its_timeout_is_timeout_while_the_other_slots_run_on(
    cluster: Cluster, kind: str
) -> None:
    worker = start_pool_worker(cluster, kind, 2)
    function = KINDS[kind][1]
    long_id = queue(cluster, function, 60, timeout=1)
    short_id = queue(cluster, function, 2.5)
    timed_out = cluster.wait_status(long_id, TaskStatus.TIMEOUT, timeout=20)
    assert timed_out.times_failed == 1
    (run,) = cluster.runs(long_id)
    assert run.status == RunStatus.TIMEOUT
    assert run.stop_time is not None and run.start_time is not None
    assert 0.9 <= (run.stop_time - run.start_time).total_seconds() < 10
    cluster.wait_status(short_id, TaskStatus.COMPLETED, timeout=20)
    span = result_of(cluster, short_id)
    # the short task ran through the other task's timeout in its own slot
    assert span["end"] - span["start"] >= 2.4
    again = queue(cluster, function, 0.1)
    cluster.wait_status(again, TaskStatus.COMPLETED, timeout=20)
    assert worker.alive()


@pytest.mark.parametrize("kind", list(KINDS))
def test_stop_task_ends_one_slots_run_and_not_the_others(cluster: Cluster, kind: str) -> None:
    start_pool_worker(cluster, kind, 2)
    function = KINDS[kind][1]
    stopped_id = queue(cluster, function, 60)
    other_id = queue(cluster, function, 3)
    cluster.wait_running(stopped_id, timeout=20)
    cluster.wait_running(other_id, timeout=20)
    assert cluster.sched.stop_task(stopped_id) == 1
    cluster.wait_status(stopped_id, TaskStatus.STOPPED, timeout=20)
    cluster.wait_status(other_id, TaskStatus.COMPLETED, timeout=20)
    (run,) = cluster.runs(stopped_id)
    assert run.status == RunStatus.STOPPED


def test_a_crashing_child_fails_its_task_only(cluster: Cluster) -> None:
    worker = start_pool_worker(cluster, "processes", 3)
    first = queue(cluster, "span", 3)
    second = queue(cluster, "span", 3)
    cluster.wait_running(first, timeout=20)
    cluster.wait_running(second, timeout=20)
    crashed = queue(cluster, "crash")
    failed = cluster.wait_status(crashed, TaskStatus.FAILED, timeout=20)
    assert failed.times_failed == 1
    (run,) = cluster.runs(crashed)
    assert run.traceback is not None and "died (exit code 3)" in run.traceback
    for task_id in (first, second):
        cluster.wait_status(task_id, TaskStatus.COMPLETED, timeout=20)
        assert result_of(cluster, task_id)["end"] - result_of(cluster, task_id)["start"] >= 2.9
    after = queue(cluster, "span", 0.1)
    cluster.wait_status(after, TaskStatus.COMPLETED, timeout=20)
    assert worker.alive()


@pytest.mark.parametrize(
    ("kind", "seconds"),
    # 0 s: millisecond tasks, which busy children are handed ahead of their run
    [("processes", 0.02), ("processes", 0.0), ("threads-async", 0.02)],
)
def test_every_task_runs_exactly_once_across_pooled_workers(
    cluster: Cluster, kind: str, seconds: float
) -> None:
    start_pool_worker(cluster, kind, 4)
    start_pool_worker(cluster, kind, 4)
    function = KINDS[kind][1]
    ids = [queue(cluster, function, seconds) for _ in range(80)]
    for task_id in ids:
        cluster.wait_status(task_id, TaskStatus.COMPLETED, timeout=60)
    for task_id in ids:
        task = cluster.task(task_id)
        assert (task.times_run, task.times_failed) == (1, 0)
        runs = cluster.runs(task_id)
        assert [run.status for run in runs] == [RunStatus.COMPLETED]
        assert json.loads(runs[0].run_result or "null")["task_id"] == task_id

    def totals() -> int | None:
        workers = cluster.sched.get_workers().values()
        total = sum(int((w.worker_stats or {}).get("total", 0)) for w in workers)
        return total if total == len(ids) else None

    cluster.wait_for(totals, timeout=10, what="the workers' heartbeats to count 80 tasks")


def test_a_process_only_task_never_runs_in_a_thread_of_a_threads_pool(cluster: Cluster) -> None:
    worker = start_pool_worker(cluster, "threads", 4)
    in_child = queue(cluster, "worker_pid")
    in_thread = queue(cluster, "worker_pid_thread")
    cluster.wait_status(in_child, TaskStatus.COMPLETED, timeout=20)
    cluster.wait_status(in_thread, TaskStatus.COMPLETED, timeout=20)
    assert result_of(cluster, in_thread) == worker.pid
    assert result_of(cluster, in_child) != worker.pid


def test_a_busy_pool_claims_only_for_its_free_slots(cluster: Cluster) -> None:
    """No task waits claimed behind a busy slot: the second worker gets it."""
    first = start_pool_worker(cluster, "processes", 2)
    ids = [queue(cluster, "span", 60) for _ in range(4)]

    def running_on(worker: WorkerProcess) -> list[int]:
        tasks = [cluster.task(i) for i in ids]
        return [
            t.id
            for t in tasks
            if t.status == TaskStatus.RUNNING and t.assigned_worker_name == worker.name
        ]

    running = cluster.wait_for(
        lambda: running_on(first) if len(running_on(first)) == 2 else None,
        timeout=20,
        what="two tasks running on the first worker",
    )
    waiting = [i for i in ids if i not in running]
    assert [cluster.task(i).status for i in waiting] == [TaskStatus.QUEUED] * 2
    second = cluster.start_worker(args=["--concurrency", "2"])
    cluster.wait_for(
        lambda: sorted(running_on(second)) == sorted(waiting),
        timeout=60,
        what="the two waiting tasks running on the second worker",
    )
    assert sorted(running_on(first)) == sorted(running)
    for task_id in ids:
        cluster.sched.stop_task(task_id)
    for task_id in ids:
        cluster.wait_status(task_id, TaskStatus.STOPPED, timeout=30)


@pytest.mark.parametrize("kind", ["processes", "threads"])
def test_sigterm_waits_for_every_slot_then_exits_cleanly(cluster: Cluster, kind: str) -> None:
    worker = start_pool_worker(cluster, kind, 3, grace=30)
    function = KINDS[kind][1]
    ids = [queue(cluster, function, 2) for _ in range(3)]
    for task_id in ids:
        cluster.wait_running(task_id, timeout=20)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    for task_id in ids:
        assert cluster.task(task_id).status == TaskStatus.COMPLETED
    assert worker.name not in cluster.sched.get_workers()


def test_stop_task_keeps_tasks_handed_to_busy_children_ahead_from_starting(
    cluster: Cluster,
) -> None:
    """Millisecond tasks are handed to busy children ahead of their run (the
    pipeline of a one-slot worker, per slot). Stopped while the children are busy,
    they are dropped unstarted: they stay STOPPED and never run."""
    worker = start_pool_worker(cluster, "processes", 2)
    warm_up = [queue(cluster, "span", 0) for _ in range(20)]  # their duration: ~0 s
    for task_id in warm_up:
        cluster.wait_status(task_id, TaskStatus.COMPLETED, timeout=20)
    with cluster.sched.store.engine.begin() as conn:
        slow = [cluster.sched.queue_task("span", [1.5], db=conn).id for _ in range(2)]
        fast = [cluster.sched.queue_task("span", [0], db=conn).id for _ in range(12)]
    for task_id in slow:
        cluster.wait_status(task_id, TaskStatus.RUNNING, timeout=20)
    held = [cluster.task(task_id) for task_id in fast]
    if cluster.sched.store.wakeups_complete:
        # claimed and handed to the busy children, not given back to the queue (as
        # tasks waiting in the worker's own batch are once every slot runs long).
        # How many go behind each run depends on the measured task time (the
        # pipeline holds handover_window of work): a child left free by them ran
        # the rest already
        held = [t for t in held if t.status != TaskStatus.COMPLETED]
        assert len(held) >= 4
        assert {(t.status, t.assigned_worker_name) for t in held} == {
            (TaskStatus.ASSIGNED, worker.name)
        }
    else:
        # MariaDB/MySQL: no ring could say a task handed over was stopped, so none
        # is: they wait in the batch, given back to the queue as the runs are long
        assert {t.status for t in held} == {TaskStatus.QUEUED}
    for task in held:
        cluster.sched.stop_task(task.id)
    for task_id in slow:
        cluster.wait_status(task_id, TaskStatus.COMPLETED, timeout=20)
    for task in held:
        stopped = cluster.wait_status(task.id, TaskStatus.STOPPED, timeout=20)
        assert stopped.times_run == 0
        assert cluster.runs(task.id) == []
    # the worker goes on: the next task runs
    after = queue(cluster, "span", 0)
    cluster.wait_status(after, TaskStatus.COMPLETED, timeout=20)
    stats = cluster.sched.get_workers()[worker.name].worker_stats or {}
    if cluster.sched.store.wakeups_complete:
        assert int(stats.get("prefetched", 0)) >= len(held)


def test_millisecond_tasks_stay_on_few_children_and_pass_a_long_run_by(cluster: Cluster) -> None:
    """Tasks far shorter than the worker's own cost per task go to the children
    that keep up with it, not to all eight (more would add wake-ups, not speed);
    and a long run gets none behind it once it has lasted past the hand-over
    window: at most the pipeline handed to its child before then waits for it."""
    start_pool_worker(cluster, "processes", 8)
    with cluster.sched.store.engine.begin() as conn:
        ids = [cluster.sched.queue_task("span", [0], db=conn).id for _ in range(600)]
    for task_id in ids:
        cluster.wait_status(task_id, TaskStatus.COMPLETED, timeout=60)
    # after the first few hundred the worker knows its cost per task; a child it
    # could not see finish in time (the machine is loaded) may get a few more
    late = Counter(result_of(cluster, task_id)["pid"] for task_id in ids[400:])
    if cluster.sched.store.wakeups_complete:  # else one at a time to every child
        assert sum(count for _, count in late.most_common(2)) >= 150
    with cluster.sched.store.engine.begin() as conn:
        long_id = cluster.sched.queue_task("span", [2], db=conn).id
        short = [cluster.sched.queue_task("span", [0], db=conn).id for _ in range(100)]
    for task_id in [long_id, *short]:
        cluster.wait_status(task_id, TaskStatus.COMPLETED, timeout=60)
    long_end = result_of(cluster, long_id)["end"]
    behind = [t for t in short if result_of(cluster, t)["start"] > long_end]
    assert len(behind) < 16  # WorkerOptions.pipeline_depth: handed over with the long one
