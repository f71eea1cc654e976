"""explain(): why is this task not running, in plain words.

The question every web2py scheduler user asks ("stuck in QUEUED?") answered
from the tables alone: the task row, its dependency edges and the live
workers' heartbeats and stats. Each reason names the fact that causes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from taskmill.records import Task, Worker
from taskmill.states import TaskStatus, WorkerStatus

if TYPE_CHECKING:
    from taskmill.scheduler import Scheduler, TaskRef


@dataclass(frozen=True)
class Explanation:
    task_id: int | None
    status: str | None
    #: True when nothing holds the task back: it is due and a worker can take it
    runnable: bool
    reasons: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        head = f"task {self.task_id} is {self.status}" if self.task_id else "no such task"
        return "\n".join([head, *(f"- {reason}" for reason in self.reasons)])


def _when(value: datetime | None) -> str:
    return "never" if value is None else value.isoformat(sep=" ", timespec="seconds")


def explain(scheduler: Scheduler, ref: TaskRef) -> Explanation:
    task = scheduler.store.find_task(scheduler.condition(ref))
    if task is None:
        return Explanation(None, None, False, ["no task matches this reference"])
    status = task.status or ""
    if status == TaskStatus.QUEUED.value:
        reasons = _queued_reasons(scheduler, task)
        runnable = not reasons
        if runnable:
            reasons = ["it is due and a live worker can run it: it should start within moments"]
        return Explanation(task.id, status, runnable, reasons)
    return Explanation(task.id, status, False, _settled_reasons(scheduler, task))


def _settled_reasons(scheduler: Scheduler, task: Task) -> list[str]:
    status = task.status
    if status in (TaskStatus.ASSIGNED.value, TaskStatus.RUNNING.value):
        worker = task.assigned_worker_name or "?"
        live = {w.worker_name for w in scheduler.store.live_workers(None, scheduler.dead_after)}
        verb = "running on" if status == TaskStatus.RUNNING.value else "claimed by"
        reasons = [f"it is {verb} worker {worker} (since {_when(task.last_run_time)})"]
        if worker not in live:
            reasons.append(
                f"worker {worker} has not beaten for {scheduler.dead_after:.0f} s: "
                "the ticker will requeue the task"
            )
        return reasons
    if status == TaskStatus.COMPLETED.value:
        return [f"it completed all its runs (times_run={task.times_run}); it will not run again"]
    if status == TaskStatus.EXPIRED.value:
        return [f"its stop_time {_when(task.stop_time)} passed before it could run again"]
    if status == TaskStatus.STOPPED.value:
        return ["it was stopped (stop_task); requeue() runs it again"]
    run = scheduler.store.latest_run(task.id)
    last_line = ""
    if run is not None and run.traceback:
        last_line = f": {run.traceback.strip().splitlines()[-1]}"
    what = "failed" if status == TaskStatus.FAILED.value else "timed out"
    return [
        f"it {what} {task.times_failed} time(s) in a row and its retries are used up "
        f"(retry_failed={task.retry_failed}){last_line}; requeue() runs it again"
    ]


def _queued_reasons(scheduler: Scheduler, task: Task) -> list[str]:
    store = scheduler.store
    now = store.now()
    reasons: list[str] = []
    if task.enabled is False:
        reasons.append("the task is disabled (enabled=False)")
    if task.start_time is not None and task.start_time > now:
        reasons.append(f"its start_time {_when(task.start_time)} is in the future")
    elif task.next_run_time is not None and task.next_run_time > now:
        wait = (task.next_run_time - now).total_seconds()
        reasons.append(f"its next run is due at {_when(task.next_run_time)} (in {wait:.0f} s)")
    if task.stop_time is not None and task.stop_time <= now:
        reasons.append(f"its stop_time {_when(task.stop_time)} has passed: it will be EXPIRED")
    blocking = store.blocking_tasks(task.id)
    if blocking:
        listed = ", ".join(f"{child} ({state or 'deleted'})" for child, state in blocking)
        reasons.append(f"it waits for task(s) {listed} to complete first")
        stuck = [c for c, state in blocking if state not in (None, "QUEUED", "ASSIGNED", "RUNNING")]
        if stuck:
            reasons.append(
                f"task(s) {', '.join(map(str, stuck))} ended without completing: "
                "this task waits until they are requeued and complete"
            )
    reasons.extend(_worker_reasons(scheduler, task, due=not reasons))
    return reasons


def _worker_reasons(scheduler: Scheduler, task: Task, *, due: bool) -> list[str]:
    group = task.group_name or ""
    workers = scheduler.store.live_workers([group], scheduler.dead_after)
    if not workers:
        others = scheduler.store.live_workers(None, scheduler.dead_after)
        served = sorted({g for w in others for g in (w.group_names or [])})
        return [
            f"no live worker serves group {group!r}"
            + (f" (live workers serve {', '.join(served)})" if served else " (no live workers)")
        ]
    active = [w for w in workers if w.status not in _NOT_TAKING]
    if not active:
        return [f"all {len(workers)} worker(s) serving group {group!r} are disabled or stopping"]
    capable = [w for w in active if _can_run(w, task.function_name or "")]
    if not capable:
        return [f"no live worker of group {group!r} has function {task.function_name!r} registered"]
    if not due:
        return []
    busy = [w for w in capable if _all_slots_busy(w)]
    if len(busy) == len(capable):
        ahead = scheduler.store.count_due_ahead(task)
        return [f"all {len(capable)} worker(s) are busy; {ahead} due task(s) are ahead of it"]
    return []


_NOT_TAKING = (WorkerStatus.DISABLED.value, WorkerStatus.TERMINATE.value, WorkerStatus.KILL.value)


def _all_slots_busy(worker: Worker) -> bool:
    """A worker with `--concurrency N` is busy only when all N slots are."""
    stats = worker.worker_stats or {}
    running = stats.get("current_tasks")
    slots = stats.get("concurrency")
    if isinstance(running, list) and isinstance(slots, int):
        return len(running) >= slots
    return stats.get("current_task") is not None


def _can_run(worker: Worker, function_name: str) -> bool:
    tasks = (worker.worker_stats or {}).get("tasks")
    # a web2py worker (or an old taskmill one) does not publish its tasks: assume yes
    return not isinstance(tasks, list) or function_name in tasks
