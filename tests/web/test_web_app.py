"""The dashboard and JSON API, through Starlette's TestClient, on a real SQLite database.

Runs are made by `run_stored_task(..., record=True)`, which writes them exactly as a
worker does, so no worker processes are needed here (tests/browser has those).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from taskmill import Scheduler, TaskStatus, WorkerStatus
from taskmill.debug import run_stored_task
from taskmill.errors import ConfigurationError
from taskmill.schema import scheduler_worker
from taskmill.store.audit import taskmill_audit
from taskmill.web import create_app
from taskmill.web.auth import Account, AuthConfig, Role, hash_password, verify_password

ADMIN_PASSWORD = "correct horse battery"
VIEWER_PASSWORD = "viewer password"
ADMIN_TOKEN = "admin-token-0123456789abcdef"
VIEWER_TOKEN = "viewer-token-0123456789abcdef"
SCRIPT = "<script>alert('pwned')</script>"

# hashed once: scrypt is slow on purpose
ADMIN_HASH = hash_password(ADMIN_PASSWORD)
VIEWER_HASH = hash_password(VIEWER_PASSWORD)


def add(a: int, b: int) -> int:
    return a + b


def shout(text: str) -> str:
    return text


def explode() -> None:
    raise RuntimeError(SCRIPT)


@pytest.fixture
def sched(sqlite_url: str) -> Iterator[Scheduler]:
    scheduler = Scheduler(sqlite_url, tasks={"add": add, "shout": shout, "explode": explode})
    scheduler.create_tables()
    yield scheduler
    scheduler.store.dispose()


def auth_config() -> AuthConfig:
    return AuthConfig(
        accounts={
            "admin": Account(ADMIN_HASH, Role.ADMIN),
            "viewer": Account(VIEWER_HASH, Role.READ_ONLY),
        },
        tokens={ADMIN_TOKEN: Role.ADMIN, VIEWER_TOKEN: Role.READ_ONLY},
        secret_key="test-secret",
    )


def dashboard(sched: Scheduler, **kwargs: Any) -> Starlette:
    app = create_app(sched, auth=auth_config(), **kwargs)
    app.state.dashboard.data.counts_ttl = 0  # tests change the tables between requests
    return app


@pytest.fixture
def client(sched: Scheduler) -> Iterator[TestClient]:
    with TestClient(dashboard(sched), follow_redirects=False) as c:
        yield c


def csrf_of(html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


def login(client: TestClient, user: str = "admin", password: str = ADMIN_PASSWORD) -> str:
    """Log in through the form; returns the session's CSRF token."""
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login", data={"username": user, "password": password, "csrf_token": token}
    )
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/").text)


@pytest.fixture
def admin(client: TestClient) -> tuple[TestClient, str]:
    return client, login(client)


def audit_rows(sched: Scheduler) -> list[Any]:
    with sched.store.engine.connect() as conn:
        return list(conn.execute(sa.select(taskmill_audit).order_by(taskmill_audit.c.id)))


def status_of(sched: Scheduler, task_id: int) -> str | None:
    task = sched.store.get_task(task_id)
    return None if task is None else task.status


def failed_task(sched: Scheduler, **kwargs: Any) -> int:
    queued = sched.queue_task("explode", **kwargs)
    assert queued.id is not None
    run_stored_task(sched, queued.id, record=True)
    assert status_of(sched, queued.id) == TaskStatus.FAILED
    return queued.id


# ---------------------------------------------------------------- auth


def test_pages_redirect_to_login_when_not_logged_in(client: TestClient) -> None:
    for path in ("/", "/tasks", "/tasks/1", "/audit", "/tasks/new"):
        response = client.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("http://testserver/login?next=")


def test_api_and_metrics_answer_401_without_credentials(client: TestClient) -> None:
    for path in ("/api/overview", "/api/tasks", "/api/openapi.json", "/metrics"):
        response = client.get(path)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_wrong_password_is_refused(client: TestClient) -> None:
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login", data={"username": "admin", "password": "wrong", "csrf_token": token}
    )
    assert response.status_code == 401
    assert "wrong user name or password" in response.text
    assert client.get("/").status_code == 303


