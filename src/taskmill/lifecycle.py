"""What a finished run does to its task: web2py's rules, as pure functions.

Kept apart from the store so the rules (repeats, period, prevent_drift,
cronline, retry_failed, discard_results, None results) can be read and tested
without a database, and so every backend applies exactly the same ones. One rule
is taskmill's own and off unless asked for: retry_backoff.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from taskmill.records import Task
from taskmill.states import RunStatus, TaskStatus
from taskmill.timing import next_run_time

#: the longest wait before a retry with retry_backoff, however many failures came before
MAX_RETRY_DELAY: Final = 3600


@dataclass(slots=True)
class Outcome:
    """How one run of a claimed task ended, as the worker saw it."""

    task: Task
    status: RunStatus
    started: datetime
    finished: datetime
    result: str | None = None  # JSON text; None when the function returned None
    output: str = ""
    traceback: str | None = None
    run_id: int | None = None  # set when a RUNNING row was written while it ran
    requeue: bool = False  # the worker is shutting down: give the task back untouched
    skipped: bool = False  # never started: stopped or taken while handed over in advance


@dataclass(frozen=True, slots=True)
class Settlement:
    """The writes an outcome turns into."""

    task_values: dict[str, Any]
    keep_run: bool
    resolves_dependencies: bool


def run_again(task: Task, times_run: int) -> bool:
    """web2py: repeats=0 means forever; otherwise run while times_run < repeats."""
    repeats = task.repeats or 0
    return repeats == 0 or times_run < repeats


def following_run_time(task: Task, started: datetime, *, local_time: bool = False) -> datetime:
    """When the task is due next, counted from the start of the run that just ended."""
    return next_run_time(
        run_started=started,
        period=task.period or 0,
        prevent_drift=bool(task.prevent_drift),
        start_time=task.start_time or started,
        cronline=task.cronline or None,
        local_time=local_time,
    )


def retry_delay(backoff: int, failed_before: int) -> timedelta:
    """How long a failed run waits before its retry with retry_backoff: the backoff
    doubled for each consecutive failure before this one, at most MAX_RETRY_DELAY."""
    # Past this many doublings any backoff of at least 1 s is over the cap; stopping
    # there keeps a task that failed a million times from computing 2**1000000.
    doublings = min(max(failed_before, 0), MAX_RETRY_DELAY.bit_length())
    return timedelta(seconds=min(backoff << doublings, MAX_RETRY_DELAY))


def settle(outcome: Outcome, *, discard_results: bool, local_time: bool = False) -> Settlement:
    """Turn a run's outcome into the task row update and what to do with the run row."""
    task = outcome.task
    if outcome.requeue:
        return Settlement(
            task_values={"status": TaskStatus.QUEUED.value, "assigned_worker_name": ""},
            keep_run=outcome.run_id is not None,
            resolves_dependencies=False,
        )
    next_time = following_run_time(task, outcome.started, local_time=local_time)
    values: dict[str, Any] = {"last_run_time": outcome.started, "next_run_time": next_time}
    resolves = False
    if outcome.status is RunStatus.COMPLETED:
        times_run = (task.times_run or 0) + 1
        again = run_again(task, times_run)
        expired = task.stop_time is not None and next_time > task.stop_time
        if again and expired:
            status = TaskStatus.EXPIRED
        elif again:
            status = TaskStatus.QUEUED
        else:
            status = TaskStatus.COMPLETED
            resolves = True
        values.update(status=status.value, times_run=times_run, times_failed=0)
    elif outcome.status is RunStatus.STOPPED:
        values.update(status=TaskStatus.STOPPED.value)
    else:
        failed_before = task.times_failed or 0
        retry = task.retry_failed or 0
        if retry == -1 or failed_before < retry:
            status = TaskStatus.QUEUED
            backoff = task.retry_backoff or 0
            if backoff > 0:
                # web2py's retry is due at the run's start + period; a backoff counts
                # from the end instead, so a run that timed out is not retried at once
                values["next_run_time"] = outcome.finished + retry_delay(backoff, failed_before)
        else:
            status = TaskStatus(outcome.status.value)
        values.update(status=status.value, times_failed=failed_before + 1)
    if values["status"] == TaskStatus.QUEUED.value and not task.broadcast:
        values["assigned_worker_name"] = ""  # a broadcast copy stays its worker's
    # web2py deletes the run row only of a run that completed returning None;
    # failed, timed-out and stopped runs are always recorded
    if outcome.status is RunStatus.COMPLETED:
        keep = outcome.result not in (None, "null") and not discard_results
    else:
        keep = True
    return Settlement(task_values=values, keep_run=keep, resolves_dependencies=resolves)
