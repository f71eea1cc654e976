"""taskmill's first benchmark: no-op drain rate and idle pickup latency on SQLite.

Every workload gets a fresh database file in a temporary directory, and a pure-SQL
baseline (benchmarks/sql_baseline.py: plain sqlite3 doing the same task life-cycle on
the same tables) is measured in the same run, on the same machine, so that the ratios
mean something on a machine whose absolute figures drift by +-25 % between runs.

Workloads (sizes of a full run; --quick uses smaller ones):

  enqueue  queue_task one by one (own transaction each), queue_task in one transaction
           (db=conn) and the store's bulk insert_tasks: tasks/s
  drain    20,000 due no-op tasks, 2 worker processes (`taskmill worker -n 2`); the
           completed count is polled every 50 ms; "from start" counts from the moment the
           workers are started (start-up included), "steady" between 10 % and 90 % done.
           Variants: tasks returning a small value (a scheduler_run row each); and
           (taskmill only, 10,000 tasks) all tasks due at one instant, as a burst queued
           within one second by web2py (whole-second datetimes) is; and (taskmill
           only) workers started with the opt-in `--prefetch 16`.
           Baselines: one task per transaction, 50 per transaction (UPDATE .. RETURNING),
           and 50 per transaction writing run rows.
  pickup   2 idle workers; one task every 20 ms, 300 tasks; latency = the task's own
           time.time() at start minus time.time() just before the queue_task call.
           Baseline: 2 plain polling loops (a read every 1 ms).

Usage:
  python benchmarks/run.py            # full run (what `make bench` runs), ~3-5 min
  python benchmarks/run.py --quick    # short run, under a minute
  python benchmarks/run.py --json PATH --only drain pickup --keep

A full run prints markdown tables, writes JSON (benchmarks/out/results.json) and
adds (or replaces) its dated section in benchmarks/RESULTS.md; a quick run leaves
RESULTS.md alone unless --results-md is given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy

import taskmill
from taskmill import Scheduler

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench_app  # noqa: E402
import sql_baseline  # noqa: E402

DEFAULT_JSON = HERE / "out" / "results.json"
DEFAULT_RESULTS_MD = HERE / "RESULTS.md"
POLL_EVERY = 0.05  # seconds between completed-count polls while a drain runs
WORKLOADS = ("enqueue", "drain", "pickup")

TARGETS = {
    "drain_tasks_per_s": 5_000.0,
    "pickup_p50_ms": 10.0,
    "pickup_p99_ms": 25.0,
}


@dataclass(frozen=True)
class Sizes:
    drain: int = 20_000
    drain_one_instant: int = 10_000  # taskmill only: the claim sorts all due rows
    one_by_one: int = 2_000
    pickups: int = 300
    pickup_every: float = 0.020
    workers: int = 2
    batch: int = 50
    prefetch: int = 16  # the opt-in variant's `taskmill worker --prefetch`
    drain_timeout: float = 150.0


FULL = Sizes()
QUICK = Sizes(drain=2_000, drain_one_instant=2_000, one_by_one=300, pickups=100, drain_timeout=40.0)


# ------------------------------------------------------------------------ output helpers
_T0 = time.perf_counter()


def say(message: str) -> None:
    """A progress line (stderr, so that stdout holds only the report)."""
    print(f"[{time.perf_counter() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value != value:  # NaN
        return "-"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


# ------------------------------------------------------------------------- machine info
def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def ram_gib() -> float | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def git_revision() -> str | None:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}+dirty" if dirty else head


def machine_info() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": ram_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sqlalchemy.__version__,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# ---------------------------------------------------------------------------- processes
def tree_cpu_seconds(roots: Sequence[int]) -> float:
    """User+system CPU time of the live processes under (and including) `roots`."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _read(f"/proc/{entry}/stat")
        if not stat:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    wanted = set(roots)
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in wanted and pid not in wanted:
                wanted.add(pid)
                grew = True
    return sum(times.get(pid, 0.0) for pid in wanted)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Procs:
    """Processes a workload started; always stopped by `stop` (SIGTERM, then SIGKILL)."""

    items: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, command: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        with log.open("ab") as out:
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
        deadline = time.monotonic() + timeout
        for process in self.items:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return False
        return True

    def stop(self, timeout: float = 20.0) -> None:
        for process in self.items:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        if not self.wait(timeout):
            for process in self.items:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


