"""taskmill: a web2py-compatible background-task scheduler.

The names below are imported on first use (PEP 562), not with the package:
`taskmill worker -n N` (the supervisor), `taskmill --help` and a task child
must not pay for SQLAlchemy and every module before they do anything, since
start-up time is the first task's pickup delay after workers start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskmill.concurrency import thread_safe
    from taskmill.context import TaskContext, current_task
    from taskmill.deps import JobGraph
    from taskmill.eden import TaskManager
    from taskmill.explain import Explanation
    from taskmill.records import Queued, QueuedMany, Run, Task, TaskReport, Worker
    from taskmill.scheduler import Scheduler
    from taskmill.states import RunStatus, TaskStatus, WorkerStatus

_MODULES = {
    "thread_safe": "taskmill.concurrency",
    "TaskContext": "taskmill.context",
    "current_task": "taskmill.context",
    "JobGraph": "taskmill.deps",
    "TaskManager": "taskmill.eden",
    "Explanation": "taskmill.explain",
    "Queued": "taskmill.records",
    "QueuedMany": "taskmill.records",
    "Run": "taskmill.records",
    "Task": "taskmill.records",
    "TaskReport": "taskmill.records",
    "Worker": "taskmill.records",
    "Scheduler": "taskmill.scheduler",
    "RunStatus": "taskmill.states",
    "TaskStatus": "taskmill.states",
    "WorkerStatus": "taskmill.states",
}

__all__ = [
    "Explanation",
    "JobGraph",
    "Queued",
    "QueuedMany",
    "Run",
    "RunStatus",
    "Scheduler",
    "Task",
    "TaskContext",
    "TaskManager",
    "TaskReport",
    "TaskStatus",
    "Worker",
    "WorkerStatus",
    "current_task",
    "thread_safe",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'taskmill' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULES])
