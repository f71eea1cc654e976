"""queue_task: what it accepts, what it refuses, and that a refusal inserts nothing.

Every test runs against a fresh SQLite file; rows are read back with raw SQL where the
stored encoding itself is the point.
"""

from __future__ import annotations

import json
import uuid as uuidlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from taskmill import Scheduler
from taskmill.records import Task

BERLIN = ZoneInfo("Europe/Berlin")
MAX_INT = 2**31 - 1
FAR_FUTURE = datetime(2030, 1, 7, 12, 0)  # a Monday, naive: taken as UTC


def add(a: int, b: int) -> int:
    return a + b


def report(**kwargs: Any) -> None:
    return None


def unregistered() -> None:
    return None


@pytest.fixture
def sched(sqlite_url: str) -> Iterator[Scheduler]:
    scheduler = Scheduler(sqlite_url, tasks={"add": add, "report": report})
    scheduler.create_tables()
    yield scheduler
    scheduler.store.dispose()


def task_count(sched: Scheduler) -> int:
    with sched.store.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT COUNT(*) FROM scheduler_task").scalar_one())


def raw_column(sched: Scheduler, task_id: int, column: str) -> Any:
    with sched.store.engine.connect() as conn:
        return conn.exec_driver_sql(
            f"SELECT {column} FROM scheduler_task WHERE id = ?", (task_id,)
        ).scalar_one()


def stored(sched: Scheduler, task_id: int | None) -> Task:
    assert task_id is not None
    task = sched.task_status(task_id)
    assert isinstance(task, Task)
    return task


def refused(sched: Scheduler, field: str, *pargs: Any, **kwargs: Any) -> str:
    """Queue with bad input; check the one error and that no row was written."""
    before = task_count(sched)
    result = sched.queue_task(*pargs, **kwargs)
    assert result.id is None
    assert result.uuid is None
    assert field in result.errors, result.errors
    assert task_count(sched) == before
    return result.errors[field]


# ------------------------------------------------------------------ success


def test_queued_task_gets_id_uuid_and_no_errors(sched: Scheduler) -> None:
    result = sched.queue_task("add", [1, 2])
    assert result.errors == {}
    assert result.id == 1
    assert str(uuidlib.UUID(result.uuid or "")) == result.uuid
    assert task_count(sched) == 1


def test_result_is_readable_like_a_web2py_storage(sched: Scheduler) -> None:
    result = sched.queue_task("add", [1, 2])
    assert result["id"] == result.id
    assert result["uuid"] == result.uuid
    assert result["errors"] == {}


def test_defaults_are_web2py_defaults(sched: Scheduler) -> None:
    before = sched.store.now()
    task = stored(sched, sched.queue_task("add", [1, 2]).id)
    after = sched.store.now()
    assert task.status == "QUEUED"
    assert task.function_name == "add"
    assert task.task_name == "add"
    assert task.group_name == "main"
    assert task.application_name == "taskmill"
    assert (task.repeats, task.period, task.timeout) == (1, 60, 60)
    assert (task.retry_failed, task.sync_output, task.priority) == (0, 0, 0)
    assert task.retry_backoff == 0
    assert (task.times_run, task.times_failed) == (0, 0)
    assert (task.prevent_drift, task.broadcast, task.enabled) == (False, False, True)
    assert task.cronline is None
    assert task.stop_time is None
    assert task.start_time is not None
    assert before <= task.start_time <= after
    assert task.next_run_time == task.start_time
    assert task.assigned_worker_name == ""


def test_pargs_and_pvars_are_stored_as_json_text(sched: Scheduler) -> None:
    task = stored(sched, sched.queue_task("add", [1, "b", None], {"x": [1.5, True]}).id)
    assert task.args == '[1, "b", null]'
    assert task.vars == '{"x": [1.5, true]}'


def test_tuple_pargs_are_stored_as_a_json_list(sched: Scheduler) -> None:
    task = stored(sched, sched.queue_task("add", (1, 2)).id)
    assert task.args == "[1, 2]"
    assert task.vars == "{}"


