"""The alert queue: the delivery side of the matches stream, retries, dead letters and markers.

Matches enter the stream in ``Store.record_item`` (atomically with the item's seen-keys); this
module reads them through the consumer group, reclaims entries a dead worker left behind,
schedules retries, acknowledges, dead-letters refusals, and keeps the markers that make
delivery happen at most once per match and channel.

Life of an entry: read (pending in the group) → every channel done → acknowledged and deleted;
or some channel failed for now → moved, in one transaction, to the ``retry`` sorted set with
its due time, and put back into the stream when due; or refused for good → copied to the
``dead`` stream.  The matches stream therefore only ever holds work still to do, and nothing
is deleted from it before it was delivered, dead-lettered or rescheduled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from monitor.model import Match
from monitor.redact import mask_text
from monitor.redisio import DELIVERY_GROUP, Keys, guarded

# Moves retries that are due back into the stream, atomically, so two workers never both
# re-queue one.  KEYS: retry set, matches stream.  ARGV: now (ms), how many at most.
_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  if redis.call('ZREM', KEYS[1], member) == 1 then
    redis.call('XADD', KEYS[2], '*', 'retry', member)
  end
end
return #due
"""

# Claims the right to send one match to one unit.  KEYS: marker[, throttle].
# ARGV: lease (s), severity, match key, throttle window (s).
# Returns go, done (already sent or dead-lettered), busy (another worker sends it now) or
# throttled (the story was alerted at this severity or higher by another match).
_BEGIN = """
local state = redis.call('GET', KEYS[1])
if state then
  if state == 'sending' then return 'busy' end
  return 'done'
end
if #KEYS > 1 then
  local held = redis.call('GET', KEYS[2])
  if held then
    local sep = string.find(held, '|', 1, true)
    local severity = tonumber(string.sub(held, 1, sep - 1))
    local owner = string.sub(held, sep + 1)
    if owner ~= ARGV[3] and severity >= tonumber(ARGV[2]) then return 'throttled' end
  end
  redis.call('SET', KEYS[2], ARGV[2] .. '|' .. ARGV[3], 'EX', tonumber(ARGV[4]))
end
redis.call('SET', KEYS[1], 'sending', 'EX', tonumber(ARGV[1]))
return 'go'
"""

