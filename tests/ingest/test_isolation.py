"""One bad feed never stops the others (issue 18, items 1, 2 and 9, ingest side): a hung
``file:`` read, a body of 190,000 tiny items, a parse past its CPU budget, a body cut short by
a lying Content-Length and a flood of response headers each fail their own poll, clearly,
while a good feed polled at the same time is recorded and alerts as usual.  Real servers on
127.0.0.1 only; the misbehaving ones are raw asyncio servers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from support.commands import REPO, run_monitor
from support.feed_server import FeedServer, rss
from support.samples import KZ_TUNGSTEN_RULES
from support.waiting import wait_until

from monitor.errors import FetchError
from monitor.ingest.fetch import Fetcher, FetchResult, FileReaders
from monitor.ingest.parse import cut_entries, truncated_ending
from monitor.ingest.poll import PollContext, poll_once
from monitor.ingest.pool.parsers import ParserPool
from monitor.ingest.state import Store
from monitor.model import PollResult, Source
from monitor.redisio import Keys
from monitor.rules import RuleSet, load_rules

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
GOOD = [{"title": "Kazakhstan tungsten tender", "guid": "g1", "link": "https://w.example/1"}]
#: What a good feed's poll takes here, with room for a loaded two-core machine.
GOOD_POLL_SECONDS = 5.0


@pytest.fixture
def rules(tmp_path: Path) -> RuleSet:
    (tmp_path / "rules.yaml").write_text(KZ_TUNGSTEN_RULES, encoding="utf-8")
    return load_rules([tmp_path / "rules.yaml"])


@pytest.fixture
async def context(redis_client: aioredis.Redis) -> AsyncIterator[PollContext]:
    await redis_client.flushdb()
    async with aiohttp.ClientSession() as session:
        yield PollContext(Fetcher(session), Store(redis_client, Keys("iso")), lambda: NOW)


def tiny_items(count: int) -> bytes:
    """A body of ``count`` tiny items: about 10 MiB for 190,000."""
    items = b"".join(
        b"<item><guid>t%d</guid><title>t%d</title></item>" % (n, n) for n in range(count)
    )
    return (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        + items
        + (b"</channel></rss>")
    )


async def timed(poll: Awaitable[PollResult]) -> tuple[PollResult, float]:
    started = time.monotonic()
    result = await poll
    return result, time.monotonic() - started


async def test_a_hung_file_feed_times_out_while_a_good_feed_alerts(
    tmp_path: Path, feed_server: FeedServer, context: PollContext, rules: RuleSet
) -> None:
    """A ``file:`` feed on a FIFO nobody writes to (a hung mount behaves so) fails with
    "timed out reading file:..." after its own deadline and backs off; the good feed beside
    it is recorded and queues its alert within its usual time."""
    fifo = tmp_path / "hung.xml"
    os.mkfifo(fifo)
    feed_server.put("/good.xml", rss(GOOD, now=NOW))
    hung = Source(name="hung", url=f"file://{fifo}", timeout=timedelta(seconds=1))
    good = Source(name="good", url=feed_server.url("/good.xml"))
    try:
        async with asyncio.timeout(20):
            (bad, _), (fine, took) = await asyncio.gather(
                timed(poll_once(hung, rules, context)), timed(poll_once(good, rules, context))
            )
    finally:
        _release(fifo)
    assert bad.status == "error"
    assert bad.error is not None
    assert f"timed out reading file:{fifo}" in bad.error
    assert (await context.store.feed_state("hung")).next_poll_at is not None
    assert (fine.status, fine.new_items, fine.matches) == ("ok", 1, 1)
    assert took < GOOD_POLL_SECONDS


async def test_hung_file_reads_hold_at_most_their_own_threads(
    tmp_path: Path, context: PollContext, rules: RuleSet
) -> None:
    """Hung reads take only the ``file:`` readers' threads, never the default executor's
    (which SMTP and other blocking work share): it still answers at once."""
    fifos = [tmp_path / f"hung{n}.xml" for n in range(8)]
    for fifo in fifos:
        os.mkfifo(fifo)
    sources = [
        Source(name=f"hung{n}", url=f"file://{fifo}", timeout=timedelta(seconds=1))
        for n, fifo in enumerate(fifos)
    ]
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(20):
            results = await asyncio.gather(*(poll_once(s, rules, context) for s in sources))
            await asyncio.wait_for(loop.run_in_executor(None, lambda: 42), 2)
    finally:
        for fifo in fifos:
            _release(fifo)
    assert all(r.status == "error" and "timed out reading" in str(r.error) for r in results)


def _release(fifo: Path) -> None:
    """Open the FIFO's writing end, so that a thread blocked opening it goes on (and ends)."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