def test_every_keyword_is_stored(sched: Scheduler) -> None:
    result = sched.queue_task(
        "add",
        [1, 2],
        uuid="my-uuid",
        task_name="adding",
        group_name="slow",
        start_time=FAR_FUTURE,
        next_run_time=FAR_FUTURE + timedelta(hours=1),
        stop_time=FAR_FUTURE + timedelta(days=1),
        repeats=5,
        period=300,
        prevent_drift=True,
        timeout=7,
        retry_failed=-1,
        retry_backoff=30,
        sync_output=2,
        immediate=True,
        broadcast=True,
        enabled=False,
        priority=-3,
        application_name="eden",
    )
    assert result.errors == {}
    assert result.uuid == "my-uuid"
    task = stored(sched, result.id)
    assert task.uuid == "my-uuid"
    assert task.task_name == "adding"
    assert task.group_name == "slow"
    assert task.start_time == datetime(2030, 1, 7, 12, 0, tzinfo=UTC)
    assert task.next_run_time == datetime(2030, 1, 7, 13, 0, tzinfo=UTC)
    assert task.stop_time == datetime(2030, 1, 8, 12, 0, tzinfo=UTC)
    assert (task.repeats, task.period, task.timeout) == (5, 300, 7)
    assert (task.retry_failed, task.sync_output, task.priority) == (-1, 2, -3)
    assert task.retry_backoff == 30
    assert (task.prevent_drift, task.broadcast, task.enabled) == (True, True, False)
    assert task.application_name == "eden"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("repeats", 0),
        ("repeats", 2**31 - 1),
        ("period", 0),
        ("timeout", 1),
        ("retry_failed", -1),
        ("retry_failed", 0),
        ("sync_output", 0),
        ("retry_backoff", 0),
        ("retry_backoff", 3600),
        ("priority", -(2**31 - 1)),
        ("priority", 2**31 - 1),
    ],
)
def test_integer_bounds_are_accepted(sched: Scheduler, field: str, value: int) -> None:
    result = sched.queue_task("add", [1, 2], **{field: value})
    assert result.errors == {}
    assert stored(sched, result.id)[field] == value


def test_integral_float_is_stored_as_int(sched: Scheduler) -> None:
    task = stored(sched, sched.queue_task("add", [1, 2], period=30.0).id)
    assert task.period == 30
    assert isinstance(task.period, int)


def test_immediate_is_accepted_and_not_a_column(sched: Scheduler) -> None:
    result = sched.queue_task("add", [1, 2], immediate=True)
    assert result.errors == {}
    assert "immediate" not in stored(sched, result.id).as_dict()


def test_empty_task_name_falls_back_to_function_name(sched: Scheduler) -> None:
    assert stored(sched, sched.queue_task("add", [1, 2], task_name="").id).task_name == "add"


# ------------------------------------------------------------------ integers refused


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("repeats", -1),
        ("period", -1),
        ("timeout", 0),
        ("retry_failed", -2),
        ("sync_output", -1),
        ("retry_backoff", -1),
        ("priority", -(2**31)),
    ],
)
def test_integer_below_range_is_refused(sched: Scheduler, field: str, value: int) -> None:
    message = refused(sched, field, "add", [1, 2], **{field: value})
    assert message.startswith(f"{field} must be an integer between")


@pytest.mark.parametrize(
    ("field", "minimum"),
    [("repeats", 0), ("period", 0), ("timeout", 1), ("retry_failed", -1), ("priority", -MAX_INT)],
)
def test_integer_that_does_not_fit_32_bits_is_refused(
    sched: Scheduler, field: str, minimum: int
) -> None:
    assert refused(sched, field, "add", [1, 2], **{field: 2**31}) == (
        f"{field} must be an integer between {minimum} and 2147483647, not 2147483648"
    )


def test_huge_integer_is_refused(sched: Scheduler) -> None:
    assert "not 1267650600228229401496703205376" in refused(
        sched, "timeout", "add", [1, 2], timeout=2**100
    )


@pytest.mark.parametrize(
    "field", ["repeats", "period", "timeout", "retry_failed", "retry_backoff", "sync_output"]
)
def test_bool_where_integer_expected_is_refused(sched: Scheduler, field: str) -> None:
    message = refused(sched, field, "add", [1, 2], **{field: True})
    assert message.endswith("not True")


@pytest.mark.parametrize("value", ["60", 1.5, float("nan"), float("inf"), None, [60]], ids=repr)
def test_non_integer_period_is_refused(sched: Scheduler, value: Any) -> None:
    assert refused(sched, "period", "add", [1, 2], period=value).startswith(
        "period must be an integer >= 0"
    )