@contextlib.contextmanager
def started(procs: Procs) -> Iterator[Procs]:
    try:
        yield procs
    finally:
        procs.stop()


def worker_env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["TASKMILL_BENCH_DB"] = url
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    return env


def taskmill_worker_command(workers: int, prefetch: int = 0) -> list[str]:
    return [
        sys.executable,
        "-m",
        "taskmill",
        "--log-level",
        "WARNING",
        "worker",
        "--app",
        "bench_app:sched",
        "-n",
        str(workers),
        *(["--prefetch", str(prefetch)] if prefetch else []),
    ]


# --------------------------------------------------------------------------- databases
@dataclass
class Db:
    directory: Path
    path: Path

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    @property
    def log(self) -> Path:
        return self.directory / "processes.log"

    def scheduler(self) -> Scheduler:
        return Scheduler(self.url, tasks=bench_app.TASKS)

    def count(self, conn: sqlite3.Connection, sql: str) -> int:
        return int(conn.execute(sql).fetchone()[0])


def fresh_db(tmp: Path, name: str) -> Db:
    directory = tmp / name
    directory.mkdir(parents=True)
    db = Db(directory, directory / "tasks.db")
    sched = db.scheduler()
    sched.create_tables()
    sched.store.dispose()
    return db


def build_rows(
    sched: Scheduler, function: str, count: int, one_instant: bool = False
) -> list[dict[str, Any]]:
    """Rows exactly as queue_task builds them, one clock reading per task.

    taskmill has no public bulk-enqueue call, so this borrows queue_task's validator;
    each row gets its own `now`, as queue_task called in a loop would give it, unless
    `one_instant`: then all are due at the same moment (a burst queued within one
    second by web2py, whose datetimes have whole seconds, looks like that).
    """
    validator = sched._validator
    instant = sched.store.now()
    rows = []
    for _ in range(count):
        now = instant if one_instant else sched.store.now()
        row, errors = validator.build_row(function, (), None, {}, now)
        assert not errors, errors
        rows.append(row)
    return rows


COMPLETED_SQL = "SELECT count(*) FROM scheduler_task WHERE status = 'COMPLETED'"
RUNS_SQL = "SELECT count(*) FROM scheduler_run"


# ----------------------------------------------------------------------------- enqueue
def enqueue_workloads(tmp: Path, sizes: Sizes) -> list[dict[str, Any]]:
    results = []
    db = fresh_db(tmp, "enqueue-one-by-one")
    sched = db.scheduler()
    say(f"enqueue: queue_task one by one, {sizes.one_by_one:,} tasks")
    began = time.perf_counter()
    for _ in range(sizes.one_by_one):
        assert not sched.queue_task("noop").errors
    elapsed = time.perf_counter() - began
    sched.store.dispose()
    results.append(
        enqueue_result("one-by-one", "queue_task, one transaction each", sizes.one_by_one, elapsed)
    )

    db = fresh_db(tmp, "enqueue-one-transaction")
    sched = db.scheduler()
    say(f"enqueue: queue_task(db=conn) in one transaction, {sizes.one_by_one:,} tasks")
    began = time.perf_counter()
    with sched.store.transaction() as conn:
        for _ in range(sizes.one_by_one):
            assert not sched.queue_task("noop", db=conn).errors
    sched.store.ring()
    elapsed = time.perf_counter() - began
    sched.store.dispose()
    results.append(
        enqueue_result(
            "one-transaction", "queue_task(db=conn), one transaction", sizes.one_by_one, elapsed
        )
    )
    return results


