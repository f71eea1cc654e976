"""Task children forked by the worker's fork server (forkserver.py), real processes.

The fork server is the test process's own child here, as it is a worker's: the
children it forks run tasks, are killed and reaped like plain ones, never inherit
the application, and a fork server that dies leaves its running children alone
and the next child is started the plain way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
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
