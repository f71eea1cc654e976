"""The `taskmill` command: thin wrappers that parse, call the API and print."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from taskmill.apps import load_app, load_app_with_hooks
from taskmill.concurrency import Pool
from taskmill.errors import ConfigurationError, TaskmillError
from taskmill.groups import format_groups, parse_groups, split_cli_groups
from taskmill.protocol import MAX_OUTPUT_CHARS, MAX_RESULT_BYTES
from taskmill.records import Task, TaskReport

if TYPE_CHECKING:
    # imported where used: `taskmill worker -n N` only starts the workers, and
    # importing SQLAlchemy first would delay them by most of a second
    from taskmill.scheduler import Scheduler

FC = TypeVar("FC", bound=Callable[..., Any])

APP_HELP = "the application's Scheduler as MODULE:OBJECT (or env TASKMILL_APP)"
DB_HELP = "a database URL, for commands that need no task functions (or env TASKMILL_DB)"
LOCAL_TIME_KEY = "taskmill.local_time"


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def open_scheduler(app: str | None, db: str | None) -> Scheduler:
    from taskmill.scheduler import Scheduler

    try:
        if app:
            return load_app(app)
        if db:
            local_time = bool(click.get_current_context().meta.get(LOCAL_TIME_KEY))
            return Scheduler(db, utc_time=not local_time)
    except TaskmillError as exc:
        fail(str(exc))
    fail("give --app MODULE:OBJECT (or --db URL); see --help")


def parse_ref(ref: str) -> int | str:
    return int(ref) if ref.isdigit() else ref


def to_jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Task | TaskReport) or hasattr(value, "as_dict"):
        return {k: to_jsonable(v) for k, v in value.as_dict().items()}
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_jsonable(v) for v in value]
    return value


class IsoTime(click.ParamType):  # type: ignore[type-arg]  # generic only since click 8.5
    """ISO 8601 date-time, with or without an offset (naive: as the Scheduler's utc_time says)."""

    name = "datetime"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            return datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 date-time such as 2026-12-01T08:00:00+01:00")


def app_option(required: bool = False) -> Callable[[FC], FC]:
    return click.option("--app", envvar="TASKMILL_APP", help=APP_HELP, required=required)


def db_option() -> Callable[[FC], FC]:
    return click.option("--db", envvar="TASKMILL_DB", help=DB_HELP)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="INFO", show_default=True, help="logging level")
