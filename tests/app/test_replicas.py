"""Three daemons on one Redis share 200 feeds: each feed is fetched once per interval, each
alert reaches Slack once, and a SIGKILLed replica's feeds are taken over within the lease."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
from support.commands import kill_daemon
from support.feed_server import FeedServer, rss
from support.servers import SlackServer

from monitor.app.embedded_redis import EmbeddedRedis

# The test runs 4.5 intervals (45 s) by design, after three daemons start and parse 200
# feeds: the suite's 60 s hang guard stopped it once with three CI runs sharing 2 cores.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[2]
FEEDS = 200
REPLICAS = 3
INTERVAL = 10.0
LEASE = INTERVAL * 1.25  # monitor.app.daemon.LEASE_FACTOR
JITTER = 1.0  # ±10 % of the interval, at least 1 s
RUN = 4.5 * INTERVAL
TAG = re.compile(r"f\d{3}p\d")
AGENT = "monitor-test/replica-"


def put_feeds(feed_server: FeedServer, phases: dict[int, int]) -> None:
    """Feed n holds one matching item per phase it has reached, newest first."""
    for number, last in phases.items():
        items = [
            {"title": f"Tungsten report f{number:03d}p{phase}", "guid": f"{number}-{phase}"}
            for phase in range(last, 0, -1)
        ]
        feed_server.put(f"/f{number}.xml", rss(items))


def start_replicas(
    tmp_path: Path, feed_server: FeedServer, slack: SlackServer, redis_url: str
) -> list[subprocess.Popen[bytes]]:
    """REPLICAS daemons polling the same FEEDS feeds every 10 s and posting to one Slack."""
    feeds = "\n".join(
        f'  - {{name: f{n}, url: "{feed_server.url(f"/f{n}.xml")}", interval: 10s}}'
        for n in range(FEEDS)
    )
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {id: t, title: T, severity: high, match: {any: [tungsten]}}\n")
    configs = []
    for replica in range(REPLICAS):  # each its own User-Agent, so fetches tell who made them
        config = tmp_path / f"monitor-{replica}.yaml"
        config.write_text(
            f'redis: {{url: "{redis_url}"}}\nfeeds:\n{feeds}\n'
            f'rules: {{paths: ["{rules}"]}}\n'
            'channels: {slack: {webhook_url: "${SLACK_WEBHOOK_URL}", rate_limit: 0s}}\n'
            "ingest: {workers: 0, backfill: off}\n"
            "delivery: {burst: 100000, reclaim_after: 5s}\n"
            "health: {port: 0}\n"
            f'http: {{host_gap: 0s, per_host: 20, user_agent: "{AGENT}{replica}"}}\n'
            "log: {format: json}\n"
        )
        configs.append(config)
    env = {k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"}
    env["SLACK_WEBHOOK_URL"] = slack.url
    return [
        subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "-c", str(config)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # so a kill takes its parser processes too
        )
        for config in configs
    ]


def delivered(slack: SlackServer) -> Counter[str]:
    """How many times Slack accepted each item (by the tag in its title)."""
    return Counter(
        tag
        for request in slack.requests
        if request.reply.status == 200
        for tag in set(TAG.findall(request.body.decode()))
    )


def wait_for_alerts(slack: SlackServer, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while sum(delivered(slack).values()) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"{sum(delivered(slack).values())} of {count} alerts within {within} s")
        time.sleep(0.25)


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def fetchers(feed_server: FeedServer, path: str) -> list[str]:
    """Which replica made each fetch of ``path``, in the order of ``feed_server.times``."""
    return [
        headers.get("User-Agent", "")
        for requested, headers in feed_server.request_headers
        if requested == path
    ]


def handover_gaps(times: list[float], agents: list[str]) -> list[float]:
    """Gaps between two fetches of a feed by different replicas: a second replica polling in
    the interval of the first.  (One replica's fetches can come closer under load, a fetch
    that waited for its turn followed by the next tick's; that is still one per tick.)"""
    return [
        later - earlier
        for (earlier, first), (later, second) in itertools.pairwise(zip(times, agents, strict=True))
        if first != second
    ]


def test_200_feeds_on_three_replicas_once_per_interval_and_taken_over_after_sigkill(
    tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer, own_redis: EmbeddedRedis
) -> None:
    """Alerts are counted at Slack by item; fetches by time on the feed server.

    The replica is killed between bursts of new items, when no send is in flight: a replica
    dying in the middle of a send is the documented at-least-once window (that alert is sent
    again after ``send_lease``), which this test is not about.
    """
    put_feeds(feed_server, dict.fromkeys(range(FEEDS), 1))
    started = time.monotonic()
    daemons = start_replicas(tmp_path, feed_server, slack_server, own_redis.url)
    client = redis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        # Every feed's first item.  A budget, not a speed claim: three daemons starting and
        # parsing 200 feeds on 2 cores took 23.6-24.8 s on a slow day, and once over 30 s.
        wait_for_alerts(slack_server, FEEDS, within=60)
        victim = daemons[0]
        holders = {n: str(client.get(f"monitor:lease:f{n}") or "") for n in range(FEEDS)}
        orphaned = [n for n, who in holders.items() if who.endswith(f"-{victim.pid}")]
        kill_daemon(victim)  # SIGKILL, with its parser processes: its leases stay until they expire
        killed_at = time.monotonic()
        publishing = sorted({*orphaned, *range(0, FEEDS, 2)})  # its feeds and half the others
        put_feeds(feed_server, dict.fromkeys(publishing, 2))
        expected = FEEDS + len(publishing)
        wait_for_alerts(slack_server, expected, within=LEASE + 3 * INTERVAL)
        # Room for a duplicate to show up, and several intervals of fetches to count.
        time.sleep(max(3.0, started + RUN - time.monotonic()))
    finally:
        client.close()
        for daemon in daemons[1:]:
            daemon.send_signal(signal.SIGTERM)
        codes = [daemon.wait(30) for daemon in daemons[1:]]
        kill_daemon(daemons[0])

    counts = delivered(slack_server)
    times = {n: feed_server.times[f"/f{n}.xml"] for n in range(FEEDS)}
    elapsed = max(t[-1] for t in times.values()) - min(t[0] for t in times.values())
    agents = {n: fetchers(feed_server, f"/f{n}.xml") for n in range(FEEDS)}
    shortest = min(min(handover_gaps(times[n], agents[n]), default=INTERVAL) for n in times)
    others = [n for n in range(FEEDS) if n not in orphaned]
    longest = max(max(gaps(times[n]), default=0) for n in others)
    skipped = sum(g > INTERVAL + 2 * JITTER + 1 for n in others for g in gaps(times[n]))
    takeover = {
        n: min((t for t in times[n] if t > killed_at), default=float("inf"))
        - max(t for t in times[n] if t < killed_at)
        for n in orphaned
    }
    figures = (
        f"{len(counts)} alerts, most sent {max(counts.values(), default=0)} times; "
        f"fetches per feed {min(map(len, times.values()))}-{max(map(len, times.values()))} "
        f"in {elapsed:.0f} s; handovers {shortest:.1f} s apart at least, gaps up to "
        f"{longest:.1f} s ({skipped} of the survivors' "
        f"longer than an interval and its jitter); {len(orphaned)} feeds taken "
        f"over, the last {max(takeover.values(), default=0):.1f} s after its previous poll"
    )
    print(figures)
    assert len(counts) == expected, f"every alert was delivered: {figures}"
    assert set(counts.values()) == {1}, [tag for tag, n in counts.items() if n > 1]
    assert codes == [0] * (REPLICAS - 1)
    assert orphaned, f"the victim held no feed: {set(holders.values())}"
    # Once per interval: a holder's ticks are INTERVAL ± JITTER apart (less a late start), so
    # no more fetches than that allows; a second replica polling in the same interval would
    # land at a random moment of it, well under half an interval away for some of 200 feeds.
    most = elapsed / (INTERVAL - 2 * JITTER) + 1
    assert max(map(len, times.values())) <= most, figures
    assert shortest >= INTERVAL / 2, f"two replicas fetched a feed in one interval: {figures}"
    assert {a for fetched in agents.values() for a in fetched} <= {
        f"{AGENT}{replica}" for replica in range(REPLICAS)
    }
    # Taken over once the lease lapsed, at a survivor's next tick (plus load on 2 cores).  A
    # holder whose tick came late under load hands a feed over the same way, or finds it not
    # yet due (feedpolicy.is_due measures from the previous poll, not the previous tick) and
    # polls it a tick later: those are the survivors' gaps longer than an interval.
    handover = LEASE + INTERVAL + 2 * JITTER + 5
    assert max(takeover.values()) <= handover, f"not taken over in time: {figures}"
    assert longest <= handover, f"a feed waited too long: {figures}"
