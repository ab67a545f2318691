"""Stories in a real (private) redis-server: assignment, follow-up flags, replicas, expiry."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from test_stories_quality import (
    PRECISION_FLOOR,
    RECALL_FLOOR,
    load_labelled,
    pairwise,
    partition,
)

from monitor.app.embedded_redis import EmbeddedRedis
from monitor.errors import ConfigError
from monitor.model import Item
from monitor.redisio import Keys
from monitor.settings import load_settings
from monitor.stories import source_metas
from monitor.stories.cluster import Extractor, MemoryStories
from monitor.stories.store import StoryStore
from monitor.stories.story import (
    FollowUpPolicy,
    Gate,
    SourceMeta,
    StoryUpdate,
    follow_up_reason,
    gate_for,
)

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
KEYS = Keys("t")
EXTRACTOR = Extractor()
WIRE = (
    "Kazakhstan's Ministry of Industry and Construction will auction subsoil use rights to the "
    "Upper Kairakty tungsten deposit in Karaganda region on March 20, with a starting price of "
    "45 billion tenge ($90 million), the ministry said on Monday."
)
RUSSIAN = (
    "Министерство промышленности и строительства Казахстана 20 марта проведет аукцион на право "
    "недропользования на месторождении Верхнее Кайракты; стартовая цена — 45 млрд тенге."
)
SOURCES = {
    "reuters": SourceMeta("reuters", kind="wire", country="gb"),
    "xinhua": SourceMeta("xinhua", kind="state_media", country="cn", owner="xinhua"),
    "xinhua-ru": SourceMeta("xinhua-ru", kind="state_media", country="cn", owner="xinhua"),
    "gov": SourceMeta("gov", kind="official", country="kz"),
}


def item(
    item_id: str,
    source: str,
    title: str,
    summary: str,
    lang: str = "en",
    published: datetime = NOW,
) -> Item:
    link = f"https://{source}.example/{item_id}"
    return Item(item_id, source, title, summary, link, published, lang)


def store(client: aioredis.Redis) -> StoryStore:
    return StoryStore(client, KEYS, EXTRACTOR, sources=SOURCES)


async def test_a_reprint_joins_and_another_event_opens_a_story(
    redis_client: aioredis.Redis,
) -> None:
    stories = store(redis_client)
    first = await stories.assign(item("a", "reuters", "Kairakty auction", WIRE), NOW)
    reprint = await stories.assign(item("b", "portal", "Under the hammer", WIRE), NOW)
    other = await stories.assign(
        item("c", "reuters", "Wheat exports hit a record", "Kazakh wheat to China."), NOW
    )
    assert first.created
    assert not reprint.created
    assert other.created
    assert reprint.story_id == first.story_id != other.story_id
    assert await stories.story_of("b") == first.story_id


async def test_flags_tell_each_change_once_and_owners_count_sister_outlets_once(
    redis_client: aioredis.Redis,
) -> None:
    stories = store(redis_client)
    policy = FollowUpPolicy(corroboration=3)
    updates = [
        await stories.assign(item("a", "xinhua", "Kairakty auction", WIRE), NOW),
        await stories.assign(item("b", "xinhua-ru", "Аукцион", RUSSIAN, "ru"), NOW),
        await stories.assign(item("c", "reuters", "Kairakty auction set", WIRE), NOW),
        await stories.assign(item("d", "gov", "Аукцион Кайракты", RUSSIAN, "ru"), NOW),
    ]
    assert len({u.story_id for u in updates}) == 1
    assert [u.independent for u in updates] == [1, 1, 2, 3]
    assert [follow_up_reason(u, policy) for u in updates] == [
        None,
        "new language",
        "new source kind",  # the first wire
        "corroborated by 3 independent sources",
    ]
    story = await stories.story(updates[0].story_id)
    assert story is not None
    assert story.owners == ("xinhua", "reuters", "gov")
    assert story.languages == ("en", "ru")
    assert story.kinds == ("state_media", "wire", "official")


async def test_assigning_an_item_again_is_a_duplicate(redis_client: aioredis.Redis) -> None:
    stories = store(redis_client)
    first = await stories.assign(item("a", "reuters", "Kairakty auction", WIRE), NOW)
    again = await stories.assign(item("a", "reuters", "Kairakty auction", WIRE), NOW)
    assert again.duplicate
    assert again.story_id == first.story_id
    story = await stories.story(first.story_id)
    assert story is not None
    assert len(story.items) == 1


async def test_a_replica_that_read_before_another_committed_decides_again(
    redis_client: aioredis.Redis, session_redis: EmbeddedRedis
) -> None:
    """The race the commit script exists for: both replicas see no story, both want to open
    one; the second's commit is refused and it joins the first's story instead."""
    other_client = aioredis.Redis.from_url(session_redis.url, decode_responses=True)
    try:
        one, two = store(redis_client), store(other_client)
        wire = item("a", "reuters", "Kairakty auction", WIRE)
        reprint = item("b", "portal", "Under the hammer", WIRE)
        read_one = await one._read(EXTRACTOR.features(wire))
        read_two = await two._read(EXTRACTOR.features(reprint))
        assert read_one.candidates == read_two.candidates == ()
        opened = await one._commit(wire, EXTRACTOR.features(wire), read_one, "s-one", True, NOW)
        refused = await two._commit(
            reprint, EXTRACTOR.features(reprint), read_two, "s-two", True, NOW
        )
        assert opened is not None
        assert opened.created
        assert refused is None
        joined = await two.assign(reprint, NOW)
        assert joined.story_id == "s-one"
        assert not joined.created
        assert await redis_client.exists(KEYS.story("s-two")) == 0
    finally:
        await other_client.aclose()


async def test_replicas_assigning_reprints_at_once_make_one_story(
    redis_client: aioredis.Redis, session_redis: EmbeddedRedis
) -> None:
    clients = [aioredis.Redis.from_url(session_redis.url, decode_responses=True) for _ in range(4)]
    try:
        replicas = [store(client) for client in clients]
        items = [item(f"r{n}", f"portal{n}", f"Headline {n}", WIRE) for n in range(12)]
        updates = await asyncio.gather(
            *(replicas[n % 4].assign(one, NOW) for n, one in enumerate(items))
        )
        assert len({u.story_id for u in updates}) == 1
        assert sum(u.created for u in updates) == 1
        assert sorted(u.independent for u in updates) == list(range(1, 13))
    finally:
        for client in clients:
            await client.aclose()


async def test_the_window_is_publication_time_whatever_the_arrival(
    redis_client: aioredis.Redis,
) -> None:
    """A reprint published 73 hours after the wire opens its own story even when both arrive
    in one poll; one published at the same time joins even when it arrives 73 hours later."""
    stories = StoryStore(redis_client, KEYS, EXTRACTOR, window=timedelta(hours=72))
    first = await stories.assign(item("a", "reuters", "Kairakty auction", WIRE), NOW)
    later = NOW + timedelta(hours=73)
    late = await stories.assign(item("b", "portal", "Under the hammer", WIRE, published=later), NOW)
    slow = await stories.assign(item("c", "portal2", "Hammer time", WIRE), later)
    assert late.created
    assert late.story_id != first.story_id
    assert slow.story_id == first.story_id
    for key in (KEYS.story(first.story_id), KEYS.story_items(first.story_id)):
        assert 0 < await redis_client.ttl(key) <= 7 * 86400
    index_keys = [key async for key in redis_client.scan_iter(match="t:stories:ix:*")]
    assert index_keys
    for key in index_keys:
        assert await redis_client.ttl(key) > 0


async def test_an_item_published_months_ago_is_found_by_its_event_arriving_later(
    redis_client: aioredis.Redis,
) -> None:
    """The index bucket is the publication time's, but it lives for the retention counted
    from the arrival: a catch-up delivering a months-old wire, then its reprint a day
    later, makes one story, and the old bucket does not expire at once."""
    stories = store(redis_client)
    old = NOW - timedelta(days=120)
    wire = await stories.assign(item("a", "reuters", "Kairakty auction", WIRE, published=old), NOW)
    reprint = await stories.assign(
        item("b", "portal", "Under the hammer", WIRE, published=old + timedelta(hours=3)),
        NOW + timedelta(days=1),
    )
    assert reprint.story_id == wire.story_id
    index_keys = [key async for key in redis_client.scan_iter(match="t:stories:ix:*")]
    assert index_keys
    for key in index_keys:
        assert await redis_client.ttl(key) > 6 * 86400


async def test_recent_lists_the_latest_stories_first(redis_client: aioredis.Redis) -> None:
    stories = store(redis_client)
    old = await stories.assign(item("a", "reuters", "Kairakty auction", WIRE), NOW)
    new = await stories.assign(
        item("c", "reuters", "Wheat exports hit a record", "Kazakh wheat to China."),
        NOW + timedelta(hours=30),
    )
    listed = await stories.recent(NOW + timedelta(hours=6))
    assert [s.id for s in listed] == [new.story_id]
    listed = await stories.recent(NOW - timedelta(hours=1))
    assert [s.id for s in listed] == [new.story_id, old.story_id]
    assert await stories.story("nope") is None


async def test_redis_clusters_the_labelled_set_as_memory_does(
    redis_client: aioredis.Redis,
) -> None:
    """The store's candidate lookup and decision are the in-memory ones, through Redis."""
    labelled = load_labelled()
    stories = store(redis_client)
    memory = MemoryStories(EXTRACTOR)
    for one in labelled.items:
        update = await stories.assign(one, one.published)
        assert update.story_id == memory.add(one), one.id


