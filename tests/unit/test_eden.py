"""The Eden layer (taskmill.eden.TaskManager) without worker processes.

schedule_task's duplicate check, reset's rules, run_async's two paths (inline when no
worker is alive, queued when one is) and the hooks around a run, on a SQLite file. The
same rules on PostgreSQL and MariaDB, the hooks in real worker processes and the
duplicate check racing between processes are in tests/integration/test_eden_workers.py.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, update

from taskmill import Scheduler, TaskManager
from taskmill.apps import load_app, load_app_with_hooks
from taskmill.child import TaskRunner
from taskmill.debug import run_stored_task
from taskmill.eden import USER_ID_KEY, pop_user_id, task_hooks
from taskmill.errors import ConfigurationError, InvalidTask, TaskHookError
from taskmill.records import Task
from taskmill.schema import scheduler_task, scheduler_worker
from taskmill.states import RunStatus, TaskStatus


class Boom(Exception):
    pass


class App:
    """An application's hooks and tasks, recording every call in order."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.user: Any = None
        self.fail_commit = False

    @contextmanager
    def impersonate(self, user_id: Any) -> Iterator[None]:
        previous, self.user = self.user, user_id
        self.events.append(f"impersonate {user_id}")
        try:
            yield
        finally:
            self.user = previous
            self.events.append(f"end impersonation {user_id}")

    def commit(self) -> None:
        self.events.append("commit")
        if self.fail_commit:
            raise Boom("commit refused")

    def rollback(self) -> None:
        self.events.append("rollback")

    # the tasks
    def whoami(self) -> Any:
        self.events.append("task")
        return self.user

    def fail(self) -> None:
        self.events.append("task")
        raise Boom("task failed")

    def echo(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.events.append("task")
        return {"args": args, "vars": kwargs}

    def not_json(self) -> set[int]:
        self.events.append("task")
        return {1}


def make_manager(url: str, app: App) -> TaskManager:
    sched = Scheduler(
        url,
        tasks={
            "whoami": app.whoami,
            "fail": app.fail,
            "echo": app.echo,
            "not_json": app.not_json,
            "msg_process_outbox": app.echo,
        },
    )
    sched.create_tables()
    return TaskManager(sched, impersonate=app.impersonate, commit=app.commit, rollback=app.rollback)


@pytest.fixture
def app() -> App:
    return App()


@pytest.fixture
def tm(sqlite_url: str, app: App) -> Iterator[TaskManager]:
    manager = make_manager(sqlite_url, app)
    yield manager
    manager.scheduler.store.dispose()


def stored(tm: TaskManager, task_id: int) -> Task:
    task = tm.scheduler.task_status(task_id)
    assert isinstance(task, Task)
    return task


def all_tasks(tm: TaskManager) -> list[Task]:
    with tm.scheduler.store.reading() as conn:
        rows = conn.execute(scheduler_task.select().order_by(scheduler_task.c.id))
        return [Task.from_mapping(row._mapping) for row in rows]


def set_task(tm: TaskManager, task_id: int, **values: Any) -> None:
    with tm.scheduler.store.transaction() as conn:
        conn.execute(update(scheduler_task).where(scheduler_task.c.id == task_id).values(**values))


def add_worker(tm: TaskManager, groups: list[str], last_heartbeat: datetime) -> None:
    with tm.scheduler.store.transaction() as conn:
        conn.execute(
            insert(scheduler_worker).values(
                worker_name=f"{socket.gethostname()}#test-{len(groups)}",
                first_heartbeat=last_heartbeat.replace(tzinfo=None),
                last_heartbeat=last_heartbeat.replace(tzinfo=None),
                status="ACTIVE",
                is_ticker=False,
                group_names=groups,
                worker_stats="{}",
            )
        )


def utc_now() -> datetime:
    return datetime.now(UTC)


# ----------------------------------------------------------------- the object


def test_tasks_is_the_schedulers_own_registry(tm: TaskManager) -> None:
    assert tm.tasks is tm.scheduler.tasks
    tm.tasks["late"] = len
    assert tm.scheduler.queue_task("late", [[1, 2]]).errors == {}


def test_scheduler_must_be_a_scheduler() -> None:
    with pytest.raises(ConfigurationError, match="needs a taskmill Scheduler"):
        TaskManager("sqlite://")  # type: ignore[arg-type]


def test_hooks_must_be_callable(tm: TaskManager) -> None:
    with pytest.raises(ConfigurationError, match="commit must be callable"):
        TaskManager(tm.scheduler, commit="db.commit")  # type: ignore[arg-type]


def test_app_spec_naming_a_task_manager_gives_its_scheduler_and_hooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    module = tmp_path / "eden_spec_app.py"
    module.write_text(
        "from taskmill import Scheduler, TaskManager\n"
        f"sched = Scheduler({sqlite_url!r})\n"
        "tm = TaskManager(sched)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "eden_spec_app", raising=False)
    sched, manager = load_app_with_hooks("eden_spec_app:tm")
    assert manager is not None
    assert manager.scheduler is sched
    assert load_app("eden_spec_app:tm") is sched
    assert load_app_with_hooks("eden_spec_app:sched") == (sched, None)


# --------------------------------------------------------------- schedule_task


def test_schedule_task_queues_and_returns_the_id(tm: TaskManager) -> None:
    task_id = tm.schedule_task(
        "msg_process_outbox", vars={"contact_method": "EMAIL"}, period=300, repeats=0
    )
    assert isinstance(task_id, int)
    task = stored(tm, task_id)
    assert task.status == TaskStatus.QUEUED.value
    assert (task.function_name, task.task_name) == ("msg_process_outbox", "msg_process_outbox")
    assert (task.period, task.repeats) == (300, 0)
    assert json.loads(task.vars or "") == {"contact_method": "EMAIL"}
    assert json.loads(task.args or "") == []


def test_schedule_task_leaves_unset_options_at_queue_task_defaults(tm: TaskManager) -> None:
    task = stored(tm, int(tm.schedule_task("echo")))
    assert (task.repeats, task.period, task.timeout, task.retry_failed) == (1, 60, 60, 0)
    assert (task.group_name, task.enabled, task.sync_output) == ("main", True, 0)


def test_schedule_task_with_a_function_name_other_than_the_task(tm: TaskManager) -> None:
    task = stored(tm, int(tm.schedule_task("nightly echo", function_name="echo")))
    assert (task.function_name, task.task_name) == ("echo", "nightly echo")


def test_schedule_task_passes_cronline_and_other_queue_options(tm: TaskManager) -> None:
    task_id = tm.schedule_task(
        "echo", cronline="0 3 * * *", repeats=0, group_name="maintenance", priority=5
    )
    task = stored(tm, int(task_id))
    assert (task.cronline, task.group_name, task.priority) == ("0 3 * * *", "maintenance", 5)
    assert task.next_run_time is not None
    assert (task.next_run_time.hour, task.next_run_time.minute) == (3, 0)


@pytest.mark.parametrize(
    ("args", "vars", "field"),
    [
        ([{1, 2}], None, "args"),
        ([], {"when": datetime(2024, 1, 1)}, "vars"),
        ([float("nan")], None, "args"),
        ("not a list", None, "args"),
        ([], ["not", "a", "dict"], "vars"),
    ],
)
def test_schedule_task_refuses_arguments_that_are_not_json(
    tm: TaskManager, args: Any, vars: Any, field: str
) -> None:
    with pytest.raises(InvalidTask) as raised:
        tm.schedule_task("echo", args=args, vars=vars)
    assert field in raised.value.errors
    assert all_tasks(tm) == []


def test_schedule_task_refuses_an_unknown_function(tm: TaskManager) -> None:
    with pytest.raises(InvalidTask, match="no task named 'nope'"):
        tm.schedule_task("nope")
    assert all_tasks(tm) == []


def test_schedule_task_refuses_the_reserved_vars_key(tm: TaskManager) -> None:
    with pytest.raises(InvalidTask, match="reserved"):
        tm.schedule_task("echo", vars={USER_ID_KEY: 7})


def test_schedule_task_refuses_args_given_as_queue_task_keywords(tm: TaskManager) -> None:
    with pytest.raises(TypeError, match="use task, args and vars"):
        tm.schedule_task("echo", pvars={"a": 1})


def test_user_id_is_stored_in_vars_under_the_reserved_key(tm: TaskManager) -> None:
    task = stored(tm, int(tm.schedule_task("echo", vars={"a": 1}, user_id=7)))
    assert json.loads(task.vars or "") == {"a": 1, USER_ID_KEY: 7}


@pytest.mark.parametrize("user_id", [True, 1.5, [7], {"id": 7}])
def test_user_id_must_be_an_int_or_a_str(tm: TaskManager, user_id: Any) -> None:
    with pytest.raises(InvalidTask, match="user_id must be an int or a str"):
        tm.schedule_task("echo", user_id=user_id)


def test_user_id_needs_an_impersonate_hook(tm: TaskManager) -> None:
    bare = TaskManager(tm.scheduler)
    with pytest.raises(ConfigurationError, match="impersonate"):
        bare.schedule_task("echo", user_id=7)
    with pytest.raises(ConfigurationError, match="impersonate"):
        bare.run_async("echo", user_id=7)
    assert all_tasks(tm) == []


# ------------------------------------------------------------- duplicate check


def test_duplicate_of_an_active_task_queues_nothing(tm: TaskManager) -> None:
    first = tm.schedule_task("echo", args=[1, "x"], vars={"a": 1}, period=300, repeats=0)
    assert isinstance(first, int)
    assert tm.schedule_task("echo", args=[1, "x"], vars={"a": 1}, period=300) is False
    assert [t.id for t in all_tasks(tm)] == [first]


def test_duplicate_check_compares_decoded_vars_not_text(tm: TaskManager) -> None:
    assert isinstance(tm.schedule_task("echo", vars={"a": 1, "b": 2}), int)
    assert tm.schedule_task("echo", vars={"b": 2, "a": 1}) is False
    assert len(all_tasks(tm)) == 1


def test_duplicate_check_sees_rows_written_with_other_json_spacing(tm: TaskManager) -> None:
    # as web2py (or a hand) might have written them: spaces, other key order
    queued = tm.scheduler.queue_task("echo", args='[1, "x"]', vars='{ "b": 2, "a": 1 }')
    assert queued.errors == {}
    assert queued.id is not None
    set_task(tm, queued.id, args='[1, "x"]', vars='{ "b": 2, "a": 1 }')
    assert tm.schedule_task("echo", args=[1, "x"], vars={"a": 1, "b": 2}) is False


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"args": [1]}, {"args": [2]}),
        ({"args": [1, 2]}, {"args": [2, 1]}),
        ({"vars": {"a": 1}}, {"vars": {"a": 1, "b": None}}),
        ({"vars": {"a": True}}, {"vars": {"a": 1}}),
        ({"vars": {"a": 1}}, {"vars": {"a": "1"}}),
        ({"function_name": "echo"}, {"function_name": "whoami"}),
        ({"user_id": 7}, {"user_id": 8}),
        ({"user_id": 7}, {}),
    ],
)
def test_tasks_that_differ_are_not_duplicates(
    tm: TaskManager, first: dict[str, Any], second: dict[str, Any]
) -> None:
    assert isinstance(tm.schedule_task("echo", **first), int)
    assert isinstance(tm.schedule_task("echo", **second), int)


