"""pydal's value encodings, without a database: list:string bars and CHAR(1) booleans.

The stored forms are checked with raw SQL on every backend in tests/store/test_store_schema.py.
"""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import sqlite

from taskmill.schema import (
    PydalBoolean,
    PydalListString,
    bar_decode,
    bar_encode,
    scheduler_task,
    scheduler_worker,
)

DIALECT = sqlite.dialect()


# ------------------------------------------------------------------ list:string


@pytest.mark.parametrize(
    ("items", "text"),
    [
        (["main"], "|main|"),
        (["main", "slow"], "|main|slow|"),
        ([], "||"),
        (["a|b"], "|a||b|"),
        (["a|b", "c"], "|a||b|c|"),
        (["x", "a||b", "y"], "|x|a||||b|y|"),
        ([""], "||"),
    ],
)
def test_bar_encode_writes_pydal_list_string(items: list[str], text: str) -> None:
    assert bar_encode(items) == text


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ("|main|", ["main"]),
        ("|main|slow|", ["main", "slow"]),
        ("|a||b|c|", ["a|b", "c"]),
        ("||", []),
        ("", []),
        (None, []),
        (" |main| ", ["main"]),
        ("|a||b|", ["a|b"]),
    ],
)
def test_bar_decode_reads_pydal_list_string(text: str | None, items: list[str]) -> None:
    assert bar_decode(text) == items


@pytest.mark.parametrize(
    "items",
    [
        ["main"],
        ["main", "slow", "reports"],
        ["a|b", "c"],
        ["c", "a|b"],
        ["x", "a||b", "y"],
        ["a|"],
        ["|a"],
        ["with space", "ünïcode"],
    ],
)
def test_bar_encoding_round_trips(items: list[str]) -> None:
    assert bar_decode(bar_encode(items)) == items


def test_bar_encode_skips_empty_items_like_pydal() -> None:
    # pydal writes only items with non-blank text; writing "" would turn a, "", b into "a|b"
    assert bar_encode(["a", "", "b", "  "]) == "|a|b|"
    assert bar_decode(bar_encode(["a", "", "b"])) == ["a", "b"]


def test_bar_decode_reads_a_doubled_bar_as_a_literal_bar() -> None:
    assert bar_decode("|a||||b|") == ["a||b"]


def test_list_string_type_encodes_lists_and_passes_text_through() -> None:
    column_type = PydalListString()
    assert column_type.process_bind_param(["main", "a|b"], DIALECT) == "|main|a||b|"
    assert column_type.process_bind_param("|main|", DIALECT) == "|main|"
    assert column_type.process_bind_param(None, DIALECT) is None
    assert column_type.process_result_value("|main|a||b|", DIALECT) == ["main", "a|b"]
    assert column_type.process_result_value(None, DIALECT) is None


# ------------------------------------------------------------------ booleans


@pytest.mark.parametrize(("value", "stored"), [(True, "T"), (False, "F"), (None, None)])
def test_boolean_is_written_as_pydal_char(value: bool | None, stored: str | None) -> None:
    assert PydalBoolean().process_bind_param(value, DIALECT) == stored


@pytest.mark.parametrize(
    ("stored", "value"),
    [("T", True), ("t", True), ("1", True), ("F", False), ("f", False), ("0", False), (None, None)],
)
def test_boolean_is_read_leniently_like_pydal(stored: str | None, value: bool | None) -> None:
    assert PydalBoolean().process_result_value(stored, DIALECT) is value


# ------------------------------------------------------------------ column types


def test_boolean_columns_are_char_1() -> None:
    for column in ("broadcast", "enabled", "prevent_drift"):
        assert str(scheduler_task.c[column].type.compile(dialect=DIALECT)) == "CHAR(1)"
    assert str(scheduler_worker.c.is_ticker.type.compile(dialect=DIALECT)) == "CHAR(1)"


def test_priority_and_retry_backoff_are_taskmills_only_extra_task_columns() -> None:
    web2py_columns = {
        "id", "application_name", "task_name", "group_name", "status", "broadcast",
        "function_name", "uuid", "args", "vars", "enabled", "start_time", "next_run_time",
        "stop_time", "repeats", "retry_failed", "period", "prevent_drift", "cronline",
        "timeout", "sync_output", "times_run", "times_failed", "last_run_time",
        "assigned_worker_name",
    }  # fmt: skip
    assert set(scheduler_task.c.keys()) - web2py_columns == {"priority", "retry_backoff"}
    assert web2py_columns <= set(scheduler_task.c.keys())
