"""The embedded redis-server: starts, persists through restarts, refuses to share a data dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from structlog.testing import capture_logs
from support.commands import process_running

from monitor.app.embedded_redis import INSTALL_HINT, EmbeddedRedis
from monitor.errors import EmbeddedRedisError


def test_data_survives_a_crash_and_restart(tmp_path: Path, redis_binary: str) -> None:
    server = EmbeddedRedis(tmp_path, binary=redis_binary)
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        client.set("alert", "queued")
        client.close()
        server.kill()  # as a crash would: only the append-only file keeps the data
        assert not server.running
        assert server.restart_if_dead()
        client = redis.Redis.from_url(server.url)
        assert client.get("alert") == b"queued"
        client.close()
    finally:
        server.stop()
    assert (tmp_path / "appendonlydir").is_dir()


def test_restart_if_dead_does_nothing_while_running(tmp_path: Path, redis_binary: str) -> None:
    server = EmbeddedRedis(tmp_path, binary=redis_binary)
    server.start()
    try:
        assert server.restart_if_dead() is False
    finally:
        server.stop()


def test_missing_binary_explains_how_to_install_or_use_a_url(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, binary="redis-server-that-does-not-exist")
    with pytest.raises(EmbeddedRedisError) as caught:
        server.start()
    message = str(caught.value)
    assert "was not found on PATH" in message
    assert INSTALL_HINT in message
    assert "\n" not in message


def test_two_daemons_cannot_share_one_data_dir(tmp_path: Path, redis_binary: str) -> None:
    first = EmbeddedRedis(tmp_path, binary=redis_binary)
    first.start()
    try:
        with pytest.raises(EmbeddedRedisError, match="already using the Redis data directory"):
            EmbeddedRedis(tmp_path, binary=redis_binary).start()
    finally:
        first.stop()


KILLED_MONITOR = """
import sys, time
from pathlib import Path
import redis
from monitor.app.embedded_redis import EmbeddedRedis

server = EmbeddedRedis(Path(sys.argv[1]), binary=sys.argv[2])
server.start()
client = redis.Redis.from_url(server.url)
client.set("alert", "queued")
client.close()
print(server._process.pid, flush=True)
time.sleep(600)
"""


def test_a_server_left_by_a_killed_monitor_is_stopped_before_another_starts(
    tmp_path: Path, redis_binary: str
) -> None:
    """A monitor killed by SIGKILL (the out-of-memory killer, say) leaves its redis-server
    running, in a session of its own, and frees its lock.  The next monitor must not start a
    second server on the same append-only file: it stops the orphan (which writes its data
    out), then starts its own, with nothing lost."""
    data = tmp_path / "redis"
    monitor = subprocess.Popen(
        [sys.executable, "-c", KILLED_MONITOR, str(data), redis_binary],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert monitor.stdout is not None
    orphan = int(monitor.stdout.readline())
    monitor.stdout.close()
    try:
        monitor.kill()
        monitor.wait(10)
        assert process_running(orphan), "the orphan outlives the monitor that started it"
        server = EmbeddedRedis(data, binary=redis_binary)
        with capture_logs() as logs:
            server.start()
        try:
            assert not process_running(orphan)
            told = [entry for entry in logs if entry["log_level"] == "warning"]
            assert [entry["event"] for entry in told] == [
                "stopping the redis-server a killed monitor left running"
            ]
            client = redis.Redis.from_url(server.url)
            assert client.get("alert") == b"queued"
            client.close()
        finally:
            server.stop()
    finally:
        if process_running(orphan):
            os.kill(orphan, signal.SIGKILL)