def enqueue_result(key: str, method: str, count: int, elapsed: float) -> dict[str, Any]:
    say(f"enqueue, {method}: {count / elapsed:,.0f} tasks/s")
    return {
        "id": f"enqueue-{key}",
        "system": "taskmill",
        "workload": "enqueue",
        "variant": method,
        "settings": {"tasks": count},
        "figures": {"tasks": count, "seconds": elapsed, "tasks_per_s": count / elapsed},
    }


def bulk_insert(db: Db, function: str, count: int, one_instant: bool = False) -> dict[str, Any]:
    sched = db.scheduler()
    began = time.perf_counter()
    sched.store.insert_tasks(build_rows(sched, function, count, one_instant))
    elapsed = time.perf_counter() - began
    sched.store.dispose()
    return enqueue_result("bulk", "store.insert_tasks, bulk", count, elapsed)


# ------------------------------------------------------------------------------- drain
@dataclass
class DrainWatch:
    """Samples (time since start, completed) and the CPU of the process tree."""

    total: int
    label: str
    samples: list[tuple[float, int]] = field(default_factory=list)
    cpu_marks: dict[int, tuple[int, float]] = field(default_factory=dict)

    def crossing(self, target: float) -> float | None:
        """When the completed count reached `target` (linear between polls)."""
        previous = (0.0, 0)
        for sample in self.samples:
            if sample[1] >= target:
                (t0, n0), (t1, n1) = previous, sample
                if n1 == n0:
                    return t1
                return t0 + (target - n0) / (n1 - n0) * (t1 - t0)
            previous = sample
        return None

    def figures(self) -> dict[str, Any]:
        done = self.samples[-1][1] if self.samples else 0
        end = self.crossing(self.total) if done >= self.total else None
        first = self.crossing(1)
        t10, t90 = self.crossing(0.1 * self.total), self.crossing(0.9 * self.total)
        steady = None
        if t10 is not None and t90 is not None and t90 > t10:
            steady = 0.8 * self.total / (t90 - t10)
        cpu_steady = None
        if 10 in self.cpu_marks and 90 in self.cpu_marks:
            (n10, c10), (n90, c90) = self.cpu_marks[10], self.cpu_marks[90]
            if n90 > n10:
                cpu_steady = (c90 - c10) / (n90 - n10) * 1000
        return {
            "tasks": self.total,
            "completed": done,
            "finished": done >= self.total,
            "seconds_from_start": end,
            "tasks_per_s_from_start": self.total / end if end else None,
            "tasks_per_s_steady": steady,
            "first_completion_s": first,
            "cpu_ms_per_task_steady": cpu_steady,
        }


def watch_drain(
    db: Db, total: int, procs: Procs, launch: Callable[[Procs], None], label: str, timeout: float
) -> DrainWatch:
    """Start the processes and poll until `total` tasks are COMPLETED (or timeout)."""
    watch = DrainWatch(total, label)
    conn = sqlite3.connect(db.path, timeout=30)
    began = time.perf_counter()
    launch(procs)
    next_report = 2.0
    while True:
        done = db.count(conn, COMPLETED_SQL)
        now = time.perf_counter() - began
        watch.samples.append((now, done))
        for mark in (10, 90):
            if mark not in watch.cpu_marks and done >= total * mark / 100:
                watch.cpu_marks[mark] = (done, tree_cpu_seconds(procs.pids))
        if done >= total:
            break
        if now > timeout or not procs.running():
            say(
                f"{label}: stopped at {done:,}/{total:,} ({'timeout' if now > timeout else 'exit'})"
            )
            break
        if now >= next_report:
            say(f"{label}: {done:,}/{total:,} done ({100 * done / total:.0f} %)")
            next_report += 5.0
        time.sleep(POLL_EVERY)
    conn.close()
    return watch


def drain_result(
    key: str,
    system: str,
    variant: str,
    settings: dict[str, Any],
    watch: DrainWatch,
    cpu_total: float,
) -> dict[str, Any]:
    figures = watch.figures()
    figures["cpu_ms_per_task_total"] = cpu_total / watch.total * 1000
    rate = figures["tasks_per_s_from_start"]
    say(
        f"{watch.label}: {fmt(rate)} tasks/s from start, "
        f"{fmt(figures['tasks_per_s_steady'])} steady"
    )
    return {
        "id": key,
        "system": system,
        "workload": "drain",
        "variant": variant,
        "settings": settings,
        "figures": figures,
    }


