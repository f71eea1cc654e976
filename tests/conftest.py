"""Database fixtures for every test layer.

Each test gets its own, empty database: a file in ``tmp_path`` for SQLite, and a
freshly created ``tm_<hex>`` database on the local PostgreSQL and MariaDB servers,
dropped again afterwards. The fixtures yield SQLAlchemy URLs as strings.

When a server is down, its tests are skipped on a developer's machine but fail under
``CI=true``: CI must never go green by silently skipping a backend.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

CONNECT_TIMEOUT_S = 2

POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
# Both "postgres" and "root" are superusers with trust auth on the dev/CI machines;
# "postgres" is the one every PostgreSQL installation has.
POSTGRES_USER = "postgres"
POSTGRES_ADMIN_DB = "postgres"

MYSQL_HOST = "127.0.0.1"
MYSQL_PORT = 3306
MYSQL_USER = "root"  # empty password

BACKENDS = ("sqlite", "postgres", "mysql")


def _under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _server_unavailable(server: str, error: BaseException | str) -> NoReturn:
    if _under_ci():
        pytest.fail(f"{server} is required under CI=true: {error}", pytrace=False)
    pytest.skip(f"{server} is not available ({error}); under CI=true this is a failure")


def _new_database_name() -> str:
    return f"tm_{secrets.token_hex(8)}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests that use a server directly, so ``-m "not postgres"`` deselects them.

    (``db_url`` marks its own postgres/mysql params.)
    """
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "postgres_server" in fixtures:
            item.add_marker(pytest.mark.postgres)
        if "mysql_server" in fixtures:
            item.add_marker(pytest.mark.mysql)


# ---------------------------------------------------------------- SQLite


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tasks.db'}"


# ---------------------------------------------------------------- PostgreSQL


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str

    def admin_connection(self) -> Any:
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            dbname=POSTGRES_ADMIN_DB,
            connect_timeout=CONNECT_TIMEOUT_S,
            autocommit=True,
        )

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        from psycopg import sql

        name = _new_database_name()
        with self.admin_connection() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        from psycopg import sql

        # FORCE terminates connections a test left open (an engine's pool, a worker).
        with self.admin_connection() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    """The local PostgreSQL server, checked once per session."""
    where = f"PostgreSQL at {POSTGRES_HOST}:{POSTGRES_PORT}"
    try:
        import psycopg
    except ImportError as exc:
        _server_unavailable(where, f"the psycopg driver is not installed: {exc}")
    server = PostgresServer(POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER)
    try:
        with server.admin_connection() as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        _server_unavailable(where, exc)
    return server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


# ---------------------------------------------------------------- MariaDB / MySQL


@dataclass(frozen=True)
class MysqlServer:
    host: str
    port: int
    user: str

    def admin_connection(self) -> Any:
        import pymysql

        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password="",
            connect_timeout=CONNECT_TIMEOUT_S,
            autocommit=True,
            charset="utf8mb4",
        )

    def url(self, database: str) -> str:
        return f"mysql+pymysql://{self.user}@{self.host}:{self.port}/{database}?charset=utf8mb4"

    def create_database(self) -> str:
        name = _new_database_name()
        with self.admin_connection() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        return name

    def drop_database(self, name: str) -> None:
        import pymysql

        with self.admin_connection() as conn, conn.cursor() as cur:
            # DROP DATABASE waits for metadata locks held by connections a test left
            # open (with the default lock_wait_timeout: a year), so end them first.
            cur.execute(
                "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> "
                "CONNECTION_ID()",
                (name,),
            )
            for (connection_id,) in cur.fetchall():
                # It may have ended on its own meanwhile ("Unknown thread id").
                with contextlib.suppress(pymysql.Error):
                    cur.execute(f"KILL {int(connection_id)}")
            cur.execute("SET SESSION lock_wait_timeout = 30")
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(scope="session")
def mysql_server() -> MysqlServer:
    """The local MariaDB server, checked once per session."""
    where = f"MariaDB at {MYSQL_HOST}:{MYSQL_PORT}"
    try:
        import pymysql
    except ImportError as exc:
        _server_unavailable(where, f"the PyMySQL driver is not installed: {exc}")
    server = MysqlServer(MYSQL_HOST, MYSQL_PORT, MYSQL_USER)
    try:
        with server.admin_connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    except pymysql.Error as exc:
        _server_unavailable(where, exc)
    return server


@pytest.fixture
def mysql_url(mysql_server: MysqlServer) -> Iterator[str]:
    name = mysql_server.create_database()
    try:
        yield mysql_server.url(name)
    finally:
        mysql_server.drop_database(name)


# ---------------------------------------------------------------- any backend


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
    ]
)
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database on each backend in turn: the test runs once per backend."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def db_backend(db_url: str) -> str:
    """The backend name ("sqlite", "postgres" or "mysql") of the test's ``db_url``."""
    for name, prefix in (("sqlite", "sqlite"), ("postgres", "postgresql"), ("mysql", "mysql")):
        if db_url.startswith(prefix):
            return name
    raise AssertionError(f"unknown backend in {db_url!r}")


@pytest.fixture
def new_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Factory for extra fresh databases in one test: ``new_db_url("postgres")``.

    For tests that need more than one database (isolation, copying between them).
    Every database it made is dropped when the test ends.
    """
    cleanups: list[Callable[[], None]] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            path = tmp_path / f"{_new_database_name()}.db"
            return f"sqlite:///{path}"
        if backend == "postgres":
            server: PostgresServer | MysqlServer = request.getfixturevalue("postgres_server")
        elif backend == "mysql":
            server = request.getfixturevalue("mysql_server")
        else:
            raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        name = server.create_database()
        cleanups.append(lambda: server.drop_database(name))
        return server.url(name)

    yield make
    for cleanup in reversed(cleanups):
        cleanup()
