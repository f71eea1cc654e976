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

from taskmill.scheduler import Scheduler
from taskmill.states import TaskStatus
from taskmill.store.admin import AdminQueries, TaskFilter
from taskmill.store.audit import AuditLog
from taskmill.web.auth import Principal

TASK_ACTIONS = ("stop", "requeue", "delete", "enable", "disable")
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
        task = self.scheduler.store.get_task(task_id)
        if task is None:
            raise ActionError(f"no task {task_id}", status=404)
        if action == "requeue" and not self._registered(task.function_name):
            raise ActionError(
                f"task {task_id} runs {task.function_name!r}, which is not registered"
            )
        count = self._apply(task_id, action)
        self.audit.record(
            who.name, action, f"task {task_id}", json.dumps({"changed": count, "was": task.status})
        )
        if not count:
            raise ActionError(f"task {task_id} is {task.status}: nothing to {action}", status=409)
        return ActionResult(f"task {task_id}: {action} done", count=count, task_id=task_id)

    def _apply(self, task_id: int, action: str) -> int:
        if action == "stop":
            return self.scheduler.stop_task(task_id)
        if action == "requeue":
            return self.scheduler.requeue(task_id)
        condition = self.scheduler.condition(task_id)
        if action == "delete":
            return self.admin.delete_tasks(condition)
        return self.admin.set_enabled(condition, action == "enable")

    def requeue_failed(self, who: Principal, task_filter: TaskFilter) -> ActionResult:
        """Requeue every FAILED task the filter selects (registered functions only)."""
        self._require_admin(who)
        if task_filter.status not in (None, "", TaskStatus.FAILED.value):
            raise ActionError("bulk requeue applies to FAILED tasks; filter by FAILED or nothing")
        condition = and_(
            task_filter.condition(),
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
