"""Plain, read-only records of rows, as returned by the public API.

Rows come back with times as aware UTC datetimes and encoded columns decoded
(booleans, list:string). Attribute access matches pydal rows (`task.status`)
and `task["status"]` works too, since web2py code often indexes rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any, Self

_FIELD_NAMES: dict[type, frozenset[str]] = {}


class _Record:
    """Shared pydal-like behaviour of the records below."""

    def __getitem__(self, key: str) -> Any:
        if key not in self._field_names():
            raise KeyError(key)
        return getattr(self, key)

    @classmethod
    def _field_names(cls) -> frozenset[str]:
        names = _FIELD_NAMES.get(cls)
        if names is None:  # computed once per class: rows are built on hot paths
            names = _FIELD_NAMES[cls] = frozenset(f.name for f in fields(cls))  # type: ignore[arg-type]
        return names

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> Self:
        names = cls._field_names()
        return cls(**{k: v for k, v in row.items() if k in names})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload,no-any-return]


@dataclass(frozen=True, slots=True)
class Task(_Record):
    id: int
    application_name: str | None = None
    task_name: str | None = None
    group_name: str | None = None
    status: str | None = None
    broadcast: bool | None = False
    function_name: str | None = None
    uuid: str | None = None
    args: str | None = "[]"
    vars: str | None = "{}"
    enabled: bool | None = True
    start_time: datetime | None = None
    next_run_time: datetime | None = None
    stop_time: datetime | None = None
    repeats: int | None = 1
    retry_failed: int | None = 0
    period: int | None = 60
    prevent_drift: bool | None = False
    cronline: str | None = None
    timeout: int | None = 60
    sync_output: int | None = 0
    times_run: int | None = 0
    times_failed: int | None = 0
    last_run_time: datetime | None = None
    assigned_worker_name: str | None = ""
    priority: int | None = 0
    retry_backoff: int | None = 0


@dataclass(frozen=True, slots=True)
class Run(_Record):
    id: int
    task_id: int | None = None
    status: str | None = None
    start_time: datetime | None = None
    stop_time: datetime | None = None
    run_output: str | None = None
    run_result: str | None = None
    traceback: str | None = None
    worker_name: str | None = None


@dataclass(frozen=True, slots=True)
class Worker(_Record):
    worker_name: str
    id: int | None = None
    first_heartbeat: datetime | None = None
    last_heartbeat: datetime | None = None
    status: str | None = None
    is_ticker: bool | None = False
    group_names: list[str] | None = None
    worker_stats: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class TaskReport:
    """What task_status(ref, output=True) returns, shaped like web2py's."""

    scheduler_task: Task
    scheduler_run: Run | None
    result: Any

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


@dataclass(frozen=True, slots=True)
class Queued:
    """The result of queue_task: web2py's `Storage(id=..., uuid=..., errors=...)`."""

    id: int | None
    uuid: str | None
    errors: dict[str, str]

    def __getitem__(self, key: str) -> Any:
        if key not in ("id", "uuid", "errors"):
            raise KeyError(key)
        return getattr(self, key)


@dataclass(frozen=True, slots=True)
class QueuedMany:
    """The result of queue_tasks: how many were queued and their uuids, in the order
    of the calls; with errors (keyed by option, or "calls[i].args"/"calls[i].vars")
    nothing at all was queued."""

    count: int
    uuids: list[str]
    errors: dict[str, str]


def decode_json_text(text: str | None) -> Any:
    """Decode a JSON column; an empty column is None rather than an error."""
    if text is None or text == "":
        return None
    return json.loads(text)