def taskmill_drain(
    tmp: Path, sizes: Sizes, function: str, one_instant: bool = False, prefetch: int = 0
) -> list[dict[str, Any]]:
    variant = "no-op (None: no run rows)" if function == "noop" else "small result (run rows)"
    suffix = "-one-instant" if one_instant else ""
    total = sizes.drain_one_instant if one_instant else sizes.drain
    if one_instant:
        variant = "no-op, all due at one instant"
    if prefetch:
        suffix += f"-prefetch-{prefetch}"
        variant = f"no-op, `--prefetch {prefetch}` (opt-in)"
    label = f"drain {function}{suffix} (taskmill)"
    db = fresh_db(tmp, f"drain-taskmill-{function}{suffix}")
    say(f"{label}: bulk insert of {total:,} tasks")
    bulk = bulk_insert(db, function, total, one_instant)
    cpu_before = children_cpu_seconds()

    def launch(procs: Procs) -> None:
        command = taskmill_worker_command(sizes.workers, prefetch)
        procs.start(command, worker_env(db.url), db.directory, db.log)

    with started(Procs()) as procs:
        watch = watch_drain(db, total, procs, launch, label, sizes.drain_timeout)
        procs.stop()
    cpu_total = children_cpu_seconds() - cpu_before
    settings = {"workers": sizes.workers, "function": function, "tasks": total}
    settings["due"] = "one instant" if one_instant else "one clock reading per task"
    settings["prefetch"] = prefetch
    key = f"drain-{function}{suffix}-taskmill"
    result = drain_result(key, "taskmill", variant, settings, watch, cpu_total)
    with contextlib.closing(sqlite3.connect(db.path)) as conn:
        result["figures"]["run_rows"] = db.count(conn, RUNS_SQL)
    check_finished(result, db)
    return [bulk, result] if function == "noop" and not (one_instant or prefetch) else [result]


def baseline_drain(tmp: Path, sizes: Sizes, batch: int, results: bool) -> dict[str, Any]:
    function = "small" if results else "noop"
    rows = "run rows" if results else "no run rows"
    variant = f"{'one task' if batch == 1 else f'{batch} tasks'} per transaction, {rows}"
    label = f"drain {function} (SQL baseline, batch {batch})"
    db = fresh_db(tmp, f"drain-baseline-{batch}-{function}")
    bulk_insert(db, function, sizes.drain)
    cpu_before = children_cpu_seconds()

    def launch(procs: Procs) -> None:
        for index in range(1, sizes.workers + 1):
            command = [
                sys.executable,
                str(HERE / "sql_baseline.py"),
                "drain",
                "--db",
                str(db.path),
                "--name",
                f"sql-{index}",
                "--batch",
                str(batch),
                *(["--results"] if results else []),
            ]
            procs.start(command, worker_env(db.url), db.directory, db.log)

    with started(Procs()) as procs:
        watch = watch_drain(db, sizes.drain, procs, launch, label, sizes.drain_timeout)
        procs.wait(30)
    cpu_total = children_cpu_seconds() - cpu_before
    settings = {"processes": sizes.workers, "batch": batch, "run_rows": results}
    key = f"drain-{function}-sql-{batch}"
    result = drain_result(key, "sql-baseline", variant, settings, watch, cpu_total)
    check_finished(result, db)
    return result


def check_finished(result: dict[str, Any], db: Db) -> None:
    if not result["figures"]["finished"]:
        result["figures"]["note"] = f"incomplete; see {db.log}"
        say(f"WARNING: {result['system']} {result['variant']} did not finish; log: {db.log}")


