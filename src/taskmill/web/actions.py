"""What an operator can do, shared by the HTML pages and the JSON API.

Every action checks the caller's role, calls the Scheduler, and writes one row to
the audit log. Nothing here knows about HTTP beyond the status code an error maps to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_

from taskmill.records import Task
from taskmill.scheduler import Scheduler
from taskmill.states import TaskStatus
from taskmill.store.admin import RUN_AGAIN, AdminQueries, TaskFilter
from taskmill.store.audit import AuditLog
from taskmill.validation import QUEUE_KEYWORDS
from taskmill.web.auth import Principal
from taskmill.web.params import is_row_id

TASK_ACTIONS = ("run-now", "clone", "stop", "requeue", "enable", "disable", "delete")
#: the actions that can make a task run: refused for functions this app does not register
STARTING_ACTIONS = frozenset({"run-now", "clone", "requeue", "enable"})
#: what the bulk form and POST /api/tasks/bulk accept, applied to each selected task
BULK_ACTIONS = ("run-now", "clone", "stop", "requeue", "enable", "disable", "delete")
MAX_BULK_IDS = 500
#: queue_task keywords a clone does not copy as they are: its uuid and first run are
#: its own, start and stop times are copied only while ahead and the arguments as
#: stored (see _clone), `immediate` is how a task was queued, not a field of it, and
#: a clone of a disabled task is enabled
NOT_CLONED = frozenset(
    {"uuid", "next_run_time", "start_time", "stop_time", "args", "vars", "immediate", "enabled"}
)
#: the task fields a clone copies as they are: every other queue_task keyword, so that
#: one queue_task learns is cloned without a second list to keep in step
CLONED_FIELDS = tuple(sorted(QUEUE_KEYWORDS - NOT_CLONED))
WORKER_ACTIONS = ("disable", "resume", "terminate", "kill")
#: optional queue_task keywords the queue form and API accept, with their types
QUEUE_OPTIONS: Mapping[str, type] = {
    "task_name": str,
    "group_name": str,
    "cronline": str,
    "repeats": int,
    "period": int,
    "timeout": int,
    "retry_failed": int,
    "retry_backoff": int,
    "sync_output": int,
    "priority": int,
}


class ActionError(Exception):
    """An action refused; `status` is the HTTP status it maps to."""

    def __init__(self, message: str, status: int = 400, errors: Mapping[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.errors = dict(errors or {})


@dataclass(frozen=True, slots=True)
class ActionResult:
    message: str
    count: int = 0
    task_id: int | None = None


class Actions:
    def __init__(self, scheduler: Scheduler, admin: AdminQueries, audit: AuditLog) -> None:
        self.scheduler = scheduler
        self.admin = admin
        self.audit = audit

    @staticmethod
    def _require_admin(who: Principal) -> None:
        if not who.is_admin:
            raise ActionError("this needs the admin role", status=403)

    def _registered(self, function_name: str | None) -> bool:
        return bool(function_name) and function_name in self.scheduler.tasks

    # ------------------------------------------------------------------- queue
    def queue(
        self,
        who: Principal,
        function: str,
        args: Any = "[]",
        vars: Any = "{}",
        options: Mapping[str, Any] | None = None,
    ) -> ActionResult:
        """Queue a registered function; `args`/`vars` are JSON text or decoded values."""
        self._require_admin(who)
        if not self._registered(function):
            raise ActionError(
                f"{function!r} is not a registered task function",
                errors={"function": "not a registered task function"},
            )
        pargs = _decoded(args, list, "args", "a JSON list such as [1, 2]")
        pvars = _decoded(vars, dict, "vars", 'a JSON object such as {"key": "value"}')
        kwargs = queue_options(options or {})
        queued = self.scheduler.queue_task(function, pargs, pvars, **kwargs)
        if queued.errors:
            raise ActionError("the task was not queued", errors=queued.errors)
        detail = json.dumps({"function": function, "options": kwargs}, default=str)
        self.audit.record(who.name, "queue", f"task {queued.id}", detail)
        return ActionResult(f"task {queued.id} queued", count=1, task_id=queued.id)

    # ------------------------------------------------------------------- tasks
    def task_action(self, who: Principal, task_id: int, action: str) -> ActionResult:
        self._require_admin(who)
        if action not in TASK_ACTIONS:
            raise ActionError(f"unknown task action {action!r}", status=404)
        try:
            result = self._task_action(task_id, action)
        except ActionError as exc:
            if exc.status == 409:  # the operator asked, nothing changed: still on record
                self.audit.record(who.name, action, f"task {task_id}", json.dumps({"changed": 0}))
            raise
        detail: dict[str, Any] = {"changed": result.result.count, "was": result.was}
        if action == "clone":
            detail["clone"] = result.result.task_id
        self.audit.record(who.name, action, f"task {task_id}", json.dumps(detail))
        return result.result

    def _task_action(self, task_id: int, action: str) -> _Applied:
        task = self.scheduler.store.get_task(task_id) if is_row_id(task_id) else None
        if task is None:
            raise ActionError(f"no task {task_id}", status=404)
        if action in STARTING_ACTIONS and not self._registered(task.function_name):
            raise ActionError(
                f"task {task_id} runs {task.function_name!r}, which is not registered "
                f"in this application: it cannot {action}"
            )
        if action == "clone":
            return self._clone(task)
        if action == "run-now":
            return self._run_now(task)
        count = self._apply(task_id, action)
        if not count:
            raise ActionError(f"task {task_id} is {task.status}: nothing to {action}", status=409)
        message = f"task {task_id}: {action} done"
        return _Applied(ActionResult(message, count=count, task_id=task_id), task.status)

    def _apply(self, task_id: int, action: str) -> int:
        if action == "stop":
            return self.scheduler.stop_task(task_id)
        if action == "requeue":
            return self.scheduler.requeue(task_id)
        condition = self.scheduler.condition(task_id)
        if action == "delete":
            return self.admin.delete_tasks(condition)
        return self.admin.set_enabled(condition, action == "enable")

    def _clone(self, task: Task) -> _Applied:
        """A new task of the same function, arguments and schedule, with a fresh uuid.

        A start_time or stop_time already passed is not copied (the clone would be
        late or expire at once); dependencies are not copied either."""
        now = self.scheduler.store.now()
        options: dict[str, Any] = {
            name: getattr(task, name)
            for name in CLONED_FIELDS
            if getattr(task, name) is not None and getattr(task, name) != ""
        }
        options["args"] = task.args or "[]"
        options["vars"] = task.vars or "{}"
        if task.start_time is not None and task.start_time > now:
            options["start_time"] = task.start_time
        if task.stop_time is not None and task.stop_time > now:
            options["stop_time"] = task.stop_time
        queued = self.scheduler.queue_task(task.function_name or "", **options)
        if queued.errors or queued.id is None:
            raise ActionError(f"task {task.id} could not be cloned", errors=queued.errors)
        message = f"task {task.id} cloned as task {queued.id}"
        return _Applied(ActionResult(message, count=1, task_id=queued.id), task.status)

    def _run_now(self, task: Task) -> _Applied:
        if task.status == TaskStatus.QUEUED and not task.enabled:
            raise ActionError(f"task {task.id} is disabled: enable it first", status=409)
        if task.status not in (TaskStatus.QUEUED, *RUN_AGAIN):
            raise ActionError(f"task {task.id} is {task.status}: it is running", status=409)
        changed = self.admin.run_now(self.scheduler.condition(task.id)).count
        if not changed:
            raise ActionError(f"task {task.id} is already due: it waits for a worker", status=409)
        message = (
            f"task {task.id}: due now"
            if task.status == TaskStatus.QUEUED
            else (f"task {task.id}: requeued to run now")
        )
        return _Applied(ActionResult(message, count=changed, task_id=task.id), task.status)

    def bulk_action(self, who: Principal, action: str, task_ids: Any) -> BulkResult:
        """Apply one task action to each selected task; one audit entry for the lot."""
        self._require_admin(who)
        if action not in BULK_ACTIONS:
            raise ActionError(f"unknown bulk action {action!r}; one of {', '.join(BULK_ACTIONS)}")
        ids = _task_ids(task_ids)
        done: dict[int, int | None] = {}
        refused: dict[int, str] = {}
        for task_id in ids:
            try:
                applied = self._task_action(task_id, action)
            except ActionError as exc:
                refused[task_id] = exc.message
            else:
                done[task_id] = applied.result.task_id
        detail: dict[str, Any] = {"ids": ids, "changed": sorted(done), "refused": sorted(refused)}
        if action == "clone":
            detail["clones"] = sorted(v for v in done.values() if v is not None)
        self.audit.record(who.name, f"bulk-{action}", f"{len(ids)} task(s)", json.dumps(detail))
        message = f"{action}: {len(done)} of {len(ids)} task(s) done"
        if refused:
            message += f", {len(refused)} refused"
        return BulkResult(message=message, done=done, refused=refused)

    def requeue_failed(self, who: Principal, task_filter: TaskFilter) -> ActionResult:
        """Requeue every FAILED task the filter selects (registered functions only)."""
        self._require_admin(who)
        if task_filter.status not in (None, "", TaskStatus.FAILED.value):
            raise ActionError("bulk requeue applies to FAILED tasks; filter by FAILED or nothing")
        condition = and_(
            task_filter.condition(like_ignores_case=self.admin.like_ignores_case),
            self.scheduler.tables.scheduler_task.c.status == TaskStatus.FAILED.value,
            self.scheduler.tables.scheduler_task.c.function_name.in_(sorted(self.scheduler.tasks)),
        )
        count = self.scheduler.requeue(condition)
        detail = json.dumps(
            {
                "status": TaskStatus.FAILED.value,
                "group_name": task_filter.group_name,
                "function_name": task_filter.function_name,
                "text": task_filter.text,
                "changed": count,
            }
        )
        self.audit.record(who.name, "bulk-requeue", "FAILED tasks matching filter", detail)
        return ActionResult(f"{count} failed task(s) requeued", count=count)

    # ----------------------------------------------------------------- workers
    def worker_action(self, who: Principal, worker_name: str, action: str) -> ActionResult:
        self._require_admin(who)
        if action not in WORKER_ACTIONS:
            raise ActionError(f"unknown worker action {action!r}", status=404)
        if worker_name not in self.scheduler.get_workers():
            raise ActionError(f"no worker {worker_name!r}", status=404)
        command = getattr(self.scheduler, action)
        count = int(command(worker_name=worker_name))
        self.audit.record(who.name, f"worker-{action}", f"worker {worker_name}")
        return ActionResult(f"worker {worker_name}: {action} sent", count=count)


@dataclass(frozen=True, slots=True)
class _Applied:
    result: ActionResult
    #: the task's status before the action, for the audit log
    was: str | None


@dataclass(frozen=True, slots=True)
class BulkResult:
    message: str
    #: task id -> the id of its clone (clone) or itself
    done: dict[int, int | None]
    #: task id -> why it was refused
    refused: dict[int, str]


def _task_ids(value: Any) -> list[int]:
    """The selected ids: a list of positive whole numbers (as numbers or digit strings)."""
    if isinstance(value, str | int) or not isinstance(value, list | tuple):
        raise ActionError("ids must be a list of task ids", errors={"ids": "a list of task ids"})
    ids: list[int] = []
    for item in value:
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item.strip())
        if isinstance(item, bool) or not isinstance(item, int) or item <= 0:
            raise ActionError(
                f"ids must hold task ids, not {item!r:.40}", errors={"ids": "a list of task ids"}
            )
        if item not in ids:
            ids.append(item)
    if not ids:
        raise ActionError("select at least one task", errors={"ids": "no task selected"})
    if len(ids) > MAX_BULK_IDS:
        raise ActionError(
            f"at most {MAX_BULK_IDS} tasks at a time", errors={"ids": f"more than {MAX_BULK_IDS}"}
        )
    return ids


def _decoded(value: Any, kind: type, name: str, hint: str) -> Any:
    if isinstance(value, str):
        text = value.strip() or ("[]" if kind is list else "{}")
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ActionError(
                f"{name} is not valid JSON", errors={name: f"{exc}; {hint}"}
            ) from None
    if not isinstance(value, kind):
        raise ActionError(f"{name} must be {hint}", errors={name: f"must be {hint}"})
    return value


def queue_options(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The queue_task keywords among `raw` (form or JSON), typed; blanks left out."""
    options: dict[str, Any] = {}
    for name, kind in QUEUE_OPTIONS.items():
        value = raw.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if kind is int:
            try:
                options[name] = int(value)
            except (TypeError, ValueError):
                raise ActionError(
                    f"{name} must be a whole number", errors={name: "must be a whole number"}
                ) from None
        else:
            options[name] = str(value).strip()
    return options
