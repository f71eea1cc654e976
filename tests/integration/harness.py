"""Real worker processes against a real database, for integration and chaos tests.

A `Cluster` owns one database (given as a SQLAlchemy URL, so the same tests can run on
any backend), a test-side `Scheduler` to queue and inspect tasks, and the worker
processes a test starts: `python -m taskmill worker --app ... --name ...`, exactly what
an operator runs, each logging to its own file. At the end it stops them (SIGTERM, then
SIGKILL after a deadline) and fails the test if one of them died or exited with an error
when it was not meant to. When a test fails, the workers' logs are attached to its report.

Synchronisation is always `wait_for(predicate, timeout)`: poll until a condition holds,
with a deadline. Never a bare sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid as uuidlib
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest
import sqlalchemy as sa

from taskmill import Run, RunStatus, Scheduler, Task, TaskStatus

TESTS_DIR = Path(__file__).resolve().parents[1]
#: test applications, importable by workers (PYTHONPATH) and, once this module is
#: imported, by the tests themselves; no __init__.py anywhere, as in the rest of tests/
APPS_DIR = TESTS_DIR / "apps"
if str(APPS_DIR) not in sys.path:
    sys.path.insert(0, str(APPS_DIR))

#: environment variables the test apps read
DB_ENV = "TASKMILL_TEST_DB"
HEARTBEAT_ENV = "TASKMILL_TEST_HEARTBEAT"
#: inherited variables that would change what a worker does
_SCRUBBED_ENV = ("TASKMILL_APP", "TASKMILL_DB", "TASKMILL_SUPERVISOR_PID")

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A condition a test waited for did not hold before its deadline."""


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 10.0,
    *,
    interval: float = 0.02,
    what: str | None = None,
) -> T:
    """Poll `predicate` until it returns something truthy, and return that.

    Raises WaitTimeout after `timeout` seconds, naming `what` and the last value seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            label = what or getattr(predicate, "__name__", "condition")
            raise WaitTimeout(f"timed out after {timeout} s waiting for {label}; last: {value!r}")
        time.sleep(interval)


def process_running(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # the state follows the parenthesised command name, which may contain spaces
    return stat[stat.rindex(")") + 2] not in "ZX"


def descendants(pid: int) -> list[int]:
    """All processes below `pid` (Linux /proc), children first."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            text = Path(f"/proc/{parent}/task/{parent}/children").read_text()
        except OSError:
            continue
        children = [int(p) for p in text.split()]
        found.extend(children)
        pending.extend(children)
    return found


