"""The application of the web2py interop tests' workers: ``--app web2py_app:sched``.

Configured from the environment the harness gives each worker process:
TASKMILL_TEST_DB (required), TASKMILL_TEST_HEARTBEAT and TASKMILL_TEST_UTC_TIME
("0" for a database in local time, web2py's default; anything else for UTC).
"""

from __future__ import annotations

import os

from web2py_tasks import DB_ENV, TASKS, UTC_TIME_ENV

from taskmill import Scheduler

sched = Scheduler(
    os.environ[DB_ENV],
    tasks=dict(TASKS),
    heartbeat=float(os.environ.get("TASKMILL_TEST_HEARTBEAT", "1")),
    utc_time=os.environ.get(UTC_TIME_ENV, "1") != "0",
)
