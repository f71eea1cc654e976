"""Checking queue_task's arguments before anything reaches the database.

web2py validates through the DAL and returns an errors dict instead of raising;
we keep that shape (one message per bad field, nothing inserted) and add the
checks web2py lacks: JSON-only arguments, integer ranges that fit the columns,
times that are datetimes, cron lines that can ever fire.
"""

from __future__ import annotations

import json
import math
import uuid as uuidlib
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from taskmill.lifecycle import MAX_RETRY_DELAY
from taskmill.schema import STRING_LENGTH
from taskmill.states import TaskStatus
from taskmill.timing import as_utc, cronline_error, first_cron_time

#: largest value an INTEGER column holds on every backend
MAX_INT = 2**31 - 1
#: encoded args or vars above this are refused (they are stored in one row)
MAX_JSON_BYTES = 16 * 1024 * 1024

#: the group of a task queued without group_name (web2py's default)
DEFAULT_GROUP_NAME = "main"

#: keyword arguments queue_task accepts besides pargs/pvars
QUEUE_KEYWORDS = frozenset(
    {
        "uuid",
        "task_name",
        "group_name",
        "start_time",
        "next_run_time",
        "stop_time",
        "repeats",
        "period",
        "prevent_drift",
        "cronline",
        "timeout",
        "retry_failed",
        "retry_backoff",
        "sync_output",
        "immediate",
        "broadcast",
        "enabled",
        "priority",
        "args",
        "vars",
        "application_name",
    }
)

#: field -> (minimum, maximum, default)
_INT_RANGES: dict[str, tuple[int, int, int]] = {
    "repeats": (0, MAX_INT, 1),  # 0 = forever
    "period": (0, MAX_INT, 60),  # seconds
    "timeout": (1, MAX_INT, 60),  # seconds
    "retry_failed": (-1, MAX_INT, 0),  # -1 = unlimited
    # seconds; a first retry delay above the cap of every retry delay means nothing
    "retry_backoff": (0, MAX_RETRY_DELAY, 0),  # 0 = web2py's retry rule
    "sync_output": (0, MAX_INT, 0),  # seconds, 0 = never
    "priority": (-MAX_INT, MAX_INT, 0),  # higher runs first
}
_BOOLS: dict[str, bool] = {
    "prevent_drift": False,
    "broadcast": False,
    "enabled": True,
    "immediate": False,
}


def encode_json(value: Any, expected: type, what: str) -> tuple[str | None, str | None]:
    """JSON text of value, or an error message; NaN and non-JSON objects are refused."""
    if not isinstance(value, expected):
        kind = "a list or tuple" if expected is not dict else "a dict"
        return None, f"{what} must be {kind}, not {type(value).__name__}"
    try:
        # json.dumps' default spacing, as web2py's dumps(pargs): web2py and Eden apps
        # find their tasks by comparing args/vars with json.dumps(...) as text
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return None, f"{what} must be JSON-serialisable: {exc}"
    except RecursionError:
        return None, f"{what} is nested too deeply to encode as JSON"
    if len(text) > MAX_JSON_BYTES:
        return None, f"{what} encodes to {len(text)} bytes; the limit is {MAX_JSON_BYTES}"
    return text, None


def decode_json_text(text: Any, expected: type, what: str) -> tuple[str | None, str | None]:
    """Check already-encoded JSON text given as args=/vars= (web2py accepts those)."""
    if not isinstance(text, str):
        return None, f"{what} must be JSON text, not {type(text).__name__}"
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        return None, f"{what} is not valid JSON: {exc}"
    _, error = encode_json(value, expected, what)
    if error is None and len(text) > MAX_JSON_BYTES:
        error = f"{what} is {len(text)} bytes long; the limit is {MAX_JSON_BYTES}"
    # stored as given, like web2py does, so the app finds it by the text it wrote
    return (None, error) if error else (text, None)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_int(name: str, value: Any, minimum: int, maximum: int = MAX_INT) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        else:
            return f"{name} must be an integer >= {minimum}, not {value!r:.60}"
    if value < minimum or value > maximum:
        return f"{name} must be an integer between {minimum} and {maximum}, not {value}"
    return None


def _check_text(name: str, value: Any, max_length: int) -> str | None:
    if not isinstance(value, str):
        return f"{name} must be a string, not {type(value).__name__}"
    if not value.strip():
        return f"{name} must not be empty"
    if len(value) > max_length:
        return f"{name} is {len(value)} characters long; the limit is {max_length}"
    return None


def _check_time(name: str, value: Any, local_time: bool) -> tuple[datetime | None, str | None]:
    if value is None:
        return None, None
    if not isinstance(value, datetime):
        return None, f"{name} must be a datetime, not {type(value).__name__}"
    try:
        return as_utc(value, local_time=local_time), None
    except (OverflowError, ValueError) as exc:
        return None, f"{name} cannot be converted to UTC: {exc}"


