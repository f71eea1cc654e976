"""Where a taskmill worker's time goes, written as text under benchmarks/profiles/.

Three kinds of profile, of 2 workers as in run.py, on SQLite (the default) or with
--backend postgres|mysql on the local server (files named *-postgres.txt, *-mysql.txt):

  operations  the cost of each step of the task life-cycle, timed one at a time in
          this process (queue_task, the idle-path read, a claim of 50, writing 50
          results, the worker-child round trip), next to the same step in plain
          SQL (benchmarks/sql_baseline.py: sqlite3, psycopg, PyMySQL): microseconds per task.
  phases  each worker runs with timing probes wrapped around a few of its methods
          (in the worker process only; taskmill's code is not changed) and the time
          between probes is added up by phase: starting the transaction (SQLite: waiting
          for the write lock; servers: pool checkout and its ping), writing results,
          claiming, COMMIT, running tasks, re-reading the claimed batch, idle-path reads.
          Drain: phases per worker in the steady part. Pickup: per task, the time from
          queue_task to the task's start split into steps, as percentiles.
  py-spy  (--py-spy; needs `pip install py-spy`, not a project dependency) the no-op
          drain sampled with py-spy, wall time (--idle: waiting included) per function,
          inclusive, for the worker processes and for their task children (main thread
          only: the child's helper threads sleep by design). (py-spy's
          CPU-only mode misreads sleeping threads as busy on this VM, so it is not used.)

The probes and the operations name taskmill internals (Worker._transaction,
Store.record_outcomes, ...): when those change, update PROBES and the operations.

Usage:
  python benchmarks/profile_workers.py                  # operations and phases, SQLite
  python benchmarks/profile_workers.py --backend postgres [--prefetch N]
  python benchmarks/profile_workers.py --py-spy         # also the py-spy profile
"""

from __future__ import annotations

import argparse
import atexit
import collections
import contextlib
import functools
import itertools
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import taskmill

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import databases  # noqa: E402
import run  # noqa: E402
import sql_baseline  # noqa: E402

PROFILES = HERE / "profiles"
TRACE_ENV = "TASKMILL_BENCH_TRACE_DIR"

# (module, class, method, probe name): a probe logs "<name>>" on entry, "<name><" on return
PROBES = [
    ("taskmill.worker", "Worker", "_idle", "idle"),
    ("taskmill.worker", "Worker", "maybe_heartbeat", "beat"),
    ("taskmill.store.base", "Store", "has_due_task", "has_due"),
    ("taskmill.store.base", "Store", "next_due_time", "next_due"),
    ("taskmill.store.base", "Store", "record_outcomes", "record"),
    ("taskmill.store.base", "Store", "claim_due_tasks", "claim"),
    ("taskmill.store.base", "Store", "task_statuses", "recheck"),
    ("taskmill.executor", "ChildProcess", "send_task", "send"),
]

# ---------------------------------------------------------------- inside a probed worker
Event = list[Any]  # [time.time(), tag, detail]


def install_probes(log: list[Event]) -> None:
    import importlib

    for module_name, class_name, method, name in PROBES:
        cls = getattr(importlib.import_module(module_name), class_name)
        original = getattr(cls, method)

        def wrapper(*args: Any, _f: Any = original, _n: str = name, **kwargs: Any) -> Any:
            log.append([time.time(), f"{_n}>", None])
            result = _f(*args, **kwargs)
            detail = len(result) if isinstance(result, list) else None
            log.append([time.time(), f"{_n}<", detail])
            return result

        setattr(cls, method, functools.wraps(original)(wrapper))

    from taskmill import worker

    original_tx = worker.Worker._transaction

    @contextlib.contextmanager
    def transaction(self: Any) -> Iterator[Any]:
        log.append([time.time(), "tx>", None])  # about to begin
        with original_tx(self) as conn:
            # SQLite: holds the write lock; servers: a pooled connection (pinged)
            log.append([time.time(), "tx-begun", None])
            yield conn
            log.append([time.time(), "tx-commit", None])
        log.append([time.time(), "tx-done", None])

    worker.Worker._transaction = transaction  # type: ignore[method-assign]


