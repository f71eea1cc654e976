"""task_status, stop_task and requeue: finding tasks and moving them between statuses."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from taskmill import Scheduler
from taskmill.errors import InvalidReference
from taskmill.records import Run, Task, TaskReport
from taskmill.schema import scheduler_run, scheduler_task
from taskmill.states import TaskStatus


def add(a: int, b: int) -> int:
    return a + b


@pytest.fixture
def sched(sqlite_url: str) -> Iterator[Scheduler]:
    scheduler = Scheduler(sqlite_url, tasks={"add": add, "nightly": add})
    scheduler.create_tables()
    yield scheduler
    scheduler.store.dispose()


def queue(sched: Scheduler, function: str = "add", **kwargs: Any) -> int:
    result = sched.queue_task(function, [1, 2], **kwargs)
    assert result.errors == {}
    assert result.id is not None
    return result.id


def set_task(sched: Scheduler, task_id: int, **values: Any) -> None:
    with sched.store.engine.begin() as conn:
        conn.execute(update(scheduler_task).where(scheduler_task.c.id == task_id).values(**values))


def add_run(sched: Scheduler, task_id: int, **values: Any) -> int:
    with sched.store.engine.begin() as conn:
        result = conn.execute(scheduler_run.insert().values(task_id=task_id, **values))
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


def status_of(sched: Scheduler, task_id: int) -> Task:
    task = sched.task_status(task_id)
    assert isinstance(task, Task)
    return task


# ------------------------------------------------------------------ task_status


def test_task_status_by_id(sched: Scheduler) -> None:
    queue(sched, uuid="first")
    second = queue(sched, uuid="second")
    task = status_of(sched, second)
    assert (task.id, task.uuid, task.status) == (second, "second", "QUEUED")


def test_task_status_by_uuid(sched: Scheduler) -> None:
    first = queue(sched, uuid="first")
    queue(sched, uuid="second")
    task = sched.task_status("first")
    assert isinstance(task, Task)
    assert task.id == first


def test_task_status_by_condition_returns_most_recent_match(sched: Scheduler) -> None:
    queue(sched, "nightly")
    latest = queue(sched, "nightly")
    queue(sched, "add")
    task = sched.task_status(sched.tables.scheduler_task.c.function_name == "nightly")
    assert isinstance(task, Task)
    assert task.id == latest


def test_task_status_by_condition_on_task_name(sched: Scheduler) -> None:
    wanted = queue(sched, task_name="nightly")
    queue(sched, task_name="hourly")
    task = sched.task_status(sched.tables.scheduler_task.c.task_name == "nightly")
    assert isinstance(task, Task)
    assert task.id == wanted


@pytest.mark.parametrize("ref", [999, "no-such-uuid"])
def test_task_status_of_missing_task_is_none(sched: Scheduler, ref: int | str) -> None:
    queue(sched)
    assert sched.task_status(ref) is None
    assert sched.task_status(ref, output=True) is None


def test_task_status_condition_without_match_is_none(sched: Scheduler) -> None:
    queue(sched)
    assert sched.task_status(scheduler_task.c.task_name == "missing") is None


def test_task_status_record_is_indexable_like_a_pydal_row(sched: Scheduler) -> None:
    task = status_of(sched, queue(sched, uuid="u-1"))
    assert task["uuid"] == "u-1"
    assert task["status"] == "QUEUED"
    with pytest.raises(KeyError):
        task["no_such_column"]


def test_task_status_times_are_aware_utc(sched: Scheduler) -> None:
    task = status_of(sched, queue(sched, start_time=datetime(2030, 1, 1, 8, 0)))
    assert task.start_time == datetime(2030, 1, 1, 8, 0, tzinfo=UTC)
    assert task.start_time is not None and task.start_time.tzinfo is not None


@pytest.mark.parametrize("ref", [True, False, 1.0, "", [1], None], ids=repr)
def test_invalid_reference_raises(sched: Scheduler, ref: Any) -> None:
    with pytest.raises(InvalidReference):
        sched.task_status(ref)


@pytest.mark.parametrize("ref", [True, 1.5, "", [1]], ids=repr)
def test_invalid_reference_raises_for_stop_and_requeue(sched: Scheduler, ref: Any) -> None:
    with pytest.raises(InvalidReference):
        sched.stop_task(ref)
    with pytest.raises(InvalidReference):
        sched.requeue(ref)


def test_invalid_reference_is_a_value_error(sched: Scheduler) -> None:
    with pytest.raises(ValueError, match="an empty string is not a task uuid"):
        sched.task_status("")


# ------------------------------------------------------------------ output=True


def test_output_without_runs_has_no_run_and_no_result(sched: Scheduler) -> None:
    task_id = queue(sched)
    report = sched.task_status(task_id, output=True)
    assert isinstance(report, TaskReport)
    assert report.scheduler_task.id == task_id
    assert report.scheduler_run is None
    assert report.result is None


def test_output_has_latest_run_and_decoded_result(sched: Scheduler) -> None:
    task_id = queue(sched)
    started = datetime(2030, 1, 1, 8, 0)
    add_run(sched, task_id, status="FAILED", run_result=None, traceback="boom", start_time=started)
    latest = add_run(
        sched,
        task_id,
        status="COMPLETED",
        run_result='{"total": 3, "items": [1, 2]}',
        run_output="adding\n",
        start_time=started + timedelta(minutes=1),
    )
    report = sched.task_status(task_id, output=True)
    assert isinstance(report, TaskReport)
    assert isinstance(report.scheduler_task, Task)
    assert isinstance(report.scheduler_run, Run)
    assert report.scheduler_run.id == latest
    assert report.scheduler_run.status == "COMPLETED"
    assert report.scheduler_run.run_output == "adding\n"
    assert report.scheduler_run.start_time == datetime(2030, 1, 1, 8, 1, tzinfo=UTC)
    assert report.result == {"total": 3, "items": [1, 2]}
    assert report["result"] == report.result
    assert report["scheduler_run"] is report.scheduler_run


def test_output_result_that_is_not_json_is_none(sched: Scheduler) -> None:
    task_id = queue(sched)
    add_run(sched, task_id, status="COMPLETED", run_result="<not json>")
    report = sched.task_status(task_id, output=True)
    assert isinstance(report, TaskReport)
    assert report.scheduler_run is not None
    assert report.result is None


def test_output_by_uuid_reports_that_task(sched: Scheduler) -> None:
    queue(sched, uuid="other")
    task_id = queue(sched, uuid="mine")
    add_run(sched, task_id, status="COMPLETED", run_result="7")
    report = sched.task_status("mine", output=True)
    assert isinstance(report, TaskReport)
    assert report.scheduler_task.id == task_id
    assert report.result == 7


# ------------------------------------------------------------------ stop_task


@pytest.mark.parametrize("status", ["QUEUED", "ASSIGNED", "RUNNING"])
def test_stop_task_stops_an_active_task(sched: Scheduler, status: str) -> None:
    task_id = queue(sched)
    set_task(sched, task_id, status=status)
    assert sched.stop_task(task_id) == 1
    assert status_of(sched, task_id).status == "STOPPED"


@pytest.mark.parametrize("status", ["COMPLETED", "FAILED", "TIMEOUT", "STOPPED", "EXPIRED"])
def test_stop_task_leaves_a_finished_task_alone(sched: Scheduler, status: str) -> None:
    task_id = queue(sched)
    set_task(sched, task_id, status=status)
    assert sched.stop_task(task_id) == 0
    assert status_of(sched, task_id).status == status


def test_stop_task_by_uuid(sched: Scheduler) -> None:
    task_id = queue(sched, uuid="to-stop")
    assert sched.stop_task("to-stop") == 1
    assert status_of(sched, task_id).status == "STOPPED"


def test_stop_task_by_condition_counts_every_match(sched: Scheduler) -> None:
    ids = [queue(sched, group_name="batch") for _ in range(3)]
    other = queue(sched, group_name="main")
    assert sched.stop_task(scheduler_task.c.group_name == "batch") == 3
    assert [status_of(sched, i).status for i in ids] == ["STOPPED"] * 3
    assert status_of(sched, other).status == "QUEUED"


def test_stop_task_of_missing_task_is_zero(sched: Scheduler) -> None:
    assert sched.stop_task(42) == 0


# ------------------------------------------------------------------ requeue


def test_requeue_puts_a_stopped_task_back_to_queued(sched: Scheduler) -> None:
    task_id = queue(sched)
    sched.stop_task(task_id)
    assert sched.requeue(task_id) == 1
    assert status_of(sched, task_id).status == "QUEUED"


def test_requeue_failed_task_resets_times_failed(sched: Scheduler) -> None:
    task_id = queue(sched, start_time=datetime(2030, 1, 1))
    set_task(sched, task_id, status="FAILED", times_failed=3, times_run=2, assigned_worker_name="w")
    before = sched.store.now()
    assert sched.requeue(task_id) == 1
    task = status_of(sched, task_id)
    assert task.status == "QUEUED"
    assert task.times_failed == 0
    assert task.times_run == 2
    assert task.assigned_worker_name == ""
    assert task.next_run_time is not None
    assert before <= task.next_run_time <= sched.store.now()


def test_requeue_timeout_task(sched: Scheduler) -> None:
    task_id = queue(sched)
    set_task(sched, task_id, status="TIMEOUT", times_failed=1)
    assert sched.requeue(task_id) == 1
    assert (status_of(sched, task_id).status, status_of(sched, task_id).times_failed) == (
        "QUEUED",
        0,
    )


def test_requeue_expired_task_clears_its_passed_stop_time(sched: Scheduler) -> None:
    task_id = queue(sched)
    set_task(sched, task_id, status="EXPIRED", stop_time=datetime(2020, 1, 1))
    assert sched.requeue(task_id) == 1
    task = status_of(sched, task_id)
    assert task.status == "QUEUED"
    assert task.stop_time is None


def test_requeue_keeps_a_stop_time_still_ahead(sched: Scheduler) -> None:
    task_id = queue(sched, stop_time=datetime(2040, 1, 1))
    set_task(sched, task_id, status="FAILED")
    assert sched.requeue(task_id) == 1
    assert status_of(sched, task_id).stop_time == datetime(2040, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("status", ["QUEUED", "ASSIGNED", "RUNNING", "COMPLETED"])
def test_requeue_leaves_other_statuses_alone(sched: Scheduler, status: str) -> None:
    task_id = queue(sched)
    set_task(sched, task_id, status=status, times_failed=1, stop_time=datetime(2020, 1, 1))
    assert sched.requeue(task_id) == 0
    task = status_of(sched, task_id)
    assert task.status == status
    assert task.times_failed == 1
    assert task.stop_time == datetime(2020, 1, 1, tzinfo=UTC)


def test_requeue_by_condition_counts_only_requeueable_tasks(sched: Scheduler) -> None:
    statuses = [TaskStatus.FAILED, TaskStatus.STOPPED, TaskStatus.COMPLETED, TaskStatus.QUEUED]
    ids = [queue(sched, group_name="batch") for _ in statuses]
    for task_id, status in zip(ids, statuses, strict=True):
        set_task(sched, task_id, status=status.value)
    assert sched.requeue(scheduler_task.c.group_name == "batch") == 2
    assert [status_of(sched, i).status for i in ids] == [
        "QUEUED",
        "QUEUED",
        "COMPLETED",
        "QUEUED",
    ]


def test_requeue_of_missing_task_is_zero(sched: Scheduler) -> None:
    assert sched.requeue("nope") == 0


# ------------------------------------------------------------------ worker control


@pytest.fixture
def crew(sched: Scheduler) -> Scheduler:
    """Three registered workers: a (main), b (main, slow), c (slow)."""
    for name, groups in (("a", ["main"]), ("b", ["main", "slow"]), ("c", ["slow"])):
        sched.store.register_worker(name, groups, {"total": 0}, dead_after=sched.dead_after)
    return sched


def worker_statuses(sched: Scheduler) -> dict[str, str | None]:
    return {name: w.status for name, w in sched.get_workers().items()}


def test_get_workers_describes_each_worker(crew: Scheduler) -> None:
    found = crew.get_workers()
    assert list(found) == ["a", "b", "c"]
    worker = found["b"]
    assert (worker.status, worker.is_ticker) == ("ACTIVE", False)
    assert worker.group_names == ["main", "slow"]
    assert worker.worker_stats == {"total": 0}
    assert worker.last_heartbeat is not None and worker.last_heartbeat.tzinfo is not None


def test_disable_defaults_to_the_schedulers_groups(crew: Scheduler) -> None:
    assert crew.disable() == 2
    assert worker_statuses(crew) == {"a": "DISABLED", "b": "DISABLED", "c": "ACTIVE"}


def test_resume_by_group_name_string(crew: Scheduler) -> None:
    crew.disable(group_names=["main", "slow"])
    assert crew.resume("slow") == 2
    assert worker_statuses(crew) == {"a": "DISABLED", "b": "ACTIVE", "c": "ACTIVE"}


def test_terminate_by_worker_name(crew: Scheduler) -> None:
    assert crew.terminate(worker_name="c") == 1
    assert worker_statuses(crew) == {"a": "ACTIVE", "b": "ACTIVE", "c": "TERMINATE"}


def test_kill_by_worker_names(crew: Scheduler) -> None:
    assert crew.kill(worker_name=["a", "c", "nobody"]) == 2
    assert worker_statuses(crew) == {"a": "KILL", "b": "ACTIVE", "c": "KILL"}


def test_control_of_an_unserved_group_changes_nothing(crew: Scheduler) -> None:
    assert crew.kill("reports") == 0
    assert set(worker_statuses(crew).values()) == {"ACTIVE"}


@pytest.mark.parametrize("keyword", ["group_names", "worker_name"])
def test_control_of_an_empty_list_changes_nothing(crew: Scheduler, keyword: str) -> None:
    assert crew.kill(**{keyword: []}) == 0
    assert set(worker_statuses(crew).values()) == {"ACTIVE"}