@pytest.mark.parametrize("seed", [0, 3, 10])
async def test_redis_clusters_the_labelled_set_arriving_all_at_once_as_memory_does(
    redis_client: aioredis.Redis, seed: int
) -> None:
    """Every labelled item arriving at one moment (one ``now``), shuffled: the store reads
    only publication times, so it forms the stories the in-memory clusterer forms for the
    same order, those meet the quality floors, and they are the stories of the items
    arriving one by one.  Orders 0 and 10 need the corrections: a story merged into
    another by the report that bridges them, a weak member moved to its own event's story."""
    labelled = load_labelled()
    items = list(labelled.items)
    random.Random(seed).shuffle(items)
    stories = store(redis_client)
    memory = MemoryStories(EXTRACTOR)
    arrival = labelled.items[-1].published + timedelta(days=30)
    for one in items:
        update = await stories.assign(one, arrival)
        assert update.story_id == memory.add(one), one.id
    final = {one.id: str(await stories.story_of(one.id)) for one in labelled.items}
    assert final == memory.assignment
    alone = MemoryStories(EXTRACTOR)
    for one in labelled.items:
        alone.add(one)
    assert partition(final) == partition(alone.assignment)
    scores = pairwise(labelled.story, memory.assignment, [one.id for one in labelled.items])
    assert scores.precision >= PRECISION_FLOOR
    assert scores.recall >= RECALL_FLOOR
    for story_id in set(memory.assignment.values()):
        story = await stories.story(story_id)
        assert story is not None
        assert {i.item_id for i in story.items} == {
            item for item, sid in memory.assignment.items() if sid == story_id
        }


