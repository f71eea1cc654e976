"""Task functions of the chaos tests (``chaos_app``): audited work, and tasks that
misbehave on purpose (print or return too much, leak memory, ignore SIGTERM).

``audited`` writes its audit row *before* it works, with the pid of the process
running it, so a run that is killed half-way still leaves its trace: the test knows
which processes it killed, and so which extra runs the killed-run rule allows.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from lifecycle_tasks import audit, write_audit

#: what ``leak`` keeps alive, as a leaking task (or library) would
_leaked: list[bytes] = []

MB = 1024 * 1024


def audit_rows(engine: sa.Engine) -> list[tuple[int, int]]:
    """(task id, pid of the process that ran it) for every run that started."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(audit.c.task_id, audit.c.pid).order_by(audit.c.id))
        return [(task_id, pid) for task_id, pid in rows]


def audited(delay: float = 0.0) -> int:
    """Records that it started (task id, pid), then works for `delay` seconds."""
    write_audit("")
    if delay:
        time.sleep(delay)
    return os.getpid()


def add(a: int, b: int) -> int:
    return a + b


def shout(megabytes: int, line: str = "x" * 99) -> str:
    """Prints `megabytes` MB of 100-character lines, then a last line."""
    for _ in range(megabytes * MB // 100):
        print(line)
    print("the end")
    return "printed"


def big_return(megabytes: float) -> str:
    return "x" * int(megabytes * MB)


def leak(megabytes: int) -> int:
    """Keeps `megabytes` MB alive after it returns; returns the child's pid."""
    _leaked.append(os.urandom(megabytes * MB))
    return os.getpid()


def ignore_sigterm(seconds: float, marker: str = "") -> int:
    """Ignores SIGTERM and works on; touches `marker` first so a test knows it started."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if marker:
        Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def nan() -> float:
    return float("nan")


def deep(levels: int) -> Any:
    value: Any = []
    for _ in range(levels):
        value = [value]
    return value


def an_object() -> object:
    return object()


def exit_child(code: int = 7) -> None:
    """Ends its process outright, as a crashing C extension would."""
    sys.stdout.flush()
    os._exit(code)


def crash_and_break_app(marker: str) -> str:
    """The first time: marks the app broken and ends its process, so the worker's next
    child cannot start. Once the test has repaired the app: returns."""
    if not os.path.exists(marker):
        Path(marker).write_text("broken")
        os._exit(9)
    return "ran again"


TASKS: dict[str, Callable[..., Any]] = {
    "audited": audited,
    "add": add,
    "shout": shout,
    "big_return": big_return,
    "leak": leak,
    "ignore_sigterm": ignore_sigterm,
    "nan": nan,
    "deep": deep,
    "an_object": an_object,
    "exit_child": exit_child,
    "crash_and_break_app": crash_and_break_app,
}