class TaskValidator:
    """Turns queue_task's arguments into a scheduler_task row, or into errors."""

    def __init__(
        self,
        registry: Mapping[str, Callable[..., Any]],
        *,
        local_time: bool,
        application_name: str,
    ) -> None:
        self.registry = registry
        self.local_time = local_time
        self.application_name = application_name

    def function_name(self, function: Any) -> tuple[str | None, str | None]:
        if callable(function) and not isinstance(function, str):
            for name, registered in self.registry.items():
                if registered is function:
                    return name, None
            label = getattr(function, "__name__", repr(function))
            return None, f"function {label!r} is not registered in the scheduler's tasks"
        error = _check_text("function_name", function, STRING_LENGTH)
        if error:
            return None, error
        if self.registry and function not in self.registry:
            known = ", ".join(sorted(self.registry)[:20])
            return None, f"no task named {function!r} is registered (known: {known})"
        return str(function), None

    def build_row(
        self,
        function: Any,
        pargs: Any,
        pvars: Any,
        options: Mapping[str, Any],
        now: datetime,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        errors: dict[str, str] = {}
        row: dict[str, Any] = {}
        name, error = self.function_name(function)
        if error:
            errors["function_name"] = error
        self._encode_arguments(pargs, pvars, options, row, errors)
        self._names(name, options, row, errors)
        for field, (minimum, maximum, default) in _INT_RANGES.items():
            value = options.get(field, default)
            message = _check_int(field, value, minimum, maximum)
            if message:
                errors[field] = message
            else:
                row[field] = int(value)
        for field, default in _BOOLS.items():
            value = options.get(field, default)
            if not isinstance(value, bool):
                errors[field] = f"{field} must be True or False, not {value!r:.60}"
            elif field != "immediate":
                row[field] = value
        self._times(options, now, row, errors)
        if errors:
            return {}, errors
        row.update(
            status=TaskStatus.QUEUED.value,
            times_run=0,
            times_failed=0,
            assigned_worker_name="",
        )
        return row, {}

    def _encode_arguments(
        self,
        pargs: Any,
        pvars: Any,
        options: Mapping[str, Any],
        row: dict[str, Any],
        errors: dict[str, str],
    ) -> None:
        if "args" in options:
            text, error = decode_json_text(options["args"], list, "args")
        else:
            text, error = encode_json(
                list(pargs) if isinstance(pargs, tuple) else pargs, list, "args"
            )
        if error:
            errors["args"] = error
        row["args"] = text
        if "vars" in options:
            text, error = decode_json_text(options["vars"], dict, "vars")
        else:
            text, error = encode_json({} if pvars is None else pvars, dict, "vars")
        if error:
            errors["vars"] = error
        row["vars"] = text

    def _names(
        self,
        function_name: str | None,
        options: Mapping[str, Any],
        row: dict[str, Any],
        errors: dict[str, str],
    ) -> None:
        task_uuid = options.get("uuid") or str(uuidlib.uuid4())
        checks = {
            "uuid": (task_uuid, 255),
            "task_name": (options.get("task_name") or function_name or "", STRING_LENGTH),
            "group_name": (options.get("group_name", DEFAULT_GROUP_NAME), STRING_LENGTH),
            "application_name": (
                options.get("application_name", self.application_name),
                STRING_LENGTH,
            ),
        }
        for field, (value, limit) in checks.items():
            message = _check_text(field, value, limit)
            if message and not (field == "task_name" and function_name is None):
                errors[field] = message
            row[field] = value
        if isinstance(row["group_name"], str) and "|" in row["group_name"]:
            errors["group_name"] = "group_name must not contain '|' (web2py list separator)"
        row["function_name"] = function_name

    def _times(
        self,
        options: Mapping[str, Any],
        now: datetime,
        row: dict[str, Any],
        errors: dict[str, str],
    ) -> None:
        times: dict[str, datetime | None] = {}
        for field in ("start_time", "next_run_time", "stop_time"):
            value, message = _check_time(field, options.get(field), self.local_time)
            if message:
                errors[field] = message
            times[field] = value
        cronline = options.get("cronline")
        if cronline is not None:
            message = cronline_error(cronline)
            if message:
                errors["cronline"] = message
                cronline = None
        row["cronline"] = cronline
        start = times["start_time"] or now
        next_run = times["next_run_time"]
        if next_run is None:
            if cronline:
                next_run = first_cron_time(cronline, start, local_time=self.local_time)
            else:
                next_run = start
        stop = times["stop_time"]
        if stop is not None and stop < start:
            errors["stop_time"] = "stop_time is before start_time: the task could never run"
        row.update(start_time=start, next_run_time=next_run, stop_time=stop)
