"""What the harness needs from each peer: fresh storage, enqueue one and many, the
commands that start its 2 worker processes, and the settings it ran with. One module a
peer (peer_<name>.py) holds the adapter and is also the app its workers import."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

#: the tasks every peer defines; each ends with common.stamp(n)
TASKS = ("noop", "nap", "stamp")
NAP_SECONDS = 0.025


class Peer:
    name = ""
    package = ""
    backend = ""  # the storage it runs on, as shown in the tables
    workers = 2

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def version(self) -> str:
        from importlib.metadata import version

        return version(self.package)

    def backend_version(self) -> str:
        return ""

    # -- storage
    def open(self, workload: str) -> None:
        """Fresh storage for one workload, schema installed, ready to enqueue."""
        raise NotImplementedError

    def close(self) -> None:
        """Drop what `open` made."""

    # -- enqueue
    def enqueue(self, task: str, n: int) -> None:
        raise NotImplementedError

    #: how bulk enqueue is done, or "" when the peer has no bulk call (the harness
    #: then queues one by one, and says so)
    bulk_method = ""

    def enqueue_bulk(self, task: str, count: int) -> None:
        for n in range(count):
            self.enqueue(task, n)

    # -- workers
    def worker_commands(self, workload: str) -> list[list[str]]:
        raise NotImplementedError

    def settings(self, workload: str) -> dict[str, Any]:
        raise NotImplementedError

    def worker_env(self) -> dict[str, str]:
        """Environment the workers need beyond the stamps file (storage location)."""
        return {}

    def env(self, stamps: Path) -> dict[str, str]:
        from common import STAMPS_ENV

        env = dict(os.environ)
        env.update(self.worker_env())
        env[STAMPS_ENV] = str(stamps)
        env["PYTHONPATH"] = str(HERE)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env
