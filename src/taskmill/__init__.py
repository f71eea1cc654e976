"""taskmill: a web2py-compatible background-task scheduler."""

from taskmill.concurrency import thread_safe
from taskmill.context import TaskContext, current_task
from taskmill.deps import JobGraph
from taskmill.eden import TaskManager
from taskmill.explain import Explanation
from taskmill.records import Queued, QueuedMany, Run, Task, TaskReport, Worker
from taskmill.scheduler import Scheduler
from taskmill.states import RunStatus, TaskStatus, WorkerStatus

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