def test_unknown_user_is_refused(client: TestClient) -> None:
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login", data={"username": "nobody", "password": ADMIN_PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 401


def test_login_without_csrf_token_is_refused(client: TestClient) -> None:
    client.get("/login")
    response = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 403
    assert client.get("/").status_code == 303


def test_repeated_failed_logins_are_throttled(client: TestClient) -> None:
    token = csrf_of(client.get("/login").text)
    codes = [
        client.post(
            "/login", data={"username": "admin", "password": "bad", "csrf_token": token}
        ).status_code
        for _ in range(11)
    ]
    assert codes[:10] == [401] * 10
    assert codes[10] == 429


def test_login_does_not_redirect_off_site(client: TestClient) -> None:
    token = csrf_of(client.get("/login").text)
    data = {"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token}
    response = client.post("/login", data={**data, "next": "//evil.example/"})
    assert response.headers["location"] == "http://testserver/"


def test_login_returns_to_the_page_asked_for(client: TestClient) -> None:
    token = csrf_of(client.get("/login?next=/tasks").text)
    data = {"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token, "next": "/tasks"}
    assert client.post("/login", data=data).headers["location"] == "/tasks"


def test_logout_ends_the_session(admin: tuple[TestClient, str]) -> None:
    client, token = admin
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/").status_code == 303


def test_password_hashes_verify_scrypt_and_pbkdf2() -> None:
    assert verify_password(ADMIN_PASSWORD, ADMIN_HASH)
    assert not verify_password("other", ADMIN_HASH)
    import base64
    import hashlib

    digest = hashlib.pbkdf2_hmac("sha256", b"pw", b"salt", 1000)
    encoded = f"pbkdf2_sha256$1000$salt${base64.b64encode(digest).decode()}"
    assert verify_password("pw", encoded)
    assert not verify_password("pw", "garbage")


def test_a_dashboard_without_any_login_refuses_to_start(sched: Scheduler) -> None:
    with pytest.raises(ConfigurationError, match="TASKMILL_DASHBOARD_PASSWORD_HASH"):
        create_app(sched, auth=AuthConfig.from_env({}))


def test_auth_from_environment(sched: Scheduler) -> None:
    config = AuthConfig.from_env(
        {"TASKMILL_DASHBOARD_PASSWORD_HASH": ADMIN_HASH, "TASKMILL_DASHBOARD_TOKEN": ADMIN_TOKEN}
    )
    assert config.check_password("admin", ADMIN_PASSWORD) is not None
    who = config.check_token(f"Bearer {ADMIN_TOKEN}")
    assert who is not None and who.role is Role.ADMIN


# ------------------------------------------------------------- security


def test_security_headers_on_pages_and_api(client: TestClient) -> None:
    for path in ("/login", "/api/tasks"):
        headers = client.get(path).headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "unsafe-inline" not in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"


def test_pages_have_no_inline_scripts_or_styles(admin: tuple[TestClient, str]) -> None:
    client, _ = admin
    for path in ("/", "/tasks", "/tasks/new", "/audit"):
        html = client.get(path).text
        assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
        assert " style=" not in html


def test_session_cookie_is_http_only(client: TestClient) -> None:
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token}
    )
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie


def test_post_without_csrf_token_is_refused(
    admin: tuple[TestClient, str], sched: Scheduler
) -> None:
    client, _ = admin
    task_id = sched.queue_task("add", [1, 2]).id
    assert task_id is not None
    response = client.post(f"/tasks/{task_id}/stop", data={})
    assert response.status_code == 403
    assert status_of(sched, task_id) == TaskStatus.QUEUED
    assert audit_rows(sched) == []


