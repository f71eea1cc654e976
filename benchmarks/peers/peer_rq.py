"""rq with Redis: 2 `rq worker -w rq.worker.SimpleWorker` processes (the default
worker forks once per job, which dominates millisecond jobs; SimpleWorker is rq's own
answer for them). Bulk: Queue.enqueue_many, one pipeline."""

from __future__ import annotations

import time
from typing import Any

from common import stamp
from peer_base import BIN, NAP_SECONDS, Peer
from redis import Redis
from rq import Queue
from stores import REDIS_URL, redis_flush, redis_version


def noop(n: int = 0) -> None:
    stamp(n)


def nap(n: int = 0) -> None:
    time.sleep(NAP_SECONDS)
    stamp(n)


def stamp_task(n: int = 0) -> None:
    stamp(n)


TASK_FUNCTIONS = {"noop": noop, "nap": nap, "stamp": stamp_task}


class Adapter(Peer):
    name = "rq"
    package = "rq"
    backend = "redis"
    bulk_method = "Queue.enqueue_many (one pipeline)"

    def backend_version(self) -> str:
        return redis_version()

    def open(self, workload: str) -> None:
        redis_flush()
        self.redis = Redis.from_url(REDIS_URL)
        self.queue = Queue("bench", connection=self.redis)

    def close(self) -> None:
        self.redis.close()
        redis_flush()

    def enqueue(self, task: str, n: int) -> None:
        self.queue.enqueue(TASK_FUNCTIONS[task], n)

    def enqueue_bulk(self, task: str, count: int) -> None:
        function = TASK_FUNCTIONS[task]
        for start in range(0, count, 1000):
            jobs = [
                Queue.prepare_data(function, (n,)) for n in range(start, min(count, start + 1000))
            ]
            self.queue.enqueue_many(jobs)

    def worker_commands(self, workload: str) -> list[list[str]]:
        command = [
            str(BIN / "rq"),
            "worker",
            "-u",
            REDIS_URL,
            "-w",
            "rq.worker.SimpleWorker",
            "-q",
            "bench",
        ]
        return [command, command]

    def settings(self, workload: str) -> dict[str, Any]:
        return {
            "workers": "2 x rq worker -w rq.worker.SimpleWorker",
            "redis": REDIS_URL.rsplit("/", 1)[0] + "/<db>",
        }