def probed_worker(argv: list[str]) -> int:
    """Entry point of a worker process with probes: argv is taskmill's command line."""
    log: list[Event] = []
    out = Path(os.environ[TRACE_ENV]) / f"trace-{os.getpid()}.json"
    atexit.register(lambda: out.write_text(json.dumps(log)))
    install_probes(log)
    from taskmill.cli import main

    try:
        main(argv)
    finally:
        out.write_text(json.dumps(log))
    return 0


# ------------------------------------------------------------------------ running them
def start_probed_workers(
    db: databases.Db, trace_dir: Path, count: int, prefetch: int = 0
) -> run.Procs:
    env = run.worker_env(db.url)
    env[TRACE_ENV] = str(trace_dir)
    procs = run.Procs()
    for index in range(1, count + 1):
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--as-worker",
            "--log-level",
            "WARNING",
            "worker",
            "--app",
            "bench_app:sched",
            "--name",
            f"probed-{index}",
            *(["--prefetch", str(prefetch)] if prefetch else []),
        ]
        procs.start(command, env, db.directory, db.log)
    return procs


def load_traces(trace_dir: Path) -> dict[str, list[Event]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(trace_dir.glob("trace-*.json"))}


BEGIN_PHASE = "starting the transaction (SQLite: write lock; servers: checkout, ping)"
PHASE_AFTER = {
    "tx>": BEGIN_PHASE,
    "tx-begun": "in transaction: writing results",
    "record<": "in transaction: claiming",
    "claim<": "in transaction: claiming",
    "tx-commit": "COMMIT",
    "tx-done": "running tasks (child round trips, settle)",
    "send>": "running tasks (child round trips, settle)",
    "send<": "running tasks (child round trips, settle)",
    "recheck>": "re-reading the claimed batch (task_statuses)",
    "recheck<": "running tasks (child round trips, settle)",
    "has_due>": "idle-path reads (has_due_task, next_due_time)",
    "next_due>": "idle-path reads (has_due_task, next_due_time)",
    "idle>": "idle (waiting for a wake-up)",
    "beat>": "heartbeat",
    # maybe_heartbeat is called on every loop; mostly it only compares two times
    "beat<": "running tasks (child round trips, settle)",
}


def drain_phases(traces: dict[str, list[Event]]) -> list[str]:
    lines = []
    for name, events in traces.items():
        claims = [i for i, e in enumerate(events) if e[1] == "claim<" and e[2]]
        if len(claims) < 6:
            continue
        first, last = claims[2], claims[-2]  # the steady part: skip start-up and the tail
        part = events[first : last + 1]
        span = part[-1][0] - part[0][0]
        tasks = sum(e[2] for e in part[1:] if e[1] == "claim<" and e[2])
        batches = sum(1 for e in part[1:] if e[1] == "claim<" and e[2])
        spent: dict[str, float] = collections.defaultdict(float)
        phase = "running tasks (child round trips, settle)"
        for previous, current in itertools.pairwise(part):
            spent[phase] += current[0] - previous[0]
            phase = PHASE_AFTER.get(current[1], phase)
        lines.append(
            f"worker {name}: {tasks:,} tasks in {span:.2f} s ({tasks / span:,.0f} tasks/s), "
            f"{batches} batches of {tasks / batches:.1f} on average"
        )
        lines.append(f"  {'phase':48s} {'share':>6s} {'us/task':>9s} {'ms/batch':>9s}")
        for phase_name, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
            lines.append(
                f"  {phase_name:48s} {100 * seconds / span:5.1f}% "
                f"{seconds / tasks * 1e6:9.1f} {seconds / batches * 1e3:9.2f}"
            )
        lines.append("")
    return lines


