"""The application of the chaos tests' workers: ``--app chaos_app:sched``.

Configured from the environment the harness gives each worker process:
TASKMILL_TEST_DB (required) and TASKMILL_TEST_HEARTBEAT. When the file named by
TASKMILL_TEST_BREAK_APP says "broken", importing the app fails, as after a bad deploy.
TASKMILL_TEST_KILL_CHILD_ONCE=PATH makes the first task child (the process started with
--fd) SIGKILL itself while importing the app, as the OOM killer might.
TASKMILL_TEST_CLOCK_SKEW=S sets this process's clock S seconds off, as on a machine
whose clock drifted: every reading of the wall clock taskmill makes goes through
timing.utc_now (libfaketime, which would do it for the whole process, is not installed
here).
"""

from __future__ import annotations

import os
import signal
import sys
from datetime import datetime, timedelta

from chaos_tasks import TASKS
from lifecycle_tasks import DB_ENV

import taskmill.store.base
import taskmill.timing
from taskmill import Scheduler

_kill_once = os.environ.get("TASKMILL_TEST_KILL_CHILD_ONCE")
if _kill_once and "--fd" in sys.argv and not os.path.exists(_kill_once):
    with open(_kill_once, "w") as marker:
        marker.write(str(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)

_skew = timedelta(seconds=float(os.environ.get("TASKMILL_TEST_CLOCK_SKEW") or 0))
if _skew:
    _real_utc_now = taskmill.timing.utc_now

    def _skewed_utc_now() -> datetime:
        return _real_utc_now() + _skew

    taskmill.timing.utc_now = _skewed_utc_now
    taskmill.store.base.utc_now = _skewed_utc_now  # type: ignore[attr-defined]

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
