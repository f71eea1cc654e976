"""A worker that runs up to N tasks at once: a dispatcher over N slots.

`taskmill worker --concurrency N` (Scheduler(concurrency=N)). The worker process
itself never runs task code with `--pool processes`: each slot is a persistent
child (executor.py), one task at a time, so a timeout or stop_task hard-kills that
child alone and the other slots run on. With `--pool threads` a slot is a thread of
the worker, or a coroutine on its event loop (inprocess.py), for tasks marked
@thread_safe; other tasks still run in a child (one, started when first needed),
since a task that was not declared safe must never run in a thread.

One loop, in one thread, does everything the single-slot worker (worker.py) does,
for every slot at once: it claims only as many tasks as there are free slots (so
no task waits claimed behind a busy slot while another worker idles), writes
results in the transaction that claims the next tasks (or within `claim_window`),
marks a run RUNNING after `mark_running_after`, re-reads long runs for stop_task,
enforces each run's timeout, and on a graceful stop waits for every slot. Claims
are coalesced: with tasks running, it claims once a quarter of the slots is free
or `claim_window` has passed, so that short tasks do not cost a transaction each;
for millisecond tasks it claims about `claim_window` of work beyond its free
slots, as the one-slot worker does, and hands each busy child up to
`handover_window` of them ahead (the one-slot worker's pipeline, per slot), so a
pool drains millisecond tasks as fast as one child does instead of paying a
wake-up of two processes per task.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import time
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from taskmill import forkserver
from taskmill.concurrency import Pool, is_thread_safe
from taskmill.executor import ChildProcess
from taskmill.inprocess import InProcessRun, InProcessRunner
from taskmill.lifecycle import Outcome
from taskmill.records import Task
from taskmill.states import RunStatus, TaskStatus
from taskmill.worker import Running, Worker, WorkerOptions

if TYPE_CHECKING:
    from taskmill.scheduler import Scheduler

log = logging.getLogger(__name__)

_NEVER = float("inf")
#: the worker's CPU per task is re-measured after this many tasks (_children_wanted)
_CPU_SAMPLE_TASKS = 200


@dataclass
class SlotRun(Running):
    """A task in one slot: in a child process, or in a thread / on the event loop."""

    deadline: float = _NEVER
    child: ChildProcess | None = None
    inprocess: InProcessRun | None = None
    next_sync: float = _NEVER  # the next save of a threaded run's output (sync_output)

    @property
    def key(self) -> int:
        return id(self.child if self.child is not None else self.inprocess)


def timeout_of(task: Task) -> int:
    return task.timeout if isinstance(task.timeout, int) and task.timeout > 0 else 60


def create_worker(
    scheduler: Scheduler,
    app_spec: str,
    *,
    name: str | None = None,
    group_names: list[str] | None = None,
    options: WorkerOptions | None = None,
) -> Worker:
    """The worker for these options: the single-child loop (with its prefetch
    pipeline) for one task at a time in a process, the dispatcher otherwise."""
    options = options or WorkerOptions()
    if options.concurrency == 1 and options.pool is Pool.PROCESSES:
        return Worker(scheduler, app_spec, name=name, group_names=group_names, options=options)
    return PoolWorker(scheduler, app_spec, name=name, group_names=group_names, options=options)


class PoolWorker(Worker):
    """Runs up to `options.concurrency` tasks at once; see the module's docstring."""

    def __init__(
        self,
        scheduler: Scheduler,
        app_spec: str,
        *,
        name: str | None = None,
        group_names: list[str] | None = None,
        options: WorkerOptions | None = None,
    ) -> None:
        super().__init__(scheduler, app_spec, name=name, group_names=group_names, options=options)
        self.capacity = max(1, self.options.concurrency)
        self.pool = Pool(self.options.pool)
        threads = self.pool is Pool.THREADS
        self.children = [
            ChildProcess(
                app_spec,
                max_output=self.options.max_output_chars,
                max_result=self.options.max_result_bytes,
                # a threads pool starts its one child when a task first needs it
                forkserver=None if threads else self.forkserver,
            )
            for _ in range(1 if threads else self.capacity)
        ]
        self.inprocess: InProcessRunner | None = None
        if threads:
            from taskmill.apps import load_app_with_hooks

            # the app is imported already (the Scheduler came from it): this only
            # finds its TaskManager, whose hooks wrap every run
            _, manager = load_app_with_hooks(app_spec)
            self.inprocess = InProcessRunner(scheduler.tasks, manager)
        self.runs: dict[int, SlotRun] = {}
        #: per child (by id): tasks handed over behind its current run, in the
        #: order it runs them (millisecond tasks only, see _fill_children)
        self.ahead: dict[int, deque[Task]] = {}
        self._child_fds: dict[int, int] = {}
        self._starting: set[int] = set()  # children still importing the app
        self._selector = selectors.DefaultSelector()
        self._claim_after = 0.0  # no claim before this (the queue looked empty)
        self._read_at = 0.0  # when the children's messages were last read (_wait)
        self._last_claim = 0.0
        self._last_write = 0.0
        self._recheck_batch = False
        self._flush_now = False  # stopping: write what ended after this round of events
        #: this process's CPU seconds per task, measured (_measure_cpu_per_task)
        self.cpu_per_task = 0.0
        self._cpu_mark = (time.process_time(), 0)

    # ------------------------------------------------------------ executors
    def _start_executors(self) -> None:
        self._selector.register(self._wake_r, selectors.EVENT_READ, "signal")
        if self.listener is not None:
            self._selector.register(self.listener.fileno(), selectors.EVENT_READ, "ring")
        if self.inprocess is not None:
            self.inprocess.start()
            self._selector.register(self.inprocess.fileno(), selectors.EVENT_READ, "inprocess")
            forkserver.discard_preforked()
            return  # its child starts (plainly) when a task first needs a process
        self._start_fork_server()
        # work starts as soon as one child is ready; the others import the app
        # meanwhile, side by side, and join when their "ready" arrives (_wait)
        first, *others = self.children
        first.start()
        self._watch(first)
        for child in others:
            child.spawn()
            self._watch(child)
        self._starting = {id(child) for child in others}
        self._cpu_mark = (time.process_time(), self.total)  # start-up is not a task's cost

    def _stop_executors(self) -> None:
        for child in self.children:
            if child.sock is not None:
                with contextlib.suppress(OSError):
                    child.send({"type": "exit"})
        for child in self.children:
            with contextlib.suppress(Exception):
                child.stop()
        if self.inprocess is not None:
            self.inprocess.close()
        self._stop_fork_server()
        self._selector.close()

    def _watch(self, child: ChildProcess) -> None:
        fd = child.fileno()
        self._child_fds[id(child)] = fd
        self._selector.register(fd, selectors.EVENT_READ, child)

    def _unwatch(self, child: ChildProcess) -> None:
        fd = self._child_fds.pop(id(child), None)
        if fd is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(fd)

    def _replace_child(self, child: ChildProcess) -> None:
        """Kill a child (its run timed out, was stopped, or it died) and start a
        fresh one for the slot, unless the worker is on its way out. The other
        slots run on while it imports the app: it joins when its "ready" arrives."""
        self._unwatch(child)
        self._starting.discard(id(child))
        child.kill()
        # tasks handed over behind its run never started: still ours, run them next
        behind = self.ahead.pop(id(child), None)
        if behind:
            self.batch.extendleft(reversed(behind))
        if not self.stopping:
            child.spawn()
            self._watch(child)
            self._starting.add(id(child))

    def _idle_child(self) -> ChildProcess | None:
        busy = {id(run.child) for run in self.runs.values() if run.child is not None}
        busy |= self._starting
        for child in self.children:
            if id(child) not in busy:
                if child.sock is None:
                    child.start()
                    self._watch(child)
                return child
        return None

    # ----------------------------------------------------------- the worker
    def _keep_serving(self) -> bool:
        # a hard stop ends every run (requeued) in loop_once before we leave
        return not self.stopping or bool(self.runs)

    def _busy(self) -> bool:
        return bool(self.runs)

    def _held_task_ids(self) -> set[int]:
        held = super()._held_task_ids() | {run.task.id for run in self.runs.values()}
        return held | {task.id for queue in self.ahead.values() for task in queue}

    def stats(self) -> dict[str, Any]:
        stats = super().stats()
        current = [run.task.id for run in self.runs.values()]
        pids = [child.pid for child in self.children if child.pid is not None]
        stats.update(
            current_task=current[0] if current else None,
            queue=len(self.batch) + sum(len(queue) for queue in self.ahead.values()),
            current_tasks=current,
            concurrency=self.capacity,
            pool=self.pool.value,
            child_pid=pids[0] if pids else None,
            child_pids=pids,
            # slots whose child has imported the app (it starts work before all have)
            ready_slots=self.capacity - len(self._starting),
        )
        if self.inprocess is not None:
            stats["tasks"] = sorted(self.sched.tasks)
            stats["abandoned_threads"] = self.inprocess.abandoned
        else:
            stats["tasks"] = self.children[0].tasks
        return stats

    # ----------------------------------------------------------------- loop
    def loop_once(self) -> None:
        self._measure_cpu_per_task()
        self.maybe_heartbeat()
        if self._resync:
            self._resync_claims()
        now = time.monotonic()
        self._end_overdue_runs(now)
        if self.stopping or self.disabled:
            self._give_back_batch()
        elif self._recheck_batch:
            self._recheck_batch = False
            self._recheck_held([c for c in self.children if self.ahead.get(id(c))])
        if not (self.stopping or self.disabled) and self._should_claim(now):
            self._claim_for_free_slots(now)
        elif self.finished and now - self._last_write >= self.options.claim_window:
            self.flush()
            self._last_write = now
        self._dispatch_batch()
        self._watch_runs(time.monotonic())
        self._wait(self._next_wake(time.monotonic()))
        if self._flush_now:
            self._flush_now = False
            self.flush()
            self._last_write = time.monotonic()

    def _after_finish(self, outcome: Outcome) -> None:
        # results are written with the next claim, or claim_window after they came
        # (loop_once): with N slots ending runs all the time, a transaction per
        # long run would cost more than the runs; on the way out, at once
        if self.stopping:
            self._flush_now = True

    def _free_slots(self) -> int:
        # a slot whose child is still importing the app is not free yet
        return self.capacity - len(self._starting) - len(self.runs) - len(self.batch)

    def _should_claim(self, now: float) -> bool:
        free = self._free_slots()
        if free <= 0 or now < self._claim_after:
            return False
        if not self.runs:
            return True
        wanted = self._children_wanted()
        if wanted < self.capacity and sum(map(len, self.ahead.values())) >= self._pipeline_depth():
            # the children hold a pipeline's worth still: claim when that runs low,
            # as the one-slot worker claims once its child's pipeline empties
            return False
        enough = free >= max(1, self.capacity // 4)
        return enough or now - self._last_claim >= self.options.claim_window

    def _claim_for_free_slots(self, now: float) -> None:
        free = self._free_slots()
        # millisecond tasks: as in worker.py, about claim_window of work more, so
        # that a claim is not a transaction per task; none waits behind a slow one
        extra = self.claim_size() - 1 if self.avg_duration < self.options.claim_window else 0
        claimed = self.flush_and_claim(free + extra)
        self._last_claim = self._last_write = now
        if len(claimed) < free + extra:
            # the queue is (nearly) empty: look again after a ring or the poll interval
            self._claim_after = now + self._idle_timeout()
        self.batch.extend(claimed)

    def _give_back_batch(self) -> None:
        if not self.batch and not self.finished:
            return
        with self._transaction() as conn:
            self._record(conn)
            if self.store.release_tasks(conn, self.name, [t.id for t in self.batch]):
                self._ring_after_commit = True
        self.batch.clear()

    def _dispatch_batch(self) -> None:
        depth = self._pipeline_depth() if self.inprocess is None else 1
        if depth > 1:
            self._fill_children(depth)
            return
        waiting: deque[Task] = deque()
        while self.batch and len(self.runs) < self.capacity:
            task = self.batch.popleft()
            if not self._start_run(task):
                waiting.append(task)  # needs the (busy) child of a threads pool
        self.batch.extendleft(reversed(waiting))

    def _fill_children(self, depth: int) -> None:
        """Millisecond tasks: hand each child up to `depth` tasks (its run and
        handover_window of work behind it), as the one-slot Worker._top_up does, to
        as many children as keep up with this process (_children_wanted), in the
        children's order. Each task handed over behind a run must be started by
        the start-by time; a later start is asked about (_recheck_held)."""
        wanted = self._children_wanted()
        # a run is long if it had lasted the window when we last read the children
        # (not by now: this process may have been busy, or starved, since)
        seen = self._read_at
        used = 0
        for child in self.children:
            if not self.batch or used >= wanted:
                return
            if id(child) in self._starting or child.sock is None:
                continue
            run = self.runs.get(id(child))
            if run is None:
                self._start_run(self.batch.popleft(), child)
                if id(child) not in self.runs:  # it died on the hand-over
                    continue
            elif seen - run.t0 >= self.options.handover_window:
                continue  # held up by a long run: nothing more behind it; the next child helps
            used += 1
            queue = self.ahead.get(id(child))
            if queue is None:
                queue = self.ahead[id(child)] = deque()
            if 1 + len(queue) > depth // 2:
                continue  # topped up once half of it has run: one write, one wake-up, for several
            try:
                self._send_ahead(child, queue, depth - 1 - len(queue))
            except OSError:
                # it died: its end of file shows next, and _replace_child hands
                # what it held back to the batch
                continue

    def _children_wanted(self) -> int:
        """How many children keep up with this process. A millisecond task costs
        the worker `cpu_per_task` (claiming, recording, passing messages) and its
        child avg_duration: a no-op costs the worker more than the child, so more
        children running such tasks side by side add wake-ups, not throughput.
        Longer tasks (CPU-bound work on many cores) go to every child."""
        if self.avg_duration <= 0 or self.cpu_per_task <= 0:
            return self.capacity
        return min(self.capacity, 1 + int(self.avg_duration / self.cpu_per_task))

    def _measure_cpu_per_task(self) -> None:
        cpu_then, total_then = self._cpu_mark
        if self.total - total_then >= _CPU_SAMPLE_TASKS:
            cpu = time.process_time()
            self.cpu_per_task = (cpu - cpu_then) / (self.total - total_then)
            self._cpu_mark = (cpu, self.total)

    def _next_in_child(self, child: ChildProcess) -> None:
        """The child's run ended: the next task handed to it ahead is its run now."""
        queue = self.ahead.get(id(child))
        if not queue:
            self.ahead.pop(id(child), None)
            return
        task = queue.popleft()
        now = time.monotonic()
        run = SlotRun(task=task, started=self.store.now(), t0=now, deadline=now + timeout_of(task))
        run.child = child
        self.runs[run.key] = run

    def _recheck_held(self, children: list[ChildProcess], *, asking: bool = False) -> None:
        """Worker._recheck_handed for these children: the run each one is sent
        (unless it is RUNNING already) and the tasks it holds behind it."""
        handed: list[tuple[ChildProcess, list[Task]]] = []
        for child in children:
            run = self.runs.get(id(child))
            tasks = [run.task] if run is not None and not run.marked else []
            handed.append((child, tasks + list(self.ahead.get(id(child), ()))))
        self._recheck_handed(handed, asked=asking)

    def _start_run(self, task: Task, child: ChildProcess | None = None) -> bool:
        now = time.monotonic()
        run = SlotRun(task=task, started=self.store.now(), t0=now, deadline=now + timeout_of(task))
        if self.inprocess is not None and is_thread_safe(
            self.sched.tasks.get(str(task.function_name))
        ):
            run.inprocess = self.inprocess.submit(task)
            self.runs[run.key] = run
            return True
        child = child or self._idle_child()
        if child is None:
            return False
        run.child = child
        self.runs[run.key] = run
        try:
            child.send_task(task)
        except OSError as exc:
            del self.runs[run.key]
            self._replace_child(child)
            self.finish(self._outcome(run, RunStatus.FAILED, traceback=f"child unreachable: {exc}"))
        return True

    # ----------------------------------------------------------- each run
    def _end_overdue_runs(self, now: float) -> None:
        for run in list(self.runs.values()):
            if now >= run.deadline:
                self._end_run(run, RunStatus.TIMEOUT)
            elif self.hard_stop or now >= self.stop_deadline:
                self._end_run(run, RunStatus.STOPPED, requeue=True)

    def _end_run(self, run: SlotRun, status: RunStatus, *, requeue: bool = False) -> None:
        """Timeout, stop_task or shutdown: kill the run's child, or give up on its
        thread (cancel a coroutine), and record the run."""
        del self.runs[run.key]
        if run.child is not None:
            self._replace_child(run.child)
        elif run.inprocess is not None and self.inprocess is not None:
            run.output = run.inprocess.output()
            self.inprocess.abandon(run.inprocess)
            if run.inprocess.future is None:
                log.warning(
                    "worker %s: task %s (%s) left running in its thread: threads cannot be killed",
                    self.name,
                    run.task.id,
                    status.value,
                )
        if requeue:
            text: str | None = f"interrupted: worker {self.name} shut down; the task was requeued"
        elif status is RunStatus.STOPPED:
            text = "stopped on request (stop_task)"
        else:
            text = None  # web2py records a TIMEOUT run without traceback
        outcome = self._outcome(run, status, output=run.output, traceback=text)
        outcome.requeue = requeue
        self.finish(outcome)

    def _watch_runs(self, now: float) -> None:
        """Make long runs visible (RUNNING), look for stop_task, save synced output."""
        after = self.options.mark_running_after
        due = [
            run
            for run in self.runs.values()
            if not run.marked and (run.task.sync_output or now >= run.t0 + after)
        ]
        if due:
            self._db_quiet(lambda: self._mark_runs(due))
        checks = [run for run in self.runs.values() if run.marked and now >= run.next_check]
        if checks:
            self._db_quiet(lambda: self._end_stopped_runs(checks, now))
        for run in list(self.runs.values()):
            if run.inprocess is not None and run.run_id is not None and now >= run.next_sync:
                self._db_quiet(lambda run=run: self._save_threaded_output(run, now))

    def _mark_runs(self, runs: list[SlotRun]) -> None:
        """RUNNING with a run row, for all these runs in one transaction. Tasks
        still waiting for a slot then go back to the queue if every slot is busy,
        as in worker.py: the slots run long tasks and another worker may be idle.
        (With a slot free they stay: the next child takes them, see _fill_children.)"""
        runs = [run for run in runs if not run.marked]
        if not runs:
            return
        full = len(self.runs) + len(self._starting) >= self.capacity
        give_back = [t.id for t in self.batch] if full else []
        with self._transaction() as conn:
            self._record(conn)
            run_ids = [self.store.start_run(conn, self.name, r.task, r.started) for r in runs]
            if self.store.release_tasks(conn, self.name, give_back):
                self._ring_after_commit = True
        if full:
            self.batch.clear()
        now = time.monotonic()
        self._last_write = now
        for run, run_id in zip(runs, run_ids, strict=True):
            run.run_id = run_id
            run.marked = True
            run.lost = run_id is None
            run.next_check = now + self.options.status_check_every
            if run.inprocess is not None and run.task.sync_output:
                run.next_sync = now + run.task.sync_output

    def _end_stopped_runs(self, runs: list[SlotRun], now: float) -> None:
        for run in runs:
            run.next_check = now + self.options.status_check_every
        statuses = self.store.task_statuses([run.task.id for run in runs])
        for run in runs:
            status, owner = statuses.get(run.task.id, ("", ""))
            stopped = status != TaskStatus.RUNNING.value or owner != self.name
            if (run.lost or stopped) and self.runs.get(run.key) is run:
                self._end_run(run, RunStatus.STOPPED)

    def _save_threaded_output(self, run: SlotRun, now: float) -> None:
        run.next_sync = now + float(run.task.sync_output or 1)
        assert run.inprocess is not None and run.run_id is not None
        output = run.inprocess.output()
        if output != run.output:
            run.output = output
            self.store.save_output(run.run_id, output)

    # ------------------------------------------------------------- waiting
    def _next_wake(self, now: float) -> float:
        wake = min(self.next_beat, self.stop_deadline)
        after = self.options.mark_running_after
        # tasks waiting in the batch go to the next child once a run holds its up
        window = self.options.handover_window if self.batch else 0.0
        for run in self.runs.values():
            watch = run.next_check if run.marked else run.t0 + after
            wake = min(wake, run.deadline, watch, run.next_sync)
            if now < run.t0 + window:
                wake = min(wake, run.t0 + window)
        if not (self.stopping or self.disabled) and self._free_slots() > 0:
            claim_at = self._claim_after
            if self.runs:
                claim_at = max(claim_at, self._last_claim + self.options.claim_window)
            wake = min(wake, claim_at)
        if self.finished:
            wake = min(wake, self._last_write + self.options.claim_window)
        return max(0.0, wake - now)

    def _wait(self, timeout: float) -> None:
        events = self._selector.select(timeout)
        self._read_at = time.monotonic()
        for key, _ in events:
            source = key.data
            if isinstance(source, ChildProcess):
                self._on_child_readable(source)
            elif source == "inprocess":
                self._on_inprocess_events()
            elif source == "ring" and self.listener is not None:
                self.listener.drain()
                self._on_ring()
            else:
                self._drain_wake_pipe()

    def _on_ring(self) -> None:
        """Something changed: new work, or (a control ring) a stop_task for a run or
        a claimed task; only the latter makes the held tasks be re-read."""
        self._idle_rung = True
        self._claim_after = 0.0
        if self.listener is None or not self.listener.take_control():
            return
        self._recheck_batch = True
        soon = time.monotonic() + 0.05
        for run in self.runs.values():
            run.next_check = min(run.next_check, soon)

    def _on_child_readable(self, child: ChildProcess) -> None:
        if id(child) in self._starting:
            self._starting.discard(id(child))
            child.wait_started()
            return
        sock = child.sock
        for message in child.receive_ready():
            if child.sock is not sock:
                return  # replaced on an earlier message (its run ended badly): the rest is void
            self._on_message(child, message)

    def _on_message(self, child: ChildProcess, message: dict[str, Any] | None) -> None:
        run = self.runs.get(id(child))
        if message is None:
            code = child.reap()
            if run is not None:
                del self.runs[run.key]
            self._replace_child(child)
            if run is not None:
                text = f"the task's child process died (exit code {code}) during the run"
                self.finish(self._outcome(run, RunStatus.FAILED, traceback=text))
            return
        kind = message["type"]
        if kind == "ask":
            self._recheck_held([child], asking=True)
            return
        if kind == "skipped":
            self._on_skipped(child, message.get("id"))
            return
        if run is None:
            log.warning("worker %s: child %s sent %s while idle", self.name, child.pid, message)
            return
        if kind == "done":
            self._on_done(run, message)
        elif kind == "output":
            run.output = str(message.get("output") or "")
            self._db_quiet(lambda: self._mark_runs([run]))
            if run.run_id is not None:
                run_id = run.run_id
                self._db_quiet(lambda: self.store.save_output(run_id, run.output))
        elif kind == "need_run_id":
            self._db_quiet(lambda: self._mark_runs([run]))
            child.send({"type": "run_id", "run_id": run.run_id})

    def _on_skipped(self, child: ChildProcess, task_id: Any) -> None:
        """A task handed over ahead was dropped unstarted (stopped or taken since):
        it is not ours any more, so nothing is recorded for it."""
        run = self.runs.get(id(child))
        if run is not None and run.task.id == task_id:
            del self.runs[run.key]
            self._next_in_child(child)
            return
        queue = self.ahead.get(id(child), deque())
        for task in [t for t in queue if t.id == task_id]:
            queue.remove(task)

    def _on_inprocess_events(self) -> None:
        assert self.inprocess is not None
        for kind, handle, payload in self.inprocess.take_events():
            run = self.runs.get(id(handle))
            if run is None or run.inprocess is not handle:
                continue  # ended already (timeout, stop_task)
            if kind == "need_run_id":
                self._db_quiet(lambda run=run: self._mark_runs([run]))
                self.inprocess.deliver_run_id(handle, run.run_id)
            elif kind == "done":
                payload["output"] = handle.output()
                self._on_done(run, payload)

    def _on_done(self, run: SlotRun, report: dict[str, Any]) -> None:
        if report.get("id", run.task.id) != run.task.id:
            log.error("child reported task %s done while %s ran", report.get("id"), run.task.id)
            self._end_run(run, RunStatus.FAILED)
            return
        del self.runs[run.key]
        started_at = report.get("started_at")
        if isinstance(started_at, float):
            elapsed = max(0.0, time.time() - started_at)
            run.started = self.store.now() - timedelta(seconds=elapsed)
        elapsed = float(report.get("elapsed") or time.monotonic() - run.t0)
        self.avg_duration = elapsed if self.total == 0 else 0.8 * self.avg_duration + 0.2 * elapsed
        self.finish(
            self._outcome(
                run,
                RunStatus(report["status"]),
                result=report.get("result"),
                output=report.get("output") or "",
                traceback=report.get("traceback"),
            )
        )
        if run.child is not None:
            self._next_in_child(run.child)
            if id(run.child) not in self.runs:  # never while it holds tasks sent ahead
                self._recycle_if_due(run.child)

    def _recycle_if_due(self, child: ChildProcess) -> None:
        # between two tasks of this slot: --max-tasks-per-child / --max-memory-per-child
        reason = child.recycle_reason(
            self.options.max_tasks_per_child, self.options.max_memory_per_child
        )
        if reason is not None and not self.stopping:
            log.info("worker %s: replacing task child %s: %s", self.name, child.pid, reason)
            self._replace_child(child)
