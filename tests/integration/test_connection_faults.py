"""Connection faults with real worker processes: the database goes away under them.

The servers on this machine are shared, so nothing here restarts them. Instead the
test kills the server side of every connection to its own database, as a restart,
a failover or a network cut would (PostgreSQL: pg_terminate_backend; MariaDB: KILL),
while workers drain a queue. SQLite has no connections to kill: there a long writer
locks the file past the workers' busy timeout.

Tasks record each run in an audit table kept in a *separate* database, so the kills
hit the workers' connections only and the audit counts say how often each task
really ran.
"""

from __future__ import annotations

import collections
import contextlib
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from harness import Cluster, WorkerProcess, cluster_for_test, wait_for
from lifecycle_tasks import AUDIT_DB_ENV, TASKS, audit_counts, create_audit_table

from conftest import MysqlServer, PostgresServer
from taskmill import RunStatus, TaskStatus

APP = "lifecycle_app:sched"
HEARTBEAT = 1.0
TASK_COUNT = 200
KILLS = 8
KILL_EVERY = 0.3
DB_TIMEOUT = 3.0
EXIT_DATABASE = 3
#: what a worker logs when a step succeeds again after database errors
RECOVERED = re.compile(r"database reachable again after ([0-9.]+) s")


@dataclass
class ServerDatabase:
    """The test's database on a shared server, and the means to cut it off."""

    backend: str
    url: str
    server: PostgresServer | MysqlServer

    @property
    def name(self) -> str:
        name = sa.make_url(self.url).database
        assert name
        return name

    @contextlib.contextmanager
    def killer(self) -> Iterator[Callable[[], int]]:
        """A function that ends every server-side connection to the test database
        (but the one it uses itself) and returns how many it ended."""
        with contextlib.closing(self.server.admin_connection()) as conn:
            if isinstance(self.server, PostgresServer):

                def kill() -> int:
                    rows = conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()",
                        (self.name,),
                    ).fetchall()
                    return sum(1 for (ended,) in rows if ended)

            else:
                import pymysql

                def kill() -> int:
                    ended = 0
                    with conn.cursor() as cur:
                        cur.execute(
                            "SELECT id FROM information_schema.processlist "
                            "WHERE db = %s AND id <> CONNECTION_ID()",
                            (self.name,),
                        )
                        for (connection_id,) in cur.fetchall():
                            # it may have ended on its own meanwhile ("Unknown thread id")
                            with contextlib.suppress(pymysql.Error):
                                cur.execute(f"KILL {int(connection_id)}")
                                ended += 1
                    return ended

            yield kill

    def listening_connections(self) -> int:
        """PostgreSQL backends of the test database waiting in LISTEN."""
        assert isinstance(self.server, PostgresServer)
        with contextlib.closing(self.server.admin_connection()) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND query ILIKE %s",
                (self.name, "LISTEN %"),
            ).fetchone()
        return int(row[0]) if row else 0

    def drop(self) -> None:
        """Drop the database while workers use it (the fixture's drop then finds none)."""
        self.server.drop_database(self.name)


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def server_db(request: pytest.FixtureRequest) -> ServerDatabase:
    url: str = request.getfixturevalue(f"{request.param}_url")
    server: PostgresServer | MysqlServer = request.getfixturevalue(f"{request.param}_server")
    return ServerDatabase(request.param, url, server)


@dataclass
class Audit:
    url: str
    engine: sa.Engine

    def counts(self) -> dict[int, int]:
        return audit_counts(self.engine)


@pytest.fixture
def audit_db(server_db: ServerDatabase, new_db_url: Callable[[str], str]) -> Iterator[Audit]:
    url = new_db_url(server_db.backend)
    engine = sa.create_engine(url, pool_pre_ping=True)
    create_audit_table(engine)
    try:
        yield Audit(url, engine)
    finally:
        engine.dispose()


