"""Operational alerts end to end: a private redis-server and a local Slack look-alike.

Several ``OpsWatch`` objects on one Redis stand for several replicas; nothing is mocked.  The
clock is moved by hand, since "unreachable for two minutes" is a decision about time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from support.channel_fixtures import enqueue, make_match
from support.commands import run_monitor
from support.servers import SlackServer

from monitor.app.embedded_redis import EmbeddedRedis
from monitor.cli import main
from monitor.deliver.channels import ConsoleChannel, SlackChannel
from monitor.deliver.ops_alerts import OpsWatch
from monitor.deliver.policy import RetryPolicy, Route
from monitor.deliver.queue import AlertQueue
from monitor.deliver.worker import DeliveryPolicy, DeliveryWorker
from monitor.redisio import Keys
from monitor.settings import OpsSettings

REPO = Path(__file__).resolve().parents[2]
PREFIX = "ops"
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ROUTES = (Route(channels=("slack",)),)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def client_for(url: str) -> aioredis.Redis:
    """A client configured like the daemon's (a few quick retries, then an error)."""
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=2),
        socket_connect_timeout=2,
    )


@pytest.fixture
async def slack(slack_server: SlackServer) -> AsyncIterator[SlackChannel]:
    channel = SlackChannel(slack_server.url, min_interval=timedelta(0))
    yield channel
    await channel.close()


def watch(
    queue: AlertQueue, slack: SlackChannel, replica: str, clock: Clock, **config: Any
) -> OpsWatch:
    settings = OpsSettings(**config)
    return OpsWatch(
        queue,
        {"slack": slack},
        ROUTES,
        replica=replica,
        config=lambda: settings,
        clock=clock,
    )


def worker(queue: AlertQueue, slack: SlackChannel) -> DeliveryWorker:
    policy = DeliveryPolicy(
        routes=ROUTES,
        retry=RetryPolicy(timedelta(milliseconds=50), timedelta(milliseconds=100), 1),
    )
    return DeliveryWorker(queue, {"slack": slack}, policy, consumer="w")


def texts(slack_server: SlackServer) -> list[str]:
    """Every accepted post's text (payload JSON as a string, to search in)."""
    return [r.body.decode() for r in slack_server.requests if r.reply.status == 200]


async def test_dead_letters_alert_once_across_replicas_and_once_when_cleared(
    redis_client: aioredis.Redis, slack: SlackChannel, slack_server: SlackServer
) -> None:
    queue = AlertQueue(redis_client, Keys(PREFIX))
    await queue.ensure_group()
    clock = Clock(T0)
    replicas = [watch(queue, slack, name, clock) for name in ("a", "b", "c")]
    deliver = worker(queue, slack)
    slack_server.reply(404, "no_service")  # Slack refuses the analysts' alert for good
    await enqueue(redis_client, PREFIX, make_match())
    assert (await deliver.run_once()).dead == 1
    for replica in replicas:
        await replica.tick()
        await replica.tick()
    report = await deliver.run_once()
    assert report.channels == {"slack": 1}
    [told] = [t for t in texts(slack_server) if "could not be delivered" in t]
    assert "1 alert(s) could not be delivered; see 'monitor alerts dead'" in told

    [letter] = await queue.dead_letters()  # the operator fixed Slack and retries it
    assert await queue.requeue_dead(letter)
    clock.now += timedelta(minutes=30)
    for replica in replicas:
        await replica.tick()
    report = await deliver.run_once()
    assert report.channels == {"slack": 2}  # the retried alert and the all-clear
    cleared = [t for t in texts(slack_server) if "Dead letters handled" in t]
    assert len(cleared) == 1
    assert "after 30.0 min" in cleared[0]
    for replica in replicas:
        await replica.tick()
    assert (await deliver.run_once()).read == 0  # nothing more to tell


