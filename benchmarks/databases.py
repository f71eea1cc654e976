"""The databases the benchmarks run on: SQLite files and the local servers.

Every workload gets fresh tables: a new file in the run's temporary directory for
SQLite; on PostgreSQL and MariaDB/MySQL a new `tmbench_<hex>` database per run and
backend (dropped at its end, and at exit for any left behind) whose tables are emptied
between workloads (TRUNCATE: new storage, no dead rows, ids from 1; the connections
of the previous workload are ended first). The tables are made by taskmill's own
`create_tables`, so they carry its indexes.

The servers default to the local ones the test suite uses; override them with
admin URLs (the database part is ignored):

    TASKMILL_BENCH_POSTGRES=postgresql://postgres@127.0.0.1:5432/postgres
    TASKMILL_BENCH_MYSQL=mysql://root@127.0.0.1:3306/
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from taskmill import Scheduler

POSTGRES_ADMIN = os.environ.get(
    "TASKMILL_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
MYSQL_ADMIN = os.environ.get("TASKMILL_BENCH_MYSQL", "mysql://root@127.0.0.1:3306/")
CONNECT_TIMEOUT = 3


def _tasks() -> dict[str, Any]:
    import bench_app

    return bench_app.TASKS


@dataclass
class Db:
    """One fresh database of one backend, and a directory for its process logs."""

    backend: Backend
    directory: Path
    name: str  # the file path for SQLite, the database name on a server

    @property
    def url(self) -> str:
        return self.backend.url(self.name)

    @property
    def path(self) -> Path:
        """The SQLite file (SQLite only)."""
        return Path(self.name)

    @property
    def log(self) -> Path:
        return self.directory / "processes.log"

    def scheduler(self) -> Scheduler:
        return Scheduler(self.url, tasks=_tasks())

    def connect(self) -> Any:
        """A plain DB-API connection (autocommit) for counting and admin statements."""
        return self.backend.connect(self.name)

    def count(self, conn: Any, sql: str) -> int:
        cursor = conn.cursor()
        try:
            cursor.execute(sql)
            return int(cursor.fetchone()[0])
        finally:
            cursor.close()

    def execute(self, conn: Any, sql: str, params: Any = None) -> Any:
        cursor = conn.cursor()
        try:
            if params is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else None
        finally:
            cursor.close()

    def server_pids(self, conn: Any) -> list[int]:
        """Server processes doing this database's work (for CPU accounting)."""
        return self.backend.server_pids(self, conn)

    def drop(self) -> None:
        self.backend.drop(self.name)

    def reset(self, directory: Path) -> Db:
        """The same database with empty tables, for a workload logging to `directory`."""
        directory.mkdir(parents=True)
        self.backend.truncate(self.name)
        return Db(self.backend, directory, self.name)


class Backend:
    """What differs between databases, for the harness (not for taskmill)."""

    name = ""
    title = ""
    #: placeholder style of the DB-API driver
    param = "?"

    def url(self, name: str) -> str:
        raise NotImplementedError

    def unavailable(self) -> str | None:
        """Why this backend cannot be benchmarked here, or None."""
        return None

    def version(self) -> str:
        raise NotImplementedError

    def create(self, tmp: Path, label: str) -> Db:
        directory = tmp / f"{self.name}-{label}"
        directory.mkdir(parents=True)
        db = Db(self, directory, self._create_database(directory))
        sched = db.scheduler()
        sched.create_tables()
        sched.store.dispose()
        return db

    def _create_database(self, directory: Path) -> str:
        raise NotImplementedError

    def connect(self, name: str) -> Any:
        raise NotImplementedError

    def drop(self, name: str) -> None:
        """Remove a database made by `create` (SQLite: the run's directory goes)."""

    def server_pids(self, db: Db, conn: Any) -> list[int]:
        return []

    def truncate(self, name: str) -> None:
        raise NotImplementedError


TABLES = ("scheduler_run", "scheduler_task_deps", "scheduler_task", "scheduler_worker")


