"""One poll of one feed: fetch, parse, normalize, dedup, match and queue (``poll_once``).

Driven one pass at a time by the daemon's scheduler, by ``monitor run --once`` and by tests;
sleeping, signals and scheduling live in ``app``.  The delivery side's one pass is
``monitor.deliver.worker.DeliveryWorker.run_once``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from monitor.errors import FeedError, FeedParseError
from monitor.ingest.dedup import ItemRecord
from monitor.ingest.fetch import Fetcher, FetchResult, Validators
from monitor.ingest.prepare import PreparedFeed, PreparedItem, prepare_feed, prepare_item
from monitor.ingest.schedule import (
    PollOutcome,
    cache_lifetime,
    health_alert,
    is_due,
    next_poll_at,
)
from monitor.ingest.state import FeedState, FeedSuccess, Store
from monitor.model import Item, Match, PollResult, Severity, Source
from monitor.rules import RuleSet
from monitor.rules.expr import FirstMention, Trend
from monitor.stories.store import RuleVerdict, Settlement, StoryStore
from monitor.stories.story import FollowUpPolicy, Gate, follow_up_reason, gate_for, provenance
from monitor.stories.trends import (
    VolumeCounts,
    first_mention_match,
    mentioned,
    trend_match,
    volume_rule,
    watched_rules,
)
from monitor.stories.volume import VolumeStore

Clock = Callable[[], datetime]
Preparer = Callable[
    [Source, FetchResult, datetime, RuleSet, frozenset[str]], Awaitable[PreparedFeed]
]
log = structlog.get_logger("monitor.ingest.poll")


async def prepare_in_process(
    source: Source, response: FetchResult, now: datetime, rules: RuleSet, known: frozenset[str]
) -> PreparedFeed:
    """The default preparer: on the event loop, for tests, ``--once`` and small deployments."""
    url = response.url or source.url
    return prepare_feed(source, response.body, response.headers, url, now, rules, known)


def body_digest(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class PollContext:
    """What every poll needs; built once by the composition root.

    ``backfill``: on a feed's first poll, items published longer ago than this are recorded as
    seen without alerting, so adding a feed does not flood the channel with its archive.
    ``health_alert_after``: a feed failing this long raises one operational alert.
    """

    fetcher: Fetcher
    store: Store
    clock: Clock
    backfill: timedelta | None = timedelta(hours=24)
    health_alert_after: timedelta | None = timedelta(hours=1)
    prepare: Preparer = prepare_in_process
    stories: StoryStore | None = None
    follow_ups: FollowUpPolicy = field(default_factory=FollowUpPolicy)
    volume: VolumeStore | None = None
    """Trend counters; the daemon builds them once, beside the store; left out (tests, one
    pass), they are built on the store's Redis when a batch has something to count."""


async def poll_once(
    source: Source,
    rules: RuleSet,
    ctx: PollContext,
    *,
    due_only: bool = False,
    tick: datetime | None = None,
) -> PollResult:
    """Fetch, parse, clean, dedup and match one feed, queueing matches of new items.

    With ``due_only`` (the scheduler's ticks) a feed that is backing off after failures, or
    whose publisher asked for a longer cache lifetime, is skipped until it is due.  ``tick``
    is when the scheduler fired (default: now): the next poll is planned from it, not from
    when this poll got its turn, so a poll that waited in a queue (thousands of feeds fall
    due together at start-up) does not make the next tick look early and skip an interval.

    A feed error is returned as an "error" result (and recorded on the feed's health), never
    raised: one broken feed must not disturb the others.  Redis errors do propagate, because
    without Redis nothing can be recorded and the caller must back off.
    """
    started = time.perf_counter()
    bound = log.bind(feed=source.name)
    state = await ctx.store.feed_state(source.name)
    tick = tick or ctx.clock()
    if due_only and not is_due(state.next_poll_at, source.interval, tick):
        bound.debug("poll not due", next_poll_at=state.next_poll_at)
        return PollResult(source=source.name, status="skipped")
    try:
        result = await _fetch_and_record(source, rules, ctx, state, tick)
    except FeedError as exc:
        duration = time.perf_counter() - started
        return await _record_failure(source, ctx, state, exc, duration, tick)
    if state.health_alerted:
        await _tell_health(source, ctx, True, state.failing_since, True, None, ctx.clock())
    result = replace(result, duration=time.perf_counter() - started)
    for warning in result.warnings:
        bound.warning("feed malformed", detail=warning)
    bound.info(
        "poll",
        status=result.status,
        http_status=result.http_status,
        entries=result.entries,
        new_items=result.new_items,
        matches=result.matches,
        duration=round(result.duration, 3),
    )
    return result


