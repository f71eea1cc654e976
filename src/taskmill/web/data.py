"""What the dashboard shows, read from the tables and shaped as JSON-ready dicts.

Every value that comes from task data (args, vars, output, result, traceback) goes
through the application's `redact` hook before it leaves this module; the templates
and the API only ever see the shaped dicts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeGuard

from taskmill.records import Run, Task, Worker
from taskmill.scheduler import Scheduler
from taskmill.states import RunStatus, TaskStatus, WorkerStatus
from taskmill.store.admin import AdminQueries, TaskFilter, TaskPage, per_minute
from taskmill.timing import next_cron_time
from taskmill.web import graph
from taskmill.web.params import is_row_id

log = logging.getLogger(__name__)

#: redact(field, value, task) -> what to show; field is one of REDACTED_FIELDS
Redactor = Callable[[str, str | None, Task], str | None]
REDACTED_FIELDS = ("args", "vars", "run_output", "run_result", "traceback")

CHART_MINUTES = 60
#: the window of the taskmill_throughput_per_minute gauge
THROUGHPUT_MINUTES = 5
FAILED_RUNS = (RunStatus.FAILED.value, RunStatus.TIMEOUT.value)
#: counting a million-row table takes a few hundred ms; many open dashboards share one count
COUNTS_TTL = 2.0
NEXT_RUNS_SHOWN = 5


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")


def seconds_between(later: datetime, earlier: datetime | None) -> float | None:
    return None if earlier is None else round((later - earlier).total_seconds(), 3)


def _is_int(value: Any) -> TypeGuard[int]:
    """A JSON true is a bool, which Python counts as the int 1: not task 1."""
    return isinstance(value, int) and not isinstance(value, bool)


def running_task_ids(stats: dict[str, Any]) -> list[int]:
    """The ids of the tasks a worker says it is running. A `--concurrency N` worker
    reports them all in `current_tasks`; a one-at-a-time worker, an older taskmill or a
    web2py worker has at most `current_task`. worker_stats is JSON any of them may
    write, so what could not be a task id is left out rather than break the links."""
    reported = stats.get("current_tasks")
    if not isinstance(reported, list):
        reported = [stats.get("current_task")]
    return [value for value in reported if _is_int(value) and is_row_id(value)]


class DashboardData:
    def __init__(
        self, scheduler: Scheduler, admin: AdminQueries, redact: Redactor | None = None
    ) -> None:
        self.scheduler = scheduler
        self.admin = admin
        self.redact = redact
        self.counts_ttl = COUNTS_TTL
        self._counts: tuple[float, list[tuple[str, str, int]]] | None = None
        self._counts_lock = threading.Lock()

    def counts(self) -> list[tuple[str, str, int]]:
        """(status, group, count) rows, at most COUNTS_TTL seconds old."""
        with self._counts_lock:
            if self._counts is None or time.monotonic() - self._counts[0] >= self.counts_ttl:
                self._counts = (time.monotonic(), self.admin.counts_by_status_and_group())
            return self._counts[1]

    def _shown(self, field: str, value: str | None, task: Task) -> str | None:
        if self.redact is None or value is None:
            return value
        try:
            return self.redact(field, value, task)
        except Exception:
            # a broken hook must not leak what it was meant to hide
            log.exception("the dashboard's redact hook failed on %s of task %s", field, task.id)
            return "[redaction failed]"

    # -------------------------------------------------------------- overview
    def overview(self) -> dict[str, Any]:
        now = self.scheduler.store.now()
        statuses = dict.fromkeys((s.value for s in TaskStatus), 0)
        groups: dict[str, dict[str, int]] = {}
        for status, group, count in self.counts():
            statuses[status] = statuses.get(status, 0) + count
            groups.setdefault(group, {})[status] = count
        due = self.admin.due_summary()
        buckets = per_minute(self.runs_finished(now), now, CHART_MINUTES)
        return {
            "now": iso(now),
            "statuses": statuses,
            "total": sum(statuses.values()),
            "groups": {name: groups[name] for name in sorted(groups)},
            "queue_depth": due.depth,
            "oldest_due_age": seconds_between(now, due.oldest_due),
            "workers": self.workers(now),
            "chart_minutes": CHART_MINUTES,
            "throughput": [
                {
                    "completed": b.get(RunStatus.COMPLETED.value, 0),
                    "failed": sum(b.get(status, 0) for status in FAILED_RUNS),
                }
                for b in buckets
            ],
        }

    def runs_finished(self, now: datetime) -> list[Run]:
        """Runs that ended in the last CHART_MINUTES, with the successful runs that
        left no scheduler_run row (they returned None) counted from the task rows."""
        since = now - timedelta(minutes=CHART_MINUTES)
        runs = self.admin.runs_finished_since(since)
        for started in self.admin.completions_without_run_since(since):
            runs.append(
                Run(id=0, status=RunStatus.COMPLETED.value, start_time=started, stop_time=started)
            )
        return runs

    def workers(self, now: datetime | None = None) -> list[dict[str, Any]]:
        now = now or self.scheduler.store.now()
        return [self.worker(w, now) for w in self.scheduler.store.list_workers()]

    def worker(self, worker: Worker, now: datetime) -> dict[str, Any]:
        # a hand-edited row may hold any JSON
        stats = worker.worker_stats if isinstance(worker.worker_stats, dict) else {}
        age = seconds_between(now, worker.last_heartbeat)
        running = running_task_ids(stats)
        concurrency = stats.get("concurrency")
        pool = stats.get("pool")
        return {
            "name": worker.worker_name,
            "status": worker.status,
            "is_ticker": bool(worker.is_ticker),
            "group_names": worker.group_names or [],
            "last_heartbeat": iso(worker.last_heartbeat),
            "heartbeat_age": age,
            "alive": age is not None and age <= self.scheduler.dead_after,
            # kept for API clients written before pools: the first of current_tasks
            "current_task": running[0] if running else None,
            "current_tasks": running,
            "concurrency": concurrency if _is_int(concurrency) and concurrency > 0 else 1,
            "pool": pool if isinstance(pool, str) else "processes",
            "total": stats.get("total", 0),
            "errors": stats.get("errors", 0),
        }

    # ----------------------------------------------------------------- tasks
    def task_page(
        self,
        task_filter: TaskFilter,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> TaskPage:
        return self.admin.list_tasks(task_filter, before=before, after=after, limit=limit)

    def task_summary(self, task: Task) -> dict[str, Any]:
        return {
            "id": task.id,
            "uuid": task.uuid,
            "task_name": task.task_name,
            "function_name": task.function_name,
            "group_name": task.group_name,
            "status": task.status,
            "enabled": bool(task.enabled),
            "args": self._shown("args", task.args, task),
            "next_run_time": iso(task.next_run_time),
            "last_run_time": iso(task.last_run_time),
            "times_run": task.times_run,
            "times_failed": task.times_failed,
        }

    def task_detail(self, task_id: int, *, with_layout: bool = False) -> dict[str, Any] | None:
        """The task page's data; `with_layout` adds the dependency graph's drawing."""
        if not is_row_id(task_id):
            return None
        task = self.scheduler.store.get_task(task_id)
        if task is None:
            return None
        dependencies = self.admin.dependency_graph(task_id)
        now = self.scheduler.store.now()
        data = self.task_summary(task)
        data.update(
            {
                "vars": self._shown("vars", task.vars, task),
                "application_name": task.application_name,
                "registered": task.function_name in self.scheduler.tasks,
                "assigned_worker_name": task.assigned_worker_name,
                "schedule": {
                    "start_time": iso(task.start_time),
                    "next_run_time": iso(task.next_run_time),
                    "stop_time": iso(task.stop_time),
                    "repeats": task.repeats,
                    "period": task.period,
                    "cronline": task.cronline,
                    "prevent_drift": bool(task.prevent_drift),
                    "timeout": task.timeout,
                    "retry_failed": task.retry_failed,
                    "retry_backoff": task.retry_backoff,
                    "sync_output": task.sync_output,
                    "priority": task.priority,
                    "next_runs": self.next_runs(task),
                },
                "why_not_running": self.why_not_running(task, now),
                "runs": [
                    self.run(r, task) for r in reversed(self.scheduler.store.runs_of(task.id))
                ],
                "dependencies": graph.as_json(dependencies),
            }
        )
        if with_layout:
            data["graph"] = graph.layout(dependencies)
        return data

    def shown_output(self, run: Run, task: Task) -> str:
        """A run's output as the dashboard may show it (after the redact hook)."""
        return self._shown("run_output", run.run_output, task) or ""

    def run(self, run: Run, task: Task) -> dict[str, Any]:
        duration = None
        if run.start_time is not None and run.stop_time is not None:
            duration = seconds_between(run.stop_time, run.start_time)
        return {
            "id": run.id,
            "status": run.status,
            "worker_name": run.worker_name,
            "start_time": iso(run.start_time),
            "stop_time": iso(run.stop_time),
            "duration": duration,
            "result": self._shown("run_result", run.run_result, task),
            "output": self._shown("run_output", run.run_output, task),
            "traceback": self._shown("traceback", run.traceback, task),
        }

    def next_runs(self, task: Task) -> list[str]:
        """The next few times a repeating task is due (period or cronline)."""
        if task.status in (TaskStatus.COMPLETED, TaskStatus.EXPIRED) or task.next_run_time is None:
            return []
        repeats_left = NEXT_RUNS_SHOWN
        if task.repeats:
            repeats_left = min(NEXT_RUNS_SHOWN, max(0, task.repeats - (task.times_run or 0)))
        times = [task.next_run_time]
        try:
            while len(times) < repeats_left:
                if task.cronline:
                    local = not self.scheduler.utc_time
                    times.append(next_cron_time(task.cronline, times[-1], local_time=local))
                else:
                    times.append(times[-1] + timedelta(seconds=task.period or 60))
        except ValueError:
            pass
        stop = task.stop_time
        return [t.isoformat(timespec="seconds") for t in times if stop is None or t <= stop]

    def why_not_running(self, task: Task, now: datetime) -> list[str]:
        """Reasons a QUEUED task is not being picked up, when we can tell."""
        if task.status != TaskStatus.QUEUED:
            return []
        reasons: list[str] = []
        if not task.enabled:
            reasons.append("the task is disabled")
        if task.next_run_time is not None and task.next_run_time > now:
            reasons.append(f"it is not due until {iso(task.next_run_time)}")
        if task.stop_time is not None and task.stop_time <= now:
            reasons.append("its stop_time has passed: the ticker will mark it EXPIRED")
        if task.function_name not in self.scheduler.tasks:
            reasons.append(f"{task.function_name!r} is not registered in this application")
        serving = [
            w
            for w in self.scheduler.store.live_workers(
                [task.group_name or ""], self.scheduler.dead_after
            )
        ]
        if not serving:
            reasons.append(f"no live worker serves group {task.group_name!r}")
        elif all(w.status == WorkerStatus.DISABLED for w in serving):
            reasons.append(f"every worker serving group {task.group_name!r} is disabled")
        return reasons

    # --------------------------------------------------------------- metrics
    def metrics_text(self) -> str:
        """Prometheus text exposition format (version 0.0.4)."""
        now = self.scheduler.store.now()
        lines = [
            "# HELP taskmill_tasks Tasks in the scheduler_task table by status and group.",
            "# TYPE taskmill_tasks gauge",
        ]
        for status, group, count in sorted(self.counts()):
            lines.append(
                f'taskmill_tasks{{status="{_label(status)}",group="{_label(group)}"}} {count}'
            )
        lines += [
            "# HELP taskmill_runs Rows in scheduler_run by status.",
            "# TYPE taskmill_runs gauge",
        ]
        for status, count in sorted(self.admin.run_counts_by_status().items()):
            lines.append(f'taskmill_runs{{status="{_label(status)}"}} {count}')
        workers = self.workers(now)
        due = self.admin.due_summary()
        oldest = seconds_between(now, due.oldest_due) or 0
        lines += [
            "# HELP taskmill_workers_alive Workers whose heartbeat is recent.",
            "# TYPE taskmill_workers_alive gauge",
            f"taskmill_workers_alive {sum(1 for w in workers if w['alive'])}",
            "# HELP taskmill_queue_depth Enabled QUEUED tasks that are due now.",
            "# TYPE taskmill_queue_depth gauge",
            f"taskmill_queue_depth {due.depth}",
            "# HELP taskmill_oldest_due_seconds Age of the oldest due QUEUED task.",
            "# TYPE taskmill_oldest_due_seconds gauge",
            f"taskmill_oldest_due_seconds {max(0.0, oldest)}",
        ]
        by_status: dict[str, int] = {}
        for w in workers:
            if w["alive"]:
                by_status[str(w["status"])] = by_status.get(str(w["status"]), 0) + 1
        lines += [
            "# HELP taskmill_workers_alive_by_status Live workers by their status.",
            "# TYPE taskmill_workers_alive_by_status gauge",
        ]
        lines += [
            f'taskmill_workers_alive_by_status{{status="{_label(status)}"}} {count}'
            for status, count in sorted(by_status.items())
        ]
        lines += self._throughput(now)
        lines += self._pickup_histogram(now)
        lines += self._duration_histogram(now)
        return "\n".join(lines) + "\n"

    def _throughput(self, now: datetime) -> list[str]:
        recent = self.runs_finished(now)
        ended: dict[str, int] = {}
        for run in recent:
            ended[run.status or "?"] = ended.get(run.status or "?", 0) + 1
        window_start = now - timedelta(minutes=THROUGHPUT_MINUTES)
        latest = [r for r in recent if r.stop_time is not None and r.stop_time >= window_start]
        failed = sum(count for status, count in ended.items() if status in FAILED_RUNS)
        finished = sum(ended.values())
        name = "taskmill_runs_finished_last_hour"
        lines = [
            f"# HELP {name} Runs that ended in the last {CHART_MINUTES} minutes, by status "
            "(successful runs without a run row counted from the task rows).",
            f"# TYPE {name} gauge",
        ]
        for status in (s.value for s in RunStatus if s is not RunStatus.RUNNING):
            lines.append(f'{name}{{status="{status}"}} {ended.get(status, 0)}')
        lines += [
            "# HELP taskmill_throughput_per_minute Runs ended per minute over the last "
            f"{THROUGHPUT_MINUTES} minutes.",
            "# TYPE taskmill_throughput_per_minute gauge",
            f"taskmill_throughput_per_minute {round(len(latest) / THROUGHPUT_MINUTES, 3)}",
            "# HELP taskmill_failure_ratio Failed or timed-out runs among the runs that ended "
            f"in the last {CHART_MINUTES} minutes (0 when none ended).",
            "# TYPE taskmill_failure_ratio gauge",
            f"taskmill_failure_ratio {round(failed / finished, 6) if finished else 0}",
        ]
        return lines

    def _pickup_histogram(self, now: datetime) -> list[str]:
        since = now - timedelta(minutes=CHART_MINUTES)
        return _histogram(
            "taskmill_pickup_latency_seconds",
            "Seconds from due to started, for runs started in the last "
            f"{CHART_MINUTES} minutes whose due time the tables hold (see docs/dashboard.md).",
            (0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300),
            self.admin.pickup_latencies_since(since),
        )

    def _duration_histogram(self, now: datetime) -> list[str]:
        runs = self.admin.runs_finished_since(now - timedelta(minutes=CHART_MINUTES))
        durations = [
            (r.stop_time - r.start_time).total_seconds()
            for r in runs
            if r.start_time is not None and r.stop_time is not None
        ]
        return _histogram(
            "taskmill_run_duration_seconds",
            f"Durations of runs that ended in the last {CHART_MINUTES} minutes.",
            (0.1, 0.5, 1, 5, 30, 60, 300, 1800),
            durations,
        )


def _histogram(
    name: str, help_text: str, bounds: tuple[float, ...], values: list[float]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for bound in bounds:
        count = sum(1 for v in values if v <= bound)
        lines.append(f'{name}_bucket{{le="{bound}"}} {count}')
    lines.append(f'{name}_bucket{{le="+Inf"}} {len(values)}')
    lines.append(f"{name}_sum {round(sum(values), 6)}")
    lines.append(f"{name}_count {len(values)}")
    return lines


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
