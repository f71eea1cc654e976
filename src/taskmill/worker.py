"""The worker loop: heartbeat, claim, hand tasks to the child, record results.

One worker process owns one persistent child (see executor.py). Claims and
results are batched in short transactions: results of fast tasks are written
in the same transaction that claims the next batch, and a task is marked
RUNNING (with a RUNNING run row) only once it has run for `mark_running_after`
seconds, so millisecond tasks cost one write per batch instead of three per
task. A task still ASSIGNED to a worker that dies is requeued by the ticker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError, OperationalError

from taskmill import forkserver
from taskmill.concurrency import Pool
from taskmill.errors import (
    AppImportError,
    ConfigurationError,
    DatabaseUnavailable,
)
from taskmill.executor import ChildProcess
from taskmill.forkserver import ForkServer
from taskmill.groups import GroupShares, parse_groups
from taskmill.lifecycle import Outcome, Settlement, settle
from taskmill.protocol import MAX_OUTPUT_CHARS, MAX_RESULT_BYTES
from taskmill.records import Task
from taskmill.states import RunStatus, TaskStatus, WorkerStatus
from taskmill.supervisor import SUPERVISOR_ENV
from taskmill.ticker import RENEW_EVERY, Ticker, lease_for

if TYPE_CHECKING:
    from taskmill.scheduler import Scheduler

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FORCED = 1
EXIT_APP_ERROR = 2
EXIT_DATABASE = 3

#: what a database call can raise when the database (or the connection to it) fails
DB_ERRORS = (OperationalError, DBAPIError)
#: a follower beats this long after the ticker's lease ran out, so that its clock
#: (synced with the database's to a few ms) surely sees it expired
_LEASE_MARGIN = 0.02
#: the retry backoff is forgotten only once the database has worked this long without
#: an error: a step that keeps failing between others that succeed (a full disk fails
#: writes, not reads) must not be retried in a tight loop
_BACKOFF_MEMORY = 5.0


@dataclass
class WorkerOptions:
    """Tuning knobs; the defaults suit both millisecond tasks and long ones."""

    grace: float = 30.0  # seconds a stopping worker lets its running task finish
    mark_running_after: float = 0.05  # a task running this long is marked RUNNING
    max_batch: int = 50  # most tasks claimed in one transaction
    # most millisecond tasks handed to the child ahead of time (1 = none), so it
    # runs them back to back while this process records results; see _top_up
    pipeline_depth: int = 16
    # a task handed over ahead starts without asking only this soon after it was
    # sent: later (the worker was starved of CPU and may have missed a stop_task),
    # the child asks first, see _recheck_sent. Also bounds the work sent ahead.
    handover_window: float = 0.005
    claim_window: float = 0.02  # claim about this many seconds of work at once
    status_check_every: float = 1.0  # re-read a long task's row (stop_task) this often
    db_timeout: float = 60.0  # give up (exit 3) after the database failed this long
    # tasks run at once (pool.py); 1 keeps the single-child loop of this module
    concurrency: int = 1
    pool: Pool = Pool.PROCESSES  # where they run: child processes or threads (pool.py)
    max_output_chars: int = MAX_OUTPUT_CHARS  # a run keeps this much of its output (the end)
    max_result_bytes: int = MAX_RESULT_BYTES  # a larger JSON result fails the run
    max_tasks_per_child: int = 0  # replace the task child after this many tasks (0 = never)
    max_memory_per_child: int = 0  # ... or once its resident memory exceeds this (bytes)


@dataclass
class Running:
    """The task in the child right now."""

    task: Task
    started: Any
    t0: float
    run_id: int | None = None
    marked: bool = False
    lost: bool = False
    output: str = ""
    next_check: float = 0.0


class Worker:
    def __init__(
        self,
        scheduler: Scheduler,
        app_spec: str,
        *,
        name: str | None = None,
        group_names: Sequence[str] | Mapping[str, int] | None = None,
        options: WorkerOptions | None = None,
    ) -> None:
        self.sched = scheduler
        self.store = scheduler.store
        self.name = name or scheduler.default_worker_name()
        if group_names:
            self.groups, weights = parse_groups(group_names)
        else:
            self.groups, weights = scheduler.group_names, scheduler.group_weights
        #: how claims are split among weighted groups (None: one earliest-first queue)
        self.shares = GroupShares(weights) if weights is not None else None
        self.options = options or WorkerOptions()
        #: task children are forked from it, warm, when it runs (see forkserver.py)
        self.forkserver = (
            ForkServer(self.store.engine.url.drivername) if forkserver.enabled() else None
        )
        self.child = ChildProcess(
            app_spec,
            max_output=self.options.max_output_chars,
            max_result=self.options.max_result_bytes,
            forkserver=self.forkserver,
        )
        self.ticker = Ticker(self.store, scheduler.dead_after, self.name)
        self.batch: deque[Task] = deque()
        #: tasks handed to the child and not finished yet, in the order it runs
        #: them; the first is the one running (see _pipeline_depth)
        self.sent: deque[Task] = deque()
        self.finished: list[tuple[Outcome, Settlement]] = []
        self.current: Running | None = None
        self.stopping = False
        self.hard_stop = False
        self.stop_deadline = float("inf")
        self.disabled = False
        self.is_ticker = False
        self.signals = 0
        self._woken = False
        self._idle_rung = False
        self._left = False
        self._registered = False
        self.commanded = False
        self._ring_after_commit = False
        self._recorded = 0
        self._last_work = 0.0  # when a claim last found work (for poll_after)
        self._beat_pending = False  # a heartbeat began and has not succeeded yet
        self.next_beat = 0.0  # the next beat: a heartbeat or a ticker lease renewal
        self._heartbeat_at = 0.0  # the next regular heartbeat
        self._next_round = 0.0  # the ticker's next housekeeping round
        self.empty_runs = 0
        self._total_at_beat = -1
        self.total = 0
        self.errors = 0
        #: deadlocks (and lock wait timeouts) the database reported to us; each was
        #: retried, but a correct claim protocol should see none (see operations.md)
        self.deadlocks = 0
        self.avg_duration = 0.0
        #: tasks handed to a child behind the one it was running (see _top_up)
        self.prefetched = 0
        self._db_failing_since: float | None = None
        self._db_failures = 0
        self._last_db_error = float("-inf")
        self._resync = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.listener = self.store.listen(self.name)

    # ------------------------------------------------------------ lifecycle
    def run(self) -> int:
        """Serve until told to stop; returns the process exit code."""
        self._install_signal_handlers()
        try:
            self._start_executors()
        except AppImportError as exc:
            log.error("worker %s cannot start its task child: %s", self.name, exc)
            self._close()
            return EXIT_APP_ERROR
        try:
            code = self._register()
            if code is not None:
                return code
            log.info("worker %s serving groups %s", self.name, self.groups)
            while self._keep_serving():
                self._guarded(self.loop_once)
            while not self._left:
                self._guarded(self.shutdown)
                if self.hard_stop:
                    break
        except DatabaseUnavailable as exc:
            log.error("worker %s: %s", self.name, exc)
            return EXIT_DATABASE
        finally:
            self._close()
        return EXIT_FORCED if self.hard_stop and not self.commanded else EXIT_OK

    def _start_executors(self) -> None:
        self._start_fork_server()
        self._start_first_child()

    def _start_fork_server(self) -> None:
        if self.forkserver is None:
            return
        try:
            self.forkserver.start()
        except OSError as exc:
            log.warning("worker %s: no fork server (%s); children start plainly", self.name, exc)
            self.forkserver = None

    def _stop_executors(self) -> None:
        self.child.stop()
        self._stop_fork_server()

    def _stop_fork_server(self) -> None:
        if self.forkserver is not None:
            self.forkserver.close()

    def _keep_serving(self) -> bool:
        """Until stopped; tasks already handed to the child still end first, unless
        the stop is a hard one (they are then killed and requeued)."""
        return not self.stopping or (bool(self.sent) and not self.hard_stop)

    def _busy(self) -> bool:
        return self.current is not None

    def _held_task_ids(self) -> set[int]:
        """Tasks this worker has claimed and not recorded yet."""
        held = {t.id for t in (*self.batch, *self.sent)}
        return held | {o.task.id for o, _ in self.finished}

    def _start_first_child(self) -> None:
        """A child killed by a signal while it starts (the OOM killer, a stray kill)
        is no sign of a broken application: start another rather than exit with code
        2, which would also make a `-n` supervisor stop every other worker."""
        for attempt in range(1, 4):
            try:
                self.child.start()
                return
            except AppImportError:
                if attempt == 3 or self.child.start_signal is None:
                    raise
                log.warning(
                    "worker %s: task child killed by signal %d while starting; starting another",
                    self.name,
                    self.child.start_signal,
                )

    def _register(self) -> int | None:
        """Join the database: retry while it is unreachable (up to db_timeout),
        refuse clearly when the tables are missing or the name is taken."""
        self._registered = False

        def register() -> None:
            if not self.store.tables_exist():
                raise ConfigurationError(
                    f"the taskmill tables do not exist in {self.store.url_text()}: "
                    "run `taskmill migrate` (or Scheduler.create_tables()) first"
                )
            self.store.register_worker(self.name, self.groups, self.stats(), self.sched.dead_after)
            self._registered = True

        while not self._registered and not self.stopping:
            try:
                self._guarded(register, reraise=(ConfigurationError,))
            except ConfigurationError as exc:
                log.error("worker %s: %s", self.name, exc)
                return EXIT_APP_ERROR
        return None if self._registered else EXIT_OK

    def _guarded(self, step: Any, reraise: tuple[type[Exception], ...] = ()) -> None:
        """Run one step; ride out database errors up to db_timeout, and never let
        an unexpected error (a malformed row, a bug) end the worker silently."""
        try:
            step()
        except DB_ERRORS as exc:
            self._on_database_error(exc)
        except reraise:
            raise
        except Exception:
            log.exception("worker %s: unexpected error; carrying on in 1 s", self.name)
            self._sleep(1.0)
        else:
            self._database_works()

    def _database_works(self) -> None:
        """A step or a transaction succeeded: the failure clock stops."""
        if self._db_failing_since is not None:
            log.info(
                "worker %s: database reachable again after %.3f s",
                self.name,
                time.monotonic() - self._db_failing_since,
            )
            self._db_failing_since = None
        if time.monotonic() - self._last_db_error >= _BACKOFF_MEMORY:
            self._db_failures = 0

    def _on_database_error(self, exc: DBAPIError) -> None:
        """Back off and let the caller retry (the pool reconnects, pre-ping drops
        dead connections); give up once the database failed for db_timeout."""
        now = time.monotonic()
        self._count_deadlock(exc)
        if self._db_failing_since is None:
            self._db_failing_since = now
        self._db_failures += 1
        self._last_db_error = now
        self._resync = True
        failing = now - self._db_failing_since
        timeout = self.options.db_timeout
        if failing >= timeout:
            raise DatabaseUnavailable(
                f"database unreachable for more than {timeout:g} s (db_timeout), giving up; "
                f"last error: {_describe(exc)} [{self.store.url_text()}]"
            ) from None
        # a dropped connection usually works again at once: retry the first time
        # straight away, then back off exponentially, never past the deadline
        delay = 0.0 if self._db_failures == 1 else min(5.0, 0.05 * 2**self._db_failures)
        delay = min(delay, timeout - failing + 0.01)
        log.warning(
            "worker %s: database error (%s); retrying in %.2f s", self.name, _describe(exc), delay
        )
        self._sleep(delay)

    def _close(self) -> None:
        with contextlib.suppress(Exception):
            self._stop_executors()
        if self.listener is not None:
            self.listener.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.signals += 1
        if self.signals > 1:
            self.hard_stop = True
            self.stop_deadline = 0.0
        else:
            self.request_stop(self.options.grace)
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"!")

    def request_stop(self, grace: float) -> None:
        self.stopping = True
        self.stop_deadline = time.monotonic() + grace

    def shutdown(self) -> None:
        """Give back what was claimed but not started, write results, leave."""
        with self._transaction() as conn:
            self._record(conn)
            self.store.release_tasks(conn, self.name, [t.id for t in self.batch])
        self.batch.clear()
        self.store.unregister_worker(self.name)
        self._left = True
        self.store.ring()  # released tasks and, if we were ticker, the role are free
        log.info(
            "worker %s stopped after %d task(s), %d deadlock(s)",
            self.name,
            self.total,
            self.deadlocks,
        )

    # ---------------------------------------------------------------- loop
    def loop_once(self) -> None:
        self.maybe_heartbeat()
        if self._resync:
            self._resync_claims()
        if self.sent:
            # tasks already in the child's pipe run before anything else, also
            # while disabled or stopping: they may have started
            self.finish(self.execute(self.sent[0]))
            return
        if self.stopping:
            return
        if self.disabled:
            with self._transaction() as conn:
                self._record(conn)
                if self.store.release_tasks(conn, self.name, [t.id for t in self.batch]):
                    self._ring_after_commit = True
            self.batch.clear()
            self._idle(self.next_beat - time.monotonic())
            return
        if not self.batch:
            claimed = self.flush_and_claim(self.claim_size())
            if not claimed:
                self._on_empty()
                return
            self.batch.extend(claimed)
            self._last_work = time.monotonic()
        elif self._rung():
            self._drop_taken_from_batch()
        if self.batch:
            self.finish(self.execute(self.batch.popleft()))

    def _resync_claims(self) -> None:
        """After a database error: a claim may have committed although its reply
        never arrived (the connection died during COMMIT), leaving tasks ASSIGNED
        to us that we know nothing of; give those back. And forget claimed tasks
        taken from us while we could not look (by a ticker that took us for dead)."""
        keep = self._held_task_ids()
        with self._transaction() as conn:
            self._record(conn)
            released = self.store.release_forgotten_tasks(conn, self.name, keep)
            if released:
                self._ring_after_commit = True
        if released:
            log.warning(
                "worker %s: released %d claim(s) lost with a connection", self.name, released
            )
        self._resync = False
        if self.batch:
            self._drop_taken_from_batch()

    def _rung(self) -> bool:
        """Did a wake-up arrive while we worked? stop_task and requeue ring too."""
        woken, self._woken = self._woken, False
        if self.listener is None:
            return True  # nobody rings on this backend: look before every task
        self.listener.drain()
        # only a control ring says a held task may have been stopped or taken: a
        # queue_task ring during a drain must not cost a re-read per task
        rung = self.listener.take_control() or woken
        # where rings come only from this host (MariaDB), look before every task
        return rung or not self.store.wakeups_complete

    def _drop_taken_from_batch(self) -> None:
        """Forget claimed tasks that were stopped (or taken) since the claim, so
        stop_task on an ASSIGNED task keeps it from starting. Checked only after a
        wake-up, not before every task: fast batches pay nothing."""
        statuses = self.store.task_statuses([t.id for t in self.batch])
        mine = (TaskStatus.ASSIGNED.value, self.name)
        self.batch = deque(t for t in self.batch if statuses.get(t.id) == mine)

    def _on_empty(self) -> None:
        self._idle(self._idle_timeout())

    def _idle_timeout(self) -> float:
        now = time.monotonic()
        timeout = min(self.next_beat - now, self.store.poll_after(now - self._last_work))
        due = self.store.next_due_time(self.groups, self.name)
        if due is not None:
            timeout = min(timeout, (due - self.store.now()).total_seconds())
        return max(timeout, 0.0)

    def _pipeline_depth(self) -> int:
        """How many tasks the child may hold at once. Millisecond tasks are sent
        ahead so the child runs them back to back while this process records
        results, instead of both taking turns (a quarter less CPU per task);
        no more than handover_window of work, so none waits behind a long task
        that another worker could have taken."""
        window = self.options.handover_window
        if self.stopping or self.disabled or not 0 < self.avg_duration < window:
            return 1
        if self.listener is None or not self.store.wakeups_complete:
            # rings may never come on this backend (MariaDB/MySQL), so nothing would
            # tell us to re-check tasks already handed over: hand over one at a time
            return 1
        return max(1, min(self.options.pipeline_depth, int(window / self.avg_duration)))

    def _top_up(self) -> None:
        """Hand tasks over ahead, each to be started within handover_window: a
        stop_task reaches us as a ring, and we hold the child at once, so a task
        the child starts in time was not stopped before we could have known. If
        we are slow to look (starved of CPU), the child asks before a late start."""
        depth = self._pipeline_depth()
        if len(self.sent) > depth // 2 or not self.batch:
            return  # topped up when half of it has run: one write, one wake-up, for many
        self._send_ahead(self.child, self.sent, depth - len(self.sent))

    def _send_ahead(self, child: ChildProcess, held: deque[Task], count: int) -> None:
        """Up to `count` tasks of the batch to `child`, behind the `held` ones, in
        one write; each to be started within handover_window. On OSError none was
        sent, and they are back at the front of the batch, in order."""
        start_by = time.monotonic() + self.options.handover_window
        tasks = [self.batch.popleft() for _ in range(min(len(self.batch), count))]
        try:
            child.send_tasks(tasks, start_by=start_by)
        except OSError:
            self.batch.extendleft(reversed(tasks))
            raise
        held.extend(tasks)
        self.prefetched += len(tasks)

    def _take_back_unstarted(self) -> None:
        """After the child was killed or died: tasks sent behind the current one
        never ran; they are still ours, so they go back to the front of the batch."""
        behind = list(self.sent)[1:]
        self.sent.clear()
        self.batch.extendleft(reversed(behind))

    def claim_size(self) -> int:
        if self.avg_duration <= 0:
            return 1
        wanted = int(self.options.claim_window / self.avg_duration)
        return max(1, min(self.options.max_batch, wanted))

    def flush_and_claim(self, limit: int) -> list[Task]:
        rung, self._idle_rung = self._idle_rung, False
        # a cheap read first, so an idle poll does not take the write lock; after
        # a ring there is most likely work, so go straight to the claim
        if not self.finished and not rung and not self.store.has_due_task(self.groups, self.name):
            return []
        with self._transaction(statement=not self.finished) as conn:
            self._record(conn)
            claimed = self.store.claim_due_tasks(
                conn, self.name, self.groups, limit, shares=self.shares
            )
        return claimed

    def flush(self) -> None:
        if self.finished:
            with self._transaction() as conn:
                self._record(conn)

    def _record(self, conn: Any) -> None:
        """Write finished runs in `conn`'s transaction; they are forgotten only
        once it commits (see _transaction), so a failed write loses nothing."""
        if not self.finished:
            return
        recorded = self.store.record_outcomes(conn, self.name, self.finished)
        self._recorded = len(self.finished)
        for outcome in recorded.lost:
            log.warning(
                "worker %s: task %s was taken from us (stopped or requeued); run recorded only",
                self.name,
                outcome.task.id,
            )
        # ring only when work was freed: a ring per batch would wake every busy
        # worker of a drain for nothing
        if recorded.unblocked or any(o.requeue for o, _ in self.finished):
            self._ring_after_commit = True

    @contextlib.contextmanager
    def _transaction(self, statement: bool = False) -> Iterator[Any]:
        """A store transaction; after commit, drops the results it wrote and
        rings idle workers if it freed work. `statement`: only a claim will run
        in it (see Store.claim_transaction)."""
        self._ring_after_commit = False
        self._recorded = 0
        opened = self.store.claim_transaction() if statement else self.store.transaction()
        with opened as conn:
            yield conn
        self._database_works()
        del self.finished[: self._recorded]
        self._recorded = 0
        if self._ring_after_commit:
            self.store.ring()

    def finish(self, outcome: Outcome) -> None:
        if outcome.skipped:
            return  # it never ran and is not ours any more: nothing to record
        try:
            settlement = settle(
                outcome,
                discard_results=self.sched.discard_results,
                local_time=not self.sched.utc_time,
            )
        except Exception as exc:  # a malformed row must fail its task, not the worker
            log.exception("worker %s: cannot settle task %s", self.name, outcome.task.id)
            outcome.status = RunStatus.FAILED
            outcome.traceback = f"malformed scheduler_task row {outcome.task.id}: {exc!r}"
            settlement = Settlement(
                task_values={"status": TaskStatus.FAILED.value},
                keep_run=True,
                resolves_dependencies=False,
            )
        self.finished.append((outcome, settlement))
        self.total += 1
        if outcome.status is not RunStatus.COMPLETED:
            self.errors += 1
        self._after_finish(outcome)

    def _after_finish(self, outcome: Outcome) -> None:
        if outcome.run_id is not None or self.stopping:
            self.flush()  # a long task's end should show at once
        self._recycle_child_if_due()

    def _recycle_child_if_due(self) -> None:
        """Replace a child that ran its quota of tasks or grew too big, between two
        tasks (never while it holds tasks sent ahead): a leak in a task or in a
        library it uses is then bounded instead of growing until the OOM killer."""
        if self.sent or self.stopping:
            return
        reason = self.child.recycle_reason(
            self.options.max_tasks_per_child, self.options.max_memory_per_child
        )
        if reason is not None:
            log.info("worker %s: replacing task child %s: %s", self.name, self.child.pid, reason)
            self.child.stop()
            self.child.start()

    # ------------------------------------------------------------- running
    def execute(self, task: Task) -> Outcome:
        started = self.store.now()
        run = Running(task=task, started=started, t0=time.monotonic())
        self.current = run
        try:
            return self._supervise(run)
        except AppImportError as exc:
            # the child died (or was killed) and its replacement did not start, say
            # because it was killed too: the run must end here, not vanish with the
            # exception while its task stays ASSIGNED to a live worker for ever
            log.error("worker %s: task child unavailable: %s", self.name, exc)
            self._take_back_unstarted()
            outcome = self._outcome(
                run, RunStatus.STOPPED, traceback=f"task child unavailable ({exc}); requeued"
            )
            outcome.requeue = True
            self._sleep(1.0)  # an app that cannot start at all must not spin
            return outcome
        finally:
            self.current = None

    def _supervise(self, run: Running) -> Outcome:
        task = run.task
        try:
            if not self.sent:
                self.child.send_task(task)
                self.sent.append(task)
            self._top_up()
        except OSError as exc:
            # the task never reached a child (it died between two tasks): it did not
            # run, so it goes back to the queue untouched rather than fail
            self._take_back_unstarted()
            self.child.restart()
            unsent = self._outcome(
                run, RunStatus.STOPPED, traceback=f"task child unreachable ({exc}); requeued"
            )
            unsent.requeue = True
            return unsent
        timeout = task.timeout if isinstance(task.timeout, int) and task.timeout > 0 else 60
        deadline = run.t0 + timeout
        if task.sync_output:
            self._mark_running(run)
        fds = {self.child.fileno(): "child", **self._wake_fds()}
        while True:
            outcome = self._wait_step(run, fds, deadline)
            if outcome is not None:
                return outcome

    def _wait_step(self, run: Running, fds: Mapping[int, str], deadline: float) -> Outcome | None:
        now = time.monotonic()
        wake_at = min(deadline, self.stop_deadline)
        if not run.marked:
            wake_at = min(wake_at, run.t0 + self.options.mark_running_after)
        else:
            wake_at = min(wake_at, self.next_beat, run.next_check)
        # several messages may have come in one read (child.receive): no waiting then
        sources = ["child"] if self.child.pending else _ready(fds, wake_at - now)
        for source in sources:
            if source == "child":
                outcome = self._on_child_message(run)
                if outcome is not None:
                    return outcome
            elif source == "ring" and self.listener is not None:
                self.listener.drain()
                if self.listener.take_control():
                    self._woken = True
                    run.next_check = min(run.next_check, time.monotonic() + 0.05)
                    if len(self.sent) > 1:
                        self._recheck_sent(run)
            else:
                self._drain_wake_pipe()
        now = time.monotonic()
        if now >= deadline:
            return self._kill_run(run, RunStatus.TIMEOUT)
        if self.hard_stop or now >= self.stop_deadline:
            return self._kill_run(run, RunStatus.STOPPED, requeue=True)
        if not run.marked and now >= run.t0 + self.options.mark_running_after:
            self._db_quiet(lambda: self._mark_running(run))
        if run.marked and now >= run.next_check:
            run.next_check = now + self.options.status_check_every
            if run.lost or self._db_quiet(lambda: self._was_stopped(run)):
                return self._kill_run(run, RunStatus.STOPPED)
        self._db_quiet(self.maybe_heartbeat)
        return None

    def _recheck_sent(self, run: Running, *, asked: bool = False) -> None:
        """Tasks handed to the child in advance may have been stopped since."""
        unstarted = [t for t in self.sent if not (t is run.task and run.marked)]
        self._recheck_handed([(self.child, unstarted)], asked=asked)

    def _recheck_handed(
        self, handed: list[tuple[ChildProcess, list[Task]]], *, asked: bool = False
    ) -> None:
        """A stop_task (a control ring), or a child about to start a task late
        (it `asked`, holding itself): hold each child before its next task, re-read
        the status of every task claimed and not started (`handed` over, or still
        in the batch), and release each child with the ones to drop (they send
        "skipped") and a new start-by time. So stop_task keeps tasks handed over
        ahead from starting, as it does for the claimed batch."""
        if not asked:
            for child, _ in handed:
                with contextlib.suppress(OSError):  # a dead child's end of file shows next
                    child.send({"type": "hold"})
        skips: dict[int, list[int]] = {id(child): [] for child, _ in handed}
        try:
            ids = [t.id for t in self.batch] + [t.id for _, tasks in handed for t in tasks]
            statuses = self.store.task_statuses(ids) if ids else {}
            mine = (TaskStatus.ASSIGNED.value, self.name)
            self.batch = deque(t for t in self.batch if statuses.get(t.id) == mine)
            for child, tasks in handed:
                skips[id(child)] = [t.id for t in tasks if statuses.get(t.id) != mine]
        except DB_ERRORS as exc:
            log.warning("worker %s: cannot re-check tasks handed over: %s", self.name, exc)
        finally:
            start_by = time.monotonic() + self.options.handover_window
            for child, _ in handed:
                with contextlib.suppress(OSError):
                    child.send({"type": "release", "skip": skips[id(child)], "start_by": start_by})

    def _on_child_message(self, run: Running) -> Outcome | None:
        message = self.child.receive()
        if message is None:
            code = self.child.reap()
            self._take_back_unstarted()
            self.child.start()
            return self._outcome(
                run,
                RunStatus.FAILED,
                traceback=f"the task's child process died (exit code {code}) during the run",
            )
        kind = message["type"]
        if kind == "skipped":
            dropped = [t for t in self.sent if t.id == message.get("id")]
            for task in dropped:
                self.sent.remove(task)
            if any(task is run.task for task in dropped):
                outcome = self._outcome(run, RunStatus.STOPPED)
                outcome.skipped = True
                return outcome
            return None
        if kind == "done":
            if message.get("id") != run.task.id:
                log.error(
                    "child reported task %s done while %s ran", message.get("id"), run.task.id
                )
                outcome = self._kill_run(run, RunStatus.FAILED)
                outcome.traceback = "the task's child process lost track of its tasks; killed"
                return outcome
            self.sent.popleft()
            started_at = message.get("started_at")
            if isinstance(started_at, float):
                # the child's own clock says when it really began (it may have
                # been queued behind other tasks in its pipe)
                run.started = self.store.now() - timedelta(
                    seconds=max(0.0, time.time() - started_at)
                )
            elapsed = float(message.get("elapsed") or 0.0)
            self.avg_duration = (
                elapsed if self.total == 0 else 0.8 * self.avg_duration + 0.2 * elapsed
            )
            return self._outcome(
                run,
                RunStatus(message["status"]),
                result=message.get("result"),
                output=message.get("output") or "",
                traceback=message.get("traceback"),
            )
        if kind == "output":
            run.output = str(message.get("output") or "")
            self._db_quiet(lambda: self._mark_running(run))
            if run.run_id is not None:
                run_id = run.run_id
                self._db_quiet(lambda: self.store.save_output(run_id, run.output))
        elif kind == "ask":
            # the child is about to start a task handed over a while ago: we were
            # slow to run, so a stop_task may have reached the table unseen
            self._recheck_sent(run, asked=True)
        elif kind == "need_run_id":
            self._db_quiet(lambda: self._mark_running(run))
            self.child.send({"type": "run_id", "run_id": run.run_id})
        return None

    def _mark_running(self, run: Running) -> None:
        """Make a long run visible: task RUNNING, a RUNNING run row, the rest released."""
        if run.marked:
            return
        release = [t.id for t in self.batch]
        with self._transaction() as conn:
            self._record(conn)
            run_id = self.store.start_run(conn, self.name, run.task, run.started)
            if self.store.release_tasks(conn, self.name, release):
                self._ring_after_commit = True
        # only now, after the commit, do the run row and the release exist
        self.batch.clear()
        run.run_id = run_id
        run.marked = True
        run.lost = run_id is None
        run.next_check = time.monotonic() + self.options.status_check_every

    def _was_stopped(self, run: Running) -> bool:
        status, owner = self.store.task_statuses([run.task.id]).get(run.task.id, ("", ""))
        return status != TaskStatus.RUNNING.value or owner != self.name

    def _kill_run(self, run: Running, status: RunStatus, *, requeue: bool = False) -> Outcome:
        self._take_back_unstarted()
        self.child.kill()
        if not self.stopping:
            self.child.start()
        messages = {
            RunStatus.TIMEOUT: f"killed after its timeout of {run.task.timeout} s",
            RunStatus.STOPPED: "stopped on request (stop_task)",
        }
        text = messages.get(status)
        if requeue:
            text = f"interrupted: worker {self.name} shut down; the task was requeued"
        outcome = self._outcome(run, status, output=run.output, traceback=text)
        outcome.requeue = requeue
        if status is RunStatus.TIMEOUT:
            outcome.traceback = None  # web2py records a TIMEOUT run without traceback
            outcome.output = run.output
        return outcome

    def _outcome(self, run: Running, status: RunStatus, **fields: Any) -> Outcome:
        return Outcome(
            task=run.task,
            status=status,
            started=run.started,
            finished=self.store.now(),
            run_id=run.run_id,
            **fields,
        )

    def _db_quiet(self, step: Any) -> Any:
        """A database call made while a task runs: an error must not lose the run."""
        try:
            return step()
        except DB_ERRORS as exc:
            self._count_deadlock(exc)
            log.warning(
                "worker %s: database error while a task runs: %s", self.name, _describe(exc)
            )
            return None

    def _count_deadlock(self, exc: DBAPIError) -> None:
        if self.store.is_deadlock(exc):
            self.deadlocks += 1
            log.warning("worker %s: DEADLOCK #%d: %s", self.name, self.deadlocks, _describe(exc))

    # ------------------------------------------------------------ heartbeat
    def maybe_heartbeat(self) -> None:
        """Beat every heartbeat; between them the ticker renews its lease, and a
        follower beats the moment the ticker's lease runs out (see ticker.py)."""
        now = time.monotonic()
        if now < self.next_beat:
            return
        heartbeat = self.sched.heartbeat
        if now >= self._heartbeat_at:
            if self._orphaned() and not self.stopping:
                log.warning("worker %s: its supervisor died; stopping", self.name)
                self.request_stop(self.options.grace)
            self._heartbeat_at = now + heartbeat
            self._count_empty_run()
            self.store.sync_clock()
        # also the retry, should this beat fail: soon, a lease may be at stake
        self.next_beat = min(self._heartbeat_at, now + heartbeat * RENEW_EVERY)
        failed_before, self._beat_pending = self._beat_pending, True
        beat = self.store.heartbeat(
            self.name, self.groups, self.stats(), ticker_lease=lease_for(heartbeat)
        )
        self._beat_pending = False
        if failed_before or self._db_failing_since is not None:
            self.ticker.defer_burials()  # the first beat after an outage
        if beat.is_ticker != self.is_ticker:
            became = "is now" if beat.is_ticker else "is no longer"
            log.info("worker %s %s the ticker", self.name, became)
        self.is_ticker = beat.is_ticker
        if not beat.is_ticker:
            self.next_beat = self._heartbeat_at
            if beat.lease_until is not None:
                left = (beat.lease_until - self.store.now()).total_seconds()
                wake = time.monotonic() + max(left, 0.0) + _LEASE_MARGIN
                self.next_beat = min(self.next_beat, wake)
        elif now >= self._next_round:
            self._next_round = now + heartbeat
            self.ticker.tick()
        self._obey(beat.status)

    def _obey(self, status: WorkerStatus) -> None:
        self.disabled = status is WorkerStatus.DISABLED
        if status is WorkerStatus.TERMINATE and not self.stopping:
            log.info("worker %s: TERMINATE requested", self.name)
            self.request_stop(float("inf"))
        elif status is WorkerStatus.KILL:
            log.info("worker %s: KILL requested", self.name)
            self.request_stop(0)
            self.hard_stop = True
            self.commanded = True

    def _count_empty_run(self) -> None:
        """web2py's max_empty_runs counts heartbeats that passed without a task."""
        idle = self.total == self._total_at_beat and not self._busy()
        self.empty_runs = self.empty_runs + 1 if idle else 0
        self._total_at_beat = self.total
        limit = self.sched.max_empty_runs
        if limit and self.empty_runs >= limit and not self.stopping:
            log.info("worker %s: %d empty runs, exiting", self.name, limit)
            self.request_stop(0)

    def _orphaned(self) -> bool:
        """True when the `-n N` supervisor that started us is gone."""
        supervisor = os.environ.get(SUPERVISOR_ENV)
        return bool(supervisor) and str(os.getppid()) != supervisor

    def stats(self) -> dict[str, Any]:
        return {
            "status": WorkerStatus.DISABLED.value if self.disabled else WorkerStatus.ACTIVE.value,
            "total": self.total,
            "errors": self.errors,
            "deadlocks": self.deadlocks,
            "empty_runs": self.empty_runs,
            # claimed and not started: in the batch, or handed to the child ahead
            "queue": len(self.batch) + max(0, len(self.sent) - 1),
            "prefetched": self.prefetched,
            "current_task": None if self.current is None else self.current.task.id,
            "pid": os.getpid(),
            "child_pid": self.child.pid,
            "is_ticker": self.is_ticker,
            "tasks": self.child.tasks,  # what this worker can run, for explain()
        }

    # ---------------------------------------------------------------- idle
    def _wake_fds(self) -> dict[int, str]:
        """What ends a wait: a signal (the wake pipe) and, where there is one, a
        ring (the listener: new work, stop_task, requeue)."""
        fds = {self._wake_r: "signal"}
        if self.listener is not None:
            fds[self.listener.fileno()] = "ring"
        return fds

    def _idle(self, timeout: float) -> None:
        for source in _ready(self._wake_fds(), timeout):
            if source == "ring" and self.listener is not None:
                self._idle_rung = self.listener.drain() > 0
            else:
                self._drain_wake_pipe()

    def _sleep(self, seconds: float) -> None:
        if _ready({self._wake_r: "signal"}, seconds):
            self._drain_wake_pipe()

    def _drain_wake_pipe(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 512):
                pass


def _ready(fds: Mapping[int, str], timeout: float) -> list[str]:
    """The names of the descriptors readable (or closed: a dead child) within
    `timeout` seconds. One poll() call: a selector per wait would cost an epoll
    instance made and closed for every task."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    # poll() takes an int of milliseconds: cap a far deadline (a timeout of years)
    return [fds[fd] for fd, _ in poller.poll(min(max(0.0, timeout), 86_400.0) * 1000.0)]


def _describe(exc: DBAPIError) -> str:
    """The driver's error in one line, without the SQL statement and parameters."""
    error = exc.orig if exc.orig is not None else exc
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"