# Drops a throttle only if this match holds it (its send was refused for good).
_RELEASE = """
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, string.find(held, '|', 1, true) + 1) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Sends a dead letter again: only the operator who removes it from ``dead`` re-queues it.
# KEYS: dead stream, matches stream, marker.  ARGV: dead entry id, retry JSON.
_REQUEUE_DEAD = """
if redis.call('XDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('DEL', KEYS[3])
  redis.call('XADD', KEYS[2], '*', 'retry', ARGV[2])
  return 1
end
return 0
"""

# A channel's rate limit across every worker and every Redis restart.  The key holds the
# next time (Redis clock, ms) anyone may post, then ``:`` and the taker's token.  A missing
# key means this Redis has no memory of the channel (first start, a restart that lost it, a
# failover to an empty replica): nobody may assume the channel is free, so the first caller
# starts the clock and everyone waits one interval.  The taker holds the channel for the
# whole post (``ARGV[2]`` ms, its send deadline); ``_PACED`` then sets the next slot one
# interval after the post ended, so posts *arrive* at least one interval apart.
# KEYS: pace key.  ARGV: interval (ms), hold (ms), token, key TTL (s).
# Returns 0 when the caller took the slot, else the milliseconds to wait (while a post is in
# flight, at most one interval: then ask again).
_PACE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local held = redis.call('GET', KEYS[1])
if not held then
  redis.call('SET', KEYS[1], tostring(now + interval) .. ':', 'EX', tonumber(ARGV[4]))
  return interval
end
local nxt = tonumber(string.match(held, '^(%d+)')) or 0
if nxt > now then
  -- a post in flight (a token after ':') usually ends long before its hold: look again
  if string.match(held, ':.') then return math.min(nxt - now, interval) end
  return nxt - now
end
local hold = math.max(interval, tonumber(ARGV[2]))
redis.call('SET', KEYS[1], tostring(now + hold) .. ':' .. ARGV[3], 'EX', tonumber(ARGV[4]))
return 0
"""

# The post of the slot holder ``ARGV[2]`` ended: the next slot opens one interval from now
# (unless someone, a 429's Retry-After, changed the slot meanwhile).
# KEYS: pace key.  ARGV: interval (ms), token, key TTL (s).
_PACED = """
local held = redis.call('GET', KEYS[1])
local mark = ':' .. ARGV[2]
if held and string.sub(held, -#mark) == mark then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('SET', KEYS[1], tostring(now + tonumber(ARGV[1])) .. ':', 'EX', tonumber(ARGV[3]))
  return 1
end
return 0
"""

# Holds a channel back for at least ARGV[1] ms (a server said Retry-After), never shortening
# a longer hold.  KEYS: pace key.  ARGV: hold (ms), key TTL (s).
_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = redis.call('GET', KEYS[1])
local nxt = held and (tonumber(string.match(held, '^(%d+)')) or 0) or 0
if nxt < now + tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], tostring(now + tonumber(ARGV[1])) .. ':', 'EX', tonumber(ARGV[2]))
end
return 1
"""
PACE_MEMORY = timedelta(days=7)
"""How long a channel's next-slot time is kept after its last post: longer than any pause
between alerts that matters, so a missing key almost always means Redis lost it."""

# Opens or closes an operational incident and queues its alert, in one step, only if the
# incident is still as the caller saw it: with several replicas exactly one tells.
# KEYS: incident key, matches stream.  ARGV: the state seen ('' none), the new state ('' to
# close), the alert's match JSON.
_OPS_TRANSITION = """
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2]) end
redis.call('XADD', KEYS[2], '*', 'match', ARGV[3])
return 1
"""

# Queues a "Redis is back" alert unless another replica already told this outage: the key
# holds when (ms) the last told outage ended, and an outage that began before that is the
# same one.  KEYS: the key, matches stream.  ARGV: outage start (ms), now (ms), key TTL (s),
# match JSON.
_REDIS_RECOVERED = """
local told = tonumber(redis.call('GET', KEYS[1]) or '0')
if told >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
redis.call('XADD', KEYS[2], '*', 'match', ARGV[4])
return 1
"""
RECOVERY_MEMORY = timedelta(days=7)


MERGE_CHAIN = 4
"""Merges followed from a queued match's story to the story it is part of now."""


