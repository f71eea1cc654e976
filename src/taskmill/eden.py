"""Sahana Eden's task layer (s3task) on the Scheduler: TaskManager.

Eden queues tasks through `schedule_task` (recurring, with a duplicate check) and
`run_async` (in the background when a worker is alive, else at once), runs each
task as the user who started it and commits or rolls back the application's
database around it. The application supplies those three hooks; taskmill calls
them in whichever process runs the task: a worker's task child, `taskmill
run-task`, or the caller of run_async when no worker is alive. The worker process
itself never calls them.

The user travels with the task in its vars under USER_ID_KEY and is taken out
again before the function is called.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from typing import Any, Literal

from taskmill.errors import ConfigurationError, InvalidTask, TaskHookError
from taskmill.scheduler import Scheduler
from taskmill.validation import DEFAULT_GROUP_NAME, encode_json

log = logging.getLogger(__name__)

#: the key of a task's vars that holds the user it runs as; reserved for taskmill
USER_ID_KEY = "_taskmill_user_id"
#: run_async queues a task only if a worker of its group has beaten this recently
WORKER_ALIVE_WITHIN = 60.0

UserId = int | str
Impersonate = Callable[[Any], AbstractContextManager[object]]
Hook = Callable[[], object]


class TaskManager:
    """Eden's S3Task: schedule_task, run_async and reset on one Scheduler.

    `impersonate(user_id)` returns a context manager inside which the application
    acts as that user (and which restores the previous identity on exit);
    `commit()` and `rollback()` end the application's database transaction.
    Each hook is optional.
    """

    def __init__(
        self,
        sched: Scheduler,
        impersonate: Impersonate | None = None,
        commit: Hook | None = None,
        rollback: Hook | None = None,
    ) -> None:
        if not isinstance(sched, Scheduler):
            raise ConfigurationError(
                f"TaskManager needs a taskmill Scheduler, not {type(sched).__name__}"
            )
        hooks = {"impersonate": impersonate, "commit": commit, "rollback": rollback}
        for name, hook in hooks.items():
            if hook is not None and not callable(hook):
                raise ConfigurationError(f"{name} must be callable, not {type(hook).__name__}")
        self.scheduler = sched
        self.impersonate = impersonate
        self.commit = commit
        self.rollback = rollback

    def __repr__(self) -> str:
        return f"<TaskManager of {self.scheduler!r}>"

    @property
    def tasks(self) -> dict[str, Callable[..., Any]]:
        """The Scheduler's own registry: a task added here is known to it."""
        return self.scheduler.tasks

    # ------------------------------------------------------------------ queue
    def schedule_task(
        self,
        task: str,
        args: Sequence[Any] | None = None,
        vars: Mapping[str, Any] | None = None,
        function_name: str | None = None,
        start_time: datetime | None = None,
        next_run_time: datetime | None = None,
        stop_time: datetime | None = None,
        repeats: int | None = None,
        retry_failed: int | None = None,
        period: int | None = None,
        timeout: int | None = None,
        enabled: bool | None = None,
        group_name: str | None = None,
        ignore_duplicate: bool = False,
        sync_output: int = 0,
        user_id: UserId | None = None,
        cronline: str | None = None,
        **options: Any,
    ) -> int | Literal[False]:
        """Queue `function_name` (default: `task`, which is also the task_name) and
        return the new task's id, or False when an active task of that function
        with the same args, vars and user exists (unless ignore_duplicate).

        Options left None take queue_task's defaults; any other queue_task keyword
        (prevent_drift, priority, uuid, ...) is passed on. Raises InvalidTask,
        with nothing queued, when an argument is invalid.
        """
        clashing = sorted(set(options) & {"args", "vars", "task_name", "pargs", "pvars"})
        if clashing:
            raise TypeError(f"schedule_task() takes no {clashing}: use task, args and vars")
        stored_vars = self._stored_vars(vars, user_id)
        given = {
            "start_time": start_time,
            "next_run_time": next_run_time,
            "stop_time": stop_time,
            "repeats": repeats,
            "retry_failed": retry_failed,
            "period": period,
            "timeout": timeout,
            "enabled": enabled,
            "group_name": group_name,
            "cronline": cronline,
        }
        keywords: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        keywords.update(options, task_name=task, sync_output=sync_output)
        function = function_name or task
        pargs = [] if args is None else args
        sched = self.scheduler
        if ignore_duplicate:
            queued = sched.queue_task(function, pargs, stored_vars, **keywords)
        else:
            found = sched.queue_unique_task(function, pargs, stored_vars, **keywords)
            if found is None:
                log.info("schedule_task: an active %r task with these arguments exists", function)
                return False
            queued = found
        if queued.errors or queued.id is None:
            raise InvalidTask(queued.errors)
        return queued.id

    def run_async(
        self,
        task: str,
        args: Sequence[Any] | None = None,
        vars: Mapping[str, Any] | None = None,
        timeout: int = 300,
        user_id: UserId | None = None,
        group_name: str | None = None,
    ) -> Any:
        """Queue `task` and return its id when a worker serving its group has beaten
        within WORKER_ALIVE_WITHIN seconds; otherwise run it here and now, with the
        same hooks, and return its result.

        Run here, a failing task is rolled back and its exception raised to the
        caller: the rollback may have undone the caller's own uncommitted work too
        (Eden shares one connection), so carrying on as if nothing happened would
        lose data silently. The timeout only applies to a queued run.
        """
        stored_vars = self._stored_vars(vars, user_id)
        pargs = [] if args is None else args
        group = DEFAULT_GROUP_NAME if group_name is None else group_name
        if self.worker_alive(group):
            queued = self.scheduler.queue_task(
                task, pargs, stored_vars, timeout=timeout, group_name=group
            )
            if queued.errors or queued.id is None:
                raise InvalidTask(queued.errors)
            return queued.id
        return self.run_here(task, pargs, stored_vars)

    def worker_alive(self, group_name: str = DEFAULT_GROUP_NAME) -> bool:
        """True when a worker serving the group has beaten within the last minute."""
        return bool(self.scheduler.store.live_workers([group_name], WORKER_ALIVE_WITHIN))

    def run_here(self, task: str, args: Sequence[Any], vars: Mapping[str, Any]) -> Any:
        """Run a registered task in this process as a worker's child would: the
        arguments pass through JSON, the user comes out of vars, the hooks wrap
        the call, and a result that is not JSON fails the run."""
        function = self.tasks.get(task) if isinstance(task, str) else None
        if function is None:
            raise InvalidTask({"function_name": f"no task named {task!r} is registered"})
        pargs, pvars = _through_json(args, vars)
        pvars, user_id = pop_user_id(pvars)
        with self.task_transaction(user_id):
            value = function(*pargs, **pvars)
            _check_result(value, task)
        return value

    # ---------------------------------------------------------------- control
    def reset(self, task_id: int) -> bool:
        """A FAILED, TIMEOUT, STOPPED or EXPIRED task back to QUEUED, due now, with
        times_run and times_failed cleared; False (and no change) otherwise."""
        if isinstance(task_id, bool) or not isinstance(task_id, int):
            raise InvalidTask({"id": f"a task id is an int, not {type(task_id).__name__}"})
        return (
            self.scheduler.store.requeue_tasks(self.scheduler.condition(task_id), restart=True) > 0
        )

    # ------------------------------------------------------------------ hooks
    @contextmanager
    def task_transaction(self, user_id: UserId | None = None) -> Iterator[None]:
        """Around one run: as `user_id` if given, then commit() when the block ends
        normally, rollback() when it raises.

        Order: impersonate enters, the task runs, commit(), impersonate exits; on an
        error the impersonation exits first, then rollback(). A failing commit()
        fails the run (TaskHookError caused by the commit's error) and is followed
        by a rollback(); a failing rollback() is logged and noted on the task's
        exception, never hiding it.
        """
        try:
            with self._as_user(user_id):
                yield
                self._commit()
        except BaseException as exc:
            self._rollback(exc)
            raise

    def _as_user(self, user_id: UserId | None) -> AbstractContextManager[object]:
        if user_id is None:
            return nullcontext()
        if self.impersonate is None:
            raise TaskHookError(
                f"the task is to run as user {user_id!r}, but this TaskManager has no "
                "impersonate hook"
            )
        return self.impersonate(user_id)

    def _commit(self) -> None:
        if self.commit is None:
            return
        try:
            self.commit()
        except Exception as exc:
            raise TaskHookError(
                f"the task returned, but the application's commit() failed: {exc!r}"
            ) from exc

    def _rollback(self, failure: BaseException) -> None:
        if self.rollback is None:
            return
        try:
            self.rollback()
        except Exception as exc:
            log.exception("the application's rollback() failed after a failed task")
            failure.add_note(f"(the application's rollback() failed too: {exc!r})")

    def _stored_vars(self, vars: Mapping[str, Any] | None, user_id: Any) -> dict[str, Any]:
        """The vars to store: the caller's plus the user, checked."""
        if vars is not None and not isinstance(vars, Mapping):
            raise InvalidTask({"vars": f"vars must be a dict, not {type(vars).__name__}"})
        stored = dict(vars or {})
        if USER_ID_KEY in stored:
            raise InvalidTask({"vars": f"{USER_ID_KEY!r} is reserved: pass user_id= instead"})
        if user_id is None:
            return stored
        if isinstance(user_id, bool) or not isinstance(user_id, int | str):
            raise InvalidTask(
                {"user_id": f"user_id must be an int or a str, not {type(user_id).__name__}"}
            )
        if self.impersonate is None:
            raise ConfigurationError(
                "a task with a user_id needs TaskManager(..., impersonate=...) to run as that user"
            )
        stored[USER_ID_KEY] = user_id
        return stored


