"""Unit tests for taskmill.timing: clocks, the storage edge, cron lines and repeat rules.

Expected values are written out by hand (and checked against a calendar), never computed
with the code under test. Local-time tests switch the process time zone through TZ and
``time.tzset()`` and restore it afterwards.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from taskmill.timing import (
    UTC,
    as_utc,
    cronline_error,
    first_cron_time,
    from_storage,
    next_cron_time,
    next_run_time,
    to_storage,
    utc_now,
)

pytestmark = pytest.mark.filterwarnings("error")

BERLIN = ZoneInfo("Europe/Berlin")
# The same rules as Europe/Berlin, spelled as a POSIX TZ string that zoneinfo cannot load.
BERLIN_POSIX_RULE = "CET-1CEST,M3.5.0,M10.5.0/3"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def berlin(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=BERLIN)


@pytest.fixture
def set_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    def set_zone(value: str) -> None:
        monkeypatch.setenv("TZ", value)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def in_berlin(set_tz: Callable[[str], None]) -> None:
    set_tz("Europe/Berlin")


# --------------------------------------------------------------------------- clock


def test_utc_is_the_standard_library_utc() -> None:
    assert UTC is dt.UTC


def test_utc_now_is_aware_utc_and_current() -> None:
    before = time.time()
    now = utc_now()
    after = time.time()
    assert now.tzinfo is UTC
    assert before - 1 <= now.timestamp() <= after + 1


# --------------------------------------------------------------------------- as_utc


def test_as_utc_converts_aware_summer_time() -> None:
    result = as_utc(berlin(2026, 7, 1, 14, 0))
    assert result == utc(2026, 7, 1, 12, 0)
    assert result.tzinfo is UTC


def test_as_utc_converts_aware_winter_time() -> None:
    assert as_utc(berlin(2026, 1, 15, 10, 0)) == utc(2026, 1, 15, 9, 0)


def test_as_utc_takes_naive_as_utc_by_default() -> None:
    result = as_utc(datetime(2026, 1, 15, 10, 0))
    assert result == utc(2026, 1, 15, 10, 0)
    assert result.tzinfo is UTC


@pytest.mark.usefixtures("in_berlin")
def test_as_utc_takes_naive_as_utc_by_default_whatever_the_local_zone() -> None:
    assert as_utc(datetime(2026, 1, 15, 10, 0)) == utc(2026, 1, 15, 10, 0)


@pytest.mark.usefixtures("in_berlin")
def test_as_utc_takes_naive_as_local_time_when_asked() -> None:
    assert as_utc(datetime(2026, 1, 15, 10, 0), local_time=True) == utc(2026, 1, 15, 9, 0)
    assert as_utc(datetime(2026, 7, 1, 10, 0), local_time=True) == utc(2026, 7, 1, 8, 0)


@pytest.mark.usefixtures("in_berlin")
def test_as_utc_ignores_local_time_flag_for_aware_values() -> None:
    assert as_utc(utc(2026, 1, 15, 10, 0), local_time=True) == utc(2026, 1, 15, 10, 0)


@pytest.mark.usefixtures("in_berlin")
def test_as_utc_reads_a_repeated_local_time_as_its_first_occurrence() -> None:
    # 2026-10-25: 03:00 CEST -> 02:00 CET, so 02:30 happens at 00:30Z and at 01:30Z.
    assert as_utc(datetime(2026, 10, 25, 2, 30), local_time=True) == utc(2026, 10, 25, 0, 30)


@pytest.mark.usefixtures("in_berlin")
def test_as_utc_reads_a_missing_local_time_with_the_offset_before_the_gap() -> None:
    # 2026-03-29: 02:00 CET -> 03:00 CEST; 02:30 does not exist and is read as +01:00.
    assert as_utc(datetime(2026, 3, 29, 2, 30), local_time=True) == utc(2026, 3, 29, 1, 30)


# --------------------------------------------------------------------------- to_storage


@pytest.mark.parametrize("local_time", [False, True])
def test_to_storage_keeps_none(local_time: bool) -> None:
    assert to_storage(None, local_time=local_time) is None


def test_to_storage_gives_naive_utc_for_aware_input_in_another_zone() -> None:
    stored = to_storage(berlin(2026, 7, 1, 14, 0, 5))
    assert stored == datetime(2026, 7, 1, 12, 0, 5)
    assert stored.tzinfo is None


def test_to_storage_keeps_microseconds() -> None:
    assert to_storage(utc(2026, 7, 1, 12, 0, 5, 123456)) == datetime(2026, 7, 1, 12, 0, 5, 123456)


def test_to_storage_takes_naive_input_as_utc() -> None:
    assert to_storage(datetime(2026, 7, 1, 12, 0)) == datetime(2026, 7, 1, 12, 0)


@pytest.mark.usefixtures("in_berlin")
def test_to_storage_gives_naive_local_time_when_asked() -> None:
    assert to_storage(utc(2026, 7, 1, 12, 0), local_time=True) == datetime(2026, 7, 1, 14, 0)
    assert to_storage(utc(2026, 1, 15, 12, 0), local_time=True) == datetime(2026, 1, 15, 13, 0)


@pytest.mark.usefixtures("in_berlin")
def test_to_storage_local_time_converts_aware_input_from_any_zone() -> None:
    tokyo = datetime(2026, 7, 1, 21, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert to_storage(tokyo, local_time=True) == datetime(2026, 7, 1, 14, 0)


# --------------------------------------------------------------------------- from_storage


@pytest.mark.parametrize("local_time", [False, True])
def test_from_storage_keeps_none(local_time: bool) -> None:
    assert from_storage(None, local_time=local_time) is None


def test_from_storage_reads_naive_as_utc() -> None:
    result = from_storage(datetime(2026, 7, 1, 12, 0))
    assert result == utc(2026, 7, 1, 12, 0)
    assert result.tzinfo is UTC


@pytest.mark.usefixtures("in_berlin")
def test_from_storage_reads_naive_as_local_time_when_asked() -> None:
    assert from_storage(datetime(2026, 7, 1, 14, 0), local_time=True) == utc(2026, 7, 1, 12, 0)


def test_from_storage_accepts_aware_values_and_returns_utc() -> None:
    result = from_storage(berlin(2026, 7, 1, 14, 0))
    assert result == utc(2026, 7, 1, 12, 0)
    assert result.tzinfo is UTC


def test_storage_round_trip_of_aware_value_in_another_zone() -> None:
    original = berlin(2026, 3, 29, 3, 30, 15)
    restored = from_storage(to_storage(original))
    assert restored == original
    assert restored.tzinfo is UTC


def test_storage_round_trip_of_naive_value() -> None:
    stored = datetime(2026, 12, 31, 23, 59, 59, 999999)
    assert to_storage(from_storage(stored)) == stored


@pytest.mark.usefixtures("in_berlin")
@pytest.mark.parametrize(
    "original",
    [utc(2026, 1, 15, 23, 30), utc(2026, 7, 1, 23, 30), utc(2026, 10, 25, 0, 30)],
    ids=["winter", "summer", "first-pass-of-repeated-hour"],
)
def test_storage_round_trip_in_local_time(original: datetime) -> None:
    assert from_storage(to_storage(original, local_time=True), local_time=True) == original


# --------------------------------------------------------------------------- local zone


def test_posix_tz_rule_converts_like_the_named_zone(set_tz: Callable[[str], None]) -> None:
    set_tz(BERLIN_POSIX_RULE)
    assert as_utc(datetime(2026, 1, 15, 10, 0), local_time=True) == utc(2026, 1, 15, 9, 0)
    assert as_utc(datetime(2026, 7, 1, 10, 0), local_time=True) == utc(2026, 7, 1, 8, 0)
    assert as_utc(datetime(2026, 10, 25, 2, 30), local_time=True) == utc(2026, 10, 25, 0, 30)
    assert as_utc(datetime(2026, 3, 29, 2, 30), local_time=True) == utc(2026, 3, 29, 1, 30)
    assert to_storage(utc(2026, 10, 25, 1, 30), local_time=True) == datetime(2026, 10, 25, 2, 30)


def test_posix_tz_rule_follows_dst_in_cron(set_tz: Callable[[str], None]) -> None:
    set_tz(BERLIN_POSIX_RULE)
    assert next_cron_time("0 2 * * *", utc(2026, 3, 28, 1, 0), local_time=True) == utc(
        2026, 3, 29, 1, 0
    )
    assert next_cron_time("0 2 * * *", utc(2026, 10, 25, 0, 0), local_time=True) == utc(
        2026, 10, 26, 1, 0
    )
    assert next_cron_time("0 * * * *", utc(2026, 10, 25, 0, 0), local_time=True) == utc(
        2026, 10, 25, 1, 0
    )


def test_tz_with_colon_prefix_names_a_zone(set_tz: Callable[[str], None]) -> None:
    set_tz(":Europe/Berlin")
    assert as_utc(datetime(2026, 7, 1, 10, 0), local_time=True) == utc(2026, 7, 1, 8, 0)


def test_empty_tz_means_utc(set_tz: Callable[[str], None]) -> None:
    set_tz("")
    assert as_utc(datetime(2026, 7, 1, 10, 0), local_time=True) == utc(2026, 7, 1, 10, 0)


# --------------------------------------------------------------------------- valid cron lines

ALIASES = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"]


@pytest.mark.parametrize("alias", ALIASES)
def test_every_alias_is_valid(alias: str) -> None:
    assert cronline_error(alias) is None


@pytest.mark.parametrize(
    "line",
    [
        "* * * * *",
        "0 0 * * *",
        "  0 0 * * *  ",
        "0\t0 * * *",
        "0 0 * * *\n",
        "0 9 * * mon-fri",
        "0 9 * * MON,wed,Fri",
        "0 0 1 jan,JUL *",
        "0 0 1 Jan-Jun/2 *",
        "0 0 * * sun",
        "0 0 * * 7",
        "0 0 * * 5-7",
        "*/5 * * * *",
        "0 1-10/2 * * *",
        "5/20 * * * *",
        "0,15,30,45 8-18 * * 1-5",
        "0 0 L * *",
        "0 0 l * *",
        "0 0 1,15,L * *",
        "0 0 29 2 *",
        "0 0 31 1-12 *",
        "0 0 31 2 mon",
        "59 23 31 12 *",
        "0 0 5-5 * *",
        "@DAILY",
    ],
)
def test_valid_cron_line(line: str) -> None:
    assert cronline_error(line) is None


# --------------------------------------------------------------------------- invalid cron lines


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        # not a string, empty
        (None, "must be a string"),
        (5, "must be a string"),
        (b"0 0 * * *", "must be a string"),
        ("", "empty"),
        ("   ", "empty"),
        # wrong number of fields
        ("0 0 * * * *", "6 fields: seconds are not supported"),
        ("*/10 0 0 * * *", "6 fields: seconds are not supported"),
        ("* * * *", "expected 5 fields"),
        ("0", "expected 5 fields"),
        ("0 0 0 1 1 * 2026", "expected 5 fields"),
        # reversed ranges
        ("0 0 5-1 * *", "reversed range"),
        ("30-10 * * * *", "reversed range"),
        ("0 22-2 * * *", "reversed range"),
        ("0 0 * dec-jan *", "reversed range"),
        ("0 0 * * fri-mon", "reversed range"),
        ("0 0 * * sat-sun", "reversed range"),
        # out of range
        ("60 * * * *", "60 is out of range 0-59"),
        ("0 24 * * *", "24 is out of range 0-23"),
        ("0 0 32 * *", "32 is out of range 1-31"),
        ("0 0 * 13 *", "13 is out of range 1-12"),
        ("0 0 0 * *", "out of range"),
        ("0 0 * 0 *", "out of range"),
        ("0 0 * * 8", "out of range"),
        ("0-60 * * * *", "out of range"),
        ("0 0 1-32 * *", "out of range"),
        ("99999999999999999999 * * * *", "out of range"),
        # dates that never exist
        ("0 0 31 2 *", "never occurs in February"),
        ("0 0 30 2 *", "never occurs in February"),
        ("0 0 30,31 feb *", "never occurs in February"),
        ("0 0 31 4,6,9,11 *", "never occurs in April, June, September, November"),
        # unknown names
        ("0 0 * * mo", "unknown name 'mo'"),
        ("0 0 * * monday", "unknown name 'monday'"),
        ("0 0 * foo *", "unknown name 'foo'"),
        ("0 0 * * jan", "unknown name 'jan'"),
        ("0 0 * mon *", "unknown name 'mon'"),
        ("0 noon * * *", "unknown name 'noon'"),
        # junk characters and syntax croniter would accept as extensions
        ("0 0 ? * *", "invalid element '?'"),
        ("0 0 * * mon#2", "invalid element 'mon#2'"),
        ("0 0 15w * *", "invalid element '15w'"),
        ("0 0 * * 5l", "invalid element '5l'"),
        ("h * * * *", "unknown name 'h'"),
        ("0 0 1,,2 * *", "invalid element ''"),
        ("0 0 1, * *", "invalid element ''"),
        ("*/ * * * *", "invalid element '*/'"),
        ("- * * * *", "invalid element '-'"),
        ("0 0 * * 1-5/", "invalid element '1-5/'"),
        ("0 0 * * *;", "invalid element '*;'"),
        ("0 0 * * 1.5", "invalid element '1.5'"),
        ("0 0 * * -1", "invalid element '-1'"),
        ("0\u00a00 * * *", "non-ASCII"),
        ("0 0 \uff11 * *", "non-ASCII"),
        ("0 0\n* * *", "single line"),
        ("0 0 * *\r*", "single line"),
        # L outside its one place
        ("0 0 * * l", "only allowed in the day-of-month field"),
        ("l 0 * * *", "only allowed in the day-of-month field"),
        ("0 0 * l *", "only allowed in the day-of-month field"),
        ("0 0 l-5 * *", "L must stand alone"),
        ("0 0 15-l * *", "L must stand alone"),
        ("0 0 l/2 * *", "L must stand alone"),
        ("0 0 lw * *", "L must stand alone"),
        # step zero
        ("*/0 * * * *", "step must be at least 1"),
        ("0 1-5/0 * * *", "step must be at least 1"),
        # unknown aliases
        ("@reboot", "unknown alias '@reboot'"),
        ("@every 5m", "unknown alias"),
        ("@daily 5", "unknown alias"),
        ("@", "unknown alias"),
        ("@weekdays", "unknown alias"),
    ],
)
def test_invalid_cron_line_gives_a_message(line: object, fragment: str) -> None:
    message = cronline_error(line)
    assert message is not None
    assert fragment in message
    assert len(message) < 200


def test_six_fields_message_is_exact() -> None:
    assert cronline_error("0 0 0 * * *") == "6 fields: seconds are not supported"


def test_next_cron_time_rejects_an_invalid_line() -> None:
    with pytest.raises(ValueError, match="reversed range"):
        next_cron_time("0 0 5-1 * *", utc(2026, 1, 1))


def test_next_cron_time_rejects_a_line_croniter_reads_as_seconds() -> None:
    with pytest.raises(ValueError, match="seconds are not supported"):
        next_cron_time("0 0 * * * *", utc(2026, 1, 1))


def test_next_cron_time_rejects_a_date_that_never_exists() -> None:
    with pytest.raises(ValueError, match="never occurs"):
        next_cron_time("0 0 31 2 *", utc(2026, 1, 1))


# --------------------------------------------------------------------------- next_cron_time
# 2026-05-13 is a Wednesday.
WEDNESDAY = utc(2026, 5, 13, 10, 17, 30)


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("@yearly", utc(2027, 1, 1, 0, 0)),
        ("@annually", utc(2027, 1, 1, 0, 0)),
        ("@monthly", utc(2026, 6, 1, 0, 0)),
        ("@weekly", utc(2026, 5, 17, 0, 0)),  # Sunday
        ("@daily", utc(2026, 5, 14, 0, 0)),
        ("@midnight", utc(2026, 5, 14, 0, 0)),
        ("@hourly", utc(2026, 5, 13, 11, 0)),
    ],
)
def test_alias_next_time(alias: str, expected: datetime) -> None:
    assert next_cron_time(alias, WEDNESDAY) == expected


def test_next_cron_time_returns_aware_utc() -> None:
    result = next_cron_time("* * * * *", WEDNESDAY)
    assert result == utc(2026, 5, 13, 10, 18)
    assert result.tzinfo is UTC


def test_next_cron_time_is_strictly_after_a_matching_minute() -> None:
    assert next_cron_time("* * * * *", utc(2026, 5, 13, 10, 17)) == utc(2026, 5, 13, 10, 18)


def test_next_cron_time_just_before_a_minute_gives_that_minute() -> None:
    after = utc(2026, 5, 13, 10, 16, 59, 999999)
    assert next_cron_time("* * * * *", after) == utc(2026, 5, 13, 10, 17)


def test_next_cron_time_accepts_after_in_another_zone() -> None:
    # 12:17:30 in Berlin (summer) is 10:17:30Z; the line is still evaluated in UTC.
    assert next_cron_time("30 10 * * *", berlin(2026, 5, 13, 12, 17, 30)) == utc(
        2026, 5, 13, 10, 30
    )


def test_next_cron_time_rejects_naive_after() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_cron_time("* * * * *", datetime(2026, 5, 13, 10, 17))


def test_weekday_names_skip_the_weekend() -> None:
    friday_noon = utc(2026, 5, 15, 12, 0)
    assert next_cron_time("0 9 * * mon-fri", friday_noon) == utc(2026, 5, 18, 9, 0)


def test_names_are_case_insensitive() -> None:
    assert next_cron_time("0 12 * * SAT", WEDNESDAY) == utc(2026, 5, 16, 12, 0)
    assert next_cron_time("0 0 1 Feb *", WEDNESDAY) == utc(2027, 2, 1, 0, 0)


def test_month_name_list() -> None:
    assert next_cron_time("0 0 1 jan,jul *", WEDNESDAY) == utc(2026, 7, 1, 0, 0)


def test_day_of_week_seven_is_sunday() -> None:
    assert next_cron_time("0 0 * * 7", WEDNESDAY) == utc(2026, 5, 17, 0, 0)


def test_day_of_week_range_up_to_seven_includes_sunday() -> None:
    assert next_cron_time("0 0 * * 6-7", utc(2026, 5, 16, 12, 0)) == utc(2026, 5, 17, 0, 0)


def test_hour_range_within_the_day() -> None:
    assert next_cron_time("0 9-11 * * *", utc(2026, 5, 13, 10, 30)) == utc(2026, 5, 13, 11, 0)


def test_hour_range_rolls_to_the_next_day() -> None:
    assert next_cron_time("0 9-11 * * *", utc(2026, 5, 13, 11, 30)) == utc(2026, 5, 14, 9, 0)


def test_minute_list() -> None:
    assert next_cron_time("5,35 * * * *", WEDNESDAY) == utc(2026, 5, 13, 10, 35)
    assert next_cron_time("5,35 * * * *", utc(2026, 5, 13, 10, 35)) == utc(2026, 5, 13, 11, 5)


def test_star_step() -> None:
    assert next_cron_time("*/15 * * * *", WEDNESDAY) == utc(2026, 5, 13, 10, 30)


def test_range_step() -> None:
    # hours 1, 3, 5, 7, 9
    assert next_cron_time("0 1-10/2 * * *", utc(2026, 5, 13, 5, 30)) == utc(2026, 5, 13, 7, 0)
    assert next_cron_time("0 1-10/2 * * *", utc(2026, 5, 13, 9, 0)) == utc(2026, 5, 14, 1, 0)


def test_start_with_step_runs_to_the_end_of_the_field() -> None:
    # minutes 5, 25, 45, as web2py reads "5/20"
    assert next_cron_time("5/20 * * * *", utc(2026, 5, 13, 10, 30)) == utc(2026, 5, 13, 10, 45)
    assert next_cron_time("5/20 * * * *", utc(2026, 5, 13, 10, 45)) == utc(2026, 5, 13, 11, 5)


def test_equal_range_is_a_single_value() -> None:
    # croniter alone would read "5-5" as the whole month.
    assert next_cron_time("0 0 5-5 * *", WEDNESDAY) == utc(2026, 6, 5, 0, 0)


def test_restricted_day_of_month_and_weekday_combine_with_or() -> None:
    # The 13th (today, already past midnight) or any Friday: Friday the 15th comes first.
    assert next_cron_time("0 0 13 * fri", WEDNESDAY) == utc(2026, 5, 15, 0, 0)


def test_weekday_still_fires_when_the_day_of_month_cannot() -> None:
    assert next_cron_time("0 0 31 2 mon", utc(2026, 1, 31)) == utc(2026, 2, 2, 0, 0)


def test_last_day_or_weekday() -> None:
    # The last day of the month or any Monday: Fri 2026-01-30, Sat 01-31, Mon 02-02.
    assert next_cron_time("0 0 L * mon", utc(2026, 1, 30, 12)) == utc(2026, 1, 31, 0, 0)
    assert next_cron_time("0 0 L * mon", utc(2026, 1, 31, 0, 0)) == utc(2026, 2, 2, 0, 0)


def test_last_day_of_february_in_a_non_leap_year() -> None:
    assert next_cron_time("0 0 L * *", utc(2026, 2, 10)) == utc(2026, 2, 28, 0, 0)


def test_last_day_of_february_in_a_leap_year() -> None:
    assert next_cron_time("0 0 L * *", utc(2028, 2, 10)) == utc(2028, 2, 29, 0, 0)


def test_last_day_of_a_30_day_month() -> None:
    assert next_cron_time("0 0 L * *", utc(2026, 4, 10)) == utc(2026, 4, 30, 0, 0)


def test_last_day_of_a_31_day_month() -> None:
    assert next_cron_time("0 0 L * *", utc(2026, 1, 10)) == utc(2026, 1, 31, 0, 0)


def test_last_day_after_firing_moves_to_the_next_month() -> None:
    assert next_cron_time("0 0 L * *", utc(2026, 1, 31, 0, 0)) == utc(2026, 2, 28, 0, 0)


def test_last_day_in_a_list_with_other_days() -> None:
    assert next_cron_time("0 0 15,L * *", utc(2026, 2, 16)) == utc(2026, 2, 28, 0, 0)
    assert next_cron_time("0 0 15,L * *", utc(2026, 2, 28, 0, 0)) == utc(2026, 3, 15, 0, 0)


def test_last_day_of_february_only_finds_the_leap_day() -> None:
    assert next_cron_time("0 0 L 2 *", utc(2027, 3, 1)) == utc(2028, 2, 29, 0, 0)


def test_last_day_of_february_only_in_a_non_leap_year() -> None:
    assert next_cron_time("0 0 L feb *", utc(2026, 3, 1)) == utc(2027, 2, 28, 0, 0)


def test_day_31_skips_shorter_months() -> None:
    assert next_cron_time("0 0 31 * *", utc(2026, 1, 31, 0, 0)) == utc(2026, 3, 31, 0, 0)
    assert next_cron_time("0 0 31 * *", utc(2026, 3, 31, 0, 0)) == utc(2026, 5, 31, 0, 0)


def test_month_end_rollover() -> None:
    assert next_cron_time("0 0 1 * *", utc(2026, 1, 31, 23, 59, 30)) == utc(2026, 2, 1, 0, 0)


def test_every_minute_rolls_over_the_year_end() -> None:
    after = utc(2026, 12, 31, 23, 59, 30)
    assert next_cron_time("* * * * *", after) == utc(2027, 1, 1, 0, 0)


def test_last_minute_of_the_year_waits_a_year() -> None:
    after = utc(2026, 12, 31, 23, 59)
    assert next_cron_time("59 23 31 12 *", after) == utc(2027, 12, 31, 23, 59)


def test_leap_day_from_after_a_leap_day() -> None:
    assert next_cron_time("0 0 29 2 *", utc(2025, 3, 1)) == utc(2028, 2, 29, 0, 0)


def test_leap_day_skips_2100_which_is_not_a_leap_year() -> None:
    assert next_cron_time("0 0 29 2 *", utc(2096, 3, 1)) == utc(2104, 2, 29, 0, 0)


def test_cron_is_evaluated_in_utc_by_default() -> None:
    assert next_cron_time("0 2 * * *", utc(2026, 7, 1)) == utc(2026, 7, 1, 2, 0)


@pytest.mark.usefixtures("in_berlin")
def test_cron_is_evaluated_in_utc_unless_asked_even_with_a_local_zone() -> None:
    assert next_cron_time("0 2 * * *", utc(2026, 7, 1)) == utc(2026, 7, 1, 2, 0)


# --------------------------------------------------------------------------- local time and DST
# Europe/Berlin 2026: 2026-03-29 02:00 CET -> 03:00 CEST, 2026-10-25 03:00 CEST -> 02:00 CET.


@pytest.mark.usefixtures("in_berlin")
def test_local_cron_in_summer() -> None:
    after = utc(2026, 6, 30, 12, 0)
    assert next_cron_time("0 2 * * *", after, local_time=True) == utc(2026, 7, 1, 0, 0)


@pytest.mark.usefixtures("in_berlin")
def test_local_cron_in_winter() -> None:
    assert next_cron_time("0 2 * * *", utc(2026, 1, 15), local_time=True) == utc(2026, 1, 15, 1, 0)


@pytest.mark.usefixtures("in_berlin")
def test_local_cron_the_day_before_spring_forward() -> None:
    after = utc(2026, 3, 27, 12, 0)
    assert next_cron_time("0 2 * * *", after, local_time=True) == utc(2026, 3, 28, 1, 0)


@pytest.mark.usefixtures("in_berlin")
def test_local_cron_in_the_spring_forward_gap_runs_when_the_gap_ends() -> None:
    # 02:00 does not exist on 2026-03-29; the job runs at 03:00 CEST = 01:00Z, not skipped.
    after = utc(2026, 3, 28, 1, 0)
    assert next_cron_time("0 2 * * *", after, local_time=True) == utc(2026, 3, 29, 1, 0)


@pytest.mark.usefixtures("in_berlin")
def test_local_cron_half_past_in_the_gap_also_runs_when_the_gap_ends() -> None:
    after = utc(2026, 3, 28, 1, 30)
    assert next_cron_time("30 2 * * *", after, local_time=True) == utc(2026, 3, 29, 1, 0)


@pytest.mark.usefixtures("in_berlin")
def test_local_cron_the_day_after_spring_forward() -> None:
    after = utc(2026, 3, 29, 1, 0)
    assert next_cron_time("0 2 * * *", after, local_time=True) == utc(2026, 3, 30, 0, 0)


@pytest.mark.usefixtures("in_berlin")
def test_local_cron_every_half_hour_skips_the_gap_without_a_burst() -> None:
    # 00:45Z is 01:45 CET; the next wall-clock slot that exists is 03:00 CEST = 01:00Z.
    assert next_cron_time("*/30 * * * *", utc(2026, 3, 29, 0, 45), local_time=True) == utc(
        2026, 3, 29, 1, 0
    )
    assert next_cron_time("*/30 * * * *", utc(2026, 3, 29, 1, 0), local_time=True) == utc(
        2026, 3, 29, 1, 30
    )


@pytest.mark.usefixtures("in_berlin")
def test_local_cron_in_the_repeated_hour_runs_once() -> None:
    after = utc(2026, 10, 24, 12, 0)
    first = next_cron_time("0 2 * * *", after, local_time=True)
    assert first == utc(2026, 10, 25, 0, 0)  # 02:00 CEST
    assert next_cron_time("0 2 * * *", first, local_time=True) == utc(2026, 10, 26, 1, 0)


@pytest.mark.usefixtures("in_berlin")
def test_local_cron_with_fixed_hour_skips_the_whole_second_pass() -> None:
    # 02:00, 02:20, 02:40 CEST fire (00:00Z-00:40Z); the same minutes in CET do not.
    line = "*/20 2 * * *"
    assert next_cron_time(line, utc(2026, 10, 25, 0, 20), local_time=True) == utc(
        2026, 10, 25, 0, 40
    )
    assert next_cron_time(line, utc(2026, 10, 25, 0, 40), local_time=True) == utc(
        2026, 10, 26, 1, 0
    )


@pytest.mark.usefixtures("in_berlin")
def test_local_cron_started_inside_the_second_pass_does_not_run_again() -> None:
    # 01:30Z is 02:30 CET, the second pass; 02:45 CEST (00:45Z) has already been.
    after = utc(2026, 10, 25, 1, 30)
    assert next_cron_time("45 2 * * *", after, local_time=True) == utc(2026, 10, 26, 1, 45)


@pytest.mark.usefixtures("in_berlin")
def test_local_hourly_cron_runs_in_both_passes_of_the_repeated_hour() -> None:
    line = "0 * * * *"
    assert next_cron_time(line, utc(2026, 10, 25, 0, 0), local_time=True) == utc(2026, 10, 25, 1, 0)
    assert next_cron_time(line, utc(2026, 10, 25, 1, 0), local_time=True) == utc(2026, 10, 25, 2, 0)


@pytest.mark.usefixtures("in_berlin")
def test_local_every_20_minutes_continues_into_the_second_pass() -> None:
    # 00:50Z is 02:50 CEST; the wall clock then goes back to 02:00 CET = 01:00Z.
    assert next_cron_time("*/20 * * * *", utc(2026, 10, 25, 0, 50), local_time=True) == utc(
        2026, 10, 25, 1, 0
    )


@pytest.mark.usefixtures("in_berlin")
def test_local_cron_accepts_after_in_any_zone() -> None:
    after = datetime(2026, 7, 1, 7, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # 2026-06-30 22:00Z
    assert next_cron_time("0 2 * * *", after, local_time=True) == utc(2026, 7, 1, 0, 0)


# --------------------------------------------------------------------------- first_cron_time


def test_first_cron_time_includes_a_matching_minute() -> None:
    assert first_cron_time("*/5 * * * *", utc(2026, 5, 13, 10, 15)) == utc(2026, 5, 13, 10, 15)


def test_first_cron_time_within_a_matching_minute_waits_for_the_next_match() -> None:
    not_before = utc(2026, 5, 13, 10, 15, 0, 1)
    assert first_cron_time("*/5 * * * *", not_before) == utc(2026, 5, 13, 10, 20)


def test_first_cron_time_waits_for_the_first_match() -> None:
    assert first_cron_time("0 0 L * *", utc(2026, 2, 1, 12)) == utc(2026, 2, 28, 0, 0)


def test_first_cron_time_rejects_naive_values() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        first_cron_time("* * * * *", datetime(2026, 5, 13))


@pytest.mark.usefixtures("in_berlin")
def test_first_cron_time_in_local_time() -> None:
    # 00:00Z is exactly 02:00 CEST.
    assert first_cron_time("0 2 * * *", utc(2026, 7, 1, 0, 0), local_time=True) == utc(
        2026, 7, 1, 0, 0
    )


# --------------------------------------------------------------------------- next_run_time

START = utc(2026, 5, 13, 10, 0)


def test_next_run_time_with_cronline_uses_the_minute_the_run_started() -> None:
    result = next_run_time(
        run_started=utc(2026, 5, 13, 10, 17, 45),
        period=60,
        prevent_drift=False,
        start_time=START,
        cronline="*/5 * * * *",
    )
    assert result == utc(2026, 5, 13, 10, 20)


def test_next_run_time_with_cronline_never_repeats_the_current_minute() -> None:
    result = next_run_time(
        run_started=utc(2026, 5, 13, 10, 20, 0, 200000),
        period=60,
        prevent_drift=False,
        start_time=START,
        cronline="*/5 * * * *",
    )
    assert result == utc(2026, 5, 13, 10, 25)


def test_next_run_time_cronline_wins_over_prevent_drift() -> None:
    result = next_run_time(
        run_started=utc(2026, 5, 13, 10, 17, 45),
        period=7,
        prevent_drift=True,
        start_time=START,
        cronline="@hourly",
    )
    assert result == utc(2026, 5, 13, 11, 0)


@pytest.mark.usefixtures("in_berlin")
def test_next_run_time_with_cronline_in_local_time() -> None:
    result = next_run_time(
        run_started=utc(2026, 3, 28, 1, 0, 3),
        period=60,
        prevent_drift=False,
        start_time=START,
        cronline="0 2 * * *",
        local_time=True,
    )
    assert result == utc(2026, 3, 29, 1, 0)


def test_next_run_time_with_an_empty_cronline_uses_the_period() -> None:
    result = next_run_time(
        run_started=utc(2026, 5, 13, 10, 0, 7),
        period=60,
        prevent_drift=False,
        start_time=START,
        cronline="",
    )
    assert result == utc(2026, 5, 13, 10, 1, 7)


def test_next_run_time_without_prevent_drift_adds_the_period_to_the_run_start() -> None:
    result = next_run_time(
        run_started=utc(2026, 5, 13, 10, 0, 7),
        period=60,
        prevent_drift=False,
        start_time=START,
        cronline=None,
    )
    assert result == utc(2026, 5, 13, 10, 1, 7)


def test_next_run_time_without_prevent_drift_drifts_with_a_late_run() -> None:
    result = next_run_time(
        run_started=utc(2026, 5, 13, 10, 35),
        period=600,
        prevent_drift=False,
        start_time=START,
        cronline=None,
    )
    assert result == utc(2026, 5, 13, 10, 45)


def test_next_run_time_prevent_drift_stays_on_the_grid() -> None:
    result = next_run_time(
        run_started=utc(2026, 5, 13, 10, 0, 5),
        period=60,
        prevent_drift=True,
        start_time=START,
        cronline=None,
    )
    assert result == utc(2026, 5, 13, 10, 1)


def test_next_run_time_prevent_drift_skips_missed_slots_of_a_run_late_by_three_and_a_half() -> None:
    # Slots 10:10, 10:20 and 10:30 were missed; the next run is the 10:40 slot, no burst.
    result = next_run_time(
        run_started=utc(2026, 5, 13, 10, 35),
        period=600,
        prevent_drift=True,
        start_time=START,
        cronline=None,
    )
    assert result == utc(2026, 5, 13, 10, 40)


def test_next_run_time_prevent_drift_on_a_slot_gives_the_following_slot() -> None:
    result = next_run_time(
        run_started=utc(2026, 5, 13, 10, 20),
        period=600,
        prevent_drift=True,
        start_time=START,
        cronline=None,
    )
    assert result == utc(2026, 5, 13, 10, 30)


def test_next_run_time_prevent_drift_before_start_time() -> None:
    result = next_run_time(
        run_started=utc(2026, 5, 13, 9, 59, 58),
        period=600,
        prevent_drift=True,
        start_time=START,
        cronline=None,
    )
    assert result == utc(2026, 5, 13, 10, 10)


def test_next_run_time_prevent_drift_with_zero_period_returns_the_run_start() -> None:
    run_started = utc(2026, 5, 13, 10, 35, 12)
    result = next_run_time(
        run_started=run_started,
        period=0,
        prevent_drift=True,
        start_time=START,
        cronline=None,
    )
    assert result == run_started


def test_next_run_time_prevent_drift_keeps_sub_second_start_times() -> None:
    start = utc(2026, 5, 13, 10, 0, 0, 500000)
    result = next_run_time(
        run_started=utc(2026, 5, 13, 10, 0, 3),
        period=3,
        prevent_drift=True,
        start_time=start,
        cronline=None,
    )
    assert result == utc(2026, 5, 13, 10, 0, 3, 500000)


def test_next_run_time_prevent_drift_over_many_periods() -> None:
    # 100 days and 1 second after the start, with an hourly period: slot 2401 is next.
    result = next_run_time(
        run_started=START + timedelta(days=100, seconds=1),
        period=3600,
        prevent_drift=True,
        start_time=START,
        cronline=None,
    )
    assert result == START + timedelta(days=100, hours=1)


def test_next_run_time_accepts_other_zones_and_returns_utc() -> None:
    result = next_run_time(
        run_started=berlin(2026, 5, 13, 12, 35),
        period=600,
        prevent_drift=True,
        start_time=berlin(2026, 5, 13, 12, 0),
        cronline=None,
    )
    assert result == utc(2026, 5, 13, 10, 40)
    assert result.tzinfo is UTC


def test_next_run_time_rejects_a_negative_period() -> None:
    with pytest.raises(ValueError, match="negative"):
        next_run_time(
            run_started=START, period=-1, prevent_drift=False, start_time=START, cronline=None
        )


def test_next_run_time_rejects_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_run_time(
            run_started=datetime(2026, 5, 13, 10, 0),
            period=60,
            prevent_drift=False,
            start_time=START,
            cronline=None,
        )
