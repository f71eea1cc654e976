"""Wake-ups between processes of one machine, for the SQLite store.

SQLite has no LISTEN/NOTIFY and polling the file every few milliseconds from
every worker wastes CPU and I/O. Instead each idle worker binds a Unix datagram
socket in a directory derived from the database file; whoever commits a change
a worker should react to (a queued task, a stop request) sends one byte to each
socket there. Sends never block: a full receive buffer already means a wake-up
is pending. Sockets of processes that died are removed by the next sender.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import logging
import os
import re
import socket
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

_DEAD_PEER = (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK)


def doorbell_directory(key: str) -> Path:
    """One directory per database file, short enough for AF_UNIX path limits."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"taskmill-{os.getuid()}" / digest


class Doorbell:
    """Rings every listener of one database; cheap enough to call per commit."""

    def __init__(self, key: str) -> None:
        self.directory = doorbell_directory(key)
        self._sender: socket.socket | None = None
        self._sender_pid = 0

    def _socket(self) -> socket.socket:
        if self._sender is None or self._sender_pid != os.getpid():
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
            self._sender_pid = os.getpid()
        return self._sender

    def ring(self, control: bool = False) -> None:
        message = CONTROL if control else WORK
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        sender = self._socket()
        for name in names:
            if not name.endswith(".sock"):
                continue
            path = os.path.join(self.directory, name)
            try:
                sender.sendto(message, path)
            except BlockingIOError:
                continue  # the listener has unread wake-ups already
            except OSError as exc:
                if exc.errno in _DEAD_PEER:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                else:
                    log.debug("doorbell %s: %s", path, exc)

    def close(self) -> None:
        """Close the sending socket; a later ring() opens a new one."""
        if self._sender is not None:
            self._sender.close()
            self._sender = None

    def listen(self, name: str) -> DoorbellListener:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40]
        path = self.directory / f"{safe}-{os.getpid()}.sock"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.setblocking(False)
        return DoorbellListener(sock, path)


#: what a ring sends: work may be due, or a task a worker holds was stopped or taken
WORK = b"!"
CONTROL = b"C"


@functools.cache
def _queue_length() -> int:
    """Datagrams a Unix socket queues before senders get EAGAIN (Linux: 10)."""
    try:
        return max(1, int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text()))
    except (OSError, ValueError):
        return 10


class DoorbellListener:
    """The receiving end a worker waits on with select()."""

    def __init__(self, sock: socket.socket, path: Path) -> None:
        self._sock = sock
        self.path = path
        self._control = False

    def take_control(self) -> bool:
        """Whether a control ring (a task stopped or taken away) came since the last
        call: only then must a worker re-read the tasks it holds."""
        control, self._control = self._control, False
        return control

    def fileno(self) -> int:
        return self._sock.fileno()

    def drain(self) -> int:
        """Consume pending wake-ups so the next select() sleeps; returns how many."""
        count = 0
        while True:
            try:
                message = self._sock.recv(64)
            except (BlockingIOError, InterruptedError):
                break
            count += 1
            if message != WORK:
                self._control = True
        if count >= _queue_length():
            # the queue was full, so a sender may have dropped a control ring
            # (BlockingIOError in ring()): assume one came
            self._control = True
        return count

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()
        self._sock.close()
