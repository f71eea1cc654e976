"""taskmill's benchmark: enqueue, no-op drain, idle pickup and claim cost, on SQLite,
PostgreSQL and MariaDB/MySQL, each against a pure-SQL baseline measured in the same run.

Every workload gets fresh tables (a new file in a temporary directory for SQLite; on a
server one new `tmbench_<hex>` database per run, truncated between workloads and dropped
at the end; see databases.py), and a pure-SQL baseline (benchmarks/sql_baseline.py:
plain sqlite3 / psycopg / PyMySQL doing the same task life-cycle on the same tables)
runs in the same run, on the same machine, so that the ratios mean something on a
machine whose absolute figures drift by +-25 % (and whose disk flushes, which bound
every commit on the servers, vary more: the report gives an fdatasync probe).

Workloads (sizes of a full run; --quick uses smaller ones; see FULL and QUICK):

  enqueue  queue_task one by one (own transaction each), queue_task(db=conn) in one
           transaction, and the bulk path (rows built by queue_task's validator, then
           store.insert_tasks); baseline: a plain INSERT in its own transaction (with
           NOTIFY on PostgreSQL) and a plain executemany (and COPY on PostgreSQL).
  drain    20,000 due no-op tasks (5,000 on MariaDB; 5,000 for the one-task-per-
           transaction baseline, which commits twice a task), 2 worker processes (`taskmill
           worker -n 2`); the completed count is polled every 50 ms; "from start" counts
           from the moment the workers are started (start-up included), "steady" between
           10 % and 90 % done; CPU per task of the process tree and, on the servers, of
           the database server. Variants: tasks returning a small value (a scheduler_run
           row each); (taskmill only) 10,000 tasks (MariaDB 5,000) all due at one
           instant; (taskmill only) the other side of the `--prefetch` default (1 if it
           is 16, 16 if it is 1). Baselines: one task per transaction, 50 per
           transaction, and 50 per transaction writing run rows.
  pickup   2 idle workers; one task every 20 ms, 300 tasks; latency = the task's own
           time.time() at start minus time.time() just before the queue_task call.
           Baseline: 2 plain loops, polling every 1 ms (SQLite), sleeping on LISTEN
           (PostgreSQL), polling every 10 ms, taskmill's shortest interval (MariaDB).
  claim    scheduler_task filled server-side with N finished (COMPLETED) rows plus
           1,000 QUEUED ones; 20 claims of 50 (store.claim_due_tasks in a transaction)
           timed at N = 1k, 100k, 1M (1M in full runs only); then at the largest N with
           20,000 due at once, and (PostgreSQL) with a partial index WHERE status =
           'QUEUED'. The claim's plan (EXPLAIN ANALYZE) is written to
           benchmarks/profiles/claim-plan-<backend>.txt.
  sleep    (issue 9) 2,000 tasks that each wait 25 ms, 2 worker processes (`taskmill
           worker -n 2 --concurrency N --pool P`): a process pool of 8 slots (a plain
           function), 50 threads (a @thread_safe function), 50 coroutines (@thread_safe
           async def), and (full runs) one at a time, as a web2py worker; then the no-op
           drain through a process pool of 8, to compare with the one-slot no-op drain.

A quick run has smaller sizes and leaves out the variants (small result, one instant,
--prefetch, claim with a backlog or a partial index).

Usage:
  python benchmarks/run.py                      # full run, all backends (`make bench`)
  python benchmarks/run.py --quick              # short run, all backends
  python benchmarks/run.py --backend postgres --only drain pickup --keep

A full run prints markdown tables, writes JSON (benchmarks/out/results.json) and adds
(or replaces) its dated section in benchmarks/RESULTS.md; a quick run leaves RESULTS.md
alone unless --results-md is given. A backend whose server is not reachable is skipped
(and the report says so).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy

import taskmill
from taskmill import Scheduler

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE / "peers"))  # common.py: helpers shared with the peers' harness

import databases  # noqa: E402
import sql_baseline  # noqa: E402
from common import Procs, crossing, descendants, fmt, percentile  # noqa: E402
from common import pace as paced  # noqa: E402
from databases import Backend, Db  # noqa: E402

DEFAULT_JSON = HERE / "out" / "results.json"
DEFAULT_RESULTS_MD = HERE / "RESULTS.md"
PROFILES = HERE / "profiles"
POLL_EVERY = 0.05  # seconds between completed-count polls while a drain runs
WORKLOADS = ("enqueue", "drain", "pickup", "claim", "sleep")
BACKENDS = ("sqlite", "postgres", "mysql")


@dataclass(frozen=True)
class Sizes:
    drain: int = 20_000
    drain_one_instant: int = 10_000  # taskmill only: the claim sorts all due rows
    drain_one_per_transaction: int = 5_000  # the baseline's slowest drain: 2 commits a task
    #: also the small-result, one-instant and --prefetch drains, and the claim with a
    #: backlog and (PostgreSQL) with a partial index
    variants: bool = True
    one_by_one: int = 2_000
    bulk: int = 20_000
    pickups: int = 300
    pickup_every: float = 0.020
    workers: int = 2
    batch: int = 50
    prefetch: int = 16  # `--prefetch` of the variant, when the default is 1 (no pipelining)
    drain_timeout: float = 150.0
    claim_rows: tuple[int, ...] = (1_000, 100_000, 1_000_000)
    claim_queued: int = 1_000
    claim_backlog: int = 20_000  # then, at the largest table, this many due at once
    claim_limit: int = 50
    claims: int = 20
    sleep_tasks: int = 2_000  # tasks of 25 ms each in the sleep (I/O-bound) workload
    sleep_process_slots: int = 8  # --concurrency of the process pools there
    sleep_thread_slots: int = 50  # --concurrency of the thread / async pools there
    #: the sleep workload also run one task at a time (a web2py-style worker): 25 s
    sleep_one_at_a_time: bool = True


FULL = {
    "sqlite": Sizes(),
    "postgres": Sizes(),
    # MariaDB drains at a fraction of PostgreSQL's rate (its workers re-read their
    # claimed batch before every task): smaller drains keep the run short
    "mysql": Sizes(drain=5_000, drain_one_instant=5_000, one_by_one=1_000),
}
QUICK = {
    "sqlite": Sizes(
        drain=2_000,
        variants=False,
        one_by_one=300,
        bulk=5_000,
        pickups=100,
        drain_timeout=40.0,
        claim_rows=(1_000, 100_000),
        claims=10,
        sleep_one_at_a_time=False,
    ),
    "postgres": Sizes(
        drain=2_000,
        variants=False,
        one_by_one=300,
        bulk=5_000,
        pickups=100,
        drain_timeout=40.0,
        claim_rows=(1_000, 100_000),
        claims=10,
        sleep_one_at_a_time=False,
    ),
    "mysql": Sizes(
        drain=1_000,
        variants=False,
        one_by_one=200,
        bulk=5_000,
        pickups=100,
        drain_timeout=40.0,
        claim_rows=(1_000, 100_000),
        claims=10,
        sleep_one_at_a_time=False,
    ),
}

# (target, result id, figure, goal, unit); "x" is a growth factor (lower is better)
#: issue 9: 2,000 tasks of 25 ms, 2 worker processes (steady state: from start includes
#: the start of every worker and child, a second or more for a 1-2 s drain)
SLEEP_TARGETS: list[tuple[str, str, str, float, str]] = [
    ("sleep 25 ms, threads", "sleep-threads-taskmill", "tasks_per_s_steady", 1500, "tasks/s"),
    ("sleep 25 ms, async", "sleep-async-taskmill", "tasks_per_s_steady", 1500, "tasks/s"),
    ("sleep 25 ms, processes x8", "sleep-processes-taskmill", "tasks_per_s_steady", 400, "tasks/s"),
]
TARGETS: dict[str, list[tuple[str, str, str, float, str]]] = {
    "sqlite": [
        (
            "no-op drain, from worker start",
            "drain-noop-taskmill",
            "tasks_per_s_from_start",
            5e3,
            "tasks/s",
        ),
        ("no-op drain, steady state", "drain-noop-taskmill", "tasks_per_s_steady", 5e3, "tasks/s"),
        ("idle pickup latency p50", "pickup-taskmill", "p50_ms", 10.0, "ms"),
        ("idle pickup latency p99", "pickup-taskmill", "p99_ms", 25.0, "ms"),
        ("claim cost flat (largest table / 1,000 rows)", "claim-taskmill", "growth", 2.0, "x"),
        *SLEEP_TARGETS,
    ],
    "postgres": [
        ("enqueue, queue_task one by one", "enqueue-one-by-one", "tasks_per_s", 3e3, "tasks/s"),
        ("enqueue, bulk (queue_tasks)", "enqueue-bulk", "tasks_per_s", 5e4, "tasks/s"),
        (
            "no-op drain, from worker start",
            "drain-noop-taskmill",
            "tasks_per_s_from_start",
            5e3,
            "tasks/s",
        ),
        ("no-op drain, steady state", "drain-noop-taskmill", "tasks_per_s_steady", 5e3, "tasks/s"),
        (
            "no-op drain, steady state (stretch)",
            "drain-noop-taskmill",
            "tasks_per_s_steady",
            8e3,
            "tasks/s",
        ),
        ("idle pickup latency p50", "pickup-taskmill", "p50_ms", 3.0, "ms"),
        ("idle pickup latency p99", "pickup-taskmill", "p99_ms", 10.0, "ms"),
        ("claim cost flat (largest table / 1,000 rows)", "claim-taskmill", "growth", 2.0, "x"),
        *SLEEP_TARGETS,
    ],
    "mysql": [
        ("idle pickup latency p50", "pickup-taskmill", "p50_ms", 25.0, "ms"),
        ("claim cost flat (largest table / 1,000 rows)", "claim-taskmill", "growth", 2.0, "x"),
    ],
}


# ------------------------------------------------------------------------ output helpers
_T0 = time.perf_counter()


def say(message: str) -> None:
    """A progress line (stderr, so that stdout holds only the report)."""
    print(f"[{time.perf_counter() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


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


def _version(module: str) -> str | None:
    try:
        return str(__import__(module).__version__)
    except Exception:
        return None


def fdatasync_probe(directory: Path, seconds: float = 1.0) -> dict[str, float]:
    """Commits wait for the disk: 8 kB written and fdatasync'ed in a loop, as a WAL
    flush does, on the file system of the temporary directory (here the same as the
    database servers'). Other work on the machine moves this a lot."""
    path = directory / "fdatasync.probe"
    block = b"\0" * 8192
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            os.pwrite(fd, block, 0)
            os.fdatasync(fd)
            times.append(time.perf_counter() - began)
    finally:
        os.close(fd)
        path.unlink()
    return {"per_s": len(times) / sum(times), "p50_us": percentile(times, 50) * 1e6}


def machine_info() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": ram_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sqlalchemy.__version__,
        "psycopg": _version("psycopg"),
        "pymysql": _version("pymysql"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def compile_taskmill() -> str:
    """Byte-compile taskmill's modules, as pip does when it installs a package. The
    peers come from PyPI, compiled at install; taskmill runs from its source tree here,
    and with PYTHONDONTWRITEBYTECODE set (as on these machines, and in many Docker
    images) every supervisor, worker and fork server would compile taskmill at each
    start: ~0.15 s of CPU a process that an installed taskmill never pays, all of it
    before the first task. Source newer than its bytecode is still read from source."""
    import compileall

    package = Path(taskmill.__file__).parent
    compileall.compile_dir(package, quiet=1)
    return "compiled ahead, as an installed package is"


# ---------------------------------------------------------------------------- processes
def tree_cpu_seconds(roots: Sequence[int]) -> float:
    """User+system CPU time of the live processes under (and including) `roots`."""
    return sum(process_cpu(descendants(roots)).values())


def process_cpu(pids: Sequence[int]) -> dict[int, float]:
    """User+system CPU seconds of each live process (all its threads), by pid."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        stat = _read(f"/proc/{pid}/stat")
        if stat:
            fields = stat[stat.rfind(")") + 2 :].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two process_cpu() readings (processes born since count whole)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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


def taskmill_worker_command(
    workers: int, prefetch: int = 0, extra: Sequence[str] = ()
) -> list[str]:
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
        *extra,
    ]


def baseline_command(db: Db, mode: str, name: str, *extra: str) -> list[str]:
    where = ["--db", str(db.path)] if db.backend.name == "sqlite" else ["--url", db.url]
    return [sys.executable, str(HERE / "sql_baseline.py"), mode, *where, "--name", name, *extra]


# --------------------------------------------------------------------------- databases
@dataclass
class Run:
    """What a workload needs to know about the run it is part of."""

    backend: Backend
    tmp: Path
    sizes: Sizes
    keep: bool = False
    plans: dict[str, list[str]] = field(default_factory=dict)
    server_db: Db | None = None  # the run's database on a server, reset per workload

    def close(self) -> None:
        if self.server_db is not None and not self.keep:
            try:
                self.server_db.drop()
            except Exception as exc:
                say(f"WARNING: could not drop {self.server_db.name}: {exc}")
        self.server_db = None


def fresh_db(backend: Backend, tmp: Path, name: str) -> Db:
    """A new database with taskmill's tables."""
    return backend.create(tmp, name)


@contextlib.contextmanager
def fresh(run: Run, label: str) -> Iterator[Db]:
    """Empty tables for one workload: a new SQLite file, or the run's server database
    truncated (creating a server database costs about a second each time)."""
    if run.backend.name == "sqlite":
        yield fresh_db(run.backend, run.tmp, label)
        return
    if run.server_db is None:
        run.server_db = fresh_db(run.backend, run.tmp, label)
        yield run.server_db
    else:
        yield run.server_db.reset(run.tmp / f"{run.backend.name}-{label}")


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
WORKERS_SQL = "SELECT count(*) FROM scheduler_worker"


def analyze_tables(db: Db) -> None:
    """Planner statistics of the rows just inserted, on the servers (a truncated table
    keeps the column statistics of the previous workload, and autovacuum would not
    catch up within a drain): without them PostgreSQL may pick the worker index for a
    lookup by id and scan every row the worker finished so far."""
    if db.backend.name == "sqlite":
        return  # the SQLite figures stay comparable with the earlier runs
    with contextlib.closing(db.connect()) as conn:
        for table in ("scheduler_task", "scheduler_run", "scheduler_worker"):
            sql = f"ANALYZE TABLE {table}" if db.backend.name == "mysql" else f"ANALYZE {table}"
            db.execute(conn, sql)


def count(db: Db, sql: str) -> int:
    with contextlib.closing(db.connect()) as conn:
        return db.count(conn, sql)


def completed(db: Db) -> int:
    return count(db, COMPLETED_SQL)


# ----------------------------------------------------------------------------- enqueue
def enqueue_result(
    key: str,
    method: str,
    count_: int,
    elapsed: float,
    system: str = "taskmill",
    quiet: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    if not quiet:
        say(f"enqueue, {method} ({system}): {count_ / elapsed:,.0f} tasks/s")
    return {
        "id": f"enqueue-{key}",
        "system": system,
        "workload": "enqueue",
        "variant": method,
        "settings": {"tasks": count_},
        "figures": {"tasks": count_, "seconds": elapsed, "tasks_per_s": count_ / elapsed, **extra},
    }


def bulk_insert(
    db: Db, function: str, count_: int, one_instant: bool = False, quiet: bool = True
) -> dict[str, Any]:
    """Fill a database through the bulk path: validator-built rows + insert_tasks."""
    sched = db.scheduler()
    began = time.perf_counter()
    rows = build_rows(sched, function, count_, one_instant)
    built = time.perf_counter()
    sched.store.insert_tasks(rows)
    done = time.perf_counter()
    sched.store.dispose()
    return enqueue_result(
        "bulk",
        "bulk: rows built by queue_task's validator + store.insert_tasks",
        count_,
        done - began,
        quiet=quiet,
        build_s=built - began,
        insert_s=done - built,
        insert_tasks_per_s=count_ / (done - built),
        build_tasks_per_s=count_ / (built - began),
    )


def enqueue_workloads(run: Run, baselines: bool = True) -> list[dict[str, Any]]:
    sizes = run.sizes
    results = []
    with fresh(run, "enqueue-one-by-one") as db:
        sched = db.scheduler()
        say(f"enqueue: queue_task one by one, {sizes.one_by_one:,} tasks")
        sched.queue_task("noop")  # connect and warm up outside the clock
        began = time.perf_counter()
        for _ in range(sizes.one_by_one):
            assert not sched.queue_task("noop").errors
        elapsed = time.perf_counter() - began
        sched.store.dispose()
    results.append(
        enqueue_result("one-by-one", "queue_task, one transaction each", sizes.one_by_one, elapsed)
    )

    with fresh(run, "enqueue-one-transaction") as db:
        sched = db.scheduler()
        say(f"enqueue: queue_task(db=conn) in one transaction, {sizes.one_by_one:,} tasks")
        sched.queue_task("noop")
        began = time.perf_counter()
        with sched.store.transaction() as conn:
            for _ in range(sizes.one_by_one):
                assert not sched.queue_task("noop", db=conn).errors
        elapsed = time.perf_counter() - began
        sched.store.dispose()
    results.append(
        enqueue_result(
            "one-transaction", "queue_task(db=conn), one transaction", sizes.one_by_one, elapsed
        )
    )

    with fresh(run, "enqueue-bulk") as db:
        say(f"enqueue: queue_tasks, {sizes.bulk:,} tasks in one call")
        sched = db.scheduler()
        sched.queue_tasks("noop", [((), None)])  # connect and warm up outside the clock
        calls = [([i], None) for i in range(sizes.bulk)]
        began = time.perf_counter()
        queued = sched.queue_tasks("noop", calls)
        elapsed = time.perf_counter() - began
        assert queued.count == sizes.bulk, queued.errors
        sched.store.dispose()
        results.append(
            enqueue_result(
                "bulk",
                "queue_tasks, one call (one argument each)",
                sizes.bulk,
                elapsed,
                quiet=False,
            )
        )
    if baselines:
        results += baseline_enqueue(run)
    return results


def baseline_enqueue(run: Run) -> list[dict[str, Any]]:
    """Plain INSERTs one by one and the driver's own bulk paths, on the same rows."""
    sizes = run.sizes
    results = []
    with fresh(run, "enqueue-sql") as db:
        session = sql_baseline.open_session(db.url)
        notify = " + NOTIFY" if db.backend.name == "postgres" else ""
        session.insert_task("noop", str(uuid.uuid4()))
        began = time.perf_counter()
        for _ in range(sizes.one_by_one):
            session.insert_task("noop", str(uuid.uuid4()))
        elapsed = time.perf_counter() - began
        results.append(
            enqueue_result(
                "one-by-one-sql",
                f"plain INSERT{notify}, one transaction each",
                sizes.one_by_one,
                elapsed,
                system="sql-baseline",
            )
        )
        sched = db.scheduler()
        methods = ["executemany", *(["copy"] if db.backend.name == "postgres" else [])]
        for method in methods:
            rows = [
                sql_baseline.plain_row(row, session)
                for row in build_rows(sched, "noop", sizes.bulk)
            ]
            began = time.perf_counter()
            session.bulk_insert(rows, method)
            elapsed = time.perf_counter() - began
            label = {
                "executemany": "plain executemany of the same rows, one transaction",
                "copy": "COPY of the same rows, one transaction",
            }[method]
            key = "bulk-sql" if method == "executemany" else f"bulk-sql-{method}"
            results.append(enqueue_result(key, label, sizes.bulk, elapsed, system="sql-baseline"))
        sched.store.dispose()
        session.close()
    return results


# ------------------------------------------------------------------------------- drain
@dataclass
class DrainWatch:
    """Samples (time since start, completed) and the CPU of the process tree."""

    total: int
    label: str
    samples: list[tuple[float, int]] = field(default_factory=list)
    cpu_marks: dict[int, tuple[int, float, dict[int, float]]] = field(default_factory=dict)
    server_before: dict[int, float] = field(default_factory=dict)
    server_after: dict[int, float] = field(default_factory=dict)

    def crossing(self, target: float) -> float | None:
        return crossing(self.samples, target)

    def figures(self) -> dict[str, Any]:
        done = self.samples[-1][1] if self.samples else 0
        end = self.crossing(self.total) if done >= self.total else None
        first = self.crossing(1)
        t10, t90 = self.crossing(0.1 * self.total), self.crossing(0.9 * self.total)
        steady = None
        if t10 is not None and t90 is not None and t90 > t10:
            steady = 0.8 * self.total / (t90 - t10)
        elapsed = self.samples[-1][0] if self.samples else 0.0
        capped_steady = None  # a drain stopped by its time limit: from 10 % to the stop
        if steady is None and t10 is not None and done >= 0.2 * self.total and elapsed > t10:
            capped_steady = (done - 0.1 * self.total) / (elapsed - t10)
        cpu_steady = server_steady = None
        if 10 in self.cpu_marks and 90 in self.cpu_marks:
            (n10, c10, s10), (n90, c90, s90) = self.cpu_marks[10], self.cpu_marks[90]
            # a process that exited between the marks takes its CPU out of the tree
            # (the baselines exit as the queue empties): no figure then
            if n90 > n10 and c90 >= c10:
                cpu_steady = (c90 - c10) / (n90 - n10) * 1000
            if n90 > n10 and s90:
                server_steady = cpu_between(s10, s90) / (n90 - n10) * 1000
        server_total = None
        if self.server_after:
            server_total = cpu_between(self.server_before, self.server_after) / self.total * 1000
        return {
            "tasks": self.total,
            "completed": done,
            "finished": done >= self.total,
            "seconds_from_start": end,
            "tasks_per_s_from_start": self.total / end if end else None,
            "tasks_per_s_steady": steady,
            "first_completion_s": first,
            # stopped before the end (the peers' suite caps its drains): rates up to the stop
            "tasks_per_s_until_stop": None if end else (done / elapsed if elapsed else None),
            "tasks_per_s_steady_until_stop": capped_steady,
            "cpu_ms_per_task_steady": cpu_steady,
            "server_cpu_ms_per_task_steady": server_steady,
            "server_cpu_ms_per_task_total": server_total,
        }


def watch_drain(
    db: Db, total: int, procs: Procs, launch: Callable[[Procs], None], label: str, timeout: float
) -> DrainWatch:
    """Start the processes and poll until `total` tasks are COMPLETED (or timeout)."""
    watch = DrainWatch(total, label)
    conn = db.connect()
    watch.server_before = process_cpu(db.server_pids(conn))
    began = time.perf_counter()
    launch(procs)
    next_report = 2.0
    while True:
        done = db.count(conn, COMPLETED_SQL)
        now = time.perf_counter() - began
        watch.samples.append((now, done))
        for mark in (10, 90):
            if mark not in watch.cpu_marks and done >= total * mark / 100:
                server = process_cpu(db.server_pids(conn))
                watch.cpu_marks[mark] = (done, tree_cpu_seconds(procs.pids), server)
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
    server_pids = db.server_pids(conn)
    if server_pids:
        watch.server_after = process_cpu(server_pids)
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
    run: Run, function: str, one_instant: bool = False, prefetch: int = 0
) -> list[dict[str, Any]]:
    sizes = run.sizes
    variant = {
        "noop": "no-op (None: no run rows)",
        "small": "small result (run rows)",
        "nap": "sleep 25 ms (None: no run rows)",
    }[function]
    suffix = "-one-instant" if one_instant else ""
    total = sizes.drain_one_instant if one_instant else sizes.drain
    if one_instant:
        variant = "no-op, all due at one instant"
    if prefetch:
        suffix += "-alt-prefetch"
        variant = f"no-op, `--prefetch {prefetch}`" + (" (opt-in)" if prefetch > 1 else "")
    elif function == "noop" and not one_instant:
        variant += f", default `--prefetch {default_prefetch()}`"
    label = f"drain {function}{suffix} (taskmill)"
    with fresh(run, f"drain-taskmill-{function}{suffix}") as db:
        say(f"{label}: bulk insert of {total:,} tasks")
        bulk_insert(db, function, total, one_instant)
        analyze_tables(db)
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
        result["figures"]["run_rows"] = count(db, RUNS_SQL)
        check_finished(result, db)
    return [result]


def baseline_drain(run: Run, batch: int, results: bool) -> dict[str, Any]:
    sizes = run.sizes
    total = min(sizes.drain, sizes.drain_one_per_transaction) if batch == 1 else sizes.drain
    function = "small" if results else "noop"
    rows = "run rows" if results else "no run rows"
    variant = f"{'one task' if batch == 1 else f'{batch} tasks'} per transaction, {rows}"
    label = f"drain {function} (SQL baseline, batch {batch})"
    with fresh(run, f"drain-baseline-{batch}-{function}") as db:
        bulk_insert(db, function, total)
        analyze_tables(db)
        cpu_before = children_cpu_seconds()

        def launch(procs: Procs) -> None:
            for index in range(1, sizes.workers + 1):
                extra = ["--batch", str(batch), *(["--results"] if results else [])]
                command = baseline_command(db, "drain", f"sql-{index}", *extra)
                procs.start(command, worker_env(db.url), db.directory, db.log)

        with started(Procs()) as procs:
            watch = watch_drain(db, total, procs, launch, label, sizes.drain_timeout)
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


def drain_workloads(run: Run) -> list[dict[str, Any]]:
    sizes = run.sizes
    results = taskmill_drain(run, "noop")
    results.append(baseline_drain(run, 1, results=False))
    results.append(baseline_drain(run, sizes.batch, results=False))
    if sizes.variants:
        results += taskmill_drain(run, "small")
        results.append(baseline_drain(run, sizes.batch, results=True))
        results += taskmill_drain(run, "noop", one_instant=True)
    if sizes.variants and taskmill_supports_prefetch():
        # the other side of the default: pipelining off if it is on, on if it is off
        other = 1 if default_prefetch() > 1 else sizes.prefetch
        results += taskmill_drain(run, "noop", prefetch=other)
    return results


def default_prefetch() -> int:
    """How many tasks a worker hands its child ahead by default (1: none)."""
    from taskmill.worker import WorkerOptions

    return int(getattr(WorkerOptions(), "pipeline_depth", 1))


def taskmill_supports_prefetch() -> bool:
    """`taskmill worker --prefetch N` (opt-in since 87c2ea3): measured when it exists."""
    from taskmill.worker import WorkerOptions

    return "pipeline_depth" in WorkerOptions.__dataclass_fields__


# ------------------------------------------------------------------------------- sleep
def sleep_variants(sizes: Sizes) -> list[tuple[str, str, str, int]]:
    """(key, function, pool, concurrency) of the I/O-bound workload's variants."""
    processes, threads = sizes.sleep_process_slots, sizes.sleep_thread_slots
    variants = [
        ("processes", "sleep25", "processes", processes),
        ("threads", "sleep25_thread", "threads", threads),
        ("async", "sleep25_async", "threads", threads),
    ]
    if sizes.sleep_one_at_a_time:
        variants.append(("one-at-a-time", "sleep25", "processes", 1))
    return variants


def sleep_workloads(run: Run) -> list[dict[str, Any]]:
    """Tasks that wait 25 ms each (issue 9): N at once per worker, in child processes,
    threads or on an event loop; and the no-op drain through a process pool, to show
    the dispatcher costs millisecond tasks nothing."""
    sizes = run.sizes
    results = []
    for key, function, pool, slots in sleep_variants(sizes):
        variant = f"sleep 25 ms, {pool} x{slots}" + (" (async def)" if key == "async" else "")
        results.append(pool_drain(run, f"sleep-{key}", function, pool, slots, variant))
    noop_total = sizes.drain
    slots = sizes.sleep_process_slots
    for key, function, pool in (
        ("drain-noop-pool", "noop", "processes"),
        # @thread_safe: run in the worker's threads, no task child (no hard kill)
        ("drain-noop-threads", "noop_thread", "threads"),
    ):
        variant = f"no-op, {pool} x{slots}"
        results.append(pool_drain(run, key, function, pool, slots, variant, total=noop_total))
    return results


def pool_drain(
    run: Run,
    key: str,
    function: str,
    pool: str,
    slots: int,
    variant: str,
    total: int | None = None,
) -> dict[str, Any]:
    sizes = run.sizes
    total = total or sizes.sleep_tasks
    label = f"{key} (taskmill)"
    with fresh(run, key) as db:
        say(f"{label}: bulk insert of {total:,} tasks")
        bulk_insert(db, function, total)
        analyze_tables(db)
        cpu_before = children_cpu_seconds()

        def launch(procs: Procs) -> None:
            extra = ["--concurrency", str(slots), "--pool", pool]
            command = taskmill_worker_command(sizes.workers, extra=extra)
            procs.start(command, worker_env(db.url), db.directory, db.log)

        with started(Procs()) as procs:
            watch = watch_drain(db, total, procs, launch, label, sizes.drain_timeout)
            procs.stop()
        cpu_total = children_cpu_seconds() - cpu_before
        settings = {
            "workers": sizes.workers,
            "function": function,
            "tasks": total,
            "pool": pool,
            "concurrency": slots,
        }
        result = drain_result(f"{key}-taskmill", "taskmill", variant, settings, watch, cpu_total)
        result["workload"] = "sleep"
        check_finished(result, db)
    return result


# ------------------------------------------------------------------------------ pickup
def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def pace(count_: int, every: float, enqueue: Callable[[], int]) -> list[tuple[int, float, float]]:
    """Call `enqueue` every `every` seconds, paced as the peers' pickups are;
    (task id, time before, time after) each."""
    ids: list[int] = []
    sent = paced(count_, every, lambda _: ids.append(enqueue()))
    return [(task_id, before, after) for task_id, (before, after) in zip(ids, sent, strict=True)]


def run_starts(db: Db) -> dict[int, float]:
    """task id -> the task's own time.time() at its start (its run row's result)."""
    with contextlib.closing(db.connect()) as conn:
        rows = db.execute(conn, "SELECT task_id, run_result FROM scheduler_run") or []
    return {int(task_id): float(json.loads(result)) for task_id, result in rows}


def latencies(db: Db, sent: list[tuple[int, float, float]]) -> dict[str, Any]:
    wait_for(lambda: completed(db) >= len(sent), 30, f"{len(sent)} pickup tasks to complete")
    started_at = run_starts(db)
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


def taskmill_pickup(run: Run) -> dict[str, Any]:
    sizes = run.sizes
    with fresh(run, "pickup-taskmill") as db:
        sched = db.scheduler()
        say(f"pickup (taskmill): {sizes.workers} idle workers, {sizes.pickups} tasks")
        with started(Procs()) as procs:
            procs.start(
                taskmill_worker_command(sizes.workers), worker_env(db.url), db.directory, db.log
            )
            wait_for(lambda: count(db, WORKERS_SQL) >= sizes.workers, 60, "workers")
            time.sleep(0.5)  # let both settle into their idle wait

            def enqueue() -> int:
                queued = sched.queue_task("stamp")
                assert queued.id is not None, queued.errors
                return queued.id

            sched.store.now()  # connect and sync the clock outside the clock
            figures = latencies(db, pace(sizes.pickups, sizes.pickup_every, enqueue))
        sched.store.dispose()
    wake = {
        "sqlite": "doorbell",
        "postgres": "LISTEN/NOTIFY",
        "mysql": "same-host doorbell + adaptive polling",
    }
    variant = f"{wake[run.backend.name]} wake-up (queue_task)"
    return pickup_result("pickup-taskmill", "taskmill", variant, sizes, figures)


def baseline_pickup(run: Run) -> dict[str, Any]:
    sizes = run.sizes
    backend = run.backend.name
    if backend == "postgres":
        mode, extra, variant = "listen", [], "LISTEN loop (plain INSERT + NOTIFY)"
    else:
        interval = 0.001
        if backend == "mysql":
            interval = 0.01  # taskmill's shortest interval on MariaDB (MySQLStore.poll_floor)
        mode, extra = "poll", ["--interval", str(interval)]
        variant = f"polling loop, {interval * 1000:.0f} ms (plain INSERT)"
    with fresh(run, "pickup-baseline") as db:
        say(f"pickup (SQL baseline): {sizes.workers} x {variant}, {sizes.pickups} tasks")
        stop_file = db.directory / "stop"
        ready = [db.directory / f"ready-{i}" for i in range(1, sizes.workers + 1)]
        with started(Procs()) as procs:
            for index, ready_file in enumerate(ready, 1):
                more = ["--stop-file", str(stop_file), "--ready-file", str(ready_file)]
                command = baseline_command(db, mode, f"sql-{index}", *extra, *more)
                procs.start(command, worker_env(db.url), db.directory, db.log)
            wait_for(lambda: all(p.exists() for p in ready), 30, "baseline pollers")
            time.sleep(0.5)
            session = sql_baseline.open_session(db.url)
            try:
                session.any_due()  # connected before the clock starts
                sent = pace(
                    sizes.pickups,
                    sizes.pickup_every,
                    lambda: session.insert_task("stamp", str(uuid.uuid4())),
                )
                figures = latencies(db, sent)
            finally:
                session.close()
                stop_file.touch()
                procs.wait(10)
    return pickup_result("pickup-sql", "sql-baseline", variant, sizes, figures)


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


def pickup_workloads(run: Run) -> list[dict[str, Any]]:
    return [taskmill_pickup(run), baseline_pickup(run)]


# ------------------------------------------------------------------------ claim cost
_FILL_COLUMNS = (
    "application_name, task_name, group_name, status, broadcast, function_name, uuid, args, "
    "vars, enabled, start_time, next_run_time, stop_time, repeats, retry_failed, period, "
    "prevent_drift, cronline, timeout, sync_output, times_run, times_failed, last_run_time, "
    "assigned_worker_name, priority"
)


def _fill_values(number: str, moment: str) -> str:
    """The SELECT list of one finished task: `number` and `moment` are SQL expressions."""
    return (
        f"'bench', 'noop', 'main', 'COMPLETED', 'F', 'noop', {number}, '[]', '{{}}', 'T', "
        f"{moment}, {moment}, NULL, 1, 0, 60, 'F', NULL, 60, 0, 1, 0, {moment}, "
        "'bench-worker', 0"
    )


def fill_finished(db: Db, conn: Any, first: int, last: int) -> None:
    """Insert finished (COMPLETED) tasks numbered first..last, server-side where it can."""
    base = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=30)
    insert = f"INSERT INTO scheduler_task ({_FILL_COLUMNS}) "
    name = db.backend.name
    if name == "postgres":
        values = _fill_values("'done-' || g", "%(base)s::timestamp + g * interval '1 millisecond'")
        sql = f"{insert} SELECT {values} FROM generate_series(%(a)s::int, %(b)s::int) AS g"
        db.execute(conn, sql, {"a": first, "b": last, "base": base})
        return
    if name == "sqlite":
        stamp = sql_baseline.stamp(base)
        values = _fill_values("'done-' || n", f"'{stamp}'")
        sql = (
            f"{insert} WITH RECURSIVE g(n) AS (SELECT ? UNION ALL SELECT n + 1 FROM g "
            f"WHERE n < ?) SELECT {values} FROM g"
        )
        db.execute(conn, "BEGIN IMMEDIATE")
        db.execute(conn, sql, (first, last))
        db.execute(conn, "COMMIT")
        return
    # MariaDB: its SEQUENCE engine's seq_A_to_B tables, 100,000 rows a statement;
    # elsewhere (MySQL) multi-row INSERTs, which PyMySQL's executemany builds
    moment = "%(base)s + INTERVAL seq * 1000 MICROSECOND"
    values = _fill_values("CONCAT('done-', seq)", moment)
    if _has_sequence_engine(db, conn):
        for start in range(first, last + 1, 100_000):
            stop = min(last, start + 99_999)
            db.execute(conn, f"{insert} SELECT {values} FROM seq_{start}_to_{stop}", {"base": base})
        return
    sql = f"{insert} VALUES ({_fill_values('%s', '%s')})"
    cursor = conn.cursor()
    for start in range(first, last + 1, 5_000):
        numbers = range(start, min(last, start + 4_999) + 1)
        params = []
        for n in numbers:
            moment_n = base + timedelta(milliseconds=n)
            params.append((f"done-{n}", moment_n, moment_n, moment_n))
        cursor.executemany(sql, params)
    cursor.close()


def _has_sequence_engine(db: Db, conn: Any) -> bool:
    try:
        db.execute(conn, "SELECT seq FROM seq_1_to_1")
    except Exception:
        return False
    return True


def _dirty_pages(db: Db, conn: Any) -> int:
    rows = db.execute(conn, "SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")
    return int(rows[0][1]) if rows else 0


def settle(db: Db, conn: Any, dirty_before: int = 0, limit: float = 30.0) -> float:
    """After a bulk fill, let the database reach the state a table that grew over time
    is in, so that the claims are not timed against the fill's own aftermath: fresh
    planner statistics (ANALYZE, as autovacuum / InnoDB's auto-recalc would give) and,
    PostgreSQL: VACUUM (visibility map, hint bits) and CHECKPOINT; SQLite: a WAL
    checkpoint; MariaDB: wait (up to `limit` s) while InnoDB writes out the dirty pages
    of the fill (after 1M rows that takes about 15 s, and claims timed meanwhile cost
    2-3 times as much). Returns the seconds it took."""
    began = time.perf_counter()
    name = db.backend.name
    if name == "postgres":
        db.execute(conn, "VACUUM (ANALYZE) scheduler_task")
        db.execute(conn, "CHECKPOINT")
    elif name == "sqlite":
        db.execute(conn, "ANALYZE")
        db.execute(conn, "PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        db.execute(conn, "ANALYZE TABLE scheduler_task")
        readings = [_dirty_pages(db, conn)]
        while time.perf_counter() - began < limit:
            if readings[-1] <= dirty_before * 1.2 + 200:
                break  # down to where it was before the fill
            if len(readings) > 6 and readings[-1] > 0.95 * readings[-7]:
                break  # no longer going down (3 s)
            time.sleep(0.5)
            readings.append(_dirty_pages(db, conn))
    return time.perf_counter() - began


def capture_claim(store: Any, groups: list[str], limit: int) -> list[tuple[str, Any]]:
    """The statements one claim sends to the database (run, then rolled back)."""
    captured: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    sqlalchemy.event.listen(store.engine, "before_cursor_execute", grab)
    try:
        with store.engine.connect() as conn:
            transaction = conn.begin()
            try:
                store.claim_due_tasks(conn, "claim-explain", groups, limit)
            finally:
                transaction.rollback()
    finally:
        sqlalchemy.event.remove(store.engine, "before_cursor_execute", grab)
    return captured


def explain_claim(db: Db, store: Any, limit: int) -> list[str]:
    """The plan of the claim's row-finding statement (EXPLAIN ANALYZE on PostgreSQL,
    ANALYZE on MariaDB, EXPLAIN QUERY PLAN on SQLite), executed and rolled back."""
    statements = capture_claim(store, ["main"], limit)
    finder = next(
        (s for s in statements if "scheduler_task" in s[0] and "LIMIT" in s[0].upper()), None
    )
    if finder is None:
        return ["(the claim sent no statement with LIMIT)"]
    statement, parameters = finder
    prefix = {
        "postgres": "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON) ",
        "mysql": "ANALYZE ",
        "sqlite": "EXPLAIN QUERY PLAN ",
    }[db.backend.name]
    with store.engine.connect() as conn:
        transaction = conn.begin()
        try:
            result = conn.exec_driver_sql(prefix + statement, parameters)
            keys = list(result.keys())
            rows = result.all()
        finally:
            transaction.rollback()
    lines = [" ".join(statement.split())[:2000], ""]
    if db.backend.name == "postgres":
        lines += [str(row[0]) for row in rows]
    else:
        lines += [" | ".join(keys)] + [" | ".join(str(v) for v in row) for row in rows]
    return lines


def explain_execution_ms(plan: list[str]) -> float | None:
    """PostgreSQL's own "Execution Time" of the claim statement, from EXPLAIN ANALYZE."""
    for line in plan:
        if line.strip().startswith("Execution Time:"):
            return float(line.split(":")[1].split()[0])
    return None


def plan_summary(backend: str, plan: list[str]) -> str:
    """The scan(s) the plan uses, in a few words, for the table."""
    body = plan[2:]
    if backend == "postgres":
        scans = []
        for line in body:
            text = line.strip().lstrip("-> ").strip()
            if "Scan" in text and "scheduler_task " in text + " ":
                scans.append(text.split(" (actual")[0].split("  (")[0])
        return "; ".join(dict.fromkeys(scans)) or "?"
    if backend == "mysql" and len(body) > 1:
        header = body[0].split(" | ")
        out = []
        for row in body[1:]:
            cells = dict(zip(header, row.split(" | "), strict=False))
            if cells.get("table") == "scheduler_task":
                out.append(f"{cells.get('type')} on {cells.get('key')}, rows {cells.get('r_rows')}")
        return "; ".join(out) or "?"
    return "; ".join(line.split(" | ")[-1] for line in body[1:] if "scheduler_task" in line)


def time_claims(
    db: Db, conn: Any, sched: Scheduler, sizes: Sizes, queued: int, case: str
) -> dict[str, Any]:
    """Queue `queued` due tasks, EXPLAIN the claim, then time claims of claim_limit."""
    store = sched.store
    store.insert_tasks(build_rows(sched, "noop", queued))
    settle(db, conn, limit=0)
    plan = explain_claim(db, store, sizes.claim_limit)
    claim_ms, transaction_ms, claimed = [], [], 0
    for _ in range(sizes.claims):
        t0 = time.perf_counter()
        with store.transaction() as sa_conn:
            t1 = time.perf_counter()
            tasks = store.claim_due_tasks(sa_conn, "claim-bench", ["main"], sizes.claim_limit)
            t2 = time.perf_counter()
        t3 = time.perf_counter()
        claimed += len(tasks)
        claim_ms.append((t2 - t1) * 1000)
        transaction_ms.append((t3 - t0) * 1000)
    # the claimed (and the unclaimed) tasks finish: the next step starts afresh
    db.execute(
        conn,
        "UPDATE scheduler_task SET status = 'COMPLETED' WHERE status IN ('QUEUED', 'ASSIGNED')",
    )
    p50 = percentile(claim_ms, 50)
    return {
        "case": case,
        "queued_rows": queued,
        "claims": sizes.claims,
        "claimed": claimed,
        "claim_p50_ms": p50,
        "claim_p90_ms": percentile(claim_ms, 90),
        "claim_min_ms": min(claim_ms),
        "us_per_task": p50 * 1000 / sizes.claim_limit,
        "transaction_p50_ms": percentile(transaction_ms, 50),
        "plan": plan_summary(db.backend.name, plan),
        "explain_execution_ms": explain_execution_ms(plan),
        "plan_text": plan,
    }


#: PostgreSQL: a partial index holding only QUEUED rows, tried at the largest table
PARTIAL_INDEX = (
    "CREATE INDEX tmbench_due_queued ON scheduler_task (group_name, next_run_time, id) "
    "WHERE status = 'QUEUED'"
)


def claim_workloads(run: Run) -> list[dict[str, Any]]:
    """Claim cost as the table fills with finished rows; then, at the largest size,
    with a backlog of due tasks and (PostgreSQL) with a partial index."""
    sizes = run.sizes
    backend = run.backend.name
    steps: list[dict[str, Any]] = []
    with fresh(run, "claim") as db, contextlib.closing(db.connect()) as conn:
        sched = db.scheduler()
        filled = 0
        dirty_before = _dirty_pages(db, conn) if backend == "mysql" else 0
        for rows in sizes.claim_rows:
            began = time.perf_counter()
            fill_finished(db, conn, filled + 1, rows)
            rate = (rows - filled) / (time.perf_counter() - began)
            settled = settle(db, conn, dirty_before)
            say(f"claim: {rows:,} finished rows ({rate:,.0f} rows/s fill, {settled:.1f} s settle)")
            filled = rows
            step = time_claims(db, conn, sched, sizes, sizes.claim_queued, "growing table")
            steps.append(
                {"finished_rows": rows, "fill_rows_per_s": rate, "settle_s": settled, **step}
            )
            say(f"claim at {rows:,} rows: p50 {step['claim_p50_ms']:.2f} ms")
        if sizes.variants:
            backlog = time_claims(
                db, conn, sched, sizes, sizes.claim_backlog, "backlog of due tasks"
            )
            steps.append({"finished_rows": filled, **backlog})
            say(f"claim with {sizes.claim_backlog:,} due: p50 {backlog['claim_p50_ms']:.2f} ms")
        if sizes.variants and backend == "postgres":
            db.execute(conn, PARTIAL_INDEX)
            step = time_claims(db, conn, sched, sizes, sizes.claim_queued, "+ partial index")
            steps.append({"finished_rows": filled, **step})
            say(f"claim with a partial index: p50 {step['claim_p50_ms']:.2f} ms")
            db.execute(conn, "DROP INDEX tmbench_due_queued")
        sched.store.dispose()
    plans: list[str] = []
    for step in steps:
        plans += [
            f"== {step['finished_rows']:,} finished + {step['queued_rows']:,} QUEUED rows "
            f"({step['case']})",
            *step.pop("plan_text"),
            "",
        ]
    run.plans[backend] = plans
    growing = [s for s in steps if s["case"] == "growing table"]
    first, last = growing[0]["claim_p50_ms"], growing[-1]["claim_p50_ms"]
    return [
        {
            "id": "claim-taskmill",
            "system": "taskmill",
            "workload": "claim",
            "variant": f"store.claim_due_tasks, {sizes.claim_limit} a claim",
            "settings": {
                "finished_rows": list(sizes.claim_rows),
                "queued_rows": sizes.claim_queued,
                "backlog": sizes.claim_backlog,
                "claims": sizes.claims,
                "limit": sizes.claim_limit,
            },
            "figures": {"steps": steps, "growth": last / first if first else None},
        }
    ]


def write_plans(run: Run, mode: str, directory: Path) -> Path | None:
    plans = run.plans.get(run.backend.name)
    if not plans:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"claim-plan-{run.backend.name}.txt"
    header = [
        f"# The claim's plan on {run.backend.title} {run.backend.version()} "
        f"({mode} run of benchmarks/run.py)",
        f"# taskmill {taskmill.__version__} ({git_revision()}), "
        f"{datetime.now(UTC).isoformat(timespec='seconds')}",
        "# The row-finding statement of store.claim_due_tasks, as taskmill sent it, run under",
        "# EXPLAIN ANALYZE (PostgreSQL) / ANALYZE (MariaDB) / EXPLAIN QUERY PLAN (SQLite) in a",
        "# transaction rolled back, after the table was filled and settled (run.py: settle).",
        "",
    ]
    path.write_text("\n".join(header + plans).rstrip() + "\n")
    return path


# ----------------------------------------------------------------------------- summary
def by_id(results: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    return next((r for r in results if r.get("id") == key), None)


def figure(result: dict[str, Any] | None, name: str) -> float | None:
    if result is None:
        return None
    value = result["figures"].get(name)
    return float(value) if isinstance(value, int | float) else None


DRAIN_RATES = ("tasks_per_s_from_start", "tasks_per_s_steady")
COMPARISONS = [
    # (label, taskmill result, baseline result, figures compared)
    (
        "enqueue one by one vs plain INSERT",
        "enqueue-one-by-one",
        "enqueue-one-by-one-sql",
        ("tasks_per_s",),
    ),
    ("bulk enqueue vs plain executemany", "enqueue-bulk", "enqueue-bulk-sql", ("tasks_per_s",)),
    ("bulk enqueue vs COPY", "enqueue-bulk", "enqueue-bulk-sql-copy", ("tasks_per_s",)),
    (
        "no-op drain vs one task per transaction",
        "drain-noop-taskmill",
        "drain-noop-sql-1",
        DRAIN_RATES,
    ),
    ("no-op drain vs 50 per transaction", "drain-noop-taskmill", "drain-noop-sql-50", DRAIN_RATES),
    (
        "drain with the other `--prefetch` vs 50 per transaction",
        "drain-noop-alt-prefetch-taskmill",
        "drain-noop-sql-50",
        DRAIN_RATES,
    ),
    (
        "drain with run rows vs 50 per transaction",
        "drain-small-taskmill",
        "drain-small-sql-50",
        DRAIN_RATES,
    ),
    (
        "idle pickup latency (lower is better)",
        "pickup-taskmill",
        "pickup-sql",
        ("p50_ms", "p99_ms"),
    ),
]
MEASURE_NAMES = {
    "tasks_per_s": "tasks/s",
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


def targets(backend: str, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for name, key, measure, goal, unit in TARGETS.get(backend, []):
        result = by_id(results, key)
        if result is None:
            continue
        value = figure(result, measure)
        higher_is_better = unit == "tasks/s"
        met = value is not None and (value >= goal if higher_is_better else value <= goal)
        op = ">=" if higher_is_better else "<="
        goal_text = f"{op} {goal:,.0f} {unit}" if unit != "x" else f"{op} {goal:.1f}x"
        out.append({"target": name, "goal": goal_text, "measured": value, "met": met})
    return out


def _enqueue_table(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| enqueue | system | tasks | tasks/s | notes |", "|---|---|---:|---:|---|"]
    for r in results:
        f = r["figures"]
        note = ""
        if "insert_tasks_per_s" in f:
            note = (
                f"validator {fmt(f['build_tasks_per_s'])}/s, "
                f"insert_tasks {fmt(f['insert_tasks_per_s'])}/s"
            )
        lines.append(
            f"| {r['variant']} | {r['system']} | {f['tasks']:,} | {fmt(f['tasks_per_s'])} "
            f"| {note} |"
        )
    return lines


def _drain_table(results: list[dict[str, Any]]) -> list[str]:
    server = any(r["figures"].get("server_cpu_ms_per_task_steady") for r in results)
    lines = [
        "| drain (2 processes) | system | tasks | from start, tasks/s | steady 10-90 %, "
        "tasks/s | first done after, s | CPU ms/task steady | CPU ms/task total |"
        + (" server CPU ms/task steady |" if server else ""),
        "|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if server else ""),
    ]
    for r in results:
        f = r["figures"]
        lines.append(
            f"| {r['variant']} | {r['system']} | {f['tasks']:,} | "
            f"{fmt(f['tasks_per_s_from_start'])} | {fmt(f['tasks_per_s_steady'])} | "
            f"{fmt(f['first_completion_s'], 2)} | {fmt(f['cpu_ms_per_task_steady'], 3)} | "
            f"{fmt(f['cpu_ms_per_task_total'], 3)} |"
            + (f" {fmt(f.get('server_cpu_ms_per_task_steady'), 3)} |" if server else "")
            + (f" {f['note']}" if f.get("note") else "")
        )
    return lines


def _pickup_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| idle pickup latency (2 workers, 1 task / 20 ms) | system | tasks | p50 ms | "
        "p95 ms | p99 ms | max ms | enqueue call p50 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        f = r["figures"]
        lines.append(
            f"| {r['variant']} | {r['system']} | {f['tasks']:,} | {fmt(f['p50_ms'], 2)} | "
            f"{fmt(f['p95_ms'], 2)} | {fmt(f['p99_ms'], 2)} | {fmt(f['max_ms'], 2)} | "
            f"{fmt(f['enqueue_call_p50_ms'], 2)} |"
        )
    return lines


def _claim_table(results: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in results:
        s = r["settings"]
        lines += [
            f"| claim cost ({s['claims']} claims of {s['limit']}) | finished rows | QUEUED rows "
            "| claim p50 ms | p90 ms | us/task | transaction p50 ms | server ms (EXPLAIN "
            "ANALYZE) | plan |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for step in r["figures"]["steps"]:
            lines.append(
                f"| {step['case']} | {step['finished_rows']:,} | {step['queued_rows']:,} | "
                f"{fmt(step['claim_p50_ms'], 2)} | {fmt(step['claim_p90_ms'], 2)} | "
                f"{fmt(step['us_per_task'], 1)} | {fmt(step['transaction_p50_ms'], 2)} | "
                f"{fmt(step.get('explain_execution_ms'), 2)} | {step['plan']} |"
            )
    return lines


def _ratio_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| taskmill / pure-SQL baseline | taskmill | baseline | ratio |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        digits = 2 if " ms" in r["comparison"] else 0
        lines.append(
            f"| {r['comparison']} | {fmt(r['taskmill'], digits)} | "
            f"{fmt(r['baseline'], digits)} | {fmt(r['ratio'], 2)} |"
        )
    return lines


def _target_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| target | goal | measured | met |", "|---|---|---:|---|"]
    for t in rows:
        digits = 0 if "tasks/s" in t["goal"] else 2
        lines.append(
            f"| {t['target']} | {t['goal']} | {fmt(t['measured'], digits)} | "
            f"{'yes' if t['met'] else '**no**'} |"
        )
    return lines


TABLES: list[tuple[str, Callable[[list[dict[str, Any]]], list[str]]]] = [
    ("enqueue", _enqueue_table),
    ("drain", _drain_table),
    ("pickup", _pickup_table),
    ("claim", _claim_table),
    ("sleep", _drain_table),
]


def markdown_backend(section: dict[str, Any]) -> str:
    lines: list[str] = []
    for workload, table in TABLES:
        results = [r for r in section["results"] if r["workload"] == workload]
        if results:
            lines += [*table(results), ""]
    if section["ratios"]:
        lines += [*_ratio_table(section["ratios"]), ""]
    if section["targets"]:
        lines += [*_target_table(section["targets"]), ""]
    return "\n".join(lines)


SUMMARY_ROWS = [
    # (label, result id, figure, digits)
    ("enqueue, queue_task one by one, tasks/s", "enqueue-one-by-one", "tasks_per_s", 0),
    ("enqueue, bulk (queue_tasks), tasks/s", "enqueue-bulk", "tasks_per_s", 0),
    ("no-op drain from start, tasks/s", "drain-noop-taskmill", "tasks_per_s_from_start", 0),
    ("no-op drain steady, tasks/s", "drain-noop-taskmill", "tasks_per_s_steady", 0),
    (
        "no-op drain steady, the other `--prefetch`",
        "drain-noop-alt-prefetch-taskmill",
        "tasks_per_s_steady",
        0,
    ),
    ("baseline drain steady, 1 per transaction", "drain-noop-sql-1", "tasks_per_s_steady", 0),
    ("baseline drain steady, 50 per transaction", "drain-noop-sql-50", "tasks_per_s_steady", 0),
    ("idle pickup p50, ms", "pickup-taskmill", "p50_ms", 2),
    ("idle pickup p99, ms", "pickup-taskmill", "p99_ms", 2),
    ("claim cost growth, largest table / 1,000 rows", "claim-taskmill", "growth", 2),
    (
        "sleep 25 ms, processes x8, steady tasks/s",
        "sleep-processes-taskmill",
        "tasks_per_s_steady",
        0,
    ),
    ("sleep 25 ms, threads, steady tasks/s", "sleep-threads-taskmill", "tasks_per_s_steady", 0),
    ("sleep 25 ms, async, steady tasks/s", "sleep-async-taskmill", "tasks_per_s_steady", 0),
    (
        "sleep 25 ms, one at a time, steady tasks/s",
        "sleep-one-at-a-time-taskmill",
        "tasks_per_s_steady",
        0,
    ),
]


def markdown(report: dict[str, Any]) -> str:
    sections = [s for s in report["backends"].values() if not s.get("skipped")]
    lines: list[str] = []
    if len(sections) > 1:
        lines += [
            "| taskmill | " + " | ".join(s["title"] for s in sections) + " |",
            "|---|" + "---:|" * len(sections),
        ]
        for label, key, name, digits in SUMMARY_ROWS:
            cells = [fmt(figure(by_id(s["results"], key), name), digits) for s in sections]
            if any(c != "-" for c in cells):
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    for name, section in report["backends"].items():
        if section.get("skipped"):
            lines += [f"#### {databases.BACKENDS[name].title}: skipped ({section['skipped']})", ""]
            continue
        lines += [
            f"#### {section['title']} {section['server_version']}",
            "",
            f"{server_line(section)}Took {section['duration_s']:.0f} s. "
            f"{sizes_line(section['settings'])}",
            "",
            markdown_backend(section),
        ]
    return "\n".join(lines)


def server_line(section: dict[str, Any]) -> str:
    settings = section.get("server_settings") or {}
    if not settings:
        return ""
    return "Server settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()) + ". "


def machine_line(machine: dict[str, Any]) -> str:
    drivers = ", ".join(
        f"{name} {machine[name]}" for name in ("psycopg", "pymysql") if machine.get(name)
    )
    return (
        f"{machine['cpu_model']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM, "
        f"{machine['os']}; Python {machine['python']}, SQLite {machine['sqlite']}, "
        f"SQLAlchemy {machine['sqlalchemy']}{', ' + drivers if drivers else ''}; load average "
        f"{' / '.join(str(x) for x in machine['load_average_at_start'])} at start, "
        f"{' / '.join(str(x) for x in machine['load_average_at_end'])} at end"
        + "".join(
            f"; fdatasync of 8 kB {machine[key]['p50_us']:,.0f} us p50 "
            f"({machine[key]['per_s']:,.0f}/s) at {key.rsplit('_', 1)[1]}"
            for key in ("fdatasync_at_start", "fdatasync_at_end")
            if key in machine
        )
        + (
            f"; taskmill bytecode {machine['taskmill_bytecode']}"
            if "taskmill_bytecode" in machine
            else ""
        )
    )


def sizes_line(sizes: dict[str, Any]) -> str:
    claim = ", ".join(f"{n:,}" for n in sizes["claim_rows"])
    variants = (
        f" ({sizes['drain_one_instant']:,} for the one-instant variant)"
        if sizes["variants"]
        else ""
    )
    return (
        f"Sizes: drains of {sizes['drain']:,} tasks{variants}, {sizes['workers']} worker "
        f"processes, baseline batches of {sizes['batch']}; {sizes['one_by_one']:,} tasks "
        f"queued one by one, {sizes['bulk']:,} in bulk; {sizes['pickups']} pickups, one every "
        f"{sizes['pickup_every'] * 1000:.0f} ms; claim cost at {claim} finished rows."
    )


# ------------------------------------------------------------------------- RESULTS.md
RUNS_HEADING = "## Runs"


def update_results_md(path: Path, report: dict[str, Any], table: str) -> None:
    """Add this run's dated section, replacing one of the same date, mode and backends."""
    day = report["date"][:10]
    key = f"{day}:{report['mode']}"
    if report["backend_names"] != ["sqlite"]:  # SQLite-only runs keep their old key
        key += ":" + "+".join(report["backend_names"])
    begin, end = f"<!-- run:{key}:begin -->", f"<!-- run:{key}:end -->"
    titles = ", ".join(databases.BACKENDS[n].title for n in report["backend_names"])
    section = "\n".join(
        [
            begin,
            f"### {day} ({report['mode']} run, {titles}; taskmill {report['version']}, "
            f"revision {report['revision']})",
            "",
            f"Measured {report['date']} on: {machine_line(report['machine'])}.",
            f"Took {report['duration_s']:.0f} s.",
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
RUNNERS: dict[str, Callable[[Run], list[dict[str, Any]]]] = {
    "enqueue": enqueue_workloads,
    "drain": drain_workloads,
    "pickup": pickup_workloads,
    "claim": claim_workloads,
    "sleep": sleep_workloads,
}


def backend_sizes(options: argparse.Namespace, name: str) -> Sizes:
    sizes = (QUICK if options.quick else FULL)[name]
    if options.drain_tasks:
        sizes = replace(sizes, drain=options.drain_tasks, drain_one_instant=options.drain_tasks)
    if options.pickups:
        sizes = replace(sizes, pickups=options.pickups)
    if options.claim_rows:
        sizes = replace(sizes, claim_rows=tuple(options.claim_rows))
    return sizes


def run_backend(name: str, tmp: Path, options: argparse.Namespace) -> dict[str, Any]:
    backend = databases.backend(name)
    reason = backend.unavailable()
    if reason:
        say(f"{backend.title}: skipped ({reason})")
        return {"title": backend.title, "skipped": reason}
    sizes = backend_sizes(options, name)
    run = Run(backend, tmp, sizes, keep=options.keep)
    settings = getattr(backend, "settings", dict)()
    version = backend.version()
    say(f"== {backend.title} {version}")
    began = time.perf_counter()
    results: list[dict[str, Any]] = []
    try:
        for workload in WORKLOADS:
            if workload in options.only:
                results += RUNNERS[workload](run)
    finally:
        run.close()
    for result in results:
        result["backend"] = name
    plans = write_plans(run, "quick" if options.quick else "full", options.plans_dir)
    if plans:
        say(f"wrote {plans}")
    return {
        "title": backend.title,
        "server_version": version,
        "server_settings": settings,
        "duration_s": time.perf_counter() - began,
        "settings": asdict(sizes),
        "results": results,
        "ratios": ratios(results),
        "targets": targets(name, results),
    }


def run(options: argparse.Namespace) -> dict[str, Any]:
    names = list(BACKENDS) if options.backend == "all" else [options.backend]
    machine = machine_info()
    machine["taskmill_bytecode"] = compile_taskmill()
    date = datetime.now(UTC).isoformat(timespec="seconds")
    began = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="taskmill-bench-"))
    machine["fdatasync_at_start"] = fdatasync_probe(tmp)
    say(f"taskmill {taskmill.__version__}; backends {', '.join(names)}; work dir {tmp}")
    sections: dict[str, Any] = {}
    try:
        for name in names:
            sections[name] = run_backend(name, tmp, options)
    finally:
        if options.keep:
            say(f"kept {tmp} (and the server databases)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    with contextlib.suppress(OSError):
        machine["fdatasync_at_end"] = fdatasync_probe(Path(tempfile.gettempdir()))
    return {
        "system": "taskmill",
        "version": taskmill.__version__,
        "revision": git_revision(),
        "mode": "quick" if options.quick else "full",
        "date": date,
        "duration_s": time.perf_counter() - began,
        "machine": machine,
        "backend_names": names,
        "backends": sections,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="taskmill benchmark: enqueue, drain, pickup and claim cost vs pure SQL"
    )
    parser.add_argument("--backend", choices=[*BACKENDS, "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="small sizes (about 1.5 min)")
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
    parser.add_argument("--keep", action="store_true", help="keep the databases made")
    parser.add_argument("--drain-tasks", type=int, help="override the drain size")
    parser.add_argument("--pickups", type=int, help="override the number of pickup tasks")
    parser.add_argument(
        "--claim-rows", type=int, nargs="+", help="override the claim-cost table sizes"
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        help="measure nothing: print (and add to RESULTS.md) the report of an earlier run",
    )
    options = parser.parse_args(argv)
    # plans of quick runs go next to the JSON, not over the full run's
    options.plans_dir = options.json.parent if options.quick else PROFILES
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    if options.from_json:
        report = json.loads(options.from_json.read_text())
    else:
        report = run(options)
    table = markdown(report)
    print(table)
    if not options.from_json:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps(report, indent=2) + "\n")
        say(f"wrote {options.json}")
    quick = report["mode"] == "quick"
    results_md = options.results_md or (None if quick else DEFAULT_RESULTS_MD)
    if results_md is not None and not options.no_results_md:
        update_results_md(results_md, report, table)
        say(f"updated {results_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
