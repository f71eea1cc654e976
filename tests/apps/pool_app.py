"""The application of the worker-pool tests: ``--app pool_app:sched``."""

from __future__ import annotations

import os

from pool_tasks import TASKS

from taskmill import Scheduler

sched = Scheduler(
    os.environ["TASKMILL_TEST_DB"],
    tasks=dict(TASKS),
    heartbeat=float(os.environ.get("TASKMILL_TEST_HEARTBEAT", "1")),
)
