"""taskmill side by side with its peers, in one run (`make bench`, `taskmill bench`).

The same workloads on taskmill (SQLite, PostgreSQL, MariaDB), pgqueuer and procrastinate
(PostgreSQL), huey (its SQLite storage), rq and Celery (Redis), plus the pure-SQL
ceiling on PostgreSQL (benchmarks/sql_baseline.py: one task per transaction, the strict
per-task claim, and 50 per transaction):

  enqueue  one by one (own call and transaction each) and in bulk (each system's bulk
           call; the bulk enqueue is also what fills the drain)
  drain    20,000 no-op tasks, 2 worker processes; counted from the moment the workers
           are started (start-up included) and steady (10 % to 90 % done)
  pickup   2 idle workers, one task every 20 ms, 300 tasks; latency from just before
           the enqueue call to the task's own clock reading at its start
  sleep    2,000 tasks that sleep 25 ms, drained the same way, each system with its
           best settings for waiting tasks (taskmill: a @thread_safe async def on each
           worker's event loop, `--pool threads --concurrency 50`)
  memory   up to 100,000 no-op tasks (as many as the system's drain rate gets through
           within the cap), then PSS and RSS of the workers' process trees
  scale    (taskmill) 1,000 then 1,000,000 finished rows in scheduler_task: a claim of
           50 and task_status by id and by uuid, timed at each size

Each workload is bounded by a time cap (a drain still running at the cap reports its
rate up to the cap, and the table says so). taskmill's side reuses benchmarks/run.py
(its enqueue, drain and pickup functions, the same as `python benchmarks/run.py`);
each peer runs in its own venv, benchmarks/.peers-venv, made here from
benchmarks/peers/requirements.txt (pinned versions), through benchmarks/peers/drive.py
and one adapter module a peer (benchmarks/peers/peer_<name>.py, which holds its
settings). Storage is fresh for each step: new PostgreSQL databases (dropped after), new
SQLite files, and Redis db 13 (rq) and 14 (Celery), emptied with FLUSHDB.

Usage:
  python benchmarks/suite.py            # full run (sized for 15 min on 2 cores)
  python benchmarks/suite.py --quick    # about a minute: fewer systems, small sizes
  python benchmarks/suite.py --only taskmill-postgres pgqueuer --workloads drain pickup

Writes benchmarks/out/peers.json, the chart benchmarks/peers-results.png and (full runs)
the dated section of benchmarks/RESULTS.md under "Side by side with the peers".
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))
sys.path.insert(0, str(HERE))

import common  # noqa: E402
import databases  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402

import taskmill  # noqa: E402

PEERS_VENV = HERE / ".peers-venv"
PEERS_PY = PEERS_VENV / "bin" / "python"
REQUIREMENTS = HERE / "peers" / "requirements.txt"
DRIVER = HERE / "peers" / "drive.py"
CHART = HERE / "peers-results.png"
DEFAULT_JSON = HERE / "out" / "peers.json"
WORKLOADS = ("enqueue", "drain", "pickup", "sleep", "memory", "scale")
TASKMILL = {"taskmill-sqlite": "sqlite", "taskmill-postgres": "postgres", "taskmill-mysql": "mysql"}
PEERS = ("pgqueuer", "procrastinate", "huey", "rq", "celery")
SQL_CEILING = "sql-postgres"
SYSTEMS = (*TASKMILL, *PEERS, SQL_CEILING)


@dataclass(frozen=True)
class Plan:
    one_by_one: int = 500
    drain: int = 20_000
    pickups: int = 300
    sleep: int = 2_000
    memory: int = 100_000
    # seconds: no drain of that workload runs longer (the suite's 15 minutes on 2 cores)
    caps: tuple[tuple[str, float], ...] = (
        ("enqueue", 5.0),  # and the bulk enqueue that fills a peer's drain: 10 s
        ("drain", 20.0),
        ("sleep", 15.0),
        ("memory", 15.0),
    )
    scale_rows: tuple[int, ...] = (1_000, 1_000_000)
    systems: tuple[str, ...] = SYSTEMS
    workloads: tuple[str, ...] = WORKLOADS


FULL = Plan()
QUICK = Plan(
    one_by_one=200,
    drain=1_000,
    pickups=50,
    caps=(("drain", 10.0),),
    systems=("taskmill-sqlite", "huey", "taskmill-postgres", "pgqueuer"),
    workloads=("drain", "pickup"),
)


def cap(plan: Plan, workload: str) -> float:
    return dict(plan.caps).get(workload, 30.0)


# ------------------------------------------------------------------------- peers' venv
def ensure_peers_venv() -> None:
    """Make (or remake, when requirements.txt changed) the peers' own venv, so that
    taskmill's is never touched by their dependencies."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = PEERS_VENV / ".requirements.sha256"
    if PEERS_PY.exists() and stamp.exists() and stamp.read_text() == digest:
        return
    run.say(f"making {PEERS_VENV} from {REQUIREMENTS.name} (once, about a minute)")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(PEERS_VENV)], check=True)
    pip = [str(PEERS_PY), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(digest)


def peers_version(package: str) -> str:
    out = subprocess.run(
        [
            str(PEERS_PY),
            "-c",
            f"from importlib.metadata import version; print(version('{package}'))",
        ],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def run_peer(
    peer: str, workload: str, plan: Plan, work: Path, sizes: dict[str, Any]
) -> list[dict[str, Any]]:
    out = work / f"{peer}-{workload}.json"
    log = work / f"{peer}-driver.log"
    command = [
        str(PEERS_PY),
        str(DRIVER),
        peer,
        workload,
        "--workdir",
        str(work),
        "--out",
        str(out),
        "--sizes",
        json.dumps(sizes),
    ]
    with log.open("ab") as stream:
        done = subprocess.run(
            command, stdout=stream, stderr=subprocess.STDOUT, timeout=sizes["cap"] * 3 + 120
        )
    if done.returncode != 0 or not out.exists():
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
        run.say(f"{peer} {workload}: FAILED ({tail[0]}); log {log}")
        return [{"system": peer, "backend": "", "workload": workload, "error": tail[0]}]
    results: list[dict[str, Any]] = json.loads(out.read_text())
    return results


# ----------------------------------------------------------------------------- taskmill
@dataclass
class TaskmillSide:
    """One backend's run.Run, kept across the suite's steps (one server database)."""

    name: str
    run: run.Run


def taskmill_sizes(plan: Plan) -> run.Sizes:
    return run.Sizes(
        drain=plan.drain,
        variants=False,
        one_by_one=plan.one_by_one,
        bulk=plan.drain,
        pickups=plan.pickups,
        drain_timeout=cap(plan, "drain"),
        claims=20,
    )


def tag(result: dict[str, Any], system: str, backend: str, workload: str) -> dict[str, Any]:
    result.update(system=system, backend=backend, workload=workload)
    if system == "taskmill":
        result["version"] = taskmill.__version__
    return result


def taskmill_settings(backend: str) -> dict[str, Any]:
    wake = {"sqlite": "doorbell", "postgres": "LISTEN/NOTIFY", "mysql": "polling 20 ms"}[backend]
    return {
        "worker": "taskmill worker -n 2 (a child process per worker runs the tasks)",
        "prefetch": run.default_prefetch(),
        "wake-up": wake,
    }


def taskmill_enqueue(side: TaskmillSide) -> list[dict[str, Any]]:
    # the pure-SQL enqueue is the ceiling on PostgreSQL only
    results = run.enqueue_workloads(side.run, baselines=side.name == "postgres")
    out = []
    names = {
        "enqueue-one-by-one": ("taskmill", "enqueue-one-by-one"),
        "enqueue-bulk": ("taskmill", "enqueue-bulk"),
        "enqueue-one-by-one-sql": (report.SQL_STRICT, "enqueue-one-by-one"),
        "enqueue-bulk-sql": (report.SQL_STRICT, "enqueue-bulk"),
    }
    for r in results:
        if r["id"] in names and (side.name == "postgres" or r["system"] == "taskmill"):
            system, workload = names[r["id"]]
            r["settings"] = {**r["settings"], "method": r["variant"]}
            out.append(tag(r, system, side.name, workload))
    return out


def capped(result: dict[str, Any], sizes: run.Sizes, backend: str) -> dict[str, Any]:
    """run.py's rates of a drain stopped by its time cap are those up to the stop, as the
    peers' are (the table marks them)."""
    if result["system"] == "taskmill":
        settings = {k: v for k, v in result["settings"].items() if k != "prefetch"}
        result["settings"] = {**settings, **taskmill_settings(backend)}
    figures = result["figures"]
    if not figures["finished"]:
        figures["tasks_per_s_from_start"] = figures["tasks_per_s_until_stop"]
        figures["tasks_per_s_steady"] = figures["tasks_per_s_steady_until_stop"]
    return result


def reread_capped(results: list[dict[str, Any]]) -> None:
    """A stored run, read by this version: drains stopped at their cap take their rates
    up to the cap (run.py keeps them apart), and a steady rate needs 10 % of the tasks
    done past the 10 % mark (an earlier version gave one from a few tasks)."""
    for r in results:
        figures = r.get("figures", {})
        if r.get("workload") not in ("drain", "sleep") or figures.get("finished", True):
            continue
        if figures.get("tasks_per_s_from_start") is None:
            figures["tasks_per_s_from_start"] = figures.get("tasks_per_s_until_stop")
        if figures.get("tasks_per_s_steady") is None:
            figures["tasks_per_s_steady"] = figures.get("tasks_per_s_steady_until_stop")
        if figures.get("completed", 0) < 0.2 * figures.get("tasks", 0):
            figures["tasks_per_s_steady"] = None


def taskmill_drain(side: TaskmillSide) -> list[dict[str, Any]]:
    (result,) = run.taskmill_drain(side.run, "noop")
    return [tag(capped(result, side.run.sizes, side.name), "taskmill", side.name, "drain")]


def taskmill_sleep(side: TaskmillSide, plan: Plan) -> list[dict[str, Any]]:
    """taskmill's documented best for tasks that wait, as pgqueuer's and
    procrastinate's async handlers are theirs: a @thread_safe `async def` on each
    worker's event loop, 50 at once (`--pool threads --concurrency 50`, issue 9)."""
    sizes = replace(
        side.run.sizes, drain=plan.sleep, sleep_tasks=plan.sleep, drain_timeout=cap(plan, "sleep")
    )
    sized = replace(side.run, sizes=sizes)
    slots = sizes.sleep_thread_slots
    variant = f"sleep 25 ms, async def, --pool threads x{slots}"
    result = run.pool_drain(sized, "sleep-async", "sleep25_async", "threads", slots, variant)
    side.run.server_db = sized.server_db
    result = capped(result, sizes, side.name)
    result["settings"]["worker"] = (
        f"taskmill worker -n 2 --pool threads --concurrency {slots} "
        "(a @thread_safe async def task on each worker's event loop)"
    )
    return [tag(result, "taskmill", side.name, "sleep")]


def taskmill_pickup(side: TaskmillSide) -> list[dict[str, Any]]:
    result = run.taskmill_pickup(side.run)
    result["settings"] = {**result["settings"], **taskmill_settings(side.name)}
    return [tag(result, "taskmill", side.name, "pickup")]


def taskmill_memory(side: TaskmillSide, plan: Plan, rate: float | None) -> list[dict[str, Any]]:
    """As many no-op tasks as the drain rate gets through within the cap (at most
    plan.memory), then the memory of the worker's process tree, before it stops."""
    limit = cap(plan, "memory")
    total = plan.memory if not rate else max(1_000, min(plan.memory, int(rate * limit * 0.8)))
    sizes = side.run.sizes
    with run.fresh(side.run, "memory") as db:
        run.bulk_insert(db, "noop", total)
        run.analyze_tables(db)
        memory: dict[str, Any] = {}

        def launch(procs: run.Procs) -> None:
            procs.start(
                run.taskmill_worker_command(sizes.workers),
                run.worker_env(db.url),
                db.directory,
                db.log,
            )

        with run.started(run.Procs()) as procs:
            watch = run.watch_drain(db, total, procs, launch, "memory (taskmill)", limit)
            memory = common.memory_kib(common.descendants(procs.pids))
    memory["tasks_run"] = watch.samples[-1][1] if watch.samples else 0
    memory["per_worker_pss_mib"] = memory["pss_kib"] / 1024 / sizes.workers
    memory["per_worker_rss_mib"] = memory["rss_kib"] / 1024 / sizes.workers
    result = {
        "id": "memory-taskmill",
        "variant": f"after up to {total:,} no-op tasks",
        "settings": taskmill_settings(side.name),
        "figures": memory,
    }
    run.say(
        f"memory (taskmill, {side.name}): {memory['per_worker_pss_mib']:.1f} MiB PSS per worker"
    )
    return [tag(result, "taskmill", side.name, "memory")]


def time_status(sched: Any, refs: list[Any]) -> float:
    times = []
    for ref in refs:
        began = time.perf_counter()
        assert sched.task_status(ref) is not None
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def taskmill_scale(side: TaskmillSide, plan: Plan) -> list[dict[str, Any]]:
    """Claim and status lookup as scheduler_task fills with finished rows."""
    sizes = replace(side.run.sizes, claims=20)
    steps = []
    with run.fresh(side.run, "scale") as db, contextlib.closing(db.connect()) as conn:
        sched = db.scheduler()
        filled = 0
        for rows in plan.scale_rows:
            run.fill_finished(db, conn, filled + 1, rows)
            run.settle(db, conn, limit=10.0)
            filled = rows
            step = run.time_claims(db, conn, sched, sizes, 1_000, "growing table")
            step.pop("plan_text", None)
            # the scan that finds due rows (not the lookups by key that follow it)
            scans = [p for p in step["plan"].split("; ") if "deps" not in p and "KEY" not in p]
            step["plan"] = "; ".join(scans)
            # finished tasks spread over the table; their uuids are 'done-<n>'
            numbers = [1 + (rows - 1) * i // 19 for i in range(20)]
            step["status_by_uuid_p50_ms"] = time_status(sched, [f"done-{n}" for n in numbers])
            ids = [t.id for t in (sched.task_status(f"done-{n}") for n in numbers) if t is not None]
            step["status_by_id_p50_ms"] = time_status(sched, ids)
            step["finished_rows"] = rows
            steps.append(step)
            run.say(
                f"scale ({side.name}) at {rows:,} rows: claim {step['claim_p50_ms']:.2f} ms, "
                f"status {step['status_by_id_p50_ms']:.2f} / {step['status_by_uuid_p50_ms']:.2f} ms"
            )
        sched.store.dispose()
    first, last = steps[0], steps[-1]
    figures = {
        "steps": steps,
        "claim_growth": last["claim_p50_ms"] / first["claim_p50_ms"],
        "status_growth": last["status_by_id_p50_ms"] / first["status_by_id_p50_ms"],
    }
    result = {
        "id": "scale-taskmill",
        "variant": "claim and task_status",
        "settings": {"claims": 20, "limit": 50},
        "figures": figures,
    }
    return [tag(result, "taskmill", side.name, "scale")]


def sql_ceiling(side: TaskmillSide, workload: str) -> list[dict[str, Any]]:
    """The pure-SQL life-cycle on the same PostgreSQL (benchmarks/sql_baseline.py)."""
    if workload == "drain":
        out = []
        for batch, system in ((1, report.SQL_STRICT), (side.run.sizes.batch, report.SQL_BATCHED)):
            r = run.baseline_drain(side.run, batch, results=False)
            out.append(tag(capped(r, side.run.sizes, "postgres"), system, "postgres", "drain"))
        return out
    if workload == "pickup":
        return [tag(run.baseline_pickup(side.run), report.SQL_STRICT, "postgres", "pickup")]
    return []


# --------------------------------------------------------------------------------- plan
Step = tuple[str, str, Callable[[], list[dict[str, Any]]]]


def drain_rate(results: list[dict[str, Any]], system: str, backend: str) -> float | None:
    return report.value(results, system, backend, "drain", "tasks_per_s_from_start")


def build_steps(
    plan: Plan, work: Path, results: list[dict[str, Any]], sides: dict[str, TaskmillSide]
) -> list[Step]:
    """Workload by workload, every system in turn: the figures compared with each other
    are measured minutes apart at most, on a machine whose load drifts."""
    steps: list[Step] = []
    peer_sizes = {
        "one_by_one": plan.one_by_one,
        "drain": plan.drain,
        "pickups": plan.pickups,
        "sleep": plan.sleep,
        "memory": plan.memory,
    }
    for workload in plan.workloads:
        for system in plan.systems:
            if system in TASKMILL:
                side = sides[system]
                call: Callable[[], list[dict[str, Any]]] | None = {
                    "enqueue": lambda side=side: taskmill_enqueue(side),
                    "drain": lambda side=side: taskmill_drain(side),
                    "pickup": lambda side=side: taskmill_pickup(side),
                    "sleep": lambda side=side: taskmill_sleep(side, plan),
                    "memory": lambda side=side: taskmill_memory(
                        side, plan, drain_rate(results, "taskmill", side.name)
                    ),
                    "scale": lambda side=side: taskmill_scale(side, plan),
                }[workload]
            elif system == SQL_CEILING:
                if workload not in ("drain", "pickup") or "taskmill-postgres" not in sides:
                    continue
                call = lambda w=workload: sql_ceiling(sides["taskmill-postgres"], w)  # noqa: E731
            else:
                if workload == "scale":
                    continue  # taskmill's own tables only (see RESULTS.md)

                def call(system: str = system, workload: str = workload) -> list[dict[str, Any]]:
                    sizes = {**peer_sizes, "cap": cap(plan, workload)}
                    if workload == "memory":
                        backend = next(
                            (
                                r["backend"]
                                for r in results
                                if r["system"] == system and r.get("backend")
                            ),
                            "",
                        )
                        sizes["memory_rate"] = drain_rate(results, system, backend) or 0.0
                    return run_peer(system, workload, plan, work, sizes)

            steps.append((system, workload, call))
    return steps


def open_sides(plan: Plan, tmp: Path) -> tuple[dict[str, TaskmillSide], list[str]]:
    sides, skipped = {}, []
    wanted = [s for s in plan.systems if s in TASKMILL]
    if SQL_CEILING in plan.systems and "taskmill-postgres" not in wanted:
        wanted.append("taskmill-postgres")
    for system in wanted:
        backend = databases.backend(TASKMILL[system])
        reason = backend.unavailable()
        if reason:
            skipped.append(f"{system}: {reason}")
            continue
        sides[system] = TaskmillSide(TASKMILL[system], run.Run(backend, tmp, taskmill_sizes(plan)))
    return sides, skipped


def run_suite(plan: Plan, mode: str) -> dict[str, Any]:
    machine = run.machine_info()
    machine["taskmill_bytecode"] = run.compile_taskmill()
    date = datetime.now(UTC).isoformat(timespec="seconds")
    began = time.perf_counter()
    if any(s in PEERS for s in plan.systems):
        ensure_peers_venv()
    tmp = Path(tempfile.mkdtemp(prefix="taskmill-peers-"))
    results: list[dict[str, Any]] = []
    sides, skipped = open_sides(plan, tmp)
    steps = build_steps(plan, tmp / "peers", results, sides)
    (tmp / "peers").mkdir()
    progress = common.Progress(len(steps))
    try:
        for system, workload, call in steps:
            progress.step(f"{system}: {workload}")
            try:
                results += call()
            except Exception as exc:  # one failed step must not lose the others
                run.say(f"{system} {workload}: FAILED: {exc!r}")
                results.append(
                    {"system": system, "backend": "", "workload": workload, "error": repr(exc)}
                )
        progress.finish()
    finally:
        for side in sides.values():
            side.run.close()
        shutil.rmtree(tmp, ignore_errors=True)
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    machine["peers"] = {p: peers_version(p) for p in PEERS if p in plan.systems}
    return {
        "mode": mode,
        "date": date,
        "version": taskmill.__version__,
        "revision": run.git_revision(),
        "duration_s": time.perf_counter() - began,
        "machine": machine,
        "skipped": skipped,
        "results": results,
        "targets": report.targets(results),
    }


def draw_chart(json_path: Path, png: Path) -> bool:
    if not PEERS_PY.exists():
        return False
    done = subprocess.run(
        [str(PEERS_PY), str(HERE / "peers" / "chart.py"), str(json_path), str(png)]
    )
    return done.returncode == 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="taskmill side by side with its peers")
    parser.add_argument(
        "--quick", action="store_true", help="about a minute: fewer systems, small sizes"
    )
    parser.add_argument("--only", nargs="+", choices=SYSTEMS, help="these systems only")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, help="these workloads only")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument(
        "--chart", type=Path, default=None, help=f"PNG path (full runs: {CHART.name})"
    )
    parser.add_argument(
        "--results-md",
        type=Path,
        default=None,
        help="add the section to this file (full runs: RESULTS.md)",
    )
    parser.add_argument("--no-results-md", action="store_true")
    parser.add_argument("--from-json", type=Path, help="measure nothing: report an earlier run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    if options.from_json:
        data = json.loads(options.from_json.read_text())
        reread_capped(data["results"])
        data["targets"] = report.targets(data["results"])  # as this version judges them
    else:
        plan = QUICK if options.quick else FULL
        if options.only:
            plan = replace(plan, systems=tuple(options.only))
        if options.workloads:
            plan = replace(plan, workloads=tuple(options.workloads))
        partial = bool(options.only or options.workloads)
        data = run_suite(plan, "quick" if options.quick else ("partial" if partial else "full"))
    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps(data, indent=2) + "\n")
    full = data["mode"] == "full"
    chart = options.chart or (CHART if full else options.json.with_suffix(".png"))
    if draw_chart(options.json, chart) and chart.resolve().is_relative_to(HERE):
        data["chart"] = os.path.relpath(chart.resolve(), HERE)
        run.say(f"wrote {chart}")
    body = report.markdown(data)
    print(body)
    run.say(f"wrote {options.json}")
    results_md = options.results_md or (run.DEFAULT_RESULTS_MD if full else None)
    if results_md and not options.no_results_md:
        report.update_results_md(results_md, data, body)
        run.say(f"updated {results_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
