"""A run's output as server-sent events, while the task runs.

Workers write a sync_output task's output so far to scheduler_run.run_output every
few seconds (the whole text each time; `!clear!` may shorten it). The stream reads
that row every POLL_SECONDS, sends what was added (or the whole text when it did not
just grow), and ends with an `end` event once the run is over. The database is the
only channel between workers and the dashboard, so this is polling on the server
side, once per open stream, instead of in every browser.

Events (each `data:` is one JSON object):

- `run`: {run_id, worker_name, start_time}: the run followed from here on; a client
  starts its display afresh (a reconnecting EventSource gets the whole text again);
- `output`: {run_id, append} or {run_id, replace};
- `end`: {run_id, status, task_status}: the run is over (status None: its row was
  removed, as web2py does for a successful run that returned None), or the task will
  not run. The server then closes the stream; a client must not reconnect.

A stream also ends, without `end`, after MAX_SECONDS: EventSource reconnects by
itself, and no connection is held for ever by a task that never runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool

from taskmill.records import Run, Task
from taskmill.states import ACTIVE, RunStatus
from taskmill.web.data import DashboardData, iso

POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
MAX_SECONDS = 300.0
#: what an EventSource waits before reconnecting after MAX_SECONDS
RETRY_MS = 2000


def event(name: str, data: dict[str, Any]) -> str:
    """One SSE event; JSON keeps the data on one line whatever the output holds."""
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


@dataclass(frozen=True, slots=True)
class Snapshot:
    task: Task | None
    run: Run | None


class OutputStream:
    """Follows one task's run; `events()` is the body of the StreamingResponse."""

    def __init__(
        self,
        data: DashboardData,
        task_id: int,
        run_id: int | None = None,
        *,
        poll_seconds: float = POLL_SECONDS,
        max_seconds: float = MAX_SECONDS,
    ) -> None:
        self.data = data
        self.admin = data.admin
        self.task_id = task_id
        self.run_id = run_id
        self.poll_seconds = poll_seconds
        self.max_seconds = max_seconds

    def snapshot(self, run_id: int | None) -> Snapshot:
        """The task and the run to show: the given one, else the one in progress,
        else (a task that will not run again) its latest."""
        if run_id is not None:
            # the run first: a worker ends the run and updates the task in one
            # commit, so a task read afterwards is never older than the run
            run = self.admin.get_run(run_id)
            return Snapshot(self.data.scheduler.store.get_task(self.task_id), run)
        task = self.data.scheduler.store.get_task(self.task_id)
        if task is None:
            return Snapshot(None, None)
        run = self.admin.running_run(self.task_id)
        if run is None and task.status not in ACTIVE:
            run = self.data.scheduler.store.latest_run(self.task_id)
        return Snapshot(task, run)

    async def events(self) -> AsyncIterator[str]:
        yield f"retry: {RETRY_MS}\n\n"
        started = time.monotonic()
        quiet_since = started
        following = self.run_id
        shown: str | None = None  # the text the client has for `following`
        while time.monotonic() - started < self.max_seconds:
            snap = await run_in_threadpool(self.snapshot, following)
            task, run = snap.task, snap.run
            if task is None:
                yield event("end", {"run_id": following, "status": None, "task_status": None})
                return
            if run is None and following is not None:
                # the row went away: a successful run that returned None (web2py)
                yield event(
                    "end", {"run_id": following, "status": None, "task_status": task.status}
                )
                return
            if run is not None:
                if run.id != following or shown is None:
                    following, shown = run.id, ""
                    yield event(
                        "run",
                        {
                            "run_id": run.id,
                            "worker_name": run.worker_name,
                            "start_time": iso(run.start_time),
                        },
                    )
                text = self.data.shown_output(run, task)
                if text != shown:
                    if text.startswith(shown):
                        yield event("output", {"run_id": run.id, "append": text[len(shown) :]})
                    else:
                        yield event("output", {"run_id": run.id, "replace": text})
                    shown = text
                    quiet_since = time.monotonic()
                if run.status != RunStatus.RUNNING:
                    yield event(
                        "end", {"run_id": run.id, "status": run.status, "task_status": task.status}
                    )
                    return
            elif task.status not in ACTIVE:
                # finished without any run row: nothing will come
                yield event("end", {"run_id": None, "status": None, "task_status": task.status})
                return
            if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                yield ": waiting\n\n"  # a comment: keeps proxies from closing the stream
                quiet_since = time.monotonic()
            await anyio.sleep(self.poll_seconds)
