"""`taskmill worker -n N`: run N worker processes and stop them together.

Each worker is its own process (started with exec, never forked, so no
database connection is shared) in its own session, so a terminal's Ctrl-C
reaches only this supervisor, which forwards it once: the first signal asks
workers to finish gracefully, a second one makes them exit at once. A worker
killed by a signal is replaced; one that exits with an error stops the rest
and its exit code becomes ours.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from types import FrameType

log = logging.getLogger(__name__)

SUPERVISOR_ENV = "TASKMILL_SUPERVISOR_PID"


def default_worker_name() -> str:
    """host#pid, web2py's worker name (`-n N` appends -1 ... -N)."""
    return f"{socket.gethostname()}#{os.getpid()}"


class Supervisor:
    def __init__(self, worker_args: list[str], count: int, base_name: str) -> None:
        self.worker_args = worker_args
        self.count = count
        self.base_name = base_name
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.generation = 0
        self.signals: list[int] = []

    def _spawn(self, slot: int) -> None:
        self.generation += 1
        name = (
            f"{self.base_name}-{slot}"
            if self.generation <= self.count
            else (f"{self.base_name}-{slot}.{self.generation}")
        )
        command = [sys.executable, "-m", "taskmill", *self.worker_args, "-n", "1", "--name", name]
        env = dict(os.environ, **{SUPERVISOR_ENV: str(os.getpid())})
        self.processes[slot] = subprocess.Popen(command, env=env, start_new_session=True)
        log.info("started worker %s (pid %d)", name, self.processes[slot].pid)

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        self.signals.append(signum)
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._forward)
        for slot in range(1, self.count + 1):
            self._spawn(slot)
        exit_code = 0
        while self.processes:
            for slot, process in list(self.processes.items()):
                code = process.poll()
                if code is None:
                    continue
                del self.processes[slot]
                if code < 0 and not self.signals:
                    log.warning("worker in slot %d died of signal %d; replacing it", slot, -code)
                    self._spawn(slot)
                elif code > 0:
                    exit_code = max(exit_code, code)
                    if not self.signals:
                        log.error("worker in slot %d exited with %d; stopping all", slot, code)
                        self._forward(signal.SIGTERM, None)
            time.sleep(0.1)
        return exit_code
