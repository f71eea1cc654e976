"""The child process that runs tasks for one worker, one at a time.

Started once per worker slot with exec (`python -m taskmill.child`), it imports
the application itself, so no database connection or lock is inherited across a
fork; it is reused for every task until it dies or a timeout forces a kill. It
never touches the database: it reports to its worker over a socket.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import io
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

from taskmill.apps import load_app_with_hooks
from taskmill.context import TaskContext, reset_current_task, set_current_task
from taskmill.eden import TaskManager, pop_user_id, task_hooks
from taskmill.errors import AppImportError
from taskmill.forkserver import alive, name_process
from taskmill.protocol import (
    MAX_OUTPUT_CHARS,
    MAX_RESULT_BYTES,
    recv_available,
    recv_message,
    send_message,
)
from taskmill.states import RunStatus

#: web2py's marker: output before the last "!clear!" is discarded
CLEAR_MARKER = "!clear!"


def visible_output(text: str) -> str:
    index = text.rfind(CLEAR_MARKER)
    return text if index < 0 else text[index + len(CLEAR_MARKER) :]


class OutputCapture(io.TextIOBase):
    """Collects what a task prints; a lock because tasks may print from threads.

    Keeps only the last `limit` characters (the end of the output says how a task
    ended, and web2py's "!clear!" shows only the end anyway), so a task printing
    gigabytes costs neither memory here nor a database write that cannot succeed.
    """

    def __init__(self, limit: int = MAX_OUTPUT_CHARS) -> None:
        self._parts: list[str] = []
        self._size = 0
        self._lock = threading.Lock()
        self.limit = limit
        self.dropped = 0
        self.version = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            self._parts.append(text)
            self._size += len(text)
            self.version += 1
            if self._size > 2 * self.limit:
                self._trim()
        return len(text)

    def _trim(self) -> str:
        """Joins the parts, applies "!clear!" and the limit; returns what is kept."""
        text = "".join(self._parts)
        visible = visible_output(text)
        if len(visible) < len(text):
            self.dropped = 0  # cleared by the task itself: nothing of it was shown anyway
        keep = visible[-self.limit :]
        self.dropped += len(visible) - len(keep)
        self._parts = [keep]
        self._size = len(keep)
        return keep

    def getvalue(self) -> str:
        with self._lock:
            text = self._trim()
            dropped = self.dropped
        if dropped:
            note = f"[taskmill: output over {self.limit} characters; the first {dropped} dropped]"
            return f"{note}\n{text}"
        return text


class Channel:
    """The child's end of the socket; sends are serialised across threads.

    The worker may send messages ahead (tasks handed over in advance, hold and
    release), so a task thread waiting for the reply to its own request keeps
    whatever else arrives first in `inbox` for the serve loop.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.inbox: deque[dict[str, Any] | None] = deque()

    def send(self, message: dict[str, Any]) -> None:
        with self.lock:
            send_message(self.sock, message)

    def request(self, message: dict[str, Any], reply_type: str) -> dict[str, Any]:
        with self.lock:
            send_message(self.sock, message)
            while True:
                reply = recv_message(self.sock)
                if reply is None:
                    raise SystemExit(0)  # the worker went away
                if reply["type"] == reply_type:
                    return reply
                self.inbox.append(reply)

    def next_messages(self, block: bool) -> list[dict[str, Any] | None]:
        """What has arrived: waits for one message if `block`, then takes every
        message already readable without waiting (None means the worker is gone)."""
        messages: list[dict[str, Any] | None] = list(self.inbox)
        self.inbox.clear()
        if messages[-1:] == [None]:
            return messages
        if (block and not messages) or select.select([self.sock], [], [], 0)[0]:
            messages.extend(recv_available(self.sock))
        return messages


class OutputSyncer(threading.Thread):
    """Sends the output so far every sync_output seconds while a task runs."""

    def __init__(self, channel: Channel, capture: OutputCapture, every: float) -> None:
        super().__init__(daemon=True)
        self.channel = channel
        self.capture = capture
        self.every = every
        self.done = threading.Event()

    def run(self) -> None:
        sent = -1
        while not self.done.wait(self.every):
            if self.capture.version != sent:
                sent = self.capture.version
                self.channel.send({"type": "output", "output": self.capture.getvalue()})


def decode_arguments(message: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The stored args/vars, checked: a malformed row fails its task, not the child."""
    # RecursionError: nested deeper than Python's recursion limit
    try:
        args = json.loads(message.get("args") or "[]")
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"args of task {message.get('id')} is not valid JSON: {exc}") from None
    try:
        kwargs = json.loads(message.get("vars") or "{}")
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"vars of task {message.get('id')} is not valid JSON: {exc}") from None
    if not isinstance(args, list):
        raise ValueError(f"args of task {message.get('id')} must be a JSON list, not {args!r:.80}")
    if not isinstance(kwargs, dict):
        raise ValueError(
            f"vars of task {message.get('id')} must be a JSON object, not {kwargs!r:.80}"
        )
    return args, kwargs


class ResultTooLarge(ValueError):
    """A task returned more than the worker's --max-result-bytes."""


def encode_result(value: Any, function_name: str, limit: int = MAX_RESULT_BYTES) -> str:
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(
            f"the result of task {function_name!r} is not JSON-serialisable "
            f"({type(value).__name__}): {exc}"
        ) from None
    size = len(text.encode())
    if size > limit:
        raise ResultTooLarge(
            f"the result of task {function_name!r} is {size} bytes as JSON; the limit is "
            f"{limit} (taskmill worker --max-result-bytes)"
        )
    return text


async def awaited(awaitable: Any) -> Any:
    return await awaitable


class TaskRunner:
    """Runs one task message and reports how it went."""

    def __init__(
        self,
        registry: dict[str, Callable[..., Any]],
        channel: Channel,
        manager: TaskManager | None = None,
        *,
        max_output: int = MAX_OUTPUT_CHARS,
        max_result: int = MAX_RESULT_BYTES,
    ) -> None:
        self.registry = registry
        self.channel = channel
        self.manager = manager  # its hooks wrap every run (Eden's TaskManager apps)
        self.max_output = max_output
        self.max_result = max_result
        self._run_id: int | None = None

    def _ask_run_id(self) -> int | None:
        if self._run_id is None:
            reply = self.channel.request({"type": "need_run_id"}, "run_id")
            self._run_id = reply.get("run_id")
        return self._run_id

    def run(self, message: dict[str, Any]) -> dict[str, Any]:
        self._run_id = message.get("run_id")
        capture = OutputCapture(self.max_output)
        syncer = None
        sync_every = message.get("sync_output") or 0
        if sync_every > 0:
            syncer = OutputSyncer(self.channel, capture, float(sync_every))
        function_name = str(message.get("function"))
        real_stdout = sys.stdout
        report: dict[str, Any] = {"type": "done"}
        token = None
        try:
            function = self.registry.get(function_name)
            if function is None:
                raise LookupError(
                    f"function {function_name!r} is not registered in this worker's tasks"
                )
            args, kwargs = decode_arguments(message)
            kwargs, user_id = pop_user_id(kwargs)
            token = set_current_task(
                TaskContext(
                    id=int(message["id"]),
                    uuid=str(message.get("uuid")),
                    name=str(message.get("name")),
                    function_name=function_name,
                    args=args,
                    vars=kwargs,
                    _run_id=self._ask_run_id,
                )
            )
            sys.stdout = capture
            if syncer is not None:
                syncer.start()
            with task_hooks(self.manager, user_id):
                value = function(*args, **kwargs)
                if inspect.isawaitable(value):
                    # an `async def` task: its own event loop in this child, so a
                    # timeout still hard-kills it with the child (see concurrency.py)
                    value = asyncio.run(awaited(value))
                result = (
                    None if value is None else encode_result(value, function_name, self.max_result)
                )
            report.update(status=RunStatus.COMPLETED.value, result=result)
        except BaseException:
            report.update(status=RunStatus.FAILED.value, traceback=traceback.format_exc())
        finally:
            sys.stdout = real_stdout
            if syncer is not None:
                syncer.done.set()
                syncer.join()
            if token is not None:
                reset_current_task(token)
        report["output"] = capture.getvalue()
        return report


def serve(
    channel: Channel,
    registry: dict[str, Callable[..., Any]],
    manager: TaskManager | None = None,
    runner: TaskRunner | None = None,
) -> None:
    """Run the tasks the worker hands over, in order.

    The worker may hand several over in advance. Before starting each one the
    child reads everything that has arrived, so a "hold" (the worker is checking
    whether the tasks it sent are still wanted) stops it before the next task, and
    the "release" that follows names the tasks to drop (stopped meanwhile). A task
    reached after its `start_by` is asked about first ("ask", answered likewise).
    """
    runner = runner or TaskRunner(registry, channel, manager)
    pending: deque[dict[str, Any]] = deque()
    held = False
    while True:
        for message in channel.next_messages(block=held or not pending):
            if message is None or message["type"] == "exit":
                return
            kind = message["type"]
            if kind == "run":
                pending.append(message)
            elif kind == "hold":
                held = True
            elif kind == "release":
                held = False
                skip = set(message.get("skip") or [])
                for dropped in [m for m in pending if m.get("id") in skip]:
                    pending.remove(dropped)
                    channel.send({"type": "skipped", "id": dropped.get("id")})
                for waiting in pending:  # checked just now: a new deadline to start by
                    waiting["start_by"] = message.get("start_by")
        if held or not pending:
            continue
        start_by = pending[0].get("start_by")
        if isinstance(start_by, float) and time.monotonic() > start_by:
            # handed over ahead a while ago: the worker may have been too starved of
            # CPU to pass on a stop_task; it answers with a "release" (see above)
            channel.send({"type": "ask", "id": pending[0].get("id")})
            held = True
            continue
        message = pending.popleft()
        started_at = time.time()
        started = time.monotonic()
        report = runner.run(message)
        report["elapsed"] = time.monotonic() - started
        # the worker may have sent several tasks ahead: say which one ended
        # and when it really started
        report["id"] = message.get("id")
        report["started_at"] = started_at
        channel.send(report)


def die_with_worker(parent_pid: int, worker_pid: int | None = None, every: float = 0.5) -> None:
    """End this child, and whatever its task started, once its worker is gone.

    A worker killed with SIGKILL cannot stop its child; the task would run on while
    the ticker requeues it for another worker, and so run twice at the same time.
    A child forked by the worker's fork server (forkserver.py) has that server as
    its parent: it outlives a fork server that died alone, as long as its worker
    lives.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(every)
        while worker_pid not in (None, parent_pid) and alive(worker_pid):
            time.sleep(every)
        if os.getpgrp() == os.getpid():  # we lead our own session (see executor.py)
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os._exit(1)

    threading.Thread(target=watch, name="taskmill-worker-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taskmill.child")
    parser.add_argument("--app", required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--max-output", type=int, default=MAX_OUTPUT_CHARS)
    parser.add_argument("--max-result", type=int, default=MAX_RESULT_BYTES)
    parser.add_argument("--worker-pid", type=int, default=None)
    options = parser.parse_args(argv)
    # the worker decides when we stop; a terminal's Ctrl-C is not for us
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    name_process("taskmill-child")
    die_with_worker(os.getppid(), options.worker_pid)
    sock = socket.socket(fileno=options.fd)
    channel = Channel(sock)
    try:
        scheduler, manager = load_app_with_hooks(options.app)
    except AppImportError as exc:
        channel.send({"type": "fatal", "error": str(exc)})
        return 2
    channel.send({"type": "ready", "pid": os.getpid(), "tasks": sorted(scheduler.tasks)})
    runner = TaskRunner(
        scheduler.tasks,
        channel,
        manager,
        max_output=options.max_output,
        max_result=options.max_result,
    )
    serve(channel, scheduler.tasks, manager, runner)
    return 0


if __name__ == "__main__":
    sys.exit(main())