class SQLiteBackend(Backend):
    name = "sqlite"
    title = "SQLite"

    def url(self, name: str) -> str:
        return f"sqlite:///{name}"

    def version(self) -> str:
        return sqlite3.sqlite_version

    def _create_database(self, directory: Path) -> str:
        return str(directory / "tasks.db")

    def connect(self, name: str) -> Any:
        return sqlite3.connect(name, timeout=30, isolation_level=None)


class _ServerBackend(Backend):
    admin_url = ""

    def __init__(self) -> None:
        self._created: set[str] = set()
        atexit.register(self.drop_all)

    def _admin(self) -> Any:
        raise NotImplementedError

    def unavailable(self) -> str | None:
        try:
            with contextlib.closing(self._admin()):
                return None
        except ImportError as exc:
            return f"driver not installed ({exc})"
        except Exception as exc:  # any connection error
            where = make_url(self.admin_url).render_as_string(hide_password=True)
            return f"{where}: {str(exc).strip().splitlines()[0]}"

    def _create_database(self, directory: Path) -> str:
        name = f"tmbench_{secrets.token_hex(6)}"
        with contextlib.closing(self._admin()) as conn:
            self._create_statement(conn, name)
        self._created.add(name)
        return name

    def _create_statement(self, conn: Any, name: str) -> None:
        raise NotImplementedError

    def drop_all(self) -> None:
        for name in sorted(self._created):
            with contextlib.suppress(Exception):
                self.drop(name)


class PostgresBackend(_ServerBackend):
    name = "postgres"
    title = "PostgreSQL"
    param = "%s"

    def __init__(self, admin_url: str = POSTGRES_ADMIN) -> None:
        super().__init__()
        self.admin_url = admin_url
        self._url = make_url(admin_url)

    def _params(self, database: str) -> dict[str, Any]:
        u = self._url
        params: dict[str, Any] = {
            "host": u.host or "127.0.0.1",
            "port": u.port or 5432,
            "user": u.username or "postgres",
            "dbname": database,
            "connect_timeout": CONNECT_TIMEOUT,
        }
        if u.password:
            params["password"] = u.password
        return params

    def _admin(self) -> Any:
        import psycopg

        return psycopg.connect(**self._params(self._url.database or "postgres"), autocommit=True)

    def url(self, name: str) -> str:
        base = self._url.set(drivername="postgresql+psycopg", database=name)
        return base.render_as_string(hide_password=False)

    def dsn(self, name: str) -> str:
        """A libpq connection string for plain psycopg (the baseline's processes)."""
        return " ".join(f"{k}={v}" for k, v in self._params(name).items())

    def version(self) -> str:
        with contextlib.closing(self._admin()) as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]

    def settings(self) -> dict[str, str]:
        wanted = ("fsync", "synchronous_commit", "shared_buffers", "wal_sync_method")
        with contextlib.closing(self._admin()) as conn:
            rows = conn.execute(
                "SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s)", [list(wanted)]
            ).fetchall()
        return {name: f"{setting}{' x ' + unit if unit else ''}" for name, setting, unit in rows}

    def _create_statement(self, conn: Any, name: str) -> None:
        conn.execute(f'CREATE DATABASE "{name}"')

    def connect(self, name: str) -> Any:
        import psycopg

        return psycopg.connect(**self._params(name), autocommit=True)

    def drop(self, name: str) -> None:
        # FORCE ends the connections a workload left behind (pools, killed workers)
        with contextlib.closing(self._admin()) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._created.discard(name)

    def truncate(self, name: str) -> None:
        with contextlib.closing(self.connect(name)) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")

    def server_pids(self, db: Db, conn: Any) -> list[int]:
        rows = db.execute(
            conn,
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (db.name,),
        )
        return [int(pid) for (pid,) in rows or []]


