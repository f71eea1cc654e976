"""Measurement helpers shared by the peer harness (run in the peers' venv) and the suite
(run in taskmill's venv): standard library only, because the two venvs share nothing.

Every peer's tasks report to the harness the same way: a line `<n> <time.time()>` appended
to one file (O_APPEND, one write per task, a descriptor kept open per process). That is
the one way to see a task start or finish that works for all of them without adding a
round trip to their own storage, and it costs each peer the same few microseconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

STAMPS_ENV = "TASKMILL_PEER_STAMPS"
POLL_EVERY = 0.05  # seconds between counts while a drain runs (as benchmarks/run.py)

_stamp_fd: int | None = None


def stamp(n: int = 0) -> None:
    """Called by a task: append `<n> <wall clock>` to the stamps file."""
    global _stamp_fd
    if _stamp_fd is None:
        _stamp_fd = os.open(os.environ[STAMPS_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_stamp_fd, f"{n} {time.time():.6f}\n".encode())


class Stamps:
    """The harness's side of the stamps file: counts lines as they arrive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_bytes(b"")
        self._offset = 0
        self._lines = 0

    def count(self) -> int:
        with self.path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        # only whole lines: a write may be seen half done
        end = chunk.rfind(b"\n") + 1
        self._lines += chunk.count(b"\n", 0, end)
        self._offset += end
        return self._lines

    def read(self) -> dict[int, float]:
        """n -> the first time stamped for it."""
        out: dict[int, float] = {}
        for line in self.path.read_text().splitlines():
            n, _, moment = line.partition(" ")
            if moment:
                out.setdefault(int(n), float(moment))
        return out


# ------------------------------------------------------------------------------ figures
def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def crossing(samples: Sequence[tuple[float, int]], target: float) -> float | None:
    """When the count reached `target`, linear between polls."""
    previous = (0.0, 0)
    for sample in samples:
        if sample[1] >= target:
            (t0, n0), (t1, n1) = previous, sample
            if n1 == n0:
                return t1
            return t0 + (target - n0) / (n1 - n0) * (t1 - t0)
        previous = sample
    return None


def drain_figures(samples: Sequence[tuple[float, int]], total: int) -> dict[str, Any]:
    """Rates of a drain from (seconds since the workers were started, tasks done) samples:
    from start (start-up included) to the last task, and steady between 10 % and 90 %.
    A drain stopped by its time cap reports its rate up to the cap instead."""
    done = samples[-1][1] if samples else 0
    elapsed = samples[-1][0] if samples else 0.0
    end = crossing(samples, total) if done >= total else None
    t10, t90 = crossing(samples, 0.1 * total), crossing(samples, 0.9 * total)
    steady = (
        0.8 * total / (t90 - t10) if t10 is not None and t90 is not None and t90 > t10 else None
    )
    # capped: from 10 % to the cap, once there is a span to measure (10 % more done)
    if steady is None and t10 is not None and done >= 0.2 * total and elapsed > t10:
        steady = (done - 0.1 * total) / (elapsed - t10)
    from_start = total / end if end else (done / elapsed if elapsed else None)
    return {
        "tasks": total,
        "completed": done,
        "finished": done >= total,
        "seconds_from_start": end if end else elapsed,
        "tasks_per_s_from_start": from_start,
        "tasks_per_s_steady": steady,
        "first_completion_s": crossing(samples, 1),
    }


def latency_figures(delays_ms: Sequence[float]) -> dict[str, Any]:
    return {
        "tasks": len(delays_ms),
        "p50_ms": percentile(delays_ms, 50),
        "p95_ms": percentile(delays_ms, 95),
        "p99_ms": percentile(delays_ms, 99),
        "max_ms": max(delays_ms) if delays_ms else float("nan"),
        "mean_ms": sum(delays_ms) / len(delays_ms) if delays_ms else float("nan"),
    }


def pace(count: int, every: float, enqueue: Callable[[int], None]) -> list[tuple[float, float]]:
    """Call enqueue(n) for n = 0..count-1, one every `every` s: (before, after) each."""
    sent = []
    began = time.perf_counter()
    for n in range(count):
        delay = began + n * every - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        before = time.time()
        enqueue(n)
        sent.append((before, time.time()))
    return sent


# ------------------------------------------------------------------------------ memory
def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def descendants(roots: Sequence[int]) -> list[int]:
    """The live processes under (and including) `roots`."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read(f"/proc/{entry}/stat")
            if stat:
                parents[int(entry)] = int(stat[stat.rfind(")") + 2 :].split()[1])
    wanted = {r for r in roots if r in parents}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in wanted and pid not in wanted:
                wanted.add(pid)
                grew = True
    return sorted(wanted)


def memory_kib(pids: Sequence[int]) -> dict[str, int]:
    """RSS and PSS (shared pages split between the sharers: forked workers share a lot)
    summed over `pids`, in KiB, from /proc/<pid>/smaps_rollup."""
    rss = pss = 0
    for pid in pids:
        for line in _read(f"/proc/{pid}/smaps_rollup").splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1])
            elif line.startswith("Pss:"):
                pss += int(line.split()[1])
    return {"rss_kib": rss, "pss_kib": pss, "processes": len(pids)}


# --------------------------------------------------------------------------- processes
class Procs:
    """Worker processes of one workload, each in its own session so that stopping one
    takes its children (task processes, pools) with it. benchmarks/run.py uses this one
    too (it is standard library only), so taskmill and its peers are stopped alike."""

    def __init__(self) -> None:
        self.items: list[subprocess.Popen[bytes]] = []

    def start(self, command: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        with log.open("ab") as out:
            out.write(f"$ {' '.join(command)}\n".encode())
            out.flush()
            self.items.append(
                subprocess.Popen(
                    command,
                    env=env,
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.items]

    def running(self) -> bool:
        return any(p.poll() is None for p in self.items)

    def wait(self, timeout: float) -> bool:
        """False when one is still running after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        for process in self.items:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return False
        return True

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, `timeout` seconds to leave (a taskmill worker lets its running
        tasks finish), then SIGKILL to every session."""
        for process in self.items:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        self.wait(timeout)
        for process in self.items:
            # the whole session, even once its leader has left: a pool child left
            # behind would skew the next workload
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# ---------------------------------------------------------------------------- progress
class Progress:
    """A progress bar on stderr, one line a step (the peers' own output goes between)."""

    def __init__(self, total: int, width: int = 30) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.width = width
        self.began = time.perf_counter()

    def bar(self, label: str) -> str:
        elapsed = time.perf_counter() - self.began
        filled = round(self.width * self.done / self.total)
        left = ""
        if self.done:
            left = f", ~{_clock(elapsed / self.done * (self.total - self.done))} left"
        return (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} "
            f"{_clock(elapsed)}{left}  {label}"
        )

    def step(self, label: str) -> None:
        print(self.bar(label), file=sys.stderr, flush=True)
        self.done += 1

    def finish(self) -> None:
        self.done = self.total
        print(self.bar("done"), file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def fmt(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)
