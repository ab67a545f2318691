"""One poll and one delivery pass, in process, against a real feed server and a private Redis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from support.feed_server import FeedServer, rss
from support.samples import KZ_TUNGSTEN_RULES

from monitor.deliver.queue import AlertQueue
from monitor.deliver.worker import DeliveryPolicy, DeliveryWorker
from monitor.errors import PermanentDeliveryError, TransientDeliveryError
from monitor.ingest.fetch import Fetcher
from monitor.ingest.poll import PollContext, poll_once
from monitor.ingest.state import Store
from monitor.model import Match, PageSelectors, Source
from monitor.redisio import Keys
from monitor.rules import RuleSet, load_rules
from monitor.stories.store import StoryStore

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
RULES = KZ_TUNGSTEN_RULES


@pytest.fixture
def rules(tmp_path: Path) -> RuleSet:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    return load_rules([tmp_path / "rules.yaml"])


@pytest.fixture
async def queue(redis_client: aioredis.Redis) -> AlertQueue:
    queue = AlertQueue(redis_client, Keys("p"))
    await queue.ensure_group()
    return queue


@pytest.fixture
async def context(redis_client: aioredis.Redis, queue: AlertQueue) -> AsyncIterator[PollContext]:
    store = Store(redis_client, Keys("p"))
    async with aiohttp.ClientSession() as session:
        yield PollContext(Fetcher(session), store, lambda: NOW)


ITEMS = [
    {"title": "Kazakhstan tungsten tender", "guid": "1", "link": "https://w.example/1"},
    {"title": "Wheat in Kazakhstan", "guid": "2", "link": "https://w.example/2"},
]


async def test_first_poll_queues_matches_then_304_costs_nothing(
    feed_server: FeedServer, context: PollContext, rules: RuleSet
) -> None:
    feed_server.put("/f.xml", rss(ITEMS, now=NOW))
    source = Source(name="wire", url=feed_server.url("/f.xml"))
    first = await poll_once(source, rules, context)
    assert (first.status, first.entries, first.new_items, first.matches) == ("ok", 2, 2, 1)
    second = await poll_once(source, rules, context)
    assert (second.status, second.http_status, second.new_items) == ("not-modified", 304, 0)
    assert (await AlertQueue(context.store.client, Keys("p")).stream_counts())["queued"] == 1


async def test_changed_feed_yields_only_the_new_item(
    feed_server: FeedServer, context: PollContext, rules: RuleSet
) -> None:
    source = Source(name="wire", url=feed_server.url("/f.xml"))
    feed_server.put("/f.xml", rss(ITEMS, now=NOW))
    await poll_once(source, rules, context)
    newer = {"title": "Kazakhstan tungsten JV signed", "guid": "3", "link": "https://w.example/3"}
    feed_server.put("/f.xml", rss([newer, *ITEMS], now=NOW))
    result = await poll_once(source, rules, context)
    assert (result.entries, result.new_items, result.matches) == (3, 1, 1)
    assert result.matched_rules == (rules.rules[0].id,)


async def test_a_broken_feed_is_an_error_result_on_its_health(
    feed_server: FeedServer, context: PollContext, rules: RuleSet
) -> None:
    feed_server.put("/html", "<html><body>Moved</body></html>", content_type="text/html")
    source = Source(name="broken", url=feed_server.url("/html"))
    result = await poll_once(source, rules, context)
    assert result.status == "error"
    assert "HTML page" in (result.error or "")
    state = await context.store.feed_state("broken")
    assert state.failures == 1
    assert "HTML page" in (state.last_error or "")


async def test_an_unexpected_error_fails_only_that_feed_and_keeps_its_secrets(
    feed_server: FeedServer, context: PollContext, rules: RuleSet
) -> None:
    """aiohttp refuses a URL with credentials and an Authorization header together (a
    ValueError, not a feed error).  That feed's poll fails and is recorded like any other
    failure, without the password; it is not raised into the pass, where it would stop every
    other feed.  The good feed polled beside it is unaffected."""
    feed_server.put("/feed.xml", rss(ITEMS))
    good = Source(name="good", url=feed_server.url("/feed.xml"))
    odd = Source(
        name="odd",
        url=feed_server.url("/feed.xml").replace("http://", "http://reader:hunter2@"),
        headers=(("Authorization", "Bearer tok-123"),),
    )
    failed = await poll_once(odd, rules, context)
    assert failed.status == "error"
    assert "unexpected ValueError" in (failed.error or "")
    state = await context.store.feed_state("odd")
    assert state.failures == 1
    for secret in ("hunter2", "tok-123"):
        assert secret not in (failed.error or "")
        assert secret not in (state.last_error or "")
    assert (await poll_once(good, rules, context)).status == "ok"


class RecordingChannel:
    """A pure in-memory channel for worker logic; real channels are tested on real servers."""

    def __init__(self, name: str, failures: list[Exception] | None = None) -> None:
        self.name = name
        self.sent: list[Match] = []
        self.failures = failures or []

    async def send(self, match: Match) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(match)

    async def close(self) -> None:
        """Nothing to release."""


async def queue_one(feed_server: FeedServer, context: PollContext, rules: RuleSet) -> None:
    feed_server.put("/f.xml", rss(ITEMS, now=NOW))
    await poll_once(Source(name="wire", url=feed_server.url("/f.xml")), rules, context)


def worker(queue: AlertQueue, *channels: RecordingChannel) -> DeliveryWorker:
    policy = DeliveryPolicy(routes=(tuple(c.name for c in channels),), claim_idle=timedelta(0))
    return DeliveryWorker(queue, {c.name: c for c in channels}, policy, consumer="w")


async def test_worker_delivers_each_match_once_per_channel(
    feed_server: FeedServer, context: PollContext, rules: RuleSet, queue: AlertQueue
) -> None:
    await queue_one(feed_server, context, rules)
    slack, email = RecordingChannel("slack"), RecordingChannel("email")
    report = await worker(queue, slack, email).run_once()
    assert (report.read, report.delivered) == (1, 1)
    assert [m.rule_id for m in slack.sent] == [m.rule_id for m in email.sent] == ["kz-tungsten"]
    assert (await worker(queue, slack, email).run_once()).read == 0
    assert await queue.stream_counts() == {"queued": 0, "pending": 0, "dead": 0}


async def test_transient_failure_retries_without_resending_other_channels(
    feed_server: FeedServer, context: PollContext, rules: RuleSet, queue: AlertQueue
) -> None:
    await queue_one(feed_server, context, rules)
    slack = RecordingChannel("slack", [TransientDeliveryError("slack", "HTTP 500")])
    email = RecordingChannel("email")
    first = await worker(queue, slack, email).run_once()
    assert (first.delivered, first.failed) == (0, 1)
    second = await worker(queue, slack, email).run_once()
    assert second.delivered == 1
    assert (len(slack.sent), len(email.sent)) == (1, 1)


async def test_permanent_failure_dead_letters_that_channel_only(
    feed_server: FeedServer, context: PollContext, rules: RuleSet, queue: AlertQueue
) -> None:
    await queue_one(feed_server, context, rules)
    slack = RecordingChannel("slack", [PermanentDeliveryError("slack", "no_service")])
    email = RecordingChannel("email")
    report = await worker(queue, slack, email).run_once()
    assert (report.dead, len(email.sent)) == (1, 1)
    assert await queue.stream_counts() == {"queued": 0, "pending": 0, "dead": 1}


def dated(number: int, when: str) -> dict[str, str]:
    return {
        "title": f"Kazakhstan tungsten story {number}",
        "guid": f"d-{number}",
        "link": f"https://w.example/d/{number}",
        "date": when,
    }


async def test_a_new_feed_does_not_flood_with_its_archive(
    feed_server: FeedServer, context: PollContext, rules: RuleSet
) -> None:
    old = format_datetime(NOW - timedelta(days=3), usegmt=True)  # recorded, not alerted
    recent = format_datetime(NOW - timedelta(hours=3), usegmt=True)
    feed_server.put("/f.xml", rss([dated(1, old), dated(2, old), dated(3, recent)]))
    source = Source(name="new", url=feed_server.url("/f.xml"))
    result = await poll_once(source, rules, context)
    assert (result.new_items, result.matches) == (3, 1)
    # Once the feed is known, an old item it newly shows is news to us and does alert.
    feed_server.put("/f.xml", rss([dated(4, old), dated(1, old)]))
    again = await poll_once(source, rules, context)
    assert (again.new_items, again.matches) == (1, 1)


async def test_items_past_the_per_poll_cap_arrive_on_the_next_poll(
    feed_server: FeedServer, context: PollContext, rules: RuleSet
) -> None:
    recent = format_datetime(NOW - timedelta(hours=3), usegmt=True)
    feed_server.put("/f.xml", rss([dated(n, recent) for n in range(7)]))
    source = Source(name="big", url=feed_server.url("/f.xml"), max_items=3)
    seen = [(await poll_once(source, rules, context)).new_items for _ in range(4)]
    assert seen == [3, 3, 1, 0]


async def test_a_failing_feed_backs_off_and_skips_ticks_until_due(
    feed_server: FeedServer, context: PollContext, rules: RuleSet
) -> None:
    feed_server.put("/f.xml", "busy", status=429, headers={"Retry-After": "3600"})
    source = Source(name="busy", url=feed_server.url("/f.xml"))
    failed = await poll_once(source, rules, context)
    assert (failed.status, failed.http_status) == ("error", 429)
    state = await context.store.feed_state("busy")
    assert state.next_poll_at == NOW + timedelta(hours=1)
    skipped = await poll_once(source, rules, context, due_only=True)
    assert skipped.status == "skipped"
    assert feed_server.requests["/f.xml"] == 1
    forced = await poll_once(source, rules, context)  # --once polls whatever the schedule
    assert forced.status == "error"
    assert (await context.store.feed_state("busy")).failures == 2


async def test_a_poll_that_ran_late_does_not_make_its_feed_skip_the_next_tick(
    feed_server: FeedServer, redis_client: aioredis.Redis, rules: RuleSet
) -> None:
    """Thousands of feeds fall due together at start-up and wait for a poll slot; the next
    poll is planned from the tick, so the next tick (an interval later) is still due."""
    feed_server.put("/f.xml", rss(ITEMS, now=NOW))
    source = Source(name="late", url=feed_server.url("/f.xml"), interval=timedelta(minutes=10))
    tick = NOW
    clock = {"now": tick + timedelta(minutes=9)}  # the poll got its turn 9 minutes late
    async with aiohttp.ClientSession() as session:
        context = PollContext(
            Fetcher(session), Store(redis_client, Keys("p")), lambda: clock["now"]
        )
        first = await poll_once(source, rules, context, due_only=True, tick=tick)
        assert first.status == "ok"
        next_tick = tick + timedelta(minutes=10)
        clock["now"] = next_tick
        second = await poll_once(source, rules, context, due_only=True, tick=next_tick)
    assert second.status == "not-modified"
    assert feed_server.requests["/f.xml"] == 2


async def test_a_permanent_move_is_recorded_and_warned(
    feed_server: FeedServer, context: PollContext, rules: RuleSet
) -> None:
    feed_server.put("/old", "", status=301, headers={"Location": "/new"}, conditional=False)
    feed_server.put("/new", rss(ITEMS, now=NOW))
    result = await poll_once(Source(name="moved", url=feed_server.url("/old")), rules, context)
    assert any("moved permanently" in warning for warning in result.warnings)
    assert (await context.store.feed_state("moved")).moved_to == feed_server.url("/new")


PAGE = """<!DOCTYPE html><html lang="ru"><head><meta charset="windows-1251">
<title>Новости</title></head><body>
<div class="news"><a href="/n/1"><h3>Казахстан: вольфрам, тендер</h3></a>
  <time datetime="2026-11-22T08:00:00+05:00">22.11</time><p class="lead">Итоги торгов.</p></div>
