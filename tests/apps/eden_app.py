"""The Eden-style application the integration tests' workers run: ``--app eden_app:tm``.

A Scheduler and the TaskManager on it with the hooks of ``eden_tasks``; configured from
the environment the harness gives each worker process (TASKMILL_TEST_DB, required, and
TASKMILL_TEST_HEARTBEAT). ``--app eden_app:sched`` names the bare Scheduler, without
the hooks.
"""

from __future__ import annotations

import os

from eden_tasks import DB_ENV, TASKS, commit, impersonate, rollback

from taskmill import Scheduler
from taskmill.eden import TaskManager

sched = Scheduler(
    os.environ[DB_ENV],
    tasks=dict(TASKS),
    heartbeat=float(os.environ.get("TASKMILL_TEST_HEARTBEAT", "1")),
)
tm = TaskManager(sched, impersonate=impersonate, commit=commit, rollback=rollback)
