"""SIGTERM ends ``monitor run`` within ``shutdown.grace`` whatever is hung, and loses nothing.

The real daemon runs as a subprocess with, all at once: a ``file:`` feed on a FIFO whose
read never returns (a writer holds it open and never writes), a parser process busy with a
32 MB feed for half a minute, and an email send stuck on an SMTP server that accepts the
connection and never answers.  The bound is measured from the signal with ``time.monotonic``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from support.commands import kill_daemon
from support.feed_server import FeedServer, rss
from support.samples import KZ_TUNGSTEN_RULES
from support.servers import bound_socket
from support.waiting import wait_until

from monitor.app.daemon import CLOSE_RESERVE, stop_budget
from monitor.app.embedded_redis import EmbeddedRedis
from monitor.settings import Settings

REPO = Path(__file__).resolve().parents[2]
GRACE = 3.0
MARGIN = 10.0
"""Generous for a loaded 2-core machine: the bound under test is GRACE; the margin only
covers the kernel reaping the process and the test noticing."""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class SmtpTarpit:
    """A TCP server that accepts connections and never says a word: an SMTP client waits
    for the greeting until its own timeout (a minute here)."""

    def __init__(self) -> None:
        self._sock = bound_socket()
        self._sock.listen(8)
        self.port: int = self._sock.getsockname()[1]
        self.connected = threading.Event()
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self._sock.accept()
                self._held.append(conn)
                self.connected.set()

    def close(self) -> None:
        for conn in [*self._held, self._sock]:
            conn.close()


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, session, ..."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def session_processes(session: int) -> dict[int, float]:
    """Live processes of a session (the daemon, its fork server and parsers), with the CPU
    seconds each has used."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is None or fields[0] == "Z" or int(fields[3]) != session:
            continue
        found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return found


def big_feed(items: int = 60_000) -> bytes:
    """~32 MB of RSS that takes a parser process about half a minute of CPU."""
    description = "<![CDATA[<p>" + "<b>x</b> " * 50 + "</p>]]>"
    body = "".join(
        f"<item><title>bulk {n}</title><guid>b{n}</guid>"
        f"<description>{description}</description></item>"
        for n in range(items)
    )
    head = "<?xml version='1.0'?><rss version='2.0'><channel><title>big</title>"
    return f"{head}{body}</channel></rss>".encode()


@pytest.fixture
def tarpit() -> Iterator[SmtpTarpit]:
    server = SmtpTarpit()
    yield server
    server.close()


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "hung.xml"
    os.mkfifo(path)
    return path


def test_stop_budget_table() -> None:
    """Closing gets a third of the grace period, at most CLOSE_RESERVE; draining the rest."""
    for grace, drain, close in [(3.0, 2.0, 1.0), (15.0, 10.0, 5.0), (20.0, 15.0, 5.0)]:
        assert stop_budget(grace) == pytest.approx((drain, close))


@settings(deadline=None)
@given(st.floats(min_value=1.0, max_value=3600.0))
def test_stop_budget_never_exceeds_the_grace_period(grace: float) -> None:
    drain, close = stop_budget(grace)
    assert drain + close == pytest.approx(grace)
    assert 0 < close <= CLOSE_RESERVE
    assert drain >= close / 2


def test_shutdown_grace_defaults_below_kubernetes_kill_timeout() -> None:
    """The default leaves room within Kubernetes' default 30 s terminationGracePeriodSeconds."""
    assert Settings().shutdown.grace.total_seconds() == 20
    with pytest.raises(ValueError, match="at least 1s"):
        Settings.model_validate({"shutdown": {"grace": "0.5s"}})


@pytest.mark.slow
def test_sigterm_ends_the_daemon_within_grace_whatever_is_hung_and_keeps_unsent_alerts(
    tmp_path: Path,
    feed_server: FeedServer,
    own_redis: EmbeddedRedis,
    tarpit: SmtpTarpit,
    fifo: Path,
) -> None:
    """A hung file read, a busy parser and a stuck SMTP send at once: SIGTERM ends the
    process within shutdown.grace (plus a margin for a busy machine), the parser processes
    end with it, and the alert the stuck send held is still in the stream, unacknowledged."""
    now = format_datetime(datetime.now(UTC), usegmt=True)
    feed_server.put(
        "/wire.xml",
        rss([{"title": "Kazakhstan tungsten licence", "guid": "kz-1", "date": now}]),
    )
    feed_server.put("/big.xml", big_feed())
    rules = tmp_path / "rules.yaml"
    rules.write_text(KZ_TUNGSTEN_RULES, encoding="utf-8")
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f"""\
redis: {{url: "{own_redis.url}"}}
feeds:
  - {{name: wire, url: "{feed_server.url("/wire.xml")}", interval: 10m}}
  - {{name: big, url: "{feed_server.url("/big.xml")}", interval: 10m,
      max_bytes: 67108864, max_items: 1000000}}
  - {{name: hung, url: "file:{fifo}", interval: 10m}}
rules: {{paths: ["{rules}"]}}
channels:
  email: {{host: 127.0.0.1, port: {tarpit.port}, starttls: false, timeout: 60s,
          from: m@example.org, to: [desk@example.org]}}
ingest: {{workers: 2, backfill: "off"}}
shutdown: {{grace: {GRACE}s}}
log: {{format: json, level: info}}
health: {{port: 0}}
""",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"}
    log_path = tmp_path / "daemon.log"
    writer: int | None = None
    with log_path.open("w") as sink:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "-c", str(config)],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            start_new_session=True,
        )
    try:

        def reader_waiting() -> bool:
            """The daemon opened the FIFO: hold its write end (never writing) so the read
            blocks for good."""
            nonlocal writer
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: nobody reads yet
                return False
            return True

        def parser_busy() -> bool:
            cpu = session_processes(daemon.pid)
            return any(used >= 3.0 for pid, used in cpu.items() if pid != daemon.pid)

        def log() -> str:
            return log_path.read_text(errors="replace")

        wait_until(reader_waiting, 60, f"the daemon reading the FIFO\n{log()}")
        wait_until(tarpit.connected.is_set, 60, f"the email send to the tarpit\n{log()}")
        wait_until(parser_busy, 90, f"a parser process busy with the big feed\n{log()}")

        daemon.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        try:
            code = daemon.wait(GRACE + MARGIN)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {GRACE + MARGIN:g} s after SIGTERM\n{log()}")
        took = time.monotonic() - signalled
        assert took <= GRACE + MARGIN
        assert code == 0, log()
        assert '"monitor stopped"' in log()
        # The parser processes (and the fork server) end with the daemon, not minutes later.
        wait_until(lambda: not session_processes(daemon.pid), 5, "the parser processes to end")
    finally:
        kill_daemon(daemon)
        if writer is not None:
            os.close(writer)

    client = redis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        entries: list[object] = list(client.xrange("monitor:matches") or [])
        pending = client.xpending("monitor:matches", "deliver")
    finally:
        client.close()
    assert len(entries) == 1, entries  # the Kazakhstan match, unsent, waits for the next start
    assert int(pending["pending"]) == 1  # read but never acknowledged
    print(f"exited {took:.2f} s after SIGTERM (grace {GRACE:g} s)")
