"""The application of the chaos tests' workers: ``--app chaos_app:sched``.

Configured from the environment the harness gives each worker process:
TASKMILL_TEST_DB (required) and TASKMILL_TEST_HEARTBEAT. When the file named by
TASKMILL_TEST_BREAK_APP says "broken", importing the app fails, as after a bad deploy.
"""

from __future__ import annotations

import os

from chaos_tasks import TASKS
from lifecycle_tasks import DB_ENV

from taskmill import Scheduler

_break_file = os.environ.get("TASKMILL_TEST_BREAK_APP")
if _break_file and os.path.exists(_break_file):
    with open(_break_file) as marker:
        if marker.read() == "broken":
            raise ImportError("chaos_app is broken on purpose (TASKMILL_TEST_BREAK_APP)")

sched = Scheduler(
    os.environ[DB_ENV],
    tasks=dict(TASKS),
    heartbeat=float(os.environ.get("TASKMILL_TEST_HEARTBEAT", "1")),
)
