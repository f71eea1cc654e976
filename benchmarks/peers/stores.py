"""Fresh storage for each peer and workload: a new PostgreSQL database (dropped after),
a new SQLite file, or a dedicated Redis db number emptied with FLUSHDB (only that one:
the machine's Redis may serve others). Runs in the peers' venv."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

POSTGRES_ADMIN = os.environ.get(
    "TASKMILL_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TASKMILL_BENCH_REDIS", "redis://127.0.0.1:6379/13")


def _admin_dsn(database: str) -> str:
    base, _, _ = POSTGRES_ADMIN.rpartition("/")
    return f"{base}/{database}"


class PostgresDatabase:
    """One `tmpeer_<label>_<hex>` database; `drop` ends its connections first."""

    def __init__(self, label: str) -> None:
        import psycopg

        self.name = f"tmpeer_{label}_{secrets.token_hex(4)}"
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.dsn = _admin_dsn(self.name)

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (self.name,),
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}"')

    @staticmethod
    def version() -> str:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]).split()[0] if row else "?"


def redis_flush(url: str = REDIS_URL) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def redis_version(url: str = REDIS_URL) -> str:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return str(client.info("server")["redis_version"])
    finally:
        client.close()


def fresh_sqlite(directory: Path, label: str) -> Path:
    path = directory / f"{label}-{secrets.token_hex(4)}.db"
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()
    return path
