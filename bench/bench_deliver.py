"""Delivery benchmark: matches per second through the stream, and feed-to-alert latency.

    python bench/bench_deliver.py [--matches 3000] [--items 200]

Part 1 queues ``--matches`` matches in a private redis-server exactly as ingestion does and
times one delivery worker draining them to a local Slack-like HTTP server (the per-webhook
rate limit off, so the figure is the worker's, not Slack's 1 message/s).  Every match goes
through the whole path: read through the consumer group, route, silence check, throttle and
send markers, the HTTP post, the "done" marker and the acknowledgement.

Part 2 runs the daemon's own ``Monitor`` (real fetch, parse, match, the Lua enqueue) against
a local feed server while its delivery loop runs: for each of ``--items`` items it publishes
the item in the feed, starts a poll at once and measures until the alert reaches the Slack
server; it prints p50 and p99.  A scheduled poll adds up to one poll interval on top.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import redis.asyncio as aioredis  # noqa: E402
from support.channel_fixtures import make_match  # noqa: E402
from support.feed_server import FeedServer, rss  # noqa: E402
from support.servers import SlackServer  # noqa: E402

from monitor.app.daemon import Monitor  # noqa: E402
from monitor.app.embedded_redis import EmbeddedRedis  # noqa: E402
from monitor.app.logs import configure_logging  # noqa: E402
from monitor.deliver.channels import SlackChannel  # noqa: E402
from monitor.deliver.policy import Route  # noqa: E402
from monitor.deliver.queue import AlertQueue  # noqa: E402
from monitor.deliver.worker import DeliveryPolicy, DeliveryWorker  # noqa: E402
from monitor.redisio import Keys  # noqa: E402
from monitor.settings import load_settings  # noqa: E402

RULES = """\
rules:
  - id: kz-tungsten
    title: Kazakhstan tungsten
    severity: high
    match:
      all: [Kazakhstan, tungsten]
"""


async def throughput(redis_url: str, slack: SlackServer, count: int) -> float:
    """Matches per second from the stream to the Slack server, one worker."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    queue = AlertQueue(client, Keys("bench"))
    await queue.ensure_group()
    async with client.pipeline(transaction=False) as pipe:
        for n in range(count):
            match = make_match(f"rule-{n % 50}", item=f"wire:{n}", title=f"Story {n}")
            pipe.xadd("bench:matches", {"match": json.dumps(match.to_dict())})
        await pipe.execute()
    channel = SlackChannel(slack.url, min_interval=timedelta(0))
    policy = DeliveryPolicy(routes=(Route(channels=("slack",)),), batch=200)
    worker = DeliveryWorker(queue, {"slack": channel}, policy, consumer="bench")
    started = time.perf_counter()
    delivered = 0
    while delivered < count:
        delivered += (await worker.run_once()).delivered
    elapsed = time.perf_counter() - started
    await channel.close()
    await client.aclose()
    assert len(slack.requests) == count, len(slack.requests)
    return count / elapsed


def write_config(folder: Path, redis_url: str, feeds: FeedServer) -> Path:
    (folder / "rules.yaml").write_text(RULES, encoding="utf-8")
    config = folder / "monitor.yaml"
    config.write_text(
        f"""\
redis: {{url: "{redis_url}", key_prefix: latency}}
feeds: [{{name: wire, url: "{feeds.url("/f.xml")}", interval: 10m}}]
rules: {{paths: [rules.yaml]}}
channels:
  slack: {{webhook_url: "${{SLACK_WEBHOOK_URL}}", rate_limit: 0s}}
http: {{host_gap: 0s}}
log: {{level: warning, format: json}}
health: {{port: 0}}
""",
        encoding="utf-8",
    )
    return config


async def latency(redis_url: str, slack: SlackServer, items: int, folder: Path) -> list[float]:
    """Seconds from publishing an item (and starting a poll) to its alert reaching Slack."""
    import os

    os.environ["SLACK_WEBHOOK_URL"] = slack.url
    samples: list[float] = []
    with FeedServer() as feeds:
        settings = load_settings(write_config(folder, redis_url, feeds))
        async with Monitor(settings) as monitor:
            stop = asyncio.Event()

            async def deliver() -> None:
                while not stop.is_set():
                    await monitor.worker.run_once(block_ms=100)

            loop = asyncio.create_task(deliver())
            source = monitor.sources[0]
            published: list[dict[str, str]] = []
            for n in range(items):
                date = format_datetime(datetime.now(UTC), usegmt=True)
                item = {"title": f"Kazakhstan tungsten update {n}", "guid": f"l{n}", "date": date}
                published = [item, *published][:20]
                before = len(slack.requests)
                feeds.put("/f.xml", rss(published))
                started = time.monotonic()
                await monitor.poll(source)
                arrived = await slack.wait_for_async(before + 1, within=10)
                samples.append(arrived[before].received_at - started)
            stop.set()
            await loop
    return samples


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matches", type=int, default=3000)
    parser.add_argument("--items", type=int, default=200)
    args = parser.parse_args()
    configure_logging(level="warning", fmt="json", secrets=())
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis")
        server.start()
        try:
            with SlackServer(validate=False) as slack:
                rate = await throughput(server.url, slack, args.matches)
            print(f"throughput: {args.matches} matches in the stream -> Slack: {rate:,.0f}/s")
            with SlackServer(validate=False) as slack:
                samples = await latency(server.url, slack, args.items, Path(tmp))
            print(
                f"latency feed item -> alert over {len(samples)} items: "
                f"p50 {statistics.median(samples) * 1000:.1f} ms, "
                f"p99 {percentile(samples, 0.99) * 1000:.1f} ms, "
                f"max {max(samples) * 1000:.1f} ms"
            )
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