@click.option(
    "--local-time",
    is_flag=True,
    envvar="TASKMILL_LOCAL_TIME",
    help="with --db: the tables hold local time (web2py's utc_time=False); "
    "with --app the app's Scheduler says which",
)
@click.version_option(package_name="taskmill")
@click.pass_context
def main(ctx: click.Context, log_level: str, local_time: bool) -> None:
    """taskmill: a web2py-compatible background-task scheduler."""
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        fail(f"unknown log level {log_level!r}")
    # a --db command would otherwise read and write a local-time database as UTC
    ctx.meta[LOCAL_TIME_KEY] = local_time
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@app_option(required=True)
@click.option(
    "-g",
    "--group",
    "groups",
    multiple=True,
    help="group to serve (repeatable); NAME:WEIGHT shares claims among groups by weight, "
    "e.g. -g high:3 -g low:1 or -g high:3,low:1",
)
@click.option("-n", "--workers", "count", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--name", help="worker name (default host#pid; -N suffix with -n)")
@click.option(
    "--grace",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="seconds a stopping worker lets its running task finish",
)
@click.option(
    "--prefetch",
    type=click.IntRange(1, 256),
    default=16,
    show_default=True,
    help="hand up to N millisecond tasks (at most 5 ms of work) to the child ahead of time, "
    "so it runs them back to back while the worker records results; 1 hands tasks over "
    "one at a time",
)
@click.option(
    "--db-timeout",
    type=click.FloatRange(0, min_open=True),
    default=60.0,
    show_default=True,
    help="seconds the database may stay unreachable before the worker gives up (exit 3)",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(1, 1024),
    help="tasks each worker process runs at once (default: the app's Scheduler(concurrency=), "
    "1); with --pool processes, one child process per task slot",
)
@click.option(
    "--pool",
    type=click.Choice([p.value for p in Pool]),
    help="where tasks run: 'processes' (a child per slot; a timeout hard-kills it) or "
    "'threads' (@thread_safe tasks in threads / on an event loop of the worker, others in "
    "a child; a thread past its timeout is abandoned, not killed). Default: the app's "
    "Scheduler(pool=), processes",
)
@click.option(
    "--max-output-chars",
    type=click.IntRange(0),
    default=MAX_OUTPUT_CHARS,
    show_default=True,
    help="a run keeps the last N characters of what its task printed",
)
@click.option(
    "--max-result-bytes",
    type=click.IntRange(0),
    default=MAX_RESULT_BYTES,
    show_default=True,
    help="a task whose JSON result is larger fails, with a message saying so",
)
@click.option(
    "--max-tasks-per-child",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="replace the task child after N tasks (0 = never)",
)
@click.option(
    "--max-memory-per-child",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="replace the task child after a task leaves it above N bytes resident (0 = never)",
)
def worker(
    app: str,
    groups: tuple[str, ...],
    count: int,
    name: str | None,
    grace: float,
    prefetch: int,
    db_timeout: float,
    concurrency: int | None,
    pool: str | None,
    **limits: int,
) -> None:
    """Run N workers of the app's Scheduler until SIGTERM/SIGINT."""
    from taskmill import forkserver
    from taskmill.pool import create_worker
    from taskmill.supervisor import Supervisor, default_worker_name
    from taskmill.worker import WorkerOptions

    bad = [g for g in groups if not g or "|" in g]
    if bad:
        fail(f"invalid group name(s): {bad}")
    served: list[str] | None = None
    if groups:
        try:
            names, weights = parse_groups(split_cli_groups(groups))
        except ConfigurationError as exc:
            fail(str(exc))
        served = format_groups(names, weights)
    if count > 1:
        # the workers import the app themselves; importing it here too would
        # only delay their start (a broken app makes each of them exit 2)
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        args = ["--log-level", str(level), "worker", "--app", app, "--grace", str(grace)]
        args += ["--prefetch", str(prefetch), "--db-timeout", str(db_timeout)]
        if concurrency is not None:
            args += ["--concurrency", str(concurrency)]
        if pool is not None:
            args += ["--pool", pool]
        for option, value in limits.items():
            args += [f"--{option.replace('_', '-')}", str(value)]
        for group in served or []:
            args += ["-g", group]
        base = name or default_worker_name()
        sys.exit(Supervisor(args, count, base).run())
    # the fork server of task children is forked now: the app is not imported yet
    forkserver.prefork()
    scheduler = open_scheduler(app, None)
    options = WorkerOptions(
        grace=grace,
        pipeline_depth=prefetch,
        db_timeout=db_timeout,
        concurrency=concurrency or scheduler.concurrency,
        pool=Pool(pool) if pool else scheduler.pool,
        **limits,
    )
    runner = create_worker(scheduler, app, name=name, group_names=served, options=options)
    sys.exit(runner.run())


@main.command()
@app_option()
@db_option()
def migrate(app: str | None, db: str | None) -> None:
    """Create the four tables, their indexes and taskmill's extra columns (idempotent)."""
    scheduler = open_scheduler(app, db)
    try:
        scheduler.create_tables()
    except Exception as exc:
        fail(f"migration failed: {exc}", 1)
    click.echo("tables are up to date")


@main.command()
@app_option(required=True)
@click.argument("function")
@click.option("--args", "args_text", default="[]", help="positional arguments as a JSON list")
@click.option("--vars", "vars_text", default="{}", help="keyword arguments as a JSON object")
@click.option("--uuid")
@click.option("--task-name")
@click.option("--group", "group_name")
@click.option(
    "--start-time",
    type=IsoTime(),
    help="not before (ISO 8601; without an offset: UTC, or local time if the app's "
    "Scheduler has utc_time=False)",
)
@click.option("--stop-time", type=IsoTime(), help="not started after (ISO 8601)")
@click.option("--repeats", type=int)
@click.option("--period", type=int)
@click.option("--timeout", type=int)
@click.option("--retry-failed", type=int)
@click.option("--retry-backoff", type=int, help="seconds before the first retry, doubling")
@click.option("--sync-output", type=int)
@click.option("--cronline")
@click.option("--prevent-drift", is_flag=True, default=None)
def queue(app: str, function: str, args_text: str, vars_text: str, **options: Any) -> None:
    """Queue FUNCTION; prints the new task's id and uuid."""
    scheduler = open_scheduler(app, None)
    kwargs = {k: v for k, v in options.items() if v is not None}
    result = scheduler.queue_task(function, args=args_text, vars=vars_text, **kwargs)
    if result.errors:
        for field, message in result.errors.items():
            click.echo(f"Error: {field}: {message}", err=True)
        sys.exit(2)
    click.echo(json.dumps({"id": result.id, "uuid": result.uuid}))


@main.command()
@app_option()
@db_option()
@click.argument("ref")
@click.option("--output", is_flag=True, help="include the latest run and its result")
def status(app: str | None, db: str | None, ref: str, output: bool) -> None:
    """Show a task by id or uuid, as JSON."""
    scheduler = open_scheduler(app, db)
    found = scheduler.task_status(parse_ref(ref), output=output)
    if found is None:
        fail(f"no task {ref}", 1)
    if isinstance(found, TaskReport):
        data = {
            "scheduler_task": to_jsonable(found.scheduler_task),
            "scheduler_run": to_jsonable(found.scheduler_run),
            "result": found.result,
        }
    else:
        data = to_jsonable(found)
    click.echo(json.dumps(data, indent=2))


@main.command()
@app_option()
@db_option()
@click.argument("ref")
def stop(app: str | None, db: str | None, ref: str) -> None:
    """Stop a task: QUEUED/ASSIGNED at once, RUNNING killed by its worker."""
    scheduler = open_scheduler(app, db)
    if not scheduler.stop_task(parse_ref(ref)):
        fail(f"task {ref} does not exist or is not queued, assigned or running", 1)
    click.echo(f"task {ref}: STOPPED")


@main.command()
@app_option()
@db_option()
@click.argument("ref")
def requeue(app: str | None, db: str | None, ref: str) -> None:
    """Put a FAILED/TIMEOUT/STOPPED/EXPIRED task back to QUEUED."""
    scheduler = open_scheduler(app, db)
    if not scheduler.requeue(parse_ref(ref)):
        fail(f"task {ref} does not exist or is not FAILED, TIMEOUT, STOPPED or EXPIRED", 1)
    click.echo(f"task {ref}: QUEUED")


@main.command()
@app_option()
@db_option()
@click.option("--json", "as_json", is_flag=True)
def workers(app: str | None, db: str | None, as_json: bool) -> None:
    """List workers with their heartbeat, status and stats."""
    scheduler = open_scheduler(app, db)
    found = scheduler.get_workers()
    if as_json:
        click.echo(json.dumps({k: to_jsonable(v) for k, v in found.items()}, indent=2))
        return
    if not found:
        click.echo("no workers")
        return
    for name, info in found.items():
        beat = info.last_heartbeat.isoformat(timespec="seconds") if info.last_heartbeat else "-"
        ticker = " ticker" if info.is_ticker else ""
        stats = info.worker_stats or {}
        click.echo(
            f"{name}  {info.status}{ticker}  groups={','.join(info.group_names or [])}  "
            f"last_heartbeat={beat}  total={stats.get('total', 0)} errors={stats.get('errors', 0)}"
        )


@main.command()
@app_option()
@db_option()
@click.argument("ref")
def why(app: str | None, db: str | None, ref: str) -> None:
    """Explain in plain words why a task is (not) running."""
    scheduler = open_scheduler(app, db)
    explanation = scheduler.explain(parse_ref(ref))
    click.echo(str(explanation))
    if explanation.task_id is None:
        sys.exit(1)


@main.command("run-task")
@app_option(required=True)
@click.argument("task_id", type=int)
@click.option("--record", is_flag=True, help="write the run and update the task as a worker would")
def run_task(app: str, task_id: int, record: bool) -> None:
    """Run a stored task in this process (for a debugger), with its stored args/vars."""
    from taskmill.debug import run_stored_task

    try:
        scheduler, manager = load_app_with_hooks(app)
    except TaskmillError as exc:
        fail(str(exc))
    try:
        outcome = run_stored_task(scheduler, task_id, record=record, manager=manager)
    except TaskmillError as exc:
        fail(str(exc), 1)
    if outcome.output:
        click.echo(outcome.output, nl=False)
    if outcome.traceback:
        click.echo(outcome.traceback, err=True)
        sys.exit(1)
    click.echo(outcome.result if outcome.result is not None else "null")


@main.command()
@app_option(required=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind")
@click.option("--port", type=click.IntRange(1, 65535), default=8181, show_default=True)
def dashboard(app: str, host: str, port: int) -> None:
    """Serve the web dashboard and JSON API (login: see docs/dashboard.md)."""
    try:
        import uvicorn

        from taskmill.web import create_app
    except ImportError as exc:
        fail(f"the dashboard needs the web extra (pip install 'taskmill[web]'): {exc}")
    scheduler = open_scheduler(app, None)
    asgi = create_app(scheduler)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"Warning: the dashboard listens on {host}, not only on this machine", err=True)
    # open output streams (server-sent events) would otherwise hold a shutdown for
    # up to their time limit
    uvicorn.run(
        asgi,
        host=host,
        port=port,
        log_level="info",
        proxy_headers=False,
        timeout_graceful_shutdown=3,
    )


BENCH_SCRIPT = Path("benchmarks") / "suite.py"


def find_bench_script(*starts: Path) -> Path | None:
    """The benchmark suite ships with the source, not the wheel: look for it above the
    working directory and above this package (an editable install from a checkout)."""
    for start in starts:
        for directory in (start, *start.parents):
            candidate = directory / BENCH_SCRIPT
            if candidate.is_file():
                return candidate
    return None


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--quick", is_flag=True, help="the one-minute subset")
@click.argument("suite_args", nargs=-1, type=click.UNPROCESSED)
def bench(quick: bool, suite_args: tuple[str, ...]) -> None:
    """Benchmark taskmill side by side with its peers (benchmarks/suite.py; needs a
    source checkout, PostgreSQL, MariaDB and Redis). Other options go to the suite."""
    script = find_bench_script(Path.cwd(), Path(__file__).resolve().parent)
    if script is None:
        fail(
            "taskmill bench runs benchmarks/suite.py from a source checkout of taskmill; "
            "none was found above the current directory or the installed package"
        )
    command = [sys.executable, str(script), *(["--quick"] if quick else []), *suite_args]
    sys.exit(subprocess.call(command, cwd=script.parent.parent))


def run() -> None:
    try:
        main()
    except TaskmillError as exc:
        fail(str(exc))
    except Exception:
        traceback.print_exc()
        sys.exit(1)


if __name__ == "__main__":
    run()
