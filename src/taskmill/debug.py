"""`taskmill run-task ID`: run a stored task in the foreground, for a debugger.

The function runs in this very process (no child, no output capture), so a
breakpoint() in the task stops right here. The task row is left alone unless
`record=True`, which writes the run and updates the task as a worker would.
For a TaskManager app the run is wrapped in its hooks, as in a worker: as the
task's user, then commit() or rollback().
"""

from __future__ import annotations

import traceback

from taskmill.child import decode_arguments, encode_result
from taskmill.context import TaskContext, reset_current_task, set_current_task
from taskmill.eden import TaskManager, pop_user_id, task_hooks
from taskmill.errors import TaskNotFound
from taskmill.lifecycle import Outcome, settle
from taskmill.scheduler import Scheduler
from taskmill.states import RunStatus


def run_stored_task(
    scheduler: Scheduler,
    task_id: int,
    *,
    record: bool = False,
    manager: TaskManager | None = None,
) -> Outcome:
    store = scheduler.store
    task = store.get_task(task_id)
    if task is None:
        raise TaskNotFound(f"no task with id {task_id}")
    started = store.now()
    outcome = Outcome(task=task, status=RunStatus.COMPLETED, started=started, finished=started)
    token = None
    try:
        function = scheduler.tasks.get(task.function_name or "")
        if function is None:
            raise LookupError(f"function {task.function_name!r} is not registered in this app")
        args, kwargs = decode_arguments({"id": task.id, "args": task.args, "vars": task.vars})
        kwargs, user_id = pop_user_id(kwargs)
        token = set_current_task(
            TaskContext(
                id=task.id,
                uuid=task.uuid or "",
                name=task.task_name or "",
                function_name=task.function_name or "",
                args=args,
                vars=kwargs,
                _run_id=lambda: None,
            )
        )
        with task_hooks(manager, user_id):
            value = function(*args, **kwargs)
            result = None if value is None else encode_result(value, task.function_name or "")
        outcome.result = result
    except Exception:
        outcome.status = RunStatus.FAILED
        outcome.traceback = traceback.format_exc()
    finally:
        if token is not None:
            reset_current_task(token)
    outcome.finished = store.now()
    if record:
        name = f"run-task:{Scheduler.default_worker_name()}"
        settlement = settle(
            outcome, discard_results=scheduler.discard_results, local_time=not scheduler.utc_time
        )
        with store.transaction() as conn:
            store.assign_task(conn, task.id, name)
            store.record_outcomes(conn, name, [(outcome, settlement)])
    return outcome
