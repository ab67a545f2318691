"""AlertQueue on a private Redis: retries, throttle markers, pacing, dead letters, trimming."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import TypedDict

import pytest
import redis.asyncio as aioredis
from support.channel_fixtures import enqueue, make_match

from monitor.deliver.queue import AlertQueue
from monitor.model import Severity
from monitor.redisio import Keys

LEASE = timedelta(seconds=30)
HOUR = timedelta(hours=1)


class ThrottleOptions(TypedDict):
    """The keyword arguments of ``begin_send`` that name a throttle marker."""

    throttle_key: str
    throttle: timedelta


@pytest.fixture
async def queue(redis_client: aioredis.Redis) -> AlertQueue:
    queue = AlertQueue(redis_client, Keys("q"), keep_dead=5)
    await queue.ensure_group()
    return queue


async def test_a_retry_leaves_the_stream_and_comes_back_when_due(queue: AlertQueue) -> None:
    await enqueue(queue.client, "q", make_match())
    [entry] = await queue.read_matches("w", 10, None)
    now = datetime.now(UTC)
    await queue.retry_later(
        entry, now + timedelta(seconds=60), attempt=1, only=["slack"], recipients={}
    )
    assert await queue.stream_counts() == {"queued": 0, "pending": 0, "dead": 0}
    assert await queue.retrying() == 1
    assert await queue.next_due() == pytest.approx((now + timedelta(seconds=60)).timestamp())
    assert await queue.promote_due(now) == 0
    assert await queue.promote_due(now + timedelta(seconds=61)) == 1
    [again] = await queue.read_matches("w", 10, None)
    assert (again.attempt, again.only, again.origin) == (1, ("slack",), entry.entry_id)
    assert again.match == entry.match
    assert await queue.retrying() == 0


@pytest.mark.parametrize(
    ("first", "second", "second_key", "verdict"),
    [
        (Severity.HIGH, Severity.HIGH, "r|other", "throttled"),
        (Severity.HIGH, Severity.LOW, "r|other", "throttled"),
        (Severity.HIGH, Severity.CRITICAL, "r|other", "go"),  # escalation
        (Severity.HIGH, Severity.HIGH, "r|first", "busy"),  # the same match: its own marker
    ],
)
async def test_throttle_marker_semantics(
    queue: AlertQueue, first: Severity, second: Severity, second_key: str, verdict: str
) -> None:
    story = queue.keys.throttle("r", "story", "slack")
    options: ThrottleOptions = {"throttle_key": story, "throttle": HOUR}
    assert await queue.begin_send("r|first", "slack", LEASE, severity=first, **options) == "go"
    got = await queue.begin_send(second_key, "slack", LEASE, severity=second, **options)
    assert got == verdict


async def test_a_refused_alert_releases_its_story(queue: AlertQueue) -> None:
    story = queue.keys.throttle("r", "story", "slack")
    options: ThrottleOptions = {"throttle_key": story, "throttle": HOUR}
    assert await queue.begin_send("r|a", "slack", LEASE, severity=3, **options) == "go"
    await queue.release_throttle(story, "r|someone-else")  # not the holder: kept
    assert await queue.begin_send("r|b", "slack", LEASE, severity=3, **options) == "throttled"
    await queue.release_throttle(story, "r|a")
    assert await queue.begin_send("r|b", "slack", LEASE, severity=3, **options) == "go"


async def test_pace_lets_one_post_through_per_interval(queue: AlertQueue) -> None:
    """A Redis without the channel's pacing memory (first start, restart) makes everyone wait
    one interval; then one caller per interval gets the slot, and a 429 hold only lengthens."""
    second = timedelta(seconds=1)
    assert await queue.pace("slack", second) == 1.0  # no memory: nobody assumes it is free
    await queue.client.set(queue.keys.pace("slack"), "0:")  # the interval has passed
    await queue.client.set(queue.keys.pace("email"), "0:")
    assert await queue.pace("slack", second) == 0
    wait = await queue.pace("slack", second)
    assert 0 < wait <= 1
    assert await queue.pace("email", second) == 0
    await queue.hold_channel("email", timedelta(seconds=5))  # a 429 said Retry-After: 5
    assert 1 < await queue.pace("email", second) <= 5
    await queue.hold_channel("email", second)  # never shortens a hold
    assert await queue.pace("email", second) > 1


async def test_a_slot_is_held_for_the_post_then_opens_one_interval_after_it(
    queue: AlertQueue,
) -> None:
    """The taker holds the channel for its whole post (its deadline), so a slow post cannot
    overlap the next one; when it ends, the next slot opens one interval later."""
    second = timedelta(seconds=1)
    await queue.client.set(queue.keys.pace("slack"), "0:")
    assert await queue.pace("slack", second, hold=timedelta(seconds=30), token="a") == 0
    assert await queue.pace("slack", second, token="b") == 1.0  # held: ask again in 1 s
    await asyncio.sleep(1.1)
    assert await queue.pace("slack", second, token="b") == 1.0  # still held for the post
    await queue.paced("slack", second, "b")  # not the holder: no effect
    assert await queue.pace("slack", second, token="b") == 1.0
    await queue.paced("slack", second, "a")
    assert 0 < await queue.pace("slack", second, token="b") <= 1
    # The slot opens one interval after the post ended: poll for it (a busy machine may take
    # longer to get there), never more than a generous budget.
    deadline = time.monotonic() + 10
    while (wait := await queue.pace("slack", second, token="b")) != 0:
        assert 0 < wait <= 1, wait
        assert time.monotonic() < deadline, "the slot never opened"
        await asyncio.sleep(min(wait, 0.05))


async def test_the_dead_stream_is_capped_but_the_matches_stream_never_is(
    queue: AlertQueue,
) -> None:
    matches = [make_match(item=f"w:{n}", title=f"T{n}") for n in range(300)]
    await enqueue(queue.client, "q", *matches)
    entries = await queue.read_matches("w", 300, None)
    for entry in entries:
        await queue.dead_letter(entry, "slack", "refused", HOUR)
    assert await queue.client.xlen("q:matches") == 300  # nothing undelivered is trimmed
    assert await queue.client.xlen("q:dead") < 300  # old dead letters go (approximately)
    for entry in entries:
        await queue.acknowledge(entry.entry_id)
    assert await queue.client.xlen("q:matches") == 0


async def test_a_dead_letter_is_requeued_once_and_only_to_its_channel(queue: AlertQueue) -> None:
    await enqueue(queue.client, "q", make_match())
    [entry] = await queue.read_matches("w", 10, None)
    await queue.dead_letter(entry, "email#abc", "550", HOUR, recipients=["x@example.org"])
    await queue.acknowledge(entry.entry_id)
    [letter] = await queue.dead_letters()
    assert (letter.channel, letter.unit, letter.recipients) == (
        "email",
        "email#abc",
        ("x@example.org",),
    )
    assert await queue.begin_send(entry.match.key, "email#abc", LEASE) == "done"  # type: ignore[union-attr]
    assert await queue.requeue_dead(letter)
    assert not await queue.requeue_dead(letter)
    [again] = await queue.read_matches("w", 10, None)
    assert again.only == ("email#abc",)
    assert dict(again.recipients) == {"email#abc": ("x@example.org",)}
    assert await queue.begin_send(entry.match.key, "email#abc", LEASE) == "go"  # type: ignore[union-attr]


async def test_an_unreadable_entry_is_dead_lettered_and_acknowledged(queue: AlertQueue) -> None:
    await queue.client.xadd("q:matches", {"match": "{not json"})
    [entry] = await queue.read_matches("w", 10, None)
    assert entry.match is None
    await queue.dead_letter(entry, "-", "unreadable", HOUR)
    assert await queue.stream_counts() == {"queued": 0, "pending": 0, "dead": 1}