def test_retry_backoff_above_the_longest_retry_delay_is_refused(sched: Scheduler) -> None:
    assert refused(sched, "retry_backoff", "add", retry_backoff=3601) == (
        "retry_backoff must be an integer between 0 and 3600, not 3601"
    )


def test_huge_retry_backoff_is_refused(sched: Scheduler) -> None:
    assert refused(sched, "retry_backoff", "add", retry_backoff=2**100).startswith(
        "retry_backoff must be an integer between 0 and 3600, not 1267650600228229401496703205376"
    )


@pytest.mark.parametrize("value", ["5", 1.5, None], ids=repr)
def test_non_integer_retry_backoff_is_refused(sched: Scheduler, value: Any) -> None:
    assert refused(sched, "retry_backoff", "add", retry_backoff=value) == (
        f"retry_backoff must be an integer >= 0, not {value!r}"
    )


# ------------------------------------------------------------------ booleans refused


@pytest.mark.parametrize("field", ["prevent_drift", "broadcast", "enabled", "immediate"])
@pytest.mark.parametrize("value", [1, "T", None], ids=repr)
def test_non_bool_flag_is_refused(sched: Scheduler, field: str, value: Any) -> None:
    assert refused(sched, field, "add", [1, 2], **{field: value}) == (
        f"{field} must be True or False, not {value!r}"
    )


# ------------------------------------------------------------------ args and vars


@pytest.mark.parametrize(
    ("pargs", "expected"),
    [
        ({1, 2}, "args must be a list or tuple, not set"),
        ({"a": 1}, "args must be a list or tuple, not dict"),
        ("[1, 2]", "args must be a list or tuple, not str"),
        (None, "args must be a list or tuple, not NoneType"),
    ],
    ids=["set", "dict", "str", "None"],
)
def test_pargs_that_is_not_a_sequence_is_refused(
    sched: Scheduler, pargs: Any, expected: str
) -> None:
    assert refused(sched, "args", "add", pargs) == expected


@pytest.mark.parametrize(
    ("pvars", "expected"),
    [
        ([1], "vars must be a dict, not list"),
        ("{}", "vars must be a dict, not str"),
    ],
    ids=["list", "str"],
)
def test_pvars_that_is_not_a_dict_is_refused(sched: Scheduler, pvars: Any, expected: str) -> None:
    assert refused(sched, "vars", "add", [], pvars) == expected


@pytest.mark.parametrize(
    "value",
    [{1, 2}, object(), float("nan"), float("inf"), float("-inf"), b"bytes", datetime(2030, 1, 1)],
    ids=["set", "object", "nan", "inf", "-inf", "bytes", "datetime"],
)
def test_non_json_value_in_pargs_is_refused(sched: Scheduler, value: Any) -> None:
    message = refused(sched, "args", "add", [1, value])
    assert message.startswith("args must be JSON-serialisable: ")


def test_non_json_value_in_pvars_is_refused(sched: Scheduler) -> None:
    message = refused(sched, "vars", "report", [], {"when": float("nan")})
    assert message == (
        "vars must be JSON-serialisable: Out of range float values are not JSON compliant"
    )


def test_pvars_with_non_string_key_object_is_refused(sched: Scheduler) -> None:
    assert refused(sched, "vars", "report", [], {(1, 2): "x"}).startswith(
        "vars must be JSON-serialisable: "
    )


def test_deeply_nested_pargs_are_refused_without_crashing(sched: Scheduler) -> None:
    nested: list[Any] = []
    for _ in range(100_000):
        nested = [nested]
    assert refused(sched, "args", "add", nested) == "args is nested too deeply to encode as JSON"


def test_deeply_nested_args_text_is_refused_without_crashing(sched: Scheduler) -> None:
    text = "[" * 100_000 + "]" * 100_000
    assert refused(sched, "args", "add", args=text).startswith("args is not valid JSON: ")


def test_args_and_vars_json_text_are_accepted(sched: Scheduler) -> None:
    result = sched.queue_task("add", args="[1,2]", vars='{"k": "v"}')
    assert result.errors == {}
    task = stored(sched, result.id)
    # kept as given, as web2py keeps them
    assert task.args == "[1,2]"
    assert task.vars == '{"k": "v"}'


