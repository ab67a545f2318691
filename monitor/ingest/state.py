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
from monitor.ingest.schedule import is_stale
from monitor.model import Item, Match
from monitor.redact import mask_text, mask_url
from monitor.redisio import Keys, guarded

# Shared by the two scripts below.  Per item, KEYS hold its seen-keys (its id key first, then
# its link hash when it has a link, then text keys) and then its legacy keys; ARGV holds, at
# ``arg``: number of seen-keys, number of legacy keys, its link field ('' = no link hash),
# its material digest.  An id key holds "<material digest> <rule> <rule>...": what the item
# said and every rule it matched when it was last recorded ('1' before edits were tracked).
_SIGHTING = """
local function link_seen(hash, field)
  local cut = string.find(field, '\\31', 1, true)
  local source, fragment = string.sub(field, 1, cut - 1), string.sub(field, cut + 1)
  for _, carrier in ipairs(redis.call('HKEYS', hash)) do
    local at = string.find(carrier, '\\31', 1, true)
    if at then
      local other, seen = string.sub(carrier, 1, at - 1), string.sub(carrier, at + 1)
      if seen == fragment or (other ~= source and (seen == '' or fragment == '')) then
        return true
      end
    end
  end
  return false
end
-- Whether any key other than the id key says the item (or its article) was seen.
local function seen_elsewhere(key, arg)
  local nkeys, nlegacy, field = tonumber(ARGV[arg]), tonumber(ARGV[arg + 1]), ARGV[arg + 2]
  for i = key + 1, key + nkeys + nlegacy - 1 do
    if i == key + 1 and field ~= '' then
      if link_seen(KEYS[i], field) then return true end
    elseif redis.call('EXISTS', KEYS[i]) == 1 then
      return true
    end
  end
  return false
end
local function split(stored)
  local cut = string.find(stored, ' ', 1, true)
  if not cut then return stored, '' end
  return string.sub(stored, 1, cut - 1), string.sub(stored, cut + 1)
end
"""

# Marks each item of a batch seen under all its keys and queues its matches, each item
# atomically (the whole script is): either an item is new (or an update) and every match is
# in the stream, or nothing was queued for it.  A crash can therefore never leave an item
# "seen" whose alerts were never queued.  Seen keys are refreshed on every sighting so an
# item still in a feed never expires and alerts again.  Items are handled in order, so two
# items of one batch sharing a link or text count as one.  One script call per batch (not
# per item) keeps the event loop's share of a 50,000-item first poll small.
# An update (flag 1) is queued only while its id key still holds another digest: a retried
# or concurrent pass that already recorded this edit queues nothing.  It joins no history
# entry: the history holds items as first seen.
# KEYS: the matches stream, the item history stream, then per item as in _SIGHTING.
# ARGV: seen ttl (s), history MINID (oldest entry id to keep), then per item: the four values
#       of _SIGHTING, its matched rules (space separated), update (0/1), its number of
#       matches, its JSON, its matches' JSON...
# Returns one value per item: 0 seen before (nothing queued), 1 new, 2 an update.
_RECORD_ITEMS = (
    _SIGHTING
    + """
local ttl = tonumber(ARGV[1])
local key, arg = 3, 3
local results = {}
local function remember(nkeys, field, value)
  redis.call('SET', KEYS[key], value, 'EX', ttl)
  for i = key + 1, key + nkeys - 1 do
    if i == key + 1 and field ~= '' then
      redis.call('HSET', KEYS[i], field, '1')
      redis.call('EXPIRE', KEYS[i], ttl)
    else
      redis.call('SET', KEYS[i], '1', 'EX', ttl)
    end
  end
end
local function union(listed, more)
  local have, out = {}, {}
  for rule in string.gmatch(listed .. ' ' .. more, '%S+') do
    if not have[rule] then have[rule] = true; out[#out + 1] = rule end
  end
  return table.concat(out, ' ')
end
while arg <= #ARGV do
  local nkeys, nlegacy, field = tonumber(ARGV[arg]), tonumber(ARGV[arg + 1]), ARGV[arg + 2]
  local digest, matched, update = ARGV[arg + 3], ARGV[arg + 4], ARGV[arg + 5]
  local nmatches = tonumber(ARGV[arg + 6])
  local stored = redis.call('GET', KEYS[key])
  local status, value = 0, nil
  if stored then
    local known, prior = split(stored)
    if stored == '1' then
      value = digest .. ' ' .. matched
    elseif known ~= digest and update == '1' then
      status, value = 2, digest .. ' ' .. union(prior, matched)
    else
      value = stored
    end
  elseif seen_elsewhere(key, arg) then
    value = digest .. ' ' .. matched
  else
    status, value = 1, digest .. ' ' .. matched
  end
  remember(nkeys, field, value)
  if status == 1 then
    redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[2], '*', 'item', ARGV[arg + 7])
  end
  if status > 0 then
    for j = arg + 8, arg + 7 + nmatches do
      redis.call('XADD', KEYS[1], '*', 'match', ARGV[j])
    end
  end
  results[#results + 1] = status
  key = key + nkeys + nlegacy
  arg = arg + 8 + nmatches
end
return results
"""
)
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