def drain_workloads(tmp: Path, sizes: Sizes) -> list[dict[str, Any]]:
    results = taskmill_drain(tmp, sizes, "noop")
    results.append(baseline_drain(tmp, sizes, 1, results=False))
    results.append(baseline_drain(tmp, sizes, sizes.batch, results=False))
    results += taskmill_drain(tmp, sizes, "small")
    results.append(baseline_drain(tmp, sizes, sizes.batch, results=True))
    results += taskmill_drain(tmp, sizes, "noop", one_instant=True)
    if taskmill_supports_prefetch():
        results += taskmill_drain(tmp, sizes, "noop", prefetch=sizes.prefetch)
    return results


def taskmill_supports_prefetch() -> bool:
    """`taskmill worker --prefetch N` (opt-in since 87c2ea3): measured when it exists."""
    from taskmill.worker import WorkerOptions

    return "pipeline_depth" in WorkerOptions.__dataclass_fields__


# ------------------------------------------------------------------------------ pickup
def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def pace(count: int, every: float, enqueue: Callable[[], int]) -> list[tuple[int, float, float]]:
    """Call `enqueue` every `every` seconds; (task id, time before, time after) each."""
    sent = []
    began = time.perf_counter()
    for index in range(count):
        delay = began + index * every - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        before = time.time()
        task_id = enqueue()
        sent.append((task_id, before, time.time()))
    return sent


def latencies(db: Db, sent: list[tuple[int, float, float]]) -> dict[str, Any]:
    wait_for(lambda: completed(db) >= len(sent), 30, f"{len(sent)} pickup tasks to complete")
    with contextlib.closing(sqlite3.connect(db.path)) as conn:
        started_at = {
            task_id: float(json.loads(result))
            for task_id, result in conn.execute("SELECT task_id, run_result FROM scheduler_run")
        }
    delays = [(started_at[task_id] - before) * 1000 for task_id, before, _ in sent]
    calls = [(after - before) * 1000 for _, before, after in sent]
    return {
        "tasks": len(sent),
        "p50_ms": percentile(delays, 50),
        "p95_ms": percentile(delays, 95),
        "p99_ms": percentile(delays, 99),
        "max_ms": max(delays),
        "mean_ms": sum(delays) / len(delays),
        "enqueue_call_p50_ms": percentile(calls, 50),
        "enqueue_call_p99_ms": percentile(calls, 99),
    }


def completed(db: Db) -> int:
    with contextlib.closing(sqlite3.connect(db.path)) as conn:
        return db.count(conn, COMPLETED_SQL)


def taskmill_pickup(tmp: Path, sizes: Sizes) -> dict[str, Any]:
    db = fresh_db(tmp, "pickup-taskmill")
    sched = db.scheduler()
    say(f"pickup (taskmill): {sizes.workers} idle workers, {sizes.pickups} tasks")
    with started(Procs()) as procs:
        procs.start(
            taskmill_worker_command(sizes.workers), worker_env(db.url), db.directory, db.log
        )
        workers_sql = "SELECT count(*) FROM scheduler_worker"
        with contextlib.closing(sqlite3.connect(db.path)) as conn:
            wait_for(lambda: db.count(conn, workers_sql) >= sizes.workers, 60, "workers")
        time.sleep(0.5)  # let both settle into their idle wait

        def enqueue() -> int:
            queued = sched.queue_task("stamp")
            assert queued.id is not None, queued.errors
            return queued.id

        figures = latencies(db, pace(sizes.pickups, sizes.pickup_every, enqueue))
    sched.store.dispose()
    return pickup_result(
        "pickup-taskmill", "taskmill", "doorbell wake-up (queue_task)", sizes, figures
    )