async def test_a_body_of_190000_tiny_items_is_cut_at_max_items_quickly(
    feed_server: FeedServer, context: PollContext, rules: RuleSet
) -> None:
    """About 10 MiB of 190,000 tiny items: only ``max_items`` are read and built (feedparser
    alone would take minutes on all of them), the poll says the rest come next poll, and a
    good feed polled at the same time keeps its pace."""
    body = tiny_items(190_000)
    assert 9 * 2**20 < len(body) < 12 * 2**20
    feed_server.put("/flood.xml", body)
    feed_server.put("/good.xml", rss(GOOD, now=NOW))
    flood = Source(name="flood", url=feed_server.url("/flood.xml"), max_bytes=16 * 2**20)
    good = Source(name="good", url=feed_server.url("/good.xml"))
    async with asyncio.timeout(60):
        (big, big_took), (fine, took) = await asyncio.gather(
            timed(poll_once(flood, rules, context)), timed(poll_once(good, rules, context))
        )
    assert (big.status, big.new_items) == ("ok", 500)
    assert any("more than 500" in w for w in big.warnings)
    assert big_took < 15
    assert (fine.status, fine.matches) == ("ok", 1)
    assert took < 15
    again = await poll_once(flood, rules, context)  # goes on past what was read
    assert (again.status, again.new_items) == ("ok", 500)


async def test_a_parse_past_its_cpu_budget_fails_and_the_worker_serves_the_next_feed(
    rules: RuleSet,
) -> None:
    """A preparation that runs out of its CPU budget comes back as an error naming the budget
    and the feed; the same parser process then prepares a good feed as usual."""
    heavy = Source(name="heavy", url="https://heavy.example/feed.xml", max_items=5000)
    good = Source(name="good", url="https://good.example/feed.xml")
    pool = ParserPool(1, rules, parse_budget=0.05)
    try:
        slow = await pool.prepare(heavy, _ok(tiny_items(5000)), NOW, rules, frozenset())
        pids = pool.pids()
        fine = await pool.prepare(good, _ok(rss(GOOD, now=NOW).encode()), NOW, rules, frozenset())
        assert pool.pids() == pids  # the same process, not a replacement
    finally:
        pool.close()
    assert slow.error is not None
    assert "'heavy'" in slow.error
    assert "0.05s CPU budget" in slow.error
    assert "ingest.parse_budget" in slow.error
    assert fine.error is None
    assert len(fine.items) == 1


def _ok(body: bytes) -> FetchResult:
    return FetchResult(200, body, {"content-type": "application/rss+xml"}, "")


Reply = Callable[[asyncio.StreamWriter], None]


@contextlib.asynccontextmanager
async def raw_server(reply: Reply) -> AsyncIterator[str]:
    """A raw HTTP/1.1 server on 127.0.0.1 that answers every request with ``reply``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            reply(writer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/feed.xml"
    finally:
        server.close()


FEED = rss(GOOD, now=NOW).encode()


def _short_length(writer: asyncio.StreamWriter) -> None:
    """Content-Length says less than the body: the client reads a cut body."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: 60\r\n\r\n"
    writer.write(head + FEED)


