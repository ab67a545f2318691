"""Digest mode in Redis: matches held per channel, taken out one closed window at a time."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import redis.asyncio as aioredis

from monitor.model import Match
from monitor.redisio import Keys, guarded

# Moves the held matches of a closed window into that window's batch and marks it open, once:
# a second worker (or a retry after a crash) finds the window already open and reuses it.
# KEYS: held set, batch set, digests hash.  ARGV: window end (ms), channel.
_TAKE = """
local open = redis.call('HGET', KEYS[3], ARGV[2] .. ':open')
if open then return open end
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _, member in ipairs(members) do
  redis.call('ZADD', KEYS[2], redis.call('ZSCORE', KEYS[1], member), member)
  redis.call('ZREM', KEYS[1], member)
end
redis.call('HSET', KEYS[3], ARGV[2] .. ':open', ARGV[1])
return ARGV[1]
"""


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_ms(value: int | str) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, UTC)


class DigestStore:
    """Holds matches for channels in digest mode and hands out closed windows."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._take = client.register_script(_TAKE)

    async def hold(self, channel: str, raw_match: str, now: datetime) -> None:
        """Keep a match for the channel's next digest; holding it twice keeps it once."""
        key = self.keys.digest(channel)
        await guarded(lambda: self.client.zadd(key, {raw_match: ms(now)}, nx=True))

    async def last_sent(self, channel: str, now: datetime) -> datetime:
        """End of the last window sent; on first use that is ``now`` (nothing is owed)."""
        field = channel

        async def read() -> Any:
            await self.client.hsetnx(self.keys.digests, field, str(ms(now)))
            return await cast(Any, self.client.hget(self.keys.digests, field))

        return from_ms(await guarded(read))

    async def open_window(self, channel: str) -> datetime | None:
        """The window being sent for this channel (taken but not yet sent), if any."""
        value: Any = await guarded(
            lambda: cast(Any, self.client.hget(self.keys.digests, f"{channel}:open"))
        )
        return from_ms(value) if value else None

    async def take(self, channel: str, closes: datetime) -> datetime:
        """Move every match held until ``closes`` into that window's batch (once)."""
        keys = [
            self.keys.digest(channel),
            self.keys.digest_window(channel, ms(closes)),
            self.keys.digests,
        ]
        opened = await guarded(lambda: self._take(keys=keys, args=[ms(closes), channel]))
        return from_ms(opened)

    async def batch(self, channel: str, closes: datetime) -> list[str]:
        key = self.keys.digest_window(channel, ms(closes))
        found: Any = await guarded(lambda: cast(Any, self.client.zrange(key, 0, -1)))
        return [str(member) for member in found]

    async def close(self, channel: str, closes: datetime) -> None:
        """The window was sent (or given up): remember it and drop its batch."""

        async def write() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(self.keys.digests, channel, str(ms(closes)))
                pipe.hdel(self.keys.digests, f"{channel}:open", f"{channel}:next")
                pipe.delete(self.keys.digest_window(channel, ms(closes)))
                await pipe.execute()

        await guarded(write)

    async def postpone(self, channel: str, until: datetime) -> None:
        key = self.keys.digests
        await guarded(lambda: cast(Any, self.client.hset(key, f"{channel}:next", str(ms(until)))))

    async def not_before(self, channel: str) -> datetime | None:
        value: Any = await guarded(
            lambda: cast(Any, self.client.hget(self.keys.digests, f"{channel}:next"))
        )
        return from_ms(value) if value else None

    async def held_count(self, channel: str) -> int:
        return int(await guarded(lambda: self.client.zcard(self.keys.digest(channel))))


def parse_matches(raws: Sequence[str]) -> list[Match]:
    """The matches of a batch; an unreadable one is skipped (it cannot be shown anyway)."""
    found = []
    for raw in raws:
        try:
            found.append(Match.from_dict(json.loads(raw)))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return found


RETRY_DIGEST = timedelta(minutes=1)
"""How long a digest the channel did not accept waits before the next try."""