def test_same_user_makes_a_duplicate(tm: TaskManager) -> None:
    assert isinstance(tm.schedule_task("echo", vars={"a": 1}, user_id=7), int)
    assert tm.schedule_task("echo", vars={"a": 1}, user_id=7) is False


@pytest.mark.parametrize("status", [TaskStatus.ASSIGNED, TaskStatus.RUNNING])
def test_assigned_and_running_tasks_are_duplicates(tm: TaskManager, status: TaskStatus) -> None:
    first = int(tm.schedule_task("echo", args=[1]))
    set_task(tm, first, status=status.value)
    assert tm.schedule_task("echo", args=[1]) is False


@pytest.mark.parametrize(
    "status",
    [
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.TIMEOUT,
        TaskStatus.STOPPED,
        TaskStatus.EXPIRED,
    ],
)
def test_finished_tasks_are_not_duplicates(tm: TaskManager, status: TaskStatus) -> None:
    first = int(tm.schedule_task("echo", args=[1]))
    set_task(tm, first, status=status.value)
    assert isinstance(tm.schedule_task("echo", args=[1]), int)


def test_ignore_duplicate_queues_another_copy(tm: TaskManager) -> None:
    first = tm.schedule_task("echo", args=[1])
    second = tm.schedule_task("echo", args=[1], ignore_duplicate=True)
    assert isinstance(first, int)
    assert isinstance(second, int)
    assert second != first
    assert len(all_tasks(tm)) == 2