def test_the_config_gives_sources_their_provenance(tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(
        "feeds:\n  - {name: xinhua, url: 'https://x.example/f'}\n"
        "stories:\n  window: 48h\n"
        "  sources:\n    xinhua: {kind: state_media, country: cn, owner: xinhua-group}\n"
    )
    settings = load_settings(config)
    assert settings.stories.window == timedelta(hours=48)
    metas = source_metas(settings.stories)
    assert metas["xinhua"] == SourceMeta("xinhua", "state_media", "cn", "xinhua-group")
    assert metas["xinhua"].group == "xinhua-group"


def test_an_unknown_source_kind_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text("stories:\n  sources:\n    a: {kind: tabloid}\n")
    with pytest.raises(ConfigError, match="kind"):
        load_settings(config)


CHINESE = "哈萨克斯坦工业和建设部表示，将于3月20日拍卖上凯拉克特钨矿，起拍价为450亿坚戈。"


async def test_five_reprints_in_three_languages_alert_once_with_bounded_follow_ups(
    redis_client: aioredis.Redis,
) -> None:
    """The issue's end-to-end case at the story level: one alert, then a follow-up per new
    language and one at the corroboration threshold, never one per item."""
    stories = store(redis_client)
    policy = FollowUpPolicy(on_new_kind=False, corroboration=3)
    arrivals = [
        item("a", "reuters", "Kairakty auction", WIRE),
        item("b", "portal1", "Kairakty under the hammer", WIRE),
        item("c", "xinhua", "哈萨克斯坦将拍卖钨矿", CHINESE, "zh"),
        item("d", "xinhua-ru", "Аукцион Кайракты", RUSSIAN, "ru"),
        item("e", "portal2", "Tungsten auction set", WIRE),
    ]
    updates = []
    found = []
    for one in arrivals:
        update = await stories.assign(one, NOW)
        updates.append(update)
        found += await statuses(stories, [update], Gate())
    assert len({u.story_id for u in updates}) == 1
    assert found == ["alert", "quiet", "quiet", "quiet", "quiet"]
    reasons = [follow_up_reason(u, policy) for u in updates]
    assert reasons == [
        None,
        None,
        "corroborated by 3 independent sources",
        "new language",
        None,
    ]


async def test_min_sources_three_alerts_on_the_third_independent_outlet(
    redis_client: aioredis.Redis,
) -> None:
    """A sister outlet's reprint does not count: xinhua-ru is xinhua's."""
    stories = store(redis_client)
    arrivals = [
        item("a", "xinhua", "哈萨克斯坦将拍卖钨矿", CHINESE, "zh"),
        item("b", "xinhua-ru", "Аукцион Кайракты", RUSSIAN, "ru"),
        item("c", "reuters", "Kairakty auction", WIRE),
        item("d", "portal", "Kairakty under the hammer", WIRE),
        item("e", "portal2", "Tungsten auction set", WIRE),
    ]
    alerts = await statuses(stories, arrivals, gate_for(3, False))
    assert alerts == ["held", "held", "held", "alert", "quiet"]


async def test_an_official_source_is_enough_when_the_rule_says_so(
    redis_client: aioredis.Redis,
) -> None:
    stories = store(redis_client)
    arrivals = [
        item("a", "reuters", "Kairakty auction", WIRE),
        item("b", "gov", "Аукцион Кайракты", RUSSIAN, "ru"),
        item("c", "xinhua", "哈萨克斯坦将拍卖钨矿", CHINESE, "zh"),
    ]
    assert await statuses(stories, arrivals, gate_for(3, True)) == ["held", "alert", "quiet"]


async def statuses(
    stories: StoryStore, arrivals: Sequence[Item | StoryUpdate], gate: Gate
) -> list[str]:
    """Each item joins its story and one rule matching every item is settled, in order:
    each item's verdict for it."""
    found = []
    for one in arrivals:
        update = one if isinstance(one, StoryUpdate) else await stories.assign(one, NOW)
        settled = await stories.settle(update.story_id, update.item_id, [("r", gate, "{}")])
        (verdict,) = settled.verdicts
        found.append(verdict.status)
    return found


async def test_a_held_rule_is_released_by_an_item_it_did_not_match(
    redis_client: aioredis.Redis,
) -> None:
    """The third outlet matched only another rule: the waiting rule alerts with the match it
    kept, and a retry of the same item (a crash before recording) alerts again, while a
    later item does not."""
    stories = store(redis_client)
    arrivals = [
        item("a", "xinhua", "哈萨克斯坦将拍卖钨矿", CHINESE, "zh"),
        item("b", "reuters", "Kairakty auction", WIRE),
        item("c", "portal", "Kairakty under the hammer", WIRE),
        item("d", "portal2", "Tungsten auction set", WIRE),
    ]
    waiting = gate_for(3, False)
    for one in arrivals[:2]:
        update = await stories.assign(one, NOW)
        settled = await stories.settle(update.story_id, update.item_id, [("r", waiting, "kept")])
        assert [v.status for v in settled.verdicts] == ["held"]
    third = await stories.assign(arrivals[2], NOW)
    for _ in range(2):  # the second time is the retry
        settled = await stories.settle(third.story_id, third.item_id, [("other", Gate(), "{}")])
        by_rule = {v.rule_id: v for v in settled.verdicts}
        assert (by_rule["r"].status, by_rule["r"].kept) == ("alert", "kept")
        assert [i.source for i in settled.items] == ["xinhua", "reuters", "portal"]
    fourth = await stories.assign(arrivals[3], NOW)
    settled = await stories.settle(fourth.story_id, fourth.item_id, [("other", Gate(), "{}")])
    assert [v.rule_id for v in settled.verdicts] == ["other"]


async def test_a_rule_first_matching_a_corroborated_story_alerts_on_that_item(
    redis_client: aioredis.Redis,
) -> None:
    stories = store(redis_client)
    arrivals = [
        item("a", "xinhua", "哈萨克斯坦将拍卖钨矿", CHINESE, "zh"),
        item("b", "reuters", "Kairakty auction", WIRE),
        item("c", "portal", "Kairakty under the hammer", WIRE),
        item("d", "portal2", "Tungsten auction set", WIRE),
    ]
    updates = [await stories.assign(one, NOW) for one in arrivals]
    for update in updates[:3]:
        await stories.settle(update.story_id, update.item_id, [("other", Gate(), "{}")])
    last = updates[3]
    settled = await stories.settle(last.story_id, last.item_id, [("r", gate_for(3, False), "{}")])
    assert [(v.rule_id, v.status) for v in settled.verdicts] == [("r", "alert")]


def labelled_item(item_id: str) -> Item:
    (found,) = [one for one in load_labelled().items if one.id == item_id]
    return found


async def test_a_merged_story_keeps_what_its_rules_did_and_answers_by_its_old_id(
    redis_client: aioredis.Redis,
) -> None:
    """mq-en-2 arrives first and alerts in a story of its own; mq-en-3 then bridges it to
    its event's story.  The merged story has both stories' items, every item's story key
    names it, the rule that alerted in the absorbed story stays quiet, and the old id
    (named by the alert already sent) reads as the merged story."""
    stories = store(redis_client)
    early = await stories.assign(labelled_item("mq-en-2"), NOW)
    first = await stories.settle(early.story_id, early.item_id, [("r", Gate(), "{}")])
    assert [v.status for v in first.verdicts] == ["alert"]
    event = await stories.assign(labelled_item("mq-ru-2"), NOW)
    assert event.story_id != early.story_id
    bridge = await stories.assign(labelled_item("mq-en-3"), NOW)
    assert bridge.story_id == event.story_id
    for item_id in ("mq-en-2", "mq-ru-2", "mq-en-3"):
        assert await stories.story_of(item_id) == event.story_id
    after = await stories.settle(bridge.story_id, bridge.item_id, [("r", Gate(), "{}")])
    assert [v.status for v in after.verdicts] == ["quiet"]
    merged = await stories.story(early.story_id)
    assert merged is not None
    assert merged.id == event.story_id
    assert {i.item_id for i in merged.items} == {"mq-en-2", "mq-ru-2", "mq-en-3"}
    assert [s.id for s in await stories.recent(NOW - timedelta(days=1))] == [event.story_id]
    later = await stories.assign(labelled_item("mq-zh-1"), NOW)
    assert later.story_id == event.story_id


async def test_a_weak_member_moves_to_the_story_of_its_own_event(
    redis_client: aioredis.Redis,
) -> None:
    """ck-en-4 joins the Kairakty auction's story on a weak link (the only story there);
    the first Cove Kaz report, linking it strongly, opens the Cove Kaz story and takes it."""
    stories = store(redis_client)
    auction = await stories.assign(labelled_item("ka-en-4"), NOW)
    weak = await stories.assign(labelled_item("ck-en-4"), NOW)
    assert weak.story_id == auction.story_id
    cove = await stories.assign(labelled_item("ck-en-1"), NOW)
    assert cove.story_id != auction.story_id
    assert await stories.story_of("ck-en-4") == cove.story_id
    auction_story = await stories.story(auction.story_id)
    cove_story = await stories.story(cove.story_id)
    assert auction_story is not None
    assert cove_story is not None
    assert [i.item_id for i in auction_story.items] == ["ka-en-4"]
    assert [i.item_id for i in cove_story.items] == ["ck-en-1", "ck-en-4"]
    assert (await stories.assign(labelled_item("ck-ru-1"), NOW)).story_id == cove.story_id


async def test_an_item_an_analyst_splits_out_stays_apart_and_gathers_its_own_reports(
    redis_client: aioredis.Redis,
) -> None:
    """Split out (issue 17: an analyst's correction, kept in Redis, honoured by later
    items): the item moves to a story of its own; a later report linking both stories
    strongly joins one and merges nothing; a report of the item's own kind joins it."""
    stories = store(redis_client)
    for item_id in ("mq-ru-2", "mq-en-3", "mq-zh-1"):
        event = (await stories.assign(labelled_item(item_id), NOW)).story_id
    assert {await stories.story_of(i) for i in ("mq-ru-2", "mq-en-3", "mq-zh-1")} == {event}
    alone = await stories.split_item(event, "mq-zh-1", NOW, by="ana")
    assert alone is not None
    assert alone != event
    assert await stories.story_of("mq-zh-1") == alone
    assert await stories.split_item(event, "mq-zh-1", NOW, by="ana") is None  # gone already
    bridge = await stories.assign(labelled_item("mq-en-1"), NOW)  # links zh-1 and en-3
    assert bridge.story_id == event
    assert await stories.story_of("mq-zh-1") == alone  # not merged back
    own = await stories.assign(labelled_item("mq-zh-2"), NOW)  # its nearest is zh-1
    assert own.story_id == alone
    kept = await stories.story(event)
    assert kept is not None
    assert {i.item_id for i in kept.items} == {"mq-ru-2", "mq-en-3", "mq-en-1"}


async def test_an_analyst_merges_two_stories_even_after_splitting_them(
    redis_client: aioredis.Redis,
) -> None:
    stories = store(redis_client)
    auction = (await stories.assign(labelled_item("ka-en-1"), NOW)).story_id
    cove = (await stories.assign(labelled_item("ck-en-1"), NOW)).story_id
    assert auction != cove
    assert await stories.merge_stories(cove, auction, by="ana")
    assert await stories.story_of("ck-en-1") == auction
    merged = await stories.story(cove)
    assert merged is not None
    assert merged.id == auction
    assert not await stories.merge_stories(cove, auction, by="ana")  # gone: merged already
    alone = await stories.split_item(auction, "ck-en-1", NOW, by="ana")
    assert alone is not None
    assert await stories.merge_stories(alone, auction, by="ana")  # apart no more
    assert await stories.story_of("ck-en-1") == auction
    assert await redis_client.hget(stories.keys.story(auction), "apart") == ""