@dataclass(frozen=True, slots=True)
class QueuedMatch:
    """A match read from the stream, with the entry id needed to acknowledge it.

    ``attempt`` counts failed attempts so far; ``only`` limits a retried entry to the units
    that still need it (empty: every routed channel); ``recipients`` names, per channel, the
    addresses a retry is for.  ``origin`` is the id the match was first queued under, so
    logs can follow one alert through its retries.
    """

    entry_id: str
    match: Match | None
    raw: str
    attempt: int = 0
    origin: str = ""
    only: tuple[str, ...] = ()
    recipients: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    enqueued_ms: int = 0

    def retry_fields(
        self, attempt: int, only: Sequence[str], recipients: Mapping[str, Sequence[str]]
    ) -> str:
        """This entry as the JSON a retry (or a re-sent dead letter) is queued as."""
        return json.dumps(
            {
                "match": self.raw,
                "attempt": attempt,
                "origin": self.origin or self.entry_id,
                "only": list(only),
                "recipients": {name: list(r) for name, r in recipients.items() if r},
                "enqueued": self.enqueued_ms or entry_ms(self.entry_id),
            },
            ensure_ascii=False,
            sort_keys=True,
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One match a channel refused for good, as ``monitor alerts dead`` lists it."""

    id: str
    channel: str
    unit: str
    reason: str
    match: Match | None
    raw: str
    attempts: int
    recipients: tuple[str, ...]
    origin: str


def entry_ms(entry_id: str) -> int:
    """The time (ms since the epoch) Redis stamped a stream entry id with."""
    head = entry_id.partition("-")[0]
    return int(head) if head.isdigit() else 0


class AlertQueue:
    """Delivery's view of Redis, behind named operations."""

    def __init__(
        self, client: aioredis.Redis, keys: Keys, *, keep_dead: int = 10_000, keep_log: int = 10_000
    ) -> None:
        self.client = client
        self.keys = keys
        self.keep_dead = keep_dead
        self.keep_log = keep_log
        self._promote = client.register_script(_PROMOTE)
        self._begin = client.register_script(_BEGIN)
        self._release = client.register_script(_RELEASE)
        self._requeue = client.register_script(_REQUEUE_DEAD)
        self._pace = client.register_script(_PACE)
        self._paced = client.register_script(_PACED)
        self._hold = client.register_script(_HOLD)
        self._ops_transition = client.register_script(_OPS_TRANSITION)
        self._redis_recovered = client.register_script(_REDIS_RECOVERED)

    async def ensure_group(self) -> None:
        """Create the delivery consumer group (and stream) if they do not exist yet."""

        async def create() -> None:
            try:
                await self.client.xgroup_create(
                    self.keys.matches, DELIVERY_GROUP, id="0", mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

        await guarded(create)

    # -- reading ------------------------------------------------------------------------------

    async def promote_due(self, now: datetime, count: int = 500) -> int:
        """Put retries whose time has come back into the stream; returns how many."""
        now_ms = int(now.timestamp() * 1000)
        keys = [self.keys.retry, self.keys.matches]
        return int(await guarded(lambda: self._promote(keys=keys, args=[now_ms, count])))

    async def next_due(self) -> float | None:
        """When (epoch seconds) the earliest scheduled retry is due, or None without any."""
        first: Any = await guarded(
            lambda: self.client.zrange(self.keys.retry, 0, 0, withscores=True)
        )
        return float(first[0][1]) / 1000 if first else None

    async def read_matches(
        self, consumer: str, count: int, block_ms: int | None
    ) -> list[QueuedMatch]:
        """New matches for this consumer; ``block_ms`` waits for some to arrive."""
        response: Any = await guarded(
            lambda: cast(
                Any,
                self.client.xreadgroup(
                    DELIVERY_GROUP, consumer, {self.keys.matches: ">"}, count=count, block=block_ms
                ),
            )
        )
        entries = response[0][1] if response else []
        return [queued(entry_id, fields) for entry_id, fields in entries]

    async def claim_stale(
        self, consumer: str, min_idle: timedelta, count: int
    ) -> list[QueuedMatch]:
        """Take over matches that another (possibly dead) worker left unacknowledged."""
        response = await guarded(
            lambda: self.client.xautoclaim(
                self.keys.matches,
                DELIVERY_GROUP,
                consumer,
                min_idle_time=int(min_idle.total_seconds() * 1000),
                start_id="0-0",
                count=count,
            )
        )
        return [queued(entry_id, fields) for entry_id, fields in response[1] if fields]

    # -- finishing an entry -------------------------------------------------------------------

    async def acknowledge(self, entry_id: str) -> None:
        """The match is fully handled: drop it from the group's pending list and the stream."""

        async def ack() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xack(self.keys.matches, DELIVERY_GROUP, entry_id)
                pipe.xdel(self.keys.matches, entry_id)
                await pipe.execute()

        await guarded(ack)

    async def retry_later(
        self,
        entry: QueuedMatch,
        due: datetime,
        *,
        attempt: int,
        only: Sequence[str],
        recipients: Mapping[str, Sequence[str]],
    ) -> None:
        """Schedule another attempt for the units in ``only`` and finish this entry, in one
        transaction: the match is always either in the stream or in the retry set."""
        member = entry.retry_fields(attempt, only, recipients)
        due_ms = int(due.timestamp() * 1000)

        async def move() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.zadd(self.keys.retry, {member: due_ms})
                pipe.xack(self.keys.matches, DELIVERY_GROUP, entry.entry_id)
                pipe.xdel(self.keys.matches, entry.entry_id)
                await pipe.execute()

        await guarded(move)

    async def dead_letter(
        self,
        entry: QueuedMatch,
        unit: str,
        reason: str,
        ttl: timedelta,
        *,
        attempts: int = 0,
        recipients: Sequence[str] = (),
    ) -> None:
        """Keep a match one channel refused for good, with the reason, and stop sending it
        there; the other channels of the match carry on.  An unreadable entry (no match) is
        acknowledged at once, since no channel can ever take it.  The dead stream is capped
        at ``keep_dead`` entries: only letters already dead are ever trimmed."""
        fields = {
            "match": entry.raw,
            "channel": unit.partition("#")[0],
            "unit": unit,
            "reason": mask_text(reason),  # a channel's error may quote a URL or a header
            "attempts": str(attempts),
            "recipients": json.dumps(list(recipients)),
            "origin": entry.origin or entry.entry_id,
        }
        seconds = max(1, int(ttl.total_seconds()))

        async def move() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xadd(
                    self.keys.dead,
                    fields,  # type: ignore[arg-type]
                    maxlen=self.keep_dead,
                    approximate=True,
                )
                if entry.match is None:
                    pipe.xack(self.keys.matches, DELIVERY_GROUP, entry.entry_id)
                    pipe.xdel(self.keys.matches, entry.entry_id)
                else:
                    pipe.set(self.keys.sent(entry.match.key, unit), "dead", ex=seconds)
                await pipe.execute()

        await guarded(move)

    async def merged_stories(self, story_ids: Sequence[str]) -> dict[str, str]:
        """For each story of ``story_ids`` merged into another since its matches were
        queued (``monitor.stories.store``: a report bridged two stories), the story it is
        part of now, following up to ``MERGE_CHAIN`` merges; stories not merged are left out."""
        current: dict[str, str] = {}
        frontier = list(dict.fromkeys(story_ids))
        for _ in range(MERGE_CHAIN):
            step = await self._merged_into(frontier)
            if not step:
                break
            for story, now in current.items():
                current[story] = step.get(now, now)
            for story in frontier:
                if story in step and story not in current:
                    current[story] = step[story]
            frontier = list(dict.fromkeys(step.values()))
        return current

    async def _merged_into(self, story_ids: Sequence[str]) -> dict[str, str]:
        """One hop: the story each of ``story_ids`` was merged into, for those merged."""
        if not story_ids:
            return {}
        keys = [self.keys.story_merged(story) for story in story_ids]

        async def read() -> list[Any]:
            return list(await self.client.mget(keys))

        found = await guarded(read)
        return {story: str(into) for story, into in zip(story_ids, found, strict=True) if into}

    async def record_suppressed(self, match: Match, channel: str, reason: str) -> None:
        """Log a match deliberately not sent (silenced, throttled) in a capped stream."""
        fields = {
            "rule": match.rule_id,
            "item": match.item.id,
            "title": match.item.title[:300],
            "channel": channel,
            "reason": reason,
        }
        await guarded(
            lambda: self.client.xadd(
                self.keys.suppressed,
                fields,  # type: ignore[arg-type]
                maxlen=self.keep_log,
                approximate=True,
            )
        )

    # -- send markers -------------------------------------------------------------------------

    async def begin_send(
        self,
        key: str,
        unit: str,
        lease: timedelta,
        *,
        severity: int = 0,
        throttle_key: str | None = None,
        throttle: timedelta = timedelta(0),
    ) -> str:
        """Claim the right to send one match (or digest), by its ``key``, to one unit.

        Returns "go" when this worker should send, "done" when it was already sent (or
        dead-lettered there), "busy" when another worker is sending it right now, and
        "throttled" when ``throttle_key``'s story was already alerted at this severity or
        higher within the window.  The "sending" lease expires, so a worker that dies
        mid-send does not block the alert forever (it is then sent again: delivery is
        at-least-once on the wire and effectively once in the channel).
        """
        keys = [self.keys.sent(key, unit)]
        window = int(throttle.total_seconds())
        if throttle_key is not None and window > 0:
            keys.append(throttle_key)
        args: list[str | int] = [max(1, int(lease.total_seconds())), int(severity), key, window]
        return str(await guarded(lambda: self._begin(keys=keys, args=args)))

    async def finish_send(self, match_key: str, unit: str, ttl: timedelta) -> None:
        key = self.keys.sent(match_key, unit)
        await guarded(lambda: self.client.set(key, "done", ex=max(1, int(ttl.total_seconds()))))

    async def abandon_send(self, match_key: str, unit: str) -> None:
        await guarded(lambda: self.client.delete(self.keys.sent(match_key, unit)))

    async def release_throttle(self, throttle_key: str, match_key: str) -> None:
        """A refused alert must not keep its story throttled."""
        await guarded(lambda: self._release(keys=[throttle_key], args=[match_key]))

    async def pace(
        self,
        channel: str,
        interval: timedelta,
        *,
        hold: timedelta = timedelta(0),
        token: str = "",
    ) -> float:
        """0 when ``channel`` may post now (the slot is taken, for ``hold`` at least: the
        post's deadline), else the seconds to wait.  Atomic in Redis, so every worker and
        replica shares one pace; on a Redis without the channel's pacing memory every caller
        waits one interval first."""
        ms = max(1, int(interval.total_seconds() * 1000))
        held = max(0, int(hold.total_seconds() * 1000))
        keys = [self.keys.pace(channel)]
        args: list[str | int] = [ms, held, token or "-", _memory_s()]
        left = await guarded(lambda: self._pace(keys=keys, args=args))
        return int(left) / 1000

    async def paced(self, channel: str, interval: timedelta, token: str) -> None:
        """The post that took the slot with ``token`` ended: the next slot opens one
        ``interval`` from now."""
        ms = max(1, int(interval.total_seconds() * 1000))
        keys = [self.keys.pace(channel)]
        await guarded(lambda: self._paced(keys=keys, args=[ms, token or "-", _memory_s()]))

    async def hold_channel(self, channel: str, wait: timedelta) -> None:
        """Let nobody post to ``channel`` for ``wait`` (a 429's Retry-After), on every worker."""
        ms = max(1, int(wait.total_seconds() * 1000))
        keys = [self.keys.pace(channel)]
        await guarded(lambda: self._hold(keys=keys, args=[ms, _memory_s()]))

    # -- dead letters -------------------------------------------------------------------------

    async def dead_letters(self, count: int = 1000) -> list[DeadLetter]:
        """The newest ``count`` dead letters, oldest first."""
        rows: Any = await guarded(
            lambda: self.client.xrevrange(self.keys.dead, "+", "-", count=count)
        )
        return [dead_letter(entry_id, fields) for entry_id, fields in reversed(rows)]

    async def requeue_dead(self, letter: DeadLetter) -> bool:
        """Send a dead letter again, to its channel only (and only to the recipients that
        refused it); False if someone else already did."""
        entry = QueuedMatch(
            letter.id, letter.match, letter.raw, origin=letter.origin, enqueued_ms=0
        )
        unit = letter.unit
        member = entry.retry_fields(0, [unit], {unit: letter.recipients})
        key = letter.match.key if letter.match else ""
        keys = [self.keys.dead, self.keys.matches, self.keys.sent(key, unit)]
        done = await guarded(lambda: self._requeue(keys=keys, args=[letter.id, member]))
        return bool(done)

    async def stream_counts(self) -> dict[str, int]:
        """Queue length, pending and dead letters, for the --once summary and status."""

        async def counts() -> dict[str, int]:
            length = await self.client.xlen(self.keys.matches)
            dead = await self.client.xlen(self.keys.dead)
            return {"queued": length, "pending": await self._pending(), "dead": dead}

        return await guarded(counts)

    async def lag(self) -> tuple[int, float]:
        """Consumer lag: matches no worker has read yet, and how long (seconds) the oldest
        match still in the stream has waited.

        The stream holds only work not yet done (entries are deleted when acknowledged or
        rescheduled), so the unread ones are its length minus the group's pending entries;
        this also holds where XINFO's own ``lag`` is unknown after deletions.
        """

        async def read() -> tuple[int, float]:
            length = await self.client.xlen(self.keys.matches)
            pending = await self._pending()
            first: Any = await self.client.xrange(self.keys.matches, "-", "+", count=1)
            age = oldest_age(first[0][0] if first else None, await self.client.time())
            return max(0, length - pending), age

        return await guarded(read)

    async def probe(self) -> None:
        """Raise ``StoreError`` unless Redis takes a write now.

        A PING is not enough: a full Redis (``maxmemory`` with ``noeviction``) and a former
        master that came back as a replica after a failover both answer PING but refuse
        every write, which stops monitor as surely as an outage does.
        """
        key = self.keys.ops("probe")
        await guarded(lambda: self.client.set(key, "1", px=60_000))

    async def dead_count(self) -> int:
        return int(await guarded(lambda: self.client.xlen(self.keys.dead)))

    async def ops_state(self, incident: str) -> str | None:
        """The open operational incident's state, or None when none is open."""
        value: Any = await guarded(lambda: self.client.get(self.keys.ops(incident)))
        return None if value is None else str(value)

    async def ops_transition(
        self, incident: str, expected: str | None, value: str | None, match: Match
    ) -> bool:
        """Move ``incident`` from ``expected`` to ``value`` (None: no incident) and queue
        ``match``, atomically; False when another replica changed it first."""
        keys = [self.keys.ops(incident), self.keys.matches]
        payload = json.dumps(match.to_dict(), ensure_ascii=False)
        args = [expected or "", value or "", payload]
        return bool(await guarded(lambda: self._ops_transition(keys=keys, args=args)))

    async def tell_redis_recovered(self, down_since: datetime, now: datetime, match: Match) -> bool:
        """Queue the "Redis is back" alert unless another replica told this outage already."""
        keys = [self.keys.ops("redis-recovered"), self.keys.matches]
        args: list[str | int] = [
            int(down_since.timestamp() * 1000),
            int(now.timestamp() * 1000),
            int(RECOVERY_MEMORY.total_seconds()),
            json.dumps(match.to_dict(), ensure_ascii=False),
        ]
        return bool(await guarded(lambda: self._redis_recovered(keys=keys, args=args)))

    async def _pending(self) -> int:
        """Entries read but not acknowledged; 0 before any daemon created the group (a
        status command run against a fresh Redis must not fail)."""
        try:
            summary: Any = await self.client.xpending(self.keys.matches, DELIVERY_GROUP)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                return 0
            raise
        return int(summary["pending"])

    async def retrying(self) -> int:
        """How many matches wait for a later attempt."""
        return int(await guarded(lambda: self.client.zcard(self.keys.retry)))


def _memory_s() -> int:
    return int(PACE_MEMORY.total_seconds())


def oldest_age(entry_id: str | None, server_time: tuple[int, int]) -> float:
    """Seconds the entry has waited by the Redis server's clock (0 without an entry), so a
    skewed clock on the daemon's host cannot make the lag look negative or huge."""
    if entry_id is None:
        return 0.0
    seconds, micros = server_time
    return max(0.0, seconds + micros / 1e6 - entry_ms(entry_id) / 1000)


def _match_or_none(raw: str) -> Match | None:
    try:
        return Match.from_dict(json.loads(raw))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def queued(entry_id: str, fields: Mapping[str, str]) -> QueuedMatch:
    """Read a stream entry: a fresh match (``match``) or a re-queued one (``retry``)."""
    if "retry" not in fields:
        raw = fields.get("match", "")
        return QueuedMatch(entry_id, _match_or_none(raw), raw, enqueued_ms=entry_ms(entry_id))
    try:
        meta = json.loads(fields["retry"])
        raw = str(meta["match"])
        return QueuedMatch(
            entry_id,
            _match_or_none(raw),
            raw,
            attempt=int(meta.get("attempt") or 0),
            origin=str(meta.get("origin") or entry_id),
            only=tuple(meta.get("only") or ()),
            recipients={k: tuple(v) for k, v in (meta.get("recipients") or {}).items()},
            enqueued_ms=int(meta.get("enqueued") or entry_ms(entry_id)),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return QueuedMatch(entry_id, None, fields["retry"])


def dead_letter(entry_id: str, fields: Mapping[str, str]) -> DeadLetter:
    raw = fields.get("match", "")
    try:
        recipients = tuple(json.loads(fields.get("recipients") or "[]"))
    except ValueError:
        recipients = ()
    return DeadLetter(
        id=entry_id,
        channel=fields.get("channel", "-"),
        unit=fields.get("unit") or fields.get("channel", "-"),
        reason=fields.get("reason", ""),
        match=_match_or_none(raw),
        raw=raw,
        attempts=int(fields.get("attempts") or 0),
        recipients=recipients,
        origin=fields.get("origin", entry_id),
    )
