"""PostgreSQL and MariaDB restarted under load: workers reconnect, nothing is lost,
nothing runs twice.

Each test starts a private server (see private_servers.py; the shared servers are never
restarted), points two workers at a database on it, and while they drain a queue stops
the server (a clean `fast` shutdown, then a crash-like `immediate` one), keeps it down
for OUTAGE seconds, and starts it again. The tasks' audit table lives on the shared
server, so it counts runs independently of the outage.

Measured and printed: how long after the server was back the queue moved again, and
the workers' own "database reachable again after X s" (X counts from their first
failed statement, so it includes the outage).
"""

from __future__ import annotations

import collections
import re
import secrets
import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from chaos_support import APP, FULL, status_counts
from chaos_tasks import TASKS, audit_rows
from harness import Cluster, cluster_for_test, wait_for
from lifecycle_tasks import AUDIT_DB_ENV, create_audit_table
from private_servers import PrivateServer, private_server

from taskmill import TaskStatus

TASK_COUNT = 300
#: pg_ctl stop modes (MariaDB: SIGTERM, SIGKILL): a clean shutdown, then a crash
MODES = ("fast", "immediate") if FULL else ("immediate",)
OUTAGE = 4.0  # longer than dead_after (3 heartbeats): no worker can beat meanwhile
RECOVERED = re.compile(r"database reachable again after ([0-9.]+) s")


#: MariaDB in the short form: where the restart once made tasks run twice
@pytest.fixture(params=["postgres", "mysql"] if FULL else ["mysql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(backend: str) -> Iterator[PrivateServer]:
    with private_server(backend) as found:
        yield found


@pytest.fixture
def audit_url(backend: str, new_db_url: Callable[[str], str]) -> str:
    url = new_db_url(backend)  # on the shared server: unaffected by the restarts
    engine = sa.create_engine(url)
    create_audit_table(engine)
    engine.dispose()
    return url


def completed(cluster: Cluster) -> int:
    return status_counts(cluster)[TaskStatus.COMPLETED.value]


def completed_or_none(cluster: Cluster) -> int | None:
    try:
        return completed(cluster)
    except sa.exc.OperationalError:
        return None


@pytest.mark.timeout(240)
def test_restarts_under_load_lose_nothing_and_workers_reconnect(
    request: pytest.FixtureRequest, backend: str, server: PrivateServer, audit_url: str
) -> None:
    name = f"tm_{secrets.token_hex(6)}"
    server.create_database(name)
    audit = sa.create_engine(audit_url)
    request.addfinalizer(audit.dispose)
    env = {AUDIT_DB_ENV: audit_url}
    with cluster_for_test(
        request, server.url(name), app=APP, tasks=TASKS, heartbeat=1.0, env=env
    ) as cluster:
        with cluster.sched.store.engine.begin() as conn:
            ids = [
                cluster.sched.queue_task("audited", [0.03], db=conn).id for _ in range(TASK_COUNT)
            ]
        workers = cluster.start_workers(2)
        resumed_after: list[float] = []
        for mode in MODES:
            before = len(audit_rows(audit))
            wait_for(
                lambda before=before: len(audit_rows(audit)) >= before + 20,
                timeout=30,
                what="the drain to go on",
            )
            server.stop(mode)
            time.sleep(OUTAGE)
            server.start()
            back = time.monotonic()
            at_start = completed_or_none(cluster)
            wait_for(
                lambda at_start=at_start: (completed_or_none(cluster) or 0) > (at_start or 0),
                timeout=30,
                interval=0.05,
                what="tasks to complete again after the restart",
            )
            resumed_after.append(time.monotonic() - back)

        cluster.wait_for(lambda: completed(cluster) == TASK_COUNT, timeout=90, interval=0.2)
        reconnects = [float(x) for w in workers for x in RECOVERED.findall(w.log())]
        counts = collections.Counter(task_id for task_id, _ in audit_rows(audit))
        print(
            f"\n[{backend}] restarts {MODES} with {OUTAGE} s down: tasks completed "
            f"again {', '.join(f'{t:.2f}' for t in resumed_after)} s after the server was "
            f"back; workers' 'reachable again after' (from their first error): "
            f"{sorted(round(x, 2) for x in reconnects)}"
        )
        assert status_counts(cluster) == {TaskStatus.COMPLETED.value: TASK_COUNT}
        assert sorted(counts) == sorted(ids), "every task ran"
        assert {t: n for t, n in counts.items() if n > 1} == {}, "no task ran twice"
        assert all(w.alive() for w in workers), "the workers rode the restarts out"
        assert reconnects, "the workers saw the outage"
        assert max(resumed_after) < 15.0