def pop_user_id(kwargs: dict[str, Any]) -> tuple[dict[str, Any], UserId | None]:
    """The task's keyword arguments without the reserved user key, and the user."""
    if USER_ID_KEY not in kwargs:
        return kwargs, None
    rest = dict(kwargs)
    user_id = rest.pop(USER_ID_KEY)
    return rest, user_id


def task_hooks(manager: TaskManager | None, user_id: UserId | None) -> AbstractContextManager[None]:
    """What a process running a stored task wraps the call in: the TaskManager's
    hooks, or nothing for a plain Scheduler app, which cannot run a task as a user."""
    if manager is not None:
        return manager.task_transaction(user_id)
    if user_id is not None:
        raise TaskHookError(
            f"the task is to run as user {user_id!r}, but the worker's --app names a "
            "Scheduler, which cannot impersonate: name the application's TaskManager "
            "instead (--app MODULE:TASKMANAGER)"
        )
    return nullcontext()


def _through_json(args: Sequence[Any], vars: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The arguments as a worker would receive them, after a trip through JSON."""
    errors: dict[str, str] = {}
    args_text, error = encode_json(list(args) if isinstance(args, tuple) else args, list, "args")
    if error:
        errors["args"] = error
    vars_text, error = encode_json(dict(vars), dict, "vars")
    if error:
        errors["vars"] = error
    if errors or args_text is None or vars_text is None:
        raise InvalidTask(errors)
    return json.loads(args_text), json.loads(vars_text)


def _check_result(value: Any, task: str) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"the result of task {task!r} is not JSON-serialisable ({type(value).__name__}): {exc}"
        ) from None
