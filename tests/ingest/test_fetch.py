"""Fetching feeds over real HTTP from a local server: limits, status codes, conditional GET."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ipaddress
import itertools
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.abc
import pytest
from support.feed_server import FeedServer, rss

from monitor.errors import FetchError
from monitor.ingest.fetch import (
    Address,
    Fetcher,
    FetchResult,
    Validators,
    clock_paused,
    hard_deadline,
    made_progress,
    stepping_out,
)
from monitor.model import Source

FEED = rss([{"title": "Kazakhstan tungsten", "guid": "1"}])


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    async with aiohttp.ClientSession() as session:
        yield Fetcher(session, user_agent="monitor-test/{version}")


def source(url: str, **overrides: object) -> Source:
    return Source(name="t", url=url, **overrides)  # type: ignore[arg-type]


async def test_200_returns_body_and_validators(feed_server: FeedServer, fetcher: Fetcher) -> None:
    feed_server.put("/f.xml", FEED, headers={"Last-Modified": "Sun, 22 Nov 2026 06:00:00 GMT"})
    result = await fetcher.fetch(source(feed_server.url("/f.xml")))
    assert result.status == 200
    assert result.body == FEED.encode()
    assert result.headers["etag"].startswith('"')
    assert result.headers["last-modified"] == "Sun, 22 Nov 2026 06:00:00 GMT"


async def test_user_agent_names_the_project(feed_server: FeedServer, fetcher: Fetcher) -> None:
    feed_server.put("/f.xml", FEED)
    await fetcher.fetch(source(feed_server.url("/f.xml")))
    (_, headers), *_ = feed_server.request_headers
    assert headers["User-Agent"].startswith("monitor-test/0.")


async def test_unchanged_feed_costs_a_304(feed_server: FeedServer, fetcher: Fetcher) -> None:
    feed_server.put("/f.xml", FEED)
    first = await fetcher.fetch(source(feed_server.url("/f.xml")))
    second = await fetcher.fetch(
        source(feed_server.url("/f.xml")), Validators(etag=first.headers["etag"])
    )
    assert second.not_modified
    assert second.body == b""


async def test_gzip_bodies_are_decoded(feed_server: FeedServer, fetcher: Fetcher) -> None:
    feed_server.put("/g.xml", gzip.compress(FEED.encode()), headers={"Content-Encoding": "gzip"})
    assert (await fetcher.fetch(source(feed_server.url("/g.xml")))).body == FEED.encode()


async def test_body_over_the_cap_is_cut(feed_server: FeedServer, fetcher: Fetcher) -> None:
    feed_server.put("/big.xml", b"x" * 300_000)
    with pytest.raises(FetchError, match=r"larger than the 100000 byte limit"):
        await fetcher.fetch(source(feed_server.url("/big.xml"), max_bytes=100_000))


async def test_slow_server_hits_the_total_deadline(
    feed_server: FeedServer, fetcher: Fetcher
) -> None:
    feed_server.put("/slow.xml", FEED, delay=3.0)
    with pytest.raises(FetchError, match=r"no complete response within 0\.5s"):
        await fetcher.fetch(source(feed_server.url("/slow.xml"), timeout=timedelta(seconds=0.5)))


async def test_429_carries_retry_after(feed_server: FeedServer, fetcher: Fetcher) -> None:
    feed_server.put("/busy.xml", "slow down", status=429, headers={"Retry-After": "120"})
    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(source(feed_server.url("/busy.xml")))
    assert (caught.value.status, caught.value.retry_after) == (429, 120.0)
    assert "raise the feed's 'interval'" in str(caught.value)


async def test_404_is_a_fetch_error_with_a_hint(feed_server: FeedServer, fetcher: Fetcher) -> None:
    with pytest.raises(FetchError, match=r"HTTP 404.*URL is wrong"):
        await fetcher.fetch(source(feed_server.url("/missing.xml")))


async def test_redirect_loop_is_stopped(feed_server: FeedServer, fetcher: Fetcher) -> None:
    feed_server.put("/a", "", status=302, headers={"Location": "/b"}, conditional=False)
    feed_server.put("/b", "", status=302, headers={"Location": "/a"}, conditional=False)
    with pytest.raises(FetchError, match="too many redirects"):
        await fetcher.fetch(source(feed_server.url("/a")))
    assert feed_server.requests["/a"] + feed_server.requests["/b"] <= 7


async def test_refused_connection_is_a_fetch_error(fetcher: Fetcher) -> None:
    from monitor.app.embedded_redis import free_port

    with pytest.raises(FetchError, match="cannot connect"):
        await fetcher.fetch(source(f"http://127.0.0.1:{free_port()}/f.xml"))


async def test_file_urls_read_local_feeds(tmp_path: Path, fetcher: Fetcher) -> None:
    path = tmp_path / "f.xml"
    path.write_text(FEED, encoding="utf-8")
    assert (await fetcher.fetch(source(path.as_uri()))).body == FEED.encode()
    with pytest.raises(FetchError, match="cannot read file"):
        await fetcher.fetch(source((tmp_path / "absent.xml").as_uri()))


async def test_permanent_redirects_are_reported(feed_server: FeedServer, fetcher: Fetcher) -> None:
    feed_server.put("/old.xml", "", status=301, headers={"Location": "/mid.xml"}, conditional=False)
    feed_server.put("/mid.xml", "", status=308, headers={"Location": "/new.xml"}, conditional=False)
    feed_server.put("/new.xml", FEED)
    result = await fetcher.fetch(source(feed_server.url("/old.xml")))
    assert result.body == FEED.encode()
    assert result.permanent_url == feed_server.url("/new.xml")


async def test_temporary_redirect_is_not_reported_as_a_move(
    feed_server: FeedServer, fetcher: Fetcher
) -> None:
    feed_server.put("/old.xml", "", status=302, headers={"Location": "/new.xml"}, conditional=False)
    feed_server.put("/new.xml", FEED)
    assert (await fetcher.fetch(source(feed_server.url("/old.xml")))).permanent_url is None


class LocalResolver(aiohttp.abc.AbstractResolver):
    """Connects every name to 127.0.0.1, where the test's feed server listens."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


