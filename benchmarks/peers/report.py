"""The side-by-side report: one table of every system's figures, the settings each ran
with, taskmill's scale run, and the targets as ratios measured in the same run.
Standard library only (tested by tests/unit/test_bench_report.py without any peer).

A result is a dict: system, version, backend, workload (enqueue-one-by-one,
enqueue-bulk, drain, pickup, sleep, memory, scale), variant, settings, figures; a
failed step has `error` instead of figures.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from common import fmt

BACKEND_TITLES = {
    "sqlite": "SQLite",
    "postgres": "PostgreSQL",
    "mysql": "MariaDB",
    "redis": "Redis",
}
SQL_STRICT = "pure SQL, 1 task/transaction"
SQL_BATCHED = "pure SQL, 50 tasks/transaction"
#: table order: each database's systems together
ORDER = [
    ("taskmill", "sqlite"),
    ("huey", "sqlite"),
    ("taskmill", "postgres"),
    ("pgqueuer", "postgres"),
    ("procrastinate", "postgres"),
    (SQL_STRICT, "postgres"),
    (SQL_BATCHED, "postgres"),
    ("taskmill", "mysql"),
    ("rq", "redis"),
    ("celery", "redis"),
]
PG_PEERS = ("pgqueuer", "procrastinate")


def find(
    results: Iterable[dict[str, Any]], system: str, backend: str, workload: str
) -> dict[str, Any] | None:
    for r in results:
        if (r["system"], r["backend"], r["workload"]) == (system, backend, workload):
            return r
    return None


def value(
    results: Iterable[dict[str, Any]], system: str, backend: str, workload: str, name: str
) -> float | None:
    r = find(results, system, backend, workload)
    if r is None or "figures" not in r:
        return None
    v = r["figures"].get(name)
    return float(v) if isinstance(v, int | float) and v == v else None


def systems(results: list[dict[str, Any]]) -> list[tuple[str, str]]:
    present = {(r["system"], r["backend"]) for r in results}
    known = [key for key in ORDER if key in present]
    return known + sorted(present - set(known))


def _cell(results: list[dict[str, Any]], key: tuple[str, str], workload: str, name: str) -> str:
    r = find(results, *key, workload)
    if r is None:
        return ""
    if "error" in r:
        return "failed"
    text = fmt(value(results, *key, workload, name), 2 if name.endswith("_ms") else 0)
    figures = r["figures"]
    if workload in ("drain", "sleep") and not figures.get("finished", True):
        text += f" ({fmt(figures.get('completed'))} of {fmt(figures.get('tasks'))} at the cap)"
    return text


def _pickup_cell(results: list[dict[str, Any]], key: tuple[str, str]) -> str:
    r = find(results, *key, "pickup")
    if r is None:
        return ""
    if "error" in r:
        return "failed"
    f = r["figures"]
    return " / ".join(fmt(f.get(p), 1) for p in ("p50_ms", "p95_ms", "p99_ms"))


def _memory_cell(results: list[dict[str, Any]], key: tuple[str, str]) -> str:
    r = find(results, *key, "memory")
    if r is None:
        return ""
    if "error" in r:
        return "failed"
    f = r["figures"]
    return (
        f"{fmt(f.get('per_worker_pss_mib'), 1)} ({fmt(f.get('per_worker_rss_mib'), 1)}) "
        f"after {fmt(f.get('tasks_run'))}"
    )


def side_by_side(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| system | database | enqueue one by one, tasks/s | enqueue bulk, tasks/s | "
        "no-op drain from worker start, tasks/s | no-op drain steady, tasks/s | "
        "idle pickup p50 / p95 / p99, ms | 2,000 x sleep 25 ms, tasks/s from start | "
        "memory per worker, PSS (RSS) MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in systems(results):
        if key[1] == "scale":
            continue
        cells = [
            _cell(results, key, "enqueue-one-by-one", "tasks_per_s"),
            _cell(results, key, "enqueue-bulk", "tasks_per_s"),
            _cell(results, key, "drain", "tasks_per_s_from_start"),
            _cell(results, key, "drain", "tasks_per_s_steady"),
            _pickup_cell(results, key),
            _cell(results, key, "sleep", "tasks_per_s_from_start"),
            _memory_cell(results, key),
        ]
        if any(cells):
            version = next(
                (r.get("version") for r in results if (r["system"], r["backend"]) == key), ""
            )
            name = f"{key[0]} {version}" if version else key[0]
            lines.append(
                f"| {name} | {BACKEND_TITLES.get(key[1], key[1])} | " + " | ".join(cells) + " |"
            )
    return lines


def settings_lines(results: list[dict[str, Any]]) -> list[str]:
    """Each system's settings, per workload where they differ."""
    lines = []
    for key in systems(results):
        seen: dict[str, list[str]] = {}
        for r in results:
            if (r["system"], r["backend"]) != key or not r.get("settings"):
                continue
            text = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
            seen.setdefault(text, []).append(r["workload"])
        if not seen:
            continue
        title = f"{key[0]} on {BACKEND_TITLES.get(key[1], key[1])}"
        if len(seen) == 1:
            lines.append(f"- **{title}**: {next(iter(seen))}")
        else:
            parts = "; ".join(f"{'/'.join(w)}: {text}" for text, w in seen.items())
            lines.append(f"- **{title}**: {parts}")
    return lines