def baseline_pickup(tmp: Path, sizes: Sizes) -> dict[str, Any]:
    db = fresh_db(tmp, "pickup-baseline")
    say(f"pickup (SQL baseline): {sizes.workers} loops polling every 1 ms, {sizes.pickups} tasks")
    stop_file = db.directory / "stop"
    ready = [db.directory / f"ready-{i}" for i in range(1, sizes.workers + 1)]
    with started(Procs()) as procs:
        for index, ready_file in enumerate(ready, 1):
            command = [
                sys.executable,
                str(HERE / "sql_baseline.py"),
                "poll",
                "--db",
                str(db.path),
                "--name",
                f"sql-{index}",
                "--interval",
                "0.001",
                "--stop-file",
                str(stop_file),
                "--ready-file",
                str(ready_file),
            ]
            procs.start(command, worker_env(db.url), db.directory, db.log)
        wait_for(lambda: all(p.exists() for p in ready), 30, "baseline pollers")
        time.sleep(0.5)
        conn = sql_baseline.connect(str(db.path))
        try:
            sent = pace(
                sizes.pickups,
                sizes.pickup_every,
                lambda: sql_baseline.insert_task(conn, "stamp", str(uuid.uuid4())),
            )
            figures = latencies(db, sent)
        finally:
            conn.close()
            stop_file.touch()
            procs.wait(10)
    return pickup_result(
        "pickup-sql", "sql-baseline", "polling loop, 1 ms (plain INSERT)", sizes, figures
    )


def pickup_result(
    key: str, system: str, variant: str, sizes: Sizes, figures: dict[str, Any]
) -> dict[str, Any]:
    say(
        f"pickup ({system}): p50 {figures['p50_ms']:.2f} ms, p95 {figures['p95_ms']:.2f} ms, "
        f"p99 {figures['p99_ms']:.2f} ms"
    )
    return {
        "id": key,
        "system": system,
        "workload": "pickup",
        "variant": variant,
        "settings": {
            "workers": sizes.workers,
            "tasks": sizes.pickups,
            "every_ms": sizes.pickup_every * 1000,
        },
        "figures": figures,
    }


def pickup_workloads(tmp: Path, sizes: Sizes) -> list[dict[str, Any]]:
    return [taskmill_pickup(tmp, sizes), baseline_pickup(tmp, sizes)]


