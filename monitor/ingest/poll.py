"""One poll of one feed: fetch, parse, normalize, dedup, match and queue (``poll_once``).

Driven one pass at a time by the daemon's scheduler, by ``monitor run --once`` and by tests;
sleeping, signals and scheduling live in ``app``.  What stories and trends make of a batch's
matches is ``monitor.stories.settle``; when to poll and whether a feed is healthy,
``monitor.ingest.schedule``.  The delivery side's one pass is
``monitor.deliver.worker.DeliveryWorker.run_once``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import structlog

from monitor.errors import FeedError, FeedParseError, StoreError
from monitor.ingest.dedup import ItemRecord, as_update
from monitor.ingest.fetch import (
    Fetcher,
    FetchResult,
    Validators,
    made_progress,
    stepping_out,
)
from monitor.ingest.prepare import PreparedFeed, PreparedItem, can_alert, prepare_feed
from monitor.ingest.schedule import (
    PollOutcome,
    cache_lifetime,
    health_alert,
    health_match,
    is_due,
    next_poll_at,
)
from monitor.ingest.state import NEW, UPDATED, FeedState, FeedSuccess, Sighting, Store
from monitor.model import Item, PollResult, Source
from monitor.redact import mask_text, mask_url
from monitor.rules import RuleSet
from monitor.stories.settle import by_publication, count_trends, settle_batch
from monitor.stories.store import StoryStore
from monitor.stories.story import FollowUpPolicy
from monitor.stories.volume import VolumeStore

Clock = Callable[[], datetime]
Preparer = Callable[
    [Source, FetchResult, datetime, RuleSet, frozenset[str], datetime | None],
    Awaitable[PreparedFeed],
]
log = structlog.get_logger("monitor.ingest.poll")


async def prepare_in_process(
    source: Source,
    response: FetchResult,
    now: datetime,
    rules: RuleSet,
    known: frozenset[str],
    quiet_before: datetime | None = None,
) -> PreparedFeed:
    """The default preparer: on the event loop, for tests, ``--once`` and small deployments."""
    url = response.url or source.url
    body, headers = response.body, response.headers
    return prepare_feed(source, body, headers, url, now, rules, known, quiet_before)


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

    The result's ``duration`` is the poll's own work: the time it stood aside for its host's
    turn is reported apart, as ``host_wait`` (``HostWait``).
    """
    started = time.perf_counter()
    waited = HostWait()
    bound = log.bind(feed=source.name)
    state = await ctx.store.feed_state(source.name)
    tick = tick or ctx.clock()
    if due_only and not is_due(state.next_poll_at, source.interval, tick):
        bound.debug("poll not due", next_poll_at=state.next_poll_at)
        return PollResult(source=source.name, status="skipped")
    try:
        with stepping_out(waited.pause):
            result = await _fetch_and_record(source, rules, ctx, state, tick)
    except FeedError as exc:
        failed = await _record_failure(source, ctx, state, exc, waited.working(started), tick)
        return replace(failed, host_wait=waited.seconds)
    except StoreError:
        raise
    except Exception as exc:  # a bulkhead: one feed's surprise fails that feed, not the pass
        bound.exception("poll raised an unexpected error; the feed fails, the others go on")
        error = unexpected(source, exc)
        failed = await _record_failure(source, ctx, state, error, waited.working(started), tick)
        return replace(failed, host_wait=waited.seconds)
    if state.health_alerted:
        await _tell_health(source, ctx, True, state.failing_since, True, None, ctx.clock())
    result = replace(result, duration=waited.working(started), host_wait=waited.seconds)
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
        host_wait=round(result.host_wait, 3),
    )
    return result


class HostWait:
    """The seconds one poll stood aside for its host's turn (``fetch.stepping_out``), so that
    its duration can leave them out: many feeds on one host, a ``host_gap`` apart, would
    otherwise make a fast site's last feed look as slow as the whole queue before it.

    Registered innermost, it is entered first and left last, so it also covers taking back
    what the poll lent while it waited (its place among the polls running at once).
    """

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextlib.asynccontextmanager
    async def pause(self) -> AsyncIterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - started

    def working(self, started: float) -> float:
        """Seconds since ``started`` (``time.perf_counter()``) less the waits."""
        return max(0.0, time.perf_counter() - started - self.seconds)


