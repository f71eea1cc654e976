"""The `taskmill` command line, run in-process through click's CliRunner."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from taskmill import Scheduler
from taskmill.cli import main

APP_SOURCE = """
from taskmill import Scheduler


def add(a, b):
    return a + b


sched = Scheduler({url!r}, tasks={{"add": add}})
not_a_scheduler = 42
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def migrated_url(sqlite_url: str) -> str:
    scheduler = Scheduler(sqlite_url)
    scheduler.create_tables()
    scheduler.store.dispose()
    return sqlite_url


@pytest.fixture
def app(tmp_path: Path, migrated_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An importable application module; yields its MODULE (use f"{app}:sched")."""
    module = f"cli_app_{secrets.token_hex(4)}"
    (tmp_path / f"{module}.py").write_text(APP_SOURCE.format(url=migrated_url))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield module
    loaded = sys.modules.pop(module, None)
    if loaded is not None:
        loaded.sched.store.dispose()


def invoke(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(main, list(args), catch_exceptions=False)


def queued(runner: CliRunner, app: str, *args: str) -> dict[str, object]:
    result = invoke(runner, "queue", "--app", f"{app}:sched", "add", *args)
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.stdout)
    return data


def table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


# ------------------------------------------------------------------ help


def test_main_help_lists_the_commands(runner: CliRunner) -> None:
    result = invoke(runner, "--help")
    assert result.exit_code == 0
    for command in ("worker", "queue", "status", "stop", "requeue", "workers", "migrate"):
        assert command in result.output


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_has_help(runner: CliRunner, command: str) -> None:
    result = invoke(runner, command, "--help")
    assert result.exit_code == 0
    assert result.output.startswith(f"Usage: main {command} ")


def test_help_also_answers_to_h(runner: CliRunner) -> None:
    assert invoke(runner, "status", "-h").exit_code == 0


def test_unknown_log_level_exits_2(runner: CliRunner) -> None:
    result = invoke(runner, "--log-level", "chatty", "workers")
    assert result.exit_code == 2
    assert "unknown log level 'chatty'" in result.stderr


# ------------------------------------------------------------------ --app and --db


@pytest.mark.parametrize("spec", ["nocolon", "a:b:c", ":sched", "module:"])
def test_malformed_app_exits_2_with_a_clear_message(runner: CliRunner, spec: str) -> None:
    result = invoke(runner, "status", "--app", spec, "1")
    assert result.exit_code == 2
    assert result.stderr == f"Error: --app must look like 'package.module:object', not {spec!r}\n"


def test_app_that_cannot_be_imported_exits_2(runner: CliRunner) -> None:
    result = invoke(runner, "status", "--app", "no_such_module_xyz:sched", "1")
    assert result.exit_code == 2
    assert "cannot import 'no_such_module_xyz'" in result.stderr


def test_app_attribute_missing_exits_2(runner: CliRunner, app: str) -> None:
    result = invoke(runner, "status", "--app", f"{app}:missing", "1")
    assert result.exit_code == 2
    assert f"module {app!r} has no attribute 'missing'" in result.stderr


def test_app_that_is_not_a_scheduler_exits_2(runner: CliRunner, app: str) -> None:
    result = invoke(runner, "status", "--app", f"{app}:not_a_scheduler", "1")
    assert result.exit_code == 2
    assert "is a int, not a taskmill Scheduler" in result.stderr


def test_command_without_app_or_db_exits_2(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TASKMILL_APP", raising=False)
    monkeypatch.delenv("TASKMILL_DB", raising=False)
    result = invoke(runner, "status", "1")
    assert result.exit_code == 2
    assert "give --app MODULE:OBJECT (or --db URL)" in result.stderr


def test_db_is_read_from_the_environment(
    runner: CliRunner, migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKMILL_DB", migrated_url)
    result = invoke(runner, "status", "7")
    assert result.exit_code == 1
    assert result.stderr == "Error: no task 7\n"


def test_bad_database_url_exits_2(runner: CliRunner) -> None:
    result = invoke(runner, "status", "--db", "not a url", "1")
    assert result.exit_code == 2
    assert "not a database URL" in result.stderr


# ------------------------------------------------------------------ migrate


def test_migrate_creates_the_tables(runner: CliRunner, sqlite_url: str) -> None:
    result = invoke(runner, "migrate", "--db", sqlite_url)
    assert result.exit_code == 0
    assert result.stdout == "tables are up to date\n"
    assert {"scheduler_task", "scheduler_run", "scheduler_worker", "scheduler_task_deps"} <= (
        table_names(sqlite_url)
    )


def test_migrate_is_idempotent(runner: CliRunner, sqlite_url: str) -> None:
    assert invoke(runner, "migrate", "--db", sqlite_url).exit_code == 0
    second = invoke(runner, "migrate", "--db", sqlite_url)
    assert second.exit_code == 0
    assert second.stdout == "tables are up to date\n"


# ------------------------------------------------------------------ queue


def test_queue_prints_id_and_uuid(runner: CliRunner, app: str) -> None:
    data = queued(runner, app, "--args", "[1, 2]", "--uuid", "cli-1")
    assert data == {"id": 1, "uuid": "cli-1"}


def test_queue_stores_the_options(runner: CliRunner, app: str, migrated_url: str) -> None:
    queued(
        runner,
        app,
        "--args",
        "[1, 2]",
        "--vars",
        "{}",
        "--repeats",
        "3",
        "--period",
        "30",
        "--group",
        "slow",
        "--start-time",
        "2030-01-07T12:00:00+01:00",
        "--prevent-drift",
    )
    result = invoke(runner, "status", "--db", migrated_url, "1")
    task = json.loads(result.stdout)
    assert (task["repeats"], task["period"], task["group_name"]) == (3, 30, "slow")
    assert task["prevent_drift"] is True
    assert task["start_time"] == "2030-01-07T11:00:00+00:00"


@pytest.mark.parametrize(
    ("option", "text", "field"),
    [("--args", "[1,", "args"), ("--vars", "{oops}", "vars"), ("--args", '{"a": 1}', "args")],
)
def test_queue_with_bad_json_exits_2_naming_the_field(
    runner: CliRunner, app: str, migrated_url: str, option: str, text: str, field: str
) -> None:
    result = invoke(runner, "queue", "--app", f"{app}:sched", "add", option, text)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {field}: ")
    assert result.stdout == ""
    assert invoke(runner, "status", "--db", migrated_url, "1").exit_code == 1


def test_queue_unknown_function_exits_2(runner: CliRunner, app: str) -> None:
    result = invoke(runner, "queue", "--app", f"{app}:sched", "mul")
    assert result.exit_code == 2
    assert result.stderr == "Error: function_name: no task named 'mul' is registered (known: add)\n"


def test_queue_invalid_cronline_exits_2(runner: CliRunner, app: str) -> None:
    result = invoke(runner, "queue", "--app", f"{app}:sched", "add", "--cronline", "0 0 31 2 *")
    assert result.exit_code == 2
    assert result.stderr == "Error: cronline: no such date: day 31 never occurs in February\n"


def test_queue_bad_start_time_exits_2(runner: CliRunner, app: str) -> None:
    result = invoke(runner, "queue", "--app", f"{app}:sched", "add", "--start-time", "tomorrow")
    assert result.exit_code == 2
    assert "'tomorrow' is not an ISO 8601 date-time" in result.stderr


def test_queue_needs_app(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKMILL_APP", raising=False)
    result = invoke(runner, "queue", "add")
    assert result.exit_code == 2
    assert "Missing option '--app'" in result.stderr


# ------------------------------------------------------------------ status, stop, requeue


def test_status_of_a_missing_task_exits_1(runner: CliRunner, migrated_url: str) -> None:
    result = invoke(runner, "status", "--db", migrated_url, "99")
    assert result.exit_code == 1
    assert result.stderr == "Error: no task 99\n"


def test_status_of_a_missing_uuid_exits_1(runner: CliRunner, migrated_url: str) -> None:
    result = invoke(runner, "status", "--db", migrated_url, "no-such-uuid")
    assert result.exit_code == 1


def test_status_prints_the_task_as_json(runner: CliRunner, app: str, migrated_url: str) -> None:
    queued(runner, app, "--args", "[1, 2]", "--uuid", "cli-1")
    result = invoke(runner, "status", "--db", migrated_url, "cli-1")
    assert result.exit_code == 0
    task = json.loads(result.stdout)
    assert (task["id"], task["status"], task["args"]) == (1, "QUEUED", "[1, 2]")


def test_status_output_has_task_run_and_result(
    runner: CliRunner, app: str, migrated_url: str
) -> None:
    queued(runner, app)
    result = invoke(runner, "status", "--db", migrated_url, "--output", "1")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert set(data) == {"scheduler_task", "scheduler_run", "result"}
    assert data["scheduler_task"]["id"] == 1
    assert (data["scheduler_run"], data["result"]) == (None, None)


def test_stop_then_requeue(runner: CliRunner, app: str, migrated_url: str) -> None:
    queued(runner, app)
    stopped = invoke(runner, "stop", "--db", migrated_url, "1")
    assert (stopped.exit_code, stopped.stdout) == (0, "task 1: STOPPED\n")
    again = invoke(runner, "stop", "--db", migrated_url, "1")
    assert again.exit_code == 1
    requeued = invoke(runner, "requeue", "--db", migrated_url, "1")
    assert (requeued.exit_code, requeued.stdout) == (0, "task 1: QUEUED\n")


def test_stop_of_a_missing_task_exits_1(runner: CliRunner, migrated_url: str) -> None:
    result = invoke(runner, "stop", "--db", migrated_url, "5")
    assert result.exit_code == 1
    assert "task 5 does not exist" in result.stderr


def test_requeue_of_a_queued_task_exits_1(runner: CliRunner, app: str, migrated_url: str) -> None:
    queued(runner, app)
    result = invoke(runner, "requeue", "--db", migrated_url, "1")
    assert result.exit_code == 1
    assert "is not FAILED, TIMEOUT, STOPPED or EXPIRED" in result.stderr


def test_workers_without_workers(runner: CliRunner, migrated_url: str) -> None:
    result = invoke(runner, "workers", "--db", migrated_url)
    assert (result.exit_code, result.stdout) == (0, "no workers\n")
    as_json = invoke(runner, "workers", "--db", migrated_url, "--json")
    assert json.loads(as_json.stdout) == {}


def test_workers_lists_a_registered_worker(runner: CliRunner, migrated_url: str) -> None:
    scheduler = Scheduler(migrated_url)
    scheduler.store.register_worker("host#1", ["main", "slow"], {"total": 4}, dead_after=9)
    scheduler.store.dispose()
    result = invoke(runner, "workers", "--db", migrated_url)
    assert result.exit_code == 0
    assert result.stdout.startswith("host#1  ACTIVE  groups=main,slow  last_heartbeat=")
    assert "total=4 errors=0" in result.stdout
    data = json.loads(invoke(runner, "workers", "--db", migrated_url, "--json").stdout)
    assert data["host#1"]["group_names"] == ["main", "slow"]


# ------------------------------------------------------------------ the installed entry point


def test_module_entry_point_exits_non_zero_on_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "taskmill", "status", "--app", "malformed", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--app must look like 'package.module:object'" in result.stderr


def test_worker_refuses_a_zero_group_weight(runner: CliRunner, app: str) -> None:
    result = invoke(runner, "worker", "--app", f"{app}:sched", "-g", "high:3,low:0")
    assert result.exit_code == 2
    assert "weight must be an integer from 1 to 1000" in result.stderr


def test_bench_finds_the_suite_in_a_source_checkout(tmp_path: Path) -> None:
    from taskmill.cli import find_bench_script

    script = tmp_path / "benchmarks" / "suite.py"
    script.parent.mkdir()
    script.write_text("")
    assert find_bench_script(tmp_path / "src" / "taskmill") == script
    assert find_bench_script(tmp_path / "benchmarks") == script


def test_bench_outside_a_checkout_says_so(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import taskmill.cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(taskmill.cli, "find_bench_script", lambda *starts: None)
    result = runner.invoke(main, ["bench", "--quick"])
    assert result.exit_code == 2
    assert "source checkout" in result.output
