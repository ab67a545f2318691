"""Web console benchmark: every page's time at the server with a full history and Inbox.

    python bench/bench_console.py [--items 50000] [--alerts 5000] [--requests 30]

Starts a private redis-server (a temporary directory, a free loopback port) and fills it
through the real stores' write paths: ``--items`` items recorded in the history as a poll
records them (``Store.record_items``; headlines of eight topics in English, Russian and
Chinese), 2,000 of them (one in 25, four reports of each event) clustered into stories
(``StoryStore.assign``), ``--alerts`` sent alerts logged as the delivery worker logs them
(``SentLog.record``), 100 dead letters (``AlertQueue.dead_letter``) and 20 silences.  Then
it runs the real ``ConsoleServer`` in this process on a loopback port with the repository's
rules, signs in through the form, and requests each page ``--requests`` times over HTTP, one
at a time.  It prints each page's p50 and p95 (the client's wall time over loopback: the
server's time and a little more) and whether the p95 is under the 300 ms the console is held
to.  The playground's backtest is timed too; it is bounded by its window (3,000 items) and
its time budget rather than by that target.  Nothing is asserted about time: it prints.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402

from monitor.app.embedded_redis import EmbeddedRedis  # noqa: E402
from monitor.console.passwords import hash_password  # noqa: E402
from monitor.console.server import ConsoleServer, ConsoleStores  # noqa: E402
from monitor.deliver.history import SentLog  # noqa: E402
from monitor.deliver.queue import AlertQueue, QueuedMatch  # noqa: E402
from monitor.deliver.silences import SilenceStore  # noqa: E402
from monitor.ingest.state import Store  # noqa: E402
from monitor.model import Item, Match, Severity, Source, TermHit  # noqa: E402
from monitor.redisio import Keys  # noqa: E402
from monitor.rules import load_rules  # noqa: E402
from monitor.settings import WebConsoleSettings  # noqa: E402
from monitor.stories.cluster import Extractor  # noqa: E402
from monitor.stories.store import StoryStore  # noqa: E402

BUDGET_MS = 300.0
PASSWORD = "bench-password-1"  # noqa: S105  (the throwaway account of a private server)
KEYS = Keys("bench")
SOURCES = [f"feed{n:02d}" for n in range(20)]
TOPICS = [
    ("en", "Kazakhstan opens tungsten tender for the Upper Kairakty deposit"),
    ("en", "Rare earth export controls tightened again"),
    ("en", "Copper smelter output rises in the third quarter"),
    ("ru", "Казахстан объявил тендер на вольфрамовое месторождение"),
    ("zh", "哈薩克斯坦鎢礦拍賣"),
    ("zh", "稀土出口管制再度收紧"),
    ("en", "Lithium prices fall as new mines open"),
    ("en", "Central Asia critical minerals dialogue meets in Astana"),
]
DRAFT = """\
rules:
  - id: kz-tungsten
    title: Tungsten anywhere
    severity: high
    match:
      any: [tungsten, 钨, вольфрам*]
