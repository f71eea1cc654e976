"""Run one workload on one peer and write its results as JSON (runs in the peers' venv,
started by benchmarks/suite.py; usable alone for a look at one peer):

    benchmarks/.peers-venv/bin/python benchmarks/peers/drive.py huey drain \
        --workdir /tmp/x --out /tmp/x/huey-drain.json --sizes '{"drain": 2000}'

Workloads (the same as taskmill's in the suite, measured the same way):

  enqueue  one by one, each its own call (and transaction), for up to `cap` seconds
  drain    bulk enqueue of `drain` no-op tasks (timed: the bulk enqueue figure), then
           2 worker processes started; completions counted every 50 ms from the start
  pickup   2 idle workers; one task every 20 ms; latency = the task's own time.time()
           at its start minus time.time() just before the enqueue call
  sleep    `sleep` tasks that sleep 25 ms, drained like the no-op tasks
  memory   up to `memory` no-op tasks (as many as the drain rate gets through in `cap`
           s), then the PSS/RSS of the workers' process trees
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import (  # noqa: E402
    POLL_EVERY,
    Procs,
    Stamps,
    descendants,
    drain_figures,
    latency_figures,
    memory_kib,
    pace,
)
from peer_base import Peer  # noqa: E402

FILL_LIMIT = 10.0  # seconds of bulk enqueue before a drain, at most
PEERS = ("pgqueuer", "procrastinate", "huey", "rq", "celery")
DEFAULTS: dict[str, Any] = {
    "one_by_one": 500,
    "drain": 20_000,
    "pickups": 300,
    "pickup_every": 0.020,
    "sleep": 2_000,
    "memory": 100_000,
    "memory_rate": 0.0,  # drain rate measured before: sizes the memory run to the cap
    "cap": 40.0,
}


def load(name: str, workdir: Path) -> Peer:
    module = importlib.import_module(f"peer_{name}")
    adapter: Peer = module.Adapter(workdir)
    return adapter


def watch(stamps: Stamps, total: int, procs: Procs, cap: float) -> list[tuple[float, int]]:
    """Poll the stamp count until `total`, the cap, or the workers exit."""
    samples: list[tuple[float, int]] = []
    began = time.perf_counter()
    while True:
        done = stamps.count()
        now = time.perf_counter() - began
        samples.append((now, done))
        if done >= total or now > cap or not procs.running():
            return samples
        time.sleep(POLL_EVERY)


def result(peer: Peer, workload: str, variant: str, figures: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"{workload}-{peer.name}",
        "system": peer.name,
        "version": peer.version(),
        "backend": peer.backend,
        "backend_version": peer.backend_version(),
        "workload": workload,
        "variant": variant,
        "settings": peer.settings(workload),
        "figures": figures,
    }


def enqueue_workload(peer: Peer, sizes: dict[str, Any], workdir: Path) -> list[dict[str, Any]]:
    peer.open("enqueue")
    try:
        peer.enqueue("noop", -1)  # connect outside the clock
        count, began = 0, time.perf_counter()
        deadline = began + sizes["cap"]
        while count < sizes["one_by_one"] and time.perf_counter() < deadline:
            peer.enqueue("noop", count)
            count += 1
        elapsed = time.perf_counter() - began
    finally:
        peer.close()
    figures = {"tasks": count, "seconds": elapsed, "tasks_per_s": count / elapsed}
    return [result(peer, "enqueue-one-by-one", "one by one", figures)]


def run_drain(
    peer: Peer, workload: str, task: str, total: int, cap: float, workdir: Path
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Bulk enqueue `total` tasks, start the workers, count them done. Returns the
    enqueue figures, the drain figures and the workers' memory at the end."""
    peer.open(workload)
    try:
        # in chunks, within a time limit: a peer without a fast bulk call (Celery queues
        # ~500/s under load) gets a smaller drain rather than a longer suite
        began, queued = time.perf_counter(), 0
        while queued < total and time.perf_counter() - began < FILL_LIMIT:
            chunk = min(5_000, total - queued)
            peer.enqueue_bulk(task, chunk)
            queued += chunk
        elapsed = time.perf_counter() - began
        enqueue = {"tasks": queued, "seconds": elapsed, "tasks_per_s": queued / elapsed}
        total = queued
        stamps = Stamps(workdir / f"{peer.name}-{workload}.stamps")
        env = peer.env(stamps.path)
        log = workdir / f"{peer.name}.log"
        procs = Procs()
        try:
            for command in peer.worker_commands(workload):
                procs.start(command, env, workdir, log)
            samples = watch(stamps, total, procs, cap)
            memory = memory_kib(descendants(procs.pids))
        finally:
            procs.stop()
    finally:
        peer.close()
    figures = drain_figures(samples, total)
    if not figures["finished"]:
        figures["note"] = f"stopped at the {cap:.0f} s cap" if procs.items else "workers exited"
    return enqueue, figures, memory


