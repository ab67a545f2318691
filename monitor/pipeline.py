"""One poll of one feed: fetch, parse, normalize, dedup, match and queue (``poll_once``).

Driven one pass at a time by the daemon's scheduler, by ``monitor run --once`` and by tests;
sleeping, signals and scheduling live in ``app``.  The delivery side's one pass is
``monitor.deliver.worker.DeliveryWorker.run_once``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import structlog

from monitor.errors import (
    FeedError,
    FeedParseError,
)
from monitor.fetch import Fetcher, Validators
from monitor.model import PollResult, Source
from monitor.normalize import normalize_entry
from monitor.parse import NotAFeedError, parse_feed
from monitor.rules import RuleSet
from monitor.store import Store

Clock = Callable[[], datetime]
log = structlog.get_logger("monitor.pipeline")


@dataclass(frozen=True, slots=True)
class PollContext:
    """What every poll needs; built once by the composition root."""

    fetcher: Fetcher
    store: Store
    clock: Clock


async def poll_once(source: Source, rules: RuleSet, ctx: PollContext) -> PollResult:
    """Fetch, parse, clean, dedup and match one feed, queueing matches of new items.

    A feed error is returned as an "error" result (and recorded on the feed's health), never
    raised: one broken feed must not disturb the others.  Redis errors do propagate, because
    without Redis nothing can be recorded and the caller must back off.
    """
    started = time.perf_counter()
    bound = log.bind(feed=source.name)
    state = await ctx.store.feed_state(source.name)
    try:
        result = await _fetch_and_record(source, rules, ctx, state.validators)
    except FeedError as exc:
        failures = await ctx.store.feed_failed(source.name, str(exc), ctx.clock())
        result = PollResult(
            source=source.name,
            status="error",
            http_status=getattr(exc, "status", None),
            error=str(exc),
            duration=time.perf_counter() - started,
        )
        bound.warning(
            "poll failed", error=str(exc), failures=failures, duration=round(result.duration, 3)
        )
        return result
    result = _with_duration(result, time.perf_counter() - started)
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


async def _fetch_and_record(
    source: Source, rules: RuleSet, ctx: PollContext, validators: Validators
) -> PollResult:
    response = await ctx.fetcher.fetch(source, validators)
    now = ctx.clock()
    if response.not_modified:
        await ctx.store.feed_succeeded(source.name, validators, 304, now, 0)
        return PollResult(source=source.name, status="not-modified", http_status=304)
    try:
        feed = parse_feed(response.body, response.headers, response.url or source.url)
    except NotAFeedError as exc:
        raise FeedParseError(source.name, source.url, str(exc)) from None
    new_items = matched = 0
    for entry in feed.entries:
        item = normalize_entry(entry, source, now)
        matches = rules.match(item)
        if await ctx.store.record_item(item, matches, now):
            new_items += 1
            matched += len(matches)
    fresh = Validators(response.headers.get("etag"), response.headers.get("last-modified"))
    await ctx.store.feed_succeeded(source.name, fresh, response.status, now, new_items)
    return PollResult(
        source=source.name,
        status="ok",
        http_status=response.status,
        entries=len(feed.entries),
        new_items=new_items,
        matches=matched,
        warnings=feed.warnings,
    )


def _with_duration(result: PollResult, duration: float) -> PollResult:
    return replace(result, duration=duration)


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
