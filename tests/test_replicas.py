"""Several daemons on one Redis share the polling: each feed is fetched once per interval."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from support.feed_server import FeedServer, rss

from monitor.embedded_redis import EmbeddedRedis

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
FEEDS = 30
REPLICAS = 3


def start_replicas(
    count: int, tmp_path: Path, feed_server: FeedServer, redis_url: str
) -> list[subprocess.Popen[bytes]]:
    """``count`` daemons polling the same FEEDS feeds (10 s interval) on one Redis."""
    for number in range(FEEDS):
        feed_server.put(f"/f{number}.xml", rss([{"title": f"item {number}", "guid": str(number)}]))
    feeds = "\n".join(
        f'  - {{name: f{n}, url: "{feed_server.url(f"/f{n}.xml")}", interval: 10s}}'
        for n in range(FEEDS)
    )
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {id: r, title: R, severity: low, match: {any: [nothing]}}\n")
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f'redis: {{url: "{redis_url}"}}\nfeeds:\n{feeds}\n'
        f'rules: {{paths: ["{rules}"]}}\nchannels: {{console: {{}}}}\n'
        "health: {port: 0}\nhttp: {host_gap: 0s, per_host: 10}\nlog: {format: json}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"}
    return [
        subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "-c", str(config)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]


def fetches(feed_server: FeedServer, number: int) -> int:
    return feed_server.requests[f"/f{number}.xml"]


def test_three_replicas_fetch_each_feed_once_per_interval(
    tmp_path: Path, feed_server: FeedServer, own_redis: EmbeddedRedis
) -> None:
    daemons = start_replicas(REPLICAS, tmp_path, feed_server, own_redis.url)
    try:
        time.sleep(13)  # two ticks of every feed on every replica: 0-1 s and 9-11 s
    finally:
        for daemon in daemons:
            daemon.send_signal(signal.SIGTERM)
        codes = [daemon.wait(30) for daemon in daemons]
    counts = [fetches(feed_server, n) for n in range(FEEDS)]
    assert codes == [0] * REPLICAS
    assert min(counts) >= 1, "every feed was polled"
    assert max(counts) <= 2, f"a feed was fetched by several replicas: {counts}"


def test_a_killed_replicas_feeds_are_taken_over_within_the_lease_time(
    tmp_path: Path, feed_server: FeedServer, own_redis: EmbeddedRedis
) -> None:
    victim, survivor = start_replicas(2, tmp_path, feed_server, own_redis.url)
    client = redis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        started = time.monotonic()
        while time.monotonic() - started < 30:  # both replicas have started and taken leases
            holders = {n: client.get(f"monitor:lease:f{n}") for n in range(FEEDS)}
            orphaned = [n for n, who in holders.items() if who and who.endswith(f"-{victim.pid}")]
            if orphaned and all(holders.values()):
                break
            time.sleep(0.25)
        assert orphaned, f"the victim held no feed: {holders}"
        before = {n: fetches(feed_server, n) for n in orphaned}
        victim.kill()  # SIGKILL: no chance to release its leases
        victim.wait(10)
        deadline = time.monotonic() + 25  # lease (12.5 s) plus one interval of the survivor
        while time.monotonic() < deadline:
            if all(fetches(feed_server, n) > before[n] for n in orphaned):
                break
            time.sleep(0.5)
        taken_over = [n for n in orphaned if fetches(feed_server, n) > before[n]]
    finally:
        client.close()
        survivor.send_signal(signal.SIGTERM)
        survivor.wait(30)
        if victim.poll() is None:
            victim.kill()
    assert taken_over == orphaned
