"""One-off commands reach the same Redis data as the daemon, whether or not it is running."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.app.embedded_redis import EmbeddedRedis, running_url
from monitor.app.wiring import redis_for_command
from monitor.cli.common import load_settings_or_exit
from monitor.settings import Settings


def embedded_settings(tmp_path: Path) -> Settings:
    config = tmp_path / "monitor.yaml"
    config.write_text("redis: {url: embedded, data_dir: redis}\nhealth: {port: 0}\n")
    return load_settings_or_exit(str(config))


async def test_command_uses_the_running_daemons_embedded_redis(
    tmp_path: Path, redis_binary: str
) -> None:
    settings = embedded_settings(tmp_path)
    daemon_side = EmbeddedRedis(tmp_path / "redis", binary=redis_binary)
    daemon_side.start()
    try:
        assert running_url(tmp_path / "redis") == daemon_side.url
        async with redis_for_command(settings) as client:
            await client.set("from-command", "1")
        assert daemon_side.running
    finally:
        daemon_side.stop()
    assert running_url(tmp_path / "redis") is None


async def test_command_starts_the_embedded_redis_when_no_daemon_runs(
    tmp_path: Path, redis_binary: str
) -> None:
    settings = embedded_settings(tmp_path)
    async with redis_for_command(settings) as client:
        await client.set("kept", "yes")
    async with redis_for_command(settings) as client:
        assert await client.get("kept") == "yes"  # the same append-only file, seen again
    assert running_url(tmp_path / "redis") is None


async def test_command_uses_a_configured_url(tmp_path: Path, own_redis: EmbeddedRedis) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(f'redis: {{url: "{own_redis.url}"}}\n')
    async with redis_for_command(load_settings_or_exit(str(config))) as client:
        assert await client.ping()


def test_a_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text("redis: {urll: x}\n")
    with pytest.raises(SystemExit) as exited:
        load_settings_or_exit(str(config))
    assert exited.value.code == 2
    assert "unknown key 'urll'" in capsys.readouterr().err
