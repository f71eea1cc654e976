"""Which tasks may run in a worker's threads (@thread_safe), and the pool options."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from click.testing import CliRunner

from taskmill import Scheduler, thread_safe
from taskmill.cli import main
from taskmill.concurrency import Pool, is_async, is_thread_safe
from taskmill.errors import ConfigurationError


def plain() -> int:
    return 1


def test_a_function_is_process_only_unless_marked() -> None:
    def unmarked() -> None: ...

    assert not is_thread_safe(unmarked)
    assert not is_thread_safe(None)


def test_thread_safe_marks_the_function_itself_so_the_registry_stays_a_plain_dict() -> None:
    def send_mail() -> str:
        return "sent"

    assert thread_safe(send_mail) is send_mail
    assert is_thread_safe(send_mail)
    tasks = {"send_mail": send_mail}
    assert type(tasks) is dict


def test_thread_safe_wraps_what_takes_no_attribute_keeping_it_a_coroutine_function() -> None:
    class Mailer:
        def send(self) -> str:
            return "sent"

        async def send_later(self) -> str:
            return "later"

    mailer = Mailer()
    send = thread_safe(mailer.send)
    send_later = thread_safe(mailer.send_later)
    assert is_thread_safe(send) and is_thread_safe(send_later)
    assert send() == "sent"
    assert is_async(send_later) and inspect.iscoroutinefunction(send_later)
    assert asyncio.run(send_later()) == "later"
    assert not is_async(send)


def test_scheduler_keeps_concurrency_and_pool_for_its_workers() -> None:
    sched = Scheduler("sqlite://", tasks={"plain": plain}, concurrency=8, pool="threads")
    assert (sched.concurrency, sched.pool) == (8, Pool.THREADS)
    default = Scheduler("sqlite://")
    assert (default.concurrency, default.pool) == (1, Pool.PROCESSES)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"concurrency": 2.5}, "concurrency"),
        ({"pool": "fibers"}, "pool"),
    ],
)
def test_scheduler_refuses_bad_concurrency_or_pool(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Scheduler("sqlite://", **options)  # type: ignore[arg-type]


def test_worker_help_explains_concurrency_and_the_pools() -> None:
    result = CliRunner().invoke(main, ["worker", "--help"])
    assert result.exit_code == 0
    assert "--concurrency" in result.output
    assert "[processes|threads]" in result.output
    assert "abandoned" in result.output


def test_worker_refuses_an_unknown_pool() -> None:
    result = CliRunner().invoke(main, ["worker", "--app", "x:y", "--pool", "fibers"])
    assert result.exit_code == 2
    assert "fibers" in result.output