def profile_drain_phases(bench: run.Run, tasks: int, prefetch: int = 0) -> list[str]:
    with run.fresh(bench, "phases-drain") as db:
        trace_dir = db.directory / "traces"
        trace_dir.mkdir()
        run.bulk_insert(db, "noop", tasks)
        run.analyze_tables(db)
        run.say(f"phases: drain of {tasks:,} no-op tasks, 2 probed workers")
        began = time.perf_counter()
        with run.started(start_probed_workers(db, trace_dir, 2, prefetch)) as procs:
            run.wait_for(lambda: run.completed(db) >= tasks, 300, "the drain")
            elapsed = time.perf_counter() - began
            procs.stop()
        traces = load_traces(trace_dir)
    header = (
        f"drain: {tasks:,} no-op tasks in {elapsed:.1f} s from start ({tasks / elapsed:,.0f}/s)"
        + f", --prefetch {prefetch or run.default_prefetch()}"
        + ("" if prefetch else " (the default)")
    )
    return [header, "", *drain_phases(traces)]


def pickup_steps(
    sent: list[tuple[int, float, float]],
    inserts: list[tuple[float, float]],
    starts: dict[int, float],
    traces: dict[str, list[Event]],
) -> list[dict[str, float]]:
    """Per task: the enqueue, the winner's wake-up, read, lock wait, claim, hand-over."""
    steps = []
    for (task_id, before, _after), (insert_began, insert_done) in zip(sent, inserts, strict=True):
        began = starts[task_id]
        sends = [
            (e[0], name)
            for name, events in traces.items()
            for e in events
            if e[1] == "send>" and insert_began <= e[0] <= began
        ]
        if not sends:
            continue
        send_time, winner = max(sends)
        window = [e for e in traces[winner] if insert_began <= e[0] <= send_time]

        def last(tag: str, events: list[Event] = window) -> float | None:
            found = [e[0] for e in events if e[1] == tag]
            return found[-1] if found else None

        marks = [
            ("queue_task before the INSERT", before, insert_began),
            ("INSERT + COMMIT + ring, until wake-up", insert_began, last("idle<")),
            ("woken: has_due_task read", last("has_due>"), last("has_due<")),
            ("starting the transaction", last("tx>"), last("tx-begun")),
            ("claim", last("claim>"), last("claim<")),
            ("COMMIT", last("tx-commit"), last("tx-done")),
            ("hand-over to the child, task starts", send_time, began),
        ]
        row = {"total": (began - before) * 1000, "enqueue call": (insert_done - before) * 1000}
        for label, start, end in marks:
            if start is not None and end is not None and end >= start:
                row[label] = (end - start) * 1000
        steps.append(row)
    return steps


def profile_pickup_phases(bench: run.Run, count: int) -> list[str]:
    with run.fresh(bench, "phases-pickup") as db:
        return _pickup_phases(db, count)


def _pickup_phases(db: databases.Db, count: int) -> list[str]:
    trace_dir = db.directory / "traces"
    trace_dir.mkdir()
    sched = db.scheduler()
    inserts: list[tuple[float, float]] = []
    original = sched.store.insert_task

    def timed_insert(*args: Any, **kwargs: Any) -> int:
        began = time.time()
        task_id = original(*args, **kwargs)
        inserts.append((began, time.time()))
        return task_id

    sched.store.insert_task = timed_insert  # type: ignore[method-assign]
    run.say(f"phases: pickup of {count} tasks, 2 probed idle workers")
    with run.started(start_probed_workers(db, trace_dir, 2)) as procs:
        run.wait_for(lambda: run.count(db, run.WORKERS_SQL) >= 2, 60, "workers")
        time.sleep(0.5)
        sched.store.now()
        sent = run.pace(count, 0.02, lambda: int(sched.queue_task("stamp").id or 0))
        figures = run.latencies(db, sent)
        procs.stop()
    sched.store.dispose()
    starts = run.run_starts(db)
    steps = pickup_steps(sent, inserts, starts, load_traces(trace_dir))
    lines = [
        f"pickup: {count} tasks, one every 20 ms, 2 idle probed workers; latency p50 "
        f"{figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms (probes add a little)",
        "",
        "Steps of the winning worker (the one that ran the task), in ms. 'INSERT + COMMIT +",
        "ring, until wake-up' runs from the start of the enqueuer's insert_task to the",
        "winner's return from its idle wait (tasks whose winner was not idle are left out);",
        "where workers poll (MariaDB) the wake-up is the poll timer's.",
        "",
        f"  {'step':40s} {'p50':>7s} {'p90':>7s} {'p99':>7s} {'mean':>7s}",
    ]
    for label in steps[0]:
        values = [s[label] for s in steps if label in s]
        lines.append(
            f"  {label:40s} {run.percentile(values, 50):7.2f} {run.percentile(values, 90):7.2f} "
            f"{run.percentile(values, 99):7.2f} {sum(values) / len(values):7.2f}"
        )
    return [*lines, ""]


