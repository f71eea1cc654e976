"""JobGraph: web2py's task dependencies (scheduler_task_deps).

web2py's naming is kept: `add_deps(parent, child)` means the parent runs only
after the child has completed. A task with a dependency row whose can_visit is
still 'F' is never claimed; the worker that completes the child sets can_visit.

Edges are written at once (so a parent is held back from the moment its edge
exists) and validate() removes every edge of the job again if they form a
cycle, as web2py's rollback does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection

from taskmill.errors import TaskNotFound

if TYPE_CHECKING:
    from taskmill.scheduler import Scheduler


def run_order(edges: list[tuple[int, int]]) -> list[set[int]] | None:
    """Topological layers, children first; None if the edges hold a cycle.

    Mirrors web2py's JobGraph.validate: self-dependencies are ignored.
    """
    waiting: dict[int, set[int]] = {}
    for parent, child in edges:
        waiting.setdefault(parent, set())
        waiting.setdefault(child, set())
        if parent != child:
            waiting[parent].add(child)
    order: list[set[int]] = []
    while waiting:
        ready = {task for task, needs in waiting.items() if not needs}
        if not ready:
            return None
        order.append(ready)
        waiting = {task: needs - ready for task, needs in waiting.items() if task not in ready}
    return order


class JobGraph:
    """The dependencies of one job (a named set of edges)."""

    def __init__(self, scheduler: Scheduler, job_name: str = "job_0") -> None:
        if not isinstance(job_name, str) or not job_name.strip():
            raise ValueError("job_name must be a non-empty string")
        self.scheduler = scheduler
        self.job_name = job_name

    def add_deps(self, task_parent: int, task_child: int, *, db: Connection | None = None) -> int:
        """Hold task_parent until task_child has completed; returns the edge id."""
        for label, value in (("task_parent", task_parent), ("task_child", task_child)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{label} must be a task id (int), not {type(value).__name__}")
        store = self.scheduler.store
        # looked up on `db` when given, so tasks queued in the same open
        # transaction (queue_task(db=conn)) are found
        missing = [t for t in (task_parent, task_child) if not store.task_exists(t, db)]
        if missing:
            raise TaskNotFound(f"no task with id {missing[0]}")
        return store.add_dependency(self.job_name, task_parent, task_child, conn=db)

    def validate(self) -> list[set[int]] | None:
        """The run order as a list of sets (children first), or None for a cycle,
        in which case every edge of this job is deleted."""
        store = self.scheduler.store
        order = run_order(store.dependencies(self.job_name))
        if order is None:
            store.delete_dependencies(self.job_name)
        return order
