"""Fetching feeds over real HTTP from a local server: limits, status codes, conditional GET."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from support.feed_server import FeedServer, rss

from monitor.errors import FetchError
from monitor.fetch import Fetcher, Validators
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
    from monitor.embedded_redis import free_port

    with pytest.raises(FetchError, match="cannot connect"):
        await fetcher.fetch(source(f"http://127.0.0.1:{free_port()}/f.xml"))


async def test_file_urls_read_local_feeds(tmp_path: Path, fetcher: Fetcher) -> None:
    path = tmp_path / "f.xml"
    path.write_text(FEED, encoding="utf-8")
    assert (await fetcher.fetch(source(path.as_uri()))).body == FEED.encode()
    with pytest.raises(FetchError, match="cannot read file"):
        await fetcher.fetch(source((tmp_path / "absent.xml").as_uri()))