# How each item of a batch was seen before, in one round trip, before any work is spent on
# it.  Keys of items seen before are kept alive for another TTL, so an item that stays in a
# feed never expires and alerts again.
# KEYS and ARGV: ttl, then per item as in _SIGHTING.
# Returns per item: 1 new; 0 seen, unchanged; 2 seen under another key only (another feed's
# copy, or a key from before edits were tracked): to be recorded, never alerted; or a string,
# the rules it matched (space separated), when its id key holds another digest: an edit.
_TRIAGE_ITEMS = (
    _SIGHTING
    + """
local ttl = ARGV[1]
local key, arg = 1, 2
local results = {}
while arg <= #ARGV do
  local nkeys, nlegacy = tonumber(ARGV[arg]), tonumber(ARGV[arg + 1])
  local stored = redis.call('GET', KEYS[key])
  local result = 1
  if stored then
    for i = key, key + nkeys - 1 do redis.call('EXPIRE', KEYS[i], ttl) end
    local known, prior = split(stored)
    if stored == '1' then
      result = 2
    elseif known == ARGV[arg + 3] then
      result = 0
    else
      result = prior
    end
  elseif seen_elsewhere(key, arg) then
    result = 2
  end
  results[#results + 1] = result
  key = key + nkeys + nlegacy
  arg = arg + 4
end
return results
"""
)


@dataclass(frozen=True, slots=True)
class Sighting:
    """How an item of a fetched body was seen before (``Store.triage``).

    ``kind``: "new"; "seen" (unchanged: nothing to do); "elsewhere" (another feed's copy of
    the article, or an item recorded before its key scheme: record its keys, never alert);
    "changed" (its GUID came back with other words: ``prior`` are the rules it matched).
    """

    kind: str
    prior: tuple[str, ...] = ()

    @classmethod
    def from_reply(cls, reply: object) -> Sighting:
        if isinstance(reply, bytes):
            reply = reply.decode("utf-8")
        if isinstance(reply, str):
            return cls("changed", tuple(reply.split()))
        return cls({0: "seen", 1: "new", 2: "elsewhere"}[int(reply)])  # type: ignore[call-overload]


SEEN, NEW, UPDATED = 0, 1, 2
"""What ``Store.record`` says of each item."""


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

    def health(self, interval: timedelta, now: datetime) -> str:
        """Pure: "never polled", "failing", "stale" or "ok", as an operator reads the feed at
        ``now`` (``monitor feeds status`` and the console's feeds page)."""
        if self.last_success is None and self.failures == 0:
            return "never polled"
        if self.failures:
            return "failing"
        if is_stale(self.last_success, interval, now, self.next_poll_at):
            return "stale"
        return "ok"


def _record_keys(record: ItemRecord) -> tuple[str, ...]:
    """An item's keys in the order the scripts read them: seen-keys, then legacy keys."""
    return (*record.seen_keys, *record.legacy)


def _sighting_args(record: ItemRecord) -> list[str | int]:
    """An item's first four values of ``_SIGHTING``."""
    field = record.link_field if len(record.seen_keys) > 1 else ""
    return [len(record.seen_keys), len(record.legacy), field, record.material]


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

    async def forget_beat(self, consumer: str) -> None:
        """A daemon that stops says so: ``monitor status`` no longer lists it as up (without
        this it would for the heartbeat's lifetime, two minutes)."""
        key = self.keys.heartbeat(consumer)
        await guarded(lambda: self.client.delete(key))

    async def heartbeats(self) -> dict[str, dict[str, str]]:
        """Every live daemon's heartbeat, by consumer name."""

        async def read() -> dict[str, dict[str, str]]:
            found: dict[str, dict[str, str]] = {}
            async for key in self.client.scan_iter(match=self.keys.heartbeats, count=100):
                beat: dict[str, str] = await cast(Awaitable[Any], self.client.hgetall(key))
                found[key.rsplit(":", 1)[-1]] = beat
            return found

        return await guarded(read)

    async def triage(self, records: Sequence[ItemRecord]) -> list[Sighting]:
        """How each item was seen before, in one round trip, before any work is spent on
        them (``Sighting``).

        Items already seen have their keys refreshed here, since they will not be recorded
        again.  Recording still checks atomically, so a race with another replica can only
        make an item look new here and then be skipped there.
        """
        if not records:
            return []
        keys = [self.keys.seen(key) for record in records for key in _record_keys(record)]
        args: list[str | int] = [self._ttl_seconds]
        for record in records:
            args += _sighting_args(record)
        results = await guarded(lambda: self._triage_items(keys=keys, args=args))
        return [Sighting.from_reply(result) for result in results]

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
        records = [ItemRecord.of(item, matches) for item, matches in entries]
        return [status == NEW for status in await self.record(records, now)]

    async def record(self, records: Sequence[ItemRecord], now: datetime) -> list[int]:
        """Record a batch of prepared items in one script call: for each, ``NEW`` (its
        history entry and matches are now in Redis), ``UPDATED`` (a materially changed item,
        ``ItemRecord.update``: its matches are queued) or ``SEEN`` (nothing queued)."""
        if not records:
            return []
        keys = [self.keys.matches, self.keys.items]
        oldest = now - self.history_retention
        args: list[str | int] = [self._ttl_seconds, f"{int(oldest.timestamp() * 1000)}-0"]
        for record in records:
            keys += [self.keys.seen(key) for key in _record_keys(record)]
            args += _sighting_args(record)
            args += [" ".join(record.matched), 1 if record.update else 0, len(record.match_json)]
            args += [record.item_json, *record.match_json]
        results = await guarded(lambda: self._record_items(keys=keys, args=args))
        return [int(result) for result in results]

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
            "moved_to": mask_url(result.moved_to or ""),
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
            "last_error": mask_text(error),  # an error may quote a URL with its password
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
