"""The dashboard in a real (headless) Chromium, with real workers behind it.

The dashboard is served by `taskmill dashboard` next to two `taskmill worker`
processes; the browser is the system's Chromium (Debian package `chromium`, installed
by `make test`), which Playwright drives but never downloads. Without it these tests
skip, except under CI=true, where they fail.

(No conftest.py here: the suite's modules share one import namespace, and a second
`conftest` would shadow the root one that other tests import from.)
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dashboard_browser_support import (
    APP,
    PASSWORD,
    USER,
    WORKERS,
    Processes,
    Served,
    free_port,
    unavailable,
    wait_until,
)
from dashboard_browser_tasks import SCRIPT, TASKS

from taskmill import JobGraph, Scheduler, TaskStatus
from taskmill.web.auth import hash_password

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHROMIUM = os.environ.get("TASKMILL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


SCREENSHOTS = ROOT / "docs" / "screenshots"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def chromium_path() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        unavailable("the playwright Python package (dev extra)")
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"Chromium at {CHROMIUM}")
    return CHROMIUM


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, chromium_path: str) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("dashboard")
    db_url = f"sqlite:///{workdir / 'tasks.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKMILL_APP", "TASKMILL_DB"))}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT / "src")]),
            "TASKMILL_BROWSER_DB": db_url,
            "TASKMILL_DASHBOARD_PASSWORD_HASH": hash_password(PASSWORD),
            "TASKMILL_DASHBOARD_USER": USER,
        }
    )
    sched = Scheduler(db_url, tasks=dict(TASKS), heartbeat=1)
    sched.create_tables()
    processes = Processes(workdir, env)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        processes.start("dashboard", "dashboard", "--app", APP, "--port", str(port))
        for n in range(WORKERS):
            processes.start(f"worker{n}", "worker", "--app", APP, "--name", f"browser-worker-{n}")

        def dashboard_up() -> bool:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{url}/login", timeout=1) as response:
                    return bool(response.status == 200)
            return False

        wait_until(dashboard_up, 20, "the dashboard to answer")
        wait_until(lambda: len(sched.get_workers()) == WORKERS, 20, "the workers to beat")
        yield Served(url=url, sched=sched, workdir=workdir, processes=processes)
    except BaseException:
        sys.stderr.write(processes.logs())
        raise
    finally:
        processes.stop_all()
        sched.store.dispose()


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any, served: Served) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(15000)
    yield tab
    context.close()


@pytest.fixture
def admin_page(page: Any, served: Served) -> Any:
    """A page logged in as the admin, on the overview."""
    page.goto(f"{served.url}/")
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{served.url}/")
    return page


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def status_badge(page: Any) -> Any:
    return page.locator('#task h1 [data-field="status"]')


def wait_status(served: Served, task_id: int, status: str, timeout: float = 20) -> None:
    def reached() -> bool:
        task = served.sched.store.get_task(task_id)
        return task is not None and task.status == status

    wait_until(reached, timeout, f"task {task_id} to be {status}")


def test_login_is_required_and_a_wrong_password_refused(page: Any, served: Served) -> None:
    page.goto(f"{served.url}/tasks")
    assert "/login" in page.url
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", "not-the-password")
    page.click("button[type=submit]")
    assert page.locator(".flash.error").inner_text() == "wrong user name or password"
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{served.url}/tasks")


def test_task_goes_from_queued_to_completed_without_reload(admin_page: Any, served: Served) -> None:
    page = admin_page
    start = served.sched.store.now() + timedelta(seconds=3)
    task_id = served.sched.queue_task("slow", [0.5], start_time=start).id
    page.goto(f"{served.url}/tasks/{task_id}")
    assert status_badge(page).inner_text() == TaskStatus.QUEUED
    page.evaluate("window.__notReloaded = true")
    expect(status_badge(page)).to_have_text("COMPLETED", timeout=20000)
    assert page.evaluate("window.__notReloaded") is True
    assert page.locator("#runs tbody tr").first.locator("td").nth(1).inner_text() == "COMPLETED"


def test_overview_updates_live(admin_page: Any, served: Served) -> None:
    page = admin_page
    before = int(page.locator('[data-count="COMPLETED"]').inner_text())
    page.evaluate("window.__notReloaded = true")
    served.sched.queue_task("add", [1, 2])
    completed = page.locator('[data-count="COMPLETED"]')
    wait_until(lambda: int(completed.inner_text()) > before, 20, "the COMPLETED count to grow")
    assert page.evaluate("window.__notReloaded") is True
    assert page.locator("tr[data-worker]").count() == 2


def test_overview_shows_every_running_task_of_a_pool_worker(
    admin_page: Any, served: Served
) -> None:
    """A `--concurrency 3` worker runs three tasks at once: the overview links to all
    three, both when the live update draws them and when the server does."""
    page, sched = admin_page, served.sched
    name = "browser-pool-worker"
    worker = served.processes.start(
        "pool-worker", "worker", "--app", APP, "--name", name, "-g", "pool", "--concurrency", "3"
    )
    wait_until(lambda: name in sched.get_workers(), 20, "the pool worker to beat")
    page.goto(f"{served.url}/")  # a worker that came after the page shows on a reload
    cell = page.locator(f'tr[data-worker="{name}"] [data-field="current_tasks"]')
    expect(cell).to_have_text("(0 of 3 slots busy, processes)")
    page.evaluate("window.__notReloaded = true")
    ids = [sched.queue_task("slow", [60], group_name="pool", timeout=120).id or 0 for _ in range(3)]
    links = cell.locator("a")

    def shown() -> dict[str, str | None]:
        return {a.inner_text(): a.get_attribute("href") for a in links.all()}

    expected = {str(i): f"{served.url}/tasks/{i}" for i in ids}
    wait_until(lambda: shown() == expected, 30, "the three running tasks to show")
    expect(cell).to_contain_text("(3 of 3 slots busy, processes)")
    assert page.evaluate("window.__notReloaded") is True
    page.reload()
    assert shown() == expected
    links.first.click()
    page.wait_for_url(re.compile(r"/tasks/\d+$"))
    assert int(page.url.rsplit("/", 1)[1]) in ids
    # leave two workers for the tests after this one
    for task_id in ids:
        sched.stop_task(task_id)
    for task_id in ids:
        wait_status(served, task_id, TaskStatus.STOPPED)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert name not in sched.get_workers()


def test_stop_a_running_task(admin_page: Any, served: Served) -> None:
    page = admin_page
    task_id = served.sched.queue_task("slow", [60], timeout=120).id or 0
    wait_status(served, task_id, TaskStatus.RUNNING)
    page.goto(f"{served.url}/tasks/{task_id}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#action-stop")
    wait_status(served, task_id, TaskStatus.STOPPED)
    expect(status_badge(page)).to_have_text("STOPPED", timeout=20000)


def test_requeue_a_failed_task(admin_page: Any, served: Served) -> None:
    page = admin_page
    marker = served.workdir / "flaky-marker"
    task_id = served.sched.queue_task("flaky", [str(marker)]).id or 0
    wait_status(served, task_id, TaskStatus.FAILED)
    page.goto(f"{served.url}/tasks/{task_id}")
    assert "first run fails on purpose" in page.locator("#runs").inner_text()
    page.click("#action-requeue")
    assert "requeue done" in page.locator(".flash").inner_text()
    expect(status_badge(page)).to_have_text("COMPLETED", timeout=20000)
    page.goto(f"{served.url}/audit")
    assert re.search(rf"admin\s+requeue\s+task {task_id}", page.locator("#audit").inner_text())


def test_filter_the_task_list(admin_page: Any, served: Served) -> None:
    page = admin_page
    marker = served.workdir / "filter-marker"
    failing = served.sched.queue_task("flaky", [str(marker)], task_name="to-be-found").id or 0
    wait_status(served, failing, TaskStatus.FAILED)
    page.goto(f"{served.url}/tasks")
    page.select_option("select[name=status]", "FAILED")
    page.fill("input[name=q]", "to-be-found")
    page.click("#filters button[type=submit]")
    page.wait_for_url(re.compile(r".*status=FAILED.*q=to-be-found"))
    rows = page.locator("#task-list tbody tr")
    assert rows.count() == 1
    assert rows.first.get_attribute("data-task") == str(failing)


def test_task_output_is_shown_as_text(admin_page: Any, served: Served) -> None:
    page = admin_page
    task_id = served.sched.queue_task("shout", task_name=SCRIPT).id or 0
    wait_status(served, task_id, TaskStatus.COMPLETED)
    page.goto(f"{served.url}/tasks/{task_id}")
    # once as rendered by the server, once after the live update rebuilt the table
    for _ in range(2):
        assert SCRIPT in page.locator("#runs pre.output, #runs pre").first.inner_text()
        assert SCRIPT in page.locator("h1").inner_text()
        assert page.evaluate("window.pwned === undefined")
        page.wait_for_timeout(2500)
    page.goto(f"{served.url}/tasks")
    assert SCRIPT in page.locator("#task-list").inner_text()
    assert page.evaluate("window.pwned === undefined")


def test_an_action_without_csrf_token_is_refused(admin_page: Any, served: Served) -> None:
    page = admin_page
    task_id = served.sched.queue_task(
        "add", [1, 1], start_time=served.sched.store.now() + timedelta(hours=1)
    ).id
    status = page.evaluate(
        f"fetch('/api/tasks/{task_id}/stop', {{method: 'POST'}}).then(r => r.status)"
    )
    assert status == 403
    assert served.sched.store.get_task(task_id or 0).status == TaskStatus.QUEUED  # type: ignore[union-attr]
    status = page.evaluate(
        f"fetch('/api/tasks/{task_id}/stop', {{method: 'POST', headers: "
        "{'X-CSRF-Token': window.taskmill.csrfToken()}}).then(r => r.status)"
    )
    assert status == 200
    wait_status(served, task_id or 0, TaskStatus.STOPPED)


def test_queue_a_task_from_the_form(admin_page: Any, served: Served) -> None:
    page = admin_page
    page.goto(f"{served.url}/tasks/new")
    page.select_option("select[name=function]", "add")
    page.fill("textarea[name=args]", "[20, 22")
    page.click("#queue-form button[type=submit]")
    assert "/tasks/new" in page.url  # the browser refused to send invalid JSON
    page.fill("textarea[name=args]", "[20, 22]")
    page.fill("input[name=task_name]", "queued-from-browser")
    page.click("#queue-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/tasks/\d+$"))
    expect(status_badge(page)).to_have_text("COMPLETED", timeout=20000)
    assert "42" in page.locator("#runs").inner_text()


def test_live_output_streams_while_the_task_runs(admin_page: Any, served: Served) -> None:
    page = admin_page
    streams: list[str] = []
    page.on(
        "response",
        lambda r: streams.append(r.headers.get("content-type", "")) if "/output" in r.url else None,
    )
    task_id = served.sched.queue_task("chatty", [8, 1.0], sync_output=1, timeout=60).id or 0
    page.goto(f"{served.url}/tasks/{task_id}")
    page.evaluate("window.__notReloaded = true")
    live = page.locator("#live-output")
    expect(live).to_contain_text("step 3 of 8", timeout=30000)
    # still running: the text came while the run was in progress, not from its end
    assert served.sched.store.get_task(task_id).status == TaskStatus.RUNNING  # type: ignore[union-attr]
    assert SCRIPT in live.inner_text()
    assert page.evaluate("window.pwned === undefined")
    assert page.locator("#live-output script").count() == 0
    assert any(kind.startswith("text/event-stream") for kind in streams), streams
    expect(page.locator("#live-state")).to_contain_text("ended: COMPLETED", timeout=30000)
    assert "step 8 of 8" in live.inner_text()
    assert page.evaluate("window.__notReloaded") is True
    assert page.evaluate("window.pwned === undefined")


def test_dependency_graph_shows_and_follows_the_statuses(admin_page: Any, served: Served) -> None:
    page = admin_page
    sched = served.sched
    start = sched.store.now() + timedelta(seconds=3)
    with sched.store.transaction() as conn:  # no worker sees the parent without its edge
        child = sched.queue_task(
            "slow", [0.5], task_name="graph-child", start_time=start, db=conn
        ).id
        parent = sched.queue_task("add", [2, 2], task_name="graph-parent", db=conn).id
        assert child is not None and parent is not None
        JobGraph(sched, "browser-job").add_deps(parent, child, db=conn)
    page.goto(f"{served.url}/tasks/{parent}")
    graph = page.locator("#dep-graph")
    expect(graph).to_be_visible()
    child_node = graph.locator(f'[data-node="{child}"]')
    parent_node = graph.locator(f'[data-node="{parent}"]')
    assert "graph-child" in (child_node.text_content() or "")
    assert "QUEUED" in (child_node.text_content() or "")
    assert "current" in (parent_node.get_attribute("class") or "")
    assert graph.locator("path.edge.waiting").count() == 1
    page.evaluate("window.__notReloaded = true")
    expect(child_node.locator('[data-field="node-status"]')).to_have_text(
        "COMPLETED", timeout=20000
    )
    expect(graph.locator("path.edge.done")).to_have_count(1, timeout=10000)
    expect(status_badge(page)).to_have_text("COMPLETED", timeout=20000)
    assert page.evaluate("window.__notReloaded") is True
    # the parent ran only after the child had completed
    child_task, parent_task = sched.store.get_task(child), sched.store.get_task(parent)
    assert child_task is not None and parent_task is not None
    assert child_task.last_run_time < parent_task.last_run_time  # type: ignore[operator]
    child_node.click()
    page.wait_for_url(f"{served.url}/tasks/{child}")
    expect(page.locator(f'#dep-graph [data-node="{parent}"]')).to_be_visible()


def test_run_now_and_clone_from_the_task_page(admin_page: Any, served: Served) -> None:
    page = admin_page
    later = served.sched.store.now() + timedelta(hours=2)
    task_id = served.sched.queue_task("add", [20, 1], start_time=later).id or 0
    page.goto(f"{served.url}/tasks/{task_id}")
    assert "not due until" in page.locator(".why").inner_text()
    page.click("#action-run-now")
    assert f"task {task_id}: due now" in page.locator(".flash").inner_text()
    expect(status_badge(page)).to_have_text("COMPLETED", timeout=20000)
    page.click("#action-clone")
    page.wait_for_url(re.compile(r".*/tasks/\d+$"))
    clone_id = int(page.url.rsplit("/", 1)[1])
    assert clone_id != task_id
    assert f"cloned as task {clone_id}" in page.locator(".flash").inner_text()
    # the clone keeps the schedule: it waits for the same start_time, until run now
    assert "not due until" in page.locator(".why").inner_text()
    page.click("#action-run-now")
    expect(status_badge(page)).to_have_text("COMPLETED", timeout=20000)
    assert "21" in page.locator("#runs").inner_text()
    page.goto(f"{served.url}/audit")
    audit = page.locator("#audit").inner_text()
    assert re.search(rf"admin\s+run-now\s+task {task_id}", audit)
    assert re.search(rf"admin\s+clone\s+task {task_id}", audit)


def test_bulk_run_now_from_the_task_list(admin_page: Any, served: Served) -> None:
    page = admin_page
    later = served.sched.store.now() + timedelta(hours=2)
    ids = [
        served.sched.queue_task("add", [i, i], task_name="bulk-later", start_time=later).id or 0
        for i in range(2)
    ]
    page.goto(f"{served.url}/tasks?q=bulk-later")
    page.check("#select-all")
    page.select_option("#bulk-action", "run-now")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#bulk-apply")
    page.wait_for_url(re.compile(r".*/tasks\?q=bulk-later$"))
    assert "run-now: 2 of 2 task(s) done" in page.locator(".flash").inner_text()
    for task_id in ids:
        wait_status(served, task_id, TaskStatus.COMPLETED)


def test_screenshots_of_the_main_pages(page: Any, served: Served, tmp_path: Path) -> None:
    """Writes docs/screenshots/ with TASKMILL_UPDATE_SCREENSHOTS=1 (else a temporary
    directory, so that a test run leaves the work tree alone)."""
    update = os.environ.get("TASKMILL_UPDATE_SCREENSHOTS", "") not in ("", "0")
    shots = SCREENSHOTS if update else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    page.goto(f"{served.url}/login")
    page.screenshot(path=str(shots / "login.png"))
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{served.url}/")
    page.wait_for_timeout(500)  # the first poll has drawn the chart
    page.screenshot(path=str(shots / "overview.png"), full_page=True)
    page.goto(f"{served.url}/tasks")
    page.screenshot(path=str(shots / "tasks.png"), full_page=True)
    # a task in the middle of a small job, while it runs and prints
    sched = served.sched
    with sched.store.transaction() as conn:  # no worker sees a task without its edges
        fetch = sched.queue_task("add", [1, 2], task_name="fetch-data", db=conn).id or 0
        report = (
            sched.queue_task(
                "chatty", [6, 1.0], task_name="build-report", sync_output=1, db=conn
            ).id
            or 0
        )
        mail = sched.queue_task("add", [3, 4], task_name="mail-report", db=conn).id or 0
        archive = sched.queue_task("add", [5, 6], task_name="archive", db=conn).id or 0
        job = JobGraph(sched, "nightly")
        job.add_deps(report, fetch, db=conn)
        job.add_deps(mail, report, db=conn)
        job.add_deps(archive, report, db=conn)
    page.goto(f"{served.url}/tasks/{report}")
    expect(page.locator("#live-output")).to_contain_text("step 3 of 6", timeout=30000)
    page.screenshot(path=str(shots / "task.png"), full_page=True)
    wait_status(served, archive, TaskStatus.COMPLETED, timeout=40)
    page.goto(f"{served.url}/audit")
    page.screenshot(path=str(shots / "audit.png"), full_page=True)
    for name in ("login", "overview", "tasks", "task", "audit"):
        assert (shots / f"{name}.png").stat().st_size > 5000
