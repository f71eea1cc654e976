"""Running @thread_safe tasks inside the worker process (`--pool threads`).

A plain function runs in one of a pool of reused threads (a thread whose task was
abandoned leaves the pool once the task returns; a new one takes its place), a
coroutine function on one event loop thread shared by all of them; the worker's
dispatcher (pool.py) decides how many run at once. Nothing here can be
hard-killed: on a timeout or stop_task a coroutine is cancelled, while a thread
is abandoned (it runs on, its result is ignored), which is why only tasks marked
@thread_safe ever get here.

Each run reports back through a queue plus a pipe the dispatcher's selector
watches, and prints into its own capture: sys.stdout is replaced once by a
router that writes to the capture of the task running in the current thread or
coroutine (a context variable), and to the real stdout otherwise.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import itertools
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TextIO

from taskmill.child import OutputCapture, decode_arguments, encode_result
from taskmill.concurrency import is_async
from taskmill.context import TaskContext, reset_current_task, set_current_task
from taskmill.eden import TaskManager, pop_user_id, task_hooks
from taskmill.records import Task
from taskmill.states import RunStatus

_capture: ContextVar[OutputCapture | None] = ContextVar("taskmill_capture", default=None)


class RoutedStdout(io.TextIOBase):
    """sys.stdout of a worker running tasks in threads: each task's prints go to
    its own run's output, everything else to the real stdout."""

    def __init__(self, real: TextIO) -> None:
        self.real = real

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        capture = _capture.get()
        if capture is None:
            return self.real.write(text)
        return capture.write(text)

    def flush(self) -> None:
        if _capture.get() is None:
            self.real.flush()


@dataclass
class InProcessRun:
    """One task handed to a thread or to the event loop."""

    token: int
    task: Task
    capture: OutputCapture = field(default_factory=OutputCapture)
    future: concurrent.futures.Future[Any] | None = None  # the coroutine's, if async
    abandoned: bool = False
    run_id: int | None = None
    run_id_ready: threading.Event = field(default_factory=threading.Event)

    def output(self) -> str:
        return self.capture.getvalue()


@dataclass
class Prepared:
    function: Callable[..., Any]
    args: list[Any]
    kwargs: dict[str, Any]
    user_id: Any