def test_invalid_options_raise_even_when_a_duplicate_exists(tm: TaskManager) -> None:
    tm.schedule_task("echo", args=[1])
    with pytest.raises(InvalidTask) as raised:
        tm.schedule_task("echo", args=[1], repeats=-1)
    assert "repeats" in raised.value.errors


# ----------------------------------------------------------------------- reset


@pytest.mark.parametrize(
    "status", [TaskStatus.FAILED, TaskStatus.TIMEOUT, TaskStatus.STOPPED, TaskStatus.EXPIRED]
)
def test_reset_puts_a_finished_task_back_to_queued_with_counters_cleared(
    tm: TaskManager, status: TaskStatus
) -> None:
    task_id = int(tm.schedule_task("echo", repeats=5))
    yesterday = (utc_now() - timedelta(days=1)).replace(tzinfo=None)
    set_task(
        tm,
        task_id,
        status=status.value,
        times_run=3,
        times_failed=2,
        next_run_time=yesterday,
        assigned_worker_name="gone#1",
    )
    before = utc_now()
    assert tm.reset(task_id) is True
    task = stored(tm, task_id)
    assert task.status == TaskStatus.QUEUED.value
    assert (task.times_run, task.times_failed, task.assigned_worker_name) == (0, 0, "")
    assert task.next_run_time is not None
    assert task.next_run_time >= before - timedelta(seconds=1)


