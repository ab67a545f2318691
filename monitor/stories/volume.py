"""Volume and first-mention rules: fire on how often something is reported, not on one item.

A *frequency* rule fires when its window holds at least N matches; a *spike* rule when its
window holds ``factor`` times what the trailing baseline would predict for one window.  Each
fires once per burst: a replica that sees the condition first takes a marker with SET NX, and
the marker is dropped once the condition no longer holds, re-arming the rule.  Counts live in
Redis (one hash per series, a field per time bucket), so a restart loses nothing.

A *first mention* fires the first time a watched entity appears with the rule's topic: one
SET NX per (rule, entity), kept for a year.

The decisions (``volume_fires``, ``expected``) are pure and take counts, not clocks; they
live in ``monitor.stories.trends``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import redis.asyncio as aioredis

from monitor.redisio import Keys, guarded
from monitor.stories.trends import (
    BUCKETS_PER_WINDOW,
    FIRST_MENTION_TTL,
    VolumeCounts,
    VolumeRule,
    volume_fires,
)

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


# KEYS: the firing marker, the matches stream.  ARGV: reason, marker ttl s, match JSON ('':
# none to queue).
# Takes the burst's marker and queues the trend's match in one step, so a crash cannot take
# the marker without queueing (a lost alert) or queue twice.  Returns 1 when it fired.
_FIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  if ARGV[3] ~= '' then redis.call('XADD', KEYS[2], '*', 'match', ARGV[3]) end
  return 1
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 0
"""

# KEYS: per entity its first-mention marker, then the matches stream.  ARGV: marker ttl s,
# then per entity its match JSON ('': none).  Marks each entity, and queues the match of each
# one seen for the first time; returns their positions.
_FIRST = """
local stream, fired = KEYS[#KEYS], {}
for i = 1, #KEYS - 1 do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[1]) then
    if ARGV[i + 1] ~= '' then redis.call('XADD', stream, '*', 'match', ARGV[i + 1]) end
    fired[#fired + 1] = i
  end
end
return fired
"""


class VolumeStore:
    """Volume counters and first-mention markers in Redis, safe with several replicas."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._count = client.register_script(_COUNT)
        self._fire = client.register_script(_FIRE)
        self._first = client.register_script(_FIRST)

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

    async def observe(
        self,
        rule: VolumeRule,
        now: datetime,
        add: int = 1,
        alert: Callable[[str, VolumeCounts], str] | None = None,
    ) -> str | None:
        """Count ``add`` matches at ``now`` and say whether the rule fires: "frequency" or
        "spike" for the one call across replicas that first sees the condition in a burst,
        else None.  With ``alert``, the match it builds (JSON) is queued for delivery in the
        same script that takes the burst's marker.  The marker is dropped when the condition
        ends, re-arming the rule for the next burst.
        """
        counts = await self.counts(rule, now, add)
        reason = volume_fires(rule, counts)
        marker = self.keys.volume_firing(rule.series)
        if reason is None:
            await guarded(lambda: self.client.delete(marker))
            return None
        payload = alert(reason, counts) if alert is not None else ""
        keys = [marker, self.keys.matches]
        args: list[str | int] = [reason, max(1, int(rule.window.total_seconds())), payload]
        fired = await guarded(lambda: self._fire(keys=keys, args=args))
        return reason if int(fired) == 1 else None

    async def first_mentions(
        self, rule_id: str, entities: Sequence[str], alerts: Sequence[str] = ()
    ) -> list[str]:
        """The entities of ``entities`` that ``rule_id`` has never seen before (marked now,
        and kept a year).  With ``alerts`` (one match JSON per entity), each new entity's
        match is queued for delivery in the same script that marks it."""
        if not entities:
            return []
        keys = [self.keys.first_mention(rule_id, entity) for entity in entities]
        keys.append(self.keys.matches)
        payloads = list(alerts) or [""] * len(entities)
        args: list[str | int] = [int(FIRST_MENTION_TTL.total_seconds()), *payloads]
        fired = await guarded(lambda: self._first(keys=keys, args=args))
        return [entities[int(index) - 1] for index in fired]
