"""The dead-man switch: ``ops.heartbeat_url`` is fetched on every healthy heartbeat, never
blocks the daemon, logs a failing ping once per outage and never logs the URL itself.

A local HTTP server (``FeedServer``) stands in for healthchecks.io and counts the pings; the
daemon runs in-process against its own redis-server, one heartbeat at a time.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import structlog.testing
from support.feed_server import FeedServer
from support.samples import KZ_TUNGSTEN_RULES

from monitor.app.daemon import Monitor
from monitor.app.embedded_redis import EmbeddedRedis
from monitor.app.logs import REDACTED, SecretMasker
from monitor.settings import Settings, load_settings

PING = "/ping/5f0e1c2a-checks-token"


def settings_for(tmp_path: Path, redis_url: str, heartbeat_url: str) -> Settings:
    rules = tmp_path / "rules.yaml"
    rules.write_text(KZ_TUNGSTEN_RULES, encoding="utf-8")
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f"""\
redis: {{url: "{redis_url}"}}
rules: {{paths: ["{rules}"]}}
ingest: {{workers: 0}}
ops: {{heartbeat_url: "${{HEARTBEAT_URL}}"}}
health: {{port: 0}}
""",
        encoding="utf-8",
    )
    return load_settings(config, env={"HEARTBEAT_URL": heartbeat_url})


async def pinged(daemon: Monitor) -> bool | None:
    """One heartbeat and its ping's outcome (None: no ping was made)."""
    task = await daemon.heartbeat_once()
    return None if task is None else await task


async def test_every_healthy_heartbeat_pings_the_dead_man_url(
    tmp_path: Path, feed_server: FeedServer, own_redis: EmbeddedRedis
) -> None:
    feed_server.put(PING, "OK")
    settings = settings_for(tmp_path, own_redis.url, feed_server.url(PING))
    async with Monitor(settings) as daemon:
        for _ in range(3):
            ping = await daemon.heartbeat_once()
            assert ping is not None
            assert await ping is True
    assert feed_server.requests[PING] == 3


async def test_no_ping_while_redis_is_unreachable(
    tmp_path: Path, feed_server: FeedServer, own_redis: EmbeddedRedis
) -> None:
    """A daemon that cannot write its heartbeat is not healthy: the pings stop, so the
    outside service alerts."""
    feed_server.put(PING, "OK")
    settings = settings_for(tmp_path, own_redis.url, feed_server.url(PING))
    async with Monitor(settings) as daemon:
        assert await pinged(daemon) is True
        own_redis.stop()
        assert await daemon.heartbeat_once() is None
    assert feed_server.requests[PING] == 1


async def test_a_failing_ping_is_logged_once_per_outage_without_the_url(
    tmp_path: Path, feed_server: FeedServer, own_redis: EmbeddedRedis
) -> None:
    feed_server.put(PING, "down", status=503)
    url = feed_server.url(PING)
    settings = settings_for(tmp_path, own_redis.url, url)
    async with Monitor(settings) as daemon:
        with structlog.testing.capture_logs() as logs:
            for _ in range(3):
                assert await pinged(daemon) is False
            feed_server.put(PING, "OK")
            for _ in range(2):
                assert await pinged(daemon) is True
    events = [entry["event"] for entry in logs if "dead-man" in entry["event"]]
    assert events == [
        "dead-man ping failed; logged once until it succeeds again",
        "dead-man ping succeeds again",
    ]
    failed = next(entry for entry in logs if entry["event"].startswith("dead-man ping failed"))
    assert failed["error"] == "HTTP 503"
    assert not any("checks-token" in str(entry) for entry in logs)
    assert feed_server.requests[PING] == 5


async def test_a_hanging_ping_never_holds_up_the_heartbeat(
    tmp_path: Path, feed_server: FeedServer, own_redis: EmbeddedRedis
) -> None:
    """The ping runs on its own; while one hangs, the next heartbeat skips its ping rather
    than pile a second one up."""
    feed_server.put(PING, "OK", delay=30)
    settings = settings_for(tmp_path, own_redis.url, feed_server.url(PING))
    async with Monitor(settings) as daemon:
        started = time.monotonic()
        first = await daemon.heartbeat_once()
        second = await daemon.heartbeat_once()
        took = time.monotonic() - started
        assert first is not None
        assert not first.done()
        assert second is None
    assert took < 5
    assert first.cancelled() or first.done()


def test_the_heartbeat_url_is_a_secret_masked_in_logs() -> None:
    url = "https://hc-ping.com/5f0e1c2a-0000-4000-8000-0123456789ab"
    settings = Settings.model_validate({"ops": {"heartbeat_url": url}})
    assert url in settings.secrets()
    assert url not in repr(settings.ops)
    masked = SecretMasker(settings.secrets())(None, "warning", {"event": f"GET {url} failed"})
    assert masked["event"] == f"GET {REDACTED} failed"


@pytest.mark.parametrize("bad", ["ftp://hc-ping.com/x", "hc-ping.com/x", "https:///x"])
def test_the_heartbeat_url_must_be_http(bad: str) -> None:
    with pytest.raises(ValueError, match=r"http:// or https://"):
        Settings.model_validate({"ops": {"heartbeat_url": bad}})


def test_an_empty_heartbeat_url_switches_the_pings_off() -> None:
    """``${HEARTBEAT_URL:-}`` unset in the environment means no dead-man switch."""
    assert Settings.model_validate({"ops": {"heartbeat_url": ""}}).ops.heartbeat_url is None
