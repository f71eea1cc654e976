"""Query parameters shared by the pages and the API: task filters and keyset pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from taskmill.states import TaskStatus
from taskmill.store.admin import TaskFilter
from taskmill.validation import MAX_INT

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def filter_from(params: Any) -> TaskFilter:
    def get(name: str) -> str | None:
        value = params.get(name)
        return value.strip() or None if isinstance(value, str) else None

    status = get("status")
    if status is not None and status not in {s.value for s in TaskStatus}:
        status = None
    return TaskFilter(
        status=status, group_name=get("group"), function_name=get("function"), text=get("q")
    )


def filter_query(task_filter: TaskFilter) -> str:
    pairs = {
        "status": task_filter.status,
        "group": task_filter.group_name,
        "function": task_filter.function_name,
        "q": task_filter.text,
    }
    return urlencode({k: v for k, v in pairs.items() if v})


def page_params(params: Any) -> tuple[int | None, int | None, int]:
    limit = int_or_none(params.get("limit")) or PAGE_SIZE
    return (
        int_or_none(params.get("before")),
        int_or_none(params.get("after")),
        max(1, min(limit, MAX_PAGE_SIZE)),
    )


def int_or_none(value: Any) -> int | None:
    """A whole number that fits the id columns, else None (a bigger one names no row,
    and the drivers refuse to bind it)."""
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
        return number if number <= MAX_INT else None
    return None


def is_row_id(value: int) -> bool:
    """Could a row have this id? (Path parameters are any whole number.)"""
    return 0 < value <= MAX_INT
