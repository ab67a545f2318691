"""One poll of one feed: fetch, parse, normalize, dedup, match and queue (``poll_once``).

Driven one pass at a time by the daemon's scheduler, by ``monitor run --once`` and by tests;
sleeping, signals and scheduling live in ``app``.  The delivery side's one pass is
``monitor.deliver.worker.DeliveryWorker.run_once``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog

from monitor.errors import FeedError, FeedParseError
from monitor.feedpolicy import PollOutcome, cache_lifetime, is_due, next_poll_at
from monitor.fetch import Fetcher, FetchResult, Validators
from monitor.model import PollResult, Source
from monitor.normalize import normalize_entry
from monitor.parse import NotAFeedError, ParsedFeed, parse_feed
from monitor.rules import RuleSet
from monitor.scrape import scrape_page
from monitor.store import FeedState, FeedSuccess, Store

Clock = Callable[[], datetime]
log = structlog.get_logger("monitor.pipeline")


@dataclass(frozen=True, slots=True)
class PollContext:
    """What every poll needs; built once by the composition root.

    ``backfill``: on a feed's first poll, items published longer ago than this are recorded as
    seen without alerting, so adding a feed does not flood the channel with its archive.
    """

    fetcher: Fetcher
    store: Store
    clock: Clock
    backfill: timedelta = timedelta(hours=24)


async def poll_once(
    source: Source, rules: RuleSet, ctx: PollContext, *, due_only: bool = False
) -> PollResult:
    """Fetch, parse, clean, dedup and match one feed, queueing matches of new items.

    With ``due_only`` (the scheduler's ticks) a feed that is backing off after failures, or
    whose publisher asked for a longer cache lifetime, is skipped until it is due.

    A feed error is returned as an "error" result (and recorded on the feed's health), never
    raised: one broken feed must not disturb the others.  Redis errors do propagate, because
    without Redis nothing can be recorded and the caller must back off.
    """
    started = time.perf_counter()
    bound = log.bind(feed=source.name)
    state = await ctx.store.feed_state(source.name)
    if due_only and not is_due(state.next_poll_at, source.interval, ctx.clock()):
        bound.debug("poll not due", next_poll_at=state.next_poll_at)
        return PollResult(source=source.name, status="skipped")
    try:
        result = await _fetch_and_record(source, rules, ctx, state)
    except FeedError as exc:
        return await _record_failure(source, ctx, state, exc, time.perf_counter() - started)
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
    source: Source, ctx: PollContext, state: FeedState, exc: FeedError, duration: float
) -> PollResult:
    status = getattr(exc, "status", None)
    failures = state.failures + 1
    now = ctx.clock()
    outcome = PollOutcome(ok=False, retry_after=getattr(exc, "retry_after", None))
    retry_at = next_poll_at(outcome, failures, source.interval, now)
    await ctx.store.feed_failed(source.name, str(exc), status, now, retry_at)
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
    source: Source, rules: RuleSet, ctx: PollContext, state: FeedState
) -> PollResult:
    response = await ctx.fetcher.fetch(source, state.validators)
    now = ctx.clock()
    if response.not_modified:
        await ctx.store.feed_succeeded(
            source.name, _success(source, state.validators, response, now, None)
        )
        return PollResult(source=source.name, status="not-modified", http_status=304)
    feed = _parse(source, response)
    backfill_before = now - ctx.backfill if state.last_success is None else None
    new_items = matched = 0
    complete = True
    for entry in feed.entries:
        if new_items >= source.max_items:
            complete = False  # the rest wait for the next poll; none is lost
            break
        item = normalize_entry(entry, source, now)
        quiet = backfill_before is not None and item.published < backfill_before
        matches = [] if quiet else rules.match(item)
        if await ctx.store.record_item(item, matches, now):
            new_items += 1
            matched += len(matches)
    # Validators are kept only when every item was handled, so a capped poll fetches again.
    validators = (
        Validators(response.headers.get("etag"), response.headers.get("last-modified"))
        if complete
        else Validators()
    )
    await ctx.store.feed_succeeded(
        source.name, _success(source, validators, response, now, feed.ttl, new_items)
    )
    warnings = feed.warnings
    if response.permanent_url:
        warnings += (f"the feed moved permanently to {response.permanent_url}; update the config",)
    if not complete:
        warnings += (f"more than {source.max_items} new items; the rest come next poll",)
    return PollResult(
        source=source.name,
        status="ok",
        http_status=response.status,
        entries=len(feed.entries),
        new_items=new_items,
        matches=matched,
        warnings=warnings,
    )


def _parse(source: Source, response: FetchResult) -> ParsedFeed:
    url = response.url or source.url
    try:
        if source.kind == "page" and source.page is not None:
            return scrape_page(response.body, response.headers, url, source.page)
        return parse_feed(response.body, response.headers, url)
    except NotAFeedError as exc:
        raise FeedParseError(source.name, source.url, str(exc)) from None


def _success(
    source: Source,
    validators: Validators,
    response: FetchResult,
    now: datetime,
    feed_ttl: str | None,
    new_items: int = 0,
) -> FeedSuccess:
    outcome = PollOutcome(ok=True, cache_seconds=cache_lifetime(response.headers, feed_ttl))
    return FeedSuccess(
        validators=validators,
        status=response.status,
        at=now,
        next_poll_at=next_poll_at(outcome, 0, source.interval, now),
        new_items=new_items,
        moved_to=response.permanent_url,
    )


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
