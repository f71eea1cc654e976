"""The application the benchmark's workers serve (`--app bench_app:sched`).

The database comes from TASKMILL_BENCH_DB, set by run.py for each workload, so the
worker processes, their task children and the benchmark itself share one file.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from taskmill import Scheduler, thread_safe

#: how long each task of the sleep workload waits, as an I/O-bound task would
SLEEP_SECONDS = 0.025


def noop() -> None:
    """Returns None: as in web2py, no scheduler_run row is kept."""


@thread_safe
def noop_thread() -> None:
    """The no-op, allowed in a thread of a `--pool threads` worker: no child process."""


def small() -> int:
    """Returns a small value: a scheduler_run row is written."""
    return 1


def nap() -> None:
    """Sleeps 25 ms: the peers' comparison's task that waits rather than computes."""
    time.sleep(0.025)


def stamp() -> float:
    """When the task started, on the wall clock the enqueuing process also reads."""
    return time.time()


def sleep25() -> None:
    """Waits 25 ms in a child process (not marked: a process-only task)."""
    time.sleep(SLEEP_SECONDS)


@thread_safe
def sleep25_thread() -> None:
    """The same wait, allowed in a thread of a `--pool threads` worker."""
    time.sleep(SLEEP_SECONDS)


@thread_safe
async def sleep25_async() -> None:
    """The same wait as a coroutine, on the event loop of a `--pool threads` worker."""
    await asyncio.sleep(SLEEP_SECONDS)


TASKS: dict[str, Callable[..., Any]] = {
    "noop": noop,
    "noop_thread": noop_thread,
    "small": small,
    "stamp": stamp,
    "sleep25": sleep25,
    "sleep25_thread": sleep25_thread,
    "sleep25_async": sleep25_async,
    "nap": nap,
}

sched = Scheduler(os.environ.get("TASKMILL_BENCH_DB", "sqlite:///bench.db"), tasks=TASKS)
