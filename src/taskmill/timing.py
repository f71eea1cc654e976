"""Clock, time-zone and schedule arithmetic for taskmill.

Everything inside taskmill works with timezone-aware UTC datetimes, because comparing aware
values can never silently mix two clocks. The web2py tables, however, hold naive datetimes
(UTC by default, local time when a deployment runs with ``utc_time=False``), so the
conversion happens only at the storage edge, through :func:`to_storage` and
:func:`from_storage`.

Cron lines are parsed here into explicit value sets, and croniter is only given that
canonical form, on naive wall-clock time. On its own, croniter accepts lines a web2py cron
line cannot mean (a sixth field as seconds, reversed ranges as wrap-arounds, Quartz's ``?``,
``#`` and ``W``), reads an equal range such as ``5-5`` as the whole cycle, finds an
impossible date such as 31 February only after searching 50 years, and its handling of
day-or-weekday lines and of DST changes differs between releases. Validating first and
keeping the time-zone policy here means that what was validated is what gets scheduled,
whichever croniter release is installed.
"""

from __future__ import annotations

import functools
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final, overload
from zoneinfo import ZoneInfo

from croniter import croniter

__all__ = [
    "UTC",
    "as_utc",
    "cronline_error",
    "first_cron_time",
    "from_storage",
    "next_cron_time",
    "next_run_time",
    "to_storage",
    "utc_now",
]

_EPOCH_NAIVE: Final = datetime(1970, 1, 1)
_ONE_MINUTE: Final = timedelta(minutes=1)
_ONE_DAY: Final = timedelta(days=1)
# Longest spring-forward gap searched for its end; real ones are an hour, rarely a day.
_MAX_GAP_MINUTES: Final = 2 * 24 * 60
# Offsets on either side of a wall-clock time are sampled this far apart; no zone has two
# transitions this close together, so at most one transition lies in between.
_TRANSITION_WINDOW: Final = 86400.0


# --------------------------------------------------------------------------- clocks


def utc_now() -> datetime:
    """Give the one clock reading every scheduling decision in the process is based on."""
    return datetime.now(UTC)


class _SystemLocalTime(tzinfo):
    """The C library's idea of local time, for a TZ value that zoneinfo cannot load.

    TZ may hold a POSIX rule such as ``CET-1CEST,M3.5.0,M10.5.0/3``: libc understands it,
    zoneinfo does not, and a fixed offset would be wrong for half of the year. Ambiguous and
    missing wall-clock times follow PEP 495 (``fold=0`` is the first occurrence; a time in
    a gap is read with the offset from before the gap), like :class:`zoneinfo.ZoneInfo`.
    """

    @staticmethod
    def _offset_at(timestamp: float) -> timedelta:
        return timedelta(seconds=time.localtime(timestamp).tm_gmtoff)

    def utcoffset(self, dt: datetime | None) -> timedelta:
        if dt is None:
            return self._offset_at(time.time())
        wall = _wall_seconds(dt)
        before = self._offset_at(wall - _TRANSITION_WINDOW)
        after = self._offset_at(wall + _TRANSITION_WINDOW)
        if before == after:
            return before
        valid = [o for o in (before, after) if self._offset_at(wall - o.total_seconds()) == o]
        if len(valid) == 1:
            return valid[0]
        if not valid:  # in the gap of a spring-forward change
            return after if dt.fold else before
        # Ambiguous: the larger offset names the earlier instant, which is fold 0.
        earlier, later = sorted(valid, reverse=True)
        return later if dt.fold else earlier

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str:
        offset = self.utcoffset(dt)
        instant = time.time() if dt is None else _wall_seconds(dt) - offset.total_seconds()
        return time.strftime("%Z", time.localtime(instant))

    def fromutc(self, dt: datetime) -> datetime:
        offset = self._offset_at(_wall_seconds(dt))  # dt holds UTC here
        local = (dt.replace(tzinfo=None) + offset).replace(tzinfo=self)
        if self.utcoffset(local) != offset:  # the second pass of a repeated hour
            local = local.replace(fold=1)
        return local

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _wall_seconds(dt: datetime) -> float:
    """Seconds since the epoch of the wall-clock reading of ``dt``, as if it were UTC."""
    return (dt.replace(tzinfo=None) - _EPOCH_NAIVE).total_seconds()


