"""Private PostgreSQL and MariaDB servers, started for a test and restarted under load.

The shared servers on 5432/3306 serve every other test (and teammates' runs), so a
restart test never touches them: it initialises its own data directory in /tmp, on a
free port, and stops and starts that server while workers use it. As root the servers
run as their system users (initdb and mariadbd refuse to run as root).

When a server cannot be started the test skips, naming the reason; under CI=true it
fails instead, as the shared-server fixtures do.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import NoReturn

import pytest
from chaos_support import under_ci

START_TIMEOUT = 60.0


def unavailable(what: str, why: str) -> NoReturn:
    if under_ci():
        pytest.fail(f"{what} is required under CI=true: {why}", pytrace=False)
    pytest.skip(f"{what} cannot be started here ({why}); under CI=true this is a failure")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_user(user: str) -> list[str]:
    """The prefix that runs a command as the server's user when we are root."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise RuntimeError(f"running as root and there is no {user!r} user") from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise RuntimeError("running as root and runuser is missing")
    return [runuser, "-u", user, "--"]


def _data_dir(user: str, prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _wait_connectable(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


@dataclass
class PrivatePostgres:
    """`initdb` + `pg_ctl`: a throw-away cluster with trust authentication."""

    bin_dir: Path
    data: Path
    port: int
    prefix: list[str]
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.data / "server.log"

    @classmethod
    def create(cls) -> PrivatePostgres:
        found = sorted(glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise RuntimeError("no /usr/lib/postgresql/*/bin/initdb")
        bin_dir = Path(found[-1]).parent
        prefix = _as_user("postgres")
        data = _data_dir("postgres", "tm-pg-")
        subprocess.run(
            [
                *prefix,
                str(bin_dir / "initdb"),
                "-D",
                str(data / "db"),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        return cls(bin_dir, data, free_port(), prefix)

    def pg_ctl(self) -> list[str]:
        return [*self.prefix, str(self.bin_dir / "pg_ctl"), "-D", str(self.data / "db")]

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [*self.pg_ctl(), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start"],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT + 10,
        )

    def stop(self, mode: str = "fast") -> None:
        """`fast` ends every session and shuts down cleanly; `immediate` is a crash."""
        subprocess.run(
            [*self.pg_ctl(), "-m", mode, "-w", "stop"],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.data, ignore_errors=True)


@dataclass
class PrivateMariadb:
    """`mariadb-install-db` + `mariadbd` on its own datadir, socket and port."""

    data: Path
    port: int
    user_args: list[str]
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls) -> PrivateMariadb:
        install = shutil.which("mariadb-install-db")
        if install is None or not Path("/usr/sbin/mariadbd").exists():
            raise RuntimeError("mariadb-install-db or /usr/sbin/mariadbd is missing")
        user_args = ["--user=mysql"] if os.geteuid() == 0 else []
        data = _data_dir("mysql", "tm-mariadb-")
        subprocess.run(
            [
                install,
                "--no-defaults",
                f"--datadir={data / 'db'}",
                *user_args,
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )
        return cls(data, free_port(), user_args)

    def url(self, database: str) -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}?charset=utf8mb4"

    def start(self) -> None:
        log = (self.data / "server.log").open("ab")
        self.process = subprocess.Popen(
            [
                "/usr/sbin/mariadbd",
                "--no-defaults",
                f"--datadir={self.data / 'db'}",
                f"--socket={self.data / 'mariadb.sock'}",
                f"--pid-file={self.data / 'mariadb.pid'}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
                "--innodb-flush-log-at-trx-commit=2",
                *self.user_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        _wait_connectable(self.port, START_TIMEOUT)

    def stop(self, mode: str = "fast") -> None:
        """`fast`: SIGTERM, a clean shutdown; `immediate`: SIGKILL, a crash."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGKILL if mode == "immediate" else signal.SIGTERM)
        self.process.wait(60)
        self.process = None

    def create_database(self, name: str) -> None:
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", password="")
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        finally:
            conn.close()

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.data, ignore_errors=True)


PrivateServer = PrivatePostgres | PrivateMariadb


@contextlib.contextmanager
def private_server(backend: str) -> Iterator[PrivateServer]:
    what = f"a private {backend} server"
    server: PrivateServer
    try:
        server = PrivatePostgres.create() if backend == "postgres" else PrivateMariadb.create()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        unavailable(what, f"{exc} {detail.decode(errors='replace')[-500:]}")
    try:
        try:
            server.start()
        except (OSError, subprocess.SubprocessError, TimeoutError) as exc:
            unavailable(what, str(exc))
        yield server
    finally:
        server.destroy()