# ----------------------------------------------------------------------------- summary
def by_id(results: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    return next((r for r in results if r.get("id") == key), None)


def figure(result: dict[str, Any] | None, name: str) -> float | None:
    if result is None:
        return None
    value = result["figures"].get(name)
    return float(value) if isinstance(value, int | float) else None


COMPARISONS = [
    # (label, taskmill result, baseline result, figures compared)
    (
        "no-op drain vs one task per transaction",
        "drain-noop-taskmill",
        "drain-noop-sql-1",
        ("tasks_per_s_from_start", "tasks_per_s_steady"),
    ),
    (
        "no-op drain vs 50 per transaction",
        "drain-noop-taskmill",
        "drain-noop-sql-50",
        ("tasks_per_s_from_start", "tasks_per_s_steady"),
    ),
    (
        "drain with run rows vs 50 per transaction",
        "drain-small-taskmill",
        "drain-small-sql-50",
        ("tasks_per_s_from_start", "tasks_per_s_steady"),
    ),
    (
        "idle pickup latency (lower is better)",
        "pickup-taskmill",
        "pickup-sql",
        ("p50_ms", "p99_ms"),
    ),
]
MEASURE_NAMES = {
    "tasks_per_s_from_start": "tasks/s from start",
    "tasks_per_s_steady": "tasks/s steady",
    "p50_ms": "p50 ms",
    "p99_ms": "p99 ms",
}


def ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for label, ours, theirs, measures in COMPARISONS:
        mine, base = by_id(results, ours), by_id(results, theirs)
        if mine is None or base is None:
            continue
        for measure in measures:
            a, b = figure(mine, measure), figure(base, measure)
            out.append(
                {
                    "comparison": f"{label}: {MEASURE_NAMES[measure]}",
                    "taskmill": a,
                    "baseline": b,
                    "ratio": a / b if a is not None and b else None,
                }
            )
    return out


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    drain = by_id(results, "drain-noop-taskmill")
    pickup = by_id(results, "pickup-taskmill")
    goal = TARGETS["drain_tasks_per_s"]
    checks = [
        ("no-op drain, from worker start", drain, "tasks_per_s_from_start", goal, "tasks/s"),
        ("no-op drain, steady state", drain, "tasks_per_s_steady", goal, "tasks/s"),
        ("idle pickup latency p50", pickup, "p50_ms", TARGETS["pickup_p50_ms"], "ms"),
        ("idle pickup latency p99", pickup, "p99_ms", TARGETS["pickup_p99_ms"], "ms"),
    ]
    out = []
    for name, result, measure, goal, unit in checks:
        if result is None:
            continue
        value = figure(result, measure)
        higher_is_better = unit == "tasks/s"
        met = value is not None and (value >= goal if higher_is_better else value <= goal)
        op = ">=" if higher_is_better else "<="
        out.append(
            {"target": name, "goal": f"{op} {goal:,.0f} {unit}", "measured": value, "met": met}
        )
    return out


def markdown(report: dict[str, Any]) -> str:
    results = report["results"]
    lines: list[str] = []
    enqueue = [r for r in results if r["workload"] == "enqueue"]
    if enqueue:
        lines += ["| enqueue (taskmill, SQLite) | tasks | tasks/s |", "|---|---:|---:|"]
        for r in enqueue:
            f = r["figures"]
            lines.append(f"| {r['variant']} | {f['tasks']:,} | {fmt(f['tasks_per_s'])} |")
        lines.append("")
    drains = [r for r in results if r["workload"] == "drain"]
    if drains:
        lines += [
            "| drain (2 processes) | system | tasks | from start, tasks/s | steady 10-90 %, "
            "tasks/s | first done after, s | CPU ms/task steady | CPU ms/task total |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in drains:
            f = r["figures"]
            lines.append(
                f"| {r['variant']} | {r['system']} | {f['tasks']:,} | "
                f"{fmt(f['tasks_per_s_from_start'])} | {fmt(f['tasks_per_s_steady'])} | "
                f"{fmt(f['first_completion_s'], 2)} | {fmt(f['cpu_ms_per_task_steady'], 3)} | "
                f"{fmt(f['cpu_ms_per_task_total'], 3)} |"
                + (f" {f['note']}" if f.get("note") else "")
            )
        lines.append("")
    pickups = [r for r in results if r["workload"] == "pickup"]
    if pickups:
        lines += [
            "| idle pickup latency (2 workers, 1 task / 20 ms) | system | tasks | p50 ms | "
            "p95 ms | p99 ms | max ms | enqueue call p50 ms |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in pickups:
            f = r["figures"]
            lines.append(
                f"| {r['variant']} | {r['system']} | {f['tasks']:,} | {fmt(f['p50_ms'], 2)} | "
                f"{fmt(f['p95_ms'], 2)} | {fmt(f['p99_ms'], 2)} | {fmt(f['max_ms'], 2)} | "
                f"{fmt(f['enqueue_call_p50_ms'], 2)} |"
            )
        lines.append("")
    if report["ratios"]:
        lines += [
            "| taskmill / pure-SQL baseline | taskmill | baseline | ratio |",
            "|---|---:|---:|---:|",
        ]
        for r in report["ratios"]:
            digits = 2 if " ms" in r["comparison"] else 0
            lines.append(
                f"| {r['comparison']} | {fmt(r['taskmill'], digits)} | "
                f"{fmt(r['baseline'], digits)} | {fmt(r['ratio'], 2)} |"
            )
        lines.append("")
    if report["targets"]:
        lines += ["| target | goal | measured | met |", "|---|---|---:|---|"]
        for t in report["targets"]:
            digits = 0 if "tasks/s" in t["goal"] else 2
            lines.append(
                f"| {t['target']} | {t['goal']} | {fmt(t['measured'], digits)} | "
                f"{'yes' if t['met'] else '**no**'} |"
            )
        lines.append("")
    return "\n".join(lines)


def machine_line(machine: dict[str, Any]) -> str:
    return (
        f"{machine['cpu_model']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM, "
        f"{machine['os']}; Python {machine['python']}, SQLite {machine['sqlite']}, "
        f"SQLAlchemy {machine['sqlalchemy']}; load average "
        f"{' / '.join(str(x) for x in machine['load_average_at_start'])} at start, "
        f"{' / '.join(str(x) for x in machine['load_average_at_end'])} at end"
    )


def sizes_line(sizes: dict[str, Any]) -> str:
    return (
        f"Sizes: drains of {sizes['drain']:,} tasks ({sizes['drain_one_instant']:,} for the "
        f"one-instant variant), {sizes['workers']} worker processes, baseline batches of "
        f"{sizes['batch']}; {sizes['one_by_one']:,} tasks queued one by one; "
        f"{sizes['pickups']} pickups, one every {sizes['pickup_every'] * 1000:.0f} ms."
    )


# ------------------------------------------------------------------------- RESULTS.md
RUNS_HEADING = "## Runs"


def update_results_md(path: Path, report: dict[str, Any], table: str) -> None:
    """Add this run's dated section, replacing one of the same date and mode."""
    day = report["date"][:10]
    key = f"{day}:{report['mode']}"
    begin, end = f"<!-- run:{key}:begin -->", f"<!-- run:{key}:end -->"
    section = "\n".join(
        [
            begin,
            f"### {day} ({report['mode']} run, taskmill {report['version']}, "
            f"revision {report['revision']})",
            "",
            f"Measured {report['date']} on: {machine_line(report['machine'])}.",
            f"Took {report['duration_s']:.0f} s. {sizes_line(report['settings'])}",
            "",
            table.rstrip(),
            end,
        ]
    )
    text = (
        path.read_text() if path.exists() else f"# taskmill benchmark results\n\n{RUNS_HEADING}\n"
    )
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        if RUNS_HEADING not in text:
            text = text.rstrip() + f"\n\n{RUNS_HEADING}\n"
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


# -------------------------------------------------------------------------------- main
def run(options: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if options.quick else FULL
    if options.drain_tasks:
        sizes = replace(sizes, drain=options.drain_tasks)
    if options.pickups:
        sizes = replace(sizes, pickups=options.pickups)
    machine = machine_info()
    date = datetime.now(UTC).isoformat(timespec="seconds")
    began = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="taskmill-bench-"))
    say(f"taskmill {taskmill.__version__} on SQLite {sqlite3.sqlite_version}; work dir {tmp}")
    results: list[dict[str, Any]] = []
    try:
        if "enqueue" in options.only:
            results += enqueue_workloads(tmp, sizes)
        if "drain" in options.only:
            results += drain_workloads(tmp, sizes)
        if "pickup" in options.only:
            results += pickup_workloads(tmp, sizes)
    finally:
        if options.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return {
        "system": "taskmill",
        "version": taskmill.__version__,
        "revision": git_revision(),
        "backend": "sqlite",
        "mode": "quick" if options.quick else "full",
        "date": date,
        "duration_s": time.perf_counter() - began,
        "settings": asdict(sizes),
        "machine": machine,
        "results": results,
        "ratios": ratios(results),
        "targets": targets(results),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="taskmill benchmark: SQLite drain rate and pickup latency vs pure SQL"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (under a minute)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="JSON output path")
    parser.add_argument(
        "--results-md",
        type=Path,
        default=None,
        help=f"markdown file to add the dated section to (default: {DEFAULT_RESULTS_MD} "
        "for full runs, none for --quick)",
    )
    parser.add_argument("--no-results-md", action="store_true", help="leave RESULTS.md alone")
    parser.add_argument("--only", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--keep", action="store_true", help="keep the temporary databases")
    parser.add_argument("--drain-tasks", type=int, help="override the drain size")
    parser.add_argument("--pickups", type=int, help="override the number of pickup tasks")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    report = run(options)
    table = markdown(report)
    print(table)
    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps(report, indent=2) + "\n")
    say(f"wrote {options.json}")
    results_md = options.results_md or (None if options.quick else DEFAULT_RESULTS_MD)
    if results_md is not None and not options.no_results_md:
        update_results_md(results_md, report, table)
        say(f"updated {results_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
