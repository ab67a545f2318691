"""The daemon run in process: alerts never wait behind feed fetches for a connection, feeds
of one busy site do not hold up every other site's, and a shutdown that cancels a hung poll
ends it quietly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import structlog.testing
from support.feed_server import FeedServer, rss
from support.servers import SlackServer

from monitor.app.daemon import Monitor, PollSlot
from monitor.app.embedded_redis import EmbeddedRedis
from monitor.model import Source
from monitor.settings import load_settings

HANG = 4.0  # seconds the slow feeds take: longer than Slack's 1 s timeout here


def config(tmp_path: Path, feed_server: FeedServer, slack: SlackServer, redis_url: str) -> Path:
    """Two fetches in flight at most (``max_concurrency: 2``), and Slack given 1 s."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {id: t, title: T, severity: high, match: {any: [tungsten]}}\n")
    feeds = "\n".join(
        f'  - {{name: {name}, url: "{feed_server.url(f"/{name}.xml")}"}}'
        for name in ("news", "slow1", "slow2")
    )
    path = tmp_path / "monitor.yaml"
    path.write_text(
        f'redis: {{url: "{redis_url}"}}\nfeeds:\n{feeds}\n'
        f'rules: {{paths: ["{rules}"]}}\n'
        f'channels: {{slack: {{webhook_url: "{slack.url}", timeout: 1s, rate_limit: 0s}}}}\n'
        "ingest: {workers: 0, backfill: off}\n"
        "http: {max_concurrency: 2, host_gap: 0s}\n"
    )
    return path


async def requested(feed_server: FeedServer, *paths: str) -> None:
    """Until the feed server has been asked for every one of ``paths`` (its threads count
    requests; there is no event to await)."""
    while not all(feed_server.requests[path] for path in paths):  # noqa: ASYNC110
        await asyncio.sleep(0.02)


async def test_an_alert_is_sent_while_every_fetch_connection_is_busy(
    tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer, own_redis: EmbeddedRedis
) -> None:
    """A burst of slow feeds can hold every connection the fetches may use; Slack posts
    have connections of their own, or the alert would wait (here, time out) behind them."""
    feed_server.put("/news.xml", rss([{"title": "Tungsten tender", "guid": "1"}]))
    for name in ("slow1", "slow2"):
        feed_server.put(f"/{name}.xml", rss([{"title": "Weather", "guid": name}]), delay=HANG)
    settings = load_settings(config(tmp_path, feed_server, slack_server, own_redis.url), env={})
    async with Monitor(settings) as daemon:
        sources: dict[str, Source] = {source.name: source for source in daemon.sources}
        assert (await daemon.poll(sources["news"])).matches == 1
        slow = [asyncio.create_task(daemon.poll(sources[name])) for name in ("slow1", "slow2")]
        await requested(feed_server, "/slow1.xml", "/slow2.xml")
        # Both fetches now hold a connection for HANG seconds.
        report = await daemon.deliver_due()
        busy = [not task.done() for task in slow]
        await asyncio.gather(*slow)
    assert report.delivered == 1, report
    assert busy == [True, True]  # delivered while both fetches were still in flight
    assert ["Tungsten tender" in request.body.decode() for request in slack_server.requests] == [
        True
    ]


async def test_a_poll_cancelled_by_the_shutdown_ends_quietly(
    tmp_path: Path, feed_server: FeedServer, slack_server: SlackServer, own_redis: EmbeddedRedis
) -> None:
    """Past the shutdown's grace period, polls still running are cancelled; the poll job
    then ends without an exception, which APScheduler would log as a traceback per poll.
    Cancelled at any other time, it stays cancelled."""
    for name in ("slow1", "slow2"):
        feed_server.put(f"/{name}.xml", rss([{"title": "Weather", "guid": name}]), delay=HANG)
    settings = load_settings(config(tmp_path, feed_server, slack_server, own_redis.url), env={})
    async with Monitor(settings) as daemon:
        sources = {source.name: source for source in daemon.sources}
        running = asyncio.create_task(daemon._poll_job(sources["slow1"]))
        await requested(feed_server, "/slow1.xml")
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        stopping = asyncio.create_task(daemon._poll_job(sources["slow2"]))
        await requested(feed_server, "/slow2.xml")
        daemon.request_stop()
        stopping.cancel()
        await stopping
        assert not stopping.cancelled()


