"""queue_tasks: the bulk enqueue, on SQLite, PostgreSQL and MariaDB.

All or nothing: an invalid call queues none of the others; rows written in bulk are
read back exactly as queue_task's would be.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from taskmill import Scheduler, TaskStatus
from taskmill.schema import scheduler_task as T


def add(a: int, b: int) -> int:
    return a + b


@pytest.fixture
def sched(db_url: str) -> Iterator[Scheduler]:
    scheduler = Scheduler(db_url, tasks={"add": add})
    scheduler.create_tables()
    yield scheduler
    scheduler.store.dispose()


def count(sched: Scheduler) -> int:
    with sched.store.reading() as conn:
        return int(conn.execute(select(func.count()).select_from(T)).scalar_one())


def test_each_call_gets_its_arguments_and_uuid_and_shares_the_options(sched: Scheduler) -> None:
    start = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    calls: list[tuple[Any, Any]] = [([i, i + 1], {"n": i}) for i in range(500)]
    calls.append(((), None))
    queued = sched.queue_tasks("add", calls, timeout=7, group_name="bulk", start_time=start)
    assert queued.errors == {}
    assert queued.count == 501
    assert len(set(queued.uuids)) == 501
    for index in (0, 250, 499, 500):
        task = sched.task_status(queued.uuids[index])
        assert task is not None
        assert task.status == TaskStatus.QUEUED
        assert (task.timeout, task.group_name, task.function_name) == (7, "bulk", "add")
        assert task.start_time == start and task.next_run_time == start
        if index < 500:
            # web2py's spacing: Eden finds tasks by comparing this text
            assert task.args == json.dumps([index, index + 1])
            assert task.vars == json.dumps({"n": index})
        else:
            assert (task.args, task.vars) == ("[]", "{}")
    single = sched.queue_task(
        "add", [0, 1], {"n": 0}, timeout=7, group_name="bulk", start_time=start
    )
    one, bulk = sched.task_status(single.id), sched.task_status(queued.uuids[0])
    assert one is not None and bulk is not None
    differs = {
        name for name in one.__dataclass_fields__ if getattr(one, name) != getattr(bulk, name)
    }
    assert differs == {"id", "uuid"}


def test_one_invalid_call_queues_nothing_and_names_the_call(sched: Scheduler) -> None:
    calls: list[Any] = [([1, 2], None), ([float("nan")], None), ([3, 4], {"x": object()}), "no"]
    queued = sched.queue_tasks("add", calls)
    assert queued.count == 0 and queued.uuids == []
    assert set(queued.errors) == {"calls[1].args", "calls[2].vars", "calls[3]"}
    assert "JSON" in queued.errors["calls[1].args"]
    assert "(pargs, pvars) pair" in queued.errors["calls[3]"]
    assert count(sched) == 0


def test_invalid_shared_options_and_unknown_functions_queue_nothing(sched: Scheduler) -> None:
    assert sched.queue_tasks("add", [([1, 2], None)], timeout=0).errors.keys() == {"timeout"}
    unknown = sched.queue_tasks("nope", [([1, 2], None)])
    assert "no task named 'nope'" in unknown.errors["function_name"]
    assert count(sched) == 0


@pytest.mark.parametrize("option", ["uuid", "args", "vars"])
def test_per_task_options_are_refused(sched: Scheduler, option: str) -> None:
    with pytest.raises(TypeError, match=f"no {option}="):
        sched.queue_tasks("add", [([1, 2], None)], **{option: "x"})


def test_calls_must_be_a_sequence_of_pairs(sched: Scheduler) -> None:
    with pytest.raises(TypeError, match="iterable of"):
        sched.queue_tasks("add", {"a": 1})  # type: ignore[arg-type]


def test_nothing_to_queue_is_not_an_error(sched: Scheduler) -> None:
    queued = sched.queue_tasks("add", iter([]))
    assert (queued.count, queued.uuids, queued.errors) == (0, [], {})


def test_in_the_callers_transaction_the_tasks_commit_or_roll_back_with_it(
    sched: Scheduler,
) -> None:
    engine = sched.store.engine
    with engine.connect() as conn:
        with conn.begin() as transaction:
            queued = sched.queue_tasks("add", [([i, i], None) for i in range(50)], db=conn)
            assert queued.count == 50
            transaction.rollback()
    assert count(sched) == 0
    with engine.begin() as conn:
        sched.queue_tasks("add", [([i, i], None) for i in range(50)], db=conn)
    assert count(sched) == 50
