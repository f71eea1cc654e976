"""`make demo`: real workers on SQLite, a handful of tasks, a live status table.

It starts from an empty demo-data/ directory, creates the tables, starts
`python -m taskmill worker --app demo_app:sched -n 2` as a subprocess (log in
demo-data/worker.log), queues one task of each kind, reprints a status table
whenever something changes until every task is in a final state, checks that each
ended as it should, and stops the workers with SIGTERM. The exit code is non-zero
when anything did not end as expected.

Only the public API (Scheduler, queue_task, task_status, runs, get_workers) and
the `taskmill` command line are used: this is what an application does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

# examples/demo is sys.path[0] when this file runs as a script
from demo_app import DATA_DIR, DB_FILE, ROOT, sched

from taskmill import RunStatus, TaskReport, TaskStatus

WORKER_LOG = DATA_DIR / "worker.log"
LOG_NAME = WORKER_LOG.relative_to(ROOT)
APP = "demo_app:sched"
WORKERS = 2
REFRESH = 0.5  # seconds between looks at the database
# time limits (seconds) that keep the whole demo under a minute even on a busy machine;
# unloaded, the workers start in about a second and the tasks take about six
WORKERS_START_WITHIN = 20.0
TASKS_END_WITHIN = 25.0
STOP_WITHIN = 5.0  # per SIGTERM; the tasks are all finished by then
FINAL = {
    TaskStatus.COMPLETED,
    TaskStatus.FAILED,
    TaskStatus.TIMEOUT,
    TaskStatus.STOPPED,
    TaskStatus.EXPIRED,
}

Check = Callable[[TaskReport], list[str]]


@dataclass
class Sample:
    """One task to queue, and what must be true of it at the end."""

    function: str
    label: str
    check: Check
    pargs: list[Any] = field(default_factory=list)
    pvars: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    task_id: int = 0


def expect(report: TaskReport, status: TaskStatus, **values: Any) -> list[str]:
    """Problems with a final task row: wrong status or a wrong column value."""
    task = report.scheduler_task
    problems = []
    if task.status != status:
        problems.append(f"status is {task.status}, expected {status}")
    for name, wanted in values.items():
        if task[name] != wanted:
            problems.append(f"{name} is {task[name]!r}, expected {wanted!r}")
    return problems


def check_add(report: TaskReport) -> list[str]:
    problems = expect(report, TaskStatus.COMPLETED, times_run=1)
    if report.result != 5:
        problems.append(f"result is {report.result!r}, expected 5")
    return problems


def check_recurring(report: TaskReport) -> list[str]:
    problems = expect(report, TaskStatus.COMPLETED, times_run=3)
    runs = sched.runs(report.scheduler_task.id)
    if len(runs) != 3 or any(run.status != RunStatus.COMPLETED for run in runs):
        problems.append(f"expected 3 COMPLETED runs, found {[run.status for run in runs]}")
    return problems


def check_failing(report: TaskReport) -> list[str]:
    # retry_failed=1: the first failure requeues it, the second one is final
    problems = expect(report, TaskStatus.FAILED, times_failed=2, times_run=0)
    traceback = (report.scheduler_run and report.scheduler_run.traceback) or ""
    if "ZeroDivisionError" not in traceback:
        problems.append("the run's traceback does not name ZeroDivisionError")
    return problems


def check_slow(report: TaskReport) -> list[str]:
    problems = expect(report, TaskStatus.COMPLETED, times_run=1)
    if report.result != {"steps": 5, "sum_of_squares": 55}:
        problems.append(f"result is {report.result!r}")
    output = (report.scheduler_run and report.scheduler_run.run_output) or ""
    if output != "step 5/5: partial sum 55\n":
        problems.append(f"run_output is {output!r}; !clear! should leave only the last line")
    return problems


def check_timeout(report: TaskReport) -> list[str]:
    problems = expect(report, TaskStatus.TIMEOUT, times_failed=1, times_run=0)
    run = report.scheduler_run
    if run is None or run.status != RunStatus.TIMEOUT:
        problems.append("no TIMEOUT run row")
    return problems


SAMPLES = [
    Sample("add", "add 2 + 3", pargs=[2, 3], check=check_add),
    Sample(
        "heartbeat_report",
        "recurring: 3 runs, period 2 s",
        options={"period": 2, "repeats": 3},
        check=check_recurring,
    ),
    Sample(
        "flaky_division",
        "fails: 1 / 0, one retry",
        pargs=[1, 0],
        options={"retry_failed": 1, "period": 1},
        check=check_failing,
    ),
    Sample(
        "crunch",
        "slow, progress via sync_output",
        pvars={"steps": 5, "pause": 0.8},
        options={"sync_output": 1},
        check=check_slow,
    ),
    Sample(
        "sleepy",
        "sleeps 30 s, timeout 2 s",
        pvars={"seconds": 30},
        options={"timeout": 2, "sync_output": 1},
        check=check_timeout,
    ),
]


# --------------------------------------------------------------------- workers
def start_workers(log: IO[bytes]) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "examples" / "demo"), env.get("PYTHONPATH")) if p
    )
    command = [sys.executable, "-m", "taskmill", "worker", "--app", APP, "-n", str(WORKERS)]
    # a session of its own: a Ctrl-C in this terminal reaches only us, and we decide
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_for_workers(process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + WORKERS_START_WITHIN
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if len(sched.get_workers()) >= WORKERS:
            return True
        time.sleep(0.1)
    return False


def stop_workers(process: subprocess.Popen[bytes]) -> int:
    """First SIGTERM: finish gracefully; a second one: exit at once; then SIGKILL."""
    for _ in range(2):
        if process.poll() is not None:
            break
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(STOP_WITHIN)
        except subprocess.TimeoutExpired:
            print("workers still running after SIGTERM; sending another one")
    if process.poll() is None:
        process.kill()
    return process.wait()


# ----------------------------------------------------------------------- table
def last_line(text: str | None) -> str:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def describe_run(report: TaskReport) -> str:
    run = report.scheduler_run
    if run is None:
        return ""
    if run.status == RunStatus.COMPLETED:
        return f"result: {json.dumps(report.result)}"
    status = (run.status or "").lower()
    if run.traceback:
        return f"{status}: {last_line(run.traceback)}"
    if run.run_output:
        return f"{status}, output: {last_line(run.run_output)}"
    return status


def snapshot() -> list[TaskReport]:
    reports = []
    for sample in SAMPLES:
        report = sched.task_status(sample.task_id, output=True)
        assert isinstance(report, TaskReport), f"task {sample.task_id} vanished"
        reports.append(report)
    return reports


def render(reports: list[TaskReport]) -> list[str]:
    header = ("id", "task", "status", "runs", "fails", "result / last output")
    rows = [header]
    for sample, report in zip(SAMPLES, reports, strict=True):
        task = report.scheduler_task
        detail = describe_run(report)
        rows.append(
            (
                str(task.id),
                sample.label,
                str(task.status),
                str(task.times_run),
                str(task.times_failed),
                detail if len(detail) <= 58 else detail[:55] + "...",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return [
        "  ".join(
            [*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]
        ).rstrip()
        for row in rows
    ]


def watch(started: float) -> list[TaskReport]:
    """Reprint the table whenever it changes; stop when all tasks are final or time is up."""
    shown: list[str] = []
    deadline = time.monotonic() + TASKS_END_WITHIN
    while True:
        reports = snapshot()
        table = render(reports)
        done = all(r.scheduler_task.status in FINAL for r in reports)
        if table != shown:
            print(f"\n--- t = {time.monotonic() - started:4.1f} s")
            print("\n".join(table), flush=True)
            shown = table
        if done:
            return reports
        if time.monotonic() > deadline:
            print(f"\nnot every task reached a final state within {TASKS_END_WITHIN:.0f} s")
            return reports
        time.sleep(REFRESH)


# ------------------------------------------------------------------------ main
def queue_samples() -> None:
    for sample in SAMPLES:
        queued = sched.queue_task(
            sample.function,
            pargs=sample.pargs,
            pvars=sample.pvars,
            task_name=sample.label,
            **sample.options,
        )
        if queued.errors or queued.id is None:
            raise SystemExit(f"queue_task({sample.function!r}) failed: {queued.errors}")
        sample.task_id = queued.id


def where_to_look() -> None:
    db = "sqlite:///demo-data/demo.db"
    ids = {sample.function: sample.task_id for sample in SAMPLES}
    print(
        f"""
