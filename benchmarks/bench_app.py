"""The application the benchmark's workers serve (`--app bench_app:sched`).

The database comes from TASKMILL_BENCH_DB, set by run.py for each workload, so the
worker processes, their task children and the benchmark itself share one file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from taskmill import Scheduler


def noop() -> None:
    """Returns None: as in web2py, no scheduler_run row is kept."""


def small() -> int:
    """Returns a small value: a scheduler_run row is written."""
    return 1


def nap() -> None:
    """Sleeps 25 ms: the peers' comparison's task that waits rather than computes."""
    time.sleep(0.025)


def stamp() -> float:
    """When the task started, on the wall clock the enqueuing process also reads."""
    return time.time()


TASKS: dict[str, Callable[..., Any]] = {"noop": noop, "small": small, "stamp": stamp, "nap": nap}

sched = Scheduler(os.environ.get("TASKMILL_BENCH_DB", "sqlite:///bench.db"), tasks=TASKS)
