"""The SQLite doorbell: Unix datagram wake-ups between processes of one machine."""

from __future__ import annotations

import gc
import os
import select
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskmill.store import SQLiteStore, open_store
from taskmill.store.doorbell import Doorbell, DoorbellListener, doorbell_directory


@pytest.fixture
def doorbell(tmp_path: Path) -> Iterator[Doorbell]:
    """A doorbell of its own (keyed by this test's directory), removed afterwards."""
    bell = Doorbell(str(tmp_path / "tasks.db"))
    yield bell
    bell.close()
    shutil.rmtree(bell.directory, ignore_errors=True)


@pytest.fixture
def listener(doorbell: Doorbell) -> Iterator[DoorbellListener]:
    opened = doorbell.listen("worker#1")
    yield opened
    opened.close()


def readable(listener: DoorbellListener, timeout: float = 2.0) -> bool:
    ready, _, _ = select.select([listener], [], [], timeout)
    return bool(ready)


def test_listener_receives_a_ring(doorbell: Doorbell, listener: DoorbellListener) -> None:
    assert not readable(listener, timeout=0)
    doorbell.ring()
    assert readable(listener)
    assert listener.drain() == 1


def test_every_listener_of_a_database_is_rung(doorbell: Doorbell) -> None:
    first = doorbell.listen("w1")
    second = doorbell.listen("w2")
    try:
        doorbell.ring()
        assert readable(first) and readable(second)
    finally:
        first.close()
        second.close()


def test_ring_from_another_doorbell_of_the_same_database(
    tmp_path: Path, doorbell: Doorbell, listener: DoorbellListener
) -> None:
    other = Doorbell(str(tmp_path / "tasks.db"))
    other.ring()
    other.close()
    assert readable(listener)


def test_listener_of_another_database_is_not_rung(
    tmp_path: Path, listener: DoorbellListener
) -> None:
    other = Doorbell(str(tmp_path / "other.db"))
    try:
        other.ring()
        assert not readable(listener, timeout=0.05)
    finally:
        other.close()
        shutil.rmtree(other.directory, ignore_errors=True)


def test_directories_differ_per_database_and_stay_short() -> None:
    first = doorbell_directory("/srv/app/tasks.db")
    assert first == doorbell_directory("/srv/app/tasks.db")
    assert first != doorbell_directory("/srv/app/other.db")
    # a 16-character digest, not the database path, keeps socket paths under AF_UNIX's limit
    assert first.parent.name == f"taskmill-{os.getuid()}"
    assert len(first.name) == 16


def test_ring_without_a_directory_is_a_no_op(doorbell: Doorbell) -> None:
    assert not doorbell.directory.exists()
    doorbell.ring()
    assert not doorbell.directory.exists()


def test_ring_removes_the_socket_of_a_dead_listener(doorbell: Doorbell) -> None:
    doorbell.directory.mkdir(parents=True, mode=0o700)
    stale = doorbell.directory / "crashed-99999.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(stale))
    dead.close()  # the process died without unlinking its socket file
    assert stale.exists()
    doorbell.ring()
    assert not stale.exists()


def test_ring_keeps_live_listeners_and_other_files(
    doorbell: Doorbell, listener: DoorbellListener
) -> None:
    note = doorbell.directory / "README"
    note.write_text("not a socket")
    doorbell.ring()
    assert listener.path.exists()
    assert note.exists()


def test_drain_empties_pending_rings(doorbell: Doorbell, listener: DoorbellListener) -> None:
    for _ in range(3):
        doorbell.ring()
    assert readable(listener)
    assert listener.drain() == 3
    assert not readable(listener, timeout=0)
    assert listener.drain() == 0


def test_ring_never_blocks_on_a_full_listener(
    doorbell: Doorbell, listener: DoorbellListener
) -> None:
    for _ in range(5000):  # far more than a datagram receive buffer holds
        doorbell.ring()
    pending = listener.drain()
    assert 0 < pending < 5000


def test_close_removes_the_socket_file(doorbell: Doorbell) -> None:
    opened = doorbell.listen("w1")
    path = opened.path
    assert path.exists()
    opened.close()
    assert not path.exists()


def test_listen_replaces_a_leftover_socket_of_the_same_name(doorbell: Doorbell) -> None:
    first = doorbell.listen("w1")
    first._sock.close()  # leaves the file behind, as a killed process would
    second = doorbell.listen("w1")
    try:
        assert second.path == first.path
        doorbell.ring()
        assert readable(second)
    finally:
        second.close()


def test_listener_name_is_made_safe_for_a_file_name(doorbell: Doorbell) -> None:
    opened = doorbell.listen("host/../name#1 with spaces")
    try:
        assert opened.path.parent == doorbell.directory
        assert "/" not in opened.path.name
        assert " " not in opened.path.name
    finally:
        opened.close()


def test_closed_doorbell_rings_again_with_a_new_socket(
    doorbell: Doorbell, listener: DoorbellListener
) -> None:
    doorbell.ring()
    doorbell.close()
    listener.drain()
    doorbell.ring()
    assert readable(listener)


def test_disposed_sqlite_store_leaves_no_socket_open(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    leaks: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", leaks.append)
    store = open_store(sqlite_url)
    assert isinstance(store, SQLiteStore)
    directory = store.doorbell.directory
    try:
        listener = store.listen("w1")
        store.ring()
        listener.close()
        store.dispose()
        del store, listener
        gc.collect()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    assert [leak for leak in leaks if "socket" in repr(leak.object)] == []


def test_mariadb_poll_interval_grows_with_idle_time_up_to_its_cap() -> None:
    from sqlalchemy import create_engine

    from taskmill.store.mysql import MySQLStore

    store = MySQLStore(create_engine("mysql+pymysql://root@127.0.0.1:3306/nothing"))
    try:
        assert [store.poll_after(t) for t in (0.0, 0.04, 0.2, 1.0, 60.0)] == [
            0.01,
            0.01,
            0.05,
            0.25,
            0.25,
        ]
        assert store.wakeups_complete is False
    finally:
        store.dispose()


def test_only_a_control_ring_asks_busy_workers_to_re_read(
    doorbell: Doorbell, listener: DoorbellListener
) -> None:
    doorbell.ring()
    doorbell.ring()
    assert listener.drain() == 2
    assert listener.take_control() is False
    doorbell.ring(control=True)
    doorbell.ring()
    assert listener.drain() == 2
    assert listener.take_control() is True
    assert listener.take_control() is False  # taken once


def test_a_full_queue_counts_as_a_control_ring(
    doorbell: Doorbell, listener: DoorbellListener
) -> None:
    """A control ring sent while the queue is full is dropped by the kernel (the
    sender must not block); the listener then cannot tell, so it assumes one came."""
    for _ in range(200):
        doorbell.ring()
    doorbell.ring(control=True)  # most likely dropped
    assert listener.drain() > 0
    assert listener.take_control() is True