<div class="news"><a href="/n/2"><h3>Погода в Астане</h3></a></div>
<div class="news"><span>no link here</span></div>
</body></html>"""


async def test_a_page_source_scrapes_items_with_css_selectors(
    feed_server: FeedServer, context: PollContext, tmp_path: Path
) -> None:
    (tmp_path / "ru.yaml").write_text(
        "rules:\n  - {id: ru, title: RU, severity: low, match: {all: [казахстан*, вольфрам*]}}\n",
        encoding="utf-8",
    )
    rules = load_rules([tmp_path / "ru.yaml"])
    feed_server.put("/news", PAGE.encode("cp1251"), content_type="text/html; charset=windows-1251")
    selectors = PageSelectors(item="div.news", title="h3", link="a", date="time", summary=".lead")
    source = Source(name="page", url=feed_server.url("/news"), kind="page", page=selectors)
    result = await poll_once(source, rules, context)
    assert (result.status, result.entries, result.new_items, result.matches) == ("ok", 2, 2, 1)


async def test_a_redesigned_page_fails_loudly(
    feed_server: FeedServer, context: PollContext, rules: RuleSet
) -> None:
    feed_server.put(
        "/news", "<html><body><p>new layout</p></body></html>", content_type="text/html"
    )
    selectors = PageSelectors(item="div.news", title="h3")
    source = Source(name="page", url=feed_server.url("/news"), kind="page", page=selectors)
    result = await poll_once(source, rules, context)
    assert result.status == "error"
    assert "found no items" in (result.error or "")


async def test_a_feed_failing_past_the_threshold_alerts_once_then_on_recovery(
    feed_server: FeedServer, context: PollContext, rules: RuleSet, queue: AlertQueue
) -> None:
    ctx = replace(context, health_alert_after=timedelta(0))
    source = Source(name="flaky", url=feed_server.url("/f.xml"))
    feed_server.put("/f.xml", "down", status=500, content_type="text/plain")
    await poll_once(source, rules, ctx)
    await poll_once(source, rules, ctx)
    feed_server.put("/f.xml", rss(ITEMS, now=NOW))
    await poll_once(source, rules, ctx)
    await poll_once(source, rules, ctx)
    queued = await queue.read_matches("w", 20, None)
    health = [
        entry.match for entry in queued if entry.match and entry.match.rule_id == "feed-health"
    ]
    assert [m.tags[-1] for m in health] == ["failing", "recovered"]
    assert "Feed flaky has been failing" in health[0].item.title
    assert "HTTP 500" in health[0].item.summary
    assert health[0].item.id != health[1].item.id


# -- edited items (issue 15, item 4) ---------------------------------------------------------

EDIT_RULES = """\
rules:
  - id: kz-tungsten
    title: Kazakhstan tungsten
    severity: high
    match:
      all: [Kazakhstan, tungsten]
  - id: permits
    title: Export permits
    severity: medium
    match:
      any: [export permit*]
  - id: investment
    title: Investment
    severity: low
    match:
      any: [investment]
