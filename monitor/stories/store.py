"""Stories in Redis: candidate lookup, atomic assignment across replicas, and reading back.

The I/O shell around ``monitor.stories.cluster``.  Assigning an item takes three round trips,
each one Lua script:

1. read the candidate index (one HMGET per 12-hour bucket of the item's publication time
   plus and minus the window): which stories published around it share an LSH band, a
   specific entity, a figure or a date with the item, and a digest of everything read;
2. read the best-ranked stories' last-seen times and the members this process has not
   decoded yet (members are append-only, so they are cached);
3. decide in Python (``choose_story``, pure), then commit with ``_ASSIGN``, which first
   checks that the index fields read in step 1 still hash to the same digest.  Another
   replica that assigned a similar item in between must have written one of those fields
   (similar items share index keys; that is how they find each other), so the check fails
   and the item is decided again, now seeing the other replica's story.  Two replicas
   clustering similar items at the same moment can therefore never open two stories.

Every decision about time reads the item's publication time (``Item.published``): the
window, the buckets the index is read from and written to.  ``now``, the arrival, only
stamps ``seen_at`` and sets how long keys live, so items that arrive together (a first
poll, a catch-up) form the stories they would have formed one by one, and an old item's
index bucket lives on for ``retention`` after it was last written.

If contention never lets a commit through (a burst of polls of one event, every replica
rewriting the same index fields), the item opens its own story with a warning rather than
failing the poll: a story conflict never costs an alert.

The script also sets the per-story flags (a new language, source, kind or owner group) with
HSETNX, so exactly one item of a story is told "new language" whatever the replica count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import redis.asyncio as aioredis
import structlog

from monitor.model import Item
from monitor.redisio import Keys, guarded
from monitor.stories.cluster import (
    KEY_STORIES,
    MAX_MEMBERS,
    STRONG_LINK,
    Candidate,
    Decision,
    Extractor,
    Features,
    bucket_of,
    buckets_around,
    encode_signature,
    plan,
    rank_candidates,
    story_id_for,
)
from monitor.stories.story import Gate, RuleState, SourceMeta, Story, StoryItem, StoryUpdate

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 64
"""Optimistic attempts before an item gives up on joining and opens its own story.  Each
refused commit means another item was committed, so N items contending for one event's index
fields all get through within N attempts; the cap only bounds a pathological burst."""
BACKOFF_SECONDS = 0.002
"""First pause after a refused commit, doubled per attempt up to ``BACKOFF_CAP`` and jittered,
so contending replicas stop reading and committing in lockstep."""
BACKOFF_CAP = 0.05

# The index as one replica saw it: every bucket's values of the item's index keys, joined
# and hashed.  Shared by the read and the commit, so the commit can tell whether anything it
# decided on changed, without the values travelling back and forth.
_SNAPSHOT = """
local function snapshot(n, k)
  local parts = {}
  for b = 1, n do
    local row = redis.call('HMGET', KEYS[b], unpack(ARGV, 3, 2 + k))
    for i = 1, k do parts[#parts + 1] = row[i] or '' end
  end
  return parts
end
"""

# KEYS: index buckets.  ARGV: n, k, index keys (k).
# Returns {digest, key number, value, key number, value, ...} for the fields that are set.
_READ_INDEX = (
    _SNAPSHOT
    + """
local n, k = tonumber(ARGV[1]), tonumber(ARGV[2])
local parts = snapshot(n, k)
local found = {redis.sha1hex(table.concat(parts, '\\n'))}
for position, value in ipairs(parts) do
  if value ~= '' then
    found[#found + 1] = (position - 1) % k + 1
    found[#found + 1] = value
  end
end
return found
"""
)

# KEYS: story hashes and member lists, alternating.  ARGV: members already known, per story.
# Returns per story {first_seen, last_seen, members from the known count on}, or {} if gone.
_READ_STORIES = """
local out = {}
for s = 1, #ARGV do
  local times = redis.call('HMGET', KEYS[3 * s - 2], 'first_seen', 'last_seen', 'rev', 'apart')
  if times[1] then
    out[s] = {times[1] .. ':' .. (times[3] or '0'), times[2],
              redis.call('LRANGE', KEYS[3 * s - 1], tonumber(ARGV[s]), -1), times[4] or ''}
  else
    out[s] = {'merged', redis.call('GET', KEYS[3 * s]) or ''}
  end
end
return out
"""

# Merges one story (src) into another (dst): the item that linked both strongly showed they
# report one event.  Everything of src moves: its items and members (appended), its flags
# (the earlier time wins), its rules' states (dst's own win; 't:' the larger count), its
# items' story keys and the index fields of its members; src is deleted and remembers dst.
# KEYS: src hash, items, members, rules; dst hash, items, members, rules; stories zset; src
#       merged key; then m item keys (src's items), then p index buckets (one per field).
# ARGV: src id, dst id, ttl s, member cap, m, item key ttl s, p, then p index fields.
# Returns 'ok', 'gone' (src or dst no longer exists: another replica merged it) or 'retry'
# (src gained an item since its items were read).
_ABSORB = """
local src, dst, ttl, cap = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local m, item_ttl, p = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[5]) == 0 then
  return 'gone'
end
if redis.call('LLEN', KEYS[2]) ~= m then return 'retry' end
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local field, value = fields[i], fields[i + 1]
  if field == 'items' then
    redis.call('HINCRBY', KEYS[5], 'items', tonumber(value))
  elseif field == 'apart' then
    local seen, kept = {}, {}
    for id in string.gmatch((redis.call('HGET', KEYS[5], 'apart') or '') .. ' ' .. value, '%S+') do
      if not seen[id] and id ~= src and id ~= dst then seen[id] = true; kept[#kept + 1] = id end
    end
    redis.call('HSET', KEYS[5], 'apart', table.concat(kept, ' '))
  elseif field == 'last_seen' then
    local mine = tonumber(redis.call('HGET', KEYS[5], field) or '0')
    if tonumber(value) > mine then redis.call('HSET', KEYS[5], field, value) end
  elseif field ~= 'id' and field ~= 'owners' and field ~= 'rev' then
    local mine = redis.call('HGET', KEYS[5], field)
    if not mine or tonumber(value) < tonumber(mine) then
      redis.call('HSET', KEYS[5], field, value)
    end
  end
end
local owners = 0
for _, field in ipairs(redis.call('HKEYS', KEYS[5])) do
  if string.sub(field, 1, 6) == 'owner:' then owners = owners + 1 end
end
redis.call('HSET', KEYS[5], 'owners', owners)
for _, entry in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  redis.call('RPUSH', KEYS[6], entry)
end
for _, entry in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
  if redis.call('LLEN', KEYS[7]) < cap then redis.call('RPUSH', KEYS[7], entry) end
end
local rules = redis.call('HGETALL', KEYS[4])
for i = 1, #rules, 2 do
  local field, value = rules[i], rules[i + 1]
  if string.sub(field, 1, 2) == 't:' then
    local mine = tonumber(redis.call('HGET', KEYS[8], field) or '-1')
    if tonumber(value) > mine then redis.call('HSET', KEYS[8], field, value) end
  else
    redis.call('HSETNX', KEYS[8], field, value)
  end
end
for i = 1, m do
  local key = KEYS[10 + i]
  if redis.call('GET', key) == src then redis.call('SET', key, dst, 'EX', item_ttl) end
end
for i = 1, p do
  local bucket, field = KEYS[10 + m + i], ARGV[7 + i]
  local current = redis.call('HGET', bucket, field)
  if current then
    local kept, seen = {}, {}
    for id in string.gmatch(current, '%S+') do
      if id == src then id = dst end
      if not seen[id] then kept[#kept + 1] = id; seen[id] = true end
    end
    redis.call('HSET', bucket, field, table.concat(kept, ' '))
  end
end
redis.call('ZREM', KEYS[9], src)
redis.call('ZADD', KEYS[9], redis.call('HGET', KEYS[5], 'last_seen'), dst)
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('SET', KEYS[10], dst, 'EX', ttl)
for i = 5, 8 do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ttl) end
end
return 'ok'
"""

# What an item brings to the story it joins, shared by the scripts that move items: the
# story's flags (the first item of a language, source, kind, owner: HSETNX, so a flag's time is
# the first one) with the owner count, and the index fields (ARGV[first..]) of one bucket
# naming the story, most recent last, at most key_cap stories a field.
_JOIN_ITEM = """
local function mark_item(hash, data, now)
  if data['lang'] and data['lang'] ~= '' then
    redis.call('HSETNX', hash, 'lang:' .. data['lang'], now)
  end
  redis.call('HSETNX', hash, 'src:' .. data['source'], now)
  redis.call('HSETNX', hash, 'kind:' .. (data['kind'] or 'news'), now)
  local owner = data['owner']
  if not owner or owner == cjson.null or owner == '' then owner = data['source'] end
  if redis.call('HSETNX', hash, 'owner:' .. owner, now) == 1 then
    redis.call('HINCRBY', hash, 'owners', 1)
  end
end
local function index_under(bucket, story, first, key_cap)
  for i = first, #ARGV do
    local kept = {}
    local current = redis.call('HGET', bucket, ARGV[i])
    if current then
      for id in string.gmatch(current, '%S+') do
        if id ~= story then kept[#kept + 1] = id end
      end
    end
    kept[#kept + 1] = story
    while #kept > key_cap do table.remove(kept, 1) end
    redis.call('HSET', bucket, ARGV[i], table.concat(kept, ' '))
  end
end
"""

# Moves one item that joined a story (src) on a weak link to the story (dst) of a report
# that links it strongly.  Its item entry and member leave src (whose 'rev' changes, so
# replicas decode src's members again), join dst with dst's flags set from the item, and
# the item's story key and its index fields now name dst.
# KEYS: src hash, items, members; dst hash, items, members; stories zset; item key; the
#       item's index bucket.
# ARGV: item id, src id, dst id, member JSON, ttl s, member cap, item key ttl s, key cap,
#       then the item's index fields.
# Returns 'ok', or 'gone' when the item is no longer in src (another replica moved it).
_ADOPT = (
    _JOIN_ITEM
    + """
local item, src, dst, member = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ttl, cap, item_ttl, key_cap = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7], tonumber(ARGV[8])
if redis.call('GET', KEYS[8]) ~= src or redis.call('EXISTS', KEYS[4]) == 0 then
  return 'gone'
end
local entry = nil
for _, value in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  if cjson.decode(value)['id'] == item then entry = value; break end
end
if not entry then return 'gone' end
redis.call('LREM', KEYS[2], 1, entry)
redis.call('HINCRBY', KEYS[1], 'items', -1)
for _, value in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
  if cjson.decode(value)['id'] == item then redis.call('LREM', KEYS[3], 1, value); break end
end
redis.call('HINCRBY', KEYS[1], 'rev', 1)
local data = cjson.decode(entry)
local now = redis.call('HGET', KEYS[4], 'last_seen')
redis.call('RPUSH', KEYS[5], entry)
redis.call('HINCRBY', KEYS[4], 'items', 1)
if redis.call('LLEN', KEYS[6]) < cap then redis.call('RPUSH', KEYS[6], member) end
mark_item(KEYS[4], data, now)
redis.call('SET', KEYS[8], dst, 'EX', item_ttl)
index_under(KEYS[9], dst, 9, key_cap)
for i = 4, 6 do redis.call('EXPIRE', KEYS[i], ttl) end
return 'ok'
"""
)

# KEYS: index buckets read (n), then: write bucket, story hash, items list, members list,
#       stories zset, item key.
# ARGV: n, k (index keys per bucket), index keys (k), digest of the index as read,
#       story id, created (0/1), now ms, story ttl s, item key ttl s, write bucket ttl s,
#       member JSON, item JSON, lang, source, kind, owner, key cap, member cap, force (0/1).
# The write bucket is the item's publication bucket; its TTL is only ever extended, so an old
# bucket written again by a late item lives on.  With force, the index is not checked: the
# item opens (or, if its own story exists, joins) the story named for it.
# Returns {"dup", story} when the item was assigned before, {"retry"} when the index or the
# story changed since it was read, else
# {"ok", story, created, new lang, new src, new kind, new owner, owners, had official}.
_ASSIGN = (
    _SNAPSHOT
    + """
local n = tonumber(ARGV[1])
local k = tonumber(ARGV[2])
local base = 3 + k
local story, created, now = ARGV[base + 1], ARGV[base + 2], tonumber(ARGV[base + 3])
local ttl, window, index_ttl = tonumber(ARGV[base + 4]), tonumber(ARGV[base + 5]), ARGV[base + 6]
local member, item = ARGV[base + 7], ARGV[base + 8]
local lang, source, kind, owner = ARGV[base + 9], ARGV[base + 10], ARGV[base + 11], ARGV[base + 12]
local cap, member_cap = tonumber(ARGV[base + 13]), tonumber(ARGV[base + 14])
local force = ARGV[base + 15]
local write, hash, items, members = KEYS[n + 1], KEYS[n + 2], KEYS[n + 3], KEYS[n + 4]
local zset, item_key = KEYS[n + 5], KEYS[n + 6]

local previous = redis.call('GET', item_key)
if previous then return {'dup', previous} end
local exists = redis.call('EXISTS', hash)
if force == '1' then
  if exists == 1 then created = '0' else created = '1' end
else
  if k > 0 and redis.sha1hex(table.concat(snapshot(n, k), '\\n')) ~= ARGV[3 + k] then
    return {'retry'}
  end
  if created == '1' and exists == 1 then return {'retry'} end
  if created == '0' and exists == 0 then return {'retry'} end
end

for i = 1, k do
  local field = ARGV[2 + i]
  local kept = {}
  local current = redis.call('HGET', write, field)
  if current then
    for id in string.gmatch(current, '%S+') do
      if id ~= story then table.insert(kept, id) end
    end
  end
  table.insert(kept, story)
  while #kept > cap do table.remove(kept, 1) end
  redis.call('HSET', write, field, table.concat(kept, ' '))
end
if k > 0 and redis.call('TTL', write) < tonumber(index_ttl) then
  redis.call('EXPIRE', write, index_ttl)
end

if created == '1' then
  redis.call('HSET', hash, 'id', story, 'first_seen', now, 'last_seen', now, 'owners', 0)
else
  local last = tonumber(redis.call('HGET', hash, 'last_seen') or '0')
  if now > last then redis.call('HSET', hash, 'last_seen', now) end
end
redis.call('HINCRBY', hash, 'items', 1)
local new_lang = 0
if lang ~= '' then new_lang = redis.call('HSETNX', hash, 'lang:' .. lang, now) end
local had_official = redis.call('HEXISTS', hash, 'kind:official')
local new_src = redis.call('HSETNX', hash, 'src:' .. source, now)
local new_kind = redis.call('HSETNX', hash, 'kind:' .. kind, now)
local new_owner = redis.call('HSETNX', hash, 'owner:' .. owner, now)
local owners = tonumber(redis.call('HGET', hash, 'owners'))
if new_owner == 1 then owners = redis.call('HINCRBY', hash, 'owners', 1) end
redis.call('RPUSH', items, item)
if redis.call('LLEN', members) < member_cap then redis.call('RPUSH', members, member) end
for _, key in ipairs({hash, items, members}) do redis.call('EXPIRE', key, ttl) end
local last_seen = redis.call('HGET', hash, 'last_seen')
redis.call('ZADD', zset, last_seen, story)
redis.call('ZREMRANGEBYSCORE', zset, '-inf', '(' .. (now - ttl * 1000))
redis.call('SET', item_key, story, 'EX', window)
return {'ok', story, created, new_lang, new_src, new_kind, new_owner, owners, had_official}
"""
)
# KEYS: story hash, story rules hash, story items list.
# ARGV: item id, ttl s, tell (1: this item is a follow-up of its story), n, then per rule
#       of this item: id, min sources, official (0/1), escalate at, match JSON ('' = not kept).
# Settles, atomically, what each rule says about the story after this item: held (not
# corroborated yet), alert (the first item that satisfies the rule; the same item again on a
# retry), quiet (alerted before); and whether it escalates now.  Rules that matched earlier
# items and keep their first match ('m:' fields) are settled too: a held rule is released,
# or an alerted one escalated, by an item it did not match.  'a:', 'e:' and 't:' fields hold
# the alerting item, the escalating item and the item count at the rule's last message.
# Returns {owners, item count, items (when a rule speaks, else {}), then per rule settled:
# id, status, escalated (0/1), item count at its previous message (-1: none), kept match}.
_SETTLE = """
local item, ttl, tell, n = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local owners = tonumber(redis.call('HGET', KEYS[1], 'owners') or '0')
local official = redis.call('HEXISTS', KEYS[1], 'kind:official') == 1
local count = redis.call('LLEN', KEYS[3])
local gates, order, current = {}, {}, {}
for i = 0, n - 1 do
  local b = 5 + i * 5
  local id = ARGV[b]
  gates[id] = {tonumber(ARGV[b + 1]), ARGV[b + 2] == '1', tonumber(ARGV[b + 3]), ''}
  current[id] = true
  order[#order + 1] = id
  if ARGV[b + 4] ~= '' then
    redis.call('HSETNX', KEYS[2], 'm:' .. id,
      cjson.encode({ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]}))
  end
end
local fields = redis.call('HGETALL', KEYS[2])
for i = 1, #fields, 2 do
  local id = string.sub(fields[i], 3)
  if string.sub(fields[i], 1, 2) == 'm:' and not current[id] then
    local kept = cjson.decode(fields[i + 1])
    gates[id] = {tonumber(kept[1]), kept[2] == '1', tonumber(kept[3]), kept[4]}
    order[#order + 1] = id
  end
end
local function once(field)
  if redis.call('HSETNX', KEYS[2], field, item) == 1 then return true end
  return redis.call('HGET', KEYS[2], field) == item
end
local out, spoke = {owners, count, {}}, false
for _, id in ipairs(order) do
  local gate = gates[id]
  local ok = (gate[1] > 0 and owners >= gate[1]) or (gate[2] and official)
  local status, escalated = 'held', 0
  if ok then
    status = 'quiet'
    if once('a:' .. id) then status = 'alert' end
    if gate[3] > 0 and owners >= gate[3] and once('e:' .. id) then escalated = 1 end
  end
  local told = tonumber(redis.call('HGET', KEYS[2], 't:' .. id) or '-1')
  local follows = status == 'quiet' and current[id] and tell == '1'
  local speaks = status == 'alert' or escalated == 1 or follows
  if speaks then
    redis.call('HSET', KEYS[2], 't:' .. id, count)
    spoke = true
  end
  if current[id] or status == 'alert' or escalated == 1 then
    local kept = gate[4]
    if current[id] then kept = '' end
    for _, value in ipairs({id, status, escalated, told, kept}) do out[#out + 1] = value end
  end
end
if spoke then out[3] = redis.call('LRANGE', KEYS[3], 0, -1) end
redis.call('EXPIRE', KEYS[2], ttl)
return out
"""
# An analyst splits one item out of its story (src) into a story of its own (dst): its item
# entry and member move, the two stories are marked apart (the 'apart' fields), so no later
# item merges them again (``cluster.plan``), and later reports of the item's own event join
# it through its member, now in dst.
# KEYS: src hash, items, members; dst hash, items, members; stories zset; item key; the
#       item's index bucket.
# ARGV: item id, src id, dst id, ttl s, member cap, item key ttl s, key cap, now ms, then
#       the item's index fields.
# Returns 'ok', 'gone' (the item is not in src any more) or 'exists' (dst is taken).
_SPLIT = (
    _JOIN_ITEM
    + """
local item, src, dst, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local cap, item_ttl, key_cap, now = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7]), ARGV[8]
if redis.call('GET', KEYS[8]) ~= src then return 'gone' end
if redis.call('EXISTS', KEYS[4]) == 1 then return 'exists' end
local entry = nil
for _, value in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  if cjson.decode(value)['id'] == item then entry = value; break end
end
if not entry then return 'gone' end
redis.call('LREM', KEYS[2], 1, entry)
redis.call('HINCRBY', KEYS[1], 'items', -1)
for _, value in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
  local member = cjson.decode(value)
  if member['id'] == item then
    redis.call('LREM', KEYS[3], 1, value)
    member['weak'] = nil
    redis.call('RPUSH', KEYS[6], cjson.encode(member))
    break
  end
end
redis.call('HINCRBY', KEYS[1], 'rev', 1)
local data = cjson.decode(entry)
redis.call('HSET', KEYS[4], 'id', dst, 'first_seen', now, 'last_seen', now, 'items', 1,
  'owners', 0, 'apart', src)
mark_item(KEYS[4], data, now)
local apart = redis.call('HGET', KEYS[1], 'apart') or ''
local joined = (apart .. ' ' .. dst):gsub('^ ', '')
redis.call('HSET', KEYS[1], 'apart', joined)
redis.call('RPUSH', KEYS[5], entry)
redis.call('SET', KEYS[8], dst, 'EX', item_ttl)
index_under(KEYS[9], dst, 9, key_cap)
redis.call('ZADD', KEYS[7], now, dst)
for i = 4, 6 do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ttl) end
end
return 'ok'
"""
)
CACHE_STORIES = 4096
"""Stories whose members a store keeps decoded (10 to 15 kB each): members are only ever
appended, so a cached story costs one short read of its new members instead of all of them,
decoded again.  The most recently compared stories are kept, which are the busy ones."""


@dataclass(frozen=True, slots=True)
class RuleVerdict:
    """What one rule says about a story after an item, settled atomically across replicas.

    ``status``: "held" (the story is not corroborated enough for the rule yet), "alert"
    (this item makes the rule alert: exactly one item per story and rule, the same one
    again when it is retried), or "quiet" (the rule alerted on an earlier item).
    ``told``: the story's item count at the rule's previous message (-1: none).
    ``kept``: for a rule this item did not match, the match JSON it kept from an earlier
    item, to alert or escalate with.
    """

    rule_id: str
    status: str
    escalated: bool = False
    told: int = -1
    kept: str = ""


@dataclass(frozen=True, slots=True)
class Settlement:
    """Every rule's verdict on a story after one item, and the story as it then stands.

    ``items`` is filled only when some rule speaks (alerts, escalates or follows up), since
    only a message shows the provenance.
    """

    owners: int
    count: int
    items: tuple[StoryItem, ...]
    verdicts: tuple[RuleVerdict, ...]


@dataclass(frozen=True, slots=True)
class _Cached:
    """A story's members as this process decoded them (members are append-only)."""

    first_seen: str
    members: tuple[Features, ...]
    weak: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What was read for one item: the index values (for the commit's check) and candidates."""

    buckets: tuple[int, ...]
    keys: tuple[str, ...]
    digest: str
    candidates: tuple[Candidate, ...]


class KeyTurns:
    """Per index key, one assignment at a time in this process.

    Two items conflict only when they share an index key (that is how they find each other),
    and the commit's check refuses the later one, which then reads and decides again.  Within
    one process that is wasted work, and in a first poll of a thousand feeds sharing a busy
    date or deposit it was the common case: 107 items of 50,000 ran out of attempts and
    opened stories of their own.  Items sharing a key therefore take turns here (keys taken
    in sorted order, so two items never wait on each other); items with no key in common run
    at once, and only other replicas can still make a commit retry.
    """

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._holders: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def holding(self, keys: Sequence[str]) -> AsyncIterator[None]:
        """Hold every key of ``keys`` (waiting for each in turn) until the block ends."""
        acquired: list[str] = []
        waiting: list[str] = []
        try:
            for key in sorted(set(keys)):
                waiting = [key]
                self._holders[key] = self._holders.get(key, 0) + 1
                await self._locks.setdefault(key, asyncio.Lock()).acquire()
                acquired.append(key)
                waiting = []
            yield
        finally:
            for key in acquired:
                self._locks[key].release()
            for key in acquired + waiting:
                self._holders[key] -= 1
                if not self._holders[key]:
                    del self._holders[key], self._locks[key]

    @property
    def keys_held(self) -> int:
        """Keys an assignment holds or waits for (0 when idle: nothing is kept)."""
        return len(self._locks)


def _member_record(features: Features) -> dict[str, Any]:
    """What the store keeps of a member to compare later items with (``_member`` reads it)."""
    assert features.published is not None, "ingestion gives every item a publication time"
    return {
        "id": features.item_id,
        "lang": features.lang,
        "sig": encode_signature(features.signature),
        "ev": sorted(features.evidence),
        "pub": int(features.published.timestamp() * 1000),
    }


def _backoff(attempt: int) -> float:
    """Seconds to pause after refused commit number ``attempt`` (from 0): jittered, growing."""
    ceiling = min(BACKOFF_CAP, BACKOFF_SECONDS * 2**attempt)
    return random.uniform(0, ceiling)  # jitter, not a secret


class StoryStore:
    """Clustering state in Redis, behind named operations; safe with several replicas.

    ``window``: an item joins a story only through a member published at most this far from
    it (before or after).
    ``retention``: how long a story stays readable (``monitor stories``) after its last item.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        extractor: Extractor | None = None,
        *,
        window: timedelta = timedelta(hours=72),
        retention: timedelta = timedelta(days=7),
        sources: Mapping[str, SourceMeta] | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.extractor = extractor or Extractor()
        self.window = window
        self.retention = max(retention, window)
        self.sources: Mapping[str, SourceMeta] = sources or {}
        self._assign = client.register_script(_ASSIGN)
        self._read_index = client.register_script(_READ_INDEX)
        self._read_stories = client.register_script(_READ_STORIES)
        self._settle = client.register_script(_SETTLE)
        self._absorb = client.register_script(_ABSORB)
        self._adopt = client.register_script(_ADOPT)
        self._split = client.register_script(_SPLIT)
        self._cache: dict[str, _Cached] = {}
        self._turns = KeyTurns()

    @property
    def _keep_seconds(self) -> int:
        """How long story keys live after their last write (``retention``, at least 1 s)."""
        return max(1, int(self.retention.total_seconds()))

    # -- assignment -----------------------------------------------------------------------

    async def assign(self, item: Item, now: datetime) -> StoryUpdate:
        """Put ``item`` into its story (a new one, or the one it reports with), atomically.

        The story is decided on the item's publication time; ``now`` is its arrival, kept
        as the member's ``seen_at`` and the start of the keys' lifetimes.  Idempotent:
        assigning an item again returns its story with ``duplicate`` set.  Never fails for
        contention: after ``MAX_ATTEMPTS`` refused commits the item opens its own story
        (logged as a warning), so it is still alerted.
        """
        features = self.extractor.features(item)
        async with self._turns.holding(features.index_keys()):
            return await self._assign_held(item, features, now)

    async def _assign_held(self, item: Item, features: Features, now: datetime) -> StoryUpdate:
        """``assign``, with the item's index keys held (``KeyTurns``)."""
        window = self.window.total_seconds()
        for attempt in range(MAX_ATTEMPTS):
            snapshot = await self._read(features)
            decision = plan(self.extractor, features, snapshot.candidates, window)
            created = decision.story is None
            story_id = decision.story or story_id_for(item.id)
            weak = 0 < decision.score < STRONG_LINK
            result = await self._commit(item, features, snapshot, story_id, created, now, weak=weak)
            if result is not None:
                if not result.duplicate:
                    await self._correct(decision, result.story_id, item.id)
                return result
            await asyncio.sleep(_backoff(attempt))
        log.warning(
            "story assignment kept conflicting; the item opens its own story",
            item=item.id,
            attempts=MAX_ATTEMPTS,
        )
        snapshot = await self._read(features)
        result = await self._commit(
            item, features, snapshot, story_id_for(item.id), True, now, force=True
        )
        assert result is not None, "a forced commit is never refused"
        return result

    async def _correct(self, decision: Decision, story_id: str, item_id: str) -> None:
        """Apply what the item showed about other stories (``cluster.plan``): stories that
        report its event merge into its story, weak members of other stories that it links
        strongly move to it.  Each step is one atomic script; a step another replica made
        first is skipped.  A merge that keeps losing to new items of the other story is left
        undone (logged): the two stories stay apart, and every item in them still alerts."""
        for absorbed in decision.absorbs:
            await self._merge(absorbed, story_id, by=f"item {item_id}")
        for source, member in decision.adopts:
            await self._move(member, source, story_id)

    async def _merge(self, source: str, target: str, *, by: str) -> bool:
        cached = self._cache.get(source)
        if cached is not None:
            members = cached.members
        else:  # an analyst's merge, in a process that never compared the story
            members = tuple(self._member(json.loads(m)) for m in await self._all_members(source))
        fields = [
            (self.keys.story_index(bucket_of(m.published)), key)
            for m in members
            if m.published is not None
            for key in m.index_keys()
        ]
        for attempt in range(MAX_ATTEMPTS):
            status = await self._absorb_once(source, target, fields)
            if status != "retry":
                if status == "ok":
                    self._cache.pop(source, None)
                    log.info("stories merged", story=target, merged=source, by=by)
                return status == "ok"
            await asyncio.sleep(_backoff(attempt))
        log.warning("story merge kept conflicting; left apart", story=target, merged=source)
        return False

    # -- analysts' corrections ----------------------------------------------------------------

    async def merge_stories(self, source: str, target: str, *, by: str) -> bool:
        """An analyst's correction: ``source`` reports ``target``'s event.  It is merged as
        a bridging report merges stories (``_ABSORB``: items, flags and rule states move, a
        rule that alerted in either stays quiet, the old id reads as ``target``), and the two
        are no longer kept apart if they were.  False when either story is gone."""
        if source == target:
            return False
        return await self._merge(source, target, by=by)

    async def split_item(
        self, story_id: str, item_id: str, now: datetime, *, by: str
    ) -> str | None:
        """An analyst's correction: ``item_id`` does not report ``story_id``'s event.  It
        moves to a story of its own (returned), the two stories are kept apart from now on
        (no later report merges them, ``cluster.plan``), and later reports of the item's own
        event join its new story.  None when the item is not in that story."""
        members = await self._all_members(story_id)
        member = next((json.loads(m) for m in members if json.loads(m).get("id") == item_id), None)
        features = self._member(member) if member is not None else None
        fields = list(features.index_keys()) if features is not None else []
        bucket = bucket_of(features.published) if features and features.published else 0
        target = story_id_for(f"{item_id}|split")
        keep = self._keep_seconds
        keys = self._moving_keys(story_id, target, item_id, bucket)
        args: list[str | int] = [item_id, story_id, target, keep, MAX_MEMBERS, keep]
        args += [KEY_STORIES, int(now.timestamp() * 1000), *fields]
        status = await guarded(lambda: self._split(keys=keys, args=args))
        if status != "ok":
            return None
        self._cache.pop(story_id, None)
        log.info("story item split out", item=item_id, left=story_id, story=target, by=by)
        return target

    async def _absorb_once(
        self, source: str, target: str, fields: Sequence[tuple[str, str]]
    ) -> str:
        """One try of ``_ABSORB``: 'ok', 'gone' or 'retry' (see the script)."""
        keep = self._keep_seconds
        item_ids = await self._item_ids(source)
        keys = [
            self.keys.story(source),
            self.keys.story_items(source),
            self.keys.story_members(source),
            self.keys.story_rules(source),
            self.keys.story(target),
            self.keys.story_items(target),
            self.keys.story_members(target),
            self.keys.story_rules(target),
            self.keys.stories,
            self.keys.story_merged(source),
            *(self.keys.story_item(i) for i in item_ids),
            *(bucket for bucket, _ in fields),
        ]
        args: list[str | int] = [source, target, keep, MAX_MEMBERS, len(item_ids), keep]
        args += [len(fields), *(field for _, field in fields)]
        return str(await guarded(lambda: self._absorb(keys=keys, args=args)))

    def _moving_keys(self, source: str, target: str, item_id: str, bucket: int) -> list[str]:
        """The KEYS of ``_ADOPT`` and ``_SPLIT``, which move one item between stories: each
        story's hash, items and members, the stories zset, the item's key, its index bucket."""
        return [
            self.keys.story(source),
            self.keys.story_items(source),
            self.keys.story_members(source),
            self.keys.story(target),
            self.keys.story_items(target),
            self.keys.story_members(target),
            self.keys.stories,
            self.keys.story_item(item_id),
            self.keys.story_index(bucket),
        ]

    async def _item_ids(self, story_id: str) -> list[str]:
        key = self.keys.story_items(story_id)

        async def read() -> list[str]:
            return [str(json.loads(i)["id"]) for i in await self.client.lrange(key, 0, -1)]

        return await guarded(read)

    async def _move(self, member: Features, source: str, target: str) -> None:
        assert member.published is not None
        keep = self._keep_seconds
        keys = self._moving_keys(source, target, member.item_id, bucket_of(member.published))
        record = json.dumps(_member_record(member), ensure_ascii=False)
        args: list[str | int] = [member.item_id, source, target, record, keep, MAX_MEMBERS]
        args += [keep, KEY_STORIES, *member.index_keys()]
        status = await guarded(lambda: self._adopt(keys=keys, args=args))
        if status == "ok":
            self._cache.pop(source, None)
            log.info("story item moved", item=member.item_id, story=target, left=source)

    async def _read(self, features: Features) -> _Snapshot:
        assert features.published is not None, "ingestion gives every item a publication time"
        buckets = buckets_around(features.published, self.window.total_seconds())
        index_keys = features.index_keys()
        if not index_keys:
            return _Snapshot(buckets, (), "", ())
        keys = [self.keys.story_index(bucket) for bucket in buckets]
        args: list[str | int] = [len(buckets), len(index_keys), *index_keys]
        raw = await guarded(lambda: self._read_index(keys=keys, args=args))
        found = rank_candidates(
            (index_keys[int(raw[i]) - 1], sid)
            for i in range(1, len(raw), 2)
            for sid in str(raw[i + 1]).split()
        )
        candidates = await self._candidates(found)
        return _Snapshot(buckets, index_keys, str(raw[0]), candidates)

    async def _candidates(
        self, story_ids: Sequence[str], _follow: bool = False
    ) -> tuple[Candidate, ...]:
        """The stories' last-seen times and members, reading only members not yet cached.
        A story merged into another is read as that one (one step: ``_follow``)."""
        if not story_ids:
            return ()
        keys: list[str] = []
        known: list[int] = []
        for sid in story_ids:
            keys += [
                self.keys.story(sid),
                self.keys.story_members(sid),
                self.keys.story_merged(sid),
            ]
            known.append(len(self._cache[sid].members) if sid in self._cache else 0)
        raw = await guarded(lambda: self._read_stories(keys=keys, args=known))
        candidates: list[Candidate] = []
        merged: list[str] = []
        for sid, count, entry in zip(story_ids, known, raw, strict=True):
            if entry[0] == "merged":
                # Gone: merged into another story (read that one instead, once), or
                # expired (the index outlives the story by up to one bucket).
                self._cache.pop(sid, None)
                target = str(entry[1])
                if target and target not in story_ids and not _follow:
                    merged.append(target)
                continue
            first_seen, fresh = str(entry[0]), entry[2]
            cached = self._cache.get(sid)
            if cached is None or cached.first_seen != first_seen or len(cached.members) != count:
                # A story reopened under the same id (its first item came back after it
                # expired) or an unexpected count: decode what was sent and start over.
                cached = _Cached(first_seen, (), frozenset())
                if count:
                    fresh = await self._all_members(sid)
            decoded = [json.loads(m) for m in fresh]
            entry_now = _Cached(
                first_seen,
                cached.members + tuple(self._member(data) for data in decoded),
                cached.weak | {str(data["id"]) for data in decoded if data.get("weak")},
            )
            self._remember(sid, entry_now)
            apart = frozenset(str(entry[3]).split()) if len(entry) > 3 else frozenset()
            candidates.append(Candidate(sid, entry_now.members, entry_now.weak, apart))
        if merged:
            candidates += await self._candidates(list(dict.fromkeys(merged)), _follow=True)
        return tuple(candidates)

    async def _all_members(self, story_id: str) -> list[str]:
        key = self.keys.story_members(story_id)

        async def read() -> list[str]:
            return [str(m) for m in await self.client.lrange(key, 0, -1)]

        return await guarded(read)

    def _remember(self, story_id: str, entry: _Cached) -> None:
        self._cache.pop(story_id, None)
        self._cache[story_id] = entry
        while len(self._cache) > CACHE_STORIES:
            del self._cache[next(iter(self._cache))]

    def _member(self, data: Mapping[str, Any]) -> Features:
        published = data.get("pub")
        return self.extractor.from_evidence(
            str(data["id"]),
            str(data.get("lang") or ""),
            str(data["sig"]),
            data.get("ev") or (),
            datetime.fromtimestamp(int(published) / 1000, UTC) if published is not None else None,
        )

    async def _commit(
        self,
        item: Item,
        features: Features,
        snapshot: _Snapshot,
        story_id: str,
        created: bool,
        now: datetime,
        *,
        weak: bool = False,
        force: bool = False,
    ) -> StoryUpdate | None:
        meta = self.sources.get(item.source) or SourceMeta(item.source)
        write_bucket = bucket_of(item.published)
        # Relative to ``now`` (the caller's clock, which tests set freely), never EXPIREAT
        # on the bucket's own time: an item published months ago must stay findable by the
        # other reports of its event arriving after it.
        keep = self._keep_seconds
        member = _member_record(features)
        if weak:
            member["weak"] = 1
        story_item = StoryItem(
            item_id=item.id,
            source=item.source,
            lang=item.lang or "",
            title=item.title,
            link=item.link,
            published=item.published,
            seen_at=now,
            kind=meta.kind,
            owner=meta.group,
            country=meta.country,
        )
        keys = [self.keys.story_index(b) for b in snapshot.buckets if snapshot.keys]
        keys += [
            self.keys.story_index(write_bucket),
            self.keys.story(story_id),
            self.keys.story_items(story_id),
            self.keys.story_members(story_id),
            self.keys.stories,
            self.keys.story_item(item.id),
        ]
        n = len(snapshot.buckets) if snapshot.keys else 0
        args: list[str | int] = [n, len(snapshot.keys), *snapshot.keys, snapshot.digest]
        args += [
            story_id,
            1 if created else 0,
            int(now.timestamp() * 1000),
            keep,
            keep,
            keep,
            json.dumps(member, ensure_ascii=False),
            json.dumps(story_item.to_dict(), ensure_ascii=False),
            item.lang or "",
            item.source,
            meta.kind,
            meta.group,
            KEY_STORIES,
            MAX_MEMBERS,
            1 if force else 0,
        ]
        result = await guarded(lambda: self._assign(keys=keys, args=args))
        status = result[0]
        if status == "retry":
            return None
        if status == "dup":
            return StoryUpdate(str(result[1]), item.id, created=False, duplicate=True)
        flags = [int(flag) for flag in result[2:9]]
        return StoryUpdate(
            story_id=str(result[1]),
            item_id=item.id,
            created=flags[0] == 1,
            new_language=flags[1] == 1,
            new_source=flags[2] == 1,
            new_kind=flags[3] == 1,
            new_owner=flags[4] == 1,
            independent=flags[5],
            kind=meta.kind,
            had_official=flags[6] == 1,
        )

    # -- rules over stories -------------------------------------------------------------------

    async def settle(
        self,
        story_id: str,
        item_id: str,
        rules: Sequence[tuple[str, Gate, str]],
        *,
        tell: bool = False,
    ) -> Settlement:
        """Settle each rule's alert for a story after ``item_id`` joined it (one round trip).

        ``rules`` are the rules that matched the item: (id, gate, match JSON).  ``tell`` says
        the item is worth a follow-up (a new language, kind, corroboration).  Exactly one
        item of a story makes a rule alert, and one escalate it, whatever the replica count:
        the script sets the rule's flags with HSETNX.  A rule's kept match lives as long as
        the story, so a held alert survives restarts.
        """
        keys = [
            self.keys.story(story_id),
            self.keys.story_rules(story_id),
            self.keys.story_items(story_id),
        ]
        args: list[str | int] = [
            item_id,
            self._keep_seconds,
            1 if tell else 0,
            len(rules),
        ]
        for rule_id, gate, match_json in rules:
            args += [
                rule_id,
                gate.min_sources,
                1 if gate.official else 0,
                gate.escalate_at,
                match_json if gate.keeps_match else "",
            ]
        raw = await guarded(lambda: self._settle(keys=keys, args=args))
        items = tuple(StoryItem.from_dict(json.loads(i)) for i in raw[2] or ())
        verdicts = tuple(
            RuleVerdict(
                rule_id=str(raw[i]),
                status=str(raw[i + 1]),
                escalated=int(raw[i + 2]) == 1,
                told=int(raw[i + 3]),
                kept=str(raw[i + 4] or ""),
            )
            for i in range(3, len(raw), 5)
        )
        return Settlement(int(raw[0]), int(raw[1]), items, verdicts)

    async def rule_states(self, story_id: str) -> list[RuleState]:
        """What each rule has done in the story (alerted, escalated, held), by rule id."""
        key = self.keys.story_rules(story_id)
        raw: dict[str, str] = await guarded(
            lambda: cast(Awaitable[dict[str, str]], self.client.hgetall(key))
        )
        ids = sorted({field[2:] for field in raw if field[:2] in ("a:", "m:", "e:")})
        states = []
        for rule_id in ids:
            kept = raw.get(f"m:{rule_id}")
            gate = None
            if kept is not None:
                wanted, official, escalate_at, _ = json.loads(kept)
                gate = Gate(int(wanted), official == "1", int(escalate_at))
            states.append(
                RuleState(rule_id, raw.get(f"a:{rule_id}"), raw.get(f"e:{rule_id}"), gate)
            )
        return states

    # -- reading ----------------------------------------------------------------------------

    async def story(self, story_id: str) -> Story | None:
        """The story with its items, or None when there is none (or it expired).  A story
        merged into another (see ``_ABSORB``) is that other story: alerts sent before the
        merge name the old id."""
        stories = await self._stories([story_id])
        if stories:
            return stories[0]
        key = self.keys.story_merged(story_id)
        target = await guarded(lambda: self.client.get(key))
        if not target:
            return None
        stories = await self._stories([str(target)])
        return stories[0] if stories else None

    async def recent(self, since: datetime, limit: int = 200, offset: int = 0) -> list[Story]:
        """Stories with an item seen since ``since``, most recently active first: ``limit``
        of them from the ``offset``-th (a page of ``count_recent``)."""
        low = int(since.timestamp() * 1000)

        async def ids() -> list[str]:
            found = await self.client.zrevrangebyscore(
                self.keys.stories, "+inf", low, start=offset, num=limit
            )
            return [str(sid) for sid in found]

        return await self._stories(await guarded(ids))

    async def count_recent(self, since: datetime) -> int:
        """How many stories had an item seen since ``since`` (what ``recent`` pages through)."""
        low = int(since.timestamp() * 1000)
        return int(await guarded(lambda: self.client.zcount(self.keys.stories, low, "+inf")))

    async def story_of(self, item_id: str) -> str | None:
        """The story an item joined, while the window lasts."""
        value = await guarded(lambda: self.client.get(self.keys.story_item(item_id)))
        return str(value) if value else None

    async def _stories(self, story_ids: Sequence[str]) -> list[Story]:
        if not story_ids:
            return []

        async def read() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for sid in story_ids:
                    pipe.hmget(self.keys.story(sid), ["first_seen", "last_seen"])
                    pipe.lrange(self.keys.story_items(sid), 0, -1)
                return await pipe.execute()

        raw = await guarded(read)
        stories: list[Story] = []
        for position, sid in enumerate(story_ids):
            (first, last), items = raw[2 * position], raw[2 * position + 1]
            if first is None or last is None:
                continue
            stories.append(
                Story(
                    id=sid,
                    first_seen=datetime.fromtimestamp(int(first) / 1000, UTC),
                    last_seen=datetime.fromtimestamp(int(last) / 1000, UTC),
                    items=tuple(StoryItem.from_dict(json.loads(i)) for i in items),
                )
            )
        return stories