async def test_feeds_waiting_for_a_busy_hosts_turn_leave_their_places_to_other_sites(
    tmp_path: Path, feed_server: FeedServer, own_redis: EmbeddedRedis
) -> None:
    """Five feeds on one host, turns 0.3 s apart, and two polls at once: the four waiting
    for their turn lend their places, so the other site's feed is fetched at once, not
    after the busy host's queue has drained."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {id: t, title: T, severity: high, match: {any: [tungsten]}}\n")
    with FeedServer() as other_site:
        other_site.put("/other.xml", rss([{"title": "Weather", "guid": "o"}]))
        busy = [f"/busy{number}.xml" for number in range(5)]
        lines = []
        for number, path in enumerate(busy):
            feed_server.put(path, rss([{"title": "Weather", "guid": path}]))
            lines.append(f'  - {{name: busy{number}, url: "{feed_server.url(path)}"}}')
        lines.append(f'  - {{name: other, url: "{other_site.url("/other.xml")}"}}')
        config = tmp_path / "monitor.yaml"
        config.write_text(
            f'redis: {{url: "{own_redis.url}"}}\nfeeds:\n' + "\n".join(lines) + "\n"
            f'rules: {{paths: ["{rules}"]}}\nchannels: {{console: {{}}}}\n'
            "ingest: {workers: 0}\nhttp: {max_concurrency: 2, host_gap: 0.3s}\n"
        )
        async with Monitor(load_settings(config, env={})) as daemon:
            results = await daemon.poll_all()
        other_at = other_site.times["/other.xml"][0]
    assert [result.status for result in results] == ["ok"] * 6
    busy_at = sorted(feed_server.times[path][0] for path in busy)
    assert other_at < busy_at[1]  # before the busy host's second turn


async def free_places(places: asyncio.Semaphore) -> int:
    """How many places are free now (taken one by one, then given back)."""
    taken = 0
    while not places.locked():
        await places.acquire()
        taken += 1
    for _ in range(taken):
        places.release()
    return taken


async def test_a_poll_slot_is_given_back_once_whatever_happens_while_it_is_lent() -> None:
    places = asyncio.Semaphore(1)
    async with PollSlot(places) as slot:
        async with slot.lent():
            assert not places.locked()  # another poll may run meanwhile
        assert places.locked()  # taken back before the request
    assert not places.locked()

    with pytest.raises(RuntimeError):
        async with PollSlot(places) as slot, slot.lent():
            raise RuntimeError("the wait failed")
    assert await free_places(places) == 1  # given back once, not twice

    async def lend_while_full() -> None:
        async with PollSlot(places) as slot, slot.lent():
            await places.acquire()  # someone else takes the place meanwhile

    waiting = asyncio.create_task(lend_while_full())
    await asyncio.sleep(0.05)  # now waiting to take a place back
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    places.release()  # the someone else is done
    assert await free_places(places) == 1


async def test_the_daemon_warns_at_start_of_a_host_its_feeds_would_overrun(
    tmp_path: Path, feed_server: FeedServer, own_redis: EmbeddedRedis
) -> None:
    """Three feeds every 10 s on one host need 18 turns a minute; a 5 s gap gives 12."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {id: t, title: T, severity: high, match: {any: [tungsten]}}\n")
    feeds = "\n".join(
        f'  - {{name: f{number}, url: "{feed_server.url(f"/f{number}.xml")}", interval: 10s}}'
        for number in range(3)
    )
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f'redis: {{url: "{own_redis.url}"}}\nfeeds:\n{feeds}\n'
        f'rules: {{paths: ["{rules}"]}}\nchannels: {{console: {{}}}}\n'
        "ingest: {workers: 0}\nhttp: {host_gap: 5s}\n"
    )
    with structlog.testing.capture_logs() as logged:
        async with Monitor(load_settings(config, env={})):
            pass
    (warning,) = [entry for entry in logged if "host_gap" in entry["event"]]
    assert warning["log_level"] == "warning"
    assert warning["host"] == f"127.0.0.1:{feed_server.port}"
    assert (warning["feeds"], warning["turns_per_minute_needed"]) == (3, 18.0)
    assert warning["turns_per_minute_allowed"] == 12.0
