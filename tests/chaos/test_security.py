"""Security: nothing stored or sent can make taskmill run code it was not given.

- No pickle, marshal, eval or exec anywhere in the package (a grep of the source);
  results, args and child messages are JSON.
- Function names are resolved only through the application's registry: an unknown
  name (also "os.system", "__import__") fails the task, as test_bad_rows.py and
  test_bad_input.py show, and nothing is imported by name from a row.
- A password in the database URL never reaches a log or an error message.

Dashboard and API authentication and CSRF are tested in tests/web/test_web_app.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from chaos_support import APP
from chaos_tasks import TASKS
from harness import Cluster, cluster_for_test

from conftest import PostgresServer
from taskmill import TaskStatus

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "taskmill"
FORBIDDEN = re.compile(
    r"\b(import\s+(pickle|cPickle|marshal|shelve|dill|cloudpickle)|"
    r"from\s+(pickle|marshal|shelve|dill|cloudpickle)\s+import|"
    r"(?<![.\w])(eval|exec)\(|__import__\(|yaml\.load\()"
)
PASSWORD = "s3cr3t-Chaos-pw"


def test_package_never_unpickles_evals_or_imports_by_name() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if FORBIDDEN.search(line) and not line.lstrip().startswith("#")
    ]
    assert found == []


def test_the_grep_would_catch_what_it_forbids() -> None:
    for line in ("import pickle", "x = eval(text)", "exec(code)", "from marshal import loads"):
        assert FORBIDDEN.search(line), line
    assert not FORBIDDEN.search("self.retrieval(x)")


@pytest.fixture
def secret_cluster(
    request: pytest.FixtureRequest, postgres_server: PostgresServer
) -> Iterator[tuple[Cluster, str]]:
    # the servers here trust local connections, so any password is accepted: it is
    # still in the URL, which is what must never be printed
    name = postgres_server.create_database()
    url = sa.make_url(postgres_server.url(name)).set(password=PASSWORD)
    try:
        with cluster_for_test(
            request, url.render_as_string(hide_password=False), app=APP, tasks=TASKS
        ) as cluster:
            yield cluster, name
    finally:
        postgres_server.drop_database(name)


@pytest.mark.postgres
def test_database_password_never_appears_in_logs_or_errors(
    secret_cluster: tuple[Cluster, str], postgres_server: PostgresServer
) -> None:
    cluster, name = secret_cluster
    worker = cluster.start_worker(args=["--db-timeout", "2"], timeout=60)
    queued = cluster.sched.queue_task("add", [1, 2])
    assert queued.id is not None
    cluster.wait_status(queued.id, TaskStatus.COMPLETED)
    postgres_server.drop_database(name)  # every step fails, then exit 3 naming the URL
    assert worker.wait(timeout=30) == 3
    cli = cluster.run_cli("workers", "--db", cluster.db_url)
    log = worker.log()
    assert "***" in log, "the URL is named, its password hidden"
    assert PASSWORD not in log
    assert cli.returncode != 0
    assert PASSWORD not in cli.stdout + cli.stderr
    assert "database unreachable for more than 2 s" in log
