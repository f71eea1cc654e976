"""Task children forked by the worker's fork server (forkserver.py), real processes.

The fork server is the test process's own child here, as it is a worker's: the
children it forks run tasks, are killed and reaped like plain ones, never inherit
the application, and a fork server that dies leaves its running children alone
and the next child is started the plain way.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from taskmill.executor import ChildProcess
from taskmill.forkserver import ForkServer, alive
from taskmill.records import Task

APPS = Path(__file__).resolve().parents[1] / "apps"
APP = "pool_app:sched"


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pool_app's database (a SQLite file) and its module on the path of the
    processes started here."""
    db = tmp_path / "app.db"
    monkeypatch.setenv("TASKMILL_TEST_DB", f"sqlite:///{db}")
    paths = [str(APPS), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    monkeypatch.chdir(tmp_path)
    return db


@pytest.fixture
def server(app_env: Path) -> Iterator[ForkServer]:
    server = ForkServer("sqlite")
    server.start()
    yield server
    server.close()


def task(task_id: int, function: str, args: str = "[]") -> Task:
    return Task(
        **{
            **{name: None for name in Task.__dataclass_fields__},
            "id": task_id,
            "uuid": f"uuid-{task_id}",
            "task_name": function,
            "function_name": function,
            "args": args,
            "vars": "{}",
            "timeout": 60,
        }
    )


def run(child: ChildProcess, job: Task) -> dict[str, object]:
    child.send_task(job)
    while True:
        message = child.receive()
        assert message is not None, "the child died"
        if message["type"] == "done":
            return message


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def name_of(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def test_a_forked_child_runs_tasks_and_is_killed_and_reaped_like_a_plain_one(
    server: ForkServer,
) -> None:
    child = ChildProcess(APP, forkserver=server)
    child.start()
    try:
        assert child.pid is not None and server.process is not None
        assert parent_of(child.pid) == server.process.pid
        assert name_of(child.pid) == "taskmill-child"
        assert name_of(server.process.pid) == "taskmill-fork"
        assert "span" in child.tasks
        done = run(child, task(7, "worker_pid"))
        assert (done["status"], done["result"]) == ("COMPLETED", str(child.pid))
        # its own session and process group, so a kill ends what its task started
        assert os.getpgid(child.pid) == child.pid
        pid = child.pid
        child.kill()
        assert not alive(pid)
        assert child.process is not None and child.process.returncode == -signal.SIGKILL
        # the next one is forked too, and as quick to start
        child.start()
        assert child.pid != pid and parent_of(child.pid) == server.process.pid
        assert run(child, task(8, "worker_pid"))["status"] == "COMPLETED"
    finally:
        child.stop()


def test_a_child_that_exits_reports_its_exit_code_through_the_fork_server(
    server: ForkServer,
) -> None:
    child = ChildProcess(APP, forkserver=server)
    child.start()
    child.send({"type": "exit"})
    try:
        assert child.reap() == 0
        assert child.process is not None and child.process.poll() == 0
    finally:
        child.kill()  # closes its socket


def test_the_fork_server_never_imports_the_application(server: ForkServer, app_env: Path) -> None:
    """Only the children import it, each after its fork: an application that opens a
    database connection (here: its SQLite file) at import shares nothing."""
    children = [ChildProcess(APP, forkserver=server) for _ in range(2)]
    for child in children:
        child.start()
    try:
        assert server.process is not None
        # the fork server holds no descriptor of the application's database
        opened = {
            os.path.realpath(f"/proc/{server.process.pid}/fd/{fd}")
            for fd in os.listdir(f"/proc/{server.process.pid}/fd")
        }
        assert not any(path.startswith(str(app_env)) for path in opened), opened
        # and each child imported the app itself: a module object of its own
        pids = {run(child, task(i, "worker_pid"))["result"] for i, child in enumerate(children)}
        assert pids == {str(child.pid) for child in children}
    finally:
        for child in children:
            child.stop()


def test_children_outlive_a_fork_server_that_died_and_the_next_starts_plainly(
    server: ForkServer,
) -> None:
    forked = ChildProcess(APP, forkserver=server)
    forked.start()
    assert server.process is not None and forked.pid is not None
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()
    time.sleep(1.2)  # two turns of the child's watch (child.die_with_worker)
    assert alive(forked.pid), "a forked child died with its fork server"
    assert run(forked, task(1, "worker_pid"))["status"] == "COMPLETED"
    plain = ChildProcess(APP, forkserver=server)
    plain.start()
    try:
        assert plain.pid is not None and parent_of(plain.pid) == os.getpid()
        assert run(plain, task(2, "worker_pid"))["status"] == "COMPLETED"
        # without its fork server, an exit code is known only as "gone"
        pid = forked.pid
        forked.kill()
        assert not alive(pid)
    finally:
        plain.stop()
        forked.stop()


def test_forked_children_die_with_their_worker(app_env: Path, tmp_path: Path) -> None:
    """A worker killed with SIGKILL takes its fork server and the children with it
    (no task runs on unsupervised while the ticker requeues it)."""
    script = tmp_path / "worker.py"
    script.write_text(
        "import os, sys, time\n"
        "from taskmill.executor import ChildProcess\n"
        "from taskmill.forkserver import ForkServer\n"
        "server = ForkServer('sqlite'); server.start()\n"
        f"child = ChildProcess({APP!r}, forkserver=server); child.start()\n"
        "print(server.process.pid, child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    worker = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        server_pid, child_pid = map(int, worker.stdout.readline().split())
        assert alive(server_pid) and alive(child_pid)
        worker.kill()
        worker.wait()
        deadline = time.monotonic() + 10
        while (alive(server_pid) or alive(child_pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(server_pid) and not alive(child_pid)
    finally:
        worker.kill()
        worker.wait()
        if worker.stdout is not None:
            worker.stdout.close()


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError):
                if parent_of(int(entry)) == pid:
                    found.append(int(entry))
    return found


def test_taskmill_worker_forks_its_fork_server_before_it_imports_the_app(app_env: Path) -> None:
    """`taskmill worker` forks the fork server from itself ahead of loading --app
    (no interpreter start of its own): the fork server is the worker's child, holds
    no descriptor of the application's database, and forks the task children; a
    threads pool, which forks none, lets it go."""
    setup = (
        "import pool_app; pool_app.sched.create_tables(); "
        "print(pool_app.sched.queue_task('worker_pid', []).id)"
    )
    task_id = int(subprocess.check_output([sys.executable, "-c", setup], text=True))
    command = [sys.executable, "-m", "taskmill", "worker", "--app", APP, "--name", "pf"]
    worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: run_result(app_env, task_id), "the task to complete")
        result = run_result(app_env, task_id)
        assert result is not None
        (server_pid,) = [p for p in children_of(worker.pid) if name_of(p) == "taskmill-fork"]
        # a fork of the worker (a started one runs `python -m taskmill.forkserver`)
        assert cmdline(server_pid) == cmdline(worker.pid)
        child_pid = int(json.loads(result))
        assert parent_of(child_pid) == server_pid
        opened = {
            os.path.realpath(f"/proc/{server_pid}/fd/{fd}")
            for fd in os.listdir(f"/proc/{server_pid}/fd")
        }
        assert not any(path.startswith(str(app_env)) for path in opened), opened
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        wait_until(lambda: not alive(server_pid) and not alive(child_pid), "both to exit")
    finally:
        worker.kill()
        worker.wait()
    threads_command = [*command[:-2], "--name", "pt", "--pool", "threads", "-c", "2"]
    threads = subprocess.Popen(
        threads_command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        # it joins the database after its executors started (and let the fork server go)
        wait_until(lambda: registered(app_env, "pt"), "the threads worker to register")
        assert [p for p in children_of(threads.pid) if name_of(p) == "taskmill-fork"] == []
    finally:
        threads.send_signal(signal.SIGTERM)
        assert threads.wait(30) == 0


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def run_result(db: Path, task_id: int) -> str | None:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        row = conn.execute(
            "SELECT run_result FROM scheduler_run WHERE task_id = ? AND status = 'COMPLETED'",
            (task_id,),
        ).fetchone()
    return None if row is None else str(row[0])


def registered(db: Path, name: str) -> bool:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM scheduler_worker WHERE worker_name = ?", (name,)
        ).fetchone()
    return bool(row[0])


def wait_until(predicate: Callable[[], object], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