async def _record_failure(
    source: Source,
    ctx: PollContext,
    state: FeedState,
    exc: FeedError,
    duration: float,
    tick: datetime,
) -> PollResult:
    status = getattr(exc, "status", None)
    failures = state.failures + 1
    now = ctx.clock()
    outcome = PollOutcome(ok=False, retry_after=getattr(exc, "retry_after", None))
    retry_at = next_poll_at(outcome, failures, source.interval, tick)
    await ctx.store.feed_failed(source.name, str(exc), status, now, retry_at)
    since = state.failing_since or now
    await _tell_health(source, ctx, False, since, state.health_alerted, str(exc), now)
    log.warning(
        "poll failed",
        feed=source.name,
        error=str(exc),
        failures=failures,
        retry_at=retry_at.isoformat(),
        duration=round(duration, 3),
    )
    return PollResult(
        source=source.name, status="error", http_status=status, error=str(exc), duration=duration
    )


async def _fetch_and_record(
    source: Source, rules: RuleSet, ctx: PollContext, state: FeedState, tick: datetime
) -> PollResult:
    response = await ctx.fetcher.fetch(source, state.validators)
    now = ctx.clock()
    digest = body_digest(response.body) if not response.not_modified else state.body_digest
    if response.not_modified or digest == state.body_digest:
        # 304, or a server without validators sending the very same bytes: nothing to parse.
        success = _success(source, state.validators, response, (now, tick), None, digest=digest)
        await ctx.store.feed_succeeded(source.name, success)
        return PollResult(source=source.name, status="not-modified", http_status=response.status)
    prepared = await ctx.prepare(source, response, now, rules, state.known_entries)
    if prepared.error is not None:
        raise FeedParseError(source.name, source.url, prepared.error)
    quiet_before = None
    if state.last_success is None and ctx.backfill is not None:  # a new feed's archive
        quiet_before = now - ctx.backfill
    new_items, matched, complete = await _record(source, rules, ctx, prepared, quiet_before, now)
    # Validators and entry names are kept only when every item was handled, so a capped poll
    # fetches and considers every entry again.
    if complete:
        validators = Validators(response.headers.get("etag"), response.headers.get("last-modified"))
        known = prepared.fingerprints
    else:
        validators, digest, known = Validators(), None, ()
    times = (now, tick)
    success = _success(source, validators, response, times, prepared.ttl, new_items, digest, known)
    await ctx.store.feed_succeeded(source.name, success)
    warnings = prepared.warnings
    if response.permanent_url:
        warnings += (f"the feed moved permanently to {response.permanent_url}; update the config",)
    if not complete:
        warnings += (f"more than {source.max_items} new items; the rest come next poll",)
    return PollResult(
        source=source.name,
        status="ok",
        http_status=response.status,
        entries=prepared.entries,
        new_items=new_items,
        matches=len(matched),
        matched_rules=matched,
        warnings=warnings,
    )


async def _record(
    source: Source,
    rules: RuleSet,
    ctx: PollContext,
    prepared: PreparedFeed,
    quiet_before: datetime | None,
    now: datetime,
) -> tuple[int, tuple[str, ...], bool]:
    """Record the new items in batches (one Redis round trip each), never past the cap.

    Items already seen are dropped first, in one round trip.  Items published before
    ``quiet_before`` (a new feed's archive) are recorded without their matches, so they never
    alert.  With stories on, the matched items of a batch join their stories just before it
    is recorded (never items left for the next poll, whose story flags would be spent on an
    item not yet queued); then the trends count what the batch recorded.  Returns new
    items, the rule of each match queued, and whether every item was handled.
    """
    items = list(prepared.items)
    if prepared.rules_version != rules.version:  # prepared before a reload, or not matched
        items = [rematch(item, rules) for item in items]
    is_new = await ctx.store.unseen_keys([item.record.seen_keys for item in items])
    items = [item for item, new in zip(items, is_new, strict=True) if new]
    new_items = position = 0
    matched: list[str] = []
    while position < len(items):
        room = source.max_items - new_items
        if room <= 0:
            return new_items, tuple(matched), False
        batch = [
            item.record
            if quiet_before is None or item.published >= quiet_before
            else replace(item.record, match_json=(), rules=())
            for item in items[position : position + min(RECORD_BATCH, room)]
        ]
        position += len(batch)
        counted = list(batch)
        if ctx.stories is not None:
            batch = [
                await _with_story(record, rules, ctx.stories, ctx.follow_ups, now)
                if record.match_json
                else record
                for record in batch
            ]
        recorded = await ctx.store.record(batch, now)
        for record, was_new in zip(batch, recorded, strict=True):
            if was_new:
                new_items += 1
                matched += record.rules
        if rules.trends:
            fresh = [r for r, new in zip(counted, recorded, strict=True) if new and r.match_json]
            await _count_trends(fresh, rules, ctx, now)
    return new_items, tuple(matched), True