class MySQLBackend(_ServerBackend):
    name = "mysql"
    title = "MariaDB"
    param = "%s"

    def __init__(self, admin_url: str = MYSQL_ADMIN) -> None:
        super().__init__()
        self.admin_url = admin_url
        self._url = make_url(admin_url)
        self._pid: int | None = None

    def _params(self, database: str | None) -> dict[str, Any]:
        u = self._url
        params: dict[str, Any] = {
            "host": u.host or "127.0.0.1",
            "port": u.port or 3306,
            "user": u.username or "root",
            "password": u.password or "",
            "connect_timeout": CONNECT_TIMEOUT,
            "charset": "utf8mb4",
            "autocommit": True,
        }
        if database:
            params["database"] = database
        return params

    def _admin(self) -> Any:
        import pymysql

        return pymysql.connect(**self._params(None))

    def url(self, name: str) -> str:
        base = self._url.set(drivername="mysql+pymysql", database=name)
        return base.update_query_dict({"charset": "utf8mb4"}).render_as_string(hide_password=False)

    def version(self) -> str:
        with contextlib.closing(self._admin()) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            return str(cursor.fetchone()[0])

    def settings(self) -> dict[str, str]:
        wanted = (
            "innodb_flush_log_at_trx_commit",
            "innodb_buffer_pool_size",
            "sync_binlog",
            "log_bin",
        )
        with contextlib.closing(self._admin()) as conn, conn.cursor() as cursor:
            cursor.execute("SHOW GLOBAL VARIABLES WHERE Variable_name IN %s", (wanted,))
            return {str(k): str(v) for k, v in cursor.fetchall()}

    def _create_statement(self, conn: Any, name: str) -> None:
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")

    def connect(self, name: str) -> Any:
        import pymysql

        return pymysql.connect(**self._params(name))

    def drop(self, name: str) -> None:
        import pymysql

        with contextlib.closing(self._admin()) as conn, conn.cursor() as cursor:
            # DROP DATABASE waits for the metadata locks of open connections: end them
            cursor.execute(
                "SELECT id FROM information_schema.processlist "
                "WHERE db = %s AND id <> CONNECTION_ID()",
                (name,),
            )
            for (connection_id,) in cursor.fetchall():
                with contextlib.suppress(pymysql.Error):
                    cursor.execute(f"KILL {int(connection_id)}")
            cursor.execute("SET SESSION lock_wait_timeout = 30")
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        self._created.discard(name)

    def truncate(self, name: str) -> None:
        import pymysql

        with contextlib.closing(self.connect(name)) as conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM information_schema.processlist "
                "WHERE db = %s AND id <> CONNECTION_ID()",
                (name,),
            )
            for (connection_id,) in cursor.fetchall():
                with contextlib.suppress(pymysql.Error):
                    cursor.execute(f"KILL {int(connection_id)}")
            cursor.execute("SET SESSION lock_wait_timeout = 30")
            cursor.execute("SET SESSION foreign_key_checks = 0")
            for table in TABLES:  # TRUNCATE: a new table, AUTO_INCREMENT from 1
                cursor.execute(f"TRUNCATE TABLE {table}")

    def server_pids(self, db: Db, conn: Any) -> list[int]:
        # one multi-threaded server process: its CPU includes its background
        # threads and any other client's work (the report says so)
        if self._pid is None:
            rows = db.execute(conn, "SELECT @@pid_file")
            with contextlib.suppress(OSError, ValueError, TypeError, IndexError):
                self._pid = int(Path(str(rows[0][0])).read_text().strip())
        if self._pid is None:  # a server on this machine without a readable pid file
            for entry in os.listdir("/proc"):
                comm = Path(f"/proc/{entry}/comm")
                if entry.isdigit() and comm.exists():
                    with contextlib.suppress(OSError):
                        if comm.read_text().strip() in ("mariadbd", "mysqld"):
                            self._pid = int(entry)
                            break
        return [self._pid] if self._pid else []


BACKENDS: dict[str, type[Backend]] = {
    "sqlite": SQLiteBackend,
    "postgres": PostgresBackend,
    "mysql": MySQLBackend,
}


def backend(name: str) -> Backend:
    return BACKENDS[name]()
