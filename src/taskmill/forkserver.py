"""Task children forked from a warm template instead of started from scratch.

A task child spends ~0.3 s of CPU importing Python, SQLAlchemy, the database
driver and taskmill before it imports the application; a `--concurrency 8` pool
of two workers pays that sixteen times at start-up, and every timeout or
stop_task (which kill the child) pays it again before the next task. So a worker
starts one fork server: a process that imports those libraries once, and forks a
task child on request. The fork imports only the application itself, as a fresh
process does, so nothing of the application (no database connection, no thread)
is ever inherited across a fork: the fork server never imports the application
nor opens a connection.

`taskmill worker` forks its fork server from itself before it imports the
application (`prefork`): the libraries are imported once for both, and the fork
server costs a fork instead of an interpreter's start (~0.3 s of CPU before the
first task). Elsewhere (a Worker made in a program of its own, or threads
running already) the fork server is a new interpreter (`python -m
taskmill.forkserver`).

The fork server is the children's parent: it reaps them and tells the worker
how each one exited ("exited" notices on the control socket). A worker whose fork
server cannot start or has died starts its children the plain way
(executor.ChildProcess). `TASKMILL_FORK_SERVER=0` turns it off.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from taskmill.errors import ProtocolError
from taskmill.protocol import recv_message, send_message

log = logging.getLogger(__name__)

#: what the fork server imports before it forks: everything a task child imports
#: before the application (taskmill.child imports the Scheduler, SQLAlchemy Core)
PRELOAD = ("taskmill.child", "taskmill.scheduler")
#: the byte that carries a fork request's descriptor
_FD_MARK = b"F"


def enabled() -> bool:
    return hasattr(os, "fork") and os.environ.get("TASKMILL_FORK_SERVER", "1") != "0"


class ForkedChild:
    """A task child forked by the fork server: what ChildProcess needs of a
    subprocess.Popen (pid, poll, wait, kill, returncode), its exit status coming
    from the fork server, its parent."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server = server
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.exit_code(self.pid, timeout=0.0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self.server.exit_code(self.pid, timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(f"task child {self.pid}", timeout or 0.0)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


class ForkServer:
    """The worker's side: start the fork server, ask it for children."""

    def __init__(self, dialect: str | None = None, start_timeout: float = 60.0) -> None:
        self.dialect = dialect
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | _OwnChild | None = None
        self.sock: socket.socket | None = None
        #: exit codes the fork server reported, by pid, not asked for yet
        self.exited: dict[int, int] = {}

    @property
    def alive(self) -> bool:
        return self.sock is not None and self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start it without waiting: it imports while the worker does the same;
        or take over the one `prefork` made, and have it import the driver."""
        preforked = _take_preforked()
        if preforked is not None:
            self.sock, pid = preforked
            self.process = _OwnChild(pid)
            if self.dialect:
                try:
                    # the descriptor's carrier byte, carrying none, then the request
                    self.sock.sendall(_FD_MARK)
                    send_message(self.sock, {"type": "preload", "dialect": self.dialect})
                except OSError:
                    self.close()
                    raise
            return
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        command = [sys.executable, "-m", "taskmill.forkserver", "--fd", str(child.fileno())]
        if self.dialect:
            command += ["--dialect", self.dialect]
        self.process = subprocess.Popen(
            command, pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, start_new_session=True
        )
        child.close()
        self.sock = parent

    def fork(self, fd: int, argv: list[str]) -> ForkedChild:
        """A new task child running `python -m taskmill.child ARGV --fd <its copy
        of fd>`; OSError if the fork server is gone (start children plainly)."""
        if self.sock is None:
            raise BrokenPipeError("the fork server is not running")
        try:
            # the descriptor rides on one byte of its own, the request follows as
            # any other message (a stream socket keeps the two in order)
            socket.send_fds(self.sock, [_FD_MARK], [fd])
            send_message(self.sock, {"type": "fork", "argv": argv})
            deadline = time.monotonic() + self.start_timeout
            while True:
                message = self._pump(max(0.0, deadline - time.monotonic()))
                if message is None:
                    raise BrokenPipeError("the fork server did not answer")
                if message["type"] == "forked":
                    return ForkedChild(self, int(message["pid"]))
                if message["type"] == "error":
                    raise OSError(f"the fork server cannot fork: {message.get('error')}")
        except (OSError, ProtocolError, ValueError, KeyError, TypeError):
            self.close()
            raise

    def exit_code(self, pid: int, timeout: float | None) -> int | None:
        """How `pid` exited (negative: the signal), once the fork server says so;
        None if it has not exited within `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while pid not in self.exited:
            if self.sock is None:
                return _exit_unknown(pid, deadline)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                message = self._pump(left)
            except (OSError, ProtocolError, ValueError):
                self.close()
                continue
            if message is None and self.sock is not None:
                return None
        return self.exited.pop(pid)

    def _pump(self, timeout: float | None) -> dict[str, Any] | None:
        """One message from the fork server, exit notices kept in `exited` as
        they pass; None if nothing came within `timeout` or it is gone."""
        assert self.sock is not None
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return None
        message = recv_message(self.sock)
        if message is None:
            self.close()
            return None
        if message.get("type") == "exited":
            self.exited[int(message["pid"])] = int(message["code"])
        return message

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.process is not None:
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _exit_unknown(pid: int, deadline: float | None) -> int | None:
    """Without its fork server (it died) a child's exit code is lost: once it
    is gone, it counts as killed; None while it runs on past the deadline."""
    while alive(pid):
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(0.005)
    return -signal.SIGKILL


def alive(pid: int) -> bool:
    """Is `pid` running (a zombie, dead but not reaped by its parent, is not)?"""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class _OwnChild:
    """The fork server `prefork` forked: what ForkServer needs of a Popen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: gone, how is unknown
                self.returncode = -signal.SIGKILL
            else:
                if pid != 0:
                    self.returncode = _exit_code(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"fork server {self.pid}", timeout or 0.0)
            time.sleep(0.005)
        return code

    def kill(self) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


_preforked: tuple[socket.socket, int] | None = None


def prefork() -> None:
    """Fork the fork server from this process now, while it has imported taskmill
    and SQLAlchemy but not the application, and holds no connection and no other
    thread: `taskmill worker` calls this before it loads --app, and the Worker's
    ForkServer.start takes it over. Nothing happens where the fork server is off
    or a thread is running (a fork would copy its locks mid-use)."""
    global _preforked
    if _preforked is not None or not enabled() or threading.active_count() > 1:
        return
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for stream in (sys.stdout, sys.stderr):  # or both processes would write it out
        with contextlib.suppress(Exception):
            stream.flush()
    pid = os.fork()
    if pid == 0:  # the fork server: never returns into the worker's code
        code = 1
        try:
            parent.close()
            os.setsid()  # its own session, as a started one has: no terminal's signals
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)  # as a started one's stdin
            os.close(devnull)
            _become_fork_server()
            serve(child)
            code = 0
        finally:
            os._exit(code)
    child.close()
    _preforked = (parent, pid)


def _take_preforked() -> tuple[socket.socket, int] | None:
    global _preforked
    preforked, _preforked = _preforked, None
    return preforked


def discard_preforked() -> None:
    """A worker that forks no task child (a threads pool runs them in itself and
    starts its one child plainly) lets the preforked fork server go."""
    preforked = _take_preforked()
    if preforked is not None:
        sock, pid = preforked
        sock.close()  # its end of file: it exits
        with contextlib.suppress(subprocess.TimeoutExpired):
            _OwnChild(pid).wait(5)


def _become_fork_server() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    name_process("taskmill-fork")


def _import_driver(dialect: str) -> None:
    """The dialect and its driver (psycopg, PyMySQL): imported, never connected."""
    with contextlib.suppress(Exception):
        from sqlalchemy.engine import make_url

        make_url(f"{dialect}://").get_dialect().import_dbapi()


def name_process(name: str) -> None:
    """What `ps -o comm` and `top` show: a forked task child keeps the fork
    server's command line, so its name tells them apart (Linux; 15 bytes)."""
    with contextlib.suppress(OSError):
        with open("/proc/self/comm", "w") as comm:
            comm.write(name[:15])


# --------------------------------------------------------------- fork server
def serve(control: socket.socket) -> None:
    """Fork a task child for each request; report each child's exit. Ends when
    the worker is gone (end of file, or a broken connection) or sent what is not
    a fork request (the worker then starts its children plainly)."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError, ProtocolError, ValueError):
        _serve(control)


def _serve(control: socket.socket) -> None:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: set[int] = set()
    while True:
        ready, _, _ = select.select([control.fileno(), wake_r], [], [])
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
            _report_exits(control, children)
        if control.fileno() not in ready:
            continue
        request, fds = _receive_request(control)
        if request is None:
            return  # the worker is gone; our children follow it (child.die_with_worker)
        if request.get("type") == "preload" and not fds:
            _import_driver(str(request.get("dialect")))
            continue
        if request.get("type") != "fork" or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            send_message(control, {"type": "error", "error": "expected a fork request"})
            continue
        try:
            pid = _fork_child(control, wake_r, wake_w, fds[0], [str(a) for a in request["argv"]])
        except OSError as exc:
            send_message(control, {"type": "error", "error": str(exc)})
        else:
            children.add(pid)
            send_message(control, {"type": "forked", "pid": pid})
        finally:
            os.close(fds[0])


def _receive_request(control: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    data, fds, _, _ = socket.recv_fds(control, len(_FD_MARK), 1)
    if not data:
        return None, list(fds)
    return recv_message(control), list(fds)


def _fork_child(control: socket.socket, wake_r: int, wake_w: int, fd: int, argv: list[str]) -> int:
    pid = os.fork()
    if pid != 0:
        return pid
    # the task child: drop everything of the fork server, then be a fresh child
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control.close()
        os.close(wake_r)
        os.close(wake_w)
        os.setsid()  # its own session and process group, as executor.spawn gives
        import taskmill.child

        args = [*argv, "--fd", str(fd)]
        # what a child started plainly (`python -m taskmill.child ...`) sees, not the
        # command line of the process it was forked from, for apps that look
        sys.argv = [str(taskmill.child.__file__), *args]
        code = taskmill.child.main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        log.exception("task child %s failed", os.getpid())
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _report_exits(control: socket.socket, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        send_message(control, {"type": "exited", "pid": pid, "code": _exit_code(status)})


def _exit_code(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taskmill.forkserver")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--dialect", default=None)
    options = parser.parse_args(argv)
    _become_fork_server()
    control = socket.socket(fileno=options.fd)
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    if options.dialect:
        _import_driver(options.dialect)
    serve(control)
    return 0


if __name__ == "__main__":
    sys.exit(main())
