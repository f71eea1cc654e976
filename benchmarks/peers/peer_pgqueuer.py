"""pgqueuer on PostgreSQL: 2 `pgq run peer_pgqueuer:create --batch-size 50` processes
with async handlers (pgqueuer runs them concurrently). Batch size 50 is where its
no-op rate tops out on this machine (10 -> ~2.9k/s, 25 -> ~4.1k/s, 50 and 100 ->
~5.8k/s). Bulk: Queries.enqueue with lists, one statement."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from common import stamp
from peer_base import BIN, NAP_SECONDS, Peer
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries
from stores import PostgresDatabase

DSN_ENV = "TASKMILL_PEER_DSN"
BATCH_SIZE = 50


def _n(job: Job) -> int:
    return int(job.payload) if job.payload else 0


@asynccontextmanager
async def create() -> AsyncIterator[PgQueuer]:
    connection = await asyncpg.connect(os.environ[DSN_ENV])
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        stamp(_n(job))

    @pgq.entrypoint("nap")
    async def nap(job: Job) -> None:
        await asyncio.sleep(NAP_SECONDS)
        stamp(_n(job))

    @pgq.entrypoint("stamp")
    async def stamp_task(job: Job) -> None:
        stamp(_n(job))

    try:
        yield pgq
    finally:
        await connection.close()


class Adapter(Peer):
    name = "pgqueuer"
    package = "pgqueuer"
    backend = "postgres"
    bulk_method = "Queries.enqueue(lists), one statement"

    def backend_version(self) -> str:
        return PostgresDatabase.version()

    def open(self, workload: str) -> None:
        self.db = PostgresDatabase("pgq")
        subprocess.run(
            [str(BIN / "pgq"), "--pg-dsn", self.db.dsn, "install"],
            check=True,
            capture_output=True,
        )
        self.loop = asyncio.new_event_loop()
        self.connection = self.loop.run_until_complete(asyncpg.connect(self.db.dsn))
        self.queries = Queries(AsyncpgDriver(self.connection))

    def close(self) -> None:
        self.loop.run_until_complete(self.connection.close())
        self.loop.close()
        self.db.drop()

    def enqueue(self, task: str, n: int) -> None:
        self.loop.run_until_complete(self.queries.enqueue(task, str(n).encode()))

    def enqueue_bulk(self, task: str, count: int) -> None:
        for start in range(0, count, 10_000):
            numbers = range(start, min(count, start + 10_000))
            self.loop.run_until_complete(
                self.queries.enqueue(
                    [task] * len(numbers), [str(n).encode() for n in numbers], [0] * len(numbers)
                )
            )

    def worker_env(self) -> dict[str, str]:
        return {DSN_ENV: self.db.dsn}

    def worker_commands(self, workload: str) -> list[list[str]]:
        command = [
            str(BIN / "pgq"),
            "run",
            "peer_pgqueuer:create",
            "--batch-size",
            str(BATCH_SIZE),
            "--log-level",
            "WARNING",
        ]
        return [command, command]

    def settings(self, workload: str) -> dict[str, Any]:
        return {
            "workers": f"2 x pgq run --batch-size {BATCH_SIZE}",
            "handlers": "async def (asyncio.sleep for the 25 ms task)",
            "durability": "default (durable)",
        }
