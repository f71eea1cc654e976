"""Clone, run now, bulk actions, the dependency graph, the output stream and the
new metrics, through Starlette's TestClient on SQLite (test_dashboard_backends.py
runs the queries behind them on PostgreSQL and MariaDB too)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

import sqlalchemy as sa
from dashboard_helpers import finish_run, parse_events, start_run
from starlette.testclient import TestClient

from taskmill import JobGraph, Scheduler, TaskStatus
from taskmill.records import Task
from taskmill.states import RunStatus
from taskmill.store.audit import taskmill_audit
from taskmill.validation import QUEUE_KEYWORDS
from taskmill.web import create_app
from taskmill.web.actions import CLONED_FIELDS, NOT_CLONED
from taskmill.web.auth import Account, AuthConfig, Role, hash_password

PASSWORD = "admin password here"
PASSWORD_HASH = hash_password(PASSWORD)
ADMIN = {"Authorization": "Bearer admin-token-0123456789abcdef"}
VIEWER = {"Authorization": "Bearer viewer-token-0123456789abcdef"}
SCRIPT = "<script>alert('pwned')</script>"


def add(a: int, b: int) -> int:
    return a + b


def gone() -> None:
    return None


@pytest.fixture
def sched(sqlite_url: str) -> Iterator[Scheduler]:
    scheduler = Scheduler(sqlite_url, tasks={"add": add, "gone": gone})
    scheduler.create_tables()
    yield scheduler
    scheduler.store.dispose()


def make_app(sched: Scheduler, **kwargs: Any) -> Any:
    auth = AuthConfig(
        accounts={"admin": Account(PASSWORD_HASH, Role.ADMIN)},
        tokens={
            ADMIN["Authorization"].split()[1]: Role.ADMIN,
            VIEWER["Authorization"].split()[1]: Role.READ_ONLY,
        },
        secret_key="test-secret",
    )
    app = create_app(sched, auth=auth, **kwargs)
    app.state.dashboard.data.counts_ttl = 0
    app.state.dashboard.stream_options = {"poll_seconds": 0.05, "max_seconds": 1.0}
    return app


@pytest.fixture
def client(sched: Scheduler) -> Iterator[TestClient]:
    with TestClient(make_app(sched), follow_redirects=False) as c:
        yield c


@pytest.fixture
def browser(client: TestClient) -> tuple[TestClient, str]:
    """A logged-in admin session and its CSRF token."""
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login", data={"username": "admin", "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 303
    return client, csrf_of(client.get("/").text)


def csrf_of(html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert match
    return match.group(1)


def queue(sched: Scheduler, function: str = "add", *args: Any, **kwargs: Any) -> int:
    queued = sched.queue_task(function, list(args), **kwargs)
    assert queued.id is not None, queued.errors
    return queued.id


def task(sched: Scheduler, task_id: int) -> Any:
    found = sched.store.get_task(task_id)
    assert found is not None, f"task {task_id} is gone"
    return found


def audit_actions(sched: Scheduler) -> list[tuple[str, str, str | None]]:
    with sched.store.engine.connect() as conn:
        rows = conn.execute(sa.select(taskmill_audit).order_by(taskmill_audit.c.id))
        return [(row.action, row.target, row.detail) for row in rows]


def completed(sched: Scheduler, *args: int, **kwargs: Any) -> int:
    task_id = queue(sched, "add", *args, **kwargs)
    finish_run(sched, task_id, start_run(sched, task_id), result=sum(args))
    return task_id


# ------------------------------------------------------------------ clone


def test_clone_copies_function_arguments_and_schedule(
    browser: tuple[TestClient, str], sched: Scheduler
) -> None:
    client, token = browser
    now = sched.store.now()
    original = queue(
        sched,
        "add",
        2,
        3,
        task_name="nightly",
        group_name="reports",
        repeats=3,
        period=120,
        timeout=30,
        retry_failed=2,
        retry_backoff=5,
        sync_output=2,
        priority=7,
        prevent_drift=True,
        start_time=now + timedelta(hours=1),
        stop_time=now + timedelta(days=1),
    )
    response = client.post(f"/tasks/{original}/clone", data={"csrf_token": token})
    assert response.status_code == 303
    clone_id = int(response.headers["location"].rsplit("/", 1)[1])
    assert clone_id != original
    source, clone = task(sched, original), task(sched, clone_id)
    for field in (
        "function_name",
        "task_name",
        "group_name",
        "args",
        "vars",
        "repeats",
        "period",
        "timeout",
        "retry_failed",
        "retry_backoff",
        "sync_output",
        "priority",
        "prevent_drift",
        "start_time",
        "stop_time",
        "next_run_time",
    ):
        assert getattr(clone, field) == getattr(source, field), field
    assert clone.uuid != source.uuid and clone.status == TaskStatus.QUEUED
    assert (clone.times_run, clone.times_failed) == (0, 0)
    action, target, detail = audit_actions(sched)[-1]
    assert (action, target) == ("clone", f"task {original}")
    assert json.loads(detail or "")["clone"] == clone_id
    assert f"task {original} cloned as task {clone_id}" in client.get(f"/tasks/{clone_id}").text


def test_every_cloned_field_is_a_task_field() -> None:
    """CLONED_FIELDS is derived from queue_task's keywords: one that is not a column
    (as `immediate` is not) must be named in NOT_CLONED, or every clone would fail."""
    assert set(CLONED_FIELDS) <= {f.name for f in dataclasses.fields(Task)}
    assert NOT_CLONED <= QUEUE_KEYWORDS


def test_clone_of_a_finished_task_is_due_now_and_drops_a_passed_stop_time(
    client: TestClient, sched: Scheduler
) -> None:
    original = completed(sched, 1, 1, stop_time=sched.store.now() + timedelta(seconds=2))
    with sched.store.transaction() as conn:
        past = sched.store._db(sched.store.now() - timedelta(hours=1))
        conn.execute(
            sa.update(sched.tables.scheduler_task)
            .where(sched.tables.scheduler_task.c.id == original)
            .values(start_time=past, stop_time=past)
        )
    response = client.post(f"/api/tasks/{original}/clone", headers=ADMIN)
    assert response.status_code == 201
    clone = task(sched, response.json()["task_id"])
    assert clone.stop_time is None
    assert abs((clone.next_run_time - sched.store.now()).total_seconds()) < 30
    assert task(sched, original).status == TaskStatus.COMPLETED


# ---------------------------------------------------------------- run now


def test_run_now_makes_a_queued_task_due(browser: tuple[TestClient, str], sched: Scheduler) -> None:
    client, token = browser
    later = queue(sched, "add", 1, 1, start_time=sched.store.now() + timedelta(hours=3))
    response = client.post(f"/tasks/{later}/run-now", data={"csrf_token": token})
    assert response.headers["location"].endswith(f"/tasks/{later}")
    moved = task(sched, later)
    assert moved.status == TaskStatus.QUEUED
    assert abs((moved.next_run_time - sched.store.now()).total_seconds()) < 30
    assert audit_actions(sched)[-1][:2] == ("run-now", f"task {later}")
    assert f"task {later}: due now" in client.get(f"/tasks/{later}").text


def test_run_now_requeues_a_finished_task(client: TestClient, sched: Scheduler) -> None:
    done = completed(sched, 4, 5)
    response = client.post(f"/api/tasks/{done}/run-now", headers=ADMIN)
    assert response.status_code == 200
    assert response.json()["message"] == f"task {done}: requeued to run now"
    assert task(sched, done).status == TaskStatus.QUEUED
    assert task(sched, done).times_run == 1  # it runs exactly once more


@pytest.mark.parametrize(
    ("setup", "code", "message"),
    [
        ("running", 409, "it is running"),
        ("disabled", 409, "disabled: enable it first"),
        ("due", 409, "already due"),
        ("unregistered", 400, "not registered"),
    ],
)
def test_run_now_refuses_what_it_cannot_do(
    client: TestClient, sched: Scheduler, setup: str, code: int, message: str
) -> None:
    task_id = queue(sched, "add", 1, 2, enabled=setup != "disabled")
    if setup == "running":
        start_run(sched, task_id)
    if setup == "unregistered":
        sched.tasks.pop("add")
    before = task(sched, task_id)
    response = client.post(f"/api/tasks/{task_id}/run-now", headers=ADMIN)
    assert response.status_code == code
    assert message in response.json()["error"]
    assert task(sched, task_id) == before


def test_every_action_that_starts_a_task_refuses_an_unregistered_function(
    client: TestClient, sched: Scheduler
) -> None:
    failed = queue(sched, "gone", enabled=False)
    finish_run(sched, failed, start_run(sched, failed), status=RunStatus.FAILED)
    disabled = queue(sched, "gone", enabled=False)
    sched.tasks.pop("gone")
    for task_id, action in ((failed, "clone"), (failed, "run-now"), (failed, "requeue")):
        response = client.post(f"/api/tasks/{task_id}/{action}", headers=ADMIN)
        assert response.status_code == 400, action
        assert "not registered" in response.json()["error"]
    response = client.post(f"/api/tasks/{disabled}/enable", headers=ADMIN)
    assert response.status_code == 400
    assert task(sched, disabled).enabled is False
    assert task(sched, failed).status == TaskStatus.FAILED
    assert sched.store.find_task(sched.tables.scheduler_task.c.id > disabled) is None
    # what stops or removes a task still works
    assert client.post(f"/api/tasks/{disabled}/stop", headers=ADMIN).status_code == 200
    assert client.delete(f"/api/tasks/{failed}", headers=ADMIN).status_code == 200


def test_clone_and_run_now_need_the_admin_role_and_a_csrf_token(
    browser: tuple[TestClient, str], sched: Scheduler
) -> None:
    client, token = browser
    done = completed(sched, 1, 1)
    for action in ("clone", "run-now"):
        assert client.post(f"/tasks/{done}/{action}", data={}).status_code == 403
        assert client.post(f"/api/tasks/{done}/{action}").status_code == 403
        response = client.post(f"/api/tasks/{done}/{action}", headers=VIEWER)
        assert response.status_code == 403
    assert task(sched, done).status == TaskStatus.COMPLETED
    assert sched.store.find_task(sched.tables.scheduler_task.c.id > done) is None
    assert audit_actions(sched) == []
    headers = {"X-CSRF-Token": token}
    assert client.post(f"/api/tasks/{done}/run-now", headers=headers).status_code == 200


# ------------------------------------------------------------------- bulk


def test_bulk_run_now_from_the_task_list(browser: tuple[TestClient, str], sched: Scheduler) -> None:
    client, token = browser
    later = queue(sched, "add", 1, 1, start_time=sched.store.now() + timedelta(hours=1))
    done = completed(sched, 2, 2)
    running = queue(sched, "add", 3, 3)
    start_run(sched, running)
    html = client.get("/tasks").text
    assert f'name="ids" value="{later}" form="bulk-form"' in html
    response = client.post(
        "/tasks/bulk",
        data={
            "csrf_token": token,
            "action": "run-now",
            "ids": [str(later), str(done), str(running)],
            "group": "main",
        },
    )
    assert response.status_code == 303
    assert response.headers["location"].endswith("/tasks?group=main")
    assert task(sched, later).status == TaskStatus.QUEUED
    assert task(sched, done).status == TaskStatus.QUEUED
    assert task(sched, running).status == TaskStatus.RUNNING
    page = client.get("/tasks").text
    assert "run-now: 2 of 3 task(s) done, 1 refused" in page
    assert f"task {running}: task {running} is RUNNING: it is running" in page
    [(action, target, detail)] = audit_actions(sched)
    assert (action, target) == ("bulk-run-now", "3 task(s)")
    assert json.loads(detail or "") == {
        "ids": [later, done, running],
        "changed": sorted([later, done]),
        "refused": [running],
    }


def test_bulk_clone_through_the_api(client: TestClient, sched: Scheduler) -> None:
    first, second = queue(sched, "add", 1, 1), queue(sched, "add", 2, 2)
    response = client.post(
        "/api/tasks/bulk", headers=ADMIN, json={"action": "clone", "ids": [first, second, 999]}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["refused"] == {"999": "no task 999"}
    clones = {int(k): v for k, v in body["done"].items()}
    assert sorted(clones) == [first, second]
    for source, clone in clones.items():
        assert task(sched, clone).args == task(sched, source).args
    assert json.loads(audit_actions(sched)[-1][2] or "")["clones"] == sorted(clones.values())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"action": "explode", "ids": [1]}, "unknown bulk action"),
        ({"action": "stop", "ids": "1"}, "ids must be a list"),
        ({"action": "stop", "ids": [1, "x"]}, "ids must hold task ids"),
        ({"action": "stop", "ids": [True]}, "ids must hold task ids"),
        ({"action": "stop", "ids": []}, "select at least one task"),
        ({"action": "stop", "ids": list(range(1, 502))}, "at most 500"),
    ],
)
def test_bulk_refuses_bad_input(
    client: TestClient, sched: Scheduler, body: dict[str, Any], message: str
) -> None:
    task_id = queue(sched, "add", 1, 1)
    response = client.post("/api/tasks/bulk", headers=ADMIN, json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert task(sched, task_id).status == TaskStatus.QUEUED
    assert client.post("/api/tasks/bulk", headers=ADMIN, content=b"[").status_code == 400


# ------------------------------------------------------------------ graph


def test_task_page_draws_the_dependency_graph(
    browser: tuple[TestClient, str], sched: Scheduler
) -> None:
    client, _ = browser
    child = completed(sched, 1, 1, task_name=SCRIPT)
    middle = queue(sched, "add", 2, 2, task_name="middle")
    parent = queue(sched, "add", 3, 3, task_name="parent")
    job = JobGraph(sched, "job")
    job.add_deps(middle, child)
    job.add_deps(parent, middle)
    html = client.get(f"/tasks/{middle}").text
    svg = html[html.index('<svg id="dep-graph"') : html.index("</svg>", html.index("dep-graph"))]
    nodes = re.findall(r'data-node="(\d+)"', svg)
    assert nodes == [str(child), str(middle), str(parent)]
    assert 'class="node status-completed"' in svg
    assert 'class="node status-queued current"' in svg
    assert svg.count('class="edge done"') == 1 and svg.count('class="edge waiting"') == 1
    assert f'href="http://testserver/tasks/{parent}"' in svg
    assert "<script>alert" not in html and "&lt;script&gt;alert" in svg
    assert f"Waits for #{child}." in html and f"Needed by #{parent}." in html
    # run order left to right: the child's box left of the middle's, the parent's right
    xs = [int(x) for x in re.findall(r'<rect x="(\d+)"', svg)]
    assert xs == sorted(xs) and len(set(xs)) == 3
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert " style=" not in html
    alone = queue(sched, "add", 9, 9)
    assert 'id="dep-graph"' not in client.get(f"/tasks/{alone}").text


# ----------------------------------------------------------------- stream


def test_stream_of_a_finished_task_sends_its_last_output_and_ends(
    client: TestClient, sched: Scheduler
) -> None:
    task_id = queue(sched, "add", 1, 1)
    run_id = start_run(sched, task_id)
    finish_run(sched, task_id, run_id, output=f"line\n{SCRIPT}\n", result=2)
    events = parse_events(client.get(f"/api/tasks/{task_id}/output", headers=VIEWER).text)
    assert events == [
        ("run", {"run_id": run_id, "worker_name": "test-host#1"}),
        ("output", {"run_id": run_id, "append": f"line\n{SCRIPT}\n"}),
        ("end", {"run_id": run_id, "status": "COMPLETED", "task_status": "COMPLETED"}),
    ]


def test_stream_ends_when_the_run_row_goes_away(client: TestClient, sched: Scheduler) -> None:
    task_id = queue(sched, "gone", sync_output=1)
    run_id = start_run(sched, task_id)
    finish_run(sched, task_id, run_id)  # returned None: web2py removes the row
    response = client.get(f"/api/tasks/{task_id}/output?run_id={run_id}", headers=VIEWER)
    assert response.status_code == 404  # that run is gone
    events = parse_events(client.get(f"/api/tasks/{task_id}/output", headers=VIEWER).text)
    assert events == [("end", {"run_id": None, "status": None, "task_status": "COMPLETED"})]


def test_stream_of_a_waiting_task_closes_after_its_time_limit(
    client: TestClient, sched: Scheduler
) -> None:
    task_id = queue(sched, "add", 1, 1, start_time=sched.store.now() + timedelta(hours=1))
    response = client.get(f"/api/tasks/{task_id}/output", headers=VIEWER)
    assert response.status_code == 200
    assert response.text.startswith("retry: ")
    assert parse_events(response.text) == []  # no `end`: the browser reconnects


def test_stream_output_goes_through_the_redact_hook(sched: Scheduler) -> None:
    def redact(field: str, value: str | None, task: Any) -> str | None:
        return "[hidden]" if field == "run_output" else value

    task_id = queue(sched, "add", 1, 1)
    run_id = start_run(sched, task_id)
    finish_run(sched, task_id, run_id, output="password=hunter2", result=2)
    with TestClient(make_app(sched, redact=redact)) as client:
        body = client.get(f"/api/tasks/{task_id}/output", headers=VIEWER).text
    assert "hunter2" not in body
    assert ("output", {"run_id": run_id, "append": "[hidden]"}) in parse_events(body)


def test_stream_refuses_bad_requests(client: TestClient, sched: Scheduler) -> None:
    task_id = queue(sched, "add", 1, 1)
    other = queue(sched, "add", 2, 2)
    other_run = start_run(sched, other)
    assert client.get(f"/api/tasks/{task_id}/output").status_code == 401
    assert client.get("/api/tasks/999/output", headers=VIEWER).status_code == 404
    response = client.get(f"/api/tasks/{task_id}/output?run_id=abc", headers=VIEWER)
    assert response.status_code == 400 and "run_id" in response.json()["error"]
    response = client.get(f"/api/tasks/{task_id}/output?run_id={other_run}", headers=VIEWER)
    assert response.status_code == 404


# ------------------------------------------------------- overview, metrics


def test_overview_shows_throughput_and_failure_rate(
    browser: tuple[TestClient, str], sched: Scheduler
) -> None:
    client, _ = browser
    completed(sched, 1, 1)
    silent = queue(sched, "gone")
    finish_run(sched, silent, start_run(sched, silent))
    failed = queue(sched, "add", 0, 0)
    finish_run(sched, failed, start_run(sched, failed), status=RunStatus.FAILED)
    data = client.get("/api/overview").json()
    assert data["chart_minutes"] == 60 and len(data["throughput"]) == 60
    # the run that returned None left no row and is still counted
    assert sum(b["completed"] for b in data["throughput"]) == 2
    assert sum(b["failed"] for b in data["throughput"]) == 1
    html = client.get("/").text
    assert '<svg id="throughput"' in html and '<svg id="failure-rate"' in html


def test_metrics_have_throughput_failure_ratio_and_pickup_latency(
    client: TestClient, sched: Scheduler
) -> None:
    late = queue(sched, "add", 1, 1, start_time=sched.store.now() - timedelta(seconds=20))
    finish_run(sched, late, start_run(sched, late), result=2)
    failed = queue(sched, "add", 0, 0)
    finish_run(sched, failed, start_run(sched, failed), status=RunStatus.FAILED)
    sched.store.register_worker("w1", ["main"], {}, 9)
    sched.store.register_worker("w2", ["main"], {}, 9)
    sched.disable(worker_name="w2")
    text = client.get("/metrics", headers=VIEWER).text
    for line in (
        'taskmill_runs_finished_last_hour{status="COMPLETED"} 1',
        'taskmill_runs_finished_last_hour{status="FAILED"} 1',
        "taskmill_throughput_per_minute 0.4",
        "taskmill_failure_ratio 0.5",
        "taskmill_workers_alive 2",
        'taskmill_workers_alive_by_status{status="ACTIVE"} 1',
        'taskmill_workers_alive_by_status{status="DISABLED"} 1',
        "# TYPE taskmill_pickup_latency_seconds histogram",
        'taskmill_pickup_latency_seconds_bucket{le="5"} 1',
        'taskmill_pickup_latency_seconds_bucket{le="30"} 2',
        "taskmill_pickup_latency_seconds_count 2",
    ):
        assert line in text.splitlines(), line
    latency_sum = re.search(r"taskmill_pickup_latency_seconds_sum (\S+)", text)
    assert latency_sum and 20 <= float(latency_sum.group(1)) < 60


def test_openapi_describes_the_new_endpoints(client: TestClient) -> None:
    doc = client.get("/api/openapi.json", headers=VIEWER).json()
    paths = doc["paths"]
    assert (
        "text/event-stream"
        in paths["/api/tasks/{task_id}/output"]["get"]["responses"]["200"]["content"]
    )
    assert paths["/api/tasks/bulk"]["post"]["requestBody"]
    action = paths["/api/tasks/{task_id}/{action}"]["post"]
    assert {"clone", "run-now"} <= set(action["parameters"][1]["schema"]["enum"])
    assert "201" in action["responses"]
    bulk = doc["components"]["schemas"]["BulkRequest"]["properties"]["action"]["enum"]
    assert {"clone", "run-now"} <= set(bulk)
