"""Task functions of the web2py interop tests, the ones a web2py app would register.

Kept apart from ``web2py_app`` (which builds its Scheduler from the environment at
import time) so that the test process can import the registry without a worker's
environment.
"""

from __future__ import annotations

from typing import Any

DB_ENV = "TASKMILL_TEST_DB"
UTC_TIME_ENV = "TASKMILL_TEST_UTC_TIME"


def demo_add(a: int, b: int) -> int:
    return a + b


def demo_echo(*args: Any, **vars: Any) -> dict[str, Any]:
    """Hands back what it was called with, to show how args and vars were decoded."""
    return {"args": list(args), "vars": vars}


def demo_print() -> None:
    print("printed, nothing returned")


def demo_fail(message: str) -> None:
    raise ValueError(message)


TASKS = {
    "demo_add": demo_add,
    "demo_echo": demo_echo,
    "demo_print": demo_print,
    "demo_fail": demo_fail,
}