def test_args_and_vars_json_text_override_pargs_and_pvars(sched: Scheduler) -> None:
    result = sched.queue_task("add", [9, 9], {"old": 1}, args="[1,2]", vars='{"new":2}')
    task = stored(sched, result.id)
    assert json.loads(task.args or "") == [1, 2]
    assert json.loads(task.vars or "") == {"new": 2}


@pytest.mark.parametrize(
    ("field", "text"),
    [("args", "[1,"), ("vars", "{'a': 1}"), ("args", ""), ("args", "[NaN]"), ("vars", "{")],
)
def test_invalid_json_text_is_refused(sched: Scheduler, field: str, text: str) -> None:
    message = refused(sched, field, "add", **{field: text})
    assert message.startswith(f"{field} is not valid JSON: ")


def test_args_text_holding_an_object_is_refused(sched: Scheduler) -> None:
    assert refused(sched, "args", "add", args='{"a": 1}') == (
        "args must be a list or tuple, not dict"
    )


def test_vars_text_holding_a_list_is_refused(sched: Scheduler) -> None:
    assert refused(sched, "vars", "add", vars="[1]") == "vars must be a dict, not list"


def test_args_given_as_a_python_list_instead_of_text_is_refused(sched: Scheduler) -> None:
    assert refused(sched, "args", "add", args=[1, 2]) == "args must be JSON text, not list"


def test_bad_args_and_bad_vars_are_both_reported(sched: Scheduler) -> None:
    result = sched.queue_task("add", {1}, [2])
    assert set(result.errors) == {"args", "vars"}
    assert task_count(sched) == 0


# ------------------------------------------------------------------ names


def test_duplicate_uuid_is_refused(sched: Scheduler) -> None:
    assert sched.queue_task("add", [1, 2], uuid="nightly").errors == {}
    assert refused(sched, "uuid", "add", [3, 4], uuid="nightly") == "a task with this uuid exists"
    assert task_count(sched) == 1


def test_uuid_longer_than_its_column_is_refused(sched: Scheduler) -> None:
    assert refused(sched, "uuid", "add", uuid="u" * 256) == (
        "uuid is 256 characters long; the limit is 255"
    )


def test_non_string_uuid_is_refused(sched: Scheduler) -> None:
    assert refused(sched, "uuid", "add", uuid=123) == "uuid must be a string, not int"


@pytest.mark.parametrize("group", ["", "   ", "a|b", 7])
def test_invalid_group_name_is_refused(sched: Scheduler, group: Any) -> None:
    refused(sched, "group_name", "add", group_name=group)


def test_unknown_function_name_is_refused_when_tasks_are_registered(sched: Scheduler) -> None:
    assert refused(sched, "function_name", "mul", [1, 2]) == (
        "no task named 'mul' is registered (known: add, report)"
    )


def test_registered_callable_is_stored_under_its_registered_name(sched: Scheduler) -> None:
    result = sched.queue_task(add, [1, 2])
    assert result.errors == {}
    task = stored(sched, result.id)
    assert task.function_name == "add"
    assert task.task_name == "add"


def test_unregistered_callable_is_refused(sched: Scheduler) -> None:
    assert refused(sched, "function_name", unregistered) == (
        "function 'unregistered' is not registered in the scheduler's tasks"
    )


def test_scheduler_without_tasks_accepts_any_function_name(sqlite_url: str) -> None:
    scheduler = Scheduler(sqlite_url)
    scheduler.create_tables()
    try:
        result = scheduler.queue_task("defined.elsewhere", [1])
        assert result.errors == {}
        assert stored(scheduler, result.id).function_name == "defined.elsewhere"
    finally:
        scheduler.store.dispose()


@pytest.mark.parametrize("function", ["", "  ", None, 42], ids=repr)
def test_function_that_is_no_name_is_refused(sched: Scheduler, function: Any) -> None:
    refused(sched, "function_name", function)


def test_missing_function_raises_type_error(sched: Scheduler) -> None:
    with pytest.raises(TypeError, match="function"):
        sched.queue_task()  # type: ignore[call-arg]


def test_unknown_keyword_raises_type_error(sched: Scheduler) -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\): \['colour'\]"):
        sched.queue_task("add", [1, 2], colour="red")
    assert task_count(sched) == 0


