"""A task child that dies, and one that cannot be restarted: the run ends, the task is
never left ASSIGNED to a live worker, and the worker keeps serving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from chaos_support import APP, full_only, on_backends
from chaos_tasks import TASKS
from harness import Cluster, cluster_for_test

from taskmill import RunStatus, TaskStatus

BREAK_ENV = "TASKMILL_TEST_BREAK_APP"
pytestmark = on_backends("sqlite")


@pytest.fixture
def cluster(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> Iterator[Cluster]:
    env = {BREAK_ENV: str(tmp_path / "app-state")}
    with cluster_for_test(request, db_url, app=APP, tasks=TASKS, env=env) as c:
        yield c


def test_child_killed_while_the_worker_starts_is_replaced_not_fatal(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A worker used to exit with code 2 (a broken app) when its first child was killed
    while starting, and a `-n` supervisor then stopped every other worker."""
    marker = tmp_path / "killed-once"
    worker = cluster.start_worker(env={"TASKMILL_TEST_KILL_CHILD_ONCE": str(marker)})
    assert marker.exists(), "the first child was killed"
    assert "task child killed by signal 9 while starting; starting another" in worker.log()
    queued = cluster.sched.queue_task("add", [1, 2])
    assert queued.id is not None
    cluster.wait_status(queued.id, TaskStatus.COMPLETED)
    assert worker.alive()


@full_only  # also in tests/integration/test_worker_lifecycle.py
def test_child_that_exits_mid_run_fails_its_task_with_a_clear_message(cluster: Cluster) -> None:
    worker = cluster.start_worker()
    crashed = cluster.sched.queue_task("exit_child", [7])
    assert crashed.id is not None
    task = cluster.wait_status(crashed.id, TaskStatus.FAILED)
    assert task.times_failed == 1
    [run] = cluster.runs(crashed.id)
    assert run.status == RunStatus.FAILED.value
    assert "the task's child process died (exit code 7) during the run" in (run.traceback or "")

    after = cluster.sched.queue_task("add", [1, 2])
    assert after.id is not None
    cluster.wait_status(after.id, TaskStatus.COMPLETED)
    assert cluster.sched.task_status(after.id, output=True).result == 3  # type: ignore[union-attr]
    assert worker.alive()


def test_task_is_requeued_not_stranded_when_the_child_cannot_be_restarted(
    cluster: Cluster,
) -> None:
    state = Path(cluster.extra_env[BREAK_ENV])
    worker = cluster.start_worker()
    queued = cluster.sched.queue_task("crash_and_break_app", [str(state)])
    assert queued.id is not None

    # the child dies and its replacement fails to import the app: the run ends and the
    # task goes back to the queue (the worker takes it again, and again fails to start a
    # child), instead of staying ASSIGNED for ever to a worker that is alive and well
    cluster.wait_for(
        lambda: worker.log().count("task child unavailable") >= 2, timeout=30, what="retries"
    )
    task = cluster.task(queued.id)
    assert task.status in {TaskStatus.QUEUED.value, TaskStatus.ASSIGNED.value}
    assert task.times_failed == 0, "a child that cannot start is not the task's failure"

    state.write_text("repaired")
    task = cluster.wait_status(queued.id, TaskStatus.COMPLETED, timeout=20)
    assert cluster.sched.task_status(queued.id, output=True).result == "ran again"  # type: ignore[union-attr]
    assert worker.alive()