@pytest.fixture
def cluster(
    request: pytest.FixtureRequest, server_db: ServerDatabase, audit_db: Audit
) -> Iterator[Cluster]:
    env = {AUDIT_DB_ENV: audit_db.url}
    with cluster_for_test(
        request, server_db.url, app=APP, tasks=TASKS, heartbeat=HEARTBEAT, env=env
    ) as c:
        yield c


# ------------------------------------------------------------------ helpers


def queue_audited_tasks(cluster: Cluster, count: int) -> list[int]:
    """Mostly 20 ms tasks (results batched, never marked RUNNING), every tenth one
    150 ms (marked RUNNING with a run row first): both ways a run is recorded."""
    with cluster.sched.store.engine.begin() as conn:
        queued = [
            cluster.sched.queue_task(
                "append_audit", [f"task {i}", 0.15 if i % 10 == 0 else 0.02], db=conn
            )
            for i in range(count)
        ]
    assert all(q.errors == {} for q in queued)
    return [q.id for q in queued if q.id is not None]


def status_counts(cluster: Cluster) -> collections.Counter[str]:
    task = cluster.sched.tables.scheduler_task
    with cluster.sched.store.engine.connect() as conn:
        rows = conn.execute(sa.select(task.c.status, sa.func.count()).group_by(task.c.status))
        return collections.Counter({status: count for status, count in rows})


def wait_all_completed(cluster: Cluster, count: int, timeout: float = 60) -> None:
    def completed() -> bool:
        return status_counts(cluster)[TaskStatus.COMPLETED.value] == count

    try:
        cluster.wait_for(completed, timeout, interval=0.2, what=f"{count} tasks to complete")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; statuses: {dict(status_counts(cluster))}") from None


def run_rows(cluster: Cluster) -> list[Any]:
    run = cluster.sched.tables.scheduler_run
    with cluster.sched.store.engine.connect() as conn:
        return list(conn.execute(sa.select(run).order_by(run.c.id)))


def reconnect_times(workers: list[WorkerProcess]) -> list[float]:
    return [float(m) for w in workers for m in RECOVERED.findall(w.log())]


def pickup_seconds(cluster: Cluster) -> float:
    """How long a task queued to idle workers takes from queue_task to COMPLETED."""
    started = time.monotonic()
    queued = cluster.sched.queue_task("add", [20, 22])
    assert queued.id is not None
    cluster.wait_status(queued.id, TaskStatus.COMPLETED, timeout=10)
    return time.monotonic() - started


# ------------------------------------------------------------------ the tests


def test_workers_ride_out_repeated_connection_kills_and_lose_no_task(
    cluster: Cluster, server_db: ServerDatabase, audit_db: Audit
) -> None:
    workers = cluster.start_workers(2)
    task_ids = queue_audited_tasks(cluster, TASK_COUNT)
    # start cutting once the drain is under way, so the kills land mid-transaction
    wait_for(lambda: len(audit_db.counts()) >= 20, timeout=20, what="the drain to start")

    ended: list[int] = []
    with server_db.killer() as kill:
        for _ in range(KILLS):
            ended.append(kill())
            time.sleep(KILL_EVERY)
    done_during_kills = len(audit_db.counts())

    wait_all_completed(cluster, TASK_COUNT)
    counts = audit_db.counts()
    runs = run_rows(cluster)
    recovered = reconnect_times(workers)
    duplicates = {task_id: n for task_id, n in counts.items() if n > 1}
    print(
        f"\n[{server_db.backend}] connections ended per kill: {ended}; "
        f"{done_during_kills}/{TASK_COUNT} tasks ran before the kills stopped; "
        f"reconnects seen by workers: {len(recovered)}, "
        f"max {max(recovered, default=0):.3f} s, "
        f"mean {sum(recovered) / max(len(recovered), 1):.3f} s; "
        f"tasks run twice: {duplicates}"
    )

    assert sum(ended) >= KILLS, "the kills must have hit the workers' connections"
    assert done_during_kills < TASK_COUNT, "the kills must land while the queue drains"
    assert status_counts(cluster) == {TaskStatus.COMPLETED.value: TASK_COUNT}
    assert sorted(counts) == sorted(task_ids), "every task ran at least once"
    # a task runs again only if a worker were taken for dead (no outage here lasts
    # three heartbeats); a recorded outcome is never lost, so none ran twice
    assert duplicates == {}
    doubled = [r for r in runs if sum(1 for o in runs if o.task_id == r.task_id) > 1]
    assert doubled == [], "one run row per task"
    assert {r.status for r in runs} == {RunStatus.COMPLETED.value}
    assert all(w.alive() for w in workers)
    assert set(cluster.sched.get_workers()) == {w.name for w in workers}
    assert all(t < 5.0 for t in recovered), recovered