async def test_redis_outage_is_told_directly_by_each_replica_and_its_end_once(
    own_redis: EmbeddedRedis, slack: SlackChannel, slack_server: SlackServer
) -> None:
    clock = Clock(T0)
    clients = [client_for(own_redis.url) for _ in range(2)]
    queues = [AlertQueue(client, Keys(PREFIX)) for client in clients]
    await queues[0].ensure_group()
    first, second = (
        watch(queue, slack, name, clock, redis_down_after="2m")
        for queue, name in zip(queues, ("replica-1", "replica-2"), strict=True)
    )
    try:
        await first.tick()
        own_redis.kill()
        await first.tick()
        await second.tick()
        clock.now += timedelta(minutes=1)
        await first.tick()
        assert slack_server.requests == []  # a short outage tells nobody

        clock.now += timedelta(minutes=2)
        slack_server.reply(503, "service unavailable")  # Slack is having a moment too
        await first.tick()  # refused for now: tried again at the next check
        await second.tick()
        await first.tick()
        await first.tick()
        await second.tick()
        down = [t for t in texts(slack_server) if "Redis unreachable for" in t]
        assert len(down) == 2  # one per replica, each naming itself
        assert any("replica-1" in t for t in down)
        assert any("replica-2" in t for t in down)
        assert len(slack_server.requests) == 3

        own_redis.restart_if_dead()
        clock.now += timedelta(minutes=1)
        await first.tick()
        await second.tick()
        await first.tick()
        report = await worker(queues[0], slack).run_once()
        assert report.channels == {"slack": 1}
        back = [t for t in texts(slack_server) if "Redis reachable again" in t]
        assert len(back) == 1
        assert "after 4.0 min" in back[0]
        assert all(slack_server.secret not in t for t in texts(slack_server))

        own_redis.kill()  # a second outage is a new incident, told again
        clock.now += timedelta(minutes=10)
        await second.tick()
        clock.now += timedelta(minutes=3)
        await second.tick()
        own_redis.restart_if_dead()
        await second.tick()
        await worker(queues[0], slack).run_once()
        assert len([t for t in texts(slack_server) if "Redis unreachable for" in t]) == 3
        assert len([t for t in texts(slack_server) if "Redis reachable again" in t]) == 2
    finally:
        for client in clients:
            await client.aclose()


@pytest.mark.slow
def test_a_running_daemon_tells_slack_when_redis_is_gone_and_back(
    tmp_path: Path, own_redis: EmbeddedRedis, slack_server: SlackServer
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {id: r, title: R, severity: low, match: {any: [nothing]}}\n")
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f'redis: {{url: "{own_redis.url}"}}\nfeeds: []\nrules: {{paths: ["{rules}"]}}\n'
        'channels: {console: {}, slack: {webhook_url: "${SLACK_WEBHOOK_URL}", rate_limit: 0s}}\n'
        "routes: [{channels: [console]}]\n"
        "ops: {channels: [slack], redis_down_after: 1s}\n"
        "health: {port: 0}\nlog: {format: json}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"}
    env["SLACK_WEBHOOK_URL"] = slack_server.url
    daemon = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "-c", str(config)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_heartbeat(own_redis.url, within=120)  # the daemon is up, however slowly
        own_redis.kill()
        slack_server.wait_for(1, within=120)
        own_redis.restart_if_dead()
        slack_server.wait_for(2, within=120)
        wait_for_checks(own_redis.url, 2, within=120)  # more checks: nothing more is sent
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=40)
    posted = texts(slack_server)
    assert len(posted) == 2, posted
    assert "Redis unreachable for" in posted[0]
    assert "Redis reachable again" in posted[1]
    assert daemon.returncode == 0, stderr[-2000:]
    assert slack_server.secret not in stderr


async def test_ops_channels_take_every_ops_alert_and_nothing_else(
    redis_client: aioredis.Redis, slack: SlackChannel, slack_server: SlackServer
) -> None:
    """With ``ops.channels`` set, feed-health alerts (raised by the pipeline, tagged ops) go
    there instead of through the routes, and analysts' alerts are not affected."""
    queue = AlertQueue(redis_client, Keys(PREFIX))
    await queue.ensure_group()
    deliver = DeliveryWorker(
        queue,
        {"slack": slack, "console": ConsoleChannel()},
        DeliveryPolicy(routes=ROUTES),
        consumer="w",
    )
    deliver.ops_channels = ("console",)
    health = make_match("feed-health", "ops:wire:failing", title="Feed wire failing", tags=("ops",))
    analyst = make_match()
    await enqueue(redis_client, PREFIX, health, analyst)
    report = await deliver.run_once()
    assert report.channels == {"console": 1, "slack": 1}
    [posted] = texts(slack_server)
    assert "Kazakhstan opens tungsten tender" in posted


