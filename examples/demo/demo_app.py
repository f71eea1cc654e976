"""The demo application: a few task functions and the Scheduler that knows them.

A worker imports this module by name (`--app demo_app:sched`), so keep it importable
on its own: put examples/demo on PYTHONPATH and run, from the repository root,

    PYTHONPATH=examples/demo .venv/bin/taskmill worker --app demo_app:sched -n 2

The database is demo-data/demo.db at the repository root, whatever the current
directory, so the demo, its workers and their task children all share one file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskmill import Scheduler, current_task

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = ROOT / "demo-data"
DB_FILE = DATA_DIR / "demo.db"


def add(a: int, b: int) -> int:
    """A plain task: its return value is stored (as JSON) on the run row."""
    return a + b


def heartbeat_report() -> dict[str, Any]:
    """A recurring task: each run reports its task id, its run id and the time."""
    task = current_task()
    assert task is not None  # always set inside a worker
    return {"task": task.id, "run_id": task.run_id, "at": time.strftime("%H:%M:%S")}


def flaky_division(a: int, b: int) -> float:
    """A failing task: b == 0 raises, and the traceback lands on the run row."""
    return a / b


def crunch(steps: int = 5, pause: float = 0.8) -> dict[str, int]:
    """A slow task reporting progress; with sync_output the output is visible while it runs.

    "!clear!" discards what was printed before it, so the run's output always holds
    only the latest progress line instead of the whole history.
    """
    total = 0
    for step in range(1, steps + 1):
        time.sleep(pause)
        total += step * step
        print(f"!clear!step {step}/{steps}: partial sum {total}")
    return {"steps": steps, "sum_of_squares": total}


def sleepy(seconds: float = 30.0) -> str:
    """Runs far longer than its timeout: the worker kills it and marks it TIMEOUT."""
    print(f"going to sleep for {seconds:g} s")
    time.sleep(seconds)
    return "woke up (never reached with a short timeout)"


TASKS: dict[str, Callable[..., Any]] = {
    "add": add,
    "heartbeat_report": heartbeat_report,
    "flaky_division": flaky_division,
    "crunch": crunch,
    "sleepy": sleepy,
}

# SQLite creates the database file on first use, but not its directory
DATA_DIR.mkdir(exist_ok=True)

sched = Scheduler(f"sqlite:///{DB_FILE}", tasks=TASKS)
