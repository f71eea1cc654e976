"""current_task(): what a running task can learn about itself.

Set by the child process around each call, so it is only meaningful inside a
task; outside one it returns None, as web2py's W2P_TASK is absent there.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TaskContext:
    id: int
    uuid: str
    name: str
    function_name: str
    args: list[Any]
    vars: dict[str, Any]
    _run_id: Callable[[], int | None] = field(repr=False, compare=False)

    @property
    def run_id(self) -> int | None:
        """The scheduler_run row of this run; created on first use, since most
        fast runs never need one until they finish."""
        return self._run_id()


_current: ContextVar[TaskContext | None] = ContextVar("taskmill_current_task", default=None)


def current_task() -> TaskContext | None:
    return _current.get()


def set_current_task(context: TaskContext | None) -> Any:
    return _current.set(context)


def reset_current_task(token: Any) -> None:
    _current.reset(token)