class InProcessRunner:
    """The threads and the event loop of one worker, and their report queue."""

    def __init__(
        self, registry: dict[str, Callable[..., Any]], manager: TaskManager | None = None
    ) -> None:
        self.registry = registry
        self.manager = manager
        self.events: queue.SimpleQueue[tuple[str, InProcessRun, dict[str, Any]]] = (
            queue.SimpleQueue()
        )
        self._tokens = itertools.count(1)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._real_stdout: TextIO | None = None
        self._jobs: queue.SimpleQueue[tuple[InProcessRun, Prepared]] = queue.SimpleQueue()
        self._idle_threads = 0  # threads waiting for a job and not promised one yet
        self._threads_lock = threading.Lock()
        self.abandoned = 0  # threads left running after a timeout or stop_task

    def fileno(self) -> int:
        return self._wake_r

    def start(self) -> None:
        if self._real_stdout is None:
            self._real_stdout = sys.stdout
            sys.stdout = RoutedStdout(sys.stdout)

    def close(self) -> None:
        if self._real_stdout is not None:
            sys.stdout = self._real_stdout
            self._real_stdout = None
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._loop_thread is not None:
            self._loop_thread.join(timeout=5)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # ------------------------------------------------------------- running
    def submit(self, task: Task) -> InProcessRun:
        """Start `task`; its end arrives as a ("done", run, report) event."""
        run = InProcessRun(token=next(self._tokens), task=task)
        try:
            prepared = self._prepare(task)
        except Exception:
            self._post("done", run, _failed(traceback.format_exc()))
            return run
        if is_async(prepared.function):
            loop = self._event_loop()
            run.future = asyncio.run_coroutine_threadsafe(self._run_coroutine(run, prepared), loop)
        else:
            self._jobs.put((run, prepared))
            with self._threads_lock:
                idle = self._idle_threads > 0
                if idle:
                    self._idle_threads -= 1  # that one is promised this job
            if not idle:
                threading.Thread(
                    target=self._serve_jobs,
                    name="taskmill-task-thread",
                    daemon=True,  # an abandoned task must not keep the worker from exiting
                ).start()
        return run

    def _serve_jobs(self) -> None:
        while True:
            run, prepared = self._jobs.get()
            self._run_function(run, prepared)
            if run.abandoned:
                return  # replaced already: the dispatcher freed its slot long ago
            with self._threads_lock:
                self._idle_threads += 1

    def abandon(self, run: InProcessRun) -> None:
        """Stop caring about `run`: cancel it if it is a coroutine; a thread cannot
        be stopped from outside, so it runs on and its report is dropped."""
        run.abandoned = True
        run.run_id_ready.set()
        if run.future is not None:
            run.future.cancel()
        else:
            self.abandoned += 1

    def deliver_run_id(self, run: InProcessRun, run_id: int | None) -> None:
        run.run_id = run_id
        run.run_id_ready.set()

    def take_events(self) -> list[tuple[str, InProcessRun, dict[str, Any]]]:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 4096):
                pass
        events = []
        while True:
            try:
                events.append(self.events.get_nowait())
            except queue.Empty:
                return events

    def _prepare(self, task: Task) -> Prepared:
        name = str(task.function_name)
        function = self.registry.get(name)
        if function is None:
            raise LookupError(f"function {name!r} is not registered in this worker's tasks")
        args, kwargs = decode_arguments({"id": task.id, "args": task.args, "vars": task.vars})
        kwargs, user_id = pop_user_id(kwargs)
        return Prepared(function, args, kwargs, user_id)

    def _context(self, run: InProcessRun, prepared: Prepared) -> TaskContext:
        def run_id() -> int | None:
            if run.run_id is None and not run.run_id_ready.is_set():
                self._post("need_run_id", run, {})
                run.run_id_ready.wait()
            return run.run_id

        task = run.task
        return TaskContext(
            id=task.id,
            uuid=str(task.uuid),
            name=str(task.task_name),
            function_name=str(task.function_name),
            args=prepared.args,
            vars=prepared.kwargs,
            _run_id=run_id,
        )

    def _run_function(self, run: InProcessRun, prepared: Prepared) -> None:
        started_at = time.time()
        token = set_current_task(self._context(run, prepared))
        capture_token = _capture.set(run.capture)
        try:
            with task_hooks(self.manager, prepared.user_id):
                value = prepared.function(*prepared.args, **prepared.kwargs)
            report = _completed(value, run.task)
        except BaseException:
            report = _failed(traceback.format_exc())
        finally:
            _capture.reset(capture_token)
            reset_current_task(token)
        report["started_at"] = started_at
        self._post("done", run, report)

    async def _run_coroutine(self, run: InProcessRun, prepared: Prepared) -> None:
        # a coroutine runs in a copy of the loop's context: these settings stay its own
        started_at = time.time()
        set_current_task(self._context(run, prepared))
        _capture.set(run.capture)
        try:
            with task_hooks(self.manager, prepared.user_id):
                value = await prepared.function(*prepared.args, **prepared.kwargs)
            report = _completed(value, run.task)
        except asyncio.CancelledError:
            return  # timed out or stopped: the dispatcher has settled it already
        except BaseException:
            report = _failed(traceback.format_exc())
        report["started_at"] = started_at
        self._post("done", run, report)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            self._loop_thread = threading.Thread(
                target=loop.run_forever, name="taskmill-event-loop", daemon=True
            )
            self._loop_thread.start()
            self._loop = loop
        return self._loop

    def _post(self, kind: str, run: InProcessRun, payload: dict[str, Any]) -> None:
        if run.abandoned:
            return
        self.events.put((kind, run, payload))
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"!")


def _completed(value: Any, task: Task) -> dict[str, Any]:
    try:
        result = None if value is None else encode_result(value, str(task.function_name))
    except TypeError:
        return _failed(traceback.format_exc())
    return {"status": RunStatus.COMPLETED.value, "result": result}


def _failed(text: str) -> dict[str, Any]:
    return {"status": RunStatus.FAILED.value, "traceback": text}
