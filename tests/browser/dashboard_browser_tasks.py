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


TASKS = {"add": add, "slow": slow, "shout": shout, "flaky": flaky}
