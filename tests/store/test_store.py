"""The store conformance suite: every backend (SQLite, PostgreSQL, MariaDB) must pass it.

Tests call the store directly, as a worker and the ticker do, with no worker processes.
Time is moved by writing older heartbeats or earlier times into the rows, never by sleeping.
"""

from __future__ import annotations

import threading
import time
import uuid as uuidlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text, update

from taskmill import Scheduler
from taskmill.errors import ConfigurationError
from taskmill.groups import GroupShares
from taskmill.lifecycle import Outcome, settle
from taskmill.records import Run, Task
from taskmill.schema import scheduler_run, scheduler_task, scheduler_task_deps, scheduler_worker
from taskmill.states import RunStatus, TaskStatus, WorkerStatus
from taskmill.store import Store, open_store
from taskmill.store.base import Recorded
from taskmill.timing import to_storage

T = scheduler_task
R = scheduler_run
W = scheduler_worker
D = scheduler_task_deps

LEASE = 6.0  # seconds a ticker's heartbeat keeps the role (two heartbeats of 3 s)
DEAD_AFTER = 9.0  # seconds of silence after which a worker is dead (three heartbeats)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = open_store(db_url)
    opened.create_tables()
    yield opened
    opened.dispose()


@pytest.fixture
def other_store(db_url: str, store: Store) -> Iterator[Store]:
    """A second store on the same database, as another worker process would have."""
    opened = open_store(db_url)
    yield opened
    opened.dispose()


# ------------------------------------------------------------------ helpers


def task_row(now: datetime, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "application_name": "tests",
        "task_name": "add",
        "function_name": "add",
        "group_name": "main",
        "status": TaskStatus.QUEUED.value,
        "uuid": str(uuidlib.uuid4()),
        "args": "[1, 2]",
        "vars": "{}",
        "enabled": True,
        "broadcast": False,
        "prevent_drift": False,
        "start_time": now - timedelta(minutes=1),
        "next_run_time": now - timedelta(minutes=1),
        "stop_time": None,
        "repeats": 1,
        "retry_failed": 0,
        "period": 60,
        "timeout": 60,
        "sync_output": 0,
        "times_run": 0,
        "times_failed": 0,
        "assigned_worker_name": "",
        "priority": 0,
    }
    row.update(values)
    return row


def add_task(store: Store, **values: Any) -> int:
    return store.insert_task(task_row(store.now(), **values))


def get_task(store: Store, task_id: int) -> Task:
    task = store.get_task(task_id)
    assert task is not None
    return task


def claim(
    store: Store, worker: str = "w1", groups: Sequence[str] = ("main",), limit: int = 10
) -> list[int]:
    with store.transaction() as conn:
        return [t.id for t in store.claim_due_tasks(conn, worker, list(groups), limit)]


def add_dependency(store: Store, parent: int, child: int, can_visit: bool = False) -> None:
    with store.transaction() as conn:
        conn.execute(
            insert(D).values(
                job_name="job", task_parent=parent, task_child=child, can_visit=can_visit
            )
        )


def set_heartbeat(store: Store, worker: str, seconds_ago: float) -> None:
    stamp = to_storage(store.now() - timedelta(seconds=seconds_ago))
    with store.transaction() as conn:
        conn.execute(update(W).where(W.c.worker_name == worker).values(last_heartbeat=stamp))


def workers(store: Store) -> dict[str, Any]:
    return {w.worker_name: w for w in store.list_workers()}


def runs(store: Store, task_id: int) -> list[Run]:
    return store.runs_of(task_id)


def start(store: Store, task_id: int, worker: str = "w1") -> tuple[Task, int | None]:
    """Claim-free start of an ASSIGNED task: the worker's RUNNING step."""
    task = get_task(store, task_id)
    with store.transaction() as conn:
        run_id = store.start_run(conn, worker, task, store.now())
    return task, run_id


def finish(
    store: Store,
    task: Task,
    status: RunStatus = RunStatus.COMPLETED,
    *,
    worker: str = "w1",
    run_id: int | None = None,
    result: str | None = "3",
    **fields: Any,
) -> list[Outcome]:
    started = store.now() - timedelta(seconds=2)
    outcome = Outcome(
        task=task,
        status=status,
        started=started,
        finished=store.now(),
        result=result,
        run_id=run_id,
        **fields,
    )
    settlement = settle(outcome, discard_results=False)
    with store.transaction() as conn:
        return store.record_outcomes(conn, worker, [(outcome, settlement)]).lost


# ------------------------------------------------------------------ claims


def test_claim_assigns_a_due_task_to_the_worker(store: Store) -> None:
    task_id = add_task(store)
    with store.transaction() as conn:
        claimed = store.claim_due_tasks(conn, "w1", ["main"], 10)
    assert [t.id for t in claimed] == [task_id]
    assert (claimed[0].status, claimed[0].assigned_worker_name) == ("ASSIGNED", "w1")
    stored = get_task(store, task_id)
    assert (stored.status, stored.assigned_worker_name) == ("ASSIGNED", "w1")


def test_claimed_task_times_are_aware_utc(store: Store) -> None:
    add_task(store, next_run_time=datetime(2020, 5, 1, 12, 0, tzinfo=UTC))
    with store.transaction() as conn:
        (claimed,) = store.claim_due_tasks(conn, "w1", ["main"], 1)
    assert claimed.next_run_time == datetime(2020, 5, 1, 12, 0, tzinfo=UTC)


def test_claim_skips_task_due_in_the_future(store: Store) -> None:
    add_task(store, next_run_time=store.now() + timedelta(minutes=5))
    assert claim(store) == []


def test_claim_skips_disabled_task(store: Store) -> None:
    add_task(store, enabled=False)
    assert claim(store) == []


def test_claim_skips_task_of_another_group(store: Store) -> None:
    add_task(store, group_name="reports")
    assert claim(store, groups=["main"]) == []


def test_claim_serves_every_group_of_the_worker(store: Store) -> None:
    first = add_task(store, group_name="reports")
    second = add_task(store, group_name="main")
    add_task(store, group_name="mail")
    assert sorted(claim(store, groups=["main", "reports"])) == [first, second]


def test_claim_skips_task_whose_stop_time_passed(store: Store) -> None:
    add_task(store, stop_time=store.now() - timedelta(seconds=1))
    assert claim(store) == []


def test_claim_takes_task_whose_stop_time_is_ahead(store: Store) -> None:
    task_id = add_task(store, stop_time=store.now() + timedelta(minutes=1))
    assert claim(store) == [task_id]