def unexpected(source: Source, exc: Exception) -> FeedError:
    """An error no stage expected (a library refusing one feed's settings, a parser bug) as
    that feed's failure: recorded, backed off and alerted on like any other, never raised
    into the pass, where it would stop every other feed's poll."""
    return FeedError(
        source.name,
        source.url,
        f"unexpected {type(exc).__name__}: {exc}",
        hint="a bug or a setting the HTTP library refuses; the traceback is in the log",
    )


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
    error = mask_text(str(exc))  # kept in Redis, shown by the CLI, quoted in alerts
    await ctx.store.feed_failed(source.name, error, status, now, retry_at)
    since = state.failing_since or now
    await _tell_health(source, ctx, False, since, state.health_alerted, error, now)
    log.warning(
        "poll failed",
        feed=source.name,
        error=error,
        failures=failures,
        retry_at=retry_at.isoformat(),
        duration=round(duration, 3),
    )
    return PollResult(
        source=source.name, status="error", http_status=status, error=error, duration=duration
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
    quiet_before = None
    if state.last_success is None and ctx.backfill is not None:  # a new feed's archive
        quiet_before = now - ctx.backfill
    prepared = await ctx.prepare(source, response, now, rules, state.known_entries, quiet_before)
    if prepared.error is not None:
        raise FeedParseError(source.name, source.url, prepared.error)
    new_items, matched, complete = await _record(source, rules, ctx, prepared, quiet_before, now)
    # Validators and entry names are kept only when every item was handled, so a capped poll
    # fetches and considers every entry again; a body cut at ``max_items`` keeps the names of
    # the entries handled, so that the next poll reads on past them.
    if complete and not prepared.cut:
        validators = Validators(response.headers.get("etag"), response.headers.get("last-modified"))
        known = prepared.fingerprints
    elif complete:
        validators, digest, known = Validators(), None, prepared.fingerprints
    else:
        validators, digest, known = Validators(), None, ()
    times = (now, tick)
    success = _success(source, validators, response, times, prepared.ttl, new_items, digest, known)
    await ctx.store.feed_succeeded(source.name, success)
    warnings = prepared.warnings
    if response.permanent_url:
        moved = mask_url(response.permanent_url)
        warnings += (f"the feed moved permanently to {moved}; update the config",)
    if not complete or prepared.cut:
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

    Items already seen are dropped first, in one round trip; an item whose GUID came back
    materially changed is recorded as an update, with only the rules it newly matches
    (``_sighted``).  Items published before
    ``quiet_before`` (a new feed's archive) are recorded without their matches, so they never
    alert.  With stories on, the matched items of a batch join their stories just before it
    is recorded (never items left for the next poll, whose story flags would be spent on an
    item not yet queued); then the trends count what the batch recorded.  Returns new
    items, the rule of each match queued, and whether every item was handled.
    """
    items = list(prepared.items)
    if prepared.rules_version != rules.version:  # prepared before a reload, or not matched
        items = [
            rematch(item, rules) if can_alert(item.published, quiet_before) else item
            for item in items
        ]
    sightings = await ctx.store.triage([item.record for item in items])
    items = [
        replace(item, record=record)
        for item, sighting in zip(items, sightings, strict=True)
        if (record := _sighted(item.record, sighting)) is not None
    ]
    new_items = updated = position = 0
    matched: list[str] = []
    while position < len(items):
        room = source.max_items - new_items - updated
        if room <= 0:
            return new_items, tuple(matched), False
        batch = [
            item.record
            if quiet_before is None or item.published >= quiet_before
            else replace(item.record, match_json=(), rules=())
            for item in items[position : position + min(RECORD_BATCH, room)]
        ]
        position += len(batch)
        if ctx.stories is not None:  # assigned and queued oldest first: the alert leads
            batch = by_publication(batch)
        counted = list(batch)
        if ctx.stories is not None:
            batch = await _through_stories(batch, rules, ctx, ctx.stories, now)
        recorded = await ctx.store.record(batch, now)
        for record, status in zip(batch, recorded, strict=True):
            if status in (NEW, UPDATED):
                new_items += status == NEW
                updated += status == UPDATED
                matched += record.rules
        if rules.trends:  # an update is not counted again
            fresh = [
                r
                for r, status in zip(counted, recorded, strict=True)
                if status == NEW and r.match_json
            ]
            volume = ctx.volume or VolumeStore(ctx.store.client, ctx.store.keys)
            await count_trends(fresh, rules, volume, now)
        made_progress()  # a batch recorded: slow is not hung (``fetch.made_progress``)
    if updated:
        log.info("items updated", feed=source.name, updated=updated)
    return new_items, tuple(matched), True


def _sighted(record: ItemRecord, sighting: Sighting) -> ItemRecord | None:
    """What to record of an item, given how it was seen before; None: nothing.

    Pure.  Another feed's copy of an article is recorded (so its own keys exist from now on)
    without its matches: it never alerts.  An edited item keeps only the matches of rules it
    did not match before, marked as an update.
    """
    if sighting.kind == "seen":
        return None
    if sighting.kind == "elsewhere":
        return replace(record, match_json=(), rules=())
    if sighting.kind == "changed":
        return as_update(record, sighting.prior)
    return record


async def _through_stories(
    batch: list[ItemRecord], rules: RuleSet, ctx: PollContext, stories: StoryStore, now: datetime
) -> list[ItemRecord]:
    """The batch with the matches its stories let through (``settle_batch``): held ones
    dropped, alerts and follow-ups marked with their story."""
    queued = await settle_batch(batch, rules, stories, ctx.follow_ups, now)
    return [
        replace(record, match_json=q.match_json, rules=q.rules)
        for record, q in zip(batch, queued, strict=True)
    ]


def rematch(item: PreparedItem, rules: RuleSet) -> PreparedItem:
    """Match a prepared item with ``rules``: the rules changed while it was being prepared.
    Its keys (which may hold a link fragment its JSON does not) are kept."""
    parsed = Item.from_dict(json.loads(item.record.item_json))
    return replace(item, record=item.record.with_matches(rules.match(parsed)))


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
