"""The task lifecycle with real worker processes: every path a task can take.

Each test starts `taskmill worker` processes of `tests/apps/lifecycle_app.py` against a
fresh database and checks what ends up in the web2py tables. Heartbeats are 1 s, so
a dead worker is noticed within a few seconds.

The database comes from the `database` fixture, which is `db_url`: every test runs on
SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from harness import Cluster, WorkerProcess, cluster_for_test, process_running, wait_for
from lifecycle_tasks import (
    TASKS,
    audit_counts,
    create_audit_table,
    expected_big_result,
)

from taskmill import RunStatus, Task, TaskReport, TaskStatus

APP = "lifecycle_app:sched"
HEARTBEAT = 1.0
ACTIVE = (TaskStatus.QUEUED, TaskStatus.ASSIGNED, TaskStatus.RUNNING)


@pytest.fixture
def database(db_url: str) -> str:
    """Every lifecycle test runs on SQLite, PostgreSQL and MariaDB (issue 4)."""
    return db_url


@pytest.fixture
def cluster(request: pytest.FixtureRequest, database: str) -> Iterator[Cluster]:
    with cluster_for_test(request, database, app=APP, tasks=TASKS, heartbeat=HEARTBEAT) as c:
        create_audit_table(c.sched.store.engine)
        yield c


@pytest.fixture
def worker(cluster: Cluster) -> WorkerProcess:
    """One worker, registered and beating."""
    return cluster.start_worker()


def queue(cluster: Cluster, function: str, *pargs: Any, **options: Any) -> int:
    pvars = options.pop("pvars", None)
    queued = cluster.sched.queue_task(function, list(pargs), pvars, **options)
    assert queued.errors == {}
    assert queued.id is not None
    return queued.id


def report(cluster: Cluster, task_id: int) -> TaskReport:
    found = cluster.sched.task_status(task_id, output=True)
    assert isinstance(found, TaskReport)
    return found


def utc_now() -> datetime:
    return datetime.now(UTC)


def assert_worker_carries_on(cluster: Cluster, worker: WorkerProcess) -> None:
    """The same worker still takes and completes new tasks."""
    task_id = queue(cluster, "add", 20, 22)
    cluster.wait_status(task_id, TaskStatus.COMPLETED)
    (run,) = cluster.runs(task_id)
    assert run.worker_name == worker.name
    assert run.run_result == "42"
    assert worker.alive()


# ------------------------------------------------------------------ outcomes


def test_completed_task_has_its_result_and_a_run_row(
    cluster: Cluster, worker: WorkerProcess
) -> None:
    task_id = queue(cluster, "add", 2, 3)

    task = cluster.wait_status(task_id, TaskStatus.COMPLETED)

    assert (task.times_run, task.times_failed) == (1, 0)
    assert task.assigned_worker_name == worker.name
    (run,) = cluster.runs(task_id)
    assert run.status == RunStatus.COMPLETED.value
    assert run.run_result == "5"
    assert run.traceback is None
    assert run.worker_name == worker.name
    assert run.start_time is not None and run.stop_time is not None
    assert run.start_time <= run.stop_time
    assert report(cluster, task_id).result == 5


def test_failed_task_stores_a_traceback_naming_the_exception(
    cluster: Cluster, worker: WorkerProcess
) -> None:
    task_id = queue(cluster, "fail", "kaput")

    task = cluster.wait_status(task_id, TaskStatus.FAILED)

    assert (task.times_run, task.times_failed) == (0, 1)
    (run,) = cluster.runs(task_id)
    assert run.status == RunStatus.FAILED.value
    assert run.traceback is not None
    assert "Traceback (most recent call last)" in run.traceback
    assert "lifecycle_tasks.TaskBoom: kaput" in run.traceback
    assert run.run_result is None


def test_task_running_past_its_timeout_is_timeout_and_the_worker_survives(
    cluster: Cluster, worker: WorkerProcess
) -> None:
    task_id = queue(cluster, "sleep_for", 30, timeout=1)

    task = cluster.wait_status(task_id, TaskStatus.TIMEOUT, timeout=10)

    assert task.times_failed == 1
    (run,) = cluster.runs(task_id)
    assert run.status == RunStatus.TIMEOUT.value
    assert run.start_time is not None and run.stop_time is not None
    assert timedelta(seconds=1) <= run.stop_time - run.start_time < timedelta(seconds=5)
    assert_worker_carries_on(cluster, worker)


def test_stop_task_on_a_running_task_kills_it_and_the_worker_goes_on(
    cluster: Cluster, worker: WorkerProcess
) -> None:
    task_id = queue(cluster, "sleep_for", 30)
    cluster.wait_running(task_id)

    assert cluster.sched.stop_task(task_id) == 1

    task = cluster.wait_status(task_id, TaskStatus.STOPPED)
    (run,) = cluster.wait_for(
        lambda: [r for r in cluster.runs(task_id) if r.status == RunStatus.STOPPED.value],
        what="the run to be STOPPED",
    )
    assert task.times_run == 0
    assert run.worker_name == worker.name
    assert run.stop_time is not None
    assert_worker_carries_on(cluster, worker)


def test_stop_task_on_a_queued_task_stops_it_and_it_never_runs(cluster: Cluster) -> None:
    task_id = queue(cluster, "append_audit", "must not run")

    assert cluster.sched.stop_task(task_id) == 1
    assert cluster.task(task_id).status == TaskStatus.STOPPED.value

    # a task queued later completing means the worker had its chance to take ours
    worker = cluster.start_worker()
    sentinel = queue(cluster, "add", 1, 1)
    cluster.wait_status(sentinel, TaskStatus.COMPLETED)
    assert cluster.runs(sentinel)[0].worker_name == worker.name
    task = cluster.task(task_id)
    assert task.status == TaskStatus.STOPPED.value
    assert task.times_run == 0
    assert cluster.runs(task_id) == []
    assert task_id not in audit_counts(cluster.sched.store.engine)


def test_stop_task_on_a_task_assigned_in_a_workers_batch_keeps_it_from_starting(
    cluster: Cluster,
) -> None:
    # tasks handed to the child ahead (--prefetch) may start within a few ms of a
    # stop: tests/unit/test_child_protocol.py covers those; here, one at a time
    cluster.start_worker(args=["--prefetch", "1"])
    scheduler_task = cluster.sched.tables.scheduler_task
    engine = cluster.sched.store.engine
    # 5 ms tasks, so that the worker claims them in batches of a few (ASSIGNED, not yet
    # started) for long enough to be seen; tasks that write to the database instead
    # can take over 50 ms each on a loaded machine, and a task that long makes the
    # worker give its batch back to the queue (as it should), leaving none to stop
    with engine.begin() as conn:
        for _ in range(300):
            cluster.sched.queue_task("sleep_for", [0.005], db=conn)

    def assigned_batch() -> list[int] | None:
        query = sa.select(scheduler_task.c.id).where(
            scheduler_task.c.status == TaskStatus.ASSIGNED.value
        )
        with engine.connect() as conn:
            ids = list(conn.execute(query).scalars())
        # two suffice (one may be at the handover, the other must not start); more
        # are rare on a loaded machine, where each task takes long enough that the
        # worker claims only a couple at a time
        return ids if len(ids) >= 2 else None

    rounds: list[tuple[list[int], datetime]] = []
    for _ in range(3):
        batch = cluster.wait_for(assigned_batch, timeout=20, interval=0.001, what="a batch")
        cluster.sched.stop_task(scheduler_task.c.id.in_(batch))
        rounds.append((batch, utc_now()))

    def settled() -> bool:
        active = sa.select(sa.func.count()).where(scheduler_task.c.status.in_(ACTIVE))
        with engine.connect() as conn:
            return conn.execute(active).scalar_one() == 0

    cluster.wait_for(settled, timeout=60, interval=0.1, what="all tasks to finish")
    started_after_stop = [
        (task_id, run.start_time)
        for batch, stopped_at in rounds
        for task_id in batch
        if cluster.task(task_id).status == TaskStatus.STOPPED.value
        for run in cluster.runs(task_id)
        if run.start_time is not None and run.start_time > stopped_at
    ]
    # The worker re-reads its claimed batch when woken (stop_task rings), so a
    # stop can only race with the one task being handed to the child at that
    # instant; without the re-read every stopped task of the batch ran.
    assert len(started_after_stop) <= len(rounds), started_after_stop


def test_task_whose_stop_time_passes_before_any_worker_takes_it_expires(
    cluster: Cluster,
) -> None:
    stop_time = utc_now() + timedelta(seconds=0.3)
    task_id = queue(cluster, "append_audit", "too late", stop_time=stop_time)
    wait_for(lambda: utc_now() > stop_time, what="the stop_time to pass")

    cluster.start_worker()

    task = cluster.wait_status(task_id, TaskStatus.EXPIRED, timeout=5)
    assert task.times_run == 0
    assert cluster.runs(task_id) == []
    assert task_id not in audit_counts(cluster.sched.store.engine)


def test_repeating_task_whose_next_run_falls_past_stop_time_expires(
    cluster: Cluster, worker: WorkerProcess
) -> None:
    # the first run is due at once; the second would be due after the stop_time
    stop_time = utc_now() + timedelta(seconds=3)
    task_id = queue(cluster, "add", 1, 1, repeats=0, period=5, stop_time=stop_time)

    task = cluster.wait_status(task_id, TaskStatus.EXPIRED, timeout=5)

    assert task.times_run == 1
    assert task.next_run_time is not None and task.next_run_time > stop_time
    (run,) = cluster.runs(task_id)
    assert (run.status, run.run_result) == (RunStatus.COMPLETED.value, "2")


# ------------------------------------------------------------------ repeats and retries


def test_repeats_with_a_period_run_the_task_that_many_times(
    cluster: Cluster, worker: WorkerProcess
) -> None:
    task_id = queue(cluster, "add", 1, 2, repeats=3, period=1)

    task = cluster.wait_status(task_id, TaskStatus.COMPLETED, timeout=10)

    assert (task.times_run, task.times_failed) == (3, 0)
    runs = cluster.runs(task_id)
    assert [(r.status, r.run_result) for r in runs] == [(RunStatus.COMPLETED.value, "3")] * 3
    starts = [r.start_time for r in runs if r.start_time is not None]
    assert len(starts) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    # without prevent_drift the next run is due `period` after the start of the last one
    assert all(gap >= timedelta(seconds=1) for gap in gaps), gaps
    assert task.last_run_time == starts[-1]


def test_repeats_zero_requeues_the_task_after_every_run(
    cluster: Cluster, worker: WorkerProcess
) -> None:
    task_id = queue(cluster, "add", 1, 2, repeats=0, period=1)

    task = cluster.wait_for(
        lambda: (t := cluster.task(task_id)).times_run is not None and t.times_run >= 3 and t,
        timeout=10,
        what="three runs",
    )

    assert task.status in ACTIVE
    assert task.next_run_time is not None and task.last_run_time is not None
    assert task.next_run_time - task.last_run_time == timedelta(seconds=1)
    assert cluster.sched.stop_task(task_id) == 1


def test_prevent_drift_keeps_runs_on_the_start_time_slots(
    cluster: Cluster, worker: WorkerProcess
) -> None:
    # an odd fraction of a second, so that no run can start exactly on a slot by chance
    start = (utc_now() + timedelta(seconds=0.3)).replace(microsecond=123457)
    if start < utc_now():
        start += timedelta(seconds=1)
    task_id = queue(cluster, "add", 1, 1, repeats=2, period=1, prevent_drift=True, start_time=start)

    task = cluster.wait_status(task_id, TaskStatus.COMPLETED, timeout=10)

    assert task.times_run == 2
    first, second = cluster.runs(task_id)
    assert first.start_time is not None and second.start_time is not None
    assert start <= first.start_time < start + timedelta(seconds=1)
    assert start + timedelta(seconds=1) <= second.start_time < start + timedelta(seconds=2)
    # the slot after the last run, not "start of the last run + period"
    assert task.next_run_time == start + timedelta(seconds=2)


def test_retry_failed_retries_that_many_times_then_fails(
    cluster: Cluster, worker: WorkerProcess
) -> None:
    task_id = queue(cluster, "fail", retry_failed=2, period=0)

    task = cluster.wait_status(task_id, TaskStatus.FAILED)

    assert (task.times_run, task.times_failed) == (0, 3)
    runs = cluster.runs(task_id)
    assert [r.status for r in runs] == [RunStatus.FAILED.value] * 3
    assert all(r.traceback and "TaskBoom: boom" in r.traceback for r in runs)


def test_retry_failed_minus_one_keeps_retrying(cluster: Cluster, worker: WorkerProcess) -> None:
    task_id = queue(cluster, "fail", retry_failed=-1, period=0)

    task = cluster.wait_for(
        lambda: (t := cluster.task(task_id)).times_failed is not None and t.times_failed >= 3 and t,
        what="three failures",
    )

    assert task.status in ACTIVE
    assert cluster.sched.stop_task(task_id) == 1
    cluster.wait_status(task_id, TaskStatus.STOPPED)
    assert len(cluster.runs(task_id)) >= 3


def test_retry_backoff_doubles_the_wait_after_each_failure(
    cluster: Cluster, worker: WorkerProcess
) -> None:
    # fails on its first two runs; web2py's rule would retry at once (period=0)
    task_id = queue(cluster, "flaky", 2, retry_failed=3, retry_backoff=1, period=0)

    task = cluster.wait_status(task_id, TaskStatus.COMPLETED, timeout=20)

    assert (task.times_run, task.times_failed) == (1, 0)
    first, second, third = cluster.runs(task_id)
    assert [r.status for r in (first, second, third)] == ["FAILED", "FAILED", "COMPLETED"]
    waits = [
        (later.start_time - earlier.stop_time).total_seconds()
        for earlier, later in ((first, second), (second, third))
        if later.start_time is not None and earlier.stop_time is not None
    ]
    # due exactly backoff * 2**failures after the end of the failed run; a worker
    # then needs a moment to wake and claim it
    assert len(waits) == 2
    assert 1.0 <= waits[0] < 1.0 + 0.9, waits
    assert 2.0 <= waits[1] < 2.0 + 0.9, waits


def test_requeue_of_a_failed_task_runs_it_again(cluster: Cluster, worker: WorkerProcess) -> None:
    task_id = queue(cluster, "flaky", 1)
    cluster.wait_status(task_id, TaskStatus.FAILED)

    assert cluster.sched.requeue(task_id) == 1

    task = cluster.wait_status(task_id, TaskStatus.COMPLETED)
    assert (task.times_run, task.times_failed) == (1, 0)
    assert [r.status for r in cluster.runs(task_id)] == [
        RunStatus.FAILED.value,
        RunStatus.COMPLETED.value,
    ]
    assert report(cluster, task_id).result == 2
    assert audit_counts(cluster.sched.store.engine)[task_id] == 2


# ------------------------------------------------------------------ output and results


def test_sync_output_shows_partial_output_while_running_and_only_the_last_clear_at_the_end(
    cluster: Cluster, worker: WorkerProcess
) -> None:
    task_id = queue(cluster, "print_progress", 2, 1.0, sync_output=1)

    def partial_output() -> str | None:
        runs = cluster.runs(task_id)
        if runs and runs[-1].status == RunStatus.RUNNING.value and runs[-1].run_output:
            return runs[-1].run_output
        return None

    seen = cluster.wait_for(partial_output, timeout=5, what="output while RUNNING")
    assert cluster.task(task_id).status == TaskStatus.RUNNING.value
    assert seen in ("step 1 of 2\n", "step 2 of 2\n")

    cluster.wait_status(task_id, TaskStatus.COMPLETED)
    (run,) = cluster.runs(task_id)
    assert run.run_output == "done\n"
    assert run.run_result == "2"


def test_large_result_round_trips(cluster: Cluster, worker: WorkerProcess) -> None:
    task_id = queue(cluster, "big_result")

    cluster.wait_status(task_id, TaskStatus.COMPLETED)

    expected = expected_big_result()
    assert len(expected) == 100_000
    assert report(cluster, task_id).result == expected


def test_none_result_completes_the_task_and_leaves_no_run_row(
    cluster: Cluster, worker: WorkerProcess
) -> None:
    task_id = queue(cluster, "returns_none")

    task = cluster.wait_status(task_id, TaskStatus.COMPLETED)

    assert task.times_run == 1
    assert cluster.runs(task_id) == []
    found = report(cluster, task_id)
    assert (found.scheduler_run, found.result) == (None, None)


def test_non_json_result_fails_the_task_with_a_clear_message(
    cluster: Cluster, worker: WorkerProcess
) -> None:
    task_id = queue(cluster, "not_json")

    cluster.wait_status(task_id, TaskStatus.FAILED)

    (run,) = cluster.runs(task_id)
    assert run.traceback is not None
    assert "the result of task 'not_json' is not JSON-serialisable (set)" in run.traceback
    assert run.run_result is None


def test_current_task_gives_id_uuid_name_and_run_id(
    cluster: Cluster, worker: WorkerProcess
) -> None:
    task_id = queue(
        cluster, "whoami", 1, "x", pvars={"k": "v"}, task_name="who am I", uuid="uuid-whoami"
    )

    cluster.wait_status(task_id, TaskStatus.COMPLETED)

    (run,) = cluster.runs(task_id)
    assert report(cluster, task_id).result == {
        "id": task_id,
        "uuid": "uuid-whoami",
        "name": "who am I",
        "function_name": "whoami",
        "run_id": run.id,
        "args": [1, "x"],
        "vars": {"k": "v"},
    }


# ------------------------------------------------------------------ bad rows


def test_unknown_function_written_into_the_table_fails_naming_it(
    cluster: Cluster, worker: WorkerProcess
) -> None:
    task_id = cluster.insert_raw_task(function_name="no_such_function")

    cluster.wait_status(task_id, TaskStatus.FAILED)

    (run,) = cluster.runs(task_id)
    assert run.traceback is not None
    assert "function 'no_such_function' is not registered" in run.traceback
    assert_worker_carries_on(cluster, worker)


def test_malformed_args_written_into_the_table_fail_the_task_not_the_worker(
    cluster: Cluster, worker: WorkerProcess
) -> None:
    task_id = cluster.insert_raw_task(function_name="add", args="[1, 2")

    cluster.wait_status(task_id, TaskStatus.FAILED)

    (run,) = cluster.runs(task_id)
    assert run.traceback is not None
    assert f"args of task {task_id} is not valid JSON" in run.traceback
    assert_worker_carries_on(cluster, worker)


# ------------------------------------------------------------------ workers


def test_idle_worker_picks_up_a_new_task_within_a_second(
    cluster: Cluster, worker: WorkerProcess
) -> None:
    def idle() -> bool:
        stats = cluster.sched.get_workers()[worker.name].worker_stats or {}
        return int(stats.get("empty_runs", 0)) >= 1

    cluster.wait_for(idle, timeout=5, what="the worker to be idle")
    queued_at = time.monotonic()

    task_id = queue(cluster, "add", 1, 1)
    cluster.wait_status(task_id, TaskStatus.COMPLETED, timeout=1.0)

    assert time.monotonic() - queued_at < 1.0


def test_task_of_a_sigkilled_worker_is_requeued_by_another_workers_ticker_and_runs_once_more(
    cluster: Cluster,
) -> None:
    workers = {w.name: w for w in cluster.start_workers(2)}
    task_id = queue(cluster, "append_audit", "once", 1.0)  # records after 1 s
    task, _ = cluster.wait_running(task_id)
    victim = workers.pop(str(task.assigned_worker_name))
    (survivor,) = workers.values()

    victim.kill()

    task = cluster.wait_status(task_id, TaskStatus.COMPLETED, timeout=20)
    assert task.times_run == 1
    lost, done = cluster.runs(task_id)
    assert (lost.worker_name, lost.status) == (victim.name, RunStatus.FAILED.value)
    assert lost.traceback == "worker died during the run; task requeued"
    assert (done.worker_name, done.status) == (survivor.name, RunStatus.COMPLETED.value)
    assert victim.name not in cluster.sched.get_workers()
    # the dead worker's task child must not run on and finish a second, concurrent run
    assert audit_counts(cluster.sched.store.engine) == {task_id: 1}
    assert [pid for pid in victim.orphans if process_running(pid)] == []


def test_two_workers_never_run_the_same_task(cluster: Cluster) -> None:
    supervisor = cluster.start_worker("pair", count=2)
    engine = cluster.sched.store.engine
    # one transaction, so that both idle workers see all 1000 at once and compete
    with engine.begin() as conn:
        queued = [
            cluster.sched.queue_task("append_audit", [f"task {i}"], db=conn) for i in range(1000)
        ]
    task_ids = [q.id for q in queued]
    assert all(q.errors == {} for q in queued)
    scheduler_task = cluster.sched.tables.scheduler_task

    def all_completed() -> bool:
        count = sa.select(sa.func.count()).where(
            scheduler_task.c.status == TaskStatus.COMPLETED.value
        )
        with engine.connect() as conn:
            return conn.execute(count).scalar_one() == len(task_ids)

    cluster.wait_for(all_completed, timeout=60, interval=0.2, what="1000 tasks to complete")

    assert audit_counts(engine) == dict.fromkeys(task_ids, 1)
    scheduler_run = cluster.sched.tables.scheduler_run
    with engine.connect() as conn:
        rows = conn.execute(sa.select(scheduler_run.c.task_id, scheduler_run.c.worker_name)).all()
    assert sorted(task_id for task_id, _ in rows) == task_ids
    assert {name for _, name in rows} == set(supervisor.worker_names)


def test_tasks_queued_in_bulk_each_run_once_with_their_own_arguments(
    cluster: Cluster, worker: WorkerProcess
) -> None:
    queued = cluster.sched.queue_tasks("append_audit", [([f"bulk {i}"], None) for i in range(300)])
    assert queued.errors == {} and queued.count == 300
    engine = cluster.sched.store.engine
    scheduler_task = cluster.sched.tables.scheduler_task

    def all_completed() -> list[int] | None:
        query = sa.select(scheduler_task.c.id, scheduler_task.c.status)
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        done = [row.id for row in rows if row.status == TaskStatus.COMPLETED.value]
        return sorted(done) if len(done) == 300 else None

    task_ids = cluster.wait_for(all_completed, timeout=60, interval=0.2, what="300 bulk tasks")
    assert audit_counts(engine) == dict.fromkeys(task_ids, 1)
    for index in (0, 299):
        report = cluster.sched.task_status(queued.uuids[index], output=True)
        assert isinstance(report, TaskReport)
        assert report.scheduler_task.args == f'["bulk {index}"]'


def test_sigterm_lets_the_running_task_finish_then_the_worker_exits_cleanly(
    cluster: Cluster,
) -> None:
    worker = cluster.start_worker(grace=20)
    task_id = queue(cluster, "sleep_for", 2)
    cluster.wait_running(task_id)

    worker.terminate()

    assert worker.wait(timeout=15) == 0
    task = cluster.task(task_id)
    assert task.status == TaskStatus.COMPLETED.value
    (run,) = cluster.runs(task_id)
    assert (run.status, run.run_result) == (RunStatus.COMPLETED.value, "2")
    assert worker.name not in cluster.sched.get_workers()


def _signal_delivered(pid: int, signum: int) -> bool:
    """The kernel has handed `signum` to the process (it is no longer pending)."""
    mask = 1 << (signum - 1)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("SigPnd", "ShdPnd") and int(value.strip(), 16) & mask:
            return False
    return True


def test_second_sigint_makes_the_worker_exit_at_once_and_requeues_the_task(
    cluster: Cluster,
) -> None:
    worker = cluster.start_worker(grace=60)
    task_id = queue(cluster, "sleep_for", 60)
    cluster.wait_running(task_id)

    worker.send_signal(signal.SIGINT)
    wait_for(lambda: _signal_delivered(worker.pid, signal.SIGINT), timeout=2)
    worker.send_signal(signal.SIGINT)

    assert worker.wait(timeout=5) != 0
    task = cluster.task(task_id)
    assert (task.status, task.assigned_worker_name) == (TaskStatus.QUEUED.value, "")
    (run,) = cluster.runs(task_id)
    assert run.status == RunStatus.STOPPED.value
    assert run.traceback is not None and "requeued" in run.traceback
    assert worker.name not in cluster.sched.get_workers()


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("no_such_module:sched", "cannot import 'no_such_module'"),
        ("lifecycle_app:no_such_object", "has no attribute 'no_such_object'"),
        ("lifecycle_app", "--app must look like 'package.module:object'"),
        ("lifecycle_tasks:TASKS", "not a taskmill Scheduler"),
    ],
)
def test_worker_with_a_bad_app_exits_non_zero_with_a_clear_message(
    cluster: Cluster, app: str, message: str
) -> None:
    result = cluster.run_cli("worker", "--app", app)

    assert result.returncode != 0
    assert message in result.stderr
    assert cluster.sched.get_workers() == {}


def test_max_empty_runs_makes_the_worker_exit_cleanly_once_the_queue_is_done(
    cluster: Cluster,
) -> None:
    # web2py's use: a worker started by cron works off what is queued, then exits
    task_id = queue(cluster, "add", 2, 2)

    worker = cluster.start_worker(env={"TASKMILL_TEST_MAX_EMPTY_RUNS": "1"}, wait=False)

    assert worker.wait(timeout=15) == 0
    assert cluster.task(task_id).status == TaskStatus.COMPLETED.value
    assert cluster.sched.get_workers() == {}


# ------------------------------------------------------------------ cron lines


def next_five_minute_mark(moment: datetime) -> datetime:
    """The first match of "*/5 * * * *" after the minute `moment` falls in."""
    minute = moment.replace(second=0, microsecond=0)
    return minute + timedelta(minutes=5 - minute.minute % 5)


def make_due_now(cluster: Cluster, task_id: int) -> None:
    """Move a queued task's next run to now, as if its cron match had come."""
    table = cluster.sched.tables.scheduler_task
    with cluster.sched.store.engine.begin() as conn:
        conn.execute(
            sa.update(table)
            .where(table.c.id == task_id)
            .values(next_run_time=utc_now().replace(tzinfo=None))
        )
    cluster.sched.store.ring()


def test_cron_task_is_next_due_at_the_following_match_until_its_repeats_are_done(
    cluster: Cluster, worker: WorkerProcess
) -> None:
    due = utc_now() - timedelta(seconds=1)
    task_id = queue(
        cluster, "add", 1, 2, cronline="*/5 * * * *", repeats=2, start_time=due, next_run_time=due
    )

    def run_once() -> Task | None:
        found = cluster.task(task_id)
        return found if found.times_run == 1 else None

    task = cluster.wait_for(run_once, what="the first run")

    assert task.status == TaskStatus.QUEUED.value
    (first,) = cluster.runs(task_id)
    assert first.start_time is not None
    assert task.last_run_time == first.start_time
    assert task.next_run_time == next_five_minute_mark(first.start_time)

    make_due_now(cluster, task_id)
    task = cluster.wait_status(task_id, TaskStatus.COMPLETED)

    assert task.times_run == 2
    first, second = cluster.runs(task_id)
    assert second.start_time is not None
    assert task.next_run_time == next_five_minute_mark(second.start_time)
