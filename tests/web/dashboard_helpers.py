"""Runs written exactly as a worker writes them, for the dashboard tests (no processes).

`start_run` claims a task and marks it RUNNING with a RUNNING run row (what a worker
does for a sync_output task, or after 50 ms); `finish_run` settles it through the
same lifecycle rules and store call as the worker.
"""

from __future__ import annotations

import json
from typing import Any

from taskmill import Scheduler
from taskmill.lifecycle import Outcome, settle
from taskmill.states import RunStatus

WORKER = "test-host#1"


def start_run(sched: Scheduler, task_id: int, worker: str = WORKER) -> int:
    store = sched.store
    task = store.get_task(task_id)
    assert task is not None
    with store.transaction() as conn:
        assert store.assign_task(conn, task_id, worker)
        run_id = store.start_run(conn, worker, task, store.now())
    assert run_id is not None
    return run_id


def finish_run(
    sched: Scheduler,
    task_id: int,
    run_id: int,
    *,
    status: RunStatus = RunStatus.COMPLETED,
    output: str = "",
    result: Any = None,
    worker: str = WORKER,
) -> None:
    store = sched.store
    task = store.get_task(task_id)
    run = next(r for r in store.runs_of(task_id) if r.id == run_id)
    assert task is not None and run.start_time is not None
    outcome = Outcome(
        task=task,
        status=status,
        started=run.start_time,
        finished=store.now(),
        result=None if result is None else json.dumps(result),
        output=output,
        traceback="RuntimeError: failed on purpose" if status is RunStatus.FAILED else None,
        run_id=run_id,
    )
    settlement = settle(outcome, discard_results=False, local_time=False)
    with store.transaction() as conn:
        assert store.record_outcomes(conn, worker, [(outcome, settlement)]).lost == []


def parse_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) of each SSE event; start_time is left out (it varies)."""
    events = []
    for block in body.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            data = json.loads(lines["data"])
            data.pop("start_time", None)
            events.append((lines["event"], data))
    return events