# -------------------------------------------------------------------------- operations
def timed(count: int, step: Any, repeat: int = 3) -> float:
    """Best of `repeat` runs of `step()` done `count` times: microseconds per call."""
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        for _ in range(count):
            step()
        best = min(best, (time.perf_counter() - began) / count * 1e6)
    return best


def taskmill_operations(bench: run.Run) -> list[tuple[str, float, str]]:
    with run.fresh(bench, "operations-taskmill") as db:
        return _taskmill_operations(db)


def _taskmill_operations(db: databases.Db) -> list[tuple[str, float, str]]:
    from taskmill.lifecycle import Outcome, settle
    from taskmill.states import RunStatus
    from taskmill.worker import Worker

    sched = db.scheduler()
    store = sched.store
    rows: list[tuple[str, float, str]] = []
    sched.queue_task("noop")
    rows.append(
        ("queue_task, own transaction", timed(300, lambda: sched.queue_task("noop")), "call")
    )
    now = store.now()
    build = lambda: sched._validator.build_row("noop", (), None, {}, now)  # noqa: E731
    rows.append(("  of which building the row (validator)", timed(300, build), "call"))
    row = build()[0]

    def insert() -> None:
        row["uuid"] = str(uuid.uuid4())
        store.insert_task(row)

    rows.append(("  of which store.insert_task (+ wake-up)", timed(300, insert), "call"))

    def checkout() -> None:
        with store.engine.connect():
            pass

    rows.append(("  of which a pool checkout (pre-ping)", timed(300, checkout), "call"))
    rows.append(
        (
            "uuid_taken (read; only for a given uuid)",
            timed(300, lambda: store.uuid_taken("x")),
            "call",
        )
    )
    rows.append(
        ("has_due_task (idle-path read)", timed(300, lambda: store.has_due_task(["main"])), "call")
    )
    run.bulk_insert(db, "noop", 3 * 50 * 20 + 50)
    run.analyze_tables(db)
    claimed = []

    def claim() -> None:
        with store.transaction() as conn:
            claimed.extend(store.claim_due_tasks(conn, "ops", ["main"], 50))

    rows.append(("claim 50 in a transaction", timed(20, claim) / 50, "task"))
    ids = [task.id for task in claimed[:50]]
    rows.append(
        (
            "task_statuses of 50 (batch re-check)",
            timed(100, lambda: store.task_statuses(ids)),
            "call",
        )
    )
    now = store.now()
    finished = []
    for task in claimed:
        outcome = Outcome(task=task, status=RunStatus.COMPLETED, started=now, finished=now)
        finished.append((outcome, settle(outcome, discard_results=False)))
    batches = [finished[i : i + 50] for i in range(0, len(finished), 50)]

    def record() -> None:
        with store.transaction() as conn:
            store.record_outcomes(conn, "ops", batches.pop())

    rows.append(("write 50 results (no run rows)", timed(20, record) / 50, "task"))
    rows.append(
        (
            "settle() one outcome",
            timed(1000, lambda: settle(finished[0][0], discard_results=False)),
            "task",
        )
    )
    os.environ.update(run.worker_env(db.url))
    worker = Worker(sched, "bench_app:sched", name="ops-hop")
    worker.child.start()
    try:
        task = claimed[0]

        def hop() -> None:
            worker.finish(worker.execute(task))
            worker.finished.clear()

        rows.append(("worker-child round trip (execute+finish)", timed(1000, hop), "task"))
        child_pid = worker.child.pid or 0
        cpu, child_cpu = time.process_time(), run.tree_cpu_seconds([child_pid])
        for _ in range(1000):
            hop()
        rows.append(("  worker CPU of it", (time.process_time() - cpu) / 1000 * 1e6, "task"))
        child_cpu = run.tree_cpu_seconds([child_pid]) - child_cpu
        rows.append(("  child CPU of it (1/100 s ticks)", child_cpu / 1000 * 1e6, "task"))
    finally:
        worker.child.stop()
        if worker.listener is not None:
            worker.listener.close()
    store.dispose()
    return rows