def _long_length(writer: asyncio.StreamWriter) -> None:
    """Content-Length says more than the server sends before it hangs up."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: %d\r\n\r\n"
    writer.write(head % (len(FEED) * 2) + FEED)


def _header_flood(writer: asyncio.StreamWriter) -> None:
    headers = b"".join(b"X-Flood-%d: v\r\n" % n for n in range(20_000))
    writer.write(b"HTTP/1.1 200 OK\r\n" + headers + b"Content-Length: 2\r\n\r\nok")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (_short_length, "truncated"),
        (_long_length, "truncated"),
        (_header_flood, "header flood"),
    ],
)
async def test_a_misbehaving_server_fails_the_poll_saying_what_it_did(
    reply: Reply, expected: str, context: PollContext, rules: RuleSet
) -> None:
    """A body cut short by a lying Content-Length is a failed poll saying "truncated" (not
    an ok poll with no entries); 20,000 response headers are reported as a header flood."""
    async with raw_server(reply) as url:
        result = await poll_once(Source(name="liar", url=url, allow_private=True), rules, context)
    assert result.status == "error"
    assert expected in str(result.error)


@pytest.mark.parametrize(
    ("body", "limit", "entries", "cut"),
    [
        (tiny_items(3), 5, 3, False),
        (tiny_items(3), 3, 3, False),
        (tiny_items(7), 3, 3, True),
        (
            b'<feed xmlns="http://www.w3.org/2005/Atom">'
            + b"<entry><id>a</id></entry>" * 4
            + b"</feed>",
            2,
            2,
            True,
        ),
        (b"<html><item></item><item></item></html>", 1, None, False),
    ],
)
def test_cut_entries_keeps_the_first_entries_of_a_well_formed_document(
    body: bytes, limit: int, entries: int | None, cut: bool
) -> None:
    """Cut after the limit-th entry and closed as the root requires; other roots are kept."""
    result, was_cut = cut_entries(body, limit)
    assert was_cut is cut
    if not cut:
        assert result == body
        return
    assert result.count(b"</item>") + result.count(b"</entry>") == entries
    assert truncated_ending(result, entries or 0) is None


@pytest.mark.parametrize(
    ("body", "truncated"),
    [
        (FEED, False),
        (FEED[:60], True),
        (FEED[: FEED.index(b"</item>")], True),
        (FEED.replace(b"</rss>", b""), False),  # complete entries, a forgotten </rss>
        (b'<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>', True),
    ],
)
def test_truncated_ending_tells_a_cut_body(body: bytes, truncated: bool) -> None:
    entries = body.count(b"</item>")
    assert (truncated_ending(body, entries) is not None) is truncated


@pytest.mark.slow
def test_run_once_with_six_hung_file_feeds_finishes_and_alerts_the_good_ones(
    tmp_path: Path,
) -> None:
    """`monitor run --once` beside six file: feeds whose reads block for ever (FIFOs nobody
    writes, as a hung network mount behaves): the run ends, the sample feeds' alerts print,
    and each hung feed is a failed poll, not a hung process."""
    fifos = []
    for number in range(6):
        fifo = tmp_path / f"hung-{number}.xml"
        os.mkfifo(fifo)
        fifos.append(fifo)
    offline = REPO / "examples" / "offline"
    feeds = [f'{{name: sample-en, url: "file:{offline}/feeds/en.xml"}}']
    feeds += [
        f'{{name: hung-{number}, url: "file:{fifo}", timeout: 2s}}'
        for number, fifo in enumerate(fifos)
    ]
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f'redis: {{url: embedded, data_dir: "{tmp_path / "redis"}"}}\n'
        f"feeds: [{', '.join(feeds)}]\n"
        f'rules: {{paths: ["{REPO / "rules"}"]}}\n'
        "channels: {console: {}}\nroutes: [{channels: [console]}]\n"
        'health: {port: 0}\ningest: {backfill: "off"}\n'
    )
    result = run_monitor("run", "--once", "-c", str(config), timeout=120)
    assert "Upper Kairakty" in result.stdout, result.stderr[-2000:]
    assert result.stderr.count("timed out reading file:") >= 6


def test_a_hung_read_released_after_its_loop_closed_ends_quietly(tmp_path: Path) -> None:
    """``run --once`` ends (its loop closes) while a ``file:`` read still hangs; when the
    mount comes back the thread has nobody to tell, and must end without an error (seen
    under load as "Event loop is closed" raised in the reader thread)."""
    fifo = tmp_path / "hung.xml"
    os.mkfifo(fifo)
    readers = FileReaders(1)
    hung = Source(name="hung", url=f"file://{fifo}", timeout=timedelta(milliseconds=200))

    async def read_once() -> None:
        with pytest.raises(FetchError, match="timed out reading"):
            await readers.read(hung)

    asyncio.run(read_once())  # the loop is closed now; the reader thread still blocks
    failures: list[threading.ExceptHookArgs] = []
    previous = threading.excepthook
    threading.excepthook = failures.append
    try:
        _release(fifo)
        wait_until(
            lambda: not any(t.name == "file-read" for t in threading.enumerate()),
            within=30,
            what="the reader thread to end",
        )
    finally:
        threading.excepthook = previous
    assert [f.exc_value for f in failures] == []