@functools.lru_cache(maxsize=16)
def _zone_for(tz_variable: str | None) -> tzinfo:
    """Resolve TZ once per value: zone files are read from disk and the scheduler converts
    times constantly, while TZ itself only changes in tests."""
    if tz_variable is None:
        try:
            with open("/etc/localtime", "rb") as zone_file:
                return ZoneInfo.from_file(zone_file, key="localtime")
        except (OSError, ValueError):
            return UTC  # what the C library assumes without TZ and /etc/localtime
    key = tz_variable.removeprefix(":")
    if not key:
        return UTC
    try:
        if key.startswith("/"):
            with open(key, "rb") as zone_file:
                return ZoneInfo.from_file(zone_file, key=key)
        return ZoneInfo(key)
    except (KeyError, ValueError, OSError):
        return _SystemLocalTime()


def _local_zone() -> tzinfo:
    """Follow TZ like the C library does, so that "local time" means what ``date`` shows."""
    return _zone_for(os.environ.get("TZ"))


def _require_aware(value: datetime, name: str) -> datetime:
    """Refuse naive values in schedule arithmetic: a naive time there means a storage value
    skipped :func:`from_storage`, and guessing its zone would hide that bug."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value!r}")
    return value.astimezone(UTC)


# --------------------------------------------------------------------------- storage edge


def as_utc(value: datetime, *, local_time: bool = False) -> datetime:
    """Accept a user's datetime in either form and return the internal representation.

    Naive local times that are ambiguous (the repeated hour in autumn) are taken as their
    first occurrence, and times in the spring-forward gap are read with the offset from
    before the gap (PEP 495 ``fold=0``), so every naive value maps to exactly one instant.
    """
    if value.tzinfo is not None and value.utcoffset() is not None:
        return value.astimezone(UTC)
    zone = _local_zone() if local_time else UTC
    return value.replace(tzinfo=zone).astimezone(UTC)


@overload
def to_storage(value: datetime, *, local_time: bool = False) -> datetime: ...
@overload
def to_storage(value: None, *, local_time: bool = False) -> None: ...
def to_storage(value: datetime | None, *, local_time: bool = False) -> datetime | None:
    """Produce the naive value web2py (pydal) writes and reads back in its datetime columns."""
    if value is None:
        return None
    instant = as_utc(value, local_time=local_time)
    zone = _local_zone() if local_time else UTC
    return instant.astimezone(zone).replace(tzinfo=None)


@overload
def from_storage(value: datetime, *, local_time: bool = False) -> datetime: ...
@overload
def from_storage(value: None, *, local_time: bool = False) -> None: ...
def from_storage(value: datetime | None, *, local_time: bool = False) -> datetime | None:
    """Turn a stored value back into an instant; some drivers already return aware values,
    and those are trusted over the storage convention."""
    if value is None:
        return None
    if value.tzinfo is None and not local_time:
        return value.replace(tzinfo=UTC)  # the common case, on every claimed row
    return as_utc(value, local_time=local_time)


# --------------------------------------------------------------------------- cron lines

_ALIASES: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Spelled out rather than taken from calendar.month_abbr, which follows the process locale.
_MONTHS: Final = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_MONTH_NAMES: Final = {name[:3].lower(): number for number, name in enumerate(_MONTHS, start=1)}
_DAY_NAMES: Final = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_ELEMENT: Final = re.compile(
    r"(?:(?P<star>\*)|(?P<low>[0-9]+|[a-z]+)(?:-(?P<high>[0-9]+|[a-z]+))?)(?:/(?P<step>[0-9]+))?",
    re.ASCII,
)
_LAST_DAY: Final = "l"
_DAY_OF_MONTH: Final = 2
_DAY_OF_WEEK: Final = 4
# Days a month can have at most; February counts 29 because "0 0 29 2 *" does occur.
_MAX_DAYS: Final = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class _CronError(ValueError):
    """A cron line that taskmill refuses; its message is shown to the user as is."""


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS: Final = (
    _FieldSpec("minute", 0, 59, {}),
    _FieldSpec("hour", 0, 23, {}),
    _FieldSpec("day-of-month", 1, 31, {}),
    _FieldSpec("month", 1, 12, _MONTH_NAMES),
    # 7 is Sunday too, as in Vixie cron and in web2py.
    _FieldSpec("day-of-week", 0, 7, _DAY_NAMES),
)


@dataclass(frozen=True)
class _Field:
    values: frozenset[int]
    star: bool  # written as a bare "*": decides how day-of-month and day-of-week combine
    last_day: bool = False


@dataclass(frozen=True)
class _Cron:
    """A validated line in the only form croniter is given.

    A line that restricts both day of month and day of week fires on either (cron's OR),
    and croniter releases disagree on how to do that, so such a line becomes two
    expressions, each with one of the day fields, and the earlier firing wins.
    """

    expressions: tuple[str, ...]
    every_hour: bool


def _number(digits: str) -> int:
    """Read a run of digits without letting a very long one reach int()'s size limit; any
    value this large is out of every field's range anyway."""
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= 6 else 10**6


def _value(text: str, spec: _FieldSpec) -> int:
    if text.isdigit():
        number = _number(text)
    elif text in spec.names:
        number = spec.names[text]
    elif text == _LAST_DAY:
        raise _CronError("L (last day of the month) is only allowed in the day-of-month field")
    else:
        raise _CronError(f"{spec.name} field: unknown name {text!r}")
    if not spec.low <= number <= spec.high:
        raise _CronError(f"{spec.name} field: {text} is out of range {spec.low}-{spec.high}")
    return number


def _element(text: str, spec: _FieldSpec) -> range:
    match = _ELEMENT.fullmatch(text)
    if match is None:
        raise _CronError(f"{spec.name} field: invalid element {text!r}")
    step_text = match["step"]
    step = 1 if step_text is None else _number(step_text)
    if step_text is not None and step == 0:
        raise _CronError(f"{spec.name} field: step must be at least 1 in {text!r}")
    if match["star"]:
        return range(spec.low, spec.high + 1, step)
    low = _value(match["low"], spec)
    if match["high"] is not None:
        high = _value(match["high"], spec)
        if low > high:
            raise _CronError(f"{spec.name} field: reversed range {text!r} (low end first)")
    else:
        # "5/15" is web2py's (and croniter's) "from 5 to the end, every 15".
        high = spec.high if step_text is not None else low
    return range(low, high + 1, step)


def _field(text: str, spec: _FieldSpec) -> _Field:
    values: set[int] = set()
    last_day = False
    for item in text.split(","):
        if item == _LAST_DAY and spec is _FIELDS[_DAY_OF_MONTH]:
            last_day = True
            continue
        if _LAST_DAY in item and spec is _FIELDS[_DAY_OF_MONTH]:
            raise _CronError(f"day-of-month field: L must stand alone, not in {item!r}")
        values.update(_element(item, spec))
    if spec is _FIELDS[_DAY_OF_WEEK] and 7 in values:
        values = (values - {7}) | {0}
    return _Field(frozenset(values), star=text == "*", last_day=last_day)


def _day_of_month_possible(day: _Field, month: _Field) -> bool:
    if day.star or day.last_day:
        return True
    return min(day.values) <= max(_MAX_DAYS[m - 1] for m in month.values)


def _impossible_date(day: _Field, month: _Field) -> _CronError:
    months = ", ".join(_MONTHS[m - 1] for m in sorted(month.values))
    return _CronError(f"no such date: day {min(day.values)} never occurs in {months}")


def _render(field: _Field) -> str:
    if field.star:
        return "*"
    items = [str(v) for v in sorted(field.values)]
    if field.last_day:
        items.append(_LAST_DAY)
    return ",".join(items)


@functools.lru_cache(maxsize=256)
def _parse(line: str) -> _Cron:
    """Validate and canonicalise; cached because a repeating task re-reads its line each run."""
    text = line.strip()
    if not text:
        raise _CronError("cronline is empty")
    if not text.isascii():
        raise _CronError("cronline contains non-ASCII characters")
    if re.search(r"[^\S \t]", text):
        raise _CronError("cronline must be a single line (fields separated by spaces or tabs)")
    text = text.lower()
    if text.startswith("@"):
        if text not in _ALIASES:
            known = ", ".join(_ALIASES)
            raise _CronError(f"unknown alias {line.strip()!r} (known: {known})")
        text = _ALIASES[text]
    parts = re.split(r"[ \t]+", text)
    if len(parts) == 6:
        raise _CronError("6 fields: seconds are not supported")
    if len(parts) != 5:
        raise _CronError(f"expected 5 fields (minute hour day month weekday), got {len(parts)}")
    minute, hour, day, month, weekday = (
        _field(part, spec) for part, spec in zip(parts, _FIELDS, strict=True)
    )
    common = f"{_render(minute)} {_render(hour)} {{day}} {_render(month)} {{weekday}}"
    by_day = common.format(day=_render(day), weekday="*")
    by_weekday = common.format(day="*", weekday=_render(weekday))
    every_hour = hour.values == frozenset(range(24))
    if weekday.star:
        # Rejected here rather than after croniter has searched 50 years of calendar.
        if not _day_of_month_possible(day, month):
            raise _impossible_date(day, month)
        return _Cron((by_day,), every_hour)
    if day.star or not _day_of_month_possible(day, month):
        return _Cron((by_weekday,), every_hour)
    return _Cron((by_day, by_weekday), every_hour)


def _parse_or_raise(line: str) -> _Cron:
    try:
        return _parse(line)
    except _CronError as exc:
        raise ValueError(f"invalid cronline {line!r}: {exc}") from None


def cronline_error(line: object) -> str | None:
    """Let queue_task report a bad line as ``errors["cronline"]`` instead of failing later
    in a worker."""
    if not isinstance(line, str):
        return f"cronline must be a string, not {type(line).__name__}"
    try:
        _parse(line)
    except _CronError as exc:
        return str(exc)
    return None


def _floor_minute(value: datetime) -> datetime:
    return value.replace(second=0, microsecond=0)


def _offset(instant: datetime, zone: tzinfo) -> timedelta:
    return instant.astimezone(zone).utcoffset() or timedelta(0)


def _instant(wall: datetime, zone: tzinfo, fold: int) -> datetime:
    """Map a naive wall-clock firing to the instant it happens in ``zone``.

    A wall-clock time inside a spring-forward gap does not exist; it fires when the gap
    ends, found by walking forward to the first wall-clock minute that exists.
    """
    for _ in range(_MAX_GAP_MINUTES):
        instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == wall:
            return instant
        wall += _ONE_MINUTE
    raise ValueError(f"no existing local time within two days after {wall:%Y-%m-%d %H:%M}")


def _first_firing(
    expression: str, start_wall: datetime, after: datetime, zone: tzinfo, fold: int
) -> datetime:
    """Scan wall-clock matches from ``start_wall`` for the first instant after ``after``.

    With a fixed fold, instants never decrease as wall-clock times increase, so the first
    match that lies after ``after`` is the earliest one.
    """
    walls = croniter(expression, start_wall)
    while True:
        instant = _instant(walls.get_next(datetime), zone, fold)
        if instant > after:
            return instant


def next_cron_time(line: str, after: datetime, *, local_time: bool = False) -> datetime:
    """Find the next firing of a cron line, as an instant.

    In local time, a firing that falls into the spring-forward gap happens when the gap
    ends (02:30 on the night clocks jump from 02:00 to 03:00 runs at 03:00), so a daily job
    is never skipped. A wall-clock time repeated in autumn fires once, at its first
    occurrence, unless the line runs every hour anyway: then both passes fire, so "every 15
    minutes" stays every 15 minutes. This is how Vixie cron treats the two changes.

    croniter only ever computes naive wall-clock matches here; its own time-zone handling
    has changed between releases, and this policy must not.
    """
    cron = _parse_or_raise(line)
    start = _require_aware(after, "after")
    zone = _local_zone() if local_time else UTC
    # First occurrences: no wall-clock time up to the current one fires after `after`.
    scans = [(0, _floor_minute(start.astimezone(zone).replace(tzinfo=None, fold=0)))]
    if local_time and cron.every_hour:
        # Second occurrences: in autumn, wall-clock times before the current one come round
        # again, so start from the earliest wall-clock reading that `after` has under the
        # smallest offset in force around it.
        shifts = (-_ONE_DAY, timedelta(0), _ONE_DAY)
        lowest = min(_offset(start + shift, zone) for shift in shifts)
        scans.append((1, _floor_minute(start.replace(tzinfo=None) + lowest)))
    return min(
        _first_firing(expression, start_wall, start, zone, fold)
        for expression in cron.expressions
        for fold, start_wall in scans
    )


def first_cron_time(line: str, not_before: datetime, *, local_time: bool = False) -> datetime:
    """Find the first firing at or after a moment: a task queued with a cron line waits for
    its first match, and one queued exactly on a matching minute runs in that minute."""
    start = _require_aware(not_before, "not_before")
    ceiling = _floor_minute(start)
    if ceiling != start:
        ceiling += _ONE_MINUTE
    return next_cron_time(line, ceiling - _ONE_MINUTE, local_time=local_time)


# --------------------------------------------------------------------------- repeating tasks


def next_run_time(
    *,
    run_started: datetime,
    period: int,
    prevent_drift: bool,
    start_time: datetime,
    cronline: str | None,
    local_time: bool = False,
) -> datetime:
    """Decide when a repeating task is due again, by web2py's rules.

    With prevent_drift the runs stay on the grid start_time + k * period, and a run that
    starts late skips the slots it missed: a burst of catch-up runs would only pile up work
    that the next regular run does anyway.
    """
    started = _require_aware(run_started, "run_started")
    if cronline:
        return next_cron_time(cronline, _floor_minute(started), local_time=local_time)
    if period < 0:
        raise ValueError(f"period must not be negative, got {period}")
    step = timedelta(seconds=period)
    if not prevent_drift:
        return started + step
    if period == 0:
        return started
    origin = _require_aware(start_time, "start_time")
    if started < origin:
        return origin + step
    slots_passed = (started - origin) // step
    return origin + step * (slots_passed + 1)
