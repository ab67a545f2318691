"""Ingestion state in Redis: which items were seen, each feed's state, and queueing matches.

A thin shell: it takes a connected ``redis.asyncio.Redis`` from the composition root and
turns Redis errors into ``StoreError`` so callers handle one kind of failure.  Key names come
from ``monitor.redisio``; the delivery side of the matches stream is ``monitor.deliver.queue``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import redis.asyncio as aioredis

from monitor.ingest.dedup import ItemRecord
from monitor.ingest.fetch import Validators
from monitor.model import Item, Match
from monitor.redisio import Keys, guarded

# Marks each item of a batch seen under all its keys and queues its matches, each item
# atomically (the whole script is): either an item is new and every match is in the stream, or
# nothing changed for it.  A crash can therefore never leave an item "seen" whose alerts were
# never queued.  Seen keys are refreshed on every sighting so an item still in a feed never
# expires and alerts again.  Items are handled in order, so two items of one batch sharing a
# link or text count as one.  One script call per batch (not per item) keeps the event loop's
# share of a 50,000-item first poll small.
# KEYS: the matches stream, the item history stream, then every item's seen-keys in order.
# ARGV: seen ttl (s), history MINID (oldest entry id to keep), then per item: its number of
#       seen-keys, its number of matches, its JSON, its matches' JSON...
# Returns one 0/1 per item: 1 when it was new and recorded.
_RECORD_ITEMS = """
local ttl = tonumber(ARGV[1])
local key, arg = 3, 3
local results = {}
while arg <= #ARGV do
  local nkeys, nmatches = tonumber(ARGV[arg]), tonumber(ARGV[arg + 1])
  local seen = 0
  for i = key, key + nkeys - 1 do
    if redis.call('EXISTS', KEYS[i]) == 1 then seen = 1 end
  end
  for i = key, key + nkeys - 1 do
    redis.call('SET', KEYS[i], '1', 'EX', ttl)
  end
  if seen == 0 then
    redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[2], '*', 'item', ARGV[arg + 2])
    for j = arg + 3, arg + 2 + nmatches do
      redis.call('XADD', KEYS[1], '*', 'match', ARGV[j])
    end
  end
  results[#results + 1] = 1 - seen
  key = key + nkeys
  arg = arg + 3 + nmatches
end
return results
"""
HISTORY_BATCH = 500

# A feed's poll lease: taken when free, kept (and extended) by its holder, refused to others.
_TAKE_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# A poll's outcome on its feed's hash, in one script call rather than a MULTI of three
# commands (redis-py spends about half the CPU on one call that it spends on the MULTI).
# KEYS: the feed hash.  ARGV: items found (added to items_seen), then field, value pairs.
_FEED_SUCCEEDED = """
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('HINCRBY', KEYS[1], 'items_seen', ARGV[1])
redis.call('HDEL', KEYS[1], 'failing_since', 'health_alerted')
"""
# KEYS: the feed hash.  ARGV: when it failed (kept in failing_since if the feed was not
# failing yet), then field, value pairs.
_FEED_FAILED = """
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('HSETNX', KEYS[1], 'failing_since', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'failures', 1)
"""

# For each item of a batch, 1 when none of its seen-keys exists (the item is new); otherwise
# keeps the existing ones alive for another TTL, so an item that stays in a feed never expires
# and alerts again, and gives 0.
# KEYS: every item's seen-keys in order.  ARGV: ttl, then each item's number of keys.
_TRIAGE_ITEMS = """
local key = 1
local results = {}
for arg = 2, #ARGV do
  local seen = 0
  for i = key, key + tonumber(ARGV[arg]) - 1 do
    if redis.call('EXPIRE', KEYS[i], ARGV[1]) == 1 then seen = 1 end
  end
  results[#results + 1] = 1 - seen
  key = key + tonumber(ARGV[arg])
end
return results
"""


@dataclass(frozen=True, slots=True)
class FeedState:
    """What Redis remembers about a feed between polls: validators, schedule and health."""

    validators: Validators = field(default_factory=Validators)
    failures: int = 0
    last_success: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_status: str | None = None
    next_poll_at: datetime | None = None
    moved_to: str | None = None
    items_seen: int = 0
    body_digest: str | None = None
    failing_since: datetime | None = None
    health_alerted: bool = False
    known_entries: frozenset[str] = frozenset()
    """Fingerprints of the entries in the last body fully handled (``entry_fingerprint``)."""

    @classmethod
    def from_hash(cls, raw: Mapping[str, str]) -> FeedState:
        return cls(
            validators=Validators(raw.get("etag") or None, raw.get("last_modified") or None),
            failures=int(raw.get("failures") or 0),
            last_success=_when(raw.get("last_success")),
            last_error=raw.get("last_error") or None,
            last_error_at=_when(raw.get("last_error_at")),
            last_status=raw.get("last_status") or None,
            next_poll_at=_when(raw.get("next_poll_at")),
            moved_to=raw.get("moved_to") or None,
            items_seen=int(raw.get("items_seen") or 0),
            body_digest=raw.get("body_digest") or None,
            failing_since=_when(raw.get("failing_since")),
            health_alerted=raw.get("health_alerted") == "1",
            known_entries=frozenset((raw.get("known_entries") or "").split()),
        )


def _pairs(mapping: Mapping[str, Any]) -> list[Any]:
    """A mapping as the flat field, value list ``HSET`` takes."""
    return [part for pair in mapping.items() for part in pair]


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class Store:
    """Ingestion's view of Redis, behind named operations."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        *,
        seen_ttl: timedelta = timedelta(days=30),
        history_retention: timedelta = timedelta(days=30),
    ) -> None:
        self.client = client
        self.keys = keys
        self.seen_ttl = seen_ttl
        self.history_retention = history_retention
        self._record_items = client.register_script(_RECORD_ITEMS)
        self._triage_items = client.register_script(_TRIAGE_ITEMS)
        self._take_lease = client.register_script(_TAKE_LEASE)
        self._release_lease = client.register_script(_RELEASE_LEASE)
        self._feed_succeeded = client.register_script(_FEED_SUCCEEDED)
        self._feed_failed = client.register_script(_FEED_FAILED)

    async def ping(self) -> bool:
        return bool(await guarded(lambda: self.client.ping()))

    async def record_item(self, item: Item, matches: Sequence[Match], now: datetime) -> bool:
        """Remember the item, append it to the history and queue its matches, all at once;
        False (and nothing queued) when it had been seen before."""
        return (await self.record_items([(item, matches)], now))[0]

    async def take_lease(self, feed: str, holder: str, ttl: timedelta) -> bool:
        """Claim the right to poll ``feed`` for ``ttl``; True for the holder, False for the
        other replicas.  The lease expires, so a replica that dies gives its feeds up within
        one lease time."""
        keys = [self.keys.lease(feed)]
        args: list[str | int] = [holder, max(1, int(ttl.total_seconds() * 1000))]
        return bool(await guarded(lambda: self._take_lease(keys=keys, args=args)))

    async def release_leases(self, feeds: Sequence[str], holder: str) -> None:
        """Give up this replica's leases at shutdown, so others take over at once."""

        async def run() -> None:
            async with self.client.pipeline(transaction=False) as pipe:
                for feed in feeds:
                    await self._release_lease(
                        keys=[self.keys.lease(feed)], args=[holder], client=pipe
                    )
                await pipe.execute()

        await guarded(run)

    async def beat(self, consumer: str, fields: Mapping[str, str], ttl: timedelta) -> None:
        """The dead-man signal: this daemon is alive and when it last completed a cycle.

        The key expires, so a daemon that died stops showing up in ``monitor status``.
        """
        key = self.keys.heartbeat(consumer)

        async def write() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                mapping: dict[Any, Any] = dict(fields)
                pipe.hset(key, mapping=mapping)
                pipe.expire(key, max(1, int(ttl.total_seconds())))
                await pipe.execute()

        await guarded(write)

    async def heartbeats(self) -> dict[str, dict[str, str]]:
        """Every live daemon's heartbeat, by consumer name."""

        async def read() -> dict[str, dict[str, str]]:
            found: dict[str, dict[str, str]] = {}
            async for key in self.client.scan_iter(match=self.keys.heartbeats, count=100):
                beat: dict[str, str] = await cast(Awaitable[Any], self.client.hgetall(key))
                found[key.rsplit(":", 1)[-1]] = beat
            return found

        return await guarded(read)

    async def unseen_keys(self, key_groups: Sequence[Sequence[str]]) -> list[bool]:
        """Which items (each given by its seen-keys) are new, in one round trip, before any
        work is spent on them.

        Items already seen have their keys refreshed here, since they will not be recorded
        again.  Recording still checks atomically, so a race with another replica can only
        make an item look new here and then be skipped there.
        """
        if not key_groups:
            return []
        keys = [self.keys.seen(key) for group in key_groups for key in group]
        args = [self._ttl_seconds, *(len(group) for group in key_groups)]
        results = await guarded(lambda: self._triage_items(keys=keys, args=args))
        return [bool(result) for result in results]

    async def enqueue_health_alert(self, name: str, match: Match) -> None:
        """Queue an operational alert about a feed and remember that its incident was told."""
        payload = json.dumps(match.to_dict(), ensure_ascii=False)
        opening = match.tags[-1] == "failing"

        async def run() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xadd(self.keys.matches, {"match": payload})
                if opening:
                    pipe.hset(self.keys.feed(name), "health_alerted", "1")
                await pipe.execute()

        await guarded(run)

    async def record_items(
        self, entries: Sequence[tuple[Item, Sequence[Match]]], now: datetime
    ) -> list[bool]:
        """``record_item`` for a batch in one round trip; each item stays atomic on its own."""
        return await self.record([ItemRecord.of(item, matches) for item, matches in entries], now)

    async def record(self, records: Sequence[ItemRecord], now: datetime) -> list[bool]:
        """Record a batch of prepared items in one script call: for each, True when it was
        new (and its history entry and matches are now in Redis), False when already seen."""
        if not records:
            return []
        keys = [self.keys.matches, self.keys.items]
        oldest = now - self.history_retention
        args: list[str | int] = [self._ttl_seconds, f"{int(oldest.timestamp() * 1000)}-0"]
        for record in records:
            keys += [self.keys.seen(key) for key in record.seen_keys]
            args += [len(record.seen_keys), len(record.match_json), record.item_json]
            args += record.match_json
        results = await guarded(lambda: self._record_items(keys=keys, args=args))
        return [bool(result) for result in results]

    @property
    def _ttl_seconds(self) -> int:
        return max(1, int(self.seen_ttl.total_seconds()))

    async def history(self, since: datetime, until: datetime | None = None) -> list[Item]:
        """Items first seen in ``[since, until]``, oldest first, for backtesting rules."""
        start = f"{int(since.timestamp() * 1000)}-0"
        end = f"{int(until.timestamp() * 1000)}-99999999999" if until else "+"
        items: list[Item] = []

        async def read(first: str) -> Any:
            return await self.client.xrange(self.keys.items, first, end, count=HISTORY_BATCH)

        while True:
            batch = await guarded(functools.partial(read, start))
            items.extend(Item.from_dict(json.loads(fields["item"])) for _, fields in batch)
            if len(batch) < HISTORY_BATCH:
                return items
            start = "(" + batch[-1][0]

    # -- feed state ---------------------------------------------------------------------------

    async def feed_state(self, name: str) -> FeedState:
        raw: Mapping[str, str] = await guarded(
            lambda: cast(Awaitable[Any], self.client.hgetall(self.keys.feed(name)))
        )
        return FeedState.from_hash(raw)

    async def feed_states(self, names: Sequence[str]) -> dict[str, FeedState]:
        """Every named feed's state in one round trip, for ``feeds status``."""

        async def read() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(self.keys.feed(name))
                return await pipe.execute()

        results = await guarded(read)
        return {name: FeedState.from_hash(raw) for name, raw in zip(names, results, strict=True)}

    async def feed_succeeded(self, name: str, result: FeedSuccess) -> None:
        """Advance the feed's state; called only after every new item was recorded."""
        mapping: dict[Any, Any] = {
            "etag": result.validators.etag or "",
            "last_modified": result.validators.last_modified or "",
            "last_status": str(result.status),
            "last_success": result.at.isoformat(),
            "next_poll_at": result.next_poll_at.isoformat(),
            "moved_to": result.moved_to or "",
            "body_digest": result.body_digest or "",
            "failures": "0",
        }
        if result.known_entries is not None:
            mapping["known_entries"] = " ".join(result.known_entries)
        keys = [self.keys.feed(name)]
        args = [result.new_items, *_pairs(mapping)]
        await guarded(lambda: self._feed_succeeded(keys=keys, args=args))

    async def feed_failed(
        self, name: str, error: str, status: int | None, at: datetime, next_poll: datetime
    ) -> None:
        """Record a failed poll and when to try again."""
        mapping: dict[Any, Any] = {
            "last_error": error,
            "last_error_at": at.isoformat(),
            "last_status": str(status) if status else "error",
            "next_poll_at": next_poll.isoformat(),
        }
        keys = [self.keys.feed(name)]
        args = [at.isoformat(), *_pairs(mapping)]
        await guarded(lambda: self._feed_failed(keys=keys, args=args))


@dataclass(frozen=True, slots=True)
class FeedSuccess:
    """What a successful poll records on the feed."""

    validators: Validators
    status: int
    at: datetime
    next_poll_at: datetime
    new_items: int = 0
    moved_to: str | None = None
    body_digest: str | None = None
    known_entries: tuple[str, ...] | None = None
    """The body's entry fingerprints; None when no body was read (304): keep the old ones."""
