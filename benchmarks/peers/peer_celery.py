"""Celery with a Redis broker: one `celery worker -c 2` (prefork: 2 child processes),
gossip, mingle and heartbeat off and results ignored (Celery's optimisation guide for
many short tasks), prefetch multiplier 64 for millisecond tasks and 1 with `-O fair`
for the 25 ms sleeps (the guide's advice for longer tasks)."""

from __future__ import annotations

import time
from typing import Any

from celery import Celery
from common import stamp
from peer_base import BIN, NAP_SECONDS, Peer
from stores import REDIS_URL, redis_flush, redis_version

_BASE, _, _DB = REDIS_URL.rpartition("/")
CELERY_URL = f"{_BASE}/{int(_DB) + 1}"  # its own db, next to rq's

app = Celery("peer_celery", broker=CELERY_URL)
app.conf.update(
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_acks_late=False,
)


@app.task(name="noop")
def noop(n: int = 0) -> None:
    stamp(n)


@app.task(name="nap")
def nap(n: int = 0) -> None:
    time.sleep(NAP_SECONDS)
    stamp(n)


@app.task(name="stamp")
def stamp_task(n: int = 0) -> None:
    stamp(n)


TASK_FUNCTIONS = {"noop": noop, "nap": nap, "stamp": stamp_task}


def _prefetch(workload: str) -> int:
    return 1 if workload == "sleep" else 64


class Adapter(Peer):
    name = "celery"
    package = "celery"
    backend = "redis"
    bulk_method = "apply_async with one producer (no bulk API)"

    def backend_version(self) -> str:
        return redis_version(CELERY_URL)

    def open(self, workload: str) -> None:
        redis_flush(CELERY_URL)

    def close(self) -> None:
        redis_flush(CELERY_URL)

    def enqueue(self, task: str, n: int) -> None:
        TASK_FUNCTIONS[task].delay(n)

    def enqueue_bulk(self, task: str, count: int) -> None:
        function = TASK_FUNCTIONS[task]
        with app.producer_or_acquire() as producer:
            for n in range(count):
                function.apply_async((n,), producer=producer)

    def worker_commands(self, workload: str) -> list[list[str]]:
        return [
            [
                str(BIN / "celery"),
                "-A",
                "peer_celery",
                "worker",
                "-c",
                "2",
                "-P",
                "prefork",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--prefetch-multiplier",
                str(_prefetch(workload)),
                *(["-O", "fair"] if workload == "sleep" else []),
                "-l",
                "WARNING",
            ]
        ]

    def settings(self, workload: str) -> dict[str, Any]:
        return {
            "worker": "-c 2 -P prefork --without-gossip --without-mingle --without-heartbeat"
            + (" -O fair" if workload == "sleep" else ""),
            "prefetch_multiplier": _prefetch(workload),
            "results": "ignored",
        }
