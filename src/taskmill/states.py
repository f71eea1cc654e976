"""Status values of tasks, runs and workers, spelled as web2py spells them.

These strings are stored in the tables and shared with web2py applications, so
they are defined once here and never retyped elsewhere.
"""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    QUEUED = "QUEUED"
    ASSIGNED = "ASSIGNED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    STOPPED = "STOPPED"
    EXPIRED = "EXPIRED"


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    STOPPED = "STOPPED"


class WorkerStatus(StrEnum):
    ACTIVE = "ACTIVE"
    PICK = "PICK"
    DISABLED = "DISABLED"
    TERMINATE = "TERMINATE"
    KILL = "KILL"
    STOP_TASK = "STOP_TASK"


#: a task in one of these states will run (again) without anyone requeueing it
ACTIVE = (TaskStatus.QUEUED, TaskStatus.ASSIGNED, TaskStatus.RUNNING)
#: a task in one of these states is owned by a worker
IN_FLIGHT = (TaskStatus.ASSIGNED, TaskStatus.RUNNING)
#: a task in one of these states will never run again unless requeued
FINAL = (
    TaskStatus.COMPLETED,
    TaskStatus.FAILED,
    TaskStatus.TIMEOUT,
    TaskStatus.STOPPED,
    TaskStatus.EXPIRED,
)
#: states from which requeue() puts a task back to QUEUED
REQUEUEABLE = (TaskStatus.FAILED, TaskStatus.TIMEOUT, TaskStatus.STOPPED, TaskStatus.EXPIRED)