async def _with_story(
    record: ItemRecord,
    rules: RuleSet,
    stories: StoryStore,
    policy: FollowUpPolicy,
    now: datetime,
) -> ItemRecord:
    """Put a matched item into its story and settle what each rule says about it: held
    until corroborated, the story's alert, a follow-up worth telling, an escalation, or a
    quiet update (queued, then throttled by delivery as the story's reprint).

    Only matched items are clustered: a story is what the rules watch, and assigning costs
    three Redis round trips and settling one more, too many for every item of a first poll.
    Assigning and settling are idempotent, so a poll retried after a crash gets the same
    story and the same verdicts back.  A rule held on an earlier item may be released by
    this one; its kept match is then queued with this item's record.
    """
    item = Item.from_dict(json.loads(record.item_json))
    update = await stories.assign(item, now)
    reason = follow_up_reason(update, policy)
    current = {}
    for match_json in record.match_json:
        data = json.loads(match_json)
        current[str(data["rule"])] = data
    entries = [
        (rule_id, _gate(rules, rule_id), json.dumps(data, ensure_ascii=False))
        for rule_id, data in current.items()
    ]
    settled = await stories.settle(update.story_id, item.id, entries, tell=reason is not None)
    queued: list[dict[str, Any]] = []
    for verdict in settled.verdicts:
        data = current.get(verdict.rule_id) or (json.loads(verdict.kept) if verdict.kept else None)
        message = _story_message(data, verdict, rules, settled, update.story_id, reason)
        if message is not None:
            queued.append(message)
        elif verdict.status == "held":
            log.info("alert held", rule=verdict.rule_id, story=update.story_id, item=item.id)
    return replace(
        record,
        match_json=tuple(json.dumps(m, ensure_ascii=False) for m in queued),
        rules=tuple(str(m["rule"]) for m in queued),
    )


def _gate(rules: RuleSet, rule_id: str) -> Gate:
    rule = rules.by_id.get(rule_id)
    if rule is None:
        return Gate()
    escalate_at = rule.escalate.sources if rule.escalate is not None else 0
    return gate_for(rule.min_sources, rule.official, escalate_at)


def _story_message(
    data: dict[str, Any] | None,
    verdict: RuleVerdict,
    rules: RuleSet,
    settled: Settlement,
    story_id: str,
    reason: str | None,
) -> dict[str, Any] | None:
    """The match to queue for one rule's verdict, or None when there is nothing to queue: the
    rule holds its alert, or a match it kept has nothing new to say.

    Pure.  The story's alert and its follow-ups carry the story's headline and provenance
    (follow-ups and escalations mark the sources new since the rule last spoke); quiet
    updates carry only the story, for the throttle.
    """
    if data is None or verdict.status == "held":
        return None
    rule = rules.by_id.get(verdict.rule_id)
    escalate = rule.escalate if rule is not None else None
    escalates = verdict.escalated and escalate is not None
    if verdict.kept and (rule is None or not (verdict.status == "alert" or escalates)):
        return None  # a kept match speaks only to alert or escalate, for a rule still loaded
    data = {key: value for key, value in data.items() if key not in ("follow_up", "provenance")}
    data["story"] = story_id
    follow_up = None
    if escalates and escalate is not None:
        data["severity"] = escalate.severity.label
        if verdict.status != "alert":
            follow_up = f"escalated at {escalate.sources} independent sources"
    elif verdict.status == "quiet" and reason:
        follow_up = reason
    if follow_up:
        data["follow_up"] = follow_up
    speaks = verdict.status == "alert" or escalates or follow_up is not None
    if speaks and settled.items:
        told = verdict.told if follow_up else -1
        data["story_title"] = settled.items[0].title
        data["provenance"] = [note.to_dict() for note in provenance(settled.items, told)]
    return data


