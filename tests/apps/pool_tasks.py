"""Task functions for the worker-pool tests (`--concurrency N`, `--pool`).

Each `span*` task sleeps and returns when it ran and where (pid, thread), read from
its own clock, so a test can prove from the stored results that runs overlapped.
The same body comes as a process-only function, a @thread_safe one and two coroutine
functions (one @thread_safe, one not), one for every way a pool can run a task.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from taskmill import current_task, thread_safe


def _where(start: float) -> dict[str, Any]:
    context = current_task()
    return {
        "start": start,
        "end": time.time(),
        "pid": os.getpid(),
        "thread": threading.get_ident(),
        "task_id": None if context is None else context.id,
    }


def span(seconds: float) -> dict[str, Any]:
    """Process-only (not marked): never runs in a worker's thread."""
    start = time.time()
    time.sleep(seconds)
    return _where(start)


@thread_safe
def span_thread(seconds: float) -> dict[str, Any]:
    start = time.time()
    time.sleep(seconds)
    print(f"thread task {current_task().id if current_task() else None} slept")
    return _where(start)


@thread_safe
async def span_async(seconds: float) -> dict[str, Any]:
    start = time.time()
    await asyncio.sleep(seconds)
    print(f"async task {current_task().id if current_task() else None} slept")
    return _where(start)


async def span_async_process(seconds: float) -> dict[str, Any]:
    """A coroutine function not marked @thread_safe: each run in a child's own loop."""
    start = time.time()
    await asyncio.sleep(seconds)
    return _where(start)


def crash() -> None:
    """The child process dies in the middle of the run."""
    os._exit(3)


def worker_pid() -> int:
    return os.getpid()


@thread_safe
def worker_pid_thread() -> int:
    return os.getpid()


TASKS: dict[str, Callable[..., Any]] = {
    "span": span,
    "span_thread": span_thread,
    "span_async": span_async,
    "span_async_process": span_async_process,
    "crash": crash,
    "worker_pid": worker_pid,
    "worker_pid_thread": worker_pid_thread,
}