"""
STORY_ITEMS = 2_000
"""Items clustered into stories (four reports of each event)."""
STORY_EVERY = 25
"""One item in this many is a story's report (the rest are only in the history)."""
WORDS = [f"{a}{b}{c}" for a in "bdgklmnprstvz" for b in "aeiou" for c in "lmnrstx"]
"""Pseudo-words for the stories' events: no entity, figure or date joins two events."""
_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def make_item(n: int, now: datetime, rng: random.Random) -> Item:
    """The ``n``-th item: a topic's headline with a serial, from one of the feeds; every
    ``STORY_EVERY``-th item is one of four reports of an event of its own instead."""
    lang, title = rng.choice(TOPICS)
    if n % STORY_EVERY == 0:
        event = random.Random(n // (4 * STORY_EVERY))
        lang, title = "en", " ".join(event.choice(WORDS) for _ in range(7)).capitalize()
    source = SOURCES[n % len(SOURCES)]
    published = now - timedelta(seconds=n)
    summary = f"{title}. Report {n} from {source}; officials said more on Monday."
    link = f"https://{source}.example/news/{n}"
    return Item(f"{source}:{n}", source, f"{title} ({n})", summary, link, published, lang)


def make_match(item: Item, story: str, rng: random.Random) -> Match:
    """An alert on ``item`` as the rules would raise it, one hit quoted from the summary."""
    rule = rng.choice(["kz-tungsten", "rare-earth-export-controls", "us-central-asia"])
    word = item.summary.split()[0]
    return Match(
        rule_id=rule,
        rule_title=f"Rule {rule}",
        severity=rng.choice(list(Severity)),
        rule_version="bench",
        item=item,
        hits=(TermHit(word, "summary", 0, len(word), word),),
        tags=(rng.choice(["minerals", "policy", "trade"]),),
        story=story,
    )


async def seed(client: aioredis.Redis, stores: ConsoleStores, args: argparse.Namespace) -> None:
    """Fill Redis as the daemon would."""
    rng = random.Random(args.seed)
    now = datetime.now(UTC)
    items = [make_item(n, now, rng) for n in range(args.items)]
    started = time.perf_counter()
    for start in range(len(items) - 1, -1, -500):  # oldest first, as polls would
        batch = items[max(0, start - 499) : start + 1][::-1]
        await stores.ingest.record_items([(item, []) for item in batch], now)
    reports = items[::STORY_EVERY][:STORY_ITEMS]
    stories = [(await stores.stories.assign(item, now)).story_id for item in reports]
    sent = SentLog(client, KEYS)
    for start in range(0, args.alerts, 50):
        count = min(50, args.alerts - start)
        matches = [
            make_match(items[start + k], stories[(start + k) % len(stories)], rng)
            for k in range(count)
        ]
        await sent.record(matches, rng.choice(["slack", "email"]), now)
    for n in range(100):
        match = make_match(items[n], stories[n % len(stories)], rng)
        raw = json.dumps(match.to_dict(), ensure_ascii=False)
        entry = QueuedMatch(f"{n + 1}-0", match, raw)
        await stores.queue.dead_letter(entry, "email", "550 mailbox unavailable", timedelta(days=7))
    for n in range(20):
        await stores.silences.add(
            rule=None,
            tag=None,
            story=stories[n % len(stories)],
            duration=timedelta(hours=24),
            reason=f"silence {n}",
            now=now,
            author="bench",
        )
    print(
        f"seeded {args.items:,} items, {len(set(stories)):,} stories, {args.alerts:,} alerts, "
        f"100 dead letters, 20 silences in {time.perf_counter() - started:.1f} s"
    )


async def sign_in(session: aiohttp.ClientSession) -> str:
    """Sign in through the form; the session's CSRF token."""
    async with session.get("/login") as page:
        token = _CSRF.search(await page.text())
    assert token
    form = {"user": "bench", "password": PASSWORD, "csrf": token.group(1), "next": "/stories"}
    async with session.post("/login", data=form) as landed:
        assert landed.status == 200, landed.status
        found = _CSRF.search(await landed.text())
    assert found
    return found.group(1)


async def timed(
    session: aiohttp.ClientSession, path: str, requests: int, form: dict[str, str] | None
) -> list[float]:
    """Milliseconds per request of ``path`` (a POST of ``form`` when given), one at a time."""
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        if form is None:
            response = await session.get(path)
        else:
            response = await session.post(path, data=form)
        async with response:
            body = await response.read()
            assert response.status == 200, (path, response.status, body[:300])
        times.append((time.perf_counter() - started) * 1000)
    return times


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis")
        server.start()
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        console: ConsoleServer | None = None
        try:
            stores = ConsoleStores(
                stories=StoryStore(client, KEYS, Extractor()),
                ingest=Store(client, KEYS),
                queue=AlertQueue(client, KEYS),
                silences=SilenceStore(client, KEYS),
            )
            await seed(client, stores, args)
            rules = load_rules(sorted((REPO / "rules").glob("*.yaml")))
            settings = WebConsoleSettings.model_validate(
                {
                    "enabled": True,
                    "host": "127.0.0.1",
                    "secure_cookie": False,
                    "users": {
                        "bench": {"password_hash": hash_password(PASSWORD), "role": "analyst"}
                    },
                }
            )
            feeds = [Source(name, f"https://{name}.example/rss") for name in SOURCES]
            console = ConsoleServer(
                lambda: settings,
                stores=stores,
                sources=lambda: feeds,
                clock=lambda: datetime.now(UTC),
                rules=lambda: rules,
            )
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            assert await console.start(sock)
            url = f"http://127.0.0.1:{console.port}"
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(base_url=url, cookie_jar=jar) as session:
                csrf = await sign_in(session)
                history = await client.xrevrange(KEYS.items, count=1)
                entry = history[0][0] if history else ""
                newest = entry.decode() if isinstance(entry, bytes) else str(entry)
                pages: list[tuple[str, str, dict[str, str] | None]] = [
                    ("Inbox", "/inbox", None),
                    ("Inbox, filtered (rule, lang)", "/inbox?rule=kz-tungsten&lang=zh", None),
                    ("Inbox, filter matching nothing", "/inbox?rule=no-such-rule", None),
                    ("Inbox, page 2", "/inbox?before=" + await older(session), None),
                    ("Stories", "/stories", None),
                    ("Story page", await first_story(session), None),
                    ("Feeds", "/feeds", None),
                    ("Dead letters", "/dead", None),
                    ("Silences", "/silences", None),
                    ("Rules", "/rules", None),
                    ("Search (tungsten)", "/search?q=tungsten", None),
                    ("Search (Chinese, Simplified)", "/search?q=" + quote("哈萨克斯坦"), None),
                    ("Search (rare: no match)", "/search?q=zirconium", None),
                    ("Explain a stored item", f"/explain?item={newest}", None),
                    ("Playground", "/playground", None),
                    (
                        "Playground backtest (draft)",
                        "/playground",
                        {"csrf": csrf, "action": "backtest", "draft": DRAFT, "scope": "same"},
                    ),
                ]
                rows = []
                for name, path, form in pages:
                    times = sorted(await timed(session, path, args.requests, form))
                    p50 = statistics.median(times)
                    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
                    rows.append((name, p50, p95))
            print(f"\n{args.requests} requests per page, one at a time, over loopback HTTP\n")
            print(f"| {'Page':<30} | {'p50 ms':>7} | {'p95 ms':>7} | under {BUDGET_MS:.0f} ms |")
            print(f"|{'-' * 32}|{'-' * 8}:|{'-' * 8}:|{'-' * 14}|")
            for name, p50, p95 in rows:
                verdict = "yes" if p95 < BUDGET_MS else "NO"
                print(f"| {name:<30} | {p50:>7.1f} | {p95:>7.1f} | {verdict:<12} |")
            return 0  # figures to read, not a test: see docs/performance.md
        finally:
            if console is not None:
                await console.stop()
            await client.aclose()
            server.stop()


async def first_story(session: aiohttp.ClientSession) -> str:
    """The first story the Stories page links to (seeding may have merged others)."""
    async with session.get("/stories") as page:
        found = re.search(r'href="(/stories/s[0-9a-f]+)"', await page.text())
    assert found, "no story on the Stories page"
    return found.group(1)


async def older(session: aiohttp.ClientSession) -> str:
    """The Inbox's "older" cursor from its first page."""
    async with session.get("/inbox") as page:
        found = re.search(r'href="/inbox\?before=([0-9-]+)"', await page.text())
    assert found, "no older page in the Inbox"
    return found.group(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000, help="items in the history")
    parser.add_argument("--alerts", type=int, default=5_000, help="sent alerts in the log")
    parser.add_argument("--requests", type=int, default=30, help="requests per page")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