@dataclass
class WorkerProcess:
    """One `taskmill worker` command (with `-n N`: a supervisor and its N workers)."""

    name: str
    #: the names its workers register under in scheduler_worker
    worker_names: list[str]
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]
    #: set once the test has signalled, killed or waited for the process
    exit_expected: bool = False
    #: task children left behind by a SIGKILL, killed at teardown
    orphans: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def alive(self) -> bool:
        return self.process.poll() is None

    def send_signal(self, signum: int) -> None:
        self.exit_expected = True
        if self.alive():
            self.process.send_signal(signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the worker alone, as the OOM killer would: no chance to clean up.

        Its task child is not signalled (whatever it does then is under test); any
        survivor is killed at teardown."""
        self.orphans.extend(descendants(self.pid))
        self.send_signal(signal.SIGKILL)
        self.process.wait()

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit on its own; returns its exit code."""
        self.exit_expected = True
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise WaitTimeout(f"worker {self.name} did not exit within {timeout} s") from None

    def log(self) -> str:
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def reap(self, deadline: float) -> None:
        """Wait for the (signalled) process until `deadline`, then SIGKILL it and
        everything it left behind."""
        self.orphans.extend(descendants(self.pid))
        if self.alive():
            try:
                self.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.orphans.extend(descendants(self.pid))
                self.process.kill()
                self.process.wait()
        for pid in self.orphans:
            if process_running(pid):
                # task children lead their own session: take their whole group
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        self.log_file.close()


class Cluster:
    """One database, a Scheduler to drive it, and the worker processes of a test."""

    def __init__(
        self,
        db_url: str,
        workdir: Path,
        *,
        app: str,
        tasks: Mapping[str, Callable[..., Any]],
        heartbeat: float = 1.0,
        grace: float = 5.0,
        stop_timeout: float = 10.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.db_url = db_url
        self.workdir = workdir
        self.app = app
        self.heartbeat = heartbeat
        self.grace = grace
        self.stop_timeout = stop_timeout
        self.extra_env = dict(env or {})
        self.sched = Scheduler(db_url, tasks=dict(tasks), heartbeat=heartbeat)
        self.sched.create_tables()
        self.workers: list[WorkerProcess] = []
        self._serial = 0

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------- processes
    def env(self, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        paths = [str(APPS_DIR), *filter(None, [env.get("PYTHONPATH")])]
        env.update(
            {
                "PYTHONPATH": os.pathsep.join(paths),
                "PYTHONUNBUFFERED": "1",
                DB_ENV: self.db_url,
                HEARTBEAT_ENV: str(self.heartbeat),
            }
        )
        env.update(self.extra_env)
        env.update(overrides or {})
        return env

    def _new_name(self) -> str:
        self._serial += 1
        return f"w{self._serial}"

    def start_worker(
        self,
        name: str | None = None,
        *,
        count: int = 1,
        grace: float | None = None,
        args: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        wait: bool = True,
        timeout: float = 20.0,
    ) -> WorkerProcess:
        """Start `taskmill worker` (with `-n count`); by default wait until it beats."""
        name = name or self._new_name()
        command = [sys.executable, "-m", "taskmill", "--log-level", "DEBUG", "worker"]
        grace = self.grace if grace is None else grace
        command += ["--app", self.app, "--name", name, "--grace", str(grace)]
        if count > 1:
            command += ["-n", str(count)]
        command += list(args)
        log_path = self.workdir / f"worker-{name}.log"
        log_file = log_path.open("wb")
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=self.env(env),
            cwd=self.workdir,
        )
        names = [name] if count == 1 else [f"{name}-{i}" for i in range(1, count + 1)]
        worker = WorkerProcess(name, names, process, log_path, log_file)
        self.workers.append(worker)
        if wait:
            self.wait_registered(worker, timeout=timeout)
        return worker

    def start_workers(self, count: int, **options: Any) -> list[WorkerProcess]:
        """Start `count` separate worker processes, then wait for all of them."""
        wait = options.pop("wait", True)
        started = [self.start_worker(wait=False, **options) for _ in range(count)]
        if wait:
            for worker in started:
                self.wait_registered(worker)
        return started

    def wait_registered(self, worker: WorkerProcess, timeout: float = 20.0) -> None:
        def registered() -> bool:
            if not worker.alive():
                raise AssertionError(
                    f"worker {worker.name} exited with {worker.returncode} while starting:\n"
                    f"{worker.log()}"
                )
            return set(worker.worker_names) <= set(self.sched.get_workers())

        wait_for(registered, timeout, interval=0.05, what=f"worker {worker.name} to register")

    def run_cli(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run `taskmill ARGS...` to completion in a worker's environment."""
        return subprocess.run(
            [sys.executable, "-m", "taskmill", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=self.env(env),
            cwd=self.workdir,
            timeout=timeout,
            check=False,
        )

    def unexpected_exits(self) -> list[str]:
        return [
            f"worker {w.name} exited unexpectedly with code {w.returncode}"
            for w in self.workers
            if not w.exit_expected and not w.alive()
        ]

    def close(self) -> None:
        """Stop every worker, then fail if one died or stopped badly on its own."""
        problems = self.unexpected_exits()
        deadline = time.monotonic() + self.stop_timeout
        stopped_by_us = [w for w in self.workers if w.alive()]
        for worker in stopped_by_us:
            # once only: a second signal means "stop at once" to a worker
            worker.exit_expected = True
            worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            worker.reap(deadline)
            if worker in stopped_by_us and worker.returncode != 0:
                problems.append(
                    f"worker {worker.name} exited with {worker.returncode} on SIGTERM at teardown"
                )
        self.sched.store.dispose()  # also closes the SQLite store's wake-up socket
        if problems:
            raise AssertionError("; ".join(problems))

    def logs(self) -> str:
        parts = [
            f"===== {w.log_path.name} (exit {w.returncode}) =====\n{w.log()}" for w in self.workers
        ]
        return "\n".join(parts) or "(no worker was started)"

    # ------------------------------------------------------------- database
    def wait_for(self, predicate: Callable[[], T | None], timeout: float = 10.0, **kw: Any) -> T:
        """wait_for, failing at once (with the reason) if a worker died meanwhile."""

        def checked() -> T | None:
            problems = self.unexpected_exits()
            if problems:
                raise AssertionError("; ".join(problems))
            return predicate()

        checked.__name__ = getattr(predicate, "__name__", "condition")
        return wait_for(checked, timeout, **kw)

    def task(self, task_id: int) -> Task:
        found = self.sched.task_status(task_id)
        assert isinstance(found, Task), f"no task {task_id}"
        return found

    def runs(self, task_id: int) -> list[Run]:
        return self.sched.runs(task_id)

    def wait_status(self, task_id: int, *statuses: TaskStatus, timeout: float = 10.0) -> Task:
        """The task, once its status is one of `statuses`."""
        wanted = {s.value for s in statuses}
        last: list[Task] = []

        def reached() -> Task | None:
            task = self.task(task_id)
            last[:] = [task]
            return task if task.status in wanted else None

        try:
            return self.wait_for(reached, timeout, what=f"task {task_id} to be {sorted(wanted)}")
        except WaitTimeout as exc:
            seen = last[0].status if last else None
            raise WaitTimeout(f"{exc} (status was {seen})") from None

    def wait_running(self, task_id: int, timeout: float = 10.0) -> tuple[Task, Run]:
        """The task and its RUNNING run row, once a worker has started it."""

        def running() -> tuple[Task, Run] | None:
            task = self.task(task_id)
            runs = self.runs(task_id)
            if (
                task.status == TaskStatus.RUNNING.value
                and runs
                and runs[-1].status == RunStatus.RUNNING.value
            ):
                return task, runs[-1]
            return None

        return self.wait_for(running, timeout, what=f"task {task_id} to be RUNNING")

    def insert_raw_task(self, **values: Any) -> int:
        """Write a scheduler_task row directly, as a web2py app (or a bad actor) would.

        No validation and no wake-up call: workers find it at their next poll. Times
        are naive UTC, as web2py stores them for a Scheduler with utc_time=True.
        """
        now = datetime.now(UTC).replace(tzinfo=None)
        row: dict[str, Any] = {
            "application_name": "raw",
            "task_name": values.get("function_name", "raw"),
            "group_name": "main",
            "status": TaskStatus.QUEUED.value,
            "function_name": "add",
            "uuid": str(uuidlib.uuid4()),
            "args": "[]",
            "vars": "{}",
            "enabled": True,
            "start_time": now,
            "next_run_time": now,
            "repeats": 1,
            "retry_failed": 0,
            "period": 60,
            "timeout": 60,
            "times_run": 0,
            "times_failed": 0,
            "assigned_worker_name": "",
        }
        row.update(values)
        table = self.sched.tables.scheduler_task
        with self.sched.store.engine.begin() as conn:
            result = conn.execute(sa.insert(table).values(**row))
            key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


# ------------------------------------------------------------- pytest glue

CLUSTER_KEY = pytest.StashKey["Cluster"]()
_PLUGIN_NAME = "taskmill-worker-logs"


class _WorkerLogsOnFailure:
    """Attaches the workers' logs to the report of a failed test phase."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        cluster = item.stash.get(CLUSTER_KEY, None)
        if cluster is not None and report.failed:
            report.sections.append((f"worker logs ({report.when})", cluster.logs()))
        return report


@contextlib.contextmanager
def cluster_for_test(
    request: pytest.FixtureRequest, db_url: str, **options: Any
) -> Iterator[Cluster]:
    """A Cluster for the requesting test, in its tmp_path, logs attached on failure."""
    manager = request.config.pluginmanager
    if manager.get_plugin(_PLUGIN_NAME) is None:
        manager.register(_WorkerLogsOnFailure(), _PLUGIN_NAME)
    workdir: Path = request.getfixturevalue("tmp_path")
    with Cluster(db_url, workdir, **options) as cluster:
        request.node.stash[CLUSTER_KEY] = cluster
        yield cluster
