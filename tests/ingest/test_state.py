"""Redis state, against a private redis-server: atomic enqueue, feed state, the alert queue."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from monitor.app.embedded_redis import EmbeddedRedis
from monitor.deliver.queue import AlertQueue
from monitor.errors import StoreError
from monitor.ingest.dedup import ItemRecord, as_update, link_field, link_seen
from monitor.ingest.fetch import Validators
from monitor.ingest.state import NEW, SEEN, UPDATED, FeedSuccess, Sighting, Store
from monitor.model import Item, Match, Severity
from monitor.redisio import DELIVERY_GROUP, Keys

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TTL = timedelta(days=30)


def an_item(item_id: str = "wire:1", link: str = "https://x.example/1") -> Item:
    return Item(id=item_id, source="wire", title="t", summary="s", link=link, published=NOW)


def a_match(item_id: str = "wire:1", rule: str = "kz-tungsten") -> Match:
    return Match(rule, "Kazakhstan tungsten", Severity.HIGH, "v1", an_item(item_id))


KEYS = Keys("t")


@pytest.fixture
async def queue(redis_client: aioredis.Redis) -> AlertQueue:
    queue = AlertQueue(redis_client, KEYS)
    await queue.ensure_group()
    return queue


@pytest.fixture
async def store(redis_client: aioredis.Redis, queue: AlertQueue) -> Store:
    return Store(redis_client, KEYS, seen_ttl=TTL, history_retention=timedelta(days=7))


async def test_a_new_item_queues_its_matches_and_a_seen_one_does_not(
    store: Store, queue: AlertQueue
) -> None:
    match = a_match()
    assert await store.record_item(an_item(), [match, match], NOW) is True
    assert await store.record_item(an_item(), [match], NOW) is False
    # Another feed's item with the same canonical link is the same article: not new.
    assert await store.record_item(an_item("other:9"), [match], NOW) is False
    assert (await queue.stream_counts())["queued"] == 2


async def test_each_new_item_enters_the_history_once(
    redis_client: aioredis.Redis, store: Store
) -> None:
    for number in range(3):
        await store.record_item(an_item(f"w:{number}", f"https://x.example/{number}"), [], NOW)
    await store.record_item(an_item("w:0"), [], NOW)  # seen again: not a new history entry
    history = await store.history(NOW - timedelta(days=1))
    assert [item.id for item in history] == ["w:0", "w:1", "w:2"]
    assert history[0] == an_item("w:0", "https://x.example/0")
    # History entries are stamped by the Redis server's clock, not the items' dates.
    assert await store.history(datetime.now(UTC) + timedelta(days=1)) == []
    assert await redis_client.xlen(KEYS.items) == 3


async def test_seen_keys_expire_after_the_ttl(store: Store, redis_client: aioredis.Redis) -> None:
    short = Store(redis_client, KEYS, seen_ttl=timedelta(days=2))
    await short.record_item(an_item("wire:2"), [], NOW)
    assert 86400 < await redis_client.ttl("t:seen:id:wire:2") <= 2 * 86400


async def test_ensure_group_is_idempotent(queue: AlertQueue, redis_client: aioredis.Redis) -> None:
    await queue.ensure_group()
    groups = await redis_client.xinfo_groups(KEYS.matches)
    assert [g["name"] for g in groups] == [DELIVERY_GROUP]


async def test_feed_state_round_trip_and_failure_count(store: Store) -> None:
    later = NOW + timedelta(minutes=10)
    validators = Validators('"e1"', "Sun, 22 Nov 2026")
    await store.feed_succeeded(
        "wire", FeedSuccess(validators, 200, NOW, later, new_items=3, moved_to="https://n/")
    )
    state = await store.feed_state("wire")
    assert (state.validators, state.failures, state.items_seen) == (validators, 0, 3)
    assert (state.last_success, state.next_poll_at, state.moved_to) == (NOW, later, "https://n/")
    await store.feed_failed("wire", "HTTP 500", 500, NOW, later)
    await store.feed_failed("wire", "HTTP 500", 500, NOW, later + timedelta(hours=1))
    state = await store.feed_state("wire")
    assert (state.failures, state.last_error, state.last_status) == (2, "HTTP 500", "500")
    assert state.next_poll_at == later + timedelta(hours=1)
    await store.feed_succeeded("wire", FeedSuccess(Validators(), 200, NOW, later))
    states = await store.feed_states(["wire", "never-polled"])
    assert states["wire"].failures == 0
    assert states["wire"].items_seen == 3
    assert states["never-polled"].last_success is None


async def test_read_acknowledge_and_claim(store: Store, queue: AlertQueue) -> None:
    await store.record_item(an_item("a"), [a_match("a")], NOW)
    (entry,) = await queue.read_matches("w1", 10, None)
    assert entry.match == a_match("a")
    assert await queue.read_matches("w1", 10, None) == []
    # Not acknowledged: another worker may claim it once it has been idle long enough.
    (claimed,) = await queue.claim_stale("w2", timedelta(0), 10)
    assert claimed.entry_id == entry.entry_id
    await queue.acknowledge(entry.entry_id)
    assert await queue.stream_counts() == {"queued": 0, "pending": 0, "dead": 0}


async def test_send_markers_make_delivery_once_per_channel(queue: AlertQueue) -> None:
    lease = timedelta(seconds=30)
    assert await queue.begin_send("r|i", "slack", lease) == "go"
    assert await queue.begin_send("r|i", "slack", lease) == "busy"
    assert await queue.begin_send("r|i", "email", lease) == "go"
    await queue.finish_send("r|i", "slack", TTL)
    assert await queue.begin_send("r|i", "slack", lease) == "done"
    await queue.abandon_send("r|i", "email")
    assert await queue.begin_send("r|i", "email", lease) == "go"


async def test_dead_letter_keeps_the_reason_and_stops_that_channel(
    store: Store, queue: AlertQueue, redis_client: aioredis.Redis
) -> None:
    await store.record_item(an_item("d"), [a_match("d")], NOW)
    (entry,) = await queue.read_matches("w1", 10, None)
    await queue.dead_letter(entry, "slack", "slack: no_service", TTL)
    entries = await redis_client.xrange(KEYS.dead)
    assert entries is not None
    ((_, dead),) = entries
    assert dead is not None
    assert dead["reason"] == "slack: no_service"
    assert dead["channel"] == "slack"
    assert await queue.begin_send(a_match("d").key, "slack", timedelta(seconds=5)) == "done"


async def test_redis_outage_surfaces_as_store_error(own_redis: EmbeddedRedis) -> None:
    client = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    store = Store(client, Keys())
    own_redis.kill()
    with pytest.raises(StoreError, match="Redis"):
        await store.feed_state("wire")
    own_redis.restart_if_dead()
    assert await store.ping()
    await client.aclose()


async def test_a_feed_lease_belongs_to_one_replica_until_it_expires_or_is_released(
    store: Store,
) -> None:
    lease = timedelta(seconds=0.3)
    assert await store.take_lease("wire", "replica-a", lease)
    assert await store.take_lease("wire", "replica-a", lease)  # the holder renews
    assert not await store.take_lease("wire", "replica-b", lease)
    await asyncio.sleep(0.4)
    assert await store.take_lease("wire", "replica-b", lease)  # a dead holder's lease lapses
    await store.release_leases(["wire"], "replica-a")  # not a's any more: nothing happens
    assert not await store.take_lease("wire", "replica-a", lease)
    await store.release_leases(["wire"], "replica-b")
    assert await store.take_lease("wire", "replica-a", lease)


# -- edits and link identity (issue 15, item 4) ----------------------------------------------


def matched(item: Item, *rules: str) -> list[Match]:
    return [Match(rule, rule, Severity.HIGH, "v1", item) for rule in rules]


async def queued_rules(queue: AlertQueue) -> list[tuple[str, bool]]:
    entries = await queue.read_matches("w", 100, None)
    return [(e.match.rule_id, e.match.update) for e in entries if e.match is not None]


async def test_an_edit_is_triaged_as_changed_with_the_rules_it_matched(
    store: Store, queue: AlertQueue
) -> None:
    """The id key remembers what the item said and every rule it matched, so an edit is
    told apart from a repeat, and only rules it newly matches are queued, once."""
    first = an_item("wire:e")
    assert await store.record([ItemRecord.of(first, matched(first, "a"))], NOW) == [NEW]
    same = replace(first, title="T!")  # case and punctuation only: not an edit
    edited = replace(first, title="t plus tungsten")
    records = [
        ItemRecord.of(same, matched(same, "a")),
        ItemRecord.of(edited, matched(edited, "a", "b")),
    ]
    sightings = await store.triage(records)
    assert sightings == [Sighting("seen"), Sighting("changed", ("a",))]
    update = as_update(records[1], sightings[1].prior)
    assert await store.record([update], NOW) == [UPDATED]
    assert await store.record([update], NOW) == [SEEN]  # a retried pass queues nothing more
    assert await queued_rules(queue) == [("a", False), ("b", True)]
    assert (await store.triage([records[1]]))[0] == Sighting("seen")
    again = replace(first, title="t plus tungsten and rare earths")
    changed = await store.triage([ItemRecord.of(again, matched(again, "a", "b"))])
    assert changed == [Sighting("changed", ("a", "b"))]


async def test_another_feeds_copy_is_recorded_silently_under_its_own_id(
    store: Store, queue: AlertQueue
) -> None:
    first = an_item("wire:c")
    await store.record([ItemRecord.of(first, matched(first, "a"))], NOW)
    copy = replace(first, id="other:c", source="other")
    record = ItemRecord.of(copy, matched(copy, "a"))
    assert await store.triage([record]) == [Sighting("elsewhere")]
    assert await store.record([replace(record, match_json=(), rules=())], NOW) == [SEEN]
    assert await store.triage([record]) == [Sighting("seen")]
    assert await queued_rules(queue) == [("a", False)]


async def test_items_recorded_before_edits_were_tracked_stay_seen(
    store: Store, redis_client: aioredis.Redis, queue: AlertQueue
) -> None:
    """An upgrade: ``id:`` keys holding '1', ``url:`` keys and GUID-only ids are honoured."""
    item = an_item("wire:new-id", "https://x.example/old")
    record = ItemRecord.of(item, matched(item, "a"), old_id="wire:guid-only")
    await redis_client.set("t:seen:id:wire:guid-only", "1")
    assert await store.triage([record]) == [Sighting("elsewhere")]
    assert await store.record([replace(record, match_json=(), rules=())], NOW) == [SEEN]
    assert await store.triage([record]) == [Sighting("seen")]
    legacy = an_item("wire:legacy", "https://x.example/legacy")
    await redis_client.set("t:seen:id:wire:legacy", "1")
    legacy_record = ItemRecord.of(legacy, matched(legacy, "a"))
    assert await store.triage([legacy_record]) == [Sighting("elsewhere")]
    await store.record([replace(legacy_record, match_json=(), rules=())], NOW)
    stored = await redis_client.get("t:seen:id:wire:legacy")
    assert stored == f"{legacy_record.material} a"
    assert await queued_rules(queue) == []


LIVE = "https://x.example/live"


@pytest.mark.parametrize(
    ("carriers", "source", "fragment"),
    [
        ([("live", "u1")], "live", "u1"),
        ([("live", "u1")], "live", "u2"),
        ([("live", "")], "live", ""),
        ([("live", "")], "live", "u1"),
        ([("wire", "")], "reprint", ""),
        ([("wire", "")], "reprint", "comments"),
        ([("wire", "comments")], "reprint", ""),
        ([("wire", "u1")], "reprint", "u1"),
        ([("wire", "u1")], "reprint", "u2"),
        ([("live", "u1"), ("live", "u2")], "live", "u3"),
        ([("live", "u1"), ("wire", "")], "live", "u2"),
    ],
)
async def test_the_scripts_link_rule_is_dedups_reference(
    store: Store,
    carriers: list[tuple[str, str]],
    source: str,
    fragment: str,
) -> None:
    """Redis decides "this article was carried" exactly as ``dedup.link_seen`` says."""
    page = f"{LIVE}/{uuid.uuid4().hex}"  # a page of its own
    for number, (feed, anchor) in enumerate(carriers):
        carried = an_item(f"{feed}:{page}:{number}", page)
        carried = replace(carried, source=feed, title=f"entry {number}")
        await store.record([ItemRecord.of(carried, fragment=anchor)], NOW)
    entry = replace(an_item(f"{source}:{page}:new", page), source=source, title="the entry")
    (sighting,) = await store.triage([ItemRecord.of(entry, fragment=fragment)])
    fields = [link_field(feed, anchor) for feed, anchor in carriers]
    expected = "elsewhere" if link_seen(fields, source, fragment) else "new"
    assert sighting.kind == expected
