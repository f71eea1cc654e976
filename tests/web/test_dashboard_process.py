"""`taskmill dashboard` as a process: an open output stream must not hold up a shutdown."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")

from taskmill import Scheduler

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "tests" / "browser"
TOKEN = "process-test-token-0123456789"
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sigterm_ends_the_dashboard_with_a_stream_open(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'tasks.db'}"
    sched = Scheduler(db_url, tasks={"add": lambda a, b: a + b})
    sched.create_tables()
    later = sched.store.now() + timedelta(hours=1)
    task_id = sched.queue_task("add", [1, 2], start_time=later).id
    sched.store.dispose()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKMILL_")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(APP_DIR), str(ROOT / "src")]),
            "TASKMILL_BROWSER_DB": db_url,
            "TASKMILL_DASHBOARD_TOKEN": TOKEN,
        }
    )
    log = (tmp_path / "dashboard.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            *("-m", "taskmill", "dashboard"),
            *("--app", "dashboard_browser_app:sched", "--port", str(port)),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=1):
                    break
            assert time.monotonic() < deadline, "the dashboard did not start"
            assert proc.poll() is None, (tmp_path / "dashboard.log").read_text()
            time.sleep(0.1)
        conn.request(
            "GET", f"/api/tasks/{task_id}/output", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("content-type", "").startswith("text/event-stream")
        assert response.readline().startswith(b"retry: ")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        # uvicorn gives open streams 3 s; without that it waits for the stream's
        # five-minute limit
        assert time.monotonic() - started < 20
    finally:
        conn.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
