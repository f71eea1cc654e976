"""The audit log: who did what to which task or worker, from the dashboard or the API.

A taskmill table of its own (`taskmill_audit`), not one of web2py's four, so it has
its own MetaData and is created by whoever writes to it. Times are naive UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
)

from taskmill.timing import utc_now

audit_metadata = MetaData()

taskmill_audit = Table(
    "taskmill_audit",
    audit_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", DateTime, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(512), nullable=False),
    Column("detail", Text),
    sqlite_autoincrement=True,
)
Index("ix_taskmill_audit_created", taskmill_audit.c.created_at)

A = taskmill_audit


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    created_at: datetime
    actor: str
    action: str
    target: str
    detail: str | None


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_table(self) -> None:
        audit_metadata.create_all(self.engine, checkfirst=True)

    def record(self, actor: str, action: str, target: str, detail: str | None = None) -> int:
        stamp = utc_now().replace(tzinfo=None)
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(A).values(
                    created_at=stamp,
                    actor=actor[:255],
                    action=action[:64],
                    target=target[:512],
                    detail=detail,
                )
            )
            key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def recent(self, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
        """The newest entries first; `before` pages back by id."""
        query = select(A).order_by(A.c.id.desc()).limit(limit)
        if before is not None:
            query = query.where(A.c.id < before)
        with self.engine.connect() as conn:
            return [
                AuditEntry(
                    id=row.id,
                    created_at=row.created_at.replace(tzinfo=UTC),
                    actor=row.actor,
                    action=row.action,
                    target=row.target,
                    detail=row.detail,
                )
                for row in conn.execute(query)
            ]