Where to look (from the repository root):
  database     demo-data/demo.db (SQLite, WAL mode)
  worker log   {LOG_NAME}
  run workers  PYTHONPATH=examples/demo .venv/bin/taskmill worker --app {APP} -n 2
  queue one    PYTHONPATH=examples/demo .venv/bin/taskmill queue --app {APP} add --args '[1, 2]'
  a task       .venv/bin/taskmill status {ids["crunch"]} --output --db {db}
  a failure    .venv/bin/taskmill status {ids["flaky_division"]} --output --db {db}
  requeue it   .venv/bin/taskmill requeue {ids["flaky_division"]} --db {db}
  workers      .venv/bin/taskmill workers --db {db}
  raw rows     sqlite3 demo-data/demo.db 'select id,task_name,status from scheduler_task'
               sqlite3 demo-data/demo.db 'select id,task_id,status,run_result from scheduler_run'"""
    )


def problems_of(reports: list[TaskReport]) -> list[str]:
    problems = []
    for sample, report in zip(SAMPLES, reports, strict=True):
        problems += [f"task {sample.task_id} ({sample.label}): {p}" for p in sample.check(report)]
    return problems


def run() -> int:
    shutil.rmtree(DATA_DIR, ignore_errors=True)
    DATA_DIR.mkdir()
    sched.create_tables()
    print(f"taskmill demo: SQLite database {DB_FILE.relative_to(ROOT)} (fresh)")
    print(f"starting {WORKERS} workers: taskmill worker --app {APP} -n {WORKERS}")
    started = time.monotonic()
    with WORKER_LOG.open("wb") as log:
        workers = start_workers(log)
        problems: list[str] = []
        try:
            if not wait_for_workers(workers):
                problems.append(f"the workers did not start; see {LOG_NAME}")
            else:
                ready = time.monotonic() - started
                print(f"{len(sched.get_workers())} workers beating after {ready:.1f} s")
                queue_samples()
                print(f"queued {len(SAMPLES)} tasks; status as it changes:")
                problems += problems_of(watch(started))
        finally:
            print("\nstopping the workers (SIGTERM: graceful) ...")
            code = stop_workers(workers)
    print(f"workers exited with code {code}")
    if code != 0:
        problems.append(f"the workers exited with code {code}; see {LOG_NAME}")
    if sched.get_workers():
        problems.append(f"worker rows left behind: {sorted(sched.get_workers())}")
    if all(sample.task_id for sample in SAMPLES):
        where_to_look()
    if problems:
        print(f"\nlast lines of {LOG_NAME}:")
        print("".join(f"  {line}" for line in WORKER_LOG.read_text().splitlines(True)[-5:]))
        print("DEMO FAILED:")
        print("\n".join(f"  - {p}" for p in problems))
        return 1
    print("\nDemo OK: every task ended as expected.")
    return 0


def main() -> None:
    try:
        sys.exit(run())
    except KeyboardInterrupt:  # the finally in run() has stopped the workers
        print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