def drain_workload(peer: Peer, sizes: dict[str, Any], workdir: Path) -> list[dict[str, Any]]:
    enqueue, figures, _ = run_drain(peer, "drain", "noop", sizes["drain"], sizes["cap"], workdir)
    bulk = peer.bulk_method or "no bulk call: one by one"
    return [
        result(peer, "enqueue-bulk", bulk, enqueue),
        result(peer, "drain", "no-op", figures),
    ]


def sleep_workload(peer: Peer, sizes: dict[str, Any], workdir: Path) -> list[dict[str, Any]]:
    _, figures, _ = run_drain(peer, "sleep", "nap", sizes["sleep"], sizes["cap"], workdir)
    return [result(peer, "sleep", "sleep 25 ms", figures)]


def memory_workload(peer: Peer, sizes: dict[str, Any], workdir: Path) -> list[dict[str, Any]]:
    total = sizes["memory"]
    if sizes["memory_rate"]:
        total = max(1_000, min(total, int(sizes["memory_rate"] * sizes["cap"] * 0.8)))
    _, figures, memory = run_drain(peer, "memory", "noop", total, sizes["cap"], workdir)
    memory["tasks_run"] = figures["completed"]
    memory["per_worker_pss_mib"] = memory["pss_kib"] / 1024 / peer.workers
    memory["per_worker_rss_mib"] = memory["rss_kib"] / 1024 / peer.workers
    return [result(peer, "memory", f"after up to {total:,} no-op tasks", memory)]


def pickup_workload(peer: Peer, sizes: dict[str, Any], workdir: Path) -> list[dict[str, Any]]:
    peer.open("pickup")
    stamps = Stamps(workdir / f"{peer.name}-pickup.stamps")
    procs = Procs()
    try:
        for command in peer.worker_commands("pickup"):
            procs.start(command, peer.env(stamps.path), workdir, workdir / f"{peer.name}.log")
        # ready when a first task went through (not counted), then let them go idle
        peer.enqueue("stamp", -1)
        deadline = time.monotonic() + 60
        while stamps.count() < 1:
            if time.monotonic() > deadline or not procs.running():
                raise RuntimeError(f"{peer.name}: workers did not start (see the log)")
            time.sleep(0.05)
        time.sleep(1.0)
        sent = pace(sizes["pickups"], sizes["pickup_every"], lambda n: peer.enqueue("stamp", n))
        deadline = time.monotonic() + 30
        while stamps.count() < len(sent) + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        procs.stop()
        peer.close()
    started = stamps.read()
    delays = [(started[n] - before) * 1000 for n, (before, _) in enumerate(sent) if n in started]
    figures = latency_figures(delays)
    figures["lost"] = len(sent) - len(delays)
    calls = [(after - before) * 1000 for before, after in sent]
    figures["enqueue_call_p50_ms"] = sorted(calls)[len(calls) // 2]
    return [result(peer, "pickup", "idle workers, 1 task / 20 ms", figures)]


WORKLOADS = {
    "enqueue": enqueue_workload,
    "drain": drain_workload,
    "pickup": pickup_workload,
    "sleep": sleep_workload,
    "memory": memory_workload,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("peer", choices=PEERS)
    parser.add_argument("workload", choices=list(WORKLOADS))
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sizes", default="{}", help="JSON object overriding DEFAULTS")
    options = parser.parse_args(argv)
    sizes = {**DEFAULTS, **json.loads(options.sizes)}
    options.workdir.mkdir(parents=True, exist_ok=True)
    peer = load(options.peer, options.workdir)
    results = WORKLOADS[options.workload](peer, sizes, options.workdir)
    options.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