def test_claim_skips_tasks_that_are_not_queued(store: Store) -> None:
    for status in ("ASSIGNED", "RUNNING", "COMPLETED", "FAILED", "TIMEOUT", "STOPPED", "EXPIRED"):
        add_task(store, status=status)
    assert claim(store) == []


def test_claim_skips_task_with_an_unfinished_dependency(store: Store) -> None:
    parent = add_task(store)
    child = add_task(store, next_run_time=store.now() + timedelta(hours=1))
    add_dependency(store, parent, child, can_visit=False)
    assert claim(store) == []


def test_claim_takes_task_whose_dependencies_are_done(store: Store) -> None:
    parent = add_task(store)
    child = add_task(store, status="COMPLETED")
    add_dependency(store, parent, child, can_visit=True)
    assert claim(store) == [parent]


def test_recording_the_last_dependency_says_it_unblocked_work(store: Store) -> None:
    waiting = add_task(store)
    needed = add_task(store)
    add_dependency(store, waiting, needed, can_visit=False)
    assert claim(store) == [needed]
    outcome = Outcome(get_task(store, needed), RunStatus.COMPLETED, store.now(), store.now())
    with store.transaction() as conn:
        recorded = store.record_outcomes(
            conn, "w1", [(outcome, settle(outcome, discard_results=False))]
        )
    assert recorded == Recorded(lost=[], unblocked=True)
    assert claim(store) == [waiting]


def test_recording_a_task_nothing_waits_for_unblocks_nothing(store: Store) -> None:
    # workers ring idle workers only when a batch unblocked work, not on every batch
    task_id = add_task(store)
    assert claim(store) == [task_id]
    outcome = Outcome(get_task(store, task_id), RunStatus.COMPLETED, store.now(), store.now())
    with store.transaction() as conn:
        recorded = store.record_outcomes(
            conn, "w1", [(outcome, settle(outcome, discard_results=False))]
        )
    assert recorded == Recorded(lost=[], unblocked=False)
    assert get_task(store, task_id).status == "COMPLETED"


def test_claim_waits_for_every_dependency(store: Store) -> None:
    parent = add_task(store)
    done = add_task(store, status="COMPLETED")
    pending = add_task(store, next_run_time=store.now() + timedelta(hours=1))
    add_dependency(store, parent, done, can_visit=True)
    add_dependency(store, parent, pending, can_visit=False)
    assert claim(store) == []


def test_claim_respects_its_limit(store: Store) -> None:
    ids = [add_task(store) for _ in range(5)]
    assert claim(store, limit=2) == ids[:2]
    assert claim(store, limit=10) == ids[2:]


def test_claim_with_zero_limit_takes_nothing(store: Store) -> None:
    add_task(store)
    assert claim(store, limit=0) == []
    assert claim(store, limit=10) != []


def test_claim_order_is_due_time_then_priority_then_id(store: Store) -> None:
    now = store.now()
    early = now - timedelta(minutes=10)
    late = now - timedelta(minutes=5)
    late_low = add_task(store, next_run_time=late, priority=0)
    late_high_a = add_task(store, next_run_time=late, priority=5)
    late_high_b = add_task(store, next_run_time=late, priority=5)
    early_low = add_task(store, next_run_time=early, priority=-10)
    late_negative = add_task(store, next_run_time=late, priority=-1)
    assert claim(store, limit=10) == [early_low, late_high_a, late_high_b, late_low, late_negative]


def test_task_web2py_writes_ranks_as_priority_zero(store: Store) -> None:
    due = store.now() - timedelta(minutes=1)
    high = add_task(store, next_run_time=due, priority=5)
    with store.transaction() as conn:  # as web2py writes it: no priority column
        conn.execute(
            text(
                "INSERT INTO scheduler_task (function_name, uuid, group_name, status, enabled,"
                " args, vars, next_run_time, assigned_worker_name)"
                " VALUES ('add', 'web2py-1', 'main', 'QUEUED', 'T', '[]', '{}', :due, '')"
            ),
            {"due": to_storage(due)},
        )
    web2py = store.find_task(T.c.uuid == "web2py-1")
    assert web2py is not None
    assert web2py.priority == 0  # the column's server default
    low = add_task(store, next_run_time=due, priority=-5)
    assert [claim(store, limit=1) for _ in range(3)] == [[high], [web2py.id], [low]]


def test_null_priority_ranks_below_every_priority(store: Store) -> None:
    due = store.now() - timedelta(minutes=1)
    unset = add_task(store, next_run_time=due, priority=None)
    lowest = add_task(store, next_run_time=due, priority=-(2**31 - 1))
    assert [claim(store, limit=1) for _ in range(2)] == [[lowest], [unset]]


def test_limited_claim_takes_the_first_in_order(store: Store) -> None:
    now = store.now()
    add_task(store, next_run_time=now - timedelta(minutes=1), priority=100)
    oldest = add_task(store, next_run_time=now - timedelta(minutes=2))
    urgent = add_task(store, next_run_time=now - timedelta(minutes=1), priority=200)
    assert claim(store, limit=2) == [oldest, urgent]


def test_priority_orders_the_whole_queue_not_one_batch(store: Store) -> None:
    due = store.now() - timedelta(minutes=1)
    backlog = [add_task(store, next_run_time=due) for _ in range(30)]
    urgent = add_task(store, next_run_time=due, priority=1)
    assert claim(store, limit=1) == [urgent]
    assert claim(store, limit=30) == backlog


def claim_groups(store: Store, shares: GroupShares, limit: int) -> list[str]:
    """The groups of the tasks one weighted claim took, in claim order."""
    with store.transaction() as conn:
        claimed = store.claim_due_tasks(conn, "w1", list(shares.weights), limit, shares=shares)
    return [t.group_name or "" for t in claimed]


def test_weighted_claim_splits_a_batch_by_weight(store: Store) -> None:
    due = store.now() - timedelta(minutes=1)
    for _ in range(20):
        add_task(store, group_name="high", next_run_time=due)
        add_task(store, group_name="low", next_run_time=due)
    shares = GroupShares({"high": 3, "low": 1})
    taken = claim_groups(store, shares, 8)
    assert (taken.count("high"), taken.count("low")) == (6, 2)


def test_weighted_claim_gives_an_empty_groups_share_to_the_others(store: Store) -> None:
    for _ in range(20):
        add_task(store, group_name="low")
    add_task(store, group_name="high")
    shares = GroupShares({"high": 3, "low": 1})
    assert sorted(claim_groups(store, shares, 8)) == ["high", *["low"] * 7]


