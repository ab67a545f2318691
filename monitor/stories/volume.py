"""Volume and first-mention rules: fire on how often something is reported, not on one item.

A *frequency* rule fires when its window holds at least N matches; a *spike* rule when its
window holds ``factor`` times what the trailing baseline would predict for one window.  Each
fires once per burst: a replica that sees the condition first takes a marker with SET NX, and
the marker is dropped once the condition no longer holds, re-arming the rule.  Counts live in
Redis (one hash per series, a field per time bucket), so a restart loses nothing.

A *first mention* fires the first time a watched entity appears with the rule's topic: one
SET NX per (rule, entity), kept for a year.

The decisions (``volume_fires``, ``expected``) are pure and take counts, not clocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis.asyncio as aioredis

from monitor.redisio import Keys, guarded

BUCKETS_PER_WINDOW = 12
"""Counting resolution: the current window is read as its last 12 buckets."""
FIRST_MENTION_TTL = timedelta(days=365)


@dataclass(frozen=True, slots=True)
class VolumeRule:
    """What a volume rule counts and when it fires.

    ``series`` names what is counted ("rule:kz-tungsten", "tag:sanctions").  ``at_least``
    (frequency) and ``factor`` (spike) may be used alone or together; 0 switches one off.
    ``min_count`` keeps a spike from being three items against a quiet baseline.
    """

    series: str
    window: timedelta = timedelta(hours=1)
    at_least: int = 0
    factor: float = 0.0
    baseline: timedelta = timedelta(days=7)
    min_count: int = 5

    @property
    def bucket(self) -> timedelta:
        return self.window / BUCKETS_PER_WINDOW


@dataclass(frozen=True, slots=True)
class VolumeCounts:
    """Matches in the current window and in the baseline period just before it."""

    current: int
    baseline: int


def expected(rule: VolumeRule, baseline_total: int) -> float:
    """Pure: how many matches the baseline predicts for one window (its average rate)."""
    return baseline_total * (rule.window / rule.baseline)


def volume_fires(rule: VolumeRule, counts: VolumeCounts) -> str | None:
    """Pure: "frequency" or "spike" when the counts meet the rule, else None."""
    if rule.at_least and counts.current >= rule.at_least:
        return "frequency"
    if (
        rule.factor
        and counts.current >= rule.min_count
        and counts.current >= rule.factor * expected(rule, counts.baseline)
    ):
        return "spike"
    return None


# KEYS: the series hash.  ARGV: bucket now, buckets per window, buckets in
# the baseline, ttl s, add (0 to only read).  Counts one match in the current bucket, drops
# buckets older than window + baseline, returns {current, baseline}.
_COUNT = """
local now, per_window, per_baseline = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if ARGV[5] ~= '0' then redis.call('HINCRBY', KEYS[1], now, tonumber(ARGV[5])) end
local current, baseline = 0, 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local bucket, count = tonumber(fields[i]), tonumber(fields[i + 1])
  local age = now - bucket
  if age < per_window then
    current = current + count
  elseif age < per_window + per_baseline then
    baseline = baseline + count
  else
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {current, baseline}
"""


class VolumeStore:
    """Volume counters and first-mention markers in Redis, safe with several replicas."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._count = client.register_script(_COUNT)

    async def counts(self, rule: VolumeRule, now: datetime, add: int = 0) -> VolumeCounts:
        """The rule's counts at ``now``, after adding ``add`` matches at ``now``."""
        bucket_s = rule.bucket.total_seconds()
        ttl = max(1, int((rule.window + rule.baseline).total_seconds()))
        args: list[str | int] = [
            int(now.timestamp() // bucket_s),
            BUCKETS_PER_WINDOW,
            int(rule.baseline.total_seconds() // bucket_s),
            ttl,
            add,
        ]
        keys = [self.keys.volume(rule.series)]
        current, baseline = await guarded(lambda: self._count(keys=keys, args=args))
        return VolumeCounts(int(current), int(baseline))

    async def observe(self, rule: VolumeRule, now: datetime, add: int = 1) -> str | None:
        """Count matches and say whether the rule fires now: "frequency" or "spike" for the
        one call (across replicas) that first sees the condition in a burst, else None."""
        counts = await self.counts(rule, now, add)
        reason = volume_fires(rule, counts)
        marker = self.keys.volume_firing(rule.series)
        if reason is None:
            await guarded(lambda: self.client.delete(marker))
            return None
        ttl = max(1, int(rule.window.total_seconds()))
        taken = await guarded(lambda: self.client.set(marker, reason, nx=True, ex=ttl))
        if not taken:
            # Still bursting: keep the marker for as long as the condition holds.
            await guarded(lambda: self.client.expire(marker, ttl))
        return reason if taken else None

    async def first_mentions(self, rule_id: str, entities: Sequence[str]) -> list[str]:
        """The entities of ``entities`` that ``rule_id`` has never seen before (marked now)."""
        if not entities:
            return []
        ttl = int(FIRST_MENTION_TTL.total_seconds())

        async def mark() -> list[object]:
            async with self.client.pipeline(transaction=False) as pipe:
                for entity in entities:
                    pipe.set(self.keys.first_mention(rule_id, entity), "1", nx=True, ex=ttl)
                return await pipe.execute()

        results = await guarded(mark)
        return [entity for entity, new in zip(entities, results, strict=True) if new]