def baseline_operations(bench: run.Run) -> list[tuple[str, float, str]]:
    with run.fresh(bench, "operations-baseline") as db:
        session = sql_baseline.open_session(db.url)
        try:
            return _baseline_operations(db, session)
        finally:
            session.close()


def _baseline_operations(
    db: databases.Db, session: sql_baseline.Session
) -> list[tuple[str, float, str]]:
    rows: list[tuple[str, float, str]] = []
    insert = lambda: session.insert_task("noop", str(uuid.uuid4()))  # noqa: E731
    insert()
    notify = " (+ NOTIFY)" if db.backend.name == "postgres" else ""
    rows.append((f"INSERT, own transaction{notify}", timed(300, insert), "call"))
    rows.append(("due-task read", timed(300, session.any_due), "call"))
    run.bulk_insert(db, "noop", 3 * 50 * 20 + 50)
    run.analyze_tables(db)
    worker = sql_baseline.BaselineWorker(session, "ops", 50, results=False)
    claimed: list[Any] = []
    rows.append(
        (
            "claim 50 in a transaction",
            timed(20, lambda: claimed.append(worker.claim())) / 50,
            "task",
        )
    )
    rows.append(
        ("complete 50 in a transaction", timed(20, lambda: worker.run(claimed.pop())) / 50, "task")
    )
    return rows


def profile_operations(bench: run.Run) -> list[str]:
    run.say("operations: timing each step of the life-cycle")
    driver = {"sqlite": "sqlite3", "postgres": "psycopg", "mysql": "PyMySQL"}[bench.backend.name]
    lines = [
        "Each step timed alone in one process (best of 3), microseconds per call or per",
        f"task. taskmill goes through SQLAlchemy Core; the baseline is plain {driver} with",
        "hand-written SQL (benchmarks/sql_baseline.py) on the same tables.",
        "",
        f"  {'step':46s} {'us':>9s}  per",
    ]
    for title, measured in (
        ("taskmill", taskmill_operations(bench)),
        ("pure-SQL baseline", baseline_operations(bench)),
    ):
        lines.append(f"  {title}")
        lines += [f"    {name:44s} {value:9.1f}  {unit}" for name, value, unit in measured]
    return [*lines, ""]


# ------------------------------------------------------------------------------ py-spy
def frame_key(frame: str) -> str:
    match = re.match(r"(.*?) \((.*?):\d+\)$", frame)
    return f"{match.group(1)} ({match.group(2).split('/')[-1]})" if match else frame


def summarize_raw(raw: Path, top: int) -> list[str]:
    """Inclusive samples per function, for worker processes and for task children."""
    totals: dict[str, int] = collections.Counter()
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        processes = [f for f in frames if f.startswith("process ")]
        if not processes or "taskmill" not in processes[-1]:
            continue
        kind = "task child" if "taskmill.child" in processes[-1] else "worker"
        if kind == "worker" and "--name" not in processes[-1] and "-n 2" in processes[-1]:
            kind = "supervisor"
        if kind == "task child" and any("Thread._bootstrap" in f for f in frames):
            continue  # the child's helper threads (output sync, worker watch) sleep by design
        count = int(count_text)
        totals[kind] += count
        seen = set()
        for frame in frames:
            if frame.startswith("process "):
                continue
            key = frame_key(frame)
            if key not in seen:
                inclusive[kind][key] += count
                seen.add(key)
    lines = []
    for kind in ("worker", "task child", "supervisor"):
        if not totals[kind]:
            continue
        lines.append(f"{kind} processes: {totals[kind]:,} samples")
        for key, count in inclusive[kind].most_common(top):
            lines.append(f"  {100 * count / totals[kind]:5.1f}%  {key}")
        lines.append("")
    return lines


def profile_py_spy(bench: run.Run, tasks: int, prefetch: int = 0) -> list[str]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy (not a project dependency)")
    with run.fresh(bench, "py-spy") as db:
        return _py_spy(db, py_spy, tasks, prefetch)


