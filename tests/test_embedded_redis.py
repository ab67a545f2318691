"""The embedded redis-server: starts, persists through restarts, refuses to share a data dir."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from monitor.embedded_redis import INSTALL_HINT, EmbeddedRedis
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
