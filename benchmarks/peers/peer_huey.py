"""huey with its SQLite storage (SqliteHuey), consumer `-k process -w 2`.

Settings: WAL (huey's default) and fsync=False, huey's documented switch for speed
(PRAGMA synchronous=OFF: less durable than taskmill's synchronous=NORMAL, so the
comparison leans huey's way); the consumer's polling interval stays at its default
(0.1 s, backing off to 10 s when idle): huey documents no wake-up on enqueue for SQLite.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from common import stamp
from huey import SqliteHuey
from huey.storage import SqliteStorage
from peer_base import BIN, NAP_SECONDS, Peer
from stores import fresh_sqlite

DB_ENV = "TASKMILL_PEER_HUEY_DB"

huey = SqliteHuey("bench", filename=os.environ.get(DB_ENV, "huey-bench.db"), fsync=False)


@huey.task()
def noop(n: int = 0) -> None:
    stamp(n)


@huey.task()
def nap(n: int = 0) -> None:
    time.sleep(NAP_SECONDS)
    stamp(n)


@huey.task(name="stamp")
def stamp_task(n: int = 0) -> None:
    stamp(n)


TASK_FUNCTIONS = {"noop": noop, "nap": nap, "stamp": stamp_task}


class Adapter(Peer):
    name = "huey"
    package = "huey"
    backend = "sqlite"

    def backend_version(self) -> str:
        import sqlite3

        return sqlite3.sqlite_version

    def open(self, workload: str) -> None:
        self.path: Path = fresh_sqlite(self.workdir, f"huey-{workload}")
        # the tasks stay registered with the module's huey: only its file changes
        huey.storage.close()
        huey.storage = SqliteStorage("bench", filename=str(self.path), fsync=False)

    def close(self) -> None:
        huey.storage.close()

    def enqueue(self, task: str, n: int) -> None:
        TASK_FUNCTIONS[task](n)

    def worker_env(self) -> dict[str, str]:
        return {DB_ENV: str(self.path)}

    def worker_commands(self, workload: str) -> list[list[str]]:
        return [[str(BIN / "huey_consumer"), "peer_huey.huey", "-k", "process", "-w", "2", "-q"]]

    def settings(self, workload: str) -> dict[str, Any]:
        return {
            "consumer": "-k process -w 2",
            "poll": "default (-d 0.1 s, -m 10 s, -b 1.15)",
            "storage": "SqliteHuey(journal_mode=wal, fsync=False)",
        }