def test_weighted_claims_of_one_task_follow_the_weights(store: Store) -> None:
    # a worker of slow tasks claims one at a time: the weights must hold across claims
    due = store.now() - timedelta(minutes=1)
    for _ in range(10):
        add_task(store, group_name="high", next_run_time=due)
        add_task(store, group_name="low", next_run_time=due)
    shares = GroupShares({"high": 3, "low": 1})
    sequence = [group for _ in range(8) for group in claim_groups(store, shares, 1)]
    assert sequence == ["high", "low", "high", "high", "high", "low", "high", "high"]


def test_weighted_group_that_was_idle_banks_no_credit(store: Store) -> None:
    shares = GroupShares({"high": 3, "low": 1})
    for _ in range(12):
        add_task(store, group_name="high")
    assert [g for _ in range(12) for g in claim_groups(store, shares, 1)] == ["high"] * 12
    for _ in range(8):
        add_task(store, group_name="high")
        add_task(store, group_name="low")
    # low had nothing for 12 claims: it now gets its share, not 12 claims in a row
    sequence = [g for _ in range(8) for g in claim_groups(store, shares, 1)]
    assert sequence.count("low") == 2


def test_weighted_claim_keeps_the_claim_order_within_a_group(store: Store) -> None:
    now = store.now()
    late = add_task(store, group_name="high", next_run_time=now - timedelta(minutes=1))
    early = add_task(store, group_name="high", next_run_time=now - timedelta(minutes=2))
    urgent = add_task(
        store, group_name="high", next_run_time=now - timedelta(minutes=1), priority=9
    )
    add_task(store, group_name="low")
    with store.transaction() as conn:
        claimed = store.claim_due_tasks(
            conn, "w1", ["high", "low"], 2, shares=GroupShares({"high": 1, "low": 1})
        )
    assert [t.id for t in claimed if t.group_name == "high"] == [early]
    with store.transaction() as conn:
        claimed = store.claim_due_tasks(
            conn, "w1", ["high", "low"], 2, shares=GroupShares({"high": 5, "low": 1})
        )
    assert [t.id for t in claimed] == [urgent, late]


def test_claimed_task_is_not_claimed_again(store: Store) -> None:
    task_id = add_task(store)
    assert claim(store, worker="w1") == [task_id]
    assert claim(store, worker="w2") == []


def test_group_names_are_matched_case_sensitively(store: Store) -> None:
    add_task(store, group_name="MAIN")
    assert claim(store, groups=["main"]) == []


def test_group_names_with_trailing_spaces_are_other_groups(store: Store) -> None:
    # MariaDB: needs the NO PAD collation (utf8mb4_bin pads: 'main ' = 'main')
    add_task(store, group_name="main ")
    assert claim(store, groups=["main"]) == []


def test_uuids_are_matched_exactly(store: Store) -> None:
    add_task(store, uuid="abc")
    assert store.find_task(T.c.uuid == "ABC") is None
    add_task(store, uuid="ABC")


def test_has_due_task_and_next_due_time(store: Store) -> None:
    assert store.has_due_task(["main"]) is False
    assert store.next_due_time(["main"]) is None
    later = datetime(2040, 1, 1, 8, 30, tzinfo=UTC)
    add_task(store, next_run_time=later)
    assert store.has_due_task(["main"]) is False
    assert store.next_due_time(["main"]) == later
    add_task(store)
    assert store.has_due_task(["main"]) is True
    assert store.has_due_task(["other"]) is False


