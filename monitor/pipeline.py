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

import structlog

from monitor.errors import FeedError, FeedParseError
from monitor.feedpolicy import (
    PollOutcome,
    cache_lifetime,
    health_alert,
    is_due,
    next_poll_at,
)
from monitor.fetch import Fetcher, FetchResult, Validators
from monitor.model import Item, Match, PollResult, Severity, Source
from monitor.prepare import PreparedFeed, PreparedItem, prepare_feed, prepare_item
from monitor.rules import RuleSet
from monitor.store import FeedState, FeedSuccess, Store
from monitor.stories.model import FollowUpPolicy, follow_up_reason
from monitor.stories.store import StoryStore

Clock = Callable[[], datetime]
Preparer = Callable[
    [Source, FetchResult, datetime, RuleSet, frozenset[str]], Awaitable[PreparedFeed]
]
log = structlog.get_logger("monitor.pipeline")


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
    alert.  Returns new items, the rule of each match queued, and whether every item was
    handled.
    """
    items = list(prepared.items)
    if prepared.rules_version != rules.version:  # prepared before a reload, or not matched
        items = [rematch(item, rules) for item in items]
    is_new = await ctx.store.unseen_keys([item.record.seen_keys for item in items])
    items = [item for item, new in zip(items, is_new, strict=True) if new]
    if ctx.stories is not None:
        items = [
            await _with_story(item, ctx.stories, ctx.follow_ups, now)
            if item.record.match_json and (quiet_before is None or item.published >= quiet_before)
            else item
            for item in items
        ]
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
        recorded = await ctx.store.record(batch, now)
        for record, was_new in zip(batch, recorded, strict=True):
            if was_new:
                new_items += 1
                matched += record.rules
    return new_items, tuple(matched), True


async def _with_story(
    item: PreparedItem, stories: StoryStore, policy: FollowUpPolicy, now: datetime
) -> PreparedItem:
    """Put a matched item into its story and mark its matches with it, and with why they are
    worth a follow-up when the story was told before.

    Only matched items are clustered: a story is what the rules watch, and assigning costs
    three Redis round trips, too many for every item of a first poll.  The assignment is
    idempotent, so a poll retried after a crash gets the same story back.
    """
    update = await stories.assign(Item.from_dict(json.loads(item.record.item_json)), now)
    reason = follow_up_reason(update, policy)
    marked = tuple(_mark(match, update.story_id, reason) for match in item.record.match_json)
    return replace(item, record=replace(item.record, match_json=marked))


def _mark(match_json: str, story: str, follow_up: str | None) -> str:
    data = json.loads(match_json)
    data["story"] = story
    if follow_up:
        data["follow_up"] = follow_up
    return json.dumps(data, ensure_ascii=False)


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
