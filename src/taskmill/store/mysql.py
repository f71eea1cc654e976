"""MariaDB / MySQL: SKIP LOCKED claims and adaptive polling.

There is no NOTIFY, so an idle worker polls with a cheap indexed query, every
few milliseconds right after work and less often as it stays idle. Claims lock
the due rows they read with FOR UPDATE SKIP LOCKED (MariaDB >= 10.6, MySQL 8),
so concurrent workers skip each other's rows instead of waiting on them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, text

from taskmill.store.base import Store


class MySQLStore(Store):
    poll_interval = 0.02

    def _database_utc_now(self, conn: Connection) -> datetime | None:
        value = conn.execute(text("SELECT UTC_TIMESTAMP(6)")).scalar()
        return value.replace(tzinfo=UTC) if isinstance(value, datetime) else None
