"""The alert queue: the delivery side of the matches stream, and per-channel delivery markers.

Matches enter the stream in ``Store.record_item`` (atomically with the item's seen-keys); this
module reads them through the consumer group, reclaims entries a dead worker left behind,
acknowledges them, dead-letters refusals, and keeps the markers that make delivery happen at
most once per match and channel.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from monitor.model import Match
from monitor.redisio import DELIVERY_GROUP, Keys, guarded


@dataclass(frozen=True, slots=True)
class QueuedMatch:
    """A match read from the stream, with the entry id needed to acknowledge it."""

    entry_id: str
    match: Match | None
    raw: str


class AlertQueue:
    """Delivery's view of Redis, behind named operations."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

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
        return [_queued(entry_id, fields) for entry_id, fields in entries]

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
        return [_queued(entry_id, fields) for entry_id, fields in response[1] if fields]

    async def acknowledge(self, entry_id: str) -> None:
        """The match is fully handled: drop it from the group's pending list and the stream."""

        async def ack() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xack(self.keys.matches, DELIVERY_GROUP, entry_id)
                pipe.xdel(self.keys.matches, entry_id)
                await pipe.execute()

        await guarded(ack)

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
                pipe.xadd(self.keys.dead, fields)  # type: ignore[arg-type]
                if entry.match is None:
                    pipe.xack(self.keys.matches, DELIVERY_GROUP, entry.entry_id)
                    pipe.xdel(self.keys.matches, entry.entry_id)
                else:
                    pipe.set(self.keys.sent(entry.match.key, channel), "dead", ex=seconds)
                await pipe.execute()

        await guarded(move)

    async def begin_send(self, match_key: str, channel: str, lease: timedelta) -> str:
        """Claim the right to send one match to one channel.

        Returns "go" when this worker should send, "done" when it was already sent (or
        dead-lettered for this channel), and "busy"
        when another worker is sending it right now.  The "sending" lease expires, so a worker
        that dies mid-send does not block the alert forever (it is then sent again: delivery is
        at-least-once on the wire and effectively once in the channel).
        """
        key = self.keys.sent(match_key, channel)
        seconds = max(1, int(lease.total_seconds()))

        async def claim() -> str:
            if await self.client.set(key, "sending", nx=True, ex=seconds):
                return "go"
            state = await self.client.get(key)
            return "busy" if state == "sending" else "done"

        return await guarded(claim)

    async def finish_send(self, match_key: str, channel: str, ttl: timedelta) -> None:
        key = self.keys.sent(match_key, channel)
        await guarded(lambda: self.client.set(key, "done", ex=max(1, int(ttl.total_seconds()))))

    async def abandon_send(self, match_key: str, channel: str) -> None:
        await guarded(lambda: self.client.delete(self.keys.sent(match_key, channel)))

    async def stream_counts(self) -> dict[str, int]:
        """Queue length, pending and dead letters, for the --once summary and status."""

        async def counts() -> dict[str, int]:
            length = await self.client.xlen(self.keys.matches)
            dead = await self.client.xlen(self.keys.dead)
            pending = await self.client.xpending(self.keys.matches, DELIVERY_GROUP)
            return {"queued": length, "pending": int(pending["pending"]), "dead": dead}

        return await guarded(counts)


def _queued(entry_id: str, fields: Mapping[str, str]) -> QueuedMatch:
    raw = fields.get("match", "")
    try:
        match: Match | None = Match.from_dict(json.loads(raw))
    except (ValueError, KeyError, TypeError):
        match = None
    return QueuedMatch(entry_id, match, raw)
