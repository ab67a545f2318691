"""Silences in Redis: each one a key that expires with it, plus an index to list them."""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from monitor.deliver.policy import Silence
from monitor.redisio import Keys, guarded


class SilenceStore:
    """Add, list and remove silences; Redis expires each one when it ends."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    async def add(
        self,
        *,
        rule: str | None,
        tag: str | None,
        duration: timedelta,
        reason: str,
        now: datetime,
        author: str = "",
        story: str | None = None,
        source: str | None = None,
    ) -> Silence:
        """Store a new silence lasting ``duration`` from ``now``.

        By rule or by tag (exactly one) as before; or by story, by source, or a rule's
        source (the Slack buttons' mutes), where a tag may not be combined."""
        if story is None and source is None:
            if (rule is None) == (tag is None):
                raise ValueError("a silence names exactly one of a rule or a tag")
        elif tag is not None:
            raise ValueError("a silence by story or source names no tag")
        if duration <= timedelta(0):
            raise ValueError("a silence must last a positive time")
        silence = Silence(
            id=secrets.token_hex(4),
            ends=now + duration,
            reason=reason,
            rule=rule,
            tag=tag,
            created=now,
            author=author,
            story=story,
            source=source,
        )
        seconds = max(1, int(duration.total_seconds()))
        body = json.dumps(silence.to_dict(), ensure_ascii=False)

        async def write() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.set(self.keys.silence(silence.id), body, ex=seconds)
                pipe.sadd(self.keys.silences, silence.id)
                await pipe.execute()

        await guarded(write)
        return silence

    async def active(self, now: datetime) -> list[Silence]:
        """Silences in force at ``now``, soonest to end first; ids of expired ones are pruned."""
        ids: Any = await guarded(lambda: self.client.smembers(self.keys.silences))
        if not ids:
            return []
        ordered = sorted(ids)
        bodies: Any = await guarded(
            lambda: self.client.mget([self.keys.silence(i) for i in ordered])
        )
        gone = [sid for sid, body in zip(ordered, bodies, strict=True) if body is None]
        if gone:
            await guarded(lambda: self.client.srem(self.keys.silences, *gone))
        found = [Silence.from_dict(json.loads(body)) for body in bodies if body is not None]
        return sorted((s for s in found if s.ends > now), key=lambda s: (s.ends, s.id))

    async def remove(self, silence_id: str) -> bool:
        """End a silence now; False if there was no such silence."""

        async def delete() -> Any:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(self.keys.silence(silence_id))
                pipe.srem(self.keys.silences, silence_id)
                return await pipe.execute()

        results = await guarded(delete)
        return bool(results[0])
