"""Story clustering benchmark: cost per item with a full window, and Redis memory per story.

    python bench/bench_stories.py [--items 100000] [--measure 2000] [--seed 7]

Fills a private redis-server with ``--items`` synthetic items spread over the 72-hour window,
through ``StoryStore.assign`` exactly as ingestion would (stories of 1 to 12 items: reprints
under new titles, rewrites sharing a deposit or company, a figure and a date; words drawn
from a Zipfian vocabulary), then times
``--measure`` more items arriving at the end of the window: the pure part (fingerprint and
evidence extraction), and the whole assignment (two pipelined reads and the Lua commit).
Memory is Redis ``used_memory`` after the fill minus before, divided by the stories (and the
items) in the window.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import redis.asyncio as aioredis  # noqa: E402

from monitor.app.embedded_redis import EmbeddedRedis  # noqa: E402
from monitor.model import Item  # noqa: E402
from monitor.redisio import Keys  # noqa: E402
from monitor.stories.cluster import Extractor  # noqa: E402
from monitor.stories.lexicon import DEFAULT_ENTITIES  # noqa: E402
from monitor.stories.store import StoryStore  # noqa: E402

WINDOW = timedelta(hours=72)
START = datetime(2026, 3, 1, tzinfo=UTC)
NAMES = [e.names[0] for e in DEFAULT_ENTITIES if not e.generic]
# A word list reads best as text.
COMMON = (  # noqa: SIM905
    "the of to in and a on for said with by at from as is that will its it was be has "
    "government company minister plans project output export import price market quarter "
    "investment deposit licence exploration mining plant agreement talks official report "
    "analysts traders supply demand growth decline region capital budget contract partner"
).split()
# News vocabulary is Zipfian: a few words are in every text, most are rare.  Pseudo-words
# stand in for the long tail, so texts share function words and little else, as real ones do.
WORDS = COMMON + [f"w{n}" for n in range(8000)]
WEIGHTS = [1 / rank for rank in range(1, len(WORDS) + 1)]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September"]


def sentence(rng: random.Random, length: int) -> str:
    return " ".join(rng.choices(WORDS, WEIGHTS, k=length))


def synthetic(rng: random.Random, count: int, start: datetime) -> Iterator[tuple[Item, datetime]]:
    """``count`` items spread evenly over the window, grouped in stories of 1 to 12 items."""
    made = 0
    step = WINDOW / max(count, 1)
    story = 0
    while made < count:
        story += 1
        size = min(count - made, 1 + int(rng.expovariate(1 / 3)) % 12)
        entity = rng.choice(NAMES)
        figure = f"{rng.randint(2, 900)} million tonnes"
        day = f"{rng.choice(MONTHS)} {rng.randint(1, 28)}"
        base = f"{entity} {sentence(rng, 12)} {figure} on {day}. {sentence(rng, 14)}."
        for n in range(size):
            at = start + step * made
            if n == 0 or rng.random() < 0.6:  # the wire, and reprints of it
                title, summary = sentence(rng, 7), base
            else:  # a rewrite that keeps the evidence
                title = sentence(rng, 6)
                summary = f"{sentence(rng, 8)} {entity} {figure} {day} {sentence(rng, 10)}"
            item_id = f"feed{rng.randint(1, 400)}:{story}:{n}"
            yield Item(item_id, item_id.split(":")[0], title, summary, "", at, "en"), at
            made += 1


async def fill(store: StoryStore, rng: random.Random, count: int) -> float:
    started = time.perf_counter()
    for done, (item, at) in enumerate(synthetic(rng, count, START), start=1):
        await store.assign(item, at)
        if done % 10000 == 0:
            print(f"  filled {done} items ({time.perf_counter() - started:.0f} s)", flush=True)
    return time.perf_counter() - started


async def run(items: int, measure: int, seed: int) -> None:
    rng = random.Random(seed)
    extractor = Extractor()
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis")
        server.start()
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        try:
            store = StoryStore(client, Keys("bench"), extractor, window=WINDOW)
            before = int((await client.info("memory"))["used_memory"])
            print(f"filling the window with {items} items ...", flush=True)
            fill_seconds = await fill(store, rng, items)
            after = int((await client.info("memory"))["used_memory"])
            stories = int(await client.zcard(store.keys.stories))
            end = START + WINDOW
            probe = [item for item, _ in synthetic(random.Random(seed + 1), measure, end)]
            pure: list[float] = []
            for item in probe:
                started = time.perf_counter()
                extractor.features(item)
                pure.append(time.perf_counter() - started)
            whole: list[float] = []
            for item in probe:
                started = time.perf_counter()
                await store.assign(item, end)
                whole.append(time.perf_counter() - started)
        finally:
            await client.aclose()
            server.stop()
    ms = 1000.0
    print()
    print(f"items in the window        {items}")
    print(f"stories in the window      {stories}")
    print(f"fill                       {fill_seconds:.1f} s ({items / fill_seconds:.0f} items/s)")
    print(f"features (pure), mean      {statistics.mean(pure) * ms:.3f} ms/item")
    print(f"assign (whole), mean       {statistics.mean(whole) * ms:.3f} ms/item")
    print(f"assign (whole), p50        {statistics.median(whole) * ms:.3f} ms")
    print(f"assign (whole), p99        {statistics.quantiles(whole, n=100)[98] * ms:.3f} ms")
    print(f"Redis memory               {(after - before) / 2**20:.1f} MiB")
    print(f"Redis memory per story     {(after - before) / max(stories, 1):.0f} bytes")
    print(f"Redis memory per item      {(after - before) / max(items, 1):.0f} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000, help="items in the window")
    parser.add_argument("--measure", type=int, default=2000, help="items timed at the end")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(run(args.items, args.measure, args.seed))


if __name__ == "__main__":
    main()
