"""Tasks that abuse their worker: print 100 MB, return 10 MB, leak memory, ignore
SIGTERM. The run ends with a clear record, the worker stays healthy and serves the
next task. The limits are the worker's options (docs/guarantees.md, docs/operations.md).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chaos_support import APP, full_only, on_backends
from chaos_tasks import TASKS
from harness import Cluster, cluster_for_test, process_running

from taskmill import RunStatus, TaskStatus
from taskmill.protocol import MAX_OUTPUT_CHARS, MAX_RESULT_BYTES

MB = 1024 * 1024


@pytest.fixture
def cluster(request: pytest.FixtureRequest, db_url: str) -> Iterator[Cluster]:
    with cluster_for_test(request, db_url, app=APP, tasks=TASKS) as c:
        yield c


@pytest.fixture
def sqlite_cluster(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[Cluster]:
    with cluster_for_test(request, sqlite_url, app=APP, tasks=TASKS) as c:
        yield c


def queue(cluster: Cluster, function: str, *args: object, **options: object) -> int:
    queued = cluster.sched.queue_task(function, list(args), **options)  # type: ignore[arg-type]
    assert queued.errors == {} and queued.id is not None, queued.errors
    return queued.id


def assert_still_serving(cluster: Cluster) -> None:
    task_id = queue(cluster, "add", 20, 22)
    cluster.wait_status(task_id, TaskStatus.COMPLETED, timeout=20)
    report = cluster.sched.task_status(task_id, output=True)
    assert report is not None and report.result == 42  # type: ignore[union-attr]


@on_backends("mysql")  # where the whole output once made the outcome unwritable
def test_task_printing_100_mb_keeps_the_last_megabyte_of_output(cluster: Cluster) -> None:
    worker = cluster.start_worker()
    task_id = queue(cluster, "shout", 100, timeout=120)
    cluster.wait_status(task_id, TaskStatus.COMPLETED, timeout=120)
    [run] = cluster.runs(task_id)
    output = run.run_output or ""
    note, _, kept = output.partition("\n")
    assert note.startswith(f"[taskmill: output over {MAX_OUTPUT_CHARS} characters; the first ")
    assert kept.endswith("the end\n")
    assert len(kept) == MAX_OUTPUT_CHARS
    dropped = int(note.split("the first ")[1].split()[0])
    assert dropped + len(kept) == 100 * MB // 100 * 100 + len("the end\n")
    assert_still_serving(cluster)
    assert worker.alive()


@on_backends("sqlite")
def test_result_over_the_limit_fails_the_run_with_a_clear_message(cluster: Cluster) -> None:
    worker = cluster.start_worker()
    task_id = queue(cluster, "big_return", 10, timeout=60)
    task = cluster.wait_status(task_id, TaskStatus.FAILED, timeout=60)
    assert task.times_failed == 1
    [run] = cluster.runs(task_id)
    assert run.status == RunStatus.FAILED.value
    size = 10 * MB + 2  # the string's quotes
    assert (
        f"the result of task 'big_return' is {size} bytes as JSON; the limit is "
        f"{MAX_RESULT_BYTES} (taskmill worker --max-result-bytes)"
    ) in (run.traceback or "")
    assert_still_serving(cluster)
    assert worker.alive()


@full_only
def test_max_result_bytes_raised_stores_a_10_mb_result(sqlite_cluster: Cluster) -> None:
    cluster = sqlite_cluster
    cluster.start_worker(args=["--max-result-bytes", str(11 * MB)])
    task_id = queue(cluster, "big_return", 10, timeout=60)
    cluster.wait_status(task_id, TaskStatus.COMPLETED, timeout=60)
    report = cluster.sched.task_status(task_id, output=True)
    assert report is not None and report.result == "x" * (10 * MB)  # type: ignore[union-attr]


@pytest.mark.parametrize("pool_args", [[], ["--concurrency", "2"]], ids=["single", "pool"])
def test_max_tasks_per_child_replaces_the_child_after_n_tasks(
    sqlite_cluster: Cluster, pool_args: list[str]
) -> None:
    """One task at a time, so with a pool of two the same slot's child may take
    them all or the other may: either way no child runs more than 2."""
    cluster = sqlite_cluster
    cluster.start_worker(args=["--max-tasks-per-child", "2", *pool_args])
    if pool_args:
        pids = []
        for _ in range(6):
            task_id = queue(cluster, "leak", 0)
            cluster.wait_status(task_id, TaskStatus.COMPLETED, timeout=20)
            pids.append(cluster.sched.task_status(task_id, output=True).result)  # type: ignore[union-attr]
        assert max(pids.count(pid) for pid in pids) <= 2, pids
        assert len(set(pids)) >= 3, pids
        return
    pids = []
    for _ in range(5):
        task_id = queue(cluster, "leak", 0)
        cluster.wait_status(task_id, TaskStatus.COMPLETED, timeout=20)
        pids.append(cluster.sched.task_status(task_id, output=True).result)  # type: ignore[union-attr]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    assert not process_running(pids[0])


@full_only
def test_leaking_child_is_replaced_once_over_max_memory_per_child(
    sqlite_cluster: Cluster,
) -> None:
    cluster = sqlite_cluster
    worker = cluster.start_worker(args=["--max-memory-per-child", str(150 * MB)])
    pids = []
    for _ in range(4):
        task_id = queue(cluster, "leak", 60)  # 60 MB kept alive after each run
        cluster.wait_status(task_id, TaskStatus.COMPLETED, timeout=20)
        pids.append(cluster.sched.task_status(task_id, output=True).result)  # type: ignore[union-attr]
    # a fresh child (the app and SQLAlchemy imported) holds 30-90 MB: under 150 MB
    # after one leak, over it after two, when it is replaced
    assert pids[0] == pids[1] != pids[2] == pids[3], pids
    assert "(--max-memory-per-child 157286400)" in worker.log()


@full_only
def test_task_ignoring_sigterm_is_killed_at_its_timeout(sqlite_cluster: Cluster) -> None:
    cluster = sqlite_cluster
    worker = cluster.start_worker()
    task_id = queue(cluster, "ignore_sigterm", 60, timeout=2)
    started = time.monotonic()
    task = cluster.wait_status(task_id, TaskStatus.TIMEOUT, timeout=20)
    assert time.monotonic() - started < 10
    assert task.times_failed == 1
    assert_still_serving(cluster)
    assert worker.alive()


def test_worker_stops_within_grace_when_its_task_ignores_sigterm(
    sqlite_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = sqlite_cluster
    worker = cluster.start_worker(grace=1.0)
    marker = tmp_path / "started"
    task_id = queue(cluster, "ignore_sigterm", 60, str(marker), timeout=120)
    cluster.wait_for(marker.exists, timeout=20, what="the task to start")
    task_pid = int(marker.read_text())

    stopped_at = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    os.kill(task_pid, signal.SIGTERM)  # as a control-group kill would: it is ignored
    assert worker.wait(timeout=15) == 0
    assert time.monotonic() - stopped_at < 1.0 + 5.0
    cluster.wait_for(lambda: not process_running(task_pid), timeout=5, what="the task's end")
    task = cluster.task(task_id)
    assert task.status == TaskStatus.QUEUED.value, "interrupted by shutdown: requeued"
    assert task.times_failed == 0