async def public_dns(host: str, port: int) -> list[Address]:
    """What the private-address check is told: names are public, literals are themselves."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        return [ipaddress.ip_address("93.184.216.34")]


@pytest.fixture
async def public_fetcher() -> AsyncIterator[Fetcher]:
    """A fetcher for which every name is a public host, yet connects to the local server."""
    connector = aiohttp.TCPConnector(resolver=LocalResolver())
    async with aiohttp.ClientSession(connector=connector) as session:
        yield Fetcher(session, resolve=public_dns)


async def test_redirect_from_a_public_name_to_loopback_is_refused(
    feed_server: FeedServer, public_fetcher: Fetcher
) -> None:
    """A feed on a public host must not be able to steer the daemon at internal services.

    Real HTTP end to end: the feed's name reaches the local server (the connector's resolver)
    while the private-address check sees it as public, as it would be on the internet.
    """
    internal = f"http://127.0.0.1:{feed_server.port}/internal"
    feed_server.put("/f.xml", "", status=302, headers={"Location": internal}, conditional=False)
    feed_server.put("/internal", FEED)
    feed = f"http://feeds.public.example:{feed_server.port}/f.xml"
    with pytest.raises(FetchError, match=r"private or loopback address \(127.0.0.1\)"):
        await public_fetcher.fetch(source(feed))
    assert feed_server.requests["/f.xml"] == 1
    assert feed_server.requests["/internal"] == 0
    allowed = await public_fetcher.fetch(source(feed, allow_private=True))
    assert allowed.body == FEED.encode()
    assert feed_server.requests["/internal"] == 1


async def test_redirect_to_a_file_url_is_refused_even_when_private_is_allowed(
    feed_server: FeedServer, public_fetcher: Fetcher
) -> None:
    feed_server.put(
        "/f.xml", "", status=302, headers={"Location": "file:///etc/passwd"}, conditional=False
    )
    feed = f"http://feeds.public.example:{feed_server.port}/f.xml"
    for allow_private in (False, True):
        with pytest.raises(FetchError, match="refused a redirect to a file: URL"):
            await public_fetcher.fetch(source(feed, allow_private=allow_private))


async def test_a_private_feed_may_redirect_within_private_addresses(
    feed_server: FeedServer, fetcher: Fetcher
) -> None:
    hop = feed_server.url("/elsewhere.xml")
    feed_server.put("/f.xml", "", status=302, headers={"Location": hop}, conditional=False)
    feed_server.put("/elsewhere.xml", FEED)
    assert (await fetcher.fetch(source(feed_server.url("/f.xml")))).body == FEED.encode()


async def test_redirect_to_file_url_is_refused_end_to_end(
    feed_server: FeedServer, fetcher: Fetcher
) -> None:
    feed_server.put(
        "/f.xml", "", status=302, headers={"Location": "file:///etc/passwd"}, conditional=False
    )
    with pytest.raises(FetchError, match="file: URL"):
        await fetcher.fetch(source(feed_server.url("/f.xml")))


async def test_basic_auth_is_sent_to_the_feed_host(
    feed_server: FeedServer, fetcher: Fetcher
) -> None:
    feed_server.put("/private.xml", FEED)
    await fetcher.fetch(source(feed_server.url("/private.xml"), auth=("desk", "pa55word")))
    (_, headers), *_ = feed_server.request_headers
    assert headers["Authorization"] == "Basic ZGVzazpwYTU1d29yZA=="
    assert "pa55word" not in repr(source(feed_server.url("/x"), auth=("desk", "pa55word")))


async def test_a_compression_bomb_is_cut_at_the_decoded_cap(
    feed_server: FeedServer, fetcher: Fetcher
) -> None:
    bomb = gzip.compress(b"<rss>" + b" " * 50_000_000, compresslevel=9)
    assert len(bomb) < 100_000
    feed_server.put("/bomb.xml", bomb, headers={"Content-Encoding": "gzip"})
    with pytest.raises(FetchError, match="byte limit"):
        await fetcher.fetch(source(feed_server.url("/bomb.xml"), max_bytes=1_000_000))


async def test_a_server_trickling_bytes_is_cut_by_the_total_deadline(
    feed_server: FeedServer, fetcher: Fetcher
) -> None:
    feed_server.put("/trickle.xml", FEED, trickle=0.2)
    with pytest.raises(FetchError, match="no complete response"):
        await fetcher.fetch(source(feed_server.url("/trickle.xml"), timeout=timedelta(seconds=1)))


async def test_host_gap_spaces_requests_to_one_host(feed_server: FeedServer) -> None:
    feed_server.put("/f.xml", FEED)
    async with aiohttp.ClientSession() as session:
        gapped = Fetcher(session, host_gap=0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(3):
            await gapped.fetch(source(feed_server.url("/f.xml")))
        assert loop.time() - started >= 0.6


async def fetch_together(url: str, count: int, **options: Any) -> list[int]:
    """The statuses of ``count`` fetches of ``url`` started at once, each with a 0.5 s
    deadline, by one ``Fetcher(session, **options)``."""
    feeds = [source(url, timeout=timedelta(seconds=0.5)) for _ in range(count)]
    async with aiohttp.ClientSession() as session:
        fetcher = Fetcher(session, **options)
        results = await asyncio.gather(*(fetcher.fetch(feed) for feed in feeds))
    return [result.status for result in results]


async def test_waiting_for_the_hosts_turn_does_not_count_against_the_deadline(
    feed_server: FeedServer,
) -> None:
    """Many feeds on one site (Google News searches, say) take turns a gap apart; each one's
    deadline starts with its own request, or the last ones would fail as slow every pass."""
    feed_server.put("/f.xml", FEED)
    assert await fetch_together(feed_server.url("/f.xml"), 5, host_gap=0.2) == [200] * 5
    starts = feed_server.times["/f.xml"]
    assert starts[-1] - starts[0] >= 0.75  # the last waited longer than its 0.5 s deadline


async def test_per_host_limits_requests_in_flight_and_the_wait_is_not_timed(
    feed_server: FeedServer,
) -> None:
    feed_server.put("/slow.xml", FEED, delay=0.3)
    assert await fetch_together(feed_server.url("/slow.xml"), 4, per_host=1) == [200] * 4
    starts = feed_server.times["/slow.xml"]
    assert all(later - earlier >= 0.25 for earlier, later in itertools.pairwise(starts))


async def test_a_polls_hard_deadline_stops_while_its_fetch_waits_for_the_host(
    feed_server: FeedServer,
) -> None:
    """The daemon's hard deadline around each poll must not run out while the poll queues
    behind the site's other feeds: the queue is not the poll's doing."""
    feed_server.put("/f.xml", FEED)
    async with aiohttp.ClientSession() as session:
        polite = Fetcher(session, host_gap=0.2)

        async def poll(feed: Source) -> FetchResult:
            async with hard_deadline(0.5):
                return await polite.fetch(feed)

        results = await asyncio.gather(*(poll(source(feed_server.url("/f.xml"))) for _ in range(5)))
    assert [result.status for result in results] == [200] * 5


async def test_a_fetch_steps_out_only_while_it_waits_for_its_turn(feed_server: FeedServer) -> None:
    """What a caller registers with ``stepping_out`` is let go for the wait and taken back
    before the request; a fetch that need not wait does neither."""
    feed_server.put("/f.xml", FEED)
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def pause() -> AsyncIterator[None]:
        events.append("out")
        yield
        events.append("in")

    async with aiohttp.ClientSession() as session:
        polite = Fetcher(session, host_gap=0.2)
        with stepping_out(pause):
            first = asyncio.create_task(polite.fetch(source(feed_server.url("/f.xml"))))
            second = asyncio.create_task(polite.fetch(source(feed_server.url("/f.xml"))))
        await asyncio.gather(first, second)
    assert events == ["out", "in"]  # the second fetch waited 0.2 s; the first did not


async def test_a_poll_that_makes_progress_starts_its_deadline_over() -> None:
    """``made_progress`` (a parse begun, a batch recorded) gives the deadline its whole length
    again, however much of it was spent.  Read on the deadline itself: no waiting."""
    loop = asyncio.get_running_loop()
    async with hard_deadline(30.0) as deadline:
        deadline.reschedule(loop.time() + 0.5)  # most of it spent
        made_progress()
        when = deadline.when()
        assert when is not None
        assert when >= loop.time() + 29


async def test_a_polls_deadline_stops_while_it_waits_for_a_shared_turn() -> None:
    """``clock_paused`` (a wait for a parser process) stops the deadline's clock, progress
    leaves a stopped clock alone, and the clock starts again no earlier than where it stood;
    outside a deadline neither does anything."""
    async with hard_deadline(30.0) as deadline:
        before = deadline.when()
        assert before is not None
        async with clock_paused():
            assert deadline.when() is None
            made_progress()
            assert deadline.when() is None
        after = deadline.when()
        assert after is not None
        assert after >= before
    async with clock_paused():
        made_progress()


async def test_a_polls_hard_deadline_still_cuts_a_hung_request(
    feed_server: FeedServer, fetcher: Fetcher
) -> None:
    feed_server.put("/hung.xml", FEED, delay=2.0)
    with pytest.raises(TimeoutError):
        async with hard_deadline(0.3):
            await fetcher.fetch(source(feed_server.url("/hung.xml"), timeout=timedelta(seconds=5)))


async def test_the_deadline_spans_every_hop_of_a_redirect(
    feed_server: FeedServer, fetcher: Fetcher
) -> None:
    """Two hops of 0.3 s each exceed a 0.5 s deadline, though neither does alone."""
    feed_server.put("/old.xml", b"", status=301, headers={"Location": "/new.xml"}, delay=0.3)
    feed_server.put("/new.xml", FEED, delay=0.3)
    with pytest.raises(FetchError, match=r"no complete response within 0\.5s"):
        await fetcher.fetch(source(feed_server.url("/old.xml"), timeout=timedelta(seconds=0.5)))
    assert feed_server.requests["/new.xml"] == 1


async def test_last_modified_alone_also_earns_a_304(
    feed_server: FeedServer, fetcher: Fetcher
) -> None:
    stamp = "Sun, 22 Nov 2026 06:00:00 GMT"
    feed_server.put("/lm.xml", FEED, headers={"Last-Modified": stamp})
    result = await fetcher.fetch(
        source(feed_server.url("/lm.xml")), Validators(last_modified=stamp)
    )
    assert result.not_modified
    (_, headers), *_ = feed_server.request_headers
    assert headers["If-Modified-Since"] == stamp
    assert "If-None-Match" not in headers
