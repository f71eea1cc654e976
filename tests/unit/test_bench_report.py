"""The peers' benchmark harness: the figures it derives and the report it writes, on
hand-made samples (no peer, no database, no process)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

PEERS_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "peers"
sys.path.insert(0, str(PEERS_DIR))

import common  # noqa: E402
import report  # noqa: E402


def result(system: str, backend: str, workload: str, **figures: Any) -> dict[str, Any]:
    return {
        "system": system,
        "version": "1.0",
        "backend": backend,
        "workload": workload,
        "variant": "",
        "settings": {"workers": 2},
        "figures": figures,
    }


def drain(system: str, backend: str, from_start: float, steady: float) -> dict[str, Any]:
    return result(
        system,
        backend,
        "drain",
        tasks_per_s_from_start=from_start,
        tasks_per_s_steady=steady,
        finished=True,
    )


def pickup(system: str, backend: str, p50: float, p99: float) -> dict[str, Any]:
    return result(system, backend, "pickup", p50_ms=p50, p95_ms=p99, p99_ms=p99)


def test_percentile_interpolates_between_closest_ranks() -> None:
    assert common.percentile([1, 2, 3, 4], 50) == 2.5
    assert common.percentile([10, 20], 99) == pytest.approx(19.9)
    assert common.percentile([5], 95) == 5


def test_finished_drain_rates_count_from_worker_start_and_between_10_and_90_percent() -> None:
    # 1,000 tasks: nothing in the first second (start-up), then 100 a second
    samples = [(float(t), max(0, (t - 1) * 100)) for t in range(12)]
    figures = common.drain_figures(samples, 1_000)
    assert figures["finished"]
    assert figures["seconds_from_start"] == pytest.approx(11.0)
    assert figures["tasks_per_s_from_start"] == pytest.approx(1_000 / 11)
    assert figures["tasks_per_s_steady"] == pytest.approx(100.0)


def test_drain_stopped_at_the_cap_reports_the_rate_up_to_the_cap() -> None:
    samples = [(0.0, 0), (10.0, 200), (20.0, 400)]
    figures = common.drain_figures(samples, 1_000)
    assert not figures["finished"]
    assert figures["tasks_per_s_from_start"] == pytest.approx(20.0)
    assert figures["tasks_per_s_steady"] == pytest.approx(20.0)


def test_stamps_count_whole_lines_only(tmp_path: Path) -> None:
    stamps = common.Stamps(tmp_path / "stamps")
    with stamps.path.open("a") as f:
        f.write("1 10.5\n2 11.0\n3 1")
    assert stamps.count() == 2
    with stamps.path.open("a") as f:
        f.write("2.0\n1 13.0\n")
    assert stamps.count() == 4
    assert stamps.read() == {1: 10.5, 2: 11.0, 3: 12.0}


def test_targets_compare_taskmill_with_the_best_peer_and_the_pure_sql_ceiling() -> None:
    results = [
        drain("taskmill", "postgres", 3_000, 6_000),
        drain("pgqueuer", "postgres", 2_000, 5_000),
        drain("procrastinate", "postgres", 300, 350),
        drain(report.SQL_STRICT, "postgres", 1_000, 1_200),
        pickup("taskmill", "postgres", 3.0, 12.0),
        pickup(report.SQL_STRICT, "postgres", 2.0, 5.0),
        drain("taskmill", "sqlite", 2_000, 4_000),
        drain("huey", "sqlite", 1_000, 5_000),
    ]
    by_name = {t["target"]: t for t in report.targets(results)}
    best = by_name["PostgreSQL no-op drain (from start) / best peer on PostgreSQL"]
    assert best["measured"] == pytest.approx(1.5)
    assert best["met"]
    assert "pgqueuer" in best["detail"]
    assert not by_name["PostgreSQL no-op drain (steady) / best peer on PostgreSQL"]["met"]
    assert not by_name["PostgreSQL idle pickup p99, ms"]["met"]
    assert by_name["SQLite no-op drain (from start) / huey"]["met"]
    assert not by_name["SQLite no-op drain (steady) / huey"]["met"]
    p99 = by_name["PostgreSQL idle pickup p99: taskmill / pure SQL (1 task/transaction)"]
    assert p99["measured"] == pytest.approx(2.4)
    assert not p99["met"]
    assert by_name["PostgreSQL no-op drain steady: taskmill / pure SQL (1 task/transaction)"]["met"]


def test_side_by_side_table_has_one_row_per_system_in_database_order() -> None:
    results = [
        drain("pgqueuer", "postgres", 2_000, 5_000),
        drain("taskmill", "sqlite", 2_000, 4_000),
        {"system": "rq", "backend": "", "workload": "drain", "error": "boom"},
        drain("taskmill", "postgres", 3_000, 6_000),
    ]
    lines = report.side_by_side(results)
    rows = [line.split(" | ")[:2] for line in lines[2:]]
    assert rows == [
        ["| taskmill 1.0", "SQLite"],
        ["| taskmill 1.0", "PostgreSQL"],
        ["| pgqueuer 1.0", "PostgreSQL"],
        ["| rq", ""],
    ]
    assert "failed" in lines[-1]


def test_results_md_section_goes_under_its_heading_and_is_replaced_on_rerun(
    tmp_path: Path,
) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text("# results\n\nintro\n\n## Runs\n\nold run\n")
    run = {"date": "2026-11-23T16:00:00+00:00", "mode": "full", "version": "0.1", "revision": "abc"}
    report.update_results_md(path, run, "first body")
    report.update_results_md(path, run, "second body")
    text = path.read_text()
    assert "first body" not in text
    assert text.index(report.HEADING) < text.index("second body") < text.index("## Runs")
    assert text.count("<!-- peers:2026-11-23T16:00:full:begin -->") == 1
    assert text.endswith("old run\n")


def test_markdown_renders_a_whole_report_and_survives_json() -> None:
    results = [
        drain("taskmill", "postgres", 3_000, 6_000),
        pickup("taskmill", "postgres", 3.0, 8.0),
        result(
            "taskmill",
            "postgres",
            "memory",
            per_worker_pss_mib=30.0,
            per_worker_rss_mib=50.0,
            tasks_run=100_000,
        ),
    ]
    data = {
        "date": "2026-11-23T16:00:00+00:00",
        "mode": "full",
        "duration_s": 600.0,
        "machine": {"cores": 2, "load_average_at_start": [1.0], "load_average_at_end": [2.0]},
        "results": results,
        "targets": report.targets(results),
    }
    text = report.markdown(json.loads(json.dumps(data)))
    assert "| taskmill 1.0 | PostgreSQL |" in text
    assert "3.0 / 8.0 / 8.0" in text
    assert "30.0 (50.0) after 100,000" in text
    assert "| PostgreSQL idle pickup p99, ms | <= 10 | 8.00 | yes |" in text
    assert "- **taskmill on PostgreSQL**: workers=2" in text


def test_progress_bar_shows_steps_done_and_time_left() -> None:
    progress = common.Progress(4, width=8)
    progress.done = 2
    line = progress.bar("huey: drain")
    assert line.startswith("[####....] 2/4 0:00")
    assert "left" in line
    assert line.endswith("huey: drain")
