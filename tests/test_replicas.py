"""Several daemons on one Redis share the polling: each feed is fetched once per interval."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.feed_server import FeedServer, rss

from monitor.embedded_redis import EmbeddedRedis

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
FEEDS = 30
REPLICAS = 3


def test_three_replicas_fetch_each_feed_once_per_interval(
    tmp_path: Path, feed_server: FeedServer, own_redis: EmbeddedRedis
) -> None:
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
        f'redis: {{url: "{own_redis.url}"}}\nfeeds:\n{feeds}\n'
        f'rules: {{paths: ["{rules}"]}}\nchannels: {{console: {{}}}}\n'
        "health: {port: 0}\nhttp: {host_gap: 0s, per_host: 10}\nlog: {format: json}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"}
    daemons = [
        subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "-c", str(config)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(REPLICAS)
    ]
    try:
        time.sleep(13)  # two ticks of every feed on every replica: 0-1 s and 9-11 s
    finally:
        for daemon in daemons:
            daemon.send_signal(signal.SIGTERM)
        codes = [daemon.wait(30) for daemon in daemons]
    fetches = [feed_server.requests[f"/f{n}.xml"] for n in range(FEEDS)]
    assert codes == [0] * REPLICAS
    assert min(fetches) >= 1, "every feed was polled"
    assert max(fetches) <= 2, f"a feed was fetched by several replicas: {fetches}"
