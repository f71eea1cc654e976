"""The application the browser tests' workers and dashboard run:
``--app dashboard_browser_app:sched``, database from TASKMILL_BROWSER_DB."""

from __future__ import annotations

import os

from dashboard_browser_tasks import TASKS

from taskmill import Scheduler

sched = Scheduler(os.environ["TASKMILL_BROWSER_DB"], tasks=dict(TASKS), heartbeat=1)