def _py_spy(db: databases.Db, py_spy: str, tasks: int, prefetch: int) -> list[str]:
    run.bulk_insert(db, "noop", tasks)
    run.analyze_tables(db)
    raw = db.directory / "py-spy.raw"
    command = [py_spy, "record", "--subprocesses", "--rate", "250", "--format", "raw"]
    command += ["--output", str(raw), "--idle", "--"]
    command += run.taskmill_worker_command(2, prefetch)
    run.say(f"py-spy: drain of {tasks:,} no-op tasks")
    began = time.perf_counter()
    with run.started(run.Procs()) as procs:
        procs.start(command, run.worker_env(db.url), db.directory, db.log)
        run.wait_for(lambda: run.completed(db) >= tasks, 300, "the drain")
        elapsed = time.perf_counter() - began
        for process in procs.items:  # py-spy writes its output on SIGINT
            process.send_signal(signal.SIGINT)
        procs.wait(60)
    return [
        f"py-spy, wall time (idle and waiting included): drain of {tasks:,} no-op tasks, "
        f"2 workers, {elapsed:.1f} s ({tasks / elapsed:,.0f} tasks/s under the profiler); "
        "inclusive share of samples",
        "",
        *summarize_raw(raw, 45),
    ]


# -------------------------------------------------------------------------------- main
def write(name: str, lines: list[str], bench: run.Run, options: argparse.Namespace) -> None:
    machine = run.machine_info()
    backend = bench.backend
    made_by = "# made by: python benchmarks/profile_workers.py"
    if backend.name != "sqlite":
        made_by += f" --backend {backend.name}"
    if options.prefetch:
        made_by += f" --prefetch {options.prefetch}"
    if "py-spy" in name:
        made_by += " --py-spy"
    header = [
        f"# {name}",
        f"# taskmill {taskmill.__version__} ({run.git_revision()}), "
        f"{datetime.now(UTC).isoformat(timespec='seconds')}, {backend.title} {backend.version()}",
        f"# {machine['cpu_model']}, {machine['cores']} cores, Python {machine['python']}, "
        f"SQLite {machine['sqlite']}, load average {machine['load_average_at_start']}",
        made_by,
        "",
    ]
    PROFILES.mkdir(exist_ok=True)
    suffix = "" if backend.name == "sqlite" else f"-{backend.name}"
    if options.prefetch and name != "operations":
        suffix += f"-prefetch-{options.prefetch}"
    path = PROFILES / f"{name}{suffix}.txt"
    path.write_text("\n".join(header + lines).rstrip() + "\n")
    run.say(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--as-worker"]:
        return probed_worker(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=run.BACKENDS, default="sqlite")
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks in each drain")
    parser.add_argument("--pickups", type=int, default=200, help="tasks in the pickup run")
    parser.add_argument("--prefetch", type=int, default=0, help="workers' --prefetch in drains")
    parser.add_argument("--py-spy", action="store_true", help="also sample with py-spy")
    parser.add_argument(
        "--only", nargs="+", choices=["operations", "drain", "pickup"], default=None
    )
    options = parser.parse_args(argv)
    backend = databases.backend(options.backend)
    reason = backend.unavailable()
    if reason:
        raise SystemExit(f"{backend.title} is not available: {reason}")
    tmp = Path(tempfile.mkdtemp(prefix="taskmill-profile-"))
    bench = run.Run(backend, tmp, run.FULL[options.backend])
    only = options.only or ["operations", "drain", "pickup"]
    try:
        if "operations" in only:
            write("operations", profile_operations(bench), bench, options)
        if "drain" in only:
            phases = profile_drain_phases(bench, options.tasks, options.prefetch)
            write("drain-phases", phases, bench, options)
        if "pickup" in only and not options.prefetch:
            write("pickup-phases", profile_pickup_phases(bench, options.pickups), bench, options)
        if options.py_spy:
            spy = profile_py_spy(bench, options.tasks, options.prefetch)
            write("drain-py-spy-wall", spy, bench, options)
    finally:
        bench.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