def errors(results: list[dict[str, Any]]) -> list[str]:
    return [
        f"- {r['system']} on {r['backend']}, {r['workload']}: failed: {r['error']}"
        for r in results
        if "error" in r
    ]


def scale_table(results: list[dict[str, Any]]) -> list[str]:
    rows = [r for r in results if r["workload"] == "scale" and "figures" in r]
    if not rows:
        return []
    lines = [
        "| taskmill scale run | database | finished rows | claim of 50, p50 ms | "
        "task_status by id, p50 ms | task_status by uuid, p50 ms | plan |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        for step in r["figures"]["steps"]:
            lines.append(
                f"| | {BACKEND_TITLES.get(r['backend'], r['backend'])} | "
                f"{step['finished_rows']:,} | {fmt(step['claim_p50_ms'], 2)} | "
                f"{fmt(step['status_by_id_p50_ms'], 2)} | {fmt(step['status_by_uuid_p50_ms'], 2)}"
                f" | {step.get('plan', '')} |"
            )
    return lines


# --------------------------------------------------------------------------- targets
def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _target(
    name: str, measured: float | None, goal: float, higher: bool, detail: str
) -> dict[str, Any]:
    met = measured is not None and (measured >= goal if higher else measured <= goal)
    return {
        "target": name,
        "goal": f"{'>=' if higher else '<='} {goal:g}",
        "measured": measured,
        "met": met,
        "detail": detail,
    }


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets for taskmill, as ratios within this run (and one absolute)."""
    out = []

    def v(system: str, backend: str, workload: str, name: str) -> float | None:
        return value(results, system, backend, workload, name)

    for rate, label in (("tasks_per_s_from_start", "from start"), ("tasks_per_s_steady", "steady")):
        ours = v("taskmill", "postgres", "drain", rate)
        peers = {p: v(p, "postgres", "drain", rate) for p in PG_PEERS}
        best_name, best = max(
            ((p, x) for p, x in peers.items() if x is not None),
            key=lambda item: item[1],
            default=(None, None),
        )
        if ours is not None and best is not None:
            out.append(
                _target(
                    f"PostgreSQL no-op drain ({label}) / best peer on PostgreSQL",
                    _ratio(ours, best),
                    1.5,
                    True,
                    f"taskmill {fmt(ours)} vs {best_name} {fmt(best)} tasks/s",
                )
            )
    p99 = v("taskmill", "postgres", "pickup", "p99_ms")
    if p99 is not None:
        out.append(_target("PostgreSQL idle pickup p99, ms", p99, 10.0, False, f"{fmt(p99, 2)} ms"))
    for rate, label in (("tasks_per_s_from_start", "from start"), ("tasks_per_s_steady", "steady")):
        ours, huey = v("taskmill", "sqlite", "drain", rate), v("huey", "sqlite", "drain", rate)
        if ours is not None and huey is not None:
            out.append(
                _target(
                    f"SQLite no-op drain ({label}) / huey",
                    _ratio(ours, huey),
                    1.0,
                    True,
                    f"taskmill {fmt(ours)} vs huey {fmt(huey)} tasks/s",
                )
            )
    # claim and status lookup stay flat as finished rows pile up
    for r in results:
        if r["workload"] != "scale" or "figures" not in r:
            continue
        first, last = r["figures"]["steps"][0], r["figures"]["steps"][-1]
        title = BACKEND_TITLES.get(r["backend"], r["backend"])
        for name, label in (
            ("claim_p50_ms", "claim of 50"),
            ("status_by_id_p50_ms", "task_status by id"),
            ("status_by_uuid_p50_ms", "task_status by uuid"),
        ):
            out.append(
                _target(
                    f"{title} {label} at {last['finished_rows']:,} / at "
                    f"{first['finished_rows']:,} finished rows",
                    _ratio(last[name], first[name]),
                    2.0,
                    False,
                    f"{fmt(last[name], 2)} vs {fmt(first[name], 2)} ms",
                )
            )
    # within 2x of the pure-SQL ceiling with strict per-task claims (PostgreSQL)
    ceiling = [
        ("enqueue one by one", "enqueue-one-by-one", "tasks_per_s", True),
        ("enqueue bulk", "enqueue-bulk", "tasks_per_s", True),
        ("no-op drain from start", "drain", "tasks_per_s_from_start", True),
        ("no-op drain steady", "drain", "tasks_per_s_steady", True),
        ("idle pickup p50", "pickup", "p50_ms", False),
        ("idle pickup p99", "pickup", "p99_ms", False),
    ]
    for label, workload, name, higher in ceiling:
        ours, sql = (
            v("taskmill", "postgres", workload, name),
            v(SQL_STRICT, "postgres", workload, name),
        )
        if ours is None or sql is None:
            continue
        # "within 2x": taskmill / ceiling >= 0.5 for rates, <= 2 for latencies
        out.append(
            _target(
                f"PostgreSQL {label}: taskmill / pure SQL (1 task/transaction)",
                _ratio(ours, sql),
                0.5 if higher else 2.0,
                higher,
                f"taskmill {fmt(ours, 0 if higher else 2)} vs {fmt(sql, 0 if higher else 2)}",
            )
        )
    return out


def target_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| target (taskmill) | goal | measured | met | figures |", "|---|---|---:|---|---|"]
    for t in rows:
        lines.append(
            f"| {t['target']} | {t['goal']} | {fmt(t['measured'], 2)} | "
            f"{'yes' if t['met'] else '**no**'} | {t['detail']} |"
        )
    return lines


# -------------------------------------------------------------------------- document
def machine_line(machine: dict[str, Any]) -> str:
    load = machine.get("load_average_at_start", [])
    end = machine.get("load_average_at_end", [])
    return (
        f"{machine.get('cpu_model')}, {machine.get('cores')} cores, {machine.get('ram_gib')} GiB "
        f"RAM, {machine.get('os')}; Python {machine.get('python')}; load average "
        f"{' / '.join(str(x) for x in load)} at start, {' / '.join(str(x) for x in end)} at end"
        + (
            f"; taskmill bytecode {machine['taskmill_bytecode']}"
            if "taskmill_bytecode" in machine
            else ""
        )
    )


def markdown(report: dict[str, Any]) -> str:
    results = report["results"]
    lines = [
        f"Measured {report['date']} ({report['mode']} run, {report['duration_s']:.0f} s) on: "
        f"{machine_line(report['machine'])}.",
        "",
        *side_by_side(results),
        "",
    ]
    if report.get("chart"):
        lines += [f"![drain rates and pickup latency]({report['chart']})", ""]
    scale = scale_table(results)
    if scale:
        lines += [*scale, ""]
    if report.get("targets"):
        lines += [*target_table(report["targets"]), ""]
    lines += ["Settings:", "", *settings_lines(results), ""]
    failed = errors(results)
    if failed:
        lines += ["Failed steps:", "", *failed, ""]
    return "\n".join(lines)


HEADING = "## Side by side with the peers"


def update_results_md(path: Path, report: dict[str, Any], body: str) -> None:
    """Add (or replace) this run's dated section under HEADING, before "## Runs"."""
    day = report["date"][:10]
    key = f"{report['date'][:16]}:{report['mode']}"  # one section a run, several a day
    begin = f"<!-- peers:{key}:begin -->"
    end = f"<!-- peers:{key}:end -->"
    section = "\n".join(
        [
            begin,
            f"### {day} {report['date'][11:16]} UTC: peers, {report['mode']} run "
            f"(taskmill {report.get('version', '?')}, revision {report.get('revision')})",
            "",
            body.rstrip(),
            end,
        ]
    )
    text = path.read_text() if path.exists() else "# taskmill benchmark results\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        path.write_text(head + section + rest.split(end, 1)[1])
        return
    if HEADING not in text:
        marker = "\n## Runs"
        if marker in text:
            head, rest = text.split(marker, 1)
            text = f"{head.rstrip()}\n\n{HEADING}\n\n{marker.strip()}{rest}"
        else:
            text = f"{text.rstrip()}\n\n{HEADING}\n"
    head, rest = text.split(HEADING, 1)
    # newest first: right under the heading, after any text that introduces it
    stops = [i for i in (rest.find("\n<!-- peers:"), rest.find("\n## ")) if i >= 0]
    cut = min(stops) if stops else len(rest)
    intro, tail = rest[:cut].rstrip(), rest[cut:]
    path.write_text(f"{head}{HEADING}{intro}\n\n{section}\n{tail}")
