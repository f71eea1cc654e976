"""The task child's side of the protocol: tasks handed over ahead, hold, ask, release.

The child runs in a thread of this process (serve() over a socketpair), so each step
of the exchange is observed exactly, as the worker would see it.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from taskmill.child import Channel, serve
from taskmill.errors import ProtocolError
from taskmill.protocol import (
    encode_message,
    recv_available,
    recv_message,
    send_message,
    send_messages,
)


class ChildThread:
    def __init__(self) -> None:
        self.ran: list[int] = []
        self.worker, self.child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.worker.settimeout(5)
        registry = {"note": self.note}
        channel = Channel(self.child)
        self.thread = threading.Thread(target=serve, args=(channel, registry), daemon=True)
        self.thread.start()

    def note(self, number: int) -> None:
        self.ran.append(number)

    def send(self, message: dict[str, Any]) -> None:
        send_message(self.worker, message)

    def run(self, task_id: int, start_by: float | None) -> None:
        self.send(
            {
                "type": "run",
                "id": task_id,
                "function": "note",
                "args": f"[{task_id}]",
                "vars": "{}",
                "start_by": start_by,
            }
        )

    def receive(self) -> dict[str, Any]:
        message = recv_message(self.worker)
        assert message is not None
        return message

    def nothing_arrives(self, within: float = 0.2) -> bool:
        self.worker.settimeout(within)
        try:
            return recv_message(self.worker) is None
        except TimeoutError:
            return True
        finally:
            self.worker.settimeout(5)


@pytest.fixture
def child() -> Iterator[ChildThread]:
    running = ChildThread()
    yield running
    running.send({"type": "exit"})
    running.thread.join(5)
    running.worker.close()
    running.child.close()


def test_tasks_handed_over_ahead_in_time_run_in_order_without_asking(child: ChildThread) -> None:
    soon = time.monotonic() + 60
    for task_id in (1, 2, 3):
        child.run(task_id, start_by=soon)
    reports = [child.receive() for _ in range(3)]
    assert [(r["type"], r["id"], r["status"]) for r in reports] == [
        ("done", 1, "COMPLETED"),
        ("done", 2, "COMPLETED"),
        ("done", 3, "COMPLETED"),
    ]
    assert child.ran == [1, 2, 3]


def test_a_task_reached_after_its_start_by_is_asked_about_before_it_starts(
    child: ChildThread,
) -> None:
    past = time.monotonic() - 1
    child.run(7, start_by=past)
    child.run(8, start_by=past)
    assert child.receive() == {"type": "ask", "id": 7}
    assert child.nothing_arrives()  # held: nothing runs until the worker answers
    assert child.ran == []
    # task 7 was stopped meanwhile; task 8 gets a new deadline with the release
    child.send({"type": "release", "skip": [7], "start_by": time.monotonic() + 60})
    assert child.receive() == {"type": "skipped", "id": 7}
    done = child.receive()
    assert (done["type"], done["id"]) == ("done", 8)
    assert child.ran == [8]


def test_a_task_without_start_by_never_asks(child: ChildThread) -> None:
    child.run(3, start_by=None)
    done = child.receive()
    assert (done["type"], done["id"], done["status"]) == ("done", 3, "COMPLETED")


def test_hold_stops_the_child_before_its_next_task_until_release(child: ChildThread) -> None:
    child.send({"type": "hold"})
    child.run(5, start_by=time.monotonic() + 60)
    assert child.nothing_arrives()
    assert child.ran == []
    child.send({"type": "release", "skip": [], "start_by": time.monotonic() + 60})
    done = child.receive()
    assert (done["type"], done["id"]) == ("done", 5)


def test_tasks_handed_over_in_one_write_all_run_in_order(child: ChildThread) -> None:
    """The worker tops a child up with several tasks in one write (send_messages):
    the child reads them all and runs each, in order."""
    soon = time.monotonic() + 60
    messages = [
        {
            "type": "run",
            "id": i,
            "function": "note",
            "args": f"[{i}]",
            "vars": "{}",
            "start_by": soon,
        }
        for i in (4, 5, 6, 7)
    ]
    send_messages(child.worker, messages)
    reports = [child.receive() for _ in messages]
    assert [(r["type"], r["id"], r["status"]) for r in reports] == [
        ("done", i, "COMPLETED") for i in (4, 5, 6, 7)
    ]
    assert child.ran == [4, 5, 6, 7]


# ------------------------------------------------------------ recv_available
@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.settimeout(5)
    b.settimeout(5)
    yield a, b
    a.close()
    b.close()


def test_recv_available_returns_every_message_that_arrived_in_one_read(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    reader, writer = pair
    send_messages(writer, [{"type": "done", "id": n} for n in range(5)])
    assert recv_available(reader) == [{"type": "done", "id": n} for n in range(5)]
    # nothing is left behind unseen: the socket is empty now
    assert select.select([reader], [], [], 0)[0] == []


def test_recv_available_waits_for_the_rest_of_a_message_only_begun(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    reader, writer = pair
    whole = encode_message({"type": "done", "id": 1}) + encode_message({"type": "done", "id": 2})
    writer.sendall(whole[:-7])  # the second message cut short
    threading.Timer(0.05, lambda: writer.sendall(whole[-7:])).start()
    assert recv_available(reader) == [{"type": "done", "id": 1}, {"type": "done", "id": 2}]


def test_recv_available_reads_a_message_larger_than_its_chunk(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    reader, writer = pair
    big = {"type": "done", "output": "x" * 300_000}
    sender = threading.Thread(target=send_messages, args=(writer, [big, {"type": "ask"}]))
    sender.start()
    messages = recv_available(reader, chunk=4096)
    sender.join()
    messages += [] if len(messages) == 2 else recv_available(reader)
    assert messages == [big, {"type": "ask"}]


def test_recv_available_ends_with_none_when_the_other_side_has_gone(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    reader, writer = pair
    send_message(writer, {"type": "done", "id": 7})
    writer.close()
    # the end of file shows on the next read, as a readable socket tells
    assert recv_available(reader) == [{"type": "done", "id": 7}]
    assert select.select([reader], [], [], 0)[0] == [reader]
    assert recv_available(reader) == [None]


def test_recv_available_keeps_the_good_messages_read_before_garbage(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    reader, writer = pair
    good = encode_message({"type": "done", "id": 3})
    garbage = b"not json"
    writer.sendall(good + len(garbage).to_bytes(4, "big") + garbage)
    with pytest.raises(ProtocolError) as caught:
        recv_available(reader)
    assert caught.value.received == [{"type": "done", "id": 3}]