@pytest.mark.postgres
@pytest.mark.parametrize("server_db", ["postgres"], indirect=True)
def test_listen_connection_comes_back_after_kills_so_pickup_stays_instant(
    request: pytest.FixtureRequest, server_db: ServerDatabase
) -> None:
    # Only PostgreSQL wakes idle workers (LISTEN/NOTIFY); MariaDB workers poll. A
    # 5 s heartbeat keeps idle workers from looking on their own within the second
    # (they wake for each heartbeat): a pickup under a second needs the NOTIFY.
    with cluster_for_test(request, server_db.url, app=APP, tasks=TASKS, heartbeat=5.0) as cluster:
        workers = cluster.start_workers(2)
        cluster.wait_for(lambda: server_db.listening_connections() == 2, timeout=10)
        assert max(pickup_seconds(cluster) for _ in range(2)) < 1.0

        with server_db.killer() as kill:
            for _ in range(5):
                kill()
                time.sleep(KILL_EVERY)
            # queued while the listeners may still be down: a NOTIFY they missed
            # must not leave the task waiting for the 5 s safety poll
            first = pickup_seconds(cluster)

        cluster.wait_for(
            lambda: server_db.listening_connections() == 2,
            timeout=10,
            what="both LISTEN connections to be back",
        )
        later = [pickup_seconds(cluster) for _ in range(3)]
        print(f"\n[postgres] pickup right after the kills {first:.3f} s, later {later}")
        assert first < 1.0
        assert max(later) < 1.0
        assert all(w.alive() for w in workers)


def test_worker_exits_3_with_a_clear_message_when_its_database_is_gone(
    cluster: Cluster, server_db: ServerDatabase
) -> None:
    worker = cluster.start_worker(args=["--db-timeout", str(DB_TIMEOUT)])

    dropped_at = time.monotonic()
    server_db.drop()

    code = worker.wait(timeout=DB_TIMEOUT + 15)
    elapsed = time.monotonic() - dropped_at
    print(f"\n[{server_db.backend}] worker exited {code} after {elapsed:.2f} s")
    assert code == EXIT_DATABASE
    assert f"database unreachable for more than {DB_TIMEOUT:g} s" in worker.log()
    # the first failure comes within a heartbeat; then db_timeout, plus backoff slack
    assert DB_TIMEOUT <= elapsed < DB_TIMEOUT + HEARTBEAT + 3.0


def test_api_calls_after_the_server_ended_pooled_connections_just_work(
    server_db: ServerDatabase,
) -> None:
    """A web app's queue_task must not fail once per pooled connection after a
    database restart: dead pooled connections are noticed at checkout (their socket
    turned readable) and replaced, without a ping round trip on every use."""
    from taskmill import Scheduler

    sched = Scheduler(server_db.url, tasks={"noop": print})
    sched.create_tables()
    try:
        # fill the pool with several idle connections
        with sched.store.engine.connect(), sched.store.engine.connect():
            pass
        assert sched.queue_task("noop").id is not None
        for _ in range(3):
            with server_db.killer() as kill:
                assert kill() >= 1
            time.sleep(0.2)  # let the server's farewell reach the client sockets
            queued = sched.queue_task("noop")
            assert queued.errors == {} and queued.id is not None
            status = sched.task_status(queued.id)
            assert status is not None and status.status == "QUEUED"
            with sched.store.engine.connect(), sched.store.engine.connect():
                pass  # every pooled connection was replaced, not just one
    finally:
        sched.store.dispose()