"""
ENTRY = {"guid": "e-1", "link": "https://w.example/e1", "description": "Bids are due in May."}


def edited(title: str, **more: str) -> str:
    return rss([{**ENTRY, "title": title, **more}], now=NOW)


async def queued(redis_client: aioredis.Redis, prefix: str) -> list[Match]:
    entries = await redis_client.xrange(Keys(prefix).matches) or []
    return [Match.from_dict(json.loads(str(fields["match"]))) for _, fields in entries if fields]


async def test_an_edited_item_alerts_only_the_rules_it_newly_matches(
    feed_server: FeedServer, context: PollContext, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    (tmp_path / "edit.yaml").write_text(EDIT_RULES, encoding="utf-8")
    rules = load_rules([tmp_path / "edit.yaml"])
    source = Source(name="wire", url=feed_server.url("/e.xml"))
    feed_server.put("/e.xml", edited("Kazakhstan tungsten tender"))
    first = await poll_once(source, rules, context)
    assert (first.new_items, first.matched_rules) == (1, ("kz-tungsten",))
    feed_server.put("/e.xml", edited("KAZAKHSTAN: tungsten tender!"))  # not material
    assert (await poll_once(source, rules, context)).matches == 0
    feed_server.put("/e.xml", edited("Kazakhstan tungsten tender needs export permits"))
    second = await poll_once(source, rules, context)
    assert (second.new_items, second.matched_rules) == (0, ("permits",))
    feed_server.put("/e.xml", edited("Kazakhstan tungsten tender needs export permits, again"))
    assert (await poll_once(source, rules, context)).matches == 0  # nothing newly matches
    matches = await queued(redis_client, "p")
    assert [(m.rule_id, m.update) for m in matches] == [("kz-tungsten", False), ("permits", True)]
    assert matches[1].item.id == matches[0].item.id
    assert matches[1].item.title == "Kazakhstan tungsten tender needs export permits"


async def test_an_edited_item_stays_one_member_of_its_story(
    feed_server: FeedServer, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    """An edit is the same item id: it joins no story a second time, its update carries its
    story; once its assignment has expired (the story window), its update goes out alone
    rather than as a second member of some story."""
    (tmp_path / "edit.yaml").write_text(EDIT_RULES, encoding="utf-8")
    rules = load_rules([tmp_path / "edit.yaml"])
    keys = Keys("pe")
    await AlertQueue(redis_client, keys).ensure_group()
    stories = StoryStore(redis_client, keys)
    source = Source(name="wire", url=feed_server.url("/s.xml"))
    async with aiohttp.ClientSession() as session:
        ctx = PollContext(Fetcher(session), Store(redis_client, keys), lambda: NOW, stories=stories)
        feed_server.put("/s.xml", edited("Kazakhstan tungsten tender"))
        await poll_once(source, rules, ctx)
        (first,) = await queued(redis_client, "pe")
        assert first.story is not None
        feed_server.put("/s.xml", edited("Kazakhstan tungsten tender needs export permits"))
        assert (await poll_once(source, rules, ctx)).matched_rules == ("permits",)
        story = await stories.story(first.story)
        assert story is not None
        assert [entry.item_id for entry in story.items] == [first.item.id]
        await redis_client.delete(keys.story_item(first.item.id))  # as its TTL would
        feed_server.put("/s.xml", edited("Kazakhstan tungsten permits draw investment"))
        assert (await poll_once(source, rules, ctx)).matched_rules == ("investment",)
    _, update, late = await queued(redis_client, "pe")
    assert (update.rule_id, update.update, update.story) == ("permits", True, first.story)
    assert (late.rule_id, late.update, late.story) == ("investment", True, None)
    story = await stories.story(first.story)
    assert story is not None
    assert [entry.item_id for entry in story.items] == [first.item.id]
