"""The application the integration tests' workers run: ``--app lifecycle_app:sched``.

Configured from the environment the harness gives each worker process:
TASKMILL_TEST_DB (required), TASKMILL_TEST_HEARTBEAT and TASKMILL_TEST_MAX_EMPTY_RUNS.
"""

from __future__ import annotations

import os

from lifecycle_tasks import DB_ENV, TASKS

from taskmill import Scheduler

sched = Scheduler(
    os.environ[DB_ENV],
    tasks=dict(TASKS),
    heartbeat=float(os.environ.get("TASKMILL_TEST_HEARTBEAT", "1")),
    max_empty_runs=int(os.environ.get("TASKMILL_TEST_MAX_EMPTY_RUNS", "0")),
)
