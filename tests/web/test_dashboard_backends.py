"""The dashboard's queries (AdminQueries, the audit log) and its API on SQLite,
PostgreSQL and MariaDB: each test runs once per backend, on a fresh database."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from dashboard_helpers import finish_run, parse_events, start_run
from sqlalchemy import update
from starlette.testclient import TestClient

from taskmill import JobGraph, Scheduler, TaskStatus
from taskmill.schema import scheduler_task
from taskmill.states import RunStatus
from taskmill.store.admin import AdminQueries, TaskFilter
from taskmill.store.audit import AuditLog
from taskmill.web import create_app
from taskmill.web.auth import AuthConfig, Role

TOKEN = "backend-admin-token-0123456789"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
T = scheduler_task


def add(a: int, b: int) -> int:
    return a + b


def noop() -> None:
    return None


@pytest.fixture
def sched(db_url: str) -> Iterator[Scheduler]:
    scheduler = Scheduler(db_url, tasks={"add": add, "noop": noop})
    scheduler.create_tables()
    yield scheduler
    scheduler.store.dispose()


@pytest.fixture
def admin(sched: Scheduler) -> AdminQueries:
    return AdminQueries(sched.store)


@pytest.fixture
def client(sched: Scheduler) -> Iterator[TestClient]:
    app = create_app(sched, auth=AuthConfig(tokens={TOKEN: Role.ADMIN}, secret_key="s"))
    app.state.dashboard.data.counts_ttl = 0
    app.state.dashboard.stream_options = {"poll_seconds": 0.05, "max_seconds": 30}
    with TestClient(app, follow_redirects=False) as c:
        yield c


def queue(sched: Scheduler, function: str = "add", *args: Any, **kwargs: Any) -> int:
    queued = sched.queue_task(function, list(args), **kwargs)
    assert queued.id is not None, queued.errors
    return queued.id


def status(sched: Scheduler, task_id: int) -> str | None:
    task = sched.store.get_task(task_id)
    return None if task is None else task.status


# ---------------------------------------------------------------- reads


def test_task_list_filters_and_keyset_pages(sched: Scheduler, admin: AdminQueries) -> None:
    a = queue(sched, "add", 1, 2, task_name="100% nightly_report", group_name="reports")
    b = queue(sched, "add", 3, 4, task_name="Nightly")
    c = queue(sched, "noop", task_name="other")
    sched.stop_task(c)

    def ids(task_filter: TaskFilter, **page: Any) -> list[int]:
        return [t.id for t in admin.list_tasks(task_filter, **page).tasks]

    assert ids(TaskFilter()) == [c, b, a]
    assert ids(TaskFilter(status="STOPPED")) == [c]
    assert ids(TaskFilter(group_name="reports")) == [a]
    assert ids(TaskFilter(function_name="noop")) == [c]
    # LIKE wildcards are matched literally, and the match is case-sensitive everywhere
    assert ids(TaskFilter(text="100%")) == [a]
    assert ids(TaskFilter(text="y_r")) == [a]
    assert ids(TaskFilter(text="0%_")) == []
    assert ids(TaskFilter(text="NIGHTLY")) == [b, a]
    assert ids(TaskFilter(text="[3, 4]")) == [b]
    uuid = sched.store.get_task(b).uuid  # type: ignore[union-attr]
    assert ids(TaskFilter(text=uuid)) == [b]
    assert ids(TaskFilter(text=str(c))) == [c]
    first = admin.list_tasks(TaskFilter(), limit=2)
    assert [t.id for t in first.tasks] == [c, b] and first.older_than == b
    second = admin.list_tasks(TaskFilter(), before=first.older_than, limit=2)
    assert [t.id for t in second.tasks] == [a] and second.older_than is None
    back = admin.list_tasks(TaskFilter(), after=a, limit=2)
    assert [t.id for t in back.tasks] == [c, b]
    assert admin.group_names() == ["main", "reports"]


def test_counts_due_summary_and_finished_runs(sched: Scheduler, admin: AdminQueries) -> None:
    now = sched.store.now()
    waiting = queue(sched, "add", 1, 1, start_time=now - timedelta(seconds=30))
    queue(sched, "add", 1, 2, group_name="reports")
    queue(sched, "add", 1, 3, start_time=now + timedelta(hours=1))
    done = queue(sched, "add", 2, 2)
    finish_run(sched, done, start_run(sched, done), result=4)
    silent = queue(sched, "noop")
    finish_run(sched, silent, start_run(sched, silent))  # returns None: no run row kept
    failed = queue(sched, "add", 0, 0)
    finish_run(sched, failed, start_run(sched, failed), status=RunStatus.FAILED)

    assert sorted(admin.counts_by_status_and_group()) == [
        ("COMPLETED", "main", 2),
        ("FAILED", "main", 1),
        ("QUEUED", "main", 2),
        ("QUEUED", "reports", 1),
    ]
    due = admin.due_summary()
    assert due.depth == 2
    assert due.oldest_due is not None
    assert 25 <= (sched.store.now() - due.oldest_due).total_seconds() < 120
    assert sched.store.get_task(waiting).next_run_time == due.oldest_due  # type: ignore[union-attr]
    assert admin.run_counts_by_status() == {"COMPLETED": 1, "FAILED": 1}
    since = now - timedelta(minutes=1)
    finished = admin.runs_finished_since(since)
    assert sorted((r.task_id, r.status) for r in finished) == [
        (done, "COMPLETED"),
        (failed, "FAILED"),
    ]
    assert admin.runs_finished_since(sched.store.now() + timedelta(minutes=1)) == []
    [silent_start] = admin.completions_without_run_since(since)
    assert silent_start == sched.store.get_task(silent).last_run_time  # type: ignore[union-attr]


def test_pickup_latency_of_the_runs_whose_due_time_is_known(
    sched: Scheduler, admin: AdminQueries
) -> None:
    now = sched.store.now()
    late = queue(sched, "add", 1, 1, start_time=now - timedelta(seconds=20))
    finish_run(sched, late, start_run(sched, late), result=2)
    silent = queue(sched, "noop", start_time=now - timedelta(seconds=40))
    finish_run(sched, silent, start_run(sched, silent))
    repeating = queue(sched, "add", 1, 2, repeats=0, start_time=now - timedelta(seconds=60))
    start_run(sched, repeating)
    retried = queue(sched, "add", 0, 0, retry_failed=1, start_time=now - timedelta(seconds=80))
    finish_run(sched, retried, start_run(sched, retried), status=RunStatus.FAILED)
    with sched.store.transaction() as conn:  # its retry falls due much later
        conn.execute(update(T).where(T.c.id == retried).values(next_run_time=sched.store._db(now)))
    finish_run(sched, retried, start_run(sched, retried), result=0)

    latencies = sorted(admin.pickup_latencies_since(now - timedelta(minutes=1)))
    # one each: the late one-shot task, the silent one (no run row), the repeating one
    # in progress, and the retried task's first run only
    assert len(latencies) == 4, latencies
    for measured, expected in zip(latencies, (20, 40, 60, 80), strict=True):
        assert expected <= measured < expected + 30


def test_dependency_graph_both_ways(sched: Scheduler, admin: AdminQueries) -> None:
    first, middle, last, side = (queue(sched, "add", i, i) for i in range(4))
    graph = JobGraph(sched, "job")
    graph.add_deps(middle, first)  # middle waits for first
    graph.add_deps(last, middle)  # last waits for middle
    graph.add_deps(side, first)
    finish_run(sched, first, start_run(sched, first), result=0)

    around = admin.dependency_graph(middle, depth=1)
    assert [n.id for n in around.nodes] == [first, middle, last]
    assert {(e.parent, e.child, e.done) for e in around.edges} == {
        (middle, first, True),
        (last, middle, False),
    }
    assert {n.id: n.status for n in around.nodes}[first] == "COMPLETED"
    wider = admin.dependency_graph(middle, depth=2)
    assert [n.id for n in wider.nodes] == [first, middle, last, side]
    assert not wider.truncated
    cut = admin.dependency_graph(middle, depth=2, max_nodes=3)
    assert len(cut.nodes) == 3 and cut.truncated
    assert admin.dependency_graph(queue(sched, "noop")).nodes == []


def test_run_now_moves_queued_and_requeues_finished(sched: Scheduler, admin: AdminQueries) -> None:
    now = sched.store.now()
    later = queue(sched, "add", 1, 1, start_time=now + timedelta(hours=2))
    disabled = queue(sched, "add", 1, 2, start_time=now + timedelta(hours=2), enabled=False)
    completed = queue(sched, "add", 1, 3)
    finish_run(sched, completed, start_run(sched, completed), result=4)
    expired = queue(sched, "add", 1, 4, stop_time=now + timedelta(seconds=1))
    with sched.store.transaction() as conn:
        conn.execute(
            update(T)
            .where(T.c.id == expired)
            .values(status="EXPIRED", stop_time=sched.store._db(now - timedelta(seconds=5)))
        )
    running = queue(sched, "add", 1, 5)
    start_run(sched, running)

    ids = [later, disabled, completed, expired, running]
    changed = admin.run_now(T.c.id.in_(ids))
    assert (changed.moved, changed.requeued) == (1, 2)
    after = {i: sched.store.get_task(i) for i in ids}
    assert all(t is not None for t in after.values())
    for task_id in (later, completed, expired):
        task = after[task_id]
        assert task is not None and task.status == TaskStatus.QUEUED
        assert task.next_run_time is not None
        assert abs((task.next_run_time - sched.store.now()).total_seconds()) < 30
    assert after[completed].times_run == 1  # type: ignore[union-attr]
    assert after[expired].stop_time is None  # type: ignore[union-attr]
    assert after[disabled].next_run_time > now + timedelta(hours=1)  # type: ignore[union-attr,operator]
    assert after[running].status == TaskStatus.RUNNING  # type: ignore[union-attr]
    # already due: nothing to move
    assert admin.run_now(T.c.id == later).count == 0


def test_delete_enable_and_audit(sched: Scheduler, admin: AdminQueries) -> None:
    parent, child = queue(sched, "add", 1, 1), queue(sched, "add", 2, 2)
    JobGraph(sched, "j").add_deps(parent, child)
    finish_run(sched, child, start_run(sched, child), status=RunStatus.FAILED)
    assert admin.set_enabled(T.c.id == parent, False) == 1
    assert sched.store.get_task(parent).enabled is False  # type: ignore[union-attr]
    assert admin.delete_tasks(T.c.id == child) == 1
    assert sched.store.runs_of(child) == []
    assert admin.dependency_graph(parent).nodes == []
    audit = AuditLog(sched.store.engine)
    audit.create_table()
    first = audit.record("admin", "stop", "task 1", json.dumps({"changed": 1}))
    second = audit.record("x" * 300, "delete", "task 2")
    entries = audit.recent(10)
    assert [e.id for e in entries] == [second, first]
    assert len(entries[0].actor) == 255
    assert [e.id for e in audit.recent(10, before=second)] == [first]


# ------------------------------------------------------------ the app


def test_pages_api_and_metrics(sched: Scheduler, client: TestClient) -> None:
    parent = queue(sched, "add", 1, 2, task_name="<b>parent</b>")
    child = queue(sched, "add", 3, 4)
    JobGraph(sched, "job").add_deps(parent, child)
    finish_run(sched, child, start_run(sched, child), result=7)
    overview = client.get("/api/overview", headers=HEADERS).json()
    assert overview["statuses"]["COMPLETED"] == 1
    assert sum(b["completed"] for b in overview["throughput"]) == 1
    page = client.get("/api/tasks?status=QUEUED", headers=HEADERS).json()
    assert [t["id"] for t in page["tasks"]] == [parent]
    detail = client.get(f"/api/tasks/{parent}", headers=HEADERS).json()
    assert detail["dependencies"]["edges"] == [
        {"parent": parent, "child": child, "job_name": "job", "done": True}
    ]
    metrics = client.get("/metrics", headers=HEADERS).text
    assert 'taskmill_runs_finished_last_hour{status="COMPLETED"} 1' in metrics
    assert "taskmill_pickup_latency_seconds_count 1" in metrics
    cloned = client.post(f"/api/tasks/{child}/clone", headers=HEADERS)
    assert cloned.status_code == 201, cloned.text
    clone = sched.store.get_task(cloned.json()["task_id"])
    assert clone is not None and clone.status == TaskStatus.QUEUED and clone.args == "[3, 4]"
    again = client.post(f"/api/tasks/{child}/run-now", headers=HEADERS)
    assert again.status_code == 200, again.text
    assert status(sched, child) == TaskStatus.QUEUED
    bulk = client.post(
        "/api/tasks/bulk", headers=HEADERS, json={"action": "stop", "ids": [parent, child]}
    )
    assert bulk.json()["done"] == {str(parent): parent, str(child): child}
    actions = [e["action"] for e in client.get("/api/audit", headers=HEADERS).json()["entries"]]
    assert actions == ["bulk-stop", "run-now", "clone"]


def test_output_stream_follows_a_run_to_its_end(sched: Scheduler, client: TestClient) -> None:
    task_id = queue(sched, "add", 1, 1, sync_output=1)
    run_id = start_run(sched, task_id)

    def worker() -> None:
        for text in ("one\n", "one\ntwo\n", "<script>x</script>\n"):
            time.sleep(0.5)
            sched.store.save_output(run_id, text)
        time.sleep(0.5)
        finish_run(sched, task_id, run_id, output="<script>x</script>\ndone\n", result=2)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        response = client.get(f"/api/tasks/{task_id}/output", headers=HEADERS)
    finally:
        thread.join()
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_events(response.text)
    assert events[0] == ("run", {"run_id": run_id, "worker_name": "test-host#1"})
    shown = ""
    for name, data in events[1:-1]:
        assert name == "output"
        shown = data["replace"] if "replace" in data else shown + data["append"]
    assert shown == "<script>x</script>\ndone\n"
    assert ("output", {"run_id": run_id, "append": "two\n"}) in events
    assert ("output", {"run_id": run_id, "replace": "<script>x</script>\n"}) in events
    assert events[-1] == (
        "end",
        {"run_id": run_id, "status": "COMPLETED", "task_status": "COMPLETED"},
    )


def test_ids_beyond_the_integer_columns_are_not_found(sched: Scheduler, client: TestClient) -> None:
    huge = 2**70
    task_id = queue(sched, "add", 1, 1)
    for path in (f"/api/tasks/{huge}", f"/api/tasks/{huge}/output"):
        assert client.get(path, headers=HEADERS).status_code == 404, path
    for query in (f"q={huge}", f"before={huge}", f"after={huge}", f"limit={huge}"):
        page = client.get(f"/api/tasks?{query}", headers=HEADERS)
        assert page.status_code == 200, query
    assert client.get(f"/api/tasks?q={huge}", headers=HEADERS).json()["tasks"] == []
    response = client.get(f"/api/tasks/{task_id}/output?run_id={huge}", headers=HEADERS)
    assert response.status_code == 404
    for action in ("clone", "run-now", "stop"):
        response = client.post(f"/api/tasks/{huge}/{action}", headers=HEADERS)
        assert response.status_code == 404, action
    response = client.post(
        "/api/tasks/bulk", headers=HEADERS, json={"action": "stop", "ids": [huge, task_id]}
    )
    assert response.status_code == 200
    assert response.json()["refused"] == {str(huge): f"no task {huge}"}
    assert status(sched, task_id) == TaskStatus.STOPPED


def test_bulk_requeue_of_failed_tasks_and_worker_commands(
    sched: Scheduler, client: TestClient
) -> None:
    failed = [queue(sched, "add", i, i, group_name="reports") for i in range(2)]
    for task_id in failed:
        finish_run(sched, task_id, start_run(sched, task_id), status=RunStatus.FAILED)
    other = queue(sched, "noop")
    finish_run(sched, other, start_run(sched, other), status=RunStatus.FAILED)
    response = client.post("/api/tasks/requeue-failed", headers=HEADERS, json={"group": "reports"})
    assert response.json()["count"] == 2
    assert [status(sched, i) for i in failed] == [TaskStatus.QUEUED] * 2
    assert status(sched, other) == TaskStatus.FAILED
    sched.store.register_worker("host#1", ["main"], {"current_task": other}, 9)
    response = client.post("/api/workers/disable", headers=HEADERS, json={"worker_name": "host#1"})
    assert response.status_code == 200
    [worker] = client.get("/api/workers", headers=HEADERS).json()["workers"]
    assert (worker["status"], worker["alive"], worker["current_task"]) == ("DISABLED", True, other)
    detail = client.get(f"/api/tasks/{failed[0]}", headers=HEADERS).json()
    assert "no live worker serves group 'reports'" in detail["why_not_running"]