# ------------------------------------------------------------------ times


def test_naive_start_time_is_stored_as_given_utc(sched: Scheduler) -> None:
    result = sched.queue_task("add", [1, 2], start_time=datetime(2030, 1, 7, 12, 0))
    assert raw_column(sched, result.id, "start_time").startswith("2030-01-07 12:00:00")
    assert stored(sched, result.id).start_time == datetime(2030, 1, 7, 12, 0, tzinfo=UTC)


def test_aware_start_time_is_stored_as_naive_utc(sched: Scheduler) -> None:
    start = datetime(2030, 7, 1, 12, 0, tzinfo=BERLIN)  # CEST, UTC+2
    result = sched.queue_task("add", [1, 2], start_time=start)
    assert raw_column(sched, result.id, "start_time").startswith("2030-07-01 10:00:00")
    assert raw_column(sched, result.id, "next_run_time").startswith("2030-07-01 10:00:00")
    assert stored(sched, result.id).start_time == datetime(2030, 7, 1, 10, 0, tzinfo=UTC)


def test_naive_time_is_local_time_when_utc_time_is_off(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    scheduler = Scheduler(sqlite_url, tasks={"add": add}, utc_time=False)
    scheduler.create_tables()
    try:
        result = scheduler.queue_task("add", [1, 2], start_time=datetime(2030, 1, 7, 12, 0))
        assert raw_column(scheduler, result.id, "start_time").startswith("2030-01-07 12:00:00")
        assert stored(scheduler, result.id).start_time == datetime(2030, 1, 7, 11, 0, tzinfo=UTC)
    finally:
        scheduler.store.dispose()


@pytest.mark.parametrize("field", ["start_time", "next_run_time", "stop_time"])
@pytest.mark.parametrize("value", ["2030-01-01 00:00:00", 1893456000, datetime(2030, 1, 1).date()])
def test_time_that_is_not_a_datetime_is_refused(sched: Scheduler, field: str, value: Any) -> None:
    message = refused(sched, field, "add", **{field: value})
    assert message == f"{field} must be a datetime, not {type(value).__name__}"


def test_stop_time_before_start_time_is_refused(sched: Scheduler) -> None:
    assert refused(
        sched,
        "stop_time",
        "add",
        start_time=FAR_FUTURE,
        stop_time=FAR_FUTURE - timedelta(seconds=1),
    ) == ("stop_time is before start_time: the task could never run")


def test_stop_time_already_passed_is_refused(sched: Scheduler) -> None:
    refused(sched, "stop_time", "add", stop_time=datetime.now(UTC) - timedelta(minutes=1))


def test_explicit_next_run_time_is_kept(sched: Scheduler) -> None:
    result = sched.queue_task("add", start_time=FAR_FUTURE, next_run_time=FAR_FUTURE.replace(day=9))
    assert stored(sched, result.id).next_run_time == datetime(2030, 1, 9, 12, 0, tzinfo=UTC)


# ------------------------------------------------------------------ cron lines


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("0 0 * * * *", "6 fields: seconds are not supported"),
        ("5-1 * * * *", "minute field: reversed range '5-1' (low end first)"),
        ("0 0 31 2 *", "no such date: day 31 never occurs in February"),
        ("0 24 * * *", "hour field: 24 is out of range 0-23"),
        ("@reboot", "unknown alias '@reboot' (known: "),
        ("* * *", "expected 5 fields (minute hour day month weekday), got 3"),
    ],
)
def test_invalid_cronline_is_refused(sched: Scheduler, line: str, expected: str) -> None:
    assert refused(sched, "cronline", "add", cronline=line).startswith(expected)


def test_non_string_cronline_is_refused(sched: Scheduler) -> None:
    assert refused(sched, "cronline", "add", cronline=5) == "cronline must be a string, not int"


def test_cronline_sets_next_run_time_to_its_first_match(sched: Scheduler) -> None:
    # 2030-01-07 12:00 is a Monday; "30 2 * * 3" next fires on Wednesday 02:30
    result = sched.queue_task("add", start_time=FAR_FUTURE, cronline="30 2 * * 3")
    assert result.errors == {}
    task = stored(sched, result.id)
    assert task.cronline == "30 2 * * 3"
    assert task.start_time == datetime(2030, 1, 7, 12, 0, tzinfo=UTC)
    assert task.next_run_time == datetime(2030, 1, 9, 2, 30, tzinfo=UTC)