def test_post_with_a_wrong_csrf_token_is_refused(
    admin: tuple[TestClient, str], sched: Scheduler
) -> None:
    client, _ = admin
    task_id = sched.queue_task("add", [1, 2]).id
    response = client.post(f"/tasks/{task_id}/delete", data={"csrf_token": "forged"})
    assert response.status_code == 403
    assert status_of(sched, task_id or 0) == TaskStatus.QUEUED


def test_api_with_a_session_needs_the_csrf_header(
    admin: tuple[TestClient, str], sched: Scheduler
) -> None:
    client, token = admin
    task_id = sched.queue_task("add", [1, 2]).id
    assert client.post(f"/api/tasks/{task_id}/stop").status_code == 403
    assert status_of(sched, task_id or 0) == TaskStatus.QUEUED
    response = client.post(f"/api/tasks/{task_id}/stop", headers={"X-CSRF-Token": token})
    assert response.status_code == 200
    assert status_of(sched, task_id or 0) == TaskStatus.STOPPED


def test_read_only_user_cannot_act(client: TestClient, sched: Scheduler) -> None:
    token = login(client, "viewer", VIEWER_PASSWORD)
    task_id = sched.queue_task("add", [1, 2]).id
    assert client.get(f"/tasks/{task_id}").status_code == 200
    assert client.post(f"/tasks/{task_id}/stop", data={"csrf_token": token}).status_code == 403
    assert (
        client.post("/tasks/new", data={"csrf_token": token, "function": "add"}).status_code == 403
    )
    response = client.post(f"/api/tasks/{task_id}/delete", headers={"X-CSRF-Token": token})
    assert response.status_code == 403
    assert status_of(sched, task_id or 0) == TaskStatus.QUEUED
    assert client.get("/tasks/new").status_code == 403
    assert audit_rows(sched) == []


def test_read_only_token_cannot_act(client: TestClient, sched: Scheduler) -> None:
    task_id = sched.queue_task("add", [1, 2]).id
    headers = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    assert client.get("/api/tasks", headers=headers).status_code == 200
    assert client.post(f"/api/tasks/{task_id}/stop", headers=headers).status_code == 403
    assert status_of(sched, task_id or 0) == TaskStatus.QUEUED


def test_a_wrong_token_is_refused(client: TestClient) -> None:
    response = client.get("/api/tasks", headers={"Authorization": "Bearer not-the-token-at-all"})
    assert response.status_code == 401


