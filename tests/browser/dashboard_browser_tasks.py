"""Task functions of the browser tests' application (importable without a database)."""

from __future__ import annotations

import time
from pathlib import Path

SCRIPT = "<script>window.pwned = true</script>"


def add(a: int, b: int) -> int:
    return a + b


def slow(seconds: float) -> str:
    time.sleep(seconds)
    return "done"


def shout() -> str:
    print(SCRIPT)
    return SCRIPT


def flaky(marker: str) -> str:
    """Fails the first time, succeeds once the marker file exists."""
    path = Path(marker)
    if not path.exists():
        path.write_text("ran once")
        raise RuntimeError("first run fails on purpose")
    return "second run succeeded"


def chatty(steps: int, pause: float) -> str:
    """Prints a line every `pause` seconds (queued with sync_output, so the worker
    writes the output so far to the run row while it runs), one of them markup."""
    for step in range(1, steps + 1):
        print(f"step {step} of {steps}", flush=True)
        if step == 2:
            print(SCRIPT, flush=True)
        time.sleep(pause)
    return "chatted"


TASKS = {"add": add, "slow": slow, "shout": shout, "flaky": flaky, "chatty": chatty}