@pytest.mark.parametrize(
    "status",
    [TaskStatus.QUEUED, TaskStatus.ASSIGNED, TaskStatus.RUNNING, TaskStatus.COMPLETED],
)
def test_reset_changes_nothing_for_other_statuses(tm: TaskManager, status: TaskStatus) -> None:
    task_id = int(tm.schedule_task("echo", repeats=5))
    set_task(tm, task_id, status=status.value, times_run=3, times_failed=2)
    before = stored(tm, task_id)
    assert tm.reset(task_id) is False
    assert stored(tm, task_id) == before


def test_reset_of_an_unknown_task_is_false(tm: TaskManager) -> None:
    assert tm.reset(12345) is False


# ------------------------------------------------------------ run_async inline


def test_run_async_without_a_worker_runs_here_as_the_user(tm: TaskManager, app: App) -> None:
    assert tm.run_async("whoami", user_id=7) == 7
    assert app.events == ["impersonate 7", "task", "commit", "end impersonation 7"]
    assert app.user is None
    assert all_tasks(tm) == []


def test_run_async_inline_without_user_runs_unimpersonated(tm: TaskManager, app: App) -> None:
    assert tm.run_async("whoami") is None
    assert app.events == ["task", "commit"]


def test_run_async_inline_failure_rolls_back_and_raises(tm: TaskManager, app: App) -> None:
    with pytest.raises(Boom, match="task failed"):
        tm.run_async("fail", user_id=7)
    assert app.events == ["impersonate 7", "task", "end impersonation 7", "rollback"]
    assert all_tasks(tm) == []


def test_run_async_inline_failing_commit_is_rolled_back_and_raised(
    tm: TaskManager, app: App
) -> None:
    app.fail_commit = True
    with pytest.raises(TaskHookError, match="commit") as raised:
        tm.run_async("whoami", user_id=7)
    assert isinstance(raised.value.__cause__, Boom)
    assert app.events == [
        "impersonate 7",
        "task",
        "commit",
        "end impersonation 7",
        "rollback",
    ]


def test_run_async_inline_result_must_be_json(tm: TaskManager, app: App) -> None:
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        tm.run_async("not_json")
    assert app.events == ["task", "rollback"]


def test_run_async_inline_passes_arguments_through_json(tm: TaskManager) -> None:
    result = tm.run_async("echo", args=(1, (2, 3)), vars={"when": "now", "n": {1: "a"}})
    assert result == {"args": (1, [2, 3]), "vars": {"when": "now", "n": {"1": "a"}}}


def test_run_async_refuses_arguments_that_are_not_json(tm: TaskManager, app: App) -> None:
    with pytest.raises(InvalidTask) as raised:
        tm.run_async("echo", args=[{1}])
    assert "args" in raised.value.errors
    assert app.events == []


def test_run_async_refuses_an_unknown_task(tm: TaskManager) -> None:
    with pytest.raises(InvalidTask, match="no task named 'nope'"):
        tm.run_async("nope")


def test_failing_rollback_is_noted_on_the_tasks_exception(tm: TaskManager, app: App) -> None:
    def broken_rollback() -> None:
        raise OSError("connection lost")

    manager = TaskManager(tm.scheduler, rollback=broken_rollback)
    with pytest.raises(Boom) as raised:
        manager.run_async("fail")
    assert any("rollback() failed too" in note for note in raised.value.__notes__)


def test_run_async_runs_here_when_the_only_worker_is_stale(tm: TaskManager, app: App) -> None:
    add_worker(tm, ["main"], utc_now() - timedelta(seconds=90))
    assert tm.run_async("whoami", user_id=3) == 3
    assert all_tasks(tm) == []


def test_run_async_runs_here_when_no_worker_serves_the_group(tm: TaskManager) -> None:
    add_worker(tm, ["other"], utc_now())
    assert tm.run_async("whoami", user_id=3) == 3
    assert all_tasks(tm) == []


