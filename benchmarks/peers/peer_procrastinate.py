"""procrastinate on PostgreSQL: 2 `procrastinate worker --concurrency=30` processes
(its documented value; 10 and 100 were slower here) with async tasks and
LISTEN/NOTIFY (default on). Bulk: Task.batch_defer_async, one statement."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import procrastinate
from common import stamp
from peer_base import BIN, NAP_SECONDS, Peer
from stores import PostgresDatabase

DSN_ENV = "TASKMILL_PEER_DSN"
CONCURRENCY = 30


async def noop(n: int = 0) -> None:
    stamp(n)


async def nap(n: int = 0) -> None:
    await asyncio.sleep(NAP_SECONDS)
    stamp(n)


async def stamp_task(n: int = 0) -> None:
    stamp(n)


def make_app(dsn: str) -> procrastinate.App:
    made = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))
    for name, function in {"noop": noop, "nap": nap, "stamp": stamp_task}.items():
        made.task(name=name)(function)
    return made


app = make_app(os.environ.get(DSN_ENV, ""))


class Adapter(Peer):
    name = "procrastinate"
    package = "procrastinate"
    backend = "postgres"
    bulk_method = "Task.batch_defer_async, one statement"

    def backend_version(self) -> str:
        return PostgresDatabase.version()

    def open(self, workload: str) -> None:
        self.db = PostgresDatabase("procr")
        self.app = make_app(self.db.dsn)
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.app.open_async())
        self.loop.run_until_complete(self.app.schema_manager.apply_schema_async())

    def close(self) -> None:
        self.loop.run_until_complete(self.app.close_async())
        self.loop.close()
        self.db.drop()

    def _task(self, task: str) -> Any:
        return self.app.tasks[task]

    def enqueue(self, task: str, n: int) -> None:
        self.loop.run_until_complete(self._task(task).defer_async(n=n))

    def enqueue_bulk(self, task: str, count: int) -> None:
        for start in range(0, count, 5_000):
            kwargs = [{"n": n} for n in range(start, min(count, start + 5_000))]
            self.loop.run_until_complete(self._task(task).batch_defer_async(*kwargs))

    def worker_env(self) -> dict[str, str]:
        return {DSN_ENV: self.db.dsn}

    def worker_commands(self, workload: str) -> list[list[str]]:
        command = [
            str(BIN / "procrastinate"),
            "--app=peer_procrastinate.app",
            "--log-level=warning",
            "worker",
            f"--concurrency={CONCURRENCY}",
        ]
        return [command, command]

    def settings(self, workload: str) -> dict[str, Any]:
        return {
            "workers": f"2 x procrastinate worker --concurrency={CONCURRENCY}",
            "tasks": "async def (asyncio.sleep for the 25 ms task)",
            "listen_notify": True,
        }
