"""Cost of settling a matched item's rules on its story, next to assigning it to the story.

    .venv/bin/python bench/bench_settle.py [--items 5000] [--measure 2000]

Fills a private redis-server with synthetic items (bench/bench_stories.py's generator),
then times, for --measure more items, assign alone and settle (two rules: one plain, one
with min_sources: 3 and escalate at 5) right after it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import redis.asyncio as aioredis  # noqa: E402
from bench_stories import START, WINDOW, synthetic  # noqa: E402

from monitor.app.embedded_redis import EmbeddedRedis  # noqa: E402
from monitor.redisio import Keys  # noqa: E402
from monitor.stories.store import StoryStore  # noqa: E402
from monitor.stories.story import Gate  # noqa: E402


async def run(items: int, measure: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis")
        server.start()
        try:
            client = aioredis.Redis.from_url(server.url, decode_responses=True)
            store = StoryStore(client, Keys("b"))
            rng = random.Random(7)
            gates = [("plain", Gate()), ("confirmed", Gate(3, False, 5))]
            for item, now in synthetic(rng, items, START):
                update = await store.assign(item, now)
                rules = [(r, g, json.dumps({"rule": r})) for r, g in gates]
                await store.settle(update.story_id, item.id, rules)
            assign_ms, settle_ms = [], []
            for item, now in synthetic(rng, measure, START + WINDOW):
                t0 = time.perf_counter()
                update = await store.assign(item, now)
                t1 = time.perf_counter()
                rules = [(r, g, json.dumps({"rule": r})) for r, g in gates]
                await store.settle(update.story_id, item.id, rules)
                t2 = time.perf_counter()
                assign_ms.append((t1 - t0) * 1000)
                settle_ms.append((t2 - t1) * 1000)
            for name, values in (("assign", assign_ms), ("settle", settle_ms)):
                q = statistics.quantiles(values, n=100)
                mean = statistics.mean(values)
                print(f"{name}: mean {mean:.2f} ms, p50 {q[49]:.2f}, p99 {q[98]:.2f}")
            await client.aclose()
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--measure", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(run(args.items, args.measure))


if __name__ == "__main__":
    main()
