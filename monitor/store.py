"""Everything monitor keeps in Redis, and every key name, in one place.

Keys (``P`` is the configured prefix, ``monitor`` by default)::

    P:seen:<key>                 an item identity already handled (string, expires after dedup.ttl)
    P:feed:<name>                a feed's state: validators and health (hash)
    P:matches                    matches waiting for delivery (stream; consumer group "deliver")
    P:dead                       matches a channel refused for good, with the reason (stream)
    P:sent:<rule|item>:<channel> delivery marker: "sending" while a worker sends, then "done"
                                 (or "dead" when the channel refused it for good)

The store is a thin shell: it takes a connected ``redis.asyncio.Redis`` from the composition
root and turns Redis errors into ``StoreError`` so callers handle one kind of failure.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from monitor.errors import StoreError
from monitor.fetch import Validators
from monitor.model import Match

GROUP = "deliver"
T = TypeVar("T")

# Marks an item seen under all its keys and queues its matches, atomically: either the item is
# new and every match is in the stream, or nothing changed.  A crash between the two steps can
# therefore never leave an item "seen" whose alerts were never queued.  Seen keys are refreshed
# on every sighting so an item still in a feed never expires and alerts again.
_RECORD_ITEM = """
local stream = KEYS[#KEYS]
local ttl = tonumber(ARGV[1])
local seen = 0
for i = 1, #KEYS - 1 do
  if redis.call('EXISTS', KEYS[i]) == 1 then seen = 1 end
end
for i = 1, #KEYS - 1 do
  redis.call('SET', KEYS[i], '1', 'EX', ttl)
end
if seen == 1 then return 0 end
for j = 2, #ARGV do
  redis.call('XADD', stream, '*', 'match', ARGV[j])
end
return 1
"""


@dataclass(frozen=True, slots=True)
class QueuedMatch:
    """A match read from the stream, with the entry id needed to acknowledge it."""

    entry_id: str
    match: Match | None
    raw: str


@dataclass(frozen=True, slots=True)
class FeedState:
    """What Redis remembers about a feed between polls."""

    validators: Validators
    failures: int = 0
    last_success: str | None = None
    last_error: str | None = None


class Store:
    """Monitor's Redis state behind named operations."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "monitor") -> None:
        self.client = client
        self.prefix = prefix
        self.matches_stream = f"{prefix}:matches"
        self.dead_stream = f"{prefix}:dead"
        self._record_item = client.register_script(_RECORD_ITEM)

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        try:
            return await operation()
        except RedisError as exc:
            raise StoreError(f"Redis: {type(exc).__name__}: {exc}") from None
        except OSError as exc:
            raise StoreError(f"Redis: {exc}") from None

    async def ping(self) -> bool:
        return bool(await self._call(lambda: self.client.ping()))

    async def ensure_group(self) -> None:
        """Create the delivery consumer group (and stream) if they do not exist yet."""

        async def create() -> None:
            try:
                await self.client.xgroup_create(self.matches_stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

        await self._call(create)

    async def record_item(
        self, seen_keys: Sequence[str], matches: Sequence[Match], ttl: timedelta
    ) -> bool:
        """Remember the item and queue its matches; False when it had been seen before."""
        keys = [f"{self.prefix}:seen:{key}" for key in seen_keys] + [self.matches_stream]
        args: list[str | int] = [max(1, int(ttl.total_seconds()))]
        args += [json.dumps(match.to_dict(), ensure_ascii=False) for match in matches]
        result = await self._call(lambda: self._record_item(keys=keys, args=args))
        return bool(result)

    # -- feed state ---------------------------------------------------------------------------

    def _feed_key(self, name: str) -> str:
        return f"{self.prefix}:feed:{name}"

    async def feed_state(self, name: str) -> FeedState:
        raw: Mapping[str, str] = await self._call(
            lambda: cast(Awaitable[Any], self.client.hgetall(self._feed_key(name)))
        )
        return FeedState(
            validators=Validators(raw.get("etag") or None, raw.get("last_modified") or None),
            failures=int(raw.get("failures") or 0),
            last_success=raw.get("last_success"),
            last_error=raw.get("last_error"),
        )

    async def feed_succeeded(
        self, name: str, validators: Validators, status: int, at: datetime, new_items: int
    ) -> None:
        """Advance the feed's state; called only after every new item was recorded."""
        mapping: dict[Any, Any] = {
            "etag": validators.etag or "",
            "last_modified": validators.last_modified or "",
            "last_status": str(status),
            "last_success": at.isoformat(),
            "failures": "0",
        }
        key = self._feed_key(name)

        async def write() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=mapping)
                pipe.hincrby(key, "items_seen", new_items)
                await pipe.execute()

        await self._call(write)

    async def feed_failed(self, name: str, error: str, at: datetime) -> int:
        """Record a failed poll; returns the number of consecutive failures."""
        key = self._feed_key(name)

        async def write() -> Any:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={"last_error": error, "last_error_at": at.isoformat()})
                pipe.hincrby(key, "failures", 1)
                return await pipe.execute()

        results = await self._call(write)
        return int(results[-1])

    # -- delivery -----------------------------------------------------------------------------

    async def read_matches(
        self, consumer: str, count: int, block_ms: int | None
    ) -> list[QueuedMatch]:
        """New matches for this consumer; ``block_ms`` waits for some to arrive."""
        response: Any = await self._call(
            lambda: cast(
                Awaitable[Any],
                self.client.xreadgroup(
                    GROUP, consumer, {self.matches_stream: ">"}, count=count, block=block_ms
                ),
            )
        )
        entries = response[0][1] if response else []
        return [_queued(entry_id, fields) for entry_id, fields in entries]

    async def claim_stale(
        self, consumer: str, min_idle: timedelta, count: int
    ) -> list[QueuedMatch]:
        """Take over matches that another (possibly dead) worker left unacknowledged."""
        response = await self._call(
            lambda: self.client.xautoclaim(
                self.matches_stream,
                GROUP,
                consumer,
                min_idle_time=int(min_idle.total_seconds() * 1000),
                start_id="0-0",
                count=count,
            )
        )
        return [_queued(entry_id, fields) for entry_id, fields in response[1] if fields]

    async def acknowledge(self, entry_id: str) -> None:
        """The match is fully handled: drop it from the group's pending list and the stream."""

        async def ack() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xack(self.matches_stream, GROUP, entry_id)
                pipe.xdel(self.matches_stream, entry_id)
                await pipe.execute()

        await self._call(ack)

    async def dead_letter(
        self, entry: QueuedMatch, channel: str, reason: str, ttl: timedelta
    ) -> None:
        """Keep a match one channel refused for good, with the reason, and stop sending it
        there; the other channels of the match carry on.  An unreadable entry (no match) is
        acknowledged at once, since no channel can ever take it."""
        fields = {"match": entry.raw, "channel": channel, "reason": reason}
        seconds = max(1, int(ttl.total_seconds()))

        async def move() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xadd(self.dead_stream, fields)  # type: ignore[arg-type]
                if entry.match is None:
                    pipe.xack(self.matches_stream, GROUP, entry.entry_id)
                    pipe.xdel(self.matches_stream, entry.entry_id)
                else:
                    pipe.set(self._sent_key(entry.match.key, channel), "dead", ex=seconds)
                await pipe.execute()

        await self._call(move)

    def _sent_key(self, match_key: str, channel: str) -> str:
        return f"{self.prefix}:sent:{match_key}:{channel}"

    async def begin_send(self, match_key: str, channel: str, lease: timedelta) -> str:
        """Claim the right to send one match to one channel.

        Returns "go" when this worker should send, "done" when it was already sent (or
        dead-lettered for this channel), and "busy"
        when another worker is sending it right now.  The "sending" lease expires, so a worker
        that dies mid-send does not block the alert forever (it is then sent again: delivery is
        at-least-once on the wire and effectively once in the channel).
        """
        key = self._sent_key(match_key, channel)
        seconds = max(1, int(lease.total_seconds()))

        async def claim() -> str:
            if await self.client.set(key, "sending", nx=True, ex=seconds):
                return "go"
            state = await self.client.get(key)
            return "busy" if state == "sending" else "done"

        return await self._call(claim)

    async def finish_send(self, match_key: str, channel: str, ttl: timedelta) -> None:
        key = self._sent_key(match_key, channel)
        await self._call(lambda: self.client.set(key, "done", ex=max(1, int(ttl.total_seconds()))))

    async def abandon_send(self, match_key: str, channel: str) -> None:
        await self._call(lambda: self.client.delete(self._sent_key(match_key, channel)))

    async def stream_counts(self) -> dict[str, int]:
        """Queue length, pending and dead letters, for the --once summary and status."""

        async def counts() -> dict[str, int]:
            length = await self.client.xlen(self.matches_stream)
            dead = await self.client.xlen(self.dead_stream)
            pending = await self.client.xpending(self.matches_stream, GROUP)
            return {"queued": length, "pending": int(pending["pending"]), "dead": dead}

        return await self._call(counts)


def _queued(entry_id: str, fields: Mapping[str, str]) -> QueuedMatch:
    raw = fields.get("match", "")
    try:
        match: Match | None = Match.from_dict(json.loads(raw))
    except (ValueError, KeyError, TypeError):
        match = None
    return QueuedMatch(entry_id, match, raw)