def test_concurrent_claims_never_share_a_task(store: Store, other_store: Store) -> None:
    now = store.now()
    store.insert_tasks([task_row(now) for _ in range(300)])
    barrier = threading.Barrier(2)
    taken: dict[str, list[int]] = {"w1": [], "w2": []}
    errors: list[BaseException] = []

    def work(each: Store, name: str) -> None:
        try:
            barrier.wait(timeout=10)
            while True:
                claimed = claim(each, worker=name, limit=3)
                if not claimed:
                    return
                taken[name].extend(claimed)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(store, "w1")),
        threading.Thread(target=work, args=(other_store, "w2")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    both = taken["w1"] + taken["w2"]
    assert len(both) == 300
    assert len(set(both)) == 300
    with store.reading() as conn:
        owners = {row.id: row.assigned_worker_name for row in conn.execute(select(T))}
    assert all(owners[task_id] == "w1" for task_id in taken["w1"])
    assert all(owners[task_id] == "w2" for task_id in taken["w2"])


# ------------------------------------------------------------------ release and start


def test_release_returns_assigned_tasks_to_the_queue(store: Store) -> None:
    ids = [add_task(store) for _ in range(3)]
    assert claim(store) == ids
    with store.transaction() as conn:
        assert store.release_tasks(conn, "w1", ids[1:]) == 2
    assert [get_task(store, i).status for i in ids] == ["ASSIGNED", "QUEUED", "QUEUED"]
    assert get_task(store, ids[1]).assigned_worker_name == ""
    assert claim(store, worker="w2") == ids[1:]


def test_release_leaves_tasks_of_other_workers(store: Store) -> None:
    task_id = add_task(store)
    claim(store, worker="w1")
    with store.transaction() as conn:
        assert store.release_tasks(conn, "w2", [task_id]) == 0
    assert get_task(store, task_id).assigned_worker_name == "w1"


def test_release_leaves_running_tasks(store: Store) -> None:
    task_id = add_task(store)
    claim(store)
    start(store, task_id)
    with store.transaction() as conn:
        assert store.release_tasks(conn, "w1", [task_id]) == 0
    assert get_task(store, task_id).status == "RUNNING"


def test_release_of_nothing_is_zero(store: Store) -> None:
    with store.transaction() as conn:
        assert store.release_tasks(conn, "w1", []) == 0


def test_start_run_marks_the_task_running_with_a_run_row(store: Store) -> None:
    task_id = add_task(store)
    claim(store)
    _, run_id = start(store, task_id)
    assert run_id is not None
    stored = get_task(store, task_id)
    assert stored.status == "RUNNING"
    assert stored.last_run_time is not None
    (run,) = runs(store, task_id)
    assert (run.id, run.status, run.worker_name) == (run_id, "RUNNING", "w1")
    assert run.start_time == stored.last_run_time


def test_start_run_of_a_task_stopped_meanwhile_is_none(store: Store) -> None:
    task_id = add_task(store)
    claim(store)
    assert store.stop_tasks(T.c.id == task_id) == 1
    _, run_id = start(store, task_id)
    assert run_id is None
    assert runs(store, task_id) == []
    assert get_task(store, task_id).status == "STOPPED"


def test_start_run_of_another_workers_task_is_none(store: Store) -> None:
    task_id = add_task(store)
    claim(store, worker="w1")
    _, run_id = start(store, task_id, worker="w2")
    assert run_id is None
    assert get_task(store, task_id).status == "ASSIGNED"


def test_start_run_retried_after_its_commit_reply_was_lost_returns_the_same_run(
    store: Store,
) -> None:
    task_id = add_task(store)
    claim(store)
    _, first = start(store, task_id)
    # the connection died during COMMIT: the worker saw an error and tries again
    _, again = start(store, task_id)
    assert first is not None and again == first
    assert [r.id for r in runs(store, task_id)] == [first]


def test_release_forgotten_tasks_gives_back_claims_the_worker_does_not_know(
    store: Store,
) -> None:
    known, forgotten, running = (add_task(store) for _ in range(3))
    other = add_task(store)
    claim(store, worker="w1", limit=3)
    start(store, running)
    claim(store, worker="w2")
    with store.transaction() as conn:
        assert store.release_forgotten_tasks(conn, "w1", keep=[known]) == 1
    statuses = [get_task(store, i).status for i in (known, forgotten, running, other)]
    assert statuses == ["ASSIGNED", "QUEUED", "RUNNING", "ASSIGNED"]


# ------------------------------------------------------------------ recording outcomes


def test_completed_run_is_recorded_on_its_running_row(store: Store) -> None:
    task_id = add_task(store)
    claim(store)
    task, run_id = start(store, task_id)
    lost = finish(store, task, run_id=run_id, result='{"sum": 3}', output="hello\n")
    assert lost == []
    stored = get_task(store, task_id)
    assert (stored.status, stored.times_run, stored.times_failed) == ("COMPLETED", 1, 0)
    (run,) = runs(store, task_id)
    assert run.id == run_id
    assert (run.status, run.run_result, run.run_output) == ("COMPLETED", '{"sum": 3}', "hello\n")
    assert run.worker_name == "w1"
    assert run.stop_time is not None and run.start_time is not None
    assert run.stop_time > run.start_time


def test_outcome_without_run_row_inserts_one(store: Store) -> None:
    task_id = add_task(store)
    (task,) = [get_task(store, i) for i in claim(store)]
    assert finish(store, task, result="7") == []
    (run,) = runs(store, task_id)
    assert (run.status, run.run_result, run.worker_name) == ("COMPLETED", "7", "w1")
    assert get_task(store, task_id).status == "COMPLETED"


def test_none_result_leaves_no_run_row(store: Store) -> None:
    task_id = add_task(store)
    claim(store)
    task, run_id = start(store, task_id)
    finish(store, task, run_id=run_id, result=None)
    assert runs(store, task_id) == []
    assert get_task(store, task_id).status == "COMPLETED"


def test_repeating_task_is_queued_again_for_its_next_run(store: Store) -> None:
    task_id = add_task(store, repeats=3, period=120)
    (task,) = [get_task(store, i) for i in claim(store)]
    finish(store, task)
    stored = get_task(store, task_id)
    assert (stored.status, stored.times_run, stored.assigned_worker_name) == ("QUEUED", 1, "")
    assert stored.next_run_time is not None and stored.last_run_time is not None
    assert stored.next_run_time - stored.last_run_time == timedelta(seconds=120)
    assert claim(store) == []


def test_failed_run_stores_its_traceback(store: Store) -> None:
    task_id = add_task(store)
    (task,) = [get_task(store, i) for i in claim(store)]
    finish(store, task, RunStatus.FAILED, result=None, traceback="Traceback: ZeroDivisionError")
    stored = get_task(store, task_id)
    assert (stored.status, stored.times_failed) == ("FAILED", 1)
    (run,) = runs(store, task_id)
    assert (run.status, run.traceback) == ("FAILED", "Traceback: ZeroDivisionError")


def test_failed_run_with_retries_is_queued_again(store: Store) -> None:
    task_id = add_task(store, retry_failed=2)
    (task,) = [get_task(store, i) for i in claim(store)]
    finish(store, task, RunStatus.FAILED, result=None, traceback="boom")
    stored = get_task(store, task_id)
    assert (stored.status, stored.times_failed, stored.assigned_worker_name) == ("QUEUED", 1, "")


def test_outcome_of_a_task_stopped_meanwhile_is_reported_lost(store: Store) -> None:
    task_id = add_task(store)
    claim(store)
    task, run_id = start(store, task_id)
    assert store.stop_tasks(T.c.id == task_id) == 1
    lost = finish(store, task, run_id=run_id, result="3")
    assert [o.task.id for o in lost] == [task_id]
    stored = get_task(store, task_id)
    assert (stored.status, stored.times_run) == ("STOPPED", 0)
    (run,) = runs(store, task_id)
    assert (run.id, run.status, run.run_result) == (run_id, "COMPLETED", "3")


def test_outcome_of_a_task_taken_by_another_worker_is_lost(store: Store) -> None:
    task_id = add_task(store)
    (task,) = [get_task(store, i) for i in claim(store, worker="w1")]
    with store.transaction() as conn:
        conn.execute(update(T).where(T.c.id == task_id).values(assigned_worker_name="w2"))
    lost = finish(store, task, worker="w1")
    assert [o.task.id for o in lost] == [task_id]
    assert get_task(store, task_id).status == "ASSIGNED"


def test_outcome_of_a_task_deleted_meanwhile_is_lost_without_error(store: Store) -> None:
    task_id = add_task(store)
    kept = add_task(store)
    tasks = [get_task(store, i) for i in claim(store)]
    with store.transaction() as conn:
        conn.execute(T.delete().where(T.c.id == task_id))
    now = store.now()
    finished = []
    for task in tasks:
        outcome = Outcome(task, RunStatus.COMPLETED, now, now, result="1")
        finished.append((outcome, settle(outcome, discard_results=False)))
    with store.transaction() as conn:
        lost = store.record_outcomes(conn, "w1", finished).lost
    assert [o.task.id for o in lost] == [task_id]
    assert runs(store, task_id) == []
    assert get_task(store, kept).status == "COMPLETED"
    assert [r.run_result for r in runs(store, kept)] == ["1"]


def test_outcome_of_a_running_task_deleted_meanwhile_is_lost(store: Store) -> None:
    task_id = add_task(store)
    claim(store)
    task, run_id = start(store, task_id)
    with store.transaction() as conn:
        conn.execute(T.delete().where(T.c.id == task_id))
    assert [o.task.id for o in finish(store, task, run_id=run_id)] == [task_id]
    assert runs(store, task_id) == []


def test_completed_child_releases_its_parent(store: Store) -> None:
    parent = add_task(store)
    child = add_task(store, next_run_time=store.now() - timedelta(hours=1))
    add_dependency(store, parent, child)
    assert claim(store, limit=10) == [child]
    finish(store, get_task(store, child))
    assert claim(store) == [parent]


def test_failed_child_keeps_its_parent_waiting(store: Store) -> None:
    parent = add_task(store)
    child = add_task(store, next_run_time=store.now() - timedelta(hours=1))
    add_dependency(store, parent, child)
    claim(store)
    finish(store, get_task(store, child), RunStatus.FAILED, result=None)
    assert claim(store) == []


def test_requeue_outcome_gives_the_task_back_and_stops_its_run(store: Store) -> None:
    task_id = add_task(store)
    claim(store)
    task, run_id = start(store, task_id)
    finish(
        store,
        task,
        RunStatus.STOPPED,
        run_id=run_id,
        result=None,
        requeue=True,
        traceback="interrupted: worker shut down",
    )
    stored = get_task(store, task_id)
    assert (stored.status, stored.assigned_worker_name, stored.times_run) == ("QUEUED", "", 0)
    (run,) = runs(store, task_id)
    assert (run.status, run.traceback) == ("STOPPED", "interrupted: worker shut down")


def test_batch_of_outcomes_is_recorded_in_one_transaction(store: Store) -> None:
    ids = [add_task(store) for _ in range(3)]
    tasks = [get_task(store, i) for i in claim(store)]
    now = store.now()
    finished = []
    for task, result in zip(tasks, ["1", None, "3"], strict=True):
        outcome = Outcome(task, RunStatus.COMPLETED, now, now, result=result)
        finished.append((outcome, settle(outcome, discard_results=False)))
    with store.transaction() as conn:
        assert store.record_outcomes(conn, "w1", finished).lost == []
    assert [get_task(store, i).status for i in ids] == ["COMPLETED"] * 3
    assert [[r.run_result for r in runs(store, i)] for i in ids] == [["1"], [], ["3"]]


def test_outcome_written_again_after_its_commit_reply_was_lost_keeps_one_run_row(
    store: Store,
) -> None:
    task_id = add_task(store)
    (task,) = [get_task(store, i) for i in claim(store)]
    now = store.now()
    outcome = Outcome(task, RunStatus.COMPLETED, now - timedelta(seconds=1), now, result="3")
    finished = [(outcome, settle(outcome, discard_results=False))]
    with store.transaction() as conn:
        assert store.record_outcomes(conn, "w1", finished).lost == []
    # the worker never saw the commit succeed, so it writes the same outcome again
    with store.transaction() as conn:
        assert store.record_outcomes(conn, "w1", finished).lost == [outcome]
    assert [(r.status, r.run_result) for r in runs(store, task_id)] == [("COMPLETED", "3")]
    assert get_task(store, task_id).times_run == 1


def test_outcome_of_a_run_marked_by_a_commit_whose_reply_was_lost_finishes_that_row(
    store: Store,
) -> None:
    task_id = add_task(store)
    claim(store)
    task, run_id = start(store, task_id)  # the worker saw an error: run_id unknown to it
    assert finish(store, task, run_id=None, result="3") == []
    (run,) = runs(store, task_id)
    assert (run.id, run.status, run.run_result) == (run_id, "COMPLETED", "3")


def test_save_output_updates_the_running_row(store: Store) -> None:
    task_id = add_task(store)
    claim(store)
    _, run_id = start(store, task_id)
    assert run_id is not None
    store.save_output(run_id, "50%\n")
    assert runs(store, task_id)[0].run_output == "50%\n"


# ------------------------------------------------------------------ tasks from outside


def test_task_inserted_in_a_callers_transaction_appears_on_commit(store: Store) -> None:
    with store.engine.connect() as conn:
        with conn.begin():
            task_id = store.insert_task(task_row(store.now()), conn=conn)
            assert store.get_task(task_id) is None  # not yet visible to others
        assert get_task(store, task_id).status == "QUEUED"


def test_task_inserted_in_a_rolled_back_transaction_vanishes(store: Store) -> None:
    with store.engine.connect() as conn:
        transaction = conn.begin()
        task_id = store.insert_task(task_row(store.now()), conn=conn)
        transaction.rollback()
    assert store.get_task(task_id) is None


def test_stop_tasks_stops_active_tasks_only(store: Store) -> None:
    statuses = ["QUEUED", "ASSIGNED", "RUNNING", "COMPLETED", "FAILED"]
    ids = [add_task(store, status=s, group_name="g") for s in statuses]
    assert store.stop_tasks(T.c.group_name == "g") == 3
    assert [get_task(store, i).status for i in ids] == [
        "STOPPED",
        "STOPPED",
        "STOPPED",
        "COMPLETED",
        "FAILED",
    ]


def test_requeue_tasks_clears_a_passed_stop_time_only(store: Store) -> None:
    now = store.now()
    expired = add_task(store, status="EXPIRED", stop_time=now - timedelta(hours=1))
    failed = add_task(store, status="FAILED", stop_time=now + timedelta(hours=1), times_failed=2)
    assert store.requeue_tasks(T.c.id.in_([expired, failed])) == 2
    assert get_task(store, expired).stop_time is None
    assert get_task(store, failed).stop_time == (now + timedelta(hours=1))
    assert [get_task(store, i).status for i in (expired, failed)] == ["QUEUED", "QUEUED"]
    assert get_task(store, failed).times_failed == 0
    assert sorted(claim(store)) == [expired, failed]


# ------------------------------------------------------------------ workers


def test_register_worker_writes_its_row(store: Store) -> None:
    store.register_worker("w1", ["main", "reports"], {"total": 0}, dead_after=DEAD_AFTER)
    worker = workers(store)["w1"]
    assert worker.status == "ACTIVE"
    assert worker.is_ticker is False
    assert worker.group_names == ["main", "reports"]
    assert worker.worker_stats == {"total": 0}
    assert worker.first_heartbeat == worker.last_heartbeat
    assert worker.last_heartbeat is not None and worker.last_heartbeat.tzinfo is not None


def test_register_worker_refuses_the_name_of_a_live_worker(store: Store) -> None:
    store.register_worker("w1", ["main"], {}, dead_after=DEAD_AFTER)
    with pytest.raises(ConfigurationError, match="a live worker named 'w1'"):
        store.register_worker("w1", ["main"], {}, dead_after=DEAD_AFTER)
    assert list(workers(store)) == ["w1"]


def test_register_worker_takes_over_the_name_of_a_dead_worker(store: Store) -> None:
    store.register_worker("w1", ["old"], {}, dead_after=DEAD_AFTER)
    set_heartbeat(store, "w1", DEAD_AFTER + 1)
    store.register_worker("w1", ["new"], {}, dead_after=DEAD_AFTER)
    assert workers(store)["w1"].group_names == ["new"]


def test_register_worker_requeues_tasks_an_earlier_worker_of_its_name_left(
    store: Store,
) -> None:
    # a worker restarted with a fixed --name before the ticker noticed it died
    store.register_worker("w1", ["main"], {}, dead_after=DEAD_AFTER)
    assigned, running = add_task(store), add_task(store)
    claim(store)
    _, run_id = start(store, running)
    set_heartbeat(store, "w1", DEAD_AFTER + 1)

    store.register_worker("w1", ["main"], {}, dead_after=DEAD_AFTER)

    for task_id in (assigned, running):
        task = get_task(store, task_id)
        assert (task.status, task.assigned_worker_name) == ("QUEUED", "")
    (run,) = runs(store, running)
    assert (run.id, run.status) == (run_id, "FAILED")
    assert run.traceback == "worker restarted during the run; task requeued"


def test_heartbeat_updates_the_beat_and_the_stats(store: Store) -> None:
    store.register_worker("w1", ["main"], {"total": 0}, dead_after=DEAD_AFTER)
    set_heartbeat(store, "w1", 5)
    before = workers(store)["w1"].last_heartbeat
    beat = store.heartbeat("w1", ["main"], {"total": 4}, ticker_lease=LEASE)
    assert beat.status is WorkerStatus.ACTIVE
    worker = workers(store)["w1"]
    assert before is not None and worker.last_heartbeat is not None
    assert worker.last_heartbeat - before >= timedelta(seconds=5)
    assert worker.worker_stats == {"total": 4}


def test_heartbeat_reports_the_commanded_status(store: Store) -> None:
    store.register_worker("w1", ["main"], {}, dead_after=DEAD_AFTER)
    store.set_worker_status(WorkerStatus.DISABLED, worker_names=["w1"])
    assert store.heartbeat("w1", ["main"], {}, ticker_lease=LEASE).status is WorkerStatus.DISABLED


def test_heartbeat_of_an_unknown_status_is_active(store: Store) -> None:
    store.register_worker("w1", ["main"], {}, dead_after=DEAD_AFTER)
    with store.transaction() as conn:
        conn.execute(update(W).values(status="SLEEPY"))
    assert store.heartbeat("w1", ["main"], {}, ticker_lease=LEASE).status is WorkerStatus.ACTIVE


def test_heartbeat_registers_a_worker_whose_row_was_removed(store: Store) -> None:
    store.register_worker("w1", ["main"], {}, dead_after=DEAD_AFTER)
    store.unregister_worker("w1")
    assert workers(store) == {}
    store.heartbeat("w1", ["main"], {"total": 1}, ticker_lease=LEASE)
    assert workers(store)["w1"].group_names == ["main"]


def test_first_worker_to_beat_is_the_only_ticker(store: Store) -> None:
    store.register_worker("w1", ["main"], {}, dead_after=DEAD_AFTER)
    store.register_worker("w2", ["main"], {}, dead_after=DEAD_AFTER)
    assert store.heartbeat("w1", ["main"], {}, ticker_lease=LEASE).is_ticker is True
    assert store.heartbeat("w2", ["main"], {}, ticker_lease=LEASE).is_ticker is False
    assert store.heartbeat("w1", ["main"], {}, ticker_lease=LEASE).is_ticker is True
    assert store.heartbeat("w2", ["main"], {}, ticker_lease=LEASE).is_ticker is False
    assert {n: w.is_ticker for n, w in workers(store).items()} == {"w1": True, "w2": False}


def test_ticker_role_passes_on_when_its_holder_stops_beating(store: Store) -> None:
    store.register_worker("w1", ["main"], {}, dead_after=DEAD_AFTER)
    store.register_worker("w2", ["main"], {}, dead_after=DEAD_AFTER)
    assert store.heartbeat("w1", ["main"], {}, ticker_lease=LEASE).is_ticker is True
    set_heartbeat(store, "w1", LEASE + 1)
    assert store.heartbeat("w2", ["main"], {}, ticker_lease=LEASE).is_ticker is True
    assert store.heartbeat("w1", ["main"], {}, ticker_lease=LEASE).is_ticker is False
    assert {n: w.is_ticker for n, w in workers(store).items()} == {"w1": False, "w2": True}


def test_follower_learns_when_the_tickers_lease_runs_out(store: Store) -> None:
    store.register_worker("w1", ["main"], {}, dead_after=DEAD_AFTER)
    store.register_worker("w2", ["main"], {}, dead_after=DEAD_AFTER)
    assert store.heartbeat("w1", ["main"], {}, ticker_lease=LEASE).lease_until is None
    set_heartbeat(store, "w1", 2)
    beat = store.heartbeat("w2", ["main"], {}, ticker_lease=LEASE)
    assert beat.is_ticker is False
    assert beat.lease_until is not None
    left = (beat.lease_until - store.now()).total_seconds()
    assert LEASE - 2 - 0.5 < left <= LEASE - 2


def test_ticker_keeps_the_role_within_its_lease(store: Store) -> None:
    store.register_worker("w1", ["main"], {}, dead_after=DEAD_AFTER)
    store.register_worker("w2", ["main"], {}, dead_after=DEAD_AFTER)
    store.heartbeat("w1", ["main"], {}, ticker_lease=LEASE)
    set_heartbeat(store, "w1", LEASE - 2)
    assert store.heartbeat("w2", ["main"], {}, ticker_lease=LEASE).is_ticker is False


def test_simultaneous_heartbeats_never_both_take_a_free_lease(
    store: Store, other_store: Store
) -> None:
    store.register_worker("w1", ["main"], {}, dead_after=DEAD_AFTER)
    store.register_worker("w2", ["main"], {}, dead_after=DEAD_AFTER)
    barrier = threading.Barrier(2)
    results: dict[str, list[bool]] = {"w1": [], "w2": []}
    errors: list[BaseException] = []

    def beat(each: Store, name: str) -> None:
        try:
            for _ in range(25):
                barrier.wait(timeout=10)  # the lease was freed: both race for it
                results[name].append(
                    each.heartbeat(name, ["main"], {}, ticker_lease=LEASE).is_ticker
                )
                barrier.wait(timeout=10)
                if name == "w1":
                    with each.transaction() as conn:
                        conn.execute(update(W).values(is_ticker=False))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            barrier.abort()

    threads = [
        threading.Thread(target=beat, args=(store, "w1")),
        threading.Thread(target=beat, args=(other_store, "w2")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert errors == []
    rounds = list(zip(results["w1"], results["w2"], strict=True))
    assert len(rounds) == 25
    assert [a + b for a, b in rounds] == [1] * 25


def test_unregistered_ticker_frees_the_role(store: Store) -> None:
    store.register_worker("w1", ["main"], {}, dead_after=DEAD_AFTER)
    store.register_worker("w2", ["main"], {}, dead_after=DEAD_AFTER)
    store.heartbeat("w1", ["main"], {}, ticker_lease=LEASE)
    store.unregister_worker("w1")
    assert store.heartbeat("w2", ["main"], {}, ticker_lease=LEASE).is_ticker is True


def test_set_worker_status_by_group(store: Store) -> None:
    store.register_worker("a", ["main"], {}, dead_after=DEAD_AFTER)
    store.register_worker("b", ["main", "reports"], {}, dead_after=DEAD_AFTER)
    store.register_worker("c", ["reports"], {}, dead_after=DEAD_AFTER)
    assert store.set_worker_status(WorkerStatus.DISABLED, group_names=["main"]) == 2
    assert {n: w.status for n, w in workers(store).items()} == {
        "a": "DISABLED",
        "b": "DISABLED",
        "c": "ACTIVE",
    }


def test_set_worker_status_by_name(store: Store) -> None:
    store.register_worker("a", ["main"], {}, dead_after=DEAD_AFTER)
    store.register_worker("b", ["main"], {}, dead_after=DEAD_AFTER)
    assert store.set_worker_status(WorkerStatus.TERMINATE, worker_names=["b"]) == 1
    assert {n: w.status for n, w in workers(store).items()} == {"a": "ACTIVE", "b": "TERMINATE"}


def test_set_worker_status_by_group_and_name_needs_both(store: Store) -> None:
    store.register_worker("a", ["main"], {}, dead_after=DEAD_AFTER)
    store.register_worker("b", ["reports"], {}, dead_after=DEAD_AFTER)
    assert store.set_worker_status(WorkerStatus.KILL, group_names=["main"], worker_names=["b"]) == 0


def test_set_worker_status_matches_whole_group_names(store: Store) -> None:
    store.register_worker("a", ["main"], {}, dead_after=DEAD_AFTER)
    store.register_worker("b", ["mainly"], {}, dead_after=DEAD_AFTER)
    for pattern in (["mai"], ["ma_n"], ["m%"], ["%"]):
        assert store.set_worker_status(WorkerStatus.DISABLED, group_names=pattern) == 0
    assert store.set_worker_status(WorkerStatus.DISABLED, group_names=["main"]) == 1


def test_live_workers_are_those_beating_recently(store: Store) -> None:
    store.register_worker("fresh", ["main"], {}, dead_after=DEAD_AFTER)
    store.register_worker("stale", ["main"], {}, dead_after=DEAD_AFTER)
    store.register_worker("elsewhere", ["reports"], {}, dead_after=DEAD_AFTER)
    set_heartbeat(store, "stale", 120)
    assert sorted(w.worker_name for w in store.live_workers(None, 60)) == ["elsewhere", "fresh"]
    assert [w.worker_name for w in store.live_workers(["main"], 60)] == ["fresh"]
    assert [w.worker_name for w in store.live_workers(["m_in"], 60)] == []


# ------------------------------------------------------------------ housekeeping


def test_housekeeping_requeues_tasks_of_a_dead_worker(store: Store) -> None:
    store.register_worker("dead", ["main"], {}, dead_after=DEAD_AFTER)
    store.register_worker("live", ["main"], {}, dead_after=DEAD_AFTER)
    assigned = add_task(store)
    running = add_task(store)
    claim(store, worker="dead")
    _, dead_run = start(store, running, worker="dead")
    live_task = add_task(store)
    claim(store, worker="live")
    _, live_run = start(store, live_task, worker="live")
    set_heartbeat(store, "dead", DEAD_AFTER + 1)

    done = store.housekeeping(DEAD_AFTER)

    assert done.dead_workers == ["dead"]
    assert done.requeued == 2
    assert list(workers(store)) == ["live"]
    for task_id in (assigned, running):
        task = get_task(store, task_id)
        assert (task.status, task.assigned_worker_name) == ("QUEUED", "")
    (run,) = runs(store, running)
    assert (run.id, run.status) == (dead_run, "FAILED")
    assert run.traceback == "worker died during the run; task requeued"
    assert run.stop_time is not None
    assert get_task(store, live_task).status == "RUNNING"
    assert [(r.id, r.status) for r in runs(store, live_task)] == [(live_run, "RUNNING")]


def test_housekeeping_leaves_live_workers_alone(store: Store) -> None:
    store.register_worker("w1", ["main"], {}, dead_after=DEAD_AFTER)
    task_id = add_task(store)
    claim(store)
    set_heartbeat(store, "w1", DEAD_AFTER - 2)
    done = store.housekeeping(DEAD_AFTER)
    assert (done.dead_workers, done.requeued, done.expired) == ([], 0, 0)
    assert get_task(store, task_id).status == "ASSIGNED"


def test_housekeeping_requeues_tasks_of_a_worker_without_a_row(store: Store) -> None:
    task_id = add_task(store)
    claim(store, worker="vanished")
    assert store.housekeeping(DEAD_AFTER).requeued == 1
    assert get_task(store, task_id).status == "QUEUED"


def test_housekeeping_expires_queued_tasks_past_their_stop_time(store: Store) -> None:
    now = store.now()
    stale = add_task(store, stop_time=now - timedelta(seconds=1))
    ahead = add_task(store, stop_time=now + timedelta(hours=1))
    unlimited = add_task(store)
    store.register_worker("w1", ["main"], {}, dead_after=DEAD_AFTER)
    assigned = add_task(store, status="ASSIGNED", assigned_worker_name="w1")
    with store.transaction() as conn:
        conn.execute(
            update(T).where(T.c.id == assigned).values(stop_time=to_storage(now - timedelta(1)))
        )
    assert store.housekeeping(DEAD_AFTER).expired == 1
    statuses = [get_task(store, i).status for i in (stale, ahead, unlimited, assigned)]
    assert statuses == ["EXPIRED", "QUEUED", "QUEUED", "ASSIGNED"]


def test_housekeeping_by_a_worker_that_lost_the_lease_does_nothing(store: Store) -> None:
    store.register_worker("w1", ["main"], {}, dead_after=DEAD_AFTER)
    store.register_worker("w2", ["main"], {}, dead_after=DEAD_AFTER)
    store.register_worker("dead", ["main"], {}, dead_after=DEAD_AFTER)
    task_id = add_task(store)
    claim(store, worker="dead")
    store.heartbeat("w1", ["main"], {}, ticker_lease=LEASE)
    set_heartbeat(store, "dead", DEAD_AFTER + 1)
    # w1 stalled past its lease and w2 took the role; then w1 comes to its round
    set_heartbeat(store, "w1", LEASE + 1)
    assert store.heartbeat("w2", ["main"], {}, ticker_lease=LEASE).is_ticker is True

    stale = store.housekeeping(DEAD_AFTER, ticker="w1")
    assert (stale.held, stale.dead_workers, stale.requeued) == (False, [], 0)
    assert get_task(store, task_id).status == "ASSIGNED"

    done = store.housekeeping(DEAD_AFTER, ticker="w2")
    assert (done.held, done.dead_workers, done.requeued) == (True, ["dead"], 1)


def test_housekeeping_on_an_empty_database_does_nothing(store: Store) -> None:
    done = store.housekeeping(DEAD_AFTER)
    assert (done.dead_workers, done.requeued, done.expired) == ([], 0, 0)


# ------------------------------------------------------------------ through the Scheduler


def test_queue_task_inside_the_callers_transaction(db_url: str) -> None:
    scheduler = Scheduler(db_url, tasks={"add": lambda a, b: a + b})
    scheduler.create_tables()
    try:
        with scheduler.store.engine.begin() as conn:
            result = scheduler.queue_task("add", [1, 2], db=conn)
        assert result.errors == {}
        with scheduler.store.reading() as conn:
            count = conn.execute(select(func.count()).select_from(T)).scalar_one()
        assert count == 1
    finally:
        scheduler.store.dispose()


def test_duplicate_uuid_is_refused_on_every_backend(db_url: str) -> None:
    scheduler = Scheduler(db_url)
    scheduler.create_tables()
    try:
        assert scheduler.queue_task("f", uuid="same").errors == {}
        assert scheduler.queue_task("f", uuid="same").errors == {
            "uuid": "a task with this uuid exists"
        }
    finally:
        scheduler.store.dispose()


def test_id_no_row_can_have_finds_nothing(db_url: str) -> None:
    scheduler = Scheduler(db_url)
    scheduler.create_tables()
    try:
        scheduler.queue_task("f")
        for ref in (2**31, 2**63, 2**70, -1, 0):
            assert scheduler.task_status(ref) is None
            assert scheduler.task_status(ref, output=True) is None
            assert scheduler.stop_task(ref) == 0
            assert scheduler.requeue(ref) == 0
        assert scheduler.task_status(1) is not None
    finally:
        scheduler.store.dispose()


def test_duplicate_uuid_in_the_callers_transaction_leaves_it_usable(db_url: str) -> None:
    scheduler = Scheduler(db_url)
    scheduler.create_tables()
    try:
        with scheduler.store.engine.begin() as conn:
            first = scheduler.queue_task("f", uuid="same", db=conn)
            second = scheduler.queue_task("f", uuid="same", db=conn)
            third = scheduler.queue_task("f", uuid="other", db=conn)
        assert first.errors == {}
        assert second.errors == {"uuid": "a task with this uuid exists"}
        assert third.errors == {}
        assert scheduler.task_status("same") is not None
        assert scheduler.task_status("other") is not None
    finally:
        scheduler.store.dispose()


@pytest.mark.parametrize("local_time", [False, True], ids=["utc", "local-time"])
def test_bulk_insert_stores_what_insert_task_stores(db_url: str, local_time: bool) -> None:
    """insert_tasks has its own fast path on some backends (COPY on PostgreSQL):
    every column, defaults and pydal encodings included, must come out as the
    one-row path writes it."""
    opened = open_store(db_url, local_time=local_time)
    try:
        opened.create_tables()
        now = opened.now().replace(microsecond=0)
        full = task_row(now, stop_time=now + timedelta(days=1), enabled=False, priority=7)
        sparse = {
            "function_name": "add",
            "task_name": "add",
            "uuid": str(uuidlib.uuid4()),
            "next_run_time": now,
        }
        single = [dict(full, uuid=str(uuidlib.uuid4())), dict(sparse, uuid=str(uuidlib.uuid4()))]
        for row in single:
            opened.insert_task(row)
        opened.insert_tasks([full, sparse])
        with opened.reading() as conn:
            stored = [dict(r._mapping) for r in conn.execute(select(T).order_by(T.c.id))]
        assert len(stored) == 4
        for one, bulk in ((stored[0], stored[2]), (stored[1], stored[3])):
            for row in (one, bulk):
                row.pop("id")
                row.pop("uuid")
            assert bulk == one
        assert stored[2]["enabled"] is False and stored[2]["priority"] == 7
        assert stored[3]["group_name"] == "main" and stored[3]["repeats"] == 1
        task = opened.get_task(3)
        assert task is not None and task.id == 3
        assert task.next_run_time == now - timedelta(minutes=1)
        assert task.stop_time == now + timedelta(days=1)
    finally:
        opened.dispose()


def test_listeners_tell_control_rings_from_work(store: Store, other_store: Store) -> None:
    """queue_task wakes idle workers; only stop_task (and other changes to held
    tasks) asks busy ones to re-read their claimed batch."""
    import select as select_module

    listener = store.listen("w1")
    assert listener is not None  # every backend rings: NOTIFY or same-host doorbells
    try:

        def drained() -> tuple[int, bool]:
            ready, _, _ = select_module.select([listener], [], [], 5.0)
            assert ready, "no wake-up came"
            time.sleep(0.05)  # let every ring of the change arrive
            return listener.drain(), listener.take_control()

        task_id = other_store.insert_task(task_row(other_store.now()))
        count, control = drained()
        assert count >= 1 and control is False
        assert other_store.stop_tasks(T.c.id == task_id) == 1
        count, control = drained()
        assert count >= 1 and control is True
        assert listener.take_control() is False
    finally:
        listener.close()
