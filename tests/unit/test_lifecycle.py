"""lifecycle.settle: web2py's rules for what a finished run does to its task (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskmill.lifecycle import MAX_RETRY_DELAY, Outcome, retry_delay, settle
from taskmill.records import Task
from taskmill.states import RunStatus

START = datetime(2030, 1, 7, 12, 0, tzinfo=UTC)  # a Monday
STARTED = datetime(2030, 1, 7, 12, 10, 30, tzinfo=UTC)
FINISHED = STARTED + timedelta(seconds=5)


def task(**values: Any) -> Task:
    fields: dict[str, Any] = {
        "id": 1,
        "status": "RUNNING",
        "function_name": "add",
        "start_time": START,
        "next_run_time": START,
        "assigned_worker_name": "w1",
    }
    fields.update(values)
    return Task(**fields)


def outcome(status: RunStatus = RunStatus.COMPLETED, **values: Any) -> Outcome:
    fields: dict[str, Any] = {
        "task": task(),
        "status": status,
        "started": STARTED,
        "finished": FINISHED,
        "result": "3",
    }
    fields.update(values)
    return Outcome(**fields)


def settled(status: RunStatus = RunStatus.COMPLETED, **task_values: Any) -> dict[str, Any]:
    return settle(outcome(status, task=task(**task_values)), discard_results=False).task_values


# ------------------------------------------------------------------ completed runs


def test_single_run_completes_the_task() -> None:
    values = settled(repeats=1)
    assert values["status"] == "COMPLETED"
    assert values["times_run"] == 1
    assert values["times_failed"] == 0
    assert values["last_run_time"] == STARTED
    assert "assigned_worker_name" not in values


def test_completed_run_resolves_dependencies_only_when_the_task_is_done() -> None:
    done = settle(outcome(task=task(repeats=1)), discard_results=False)
    again = settle(outcome(task=task(repeats=2)), discard_results=False)
    assert done.resolves_dependencies is True
    assert again.resolves_dependencies is False


def test_repeating_task_goes_back_to_queued_and_frees_its_worker() -> None:
    values = settled(repeats=3, times_run=1, period=60)
    assert values["status"] == "QUEUED"
    assert values["times_run"] == 2
    assert values["assigned_worker_name"] == ""
    assert values["next_run_time"] == STARTED + timedelta(seconds=60)


def test_repeating_task_completes_when_repeats_are_used_up() -> None:
    assert settled(repeats=3, times_run=2)["status"] == "COMPLETED"
    assert settled(repeats=3, times_run=2)["times_run"] == 3


def test_repeats_zero_runs_forever() -> None:
    values = settled(repeats=0, times_run=10_000)
    assert values["status"] == "QUEUED"
    assert values["times_run"] == 10_001


def test_success_resets_consecutive_failures() -> None:
    assert settled(repeats=0, times_failed=2, retry_failed=5)["times_failed"] == 0


def test_period_counts_from_the_start_of_the_run() -> None:
    values = settled(repeats=0, period=300)
    assert values["next_run_time"] == datetime(2030, 1, 7, 12, 15, 30, tzinfo=UTC)


def test_prevent_drift_stays_on_the_start_time_grid() -> None:
    values = settled(repeats=0, period=300, prevent_drift=True)
    # the grid is 12:00, 12:05, 12:10, 12:15: the run that started at 12:10:30 is next at 12:15
    assert values["next_run_time"] == datetime(2030, 1, 7, 12, 15, tzinfo=UTC)


def test_cronline_replaces_period() -> None:
    values = settled(repeats=0, period=60, cronline="0 3 * * *")
    assert values["next_run_time"] == datetime(2030, 1, 8, 3, 0, tzinfo=UTC)


def test_cronline_next_match_is_after_the_run_minute() -> None:
    values = settled(repeats=0, cronline="*/15 * * * *")
    assert values["next_run_time"] == datetime(2030, 1, 7, 12, 15, tzinfo=UTC)


def test_repeating_task_expires_when_its_next_run_passes_stop_time() -> None:
    stop = STARTED + timedelta(seconds=30)
    values = settled(repeats=0, period=60, stop_time=stop)
    assert values["status"] == "EXPIRED"
    assert values["times_run"] == 1


def test_repeating_task_with_next_run_before_stop_time_is_queued() -> None:
    stop = STARTED + timedelta(seconds=60)
    assert settled(repeats=0, period=60, stop_time=stop)["status"] == "QUEUED"


def test_last_repeat_completes_even_past_stop_time() -> None:
    stop = STARTED + timedelta(seconds=1)
    assert settled(repeats=2, times_run=1, period=60, stop_time=stop)["status"] == "COMPLETED"


# ------------------------------------------------------------------ failed runs


@pytest.mark.parametrize("status", [RunStatus.FAILED, RunStatus.TIMEOUT])
def test_failure_without_retries_is_final(status: RunStatus) -> None:
    values = settled(status, retry_failed=0)
    assert values["status"] == status.value
    assert values["times_failed"] == 1
    assert "times_run" not in values


def test_retry_failed_two_requeues_twice_then_fails() -> None:
    first = settled(RunStatus.FAILED, retry_failed=2, times_failed=0)
    second = settled(RunStatus.FAILED, retry_failed=2, times_failed=1)
    third = settled(RunStatus.FAILED, retry_failed=2, times_failed=2)
    assert (first["status"], first["times_failed"]) == ("QUEUED", 1)
    assert (second["status"], second["times_failed"]) == ("QUEUED", 2)
    assert (third["status"], third["times_failed"]) == ("FAILED", 3)


def test_requeued_retry_frees_its_worker() -> None:
    assert settled(RunStatus.FAILED, retry_failed=1)["assigned_worker_name"] == ""


def test_retry_failed_minus_one_retries_forever() -> None:
    values = settled(RunStatus.TIMEOUT, retry_failed=-1, times_failed=500)
    assert (values["status"], values["times_failed"]) == ("QUEUED", 501)


def test_timeout_with_retries_left_is_queued_again() -> None:
    assert settled(RunStatus.TIMEOUT, retry_failed=1)["status"] == "QUEUED"


def test_failure_keeps_times_run() -> None:
    assert "times_run" not in settled(RunStatus.FAILED, times_run=4)


def test_failure_records_last_run_and_next_run_time() -> None:
    values = settled(RunStatus.FAILED, period=60, retry_failed=1)
    assert values["last_run_time"] == STARTED
    assert values["next_run_time"] == STARTED + timedelta(seconds=60)


def test_failed_run_row_is_kept() -> None:
    result = settle(
        outcome(RunStatus.FAILED, result=None, traceback="Traceback ..."), discard_results=True
    )
    assert result.keep_run is True
    assert result.resolves_dependencies is False


# ------------------------------------------------------------------ retries with backoff


def test_retry_backoff_zero_keeps_web2pys_retry_at_start_plus_period() -> None:
    values = settled(RunStatus.FAILED, period=60, retry_failed=3, retry_backoff=0)
    assert values["next_run_time"] == STARTED + timedelta(seconds=60)


def test_first_retry_waits_the_backoff_after_the_end_of_the_failed_run() -> None:
    values = settled(RunStatus.FAILED, period=60, retry_failed=3, retry_backoff=10)
    assert values["status"] == "QUEUED"
    assert values["next_run_time"] == FINISHED + timedelta(seconds=10)
    assert values["last_run_time"] == STARTED


@pytest.mark.parametrize(("failed_before", "delay"), [(0, 10), (1, 20), (2, 40), (3, 80)])
def test_retry_delay_doubles_with_each_consecutive_failure(failed_before: int, delay: int) -> None:
    values = settled(
        RunStatus.FAILED, retry_failed=-1, retry_backoff=10, times_failed=failed_before
    )
    assert values["next_run_time"] == FINISHED + timedelta(seconds=delay)
    assert values["times_failed"] == failed_before + 1


def test_timed_out_run_is_retried_after_the_backoff_from_its_end() -> None:
    finished = STARTED + timedelta(seconds=60)  # killed by its timeout
    result = settle(
        outcome(
            RunStatus.TIMEOUT,
            finished=finished,
            task=task(retry_failed=1, retry_backoff=5, period=0),
        ),
        discard_results=False,
    )
    assert result.task_values["next_run_time"] == finished + timedelta(seconds=5)


def test_retry_delay_stops_growing_at_one_hour() -> None:
    values = settled(RunStatus.FAILED, retry_failed=-1, retry_backoff=1000, times_failed=2)
    assert values["next_run_time"] == FINISHED + timedelta(seconds=MAX_RETRY_DELAY)
    assert MAX_RETRY_DELAY == 3600


def test_retry_delay_after_a_million_failures_is_the_cap() -> None:
    assert retry_delay(1, 1_000_000) == timedelta(seconds=MAX_RETRY_DELAY)


def test_retry_delay_of_a_negative_failure_count_is_the_backoff() -> None:
    # a row written by hand could hold anything; it must not shift the wrong way
    assert retry_delay(7, -3) == timedelta(seconds=7)


def test_retry_backoff_replaces_the_cron_line_for_a_retry() -> None:
    values = settled(RunStatus.FAILED, cronline="0 3 * * *", retry_failed=1, retry_backoff=30)
    assert values["next_run_time"] == FINISHED + timedelta(seconds=30)


def test_retry_backoff_does_not_apply_when_the_retries_are_used_up() -> None:
    values = settled(RunStatus.FAILED, period=60, retry_failed=1, retry_backoff=30, times_failed=1)
    assert values["status"] == "FAILED"
    assert values["next_run_time"] == STARTED + timedelta(seconds=60)


def test_retry_backoff_does_not_delay_the_next_repeat_of_a_success() -> None:
    values = settled(repeats=0, period=60, retry_failed=3, retry_backoff=30, times_failed=2)
    assert values["next_run_time"] == STARTED + timedelta(seconds=60)
    assert values["times_failed"] == 0


def test_retry_backoff_of_a_web2py_row_without_the_column_is_off() -> None:
    values = settled(RunStatus.FAILED, period=60, retry_failed=1, retry_backoff=None)
    assert values["next_run_time"] == STARTED + timedelta(seconds=60)


def test_stopped_run_ignores_retry_backoff() -> None:
    values = settled(RunStatus.STOPPED, retry_failed=-1, retry_backoff=30)
    assert values["status"] == "STOPPED"
    assert values["next_run_time"] == STARTED + timedelta(seconds=60)


# ------------------------------------------------------------------ stopped runs


def test_stopped_run_stops_the_task() -> None:
    result = settle(outcome(RunStatus.STOPPED, result=None), discard_results=False)
    assert result.task_values["status"] == "STOPPED"
    assert "times_run" not in result.task_values
    assert "times_failed" not in result.task_values
    assert result.keep_run is True
    assert result.resolves_dependencies is False


def test_stopped_run_does_not_retry() -> None:
    assert settled(RunStatus.STOPPED, retry_failed=-1)["status"] == "STOPPED"


# ------------------------------------------------------------------ run rows


def test_result_is_kept_by_default() -> None:
    assert settle(outcome(result="3"), discard_results=False).keep_run is True


def test_discard_results_keeps_no_run_of_a_success() -> None:
    assert settle(outcome(result="3"), discard_results=True).keep_run is False


@pytest.mark.parametrize("result", [None, "null"])
def test_none_result_keeps_no_run(result: str | None) -> None:
    assert settle(outcome(result=result), discard_results=False).keep_run is False


def test_none_result_still_counts_the_run() -> None:
    values = settle(outcome(result=None, task=task(repeats=1)), discard_results=False).task_values
    assert (values["status"], values["times_run"]) == ("COMPLETED", 1)


# ------------------------------------------------------------------ requeue on shutdown


def test_requeue_outcome_gives_the_task_back_untouched() -> None:
    result = settle(
        outcome(RunStatus.STOPPED, requeue=True, run_id=None, task=task(times_run=2)),
        discard_results=False,
    )
    assert result.task_values == {"status": "QUEUED", "assigned_worker_name": ""}
    assert result.keep_run is False
    assert result.resolves_dependencies is False


def test_requeue_outcome_keeps_a_run_row_already_written() -> None:
    result = settle(outcome(RunStatus.STOPPED, requeue=True, run_id=17), discard_results=True)
    assert result.keep_run is True
