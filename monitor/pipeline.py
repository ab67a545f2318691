"""One pass of each loop: ``poll_once`` for a feed and ``DeliveryWorker.run_once`` for alerts.

Both are driven one pass at a time by the daemon's scheduler, by ``monitor run --once`` and by
tests; sleeping, signals and scheduling live in ``app``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import structlog

from monitor.dedup import seen_keys
from monitor.deliver import Channel
from monitor.errors import (
    FeedError,
    FeedParseError,
    PermanentDeliveryError,
    StoreError,
    TransientDeliveryError,
)
from monitor.fetch import Fetcher, Validators
from monitor.model import Match, PollResult, Source
from monitor.normalize import normalize_entry
from monitor.parse import NotAFeedError, parse_feed
from monitor.rules import RuleSet
from monitor.store import QueuedMatch, Store

Clock = Callable[[], datetime]
log = structlog.get_logger("monitor.pipeline")


@dataclass(frozen=True, slots=True)
class PollContext:
    """What every poll needs; built once by the composition root."""

    fetcher: Fetcher
    store: Store
    clock: Clock
    seen_ttl: timedelta


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
        if await ctx.store.record_item(seen_keys(item), matches, ctx.seen_ttl):
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


@dataclass(slots=True)
class DeliveryReport:
    """What one delivery pass did."""

    read: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    channels: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How long delivery state lives; from the config."""

    routes: tuple[tuple[str, ...], ...]
    sent_ttl: timedelta = timedelta(days=30)
    send_lease: timedelta = timedelta(minutes=2)
    claim_idle: timedelta = timedelta(minutes=1)
    batch: int = 50


class DeliveryWorker:
    """Reads matches from the stream and hands each to its channels, acknowledging only when
    every channel accepted it (or a permanent failure moved it to the dead letters)."""

    def __init__(
        self,
        store: Store,
        channels: Mapping[str, Channel],
        policy: DeliveryPolicy,
        *,
        consumer: str,
    ) -> None:
        self.store = store
        self.channels = channels
        self.policy = policy
        self.consumer = consumer

    async def run_once(self, *, block_ms: int | None = None) -> DeliveryReport:
        """Deliver stale matches left by failed attempts, then new ones (waiting up to
        ``block_ms`` for some to arrive)."""
        report = DeliveryReport()
        stale = await self.store.claim_stale(
            self.consumer, self.policy.claim_idle, self.policy.batch
        )
        fresh = await self.store.read_matches(
            self.consumer, self.policy.batch, None if stale else block_ms
        )
        for entry in [*stale, *fresh]:
            report.read += 1
            await self._deliver(entry, report)
        return report

    def channels_for(self, match: Match) -> tuple[str, ...]:
        """The rule's own route when it names active channels, else every configured route."""
        if match.route:
            chosen = tuple(name for name in match.route if name in self.channels)
            if chosen:
                return chosen
            log.warning("rule route names no active channel", rule=match.rule_id, route=match.route)
        names = [name for route in self.policy.routes for name in route]
        return tuple(dict.fromkeys(name for name in names if name in self.channels))

    async def _deliver(self, entry: QueuedMatch, report: DeliveryReport) -> None:
        match = entry.match
        if match is None:
            log.error("unreadable match in stream", entry=entry.entry_id)
            reason = "the stream entry is not a readable match"
            await self.store.dead_letter(entry, "-", reason, self.policy.sent_ttl)
            report.dead += 1
            return
        bound = log.bind(rule=match.rule_id, item=match.item.id, alert=entry.entry_id)
        outstanding = False
        for channel_name in self.channels_for(match):
            outcome = await self._send(entry, match, channel_name, bound)
            if outcome == "dead":
                report.dead += 1
            if outcome == "sent":
                report.channels[channel_name] = report.channels.get(channel_name, 0) + 1
            outstanding = outstanding or outcome == "retry"
        if outstanding:
            report.failed += 1
            return
        await self.store.acknowledge(entry.entry_id)
        report.delivered += 1

    async def _send(
        self,
        entry: QueuedMatch,
        match: Match,
        channel_name: str,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> str:
        """Send to one channel at most once; returns sent, skipped, retry or dead."""
        state = await self.store.begin_send(match.key, channel_name, self.policy.send_lease)
        if state == "done":
            return "skipped"
        if state == "busy":
            return "retry"
        try:
            await self.channels[channel_name].send(match)
        except TransientDeliveryError as exc:
            await self.store.abandon_send(match.key, channel_name)
            bound.warning("alert not accepted, will retry", channel=channel_name, error=str(exc))
            return "retry"
        except PermanentDeliveryError as exc:
            await self.store.dead_letter(entry, channel_name, str(exc), self.policy.sent_ttl)
            bound.error(
                "alert refused, moved to dead letters", channel=channel_name, error=str(exc)
            )
            return "dead"
        except StoreError:
            raise
        except Exception as exc:  # a channel bug must not lose the alert: retry it later
            await self.store.abandon_send(match.key, channel_name)
            bound.exception("channel failed unexpectedly", channel=channel_name, error=repr(exc))
            return "retry"
        await self.store.finish_send(match.key, channel_name, self.policy.sent_ttl)
        bound.info("alert sent", channel=channel_name)
        return "sent"


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
