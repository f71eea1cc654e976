"""The worker's side of its child process: start, hand over a task, kill.

A child is started once and reused. It is a session leader, so killing its
process group on timeout or stop also ends anything the task spawned, and a
Ctrl-C in the worker's terminal reaches only the worker, which decides.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from taskmill.errors import AppImportError, ProtocolError
from taskmill.forkserver import ForkedChild, ForkServer
from taskmill.protocol import recv_available, send_message, send_messages
from taskmill.records import Task

log = logging.getLogger(__name__)


class ChildProcess:
    """One persistent child running tasks of the app named by `app_spec`."""

    def __init__(
        self,
        app_spec: str,
        *,
        start_timeout: float = 60.0,
        max_output: int | None = None,
        max_result: int | None = None,
        forkserver: ForkServer | None = None,
    ) -> None:
        self.app_spec = app_spec
        #: where children come from when it runs: forked, warm (see forkserver.py)
        self.forkserver = forkserver
        self.start_timeout = start_timeout
        self.limits: list[str] = []
        if max_output is not None:
            self.limits += ["--max-output", str(max_output)]
        if max_result is not None:
            self.limits += ["--max-result", str(max_result)]
        self.process: subprocess.Popen[bytes] | ForkedChild | None = None
        self.sock: socket.socket | None = None
        self.inbox: deque[dict[str, Any] | None] = deque()  # see receive
        self.tasks: list[str] = []
        self.started_count = 0
        #: tasks this child process has finished, for --max-tasks-per-child
        self.tasks_done = 0
        #: the signal that ended the last child during its start-up, if one did
        self.start_signal: int | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def fileno(self) -> int:
        assert self.sock is not None
        return self.sock.fileno()

    def start(self) -> None:
        self.spawn()
        self.wait_started()

    def spawn(self) -> None:
        """Start the process without waiting for it to import the app, so that a
        pool's children import theirs side by side (see wait_started)."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = ["--app", self.app_spec, *self.limits, "--worker-pid", str(os.getpid())]
        self.tasks_done = 0
        self.start_signal = None
        self.process = None
        if self.forkserver is not None and self.forkserver.alive:
            try:
                self.process = self.forkserver.fork(child.fileno(), argv)
            except OSError as exc:
                log.warning("fork server gone (%s): task children start from scratch", exc)
        if self.process is None:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "taskmill.child", *argv, "--fd", str(child.fileno())],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        child.close()
        self.sock = parent
        self.started_count += 1

    def wait_started(self) -> None:
        message = self._wait_ready()
        self.tasks = list(message.get("tasks", []))
        log.debug("child %s ready with tasks %s", self.pid, self.tasks)

    def _wait_ready(self) -> dict[str, Any]:
        assert self.sock is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.sock, selectors.EVENT_READ)
            if not selector.select(self.start_timeout):
                self.kill()
                raise AppImportError(
                    f"the task child for {self.app_spec} did not start within "
                    f"{self.start_timeout:.0f} s"
                )
        message = self.receive()
        if message is None:
            code = self.reap()
            self.start_signal = -code if code is not None and code < 0 else None
            raise AppImportError(
                f"the task child for {self.app_spec} exited during start-up (code {code})"
            )
        if message["type"] == "fatal":
            self.reap()
            raise AppImportError(str(message.get("error")))
        if message["type"] != "ready":
            raise ProtocolError(f"expected 'ready' from the child, got {message['type']!r}")
        return message

    def send(self, message: dict[str, Any]) -> None:
        if self.sock is None:  # killed, and its replacement failed to start
            raise BrokenPipeError("the task child is not running")
        send_message(self.sock, message)

    def send_task(self, task: Task, *, start_by: float | None = None) -> None:
        """`start_by` (time.monotonic(), one clock for all processes of the host):
        a task handed over ahead that the child reaches later is started only
        after the worker says it is still wanted (see Worker._top_up)."""
        self.send_tasks([task], start_by=start_by)

    def send_tasks(self, tasks: list[Task], *, start_by: float | None = None) -> None:
        """Several tasks in one write, so the child is woken once for all of them."""
        if self.sock is None:  # killed, and its replacement failed to start
            raise BrokenPipeError("the task child is not running")
        send_messages(self.sock, [_run_message(task, start_by) for task in tasks])

    def receive(self) -> dict[str, Any] | None:
        """The next message, or None if the child died. One read may bring several
        (tasks run back to back): those behind the first wait in `inbox`, so a
        caller about to wait for the socket looks there first (`pending`)."""
        if not self.inbox:
            self.inbox.extend(self._read())
        return self.inbox.popleft()

    def receive_ready(self) -> list[dict[str, Any] | None]:
        """Every message that has arrived: one wake-up of the worker for the
        several "done" of tasks run back to back. Ends with None if the child died."""
        if not self.inbox:
            return self._read()
        messages = list(self.inbox)
        self.inbox.clear()
        return messages

    @property
    def pending(self) -> bool:
        """Messages read already and not handed out: no need to wait for the socket."""
        return bool(self.inbox)

    def _read(self) -> list[dict[str, Any] | None]:
        assert self.sock is not None
        try:
            messages = recv_available(self.sock)
        except ProtocolError as exc:
            log.error("child %s sent garbage (%s); killing it", self.pid, exc)
            self.kill()
            messages = [*exc.received, None]
        self.tasks_done += sum(1 for m in messages if m is not None and m["type"] == "done")
        return messages

    def memory_bytes(self) -> int | None:
        """The child's resident memory now (Linux /proc), None where unknown."""
        if self.process is None:
            return None
        try:
            fields = Path(f"/proc/{self.process.pid}/statm").read_text().split()
            return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return None

    def recycle_reason(self, max_tasks: int, max_memory: int) -> str | None:
        """Why this child should be replaced before its next task, if it should:
        --max-tasks-per-child and --max-memory-per-child (0 = no limit)."""
        if max_tasks and self.tasks_done >= max_tasks:
            return f"it ran {self.tasks_done} task(s) (--max-tasks-per-child {max_tasks})"
        if max_memory:
            used = self.memory_bytes()
            if used is not None and used > max_memory:
                return f"it uses {used} bytes (--max-memory-per-child {max_memory})"
        return None

    def reap(self, timeout: float = 5.0) -> int | None:
        """Wait for an exiting child; returns its exit code (negative: signal)."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the child and everything it started."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()
        self._close_socket()

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the child to exit, killing it if it does not."""
        if self.process is None:
            return
        if self.process.poll() is None and self.sock is not None:
            with contextlib.suppress(OSError):
                self.send({"type": "exit"})
            deadline = time.monotonic() + timeout
            while self.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
        self.kill()

    def _close_socket(self) -> None:
        self.inbox.clear()  # what a killed child said is void
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _run_message(task: Task, start_by: float | None) -> dict[str, Any]:
    return {
        "type": "run",
        "id": task.id,
        "uuid": task.uuid,
        "name": task.task_name,
        "function": task.function_name,
        "args": task.args,
        "vars": task.vars,
        "sync_output": task.sync_output or 0,
        "start_by": start_by,
    }