# ------------------------------------------------------------ run_async queued


def test_run_async_with_a_live_worker_queues_and_returns_the_id(tm: TaskManager, app: App) -> None:
    add_worker(tm, ["main"], utc_now() - timedelta(seconds=30))
    task_id = tm.run_async("echo", args=[1], vars={"a": 2}, user_id=7)
    assert isinstance(task_id, int)
    assert app.events == []  # nothing ran here
    task = stored(tm, task_id)
    assert (task.status, task.function_name, task.group_name) == ("QUEUED", "echo", "main")
    assert task.timeout == 300
    assert json.loads(task.args or "") == [1]
    assert json.loads(task.vars or "") == {"a": 2, USER_ID_KEY: 7}


def test_run_async_queues_in_the_given_group(tm: TaskManager) -> None:
    add_worker(tm, ["reports"], utc_now())
    task_id = tm.run_async("echo", group_name="reports", timeout=30)
    task = stored(tm, int(task_id))
    assert (task.group_name, task.timeout) == ("reports", 30)


def test_run_async_does_not_check_for_duplicates(tm: TaskManager) -> None:
    add_worker(tm, ["main"], utc_now())
    assert tm.run_async("echo", args=[1]) != tm.run_async("echo", args=[1])


# ------------------------------------------------------------ runs of stored tasks


def test_pop_user_id_takes_the_reserved_key_out() -> None:
    assert pop_user_id({"a": 1, USER_ID_KEY: 7}) == ({"a": 1}, 7)
    assert pop_user_id({"a": 1}) == ({"a": 1}, None)


def test_plain_scheduler_app_refuses_a_task_queued_for_a_user() -> None:
    with pytest.raises(TaskHookError, match="--app MODULE:TASKMANAGER"):
        task_hooks(None, 7)
    with task_hooks(None, None):
        pass


class FakeChannel:
    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        return {"type": "run_id", "run_id": None}


def run_in_child(manager: TaskManager | None, function: str, vars: dict[str, Any]) -> Any:
    registry = (manager.tasks if manager is not None else {}) or {}
    runner = TaskRunner(registry, FakeChannel(), manager)  # type: ignore[arg-type]
    return runner.run(
        {
            "id": 1,
            "uuid": "u",
            "name": function,
            "function": function,
            "args": "[]",
            "vars": json.dumps(vars),
        }
    )


def test_child_runs_a_stored_task_as_its_user_and_commits(tm: TaskManager, app: App) -> None:
    report = run_in_child(tm, "echo", {"a": 1, USER_ID_KEY: 7})
    assert report["status"] == RunStatus.COMPLETED.value
    assert json.loads(report["result"]) == {"args": [], "vars": {"a": 1}}
    assert app.events == ["impersonate 7", "task", "commit", "end impersonation 7"]


def test_child_rolls_back_a_failed_run(tm: TaskManager, app: App) -> None:
    report = run_in_child(tm, "fail", {USER_ID_KEY: 7})
    assert report["status"] == RunStatus.FAILED.value
    assert "task failed" in report["traceback"]
    assert app.events[-1] == "rollback"


def test_child_fails_a_run_whose_commit_fails(tm: TaskManager, app: App) -> None:
    app.fail_commit = True
    report = run_in_child(tm, "whoami", {})
    assert report["status"] == RunStatus.FAILED.value
    assert "commit refused" in report["traceback"]
    assert "the application's commit() failed" in report["traceback"]
    assert app.events == ["task", "commit", "rollback"]


def test_run_task_command_uses_the_hooks(tm: TaskManager, app: App) -> None:
    queued = tm.scheduler.queue_task("whoami", pvars={USER_ID_KEY: 9})
    assert queued.id is not None
    outcome = run_stored_task(tm.scheduler, queued.id, manager=tm, record=True)
    assert (outcome.status, outcome.result) == (RunStatus.COMPLETED, "9")
    assert app.events == ["impersonate 9", "task", "commit", "end impersonation 9"]
    assert stored(tm, queued.id).status == TaskStatus.COMPLETED.value


def test_run_task_command_without_the_hooks_refuses_a_user_task(tm: TaskManager) -> None:
    queued = tm.scheduler.queue_task("whoami", pvars={USER_ID_KEY: 9})
    assert queued.id is not None
    outcome = run_stored_task(tm.scheduler, queued.id)
    assert outcome.status is RunStatus.FAILED
    assert "cannot impersonate" in (outcome.traceback or "")
