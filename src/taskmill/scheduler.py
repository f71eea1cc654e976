"""The Scheduler: web2py's API for queueing, inspecting and controlling tasks.

It is what an application imports and configures once; workers, the CLI and the
dashboard all reach the database through it (and through its store).
"""

from __future__ import annotations

import json
import logging
import uuid as uuidlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import ColumnElement, Connection, Engine, false
from sqlalchemy.exc import IntegrityError

from taskmill.concurrency import Pool
from taskmill.errors import ConfigurationError, InvalidReference
from taskmill.explain import Explanation, explain
from taskmill.groups import parse_groups
from taskmill.records import Queued, QueuedMany, Run, Task, TaskReport, Worker, decode_json_text
from taskmill.schema import Tables, scheduler_task, tables
from taskmill.states import WorkerStatus
from taskmill.store import Store, open_store
from taskmill.supervisor import default_worker_name
from taskmill.validation import MAX_INT, QUEUE_KEYWORDS, TaskValidator, encode_json

if TYPE_CHECKING:
    from sqlalchemy.orm import Session  # the ORM is imported only by callers that use it

log = logging.getLogger(__name__)

TaskRef = int | str | ColumnElement[bool]


class Scheduler:
    """Configuration and API of one application's task scheduler."""

    def __init__(
        self,
        db: str | Engine,
        tasks: Mapping[str, Callable[..., Any]] | None = None,
        group_names: Sequence[str] | Mapping[str, int] | None = None,
        heartbeat: float = 3,
        max_empty_runs: int = 0,
        discard_results: bool = False,
        utc_time: bool = True,
        application_name: str = "taskmill",
        concurrency: int = 1,
        pool: str = "processes",
    ) -> None:
        if tasks is not None and not isinstance(tasks, dict):
            raise ConfigurationError("tasks must be a dict of name -> function")
        for name, function in (tasks or {}).items():
            if not isinstance(name, str) or not callable(function):
                raise ConfigurationError(f"tasks[{name!r}] must map a name to a function")
        try:
            groups, weights = parse_groups(group_names if group_names is not None else ["main"])
        except ConfigurationError as exc:
            raise ConfigurationError(
                "group_names must be a non-empty list of names without '|' (e.g. ['main'],"
                f" or with weights ['high:3', 'low:1'] or {{'high': 3, 'low': 1}}): {exc}"
            ) from None
        if isinstance(heartbeat, bool) or not isinstance(heartbeat, int | float) or heartbeat <= 0:
            raise ConfigurationError("heartbeat must be a positive number of seconds")
        if isinstance(max_empty_runs, bool) or not isinstance(max_empty_runs, int):
            raise ConfigurationError("max_empty_runs must be an integer (0 = never stop)")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError("concurrency must be a positive integer (tasks at once)")
        if pool not in tuple(Pool):
            raise ConfigurationError(f"pool must be one of {[p.value for p in Pool]}, not {pool!r}")
        # the registry is the dict given, not a copy: apps (and Eden's
        # TaskManager) add tasks to it after the Scheduler is built
        registry = tasks if tasks is not None else {}
        self.tasks = cast(dict[str, Callable[..., Any]], registry)
        self.group_names = groups
        #: None: the groups form one earliest-first queue; else see taskmill.groups
        self.group_weights = weights
        self.heartbeat = float(heartbeat)
        self.max_empty_runs = max_empty_runs
        self.discard_results = bool(discard_results)
        self.utc_time = bool(utc_time)
        self.application_name = application_name
        #: what `taskmill worker` uses unless --concurrency / --pool say otherwise
        self.concurrency = concurrency
        self.pool = Pool(pool)
        self.store: Store = open_store(db, local_time=not self.utc_time)
        self.tables: Tables = tables
        self._validator = TaskValidator(
            self.tasks, local_time=not self.utc_time, application_name=application_name
        )

    def __repr__(self) -> str:
        url = self.store.engine.url.render_as_string(hide_password=True)
        return f"<Scheduler {url} groups={self.group_names} tasks={sorted(self.tasks)}>"

    # ---------------------------------------------------------------- set-up
    def create_tables(self) -> None:
        self.store.create_tables()

    @property
    def dead_after(self) -> float:
        """A worker silent this long is dead (web2py: three heartbeats)."""
        return self.heartbeat * 3

    @staticmethod
    def default_worker_name() -> str:
        return default_worker_name()

    # ----------------------------------------------------------------- queue
    def queue_task(
        self,
        function: str | Callable[..., Any],
        pargs: Sequence[Any] = (),
        pvars: dict[str, Any] | None = None,
        *,
        db: Connection | Session | None = None,
        **kwargs: Any,
    ) -> Queued:
        """Queue a run of a registered function; errors come back, nothing raises.

        `db` is an open SQLAlchemy Connection or ORM Session: the task row is
        then written in the caller's transaction, becomes visible to workers
        when it commits and disappears if it rolls back.
        """
        row, errors = self._task_row(function, pargs, pvars, kwargs)
        if errors:
            return Queued(id=None, uuid=None, errors=errors)
        conn = _connection_of(db)
        # a generated uuid4 cannot collide; a given one is checked first so a
        # duplicate does not abort the caller's own transaction
        if "uuid" in kwargs and self.store.uuid_taken(row["uuid"], conn):
            return Queued(id=None, uuid=None, errors={"uuid": "a task with this uuid exists"})
        try:
            task_id = self.store.insert_task(row, conn=conn)
        except IntegrityError:
            return Queued(id=None, uuid=None, errors={"uuid": "a task with this uuid exists"})
        return Queued(id=task_id, uuid=row["uuid"], errors={})

    def queue_tasks(
        self,
        function: str | Callable[..., Any],
        calls: Iterable[tuple[Sequence[Any], Mapping[str, Any] | None]],
        *,
        db: Connection | Session | None = None,
        **kwargs: Any,
    ) -> QueuedMany:
        """Queue many runs of one function at once: each call is a (pargs, pvars)
        pair; the other options (timeout, start_time, group_name, ...) apply to all.

        web2py has no bulk call, and a loop of queue_task pays a transaction per
        task; this validates every call first and writes all rows in one
        transaction (COPY on PostgreSQL), or none of them if any call is invalid.
        """
        for name in ("uuid", "args", "vars"):
            if name in kwargs:
                raise TypeError(f"queue_tasks() takes no {name}=: each call gets its own")
        if isinstance(calls, str | bytes | Mapping):
            raise TypeError("calls must be an iterable of (pargs, pvars) pairs")
        template, errors = self._task_row(function, (), None, kwargs)
        if errors:
            return QueuedMany(count=0, uuids=[], errors=errors)
        rows: list[dict[str, Any]] = []
        given: Iterable[Any] = calls  # checked at run time: callers are not typed
        for index, call in enumerate(given):
            if not isinstance(call, tuple | list) or len(call) != 2:
                errors[f"calls[{index}]"] = (
                    f"each call must be a (pargs, pvars) pair, not {call!r:.60}"
                )
                continue
            pargs, pvars = call
            args, error = _encode_call(pargs, list, "args")
            if error:
                errors[f"calls[{index}].args"] = error
            vars, error = _encode_call({} if pvars is None else pvars, dict, "vars")
            if error:
                errors[f"calls[{index}].vars"] = error
            if not errors:
                rows.append(dict(template, args=args, vars=vars, uuid=str(uuidlib.uuid4())))
        if errors:
            return QueuedMany(count=0, uuids=[], errors=errors)
        self.store.insert_tasks(rows, conn=_connection_of(db))
        return QueuedMany(count=len(rows), uuids=[row["uuid"] for row in rows], errors={})

    def queue_unique_task(
        self,
        function: str | Callable[..., Any],
        pargs: Sequence[Any] = (),
        pvars: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Queued | None:
        """queue_task, unless an active (QUEUED/ASSIGNED/RUNNING) task of the same
        function has the same args and vars: then nothing is queued and None comes
        back. Arguments are compared as JSON values, so key order and spacing do not
        matter; the check and the insert are one atomic step across processes."""
        row, errors = self._task_row(function, pargs, pvars, kwargs)
        if errors:
            return Queued(id=None, uuid=None, errors=errors)
        wanted = (canonical_json(row["args"]), canonical_json(row["vars"]))

        def same_arguments(args: str | None, vars: str | None) -> bool:
            return (canonical_json(args), canonical_json(vars)) == wanted

        try:
            task_id = self.store.insert_unique_task(row, same_arguments)
        except IntegrityError:
            return Queued(id=None, uuid=None, errors={"uuid": "a task with this uuid exists"})
        return None if task_id is None else Queued(id=task_id, uuid=row["uuid"], errors={})

    def _task_row(
        self, function: Any, pargs: Any, pvars: Any, kwargs: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        unknown = set(kwargs) - QUEUE_KEYWORDS
        if unknown:
            raise TypeError(f"queue_task() got unexpected keyword argument(s): {sorted(unknown)}")
        return self._validator.build_row(function, pargs, pvars, kwargs, self.store.now())

    # ---------------------------------------------------------------- status
    def condition(self, ref: TaskRef) -> ColumnElement[bool]:
        """The SQL condition a task reference stands for."""
        if isinstance(ref, bool):
            raise InvalidReference("a task reference must be an id, a uuid or a condition")
        if isinstance(ref, int):
            if not 0 < ref <= MAX_INT:
                # no row has such an id, and PostgreSQL refuses to bind it as INTEGER
                return false()
            return scheduler_task.c.id == ref
        if isinstance(ref, str):
            if not ref:
                raise InvalidReference("an empty string is not a task uuid")
            return scheduler_task.c.uuid == ref
        if isinstance(ref, ColumnElement):
            return ref
        raise InvalidReference(
            f"a task reference must be an int id, a uuid string or a SQLAlchemy condition, "
            f"not {type(ref).__name__}"
        )

    def task_status(self, ref: TaskRef, output: bool = False) -> Task | TaskReport | None:
        task = self.store.find_task(self.condition(ref))
        if task is None or not output:
            return task
        run = self.store.latest_run(task.id)
        return TaskReport(scheduler_task=task, scheduler_run=run, result=_run_result(run))

    def runs(self, ref: TaskRef) -> list[Run]:
        task = self.store.find_task(self.condition(ref))
        return [] if task is None else self.store.runs_of(task.id)

    def explain(self, ref: TaskRef) -> Explanation:
        """Why the task is (not) running, in plain words; see explain.py."""
        return explain(self, ref)

    # --------------------------------------------------------------- control
    def stop_task(self, ref: TaskRef) -> int:
        """QUEUED/ASSIGNED -> STOPPED at once; a RUNNING one is killed by its worker."""
        return self.store.stop_tasks(self.condition(ref))

    def requeue(self, ref: TaskRef) -> int:
        """A FAILED/TIMEOUT/STOPPED/EXPIRED task back to QUEUED, due now."""
        return self.store.requeue_tasks(self.condition(ref))

    def get_workers(self) -> dict[str, Worker]:
        return {w.worker_name: w for w in self.store.list_workers()}

    def _command(
        self,
        status: WorkerStatus,
        group_names: Sequence[str] | str | None,
        worker_name: Sequence[str] | str | None,
    ) -> int:
        groups = [group_names] if isinstance(group_names, str) else group_names
        names = [worker_name] if isinstance(worker_name, str) else worker_name
        if groups is None and names is None:
            groups = self.group_names
        return self.store.set_worker_status(status, group_names=groups, worker_names=names)

    def disable(
        self,
        group_names: Sequence[str] | str | None = None,
        worker_name: Sequence[str] | str | None = None,
    ) -> int:
        """Workers stop taking tasks but keep beating (web2py DISABLED)."""
        return self._command(WorkerStatus.DISABLED, group_names, worker_name)

    def resume(
        self,
        group_names: Sequence[str] | str | None = None,
        worker_name: Sequence[str] | str | None = None,
    ) -> int:
        return self._command(WorkerStatus.ACTIVE, group_names, worker_name)

    def terminate(
        self,
        group_names: Sequence[str] | str | None = None,
        worker_name: Sequence[str] | str | None = None,
    ) -> int:
        """Workers finish their current task, then exit."""
        return self._command(WorkerStatus.TERMINATE, group_names, worker_name)

    def kill(
        self,
        group_names: Sequence[str] | str | None = None,
        worker_name: Sequence[str] | str | None = None,
    ) -> int:
        """Workers kill their current task (it is requeued) and exit at once."""
        return self._command(WorkerStatus.KILL, group_names, worker_name)


def _connection_of(db: Connection | Session | None) -> Connection | None:
    if db is None or isinstance(db, Connection):
        return db
    from sqlalchemy.orm import Session

    if isinstance(db, Session):
        return db.connection()
    raise TypeError(f"db must be a SQLAlchemy Connection or Session, not {type(db).__name__}")


def _encode_call(value: Any, expected: type, what: str) -> tuple[str | None, str | None]:
    # most bulk calls have no vars or no args: skip the encoder for those
    if not value and isinstance(value, expected | tuple):
        return ("[]" if expected is list else "{}"), None
    return encode_json(list(value) if isinstance(value, tuple) else value, expected, what)


def canonical_json(text: str | None) -> str | None:
    """One spelling of a JSON value (sorted keys, no spaces), so equal values compare
    equal as text; None for text that is not JSON. Unlike comparing decoded Python
    values, true and 1 stay different."""
    try:
        value = decode_json_text(text)
    except ValueError:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _run_result(run: Run | None) -> Any:
    if run is None or run.run_result is None:
        return None
    try:
        return decode_json_text(run.run_result)
    except ValueError:
        log.warning("run %s holds a result that is not JSON", run.id)
        return None