async def test_a_full_redis_that_still_answers_ping_counts_as_down(
    own_redis: EmbeddedRedis, slack: SlackChannel, slack_server: SlackServer
) -> None:
    """maxmemory with noeviction: PING works, every write is refused; that is an outage."""
    clock = Clock(T0)
    client = client_for(own_redis.url)
    try:
        ops = watch(AlertQueue(client, Keys(PREFIX)), slack, "replica-1", clock)
        await ops.tick()
        await client.config_set("maxmemory-policy", "noeviction")
        await client.config_set("maxmemory", "1")
        assert await client.ping()
        await ops.tick()
        clock.now += timedelta(minutes=5)
        await ops.tick()
        [down] = texts(slack_server)
        assert "Redis unreachable for 5.0 min" in down
        assert "OutOfMemoryError" in down  # the reason, from Redis' own answer
        await client.config_set("maxmemory", "0")
        await ops.tick()
        assert ops.down_since is None
    finally:
        await client.aclose()


def test_status_shows_an_open_dead_letter_incident(
    tmp_path: Path, session_redis: EmbeddedRedis, capsys: pytest.CaptureFixture[str]
) -> None:
    client = redis.Redis.from_url(session_redis.url, decode_responses=True)
    since = datetime.now(UTC) - timedelta(minutes=5)
    client.set("st:ops:dead-letters", json.dumps({"since": since.isoformat(), "count": 2}))
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {id: r, title: R, severity: low, match: {any: [nothing]}}\n")
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f'redis: {{url: "{session_redis.url}", key_prefix: st}}\nfeeds: []\n'
        f'rules: {{paths: ["{rules}"]}}\nchannels: {{console: {{}}}}\n'
    )
    try:
        main(["status", "-c", str(config)])
    finally:
        client.delete("st:ops:dead-letters")
        client.close()
    assert "ops          dead-letter alert sent 5" in capsys.readouterr().out


def wait_for_checks(url: str, count: int, *, within: float) -> None:
    """Block until the daemon's ops checks have run ``count`` more times: each check writes
    its probe key first (``AlertQueue.probe``), so the key is removed and waited for again;
    when the last one appears, the check before it has finished."""
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + within
        for _ in range(count):
            client.delete("monitor:ops:probe")
            while not client.exists("monitor:ops:probe"):
                assert time.monotonic() < deadline, f"no ops check within {within:g}s"
                time.sleep(0.05)
    finally:
        client.close()


def wait_for_heartbeat(url: str, *, within: float) -> None:
    """Block until a daemon's heartbeat is in Redis: it has started and reached Redis.  A busy
    machine may take many seconds to start a daemon; killing Redis before would test start-up,
    not the running daemon this test is about."""
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + within
        while not client.keys("*heartbeat*"):
            assert time.monotonic() < deadline, f"no daemon heartbeat within {within:g}s"
            time.sleep(0.05)
    finally:
        client.close()


async def test_run_once_sends_the_dead_letter_alert_too(
    tmp_path: Path, own_redis: EmbeddedRedis
) -> None:
    """A cron-driven ``monitor run --once`` runs the daemon's ops checks once (issue 16):
    with a dead letter waiting, its pass prints the dead-letter alert."""
    client = client_for(own_redis.url)
    try:
        queue = AlertQueue(client, Keys("monitor"))
        await enqueue(client, "monitor", make_match())
        await queue.ensure_group()
        [entry] = await queue.read_matches("w1", 10, None)
        await queue.dead_letter(entry, "console", "refused for the test", ttl=timedelta(days=1))
    finally:
        await client.aclose()
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {id: r, title: R, severity: low, match: {any: [nothing]}}\n")
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f'redis: {{url: "{own_redis.url}"}}\nfeeds: []\nrules: {{paths: ["{rules}"]}}\n'
        "channels: {console: {}}\nroutes: [{channels: [console]}]\n"
        "health: {port: 0}\nlog: {format: json}\n"
    )
    once = run_monitor("run", "--once", "-c", str(config))
    assert once.returncode == 0, once.stderr
    assert "1 alert(s) could not be delivered; see 'monitor alerts dead'" in once.stdout