# ------------------------------------------------------------------ SQLite

#: the workers' busy timeout (pysqlite's `timeout` URL parameter): a write waiting
#: on the long writer below fails after this long instead of waiting it out
SQLITE_BUSY = 0.3


@pytest.fixture
def sqlite_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    url = f"sqlite:///{tmp_path / 'tasks.db'}?timeout={SQLITE_BUSY}"
    audit_url = f"sqlite:///{tmp_path / 'audit.db'}"
    env = {AUDIT_DB_ENV: audit_url}
    with cluster_for_test(request, url, app=APP, tasks=TASKS, heartbeat=HEARTBEAT, env=env) as c:
        yield c


@contextlib.contextmanager
def long_writer(cluster: Cluster) -> Iterator[None]:
    """Hold the database's write lock while the body runs, as a long batch job or
    a migration would."""
    database = cluster.sched.store.engine.url.database
    assert database
    conn = sqlite3.connect(database, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def sqlite_audit_counts(cluster: Cluster) -> dict[int, int]:
    url = cluster.extra_env[AUDIT_DB_ENV]
    engine = sa.create_engine(url)
    try:
        return audit_counts(engine) if sa.inspect(engine).has_table("audit") else {}
    finally:
        engine.dispose()


def test_sqlite_workers_recover_when_a_long_writer_locks_the_database(
    sqlite_cluster: Cluster,
) -> None:
    cluster = sqlite_cluster
    workers = cluster.start_workers(2)
    task_ids = queue_audited_tasks(cluster, 100)
    wait_for(lambda: len(sqlite_audit_counts(cluster)) >= 10, timeout=20, what="the drain")

    with long_writer(cluster):
        time.sleep(2.0)  # the outage
    done_by_unlock = len(sqlite_audit_counts(cluster))

    wait_all_completed(cluster, 100)
    counts = sqlite_audit_counts(cluster)
    recovered = reconnect_times(workers)
    print(f"\n[sqlite] {done_by_unlock}/100 tasks ran by the unlock; recovered after {recovered} s")
    assert done_by_unlock < 100
    assert recovered, "the lock must have made the workers' writes fail"
    assert status_counts(cluster) == {TaskStatus.COMPLETED.value: 100}
    assert counts == dict.fromkeys(task_ids, 1)
    runs = run_rows(cluster)
    assert sorted(r.task_id for r in runs) == sorted(task_ids)
    assert all(w.alive() for w in workers)


def test_sqlite_worker_exits_3_when_the_database_stays_locked_past_db_timeout(
    sqlite_cluster: Cluster,
) -> None:
    worker = sqlite_cluster.start_worker(args=["--db-timeout", str(DB_TIMEOUT)])

    with long_writer(sqlite_cluster):
        locked_at = time.monotonic()
        code = worker.wait(timeout=DB_TIMEOUT + 5)
        elapsed = time.monotonic() - locked_at

    assert code == EXIT_DATABASE
    assert f"database unreachable for more than {DB_TIMEOUT:g} s" in worker.log()
    assert "database is locked" in worker.log()
    # the worker's own decision, from its log: db_timeout after the first failure
    assert DB_TIMEOUT <= give_up_seconds(worker.log()) < DB_TIMEOUT + 2.0
    # and the process is gone soon after (shutting down its child takes a moment
    # more on a loaded machine)
    assert DB_TIMEOUT <= elapsed < DB_TIMEOUT + HEARTBEAT + 6.0


def give_up_seconds(log: str) -> float:
    """Seconds between a worker's first database error and its giving up."""
    stamps = [
        datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
        for line in log.splitlines()
        if "database error" in line or "giving up" in line
    ]
    assert len(stamps) >= 2, log
    return (stamps[-1] - stamps[0]).total_seconds()