def test_cronline_matching_the_start_minute_runs_in_that_minute(sched: Scheduler) -> None:
    result = sched.queue_task("add", start_time=FAR_FUTURE, cronline="0 12 * * *")
    assert stored(sched, result.id).next_run_time == datetime(2030, 1, 7, 12, 0, tzinfo=UTC)


def test_cron_alias_is_accepted(sched: Scheduler) -> None:
    result = sched.queue_task("add", start_time=FAR_FUTURE, cronline="@monthly")
    assert stored(sched, result.id).next_run_time == datetime(2030, 2, 1, 0, 0, tzinfo=UTC)


# The cron line cases the web2py scheduler supports, through queue_task to the stored row
# (the arithmetic itself is tested in test_timing.py). FAR_FUTURE is Mon 2030-01-07 12:00.
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("0 9 * * sat,sun", datetime(2030, 1, 12, 9, 0)),  # day names, a list
        ("0 9 * * MON-FRI", datetime(2030, 1, 8, 9, 0)),  # a range of day names
        ("0 0 1 feb,aug *", datetime(2030, 2, 1, 0, 0)),  # month names
        ("15-17 13 * * *", datetime(2030, 1, 7, 13, 15)),  # a minute range
        ("5,35 * * * *", datetime(2030, 1, 7, 12, 5)),  # a list
        ("*/20 * * * *", datetime(2030, 1, 7, 12, 0)),  # a step: 12:00 itself matches
        ("0 1-23/5 * * *", datetime(2030, 1, 7, 16, 0)),  # a step over a range
        ("0 0 L * *", datetime(2030, 1, 31, 0, 0)),  # the last day of the month
        ("0 0 L 2 *", datetime(2030, 2, 28, 0, 0)),  # February's, in a common year
        ("0 0 29 2 *", datetime(2032, 2, 29, 0, 0)),  # the next leap day
        ("@yearly", datetime(2031, 1, 1, 0, 0)),
        ("@annually", datetime(2031, 1, 1, 0, 0)),
        ("@monthly", datetime(2030, 2, 1, 0, 0)),
        ("@weekly", datetime(2030, 1, 13, 0, 0)),  # the next Sunday
        ("@daily", datetime(2030, 1, 8, 0, 0)),
        ("@midnight", datetime(2030, 1, 8, 0, 0)),
        ("@hourly", datetime(2030, 1, 7, 12, 0)),
    ],
)
def test_cronline_next_run_time_is_stored_for_each_supported_form(
    sched: Scheduler, line: str, expected: datetime
) -> None:
    result = sched.queue_task("add", start_time=FAR_FUTURE, cronline=line)
    assert result.errors == {}
    assert stored(sched, result.id).next_run_time == expected.replace(tzinfo=UTC)
    assert raw_column(sched, result.id or 0, "cronline") == line


def test_cronline_without_start_time_waits_for_the_next_minute_boundary(
    sched: Scheduler,
) -> None:
    before = sched.store.now()
    task = stored(sched, sched.queue_task("add", cronline="* * * * *").id)
    after = sched.store.now()
    assert task.next_run_time is not None
    assert (task.next_run_time.second, task.next_run_time.microsecond) == (0, 0)
    assert before < task.next_run_time <= after + timedelta(minutes=1)


def test_cronline_without_start_time_is_not_due_until_its_match(sched: Scheduler) -> None:
    # at most one midnight-to-midnight day away, never now
    task = stored(sched, sched.queue_task("add", cronline="@daily").id)
    assert task.next_run_time is not None
    assert (task.next_run_time.hour, task.next_run_time.minute) == (0, 0)
    assert sched.store.now() < task.next_run_time <= sched.store.now() + timedelta(days=1)


def test_several_errors_are_reported_together_and_nothing_is_inserted(
    sched: Scheduler,
) -> None:
    result = sched.queue_task("mul", {1}, repeats=-1, cronline="bad", enabled="yes")
    assert set(result.errors) == {"function_name", "args", "repeats", "cronline", "enabled"}
    assert (result.id, result.uuid) == (None, None)
    assert task_count(sched) == 0