async def _count_trends(
    records: Sequence[ItemRecord], rules: RuleSet, ctx: PollContext, now: datetime
) -> None:
    """Count newly recorded matched items for the volume trends, and look for first mentions.

    ``records`` hold every match the items had, held ones included: a trend counts what the
    rules matched, whether or not it has alerted yet.  Each trend fires at most once per
    burst (or once per entity), queued in one step with its marker, across replicas.
    """
    volume = ctx.volume or VolumeStore(ctx.store.client, ctx.store.keys)
    seen = [(Item.from_dict(json.loads(record.item_json)), set(record.rules)) for record in records]
    for trend in rules.trends:
        if not trend.enabled:
            continue
        if isinstance(trend.watch, FirstMention):
            await _first_mentions(trend, trend.watch, seen, rules.version, volume)
            continue
        watched = watched_rules(trend.watch.of, rules)
        hits = [item for item, ids in seen if ids & watched]
        if not hits:
            continue
        counting = volume_rule(trend)

        def build(
            reason: str, counts: VolumeCounts, trend: Trend = trend, latest: Item = hits[-1]
        ) -> str:
            match = trend_match(trend, reason, counts, latest, rules.version, now)
            return json.dumps(match.to_dict(), ensure_ascii=False)

        fired = await volume.observe(counting, now, len(hits), build)
        if fired is not None:
            log.info("trend fired", rule=trend.id, reason=fired, count=len(hits))


async def _first_mentions(
    trend: Trend,
    watch: FirstMention,
    seen: Sequence[tuple[Item, set[str]]],
    version: str,
    volume: VolumeStore,
) -> None:
    alerts: list[tuple[str, str]] = []  # (entity, match JSON)
    for item, ids in seen:
        if watch.rule not in ids:
            continue
        for entity, hits in mentioned(watch, item):
            match = first_mention_match(trend, watch, item, entity, hits, version)
            alerts.append((entity, json.dumps(match.to_dict(), ensure_ascii=False)))
    chosen: dict[str, str] = {}
    for entity, payload in alerts:
        chosen.setdefault(entity, payload)  # an entity twice in one batch: its first item
    for entity in await volume.first_mentions(trend.id, list(chosen), list(chosen.values())):
        log.info("trend fired", rule=trend.id, reason="first mention", entity=entity)


def rematch(item: PreparedItem, rules: RuleSet) -> PreparedItem:
    """Match a prepared item with ``rules``: the rules changed while it was being prepared."""
    parsed = Item.from_dict(json.loads(item.record.item_json))
    return prepare_item(parsed, rules)


RECORD_BATCH = 50


def _success(
    source: Source,
    validators: Validators,
    response: FetchResult,
    times: tuple[datetime, datetime],
    feed_ttl: str | None,
    new_items: int = 0,
    digest: str | None = None,
    known: tuple[str, ...] | None = None,
) -> FeedSuccess:
    """What a successful poll records; ``times`` is (now, the tick the poll was planned for)."""
    now, tick = times
    outcome = PollOutcome(ok=True, cache_seconds=cache_lifetime(response.headers, feed_ttl))
    return FeedSuccess(
        validators=validators,
        status=response.status,
        at=now,
        next_poll_at=next_poll_at(outcome, 0, source.interval, tick),
        new_items=new_items,
        moved_to=response.permanent_url,
        body_digest=digest,
        known_entries=known,
    )


async def _tell_health(
    source: Source,
    ctx: PollContext,
    ok: bool,
    failing_since: datetime | None,
    alerted: bool,
    error: str | None,
    now: datetime,
) -> None:
    change = health_alert(ok, failing_since, alerted, ctx.health_alert_after, now)
    if change is None or failing_since is None:
        return
    match = health_match(source, change, failing_since, error, now)
    await ctx.store.enqueue_health_alert(source.name, match)
    log.warning("feed health alert", feed=source.name, change=change)


def health_match(
    source: Source, change: str, failing_since: datetime, error: str | None, now: datetime
) -> Match:
    """The operational alert for a feed incident, delivered through the normal channels.

    Its item id names the incident (feed and start time), so each incident alerts once and a
    later one alerts again.
    """
    hours = (now - failing_since).total_seconds() / 3600
    if change == "failing":
        title = f"Feed {source.name} has been failing for {hours:.1f} h"
        summary = f"Last error: {error}" if error else ""
    else:
        title = f"Feed {source.name} recovered after {hours:.1f} h"
        summary = "Polls succeed again; items missed while it failed arrive now."
    incident = f"ops:{source.name}:{failing_since.isoformat()}:{change}"
    item = Item(
        id=incident,
        source=source.name,
        title=title,
        summary=summary,
        link=source.url if source.url.startswith(("http://", "https://")) else "",
        published=now,
        source_tags=source.tags,
    )
    severity = Severity.HIGH if change == "failing" else Severity.INFO
    return Match("feed-health", "Feed health", severity, "ops", item, tags=("ops", change))


def summarize(results: Sequence[PollResult]) -> dict[str, int]:
    """Counts for the end-of-pass log line."""
    return {
        "feeds": len(results),
        "ok": sum(r.status == "ok" for r in results),
        "not_modified": sum(r.status == "not-modified" for r in results),
        "failed": sum(r.status == "error" for r in results),
        "new_items": sum(r.new_items for r in results),
        "matches": sum(r.matches for r in results),
    }
