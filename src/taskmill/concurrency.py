"""Which tasks may share a worker process, and the kinds of worker pool.

A task runs in a child process unless it is marked `@thread_safe`: only then may a
`--pool threads` worker run it in one of its own threads (a plain function) or on
its event loop (an `async def` function). The default is the safe one, because a
task in a process can be hard-killed on timeout or stop_task and cannot corrupt the
worker, while one in a thread can only be abandoned. The mark is an attribute of
the function, so `tasks = {...}` stays the plain dict web2py apps already have.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: the attribute that marks a task function as safe to run inside the worker process
THREAD_SAFE_ATTRIBUTE = "taskmill_thread_safe"


class Pool(StrEnum):
    """Where a worker runs its tasks: `processes` (one persistent child per slot)
    or `threads` (threads and an event loop of the worker, for @thread_safe tasks)."""

    PROCESSES = "processes"
    THREADS = "threads"


def thread_safe(function: F) -> F:
    """Allow `function` to run in a thread (or, if it is `async def`, on the event
    loop) of a `--pool threads` worker: it mostly waits (mail, web services), keeps
    no unprotected global state and needs no hard kill on timeout."""
    try:
        setattr(function, THREAD_SAFE_ATTRIBUTE, True)
    except (AttributeError, TypeError):  # a bound method, a builtin: mark a wrapper
        return _marked_wrapper(function)
    return function


def _marked_wrapper(function: F) -> F:
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def coroutine_wrapper(*args: Any, **kwargs: Any) -> Any:
            return await function(*args, **kwargs)

        wrapper: Any = coroutine_wrapper
    else:

        @functools.wraps(function)
        def plain_wrapper(*args: Any, **kwargs: Any) -> Any:
            return function(*args, **kwargs)

        wrapper = plain_wrapper
    setattr(wrapper, THREAD_SAFE_ATTRIBUTE, True)
    return wrapper  # type: ignore[no-any-return]


def is_thread_safe(function: Callable[..., Any] | None) -> bool:
    """True only for functions marked with @thread_safe: process is the default."""
    return function is not None and getattr(function, THREAD_SAFE_ATTRIBUTE, False) is True


def is_async(function: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(function)
