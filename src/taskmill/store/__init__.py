"""Storage backends; `open_store` picks the one that fits a database URL."""

from __future__ import annotations

import select
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.exc import DisconnectionError

from taskmill.errors import ConfigurationError
from taskmill.store.base import Beat, Housekeeping, Listener, Store
from taskmill.store.mysql import MySQLStore
from taskmill.store.postgres import PostgresStore
from taskmill.store.sqlite import SQLiteStore

__all__ = [
    "Beat",
    "Housekeeping",
    "Listener",
    "MySQLStore",
    "PostgresStore",
    "SQLiteStore",
    "Store",
    "open_store",
]


#: seconds a PostgreSQL connection attempt may take (PyMySQL's default is 10 too)
CONNECT_TIMEOUT = 10


def open_store(target: str | Engine, *, local_time: bool = False) -> Store:
    """A store for a SQLAlchemy URL or an existing Engine."""
    if isinstance(target, Engine):
        engine = target
    else:
        if not isinstance(target, str) or not target.strip():
            raise ConfigurationError(
                "the database must be a SQLAlchemy URL such as 'sqlite:///tasks.db' or an Engine"
            )
        try:
            url = make_url(target)
        except Exception as exc:
            raise ConfigurationError(f"not a database URL: {exc}") from None
        url = _with_default_driver(url)
        kwargs: dict[str, object] = {}
        if url.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False}
        else:
            if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
                # libpq waits for the TCP timeout (minutes) on an unreachable host;
                # a worker must notice in time to honour its db_timeout
                kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
        try:
            engine = create_engine(url, **kwargs)
        except Exception as exc:
            raise ConfigurationError(
                f"cannot use database {url.render_as_string(hide_password=True)}: {exc}"
            ) from None
        if engine.dialect.name != "sqlite":
            event.listen(engine, "checkout", _refuse_closed_connection)
    if engine.dialect.name == "sqlite":
        return SQLiteStore(engine, local_time=local_time)
    if engine.dialect.name == "postgresql":
        return PostgresStore(engine, local_time=local_time)
    if engine.dialect.name in ("mysql", "mariadb"):
        return MySQLStore(engine, local_time=local_time)
    return Store(engine, local_time=local_time)


#: the driver taskmill's extras install, for URLs that name none: SQLAlchemy would
#: pick psycopg2 or mysqlclient, which are not installed; web2py's `postgres://` too
_DEFAULT_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}


def _with_default_driver(url: URL) -> URL:
    driver = _DEFAULT_DRIVERS.get(url.drivername)
    return url if driver is None else url.set(drivername=driver)


def _refuse_closed_connection(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Pessimistic disconnect handling without a round trip per checkout.

    A pooled connection sits idle with nothing to read; when the server restarts or
    kills it, the server's farewell (or the EOF) makes its socket readable. Checking
    that costs a system call instead of the `SELECT 1` that pool_pre_ping spends on
    every transaction (a third of a worker's claim round trips). Raising
    DisconnectionError makes the pool discard it and connect afresh. A peer that
    vanished without closing (a network partition) is not seen here, nor by a ping
    before its TCP timeout; the workers' db_timeout covers that case.
    """
    fd = _socket_of(dbapi_connection)
    if fd is None:
        return
    if fd < 0:
        raise DisconnectionError("the connection is closed")
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    if poller.poll(0):
        raise DisconnectionError("the server closed the connection")


def _socket_of(dbapi_connection: Any) -> int | None:
    """The connection's socket descriptor: -1 if closed, None if unknown."""
    fileno = getattr(dbapi_connection, "fileno", None)  # psycopg
    if fileno is not None:
        try:
            return int(fileno())
        except Exception:
            return -1
    if hasattr(dbapi_connection, "_sock"):  # PyMySQL keeps its socket here
        sock = dbapi_connection._sock
        return -1 if sock is None else int(sock.fileno())
    return None
