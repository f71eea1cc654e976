"""Storage backends; `open_store` picks the one that fits a database URL."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, make_url

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
        kwargs: dict[str, object] = {}
        if url.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
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
    if engine.dialect.name == "sqlite":
        return SQLiteStore(engine, local_time=local_time)
    if engine.dialect.name == "postgresql":
        return PostgresStore(engine, local_time=local_time)
    if engine.dialect.name in ("mysql", "mariadb"):
        return MySQLStore(engine, local_time=local_time)
    return Store(engine, local_time=local_time)