def test_script_in_task_data_is_shown_as_text(
    admin: tuple[TestClient, str], sched: Scheduler
) -> None:
    client, _ = admin
    task_id = sched.queue_task("shout", [SCRIPT], task_name=SCRIPT).id
    assert task_id is not None
    run_stored_task(sched, task_id, record=True)
    run = sched.store.latest_run(task_id)
    assert run is not None
    sched.store.save_output(run.id, SCRIPT)
    failing = failed_task(sched)
    for path in (f"/tasks/{task_id}", "/tasks", f"/tasks/{failing}"):
        html = client.get(path).text
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(" in html


# ------------------------------------------------------------ list pages


def test_overview_shows_counts_per_status_and_group(
    admin: tuple[TestClient, str], sched: Scheduler
) -> None:
    client, _ = admin
    sched.queue_task("add", [1, 2], group_name="reports")
    sched.queue_task("add", [1, 2])
    failed_task(sched)
    data = client.get("/api/overview").json()
    assert data["statuses"]["QUEUED"] == 2
    assert data["statuses"]["FAILED"] == 1
    assert data["groups"] == {"main": {"QUEUED": 1, "FAILED": 1}, "reports": {"QUEUED": 1}}
    assert data["queue_depth"] == 2
    assert data["oldest_due_age"] >= 0
    assert sum(b["failed"] for b in data["throughput"]) == 1
    html = client.get("/").text
    assert 'data-count="QUEUED">2<' in html
    assert "reports" in html


class CurrentTasksCell(HTMLParser):
    """The links and the text of one worker's "Current tasks" cell on the overview."""

    def __init__(self, worker_name: str) -> None:
        super().__init__()
        self.worker_name = worker_name
        self.in_row = self.in_cell = False
        self.found = False
        self.links: list[tuple[str, str]] = []
        self.text = ""
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "tr":
            self.in_row = attributes.get("data-worker") == self.worker_name
        elif tag == "td" and self.in_row and attributes.get("data-field") == "current_tasks":
            self.in_cell = self.found = True
        elif tag == "a" and self.in_cell:
            self._href = attributes.get("href")
            self.links.append((self._href or "", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self.in_cell = False
        elif tag == "a":
            self._href = None

    def handle_data(self, data: str) -> None:
        if not self.in_cell:
            return
        self.text += data
        if self._href is not None:
            href, text = self.links[-1]
            self.links[-1] = (href, text + data)


def current_tasks_cell(client: TestClient, worker_name: str) -> CurrentTasksCell:
    cell = CurrentTasksCell(worker_name)
    cell.feed(client.get("/").text)
    assert cell.found, f"no current tasks cell for {worker_name}"
    cell.text = " ".join(cell.text.split())
    return cell


def test_overview_lists_workers_with_heartbeat_age(
    admin: tuple[TestClient, str], sched: Scheduler
) -> None:
    client, _ = admin
    sched.store.register_worker("host#1", ["main"], {"current_task": 7, "total": 3}, 9)
    data = client.get("/api/overview").json()
    [worker] = data["workers"]
    assert worker["name"] == "host#1"
    assert worker["alive"] is True
    assert worker["current_task"] == 7
    assert (worker["current_tasks"], worker["concurrency"], worker["pool"]) == (
        [7],
        1,
        "processes",
    )
    assert 0 <= worker["heartbeat_age"] < 5
    # a one-at-a-time worker (or a pre-pool one) has no slots to count
    cell = current_tasks_cell(client, "host#1")
    assert (cell.links, cell.text) == ([("http://testserver/tasks/7", "7")], "7")


def test_overview_lists_every_running_task_of_a_pool_worker(
    admin: tuple[TestClient, str], sched: Scheduler
) -> None:
    client, _ = admin
    stats = {"current_task": 7, "current_tasks": [7, 8, 9], "concurrency": 4, "pool": "threads"}
    sched.store.register_worker("host#2", ["main"], stats, 9)
    [worker] = client.get("/api/overview").json()["workers"]
    assert (worker["current_task"], worker["current_tasks"]) == (7, [7, 8, 9])
    assert (worker["concurrency"], worker["pool"]) == (4, "threads")
    [listed] = client.get("/api/workers").json()["workers"]
    assert (listed["current_tasks"], listed["concurrency"]) == ([7, 8, 9], 4)
    cell = current_tasks_cell(client, "host#2")
    assert cell.links == [(f"http://testserver/tasks/{i}", str(i)) for i in (7, 8, 9)]
    assert cell.text == "7, 8, 9 (3 of 4 slots busy, threads)"


def test_overview_shows_an_idle_pool_worker_and_a_web2py_worker(
    admin: tuple[TestClient, str], sched: Scheduler
) -> None:
    client, _ = admin
    idle = {"current_task": None, "current_tasks": [], "concurrency": 8, "pool": "processes"}
    sched.store.register_worker("pool#1", ["main"], idle, 9)
    # what web2py's worker writes: no current task at all
    sched.store.register_worker("web2py#1", ["main"], {"status": "ACTIVE", "total": 5}, 9)
    workers = {w["name"]: w for w in client.get("/api/overview").json()["workers"]}
    assert (workers["pool#1"]["current_task"], workers["pool#1"]["current_tasks"]) == (None, [])
    assert (workers["web2py#1"]["current_task"], workers["web2py#1"]["current_tasks"]) == (
        None,
        [],
    )
    pool = current_tasks_cell(client, "pool#1")
    assert (pool.links, pool.text) == ([], "(0 of 8 slots busy, processes)")
    web2py = current_tasks_cell(client, "web2py#1")
    assert (web2py.links, web2py.text) == ([], "")


@pytest.mark.parametrize(
    "stats",
    [
        {"current_tasks": [12, "13", None, True, -1, 2**70], "concurrency": "4", "pool": 3},
        {"current_tasks": "12", "current_task": 12},
        [12],
    ],
    ids=["junk-in-the-list", "not-a-list", "stats-not-an-object"],
)
def test_overview_leaves_out_what_cannot_be_a_task_id(
    admin: tuple[TestClient, str], sched: Scheduler, stats: Any
) -> None:
    """worker_stats is JSON that other programs (web2py, a hand edit) may write."""
    client, _ = admin
    sched.store.register_worker("odd#1", ["main"], {}, 9)
    with sched.store.transaction() as conn:
        conn.execute(sa.update(scheduler_worker).values(worker_stats=json.dumps(stats)))
    [worker] = client.get("/api/overview").json()["workers"]
    shown = [12] if isinstance(stats, dict) else []
    assert (worker["current_tasks"], worker["concurrency"], worker["pool"]) == (
        shown,
        1,
        "processes",
    )
    cell = current_tasks_cell(client, "odd#1")
    assert cell.links == [(f"http://testserver/tasks/{i}", str(i)) for i in shown]


def test_task_list_filters(admin: tuple[TestClient, str], sched: Scheduler) -> None:
    client, _ = admin
    a = sched.queue_task("add", [1, 2], group_name="reports", task_name="nightly report").id
    b = sched.queue_task("shout", ["needle-in-args"]).id
    c = failed_task(sched)

    def ids(query: str) -> list[int]:
        return [t["id"] for t in client.get(f"/api/tasks?{query}").json()["tasks"]]

    assert ids("") == [c, b, a]
    assert ids("status=FAILED") == [c]
    assert ids("group=reports") == [a]
    assert ids("function=shout") == [b]
    assert ids("q=nightly") == [a]
    assert ids("q=needle") == [b]
    task_b = sched.store.get_task(b or 0)
    assert task_b is not None
    assert ids(f"q={task_b.uuid}") == [b]
    assert ids("q=no-such-thing") == []
    html = client.get("/tasks?status=FAILED").text
    assert f'href="http://testserver/tasks/{c}"' in html
    assert f'href="http://testserver/tasks/{a}"' not in html


def test_task_list_keyset_pagination(admin: tuple[TestClient, str], sched: Scheduler) -> None:
    client, _ = admin
    sched.store.insert_tasks(
        [
            {"function_name": "add", "task_name": f"t{i}", "uuid": f"u{i}", "status": "QUEUED"}
            for i in range(120)
        ]
    )
    first = client.get("/api/tasks?limit=50").json()
    second = client.get(f"/api/tasks?limit=50&before={first['older_than']}").json()
    third = client.get(f"/api/tasks?limit=50&before={second['older_than']}").json()
    pages = [first, second, third]
    assert [len(p["tasks"]) for p in pages] == [50, 50, 20]
    seen = [t["id"] for p in pages for t in p["tasks"]]
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == 120
    assert first["newer_than"] is None and third["older_than"] is None
    back = client.get(f"/api/tasks?limit=50&after={third['newer_than']}").json()
    assert [t["id"] for t in back["tasks"]] == [t["id"] for t in second["tasks"]]
    html = client.get("/tasks?limit=50").text
    assert f"before={first['older_than']}" in html


def test_task_detail_shows_schedule_runs_and_reasons(
    admin: tuple[TestClient, str], sched: Scheduler
) -> None:
    client, _ = admin
    task_id = sched.queue_task("add", [1, 2], cronline="*/5 * * * *", repeats=0).id
    detail = client.get(f"/api/tasks/{task_id}").json()
    assert detail["schedule"]["cronline"] == "*/5 * * * *"
    assert len(detail["schedule"]["next_runs"]) == 5
    assert any("no live worker" in reason for reason in detail["why_not_running"])
    failing = failed_task(sched)
    [run] = client.get(f"/api/tasks/{failing}").json()["runs"]
    assert run["status"] == "FAILED"
    assert "RuntimeError" in run["traceback"]
    assert run["duration"] >= 0
    assert client.get("/tasks/999999").status_code == 404


def test_redact_hook_hides_sensitive_values(sched: Scheduler) -> None:
    def redact(field: str, value: str | None, task: Any) -> str | None:
        return "***" if field in ("args", "run_result") else value

    app = dashboard(sched, redact=redact)
    task_id = sched.queue_task("shout", ["secret-value"]).id
    run_stored_task(sched, task_id or 0, record=True)
    with TestClient(app, follow_redirects=False) as client:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        detail = client.get(f"/api/tasks/{task_id}", headers=headers).json()
        assert detail["args"] == "***"
        assert detail["runs"][0]["result"] == "***"
        login(client)
        assert "secret-value" not in client.get(f"/tasks/{task_id}").text


# --------------------------------------------------------------- actions


def last_audit(sched: Scheduler) -> Any:
    rows = audit_rows(sched)
    assert rows, "nothing was written to the audit log"
    return rows[-1]


def test_queue_a_task_from_the_form(admin: tuple[TestClient, str], sched: Scheduler) -> None:
    client, token = admin
    response = client.post(
        "/tasks/new",
        data={
            "csrf_token": token,
            "function": "add",
            "args": "[2, 3]",
            "vars": "{}",
            "task_name": "from the form",
            "period": "",
        },
    )
    assert response.status_code == 303
    task = sched.task_status(sched.tables.scheduler_task.c.task_name == "from the form")
    assert (
        task is not None
        and task.status == TaskStatus.QUEUED
        and json.loads(task.args or "") == [2, 3]
    )
    entry = last_audit(sched)
    assert (entry.actor, entry.action, entry.target) == ("admin", "queue", f"task {task.id}")
    assert f"<td>queue</td><td>task {task.id}</td>" in client.get("/audit").text


def test_queue_refuses_an_unregistered_function(
    admin: tuple[TestClient, str], sched: Scheduler
) -> None:
    client, token = admin
    response = client.post("/tasks/new", data={"csrf_token": token, "function": "os.system"})
    assert response.status_code == 400
    assert "not a registered task function" in response.text
    assert sched.store.get_task(1) is None


def test_queue_refuses_bad_json_args(admin: tuple[TestClient, str], sched: Scheduler) -> None:
    client, token = admin
    for args in ("[1, 2", '{"a": 1}'):
        response = client.post(
            "/tasks/new", data={"csrf_token": token, "function": "add", "args": args}
        )
        assert response.status_code == 400
    assert sched.store.get_task(1) is None


@pytest.mark.parametrize(
    ("action", "before", "after"),
    [
        ("stop", TaskStatus.QUEUED, TaskStatus.STOPPED),
        ("requeue", TaskStatus.FAILED, TaskStatus.QUEUED),
        ("delete", TaskStatus.QUEUED, None),
    ],
)
def test_task_actions_change_the_task_and_are_audited(
    admin: tuple[TestClient, str],
    sched: Scheduler,
    action: str,
    before: TaskStatus,
    after: TaskStatus | None,
) -> None:
    client, token = admin
    task_id = failed_task(sched) if before == TaskStatus.FAILED else sched.queue_task("add").id
    response = client.post(f"/tasks/{task_id}/{action}", data={"csrf_token": token})
    assert response.status_code == 303
    assert status_of(sched, task_id or 0) == after
    entry = last_audit(sched)
    assert (entry.actor, entry.action, entry.target) == ("admin", action, f"task {task_id}")


def test_disable_and_enable_a_task(admin: tuple[TestClient, str], sched: Scheduler) -> None:
    client, token = admin
    task_id = sched.queue_task("add", [1, 1]).id or 0
    client.post(f"/tasks/{task_id}/disable", data={"csrf_token": token})
    task = sched.store.get_task(task_id)
    assert task is not None and task.enabled is False
    client.post(f"/tasks/{task_id}/enable", data={"csrf_token": token})
    task = sched.store.get_task(task_id)
    assert task is not None and task.enabled is True
    assert [e.action for e in audit_rows(sched)] == ["disable", "enable"]


def test_delete_removes_the_runs_too(admin: tuple[TestClient, str], sched: Scheduler) -> None:
    client, token = admin
    task_id = failed_task(sched)
    client.post(f"/tasks/{task_id}/delete", data={"csrf_token": token})
    assert sched.store.runs_of(task_id) == []


def test_requeue_refuses_a_task_of_an_unregistered_function(
    admin: tuple[TestClient, str], sched: Scheduler
) -> None:
    client, token = admin
    task_id = failed_task(sched)
    sched.tasks.pop("explode")
    client.post(f"/tasks/{task_id}/requeue", data={"csrf_token": token})
    assert status_of(sched, task_id) == TaskStatus.FAILED


def test_bulk_requeue_applies_to_failed_tasks_matching_the_filter(
    admin: tuple[TestClient, str], sched: Scheduler
) -> None:
    client, token = admin
    in_group = [failed_task(sched, group_name="reports") for _ in range(3)]
    other = failed_task(sched)
    queued = sched.queue_task("add", group_name="reports").id
    response = client.post(
        "/tasks/requeue-failed", data={"csrf_token": token, "status": "FAILED", "group": "reports"}
    )
    assert response.status_code == 303
    assert [status_of(sched, i) for i in in_group] == [TaskStatus.QUEUED] * 3
    assert status_of(sched, other) == TaskStatus.FAILED
    assert status_of(sched, queued or 0) == TaskStatus.QUEUED
    entry = last_audit(sched)
    assert entry.action == "bulk-requeue" and '"changed": 3' in entry.detail


@pytest.mark.parametrize(
    ("action", "status"),
    [
        ("disable", WorkerStatus.DISABLED),
        ("resume", WorkerStatus.ACTIVE),
        ("terminate", WorkerStatus.TERMINATE),
        ("kill", WorkerStatus.KILL),
    ],
)
def test_worker_actions_set_the_worker_status_and_are_audited(
    admin: tuple[TestClient, str], sched: Scheduler, action: str, status: WorkerStatus
) -> None:
    client, token = admin
    sched.store.register_worker("host#1", ["main"], {}, 9)
    sched.store.register_worker("host#2", ["main"], {}, 9)
    if action == "resume":
        sched.disable(worker_name="host#1")
    response = client.post(
        "/workers/action", data={"csrf_token": token, "worker_name": "host#1", "action": action}
    )
    assert response.status_code == 303
    workers = sched.get_workers()
    assert workers["host#1"].status == status
    assert workers["host#2"].status == WorkerStatus.ACTIVE
    entry = last_audit(sched)
    assert (entry.action, entry.target) == (f"worker-{action}", "worker host#1")


# ------------------------------------------------------------------- API


def test_api_queue_and_act_with_a_token(client: TestClient, sched: Scheduler) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = client.post(
        "/api/tasks", headers=headers, json={"function": "add", "args": [1, 2], "repeats": 2}
    )
    assert response.status_code == 201, response.text
    task_id = response.json()["task_id"]
    task = sched.store.get_task(task_id)
    assert task is not None and task.repeats == 2
    assert client.post(f"/api/tasks/{task_id}/stop", headers=headers).status_code == 200
    assert client.post(f"/api/tasks/{task_id}/stop", headers=headers).status_code == 409
    assert client.delete(f"/api/tasks/{task_id}", headers=headers).status_code == 200
    assert sched.store.get_task(task_id) is None
    assert [e.actor for e in audit_rows(sched)] == ["token:admin"] * 4
    entries = client.get("/api/audit", headers=headers).json()["entries"]
    assert [e["action"] for e in entries] == ["delete", "stop", "stop", "queue"]


def test_api_refuses_bad_input(client: TestClient, sched: Scheduler) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    bad = client.post("/api/tasks", headers=headers, json={"function": "add", "args": "nope"})
    assert bad.status_code == 400 and "args" in bad.json()["errors"]
    unknown = client.post("/api/tasks", headers=headers, json={"function": "nope"})
    assert unknown.status_code == 400
    cron = client.post("/api/tasks", headers=headers, json={"function": "add", "cronline": "x"})
    assert cron.status_code == 400 and "cronline" in cron.json()["errors"]
    assert client.post("/api/tasks/1/explode", headers=headers).status_code == 404


def test_api_bulk_requeue_and_worker_command(client: TestClient, sched: Scheduler) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    task_id = failed_task(sched)
    response = client.post(
        "/api/tasks/requeue-failed", headers=headers, json={"function": "explode"}
    )
    assert response.json()["count"] == 1
    assert status_of(sched, task_id) == TaskStatus.QUEUED
    sched.store.register_worker("w1", ["main"], {}, 9)
    response = client.post("/api/workers/disable", headers=headers, json={"worker_name": "w1"})
    assert response.status_code == 200
    assert sched.get_workers()["w1"].status == WorkerStatus.DISABLED


def test_openapi_describes_the_api(client: TestClient) -> None:
    doc = client.get("/api/openapi.json", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
    paths = doc.json()["paths"]
    assert doc.json()["openapi"].startswith("3.")
    for path in (
        "/api/tasks",
        "/api/tasks/{task_id}/{action}",
        "/api/workers/{action}",
        "/metrics",
    ):
        assert path in paths


def test_metrics_in_prometheus_text_format(client: TestClient, sched: Scheduler) -> None:
    sched.queue_task("add", [1, 2])
    failed_task(sched)
    sched.store.register_worker("w1", ["main"], {}, 9)
    response = client.get("/metrics", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert 'taskmill_tasks{status="QUEUED",group="main"} 1' in text
    assert 'taskmill_tasks{status="FAILED",group="main"} 1' in text
    assert 'taskmill_runs{status="FAILED"} 1' in text
    assert "taskmill_workers_alive 1" in text
    assert "taskmill_queue_depth 1" in text
    assert 'taskmill_run_duration_seconds_bucket{le="+Inf"} 1' in text
    assert "# TYPE taskmill_run_duration_seconds histogram" in text


def test_history_survives_a_dashboard_restart(sched: Scheduler) -> None:
    failed_task(sched)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with TestClient(dashboard(sched)) as first:
        first.post("/api/tasks/requeue-failed", headers=headers, json={})
    with TestClient(dashboard(sched)) as second:
        entries = second.get("/api/audit", headers=headers).json()["entries"]
        assert [e["action"] for e in entries] == ["bulk-requeue"]
        assert second.get("/api/tasks/1", headers=headers).json()["runs"][0]["status"] == "FAILED"


def test_mounted_under_a_prefix(sched: Scheduler) -> None:
    site = Starlette(routes=[Mount("/ops/tasks", app=dashboard(sched))])
    with TestClient(site, follow_redirects=False) as client:
        response = client.get("/ops/tasks/")
        assert response.status_code == 303
        assert response.headers["location"].startswith("http://testserver/ops/tasks/login")
        page = client.get("/ops/tasks/login").text
        assert 'href="http://testserver/ops/tasks/static/dashboard.css"' in page
        token = csrf_of(page)
        response = client.post(
            "/ops/tasks/login",
            data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token},
        )
        assert response.headers["location"] == "http://testserver/ops/tasks/"
        assert client.get("/ops/tasks/").status_code == 200
        assert client.get("/ops/tasks/static/dashboard.js").status_code == 200
