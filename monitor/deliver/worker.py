"""The delivery worker: one pass reads matches from the queue and hands each to its channels.

It acknowledges an entry only when every channel accepted it (or refused it for good, which
dead-letters it for that channel), so a crash or an outage never loses an alert; per-channel
markers in Redis stop a redelivered entry from reaching a channel twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import structlog

from monitor.deliver import Channel
from monitor.errors import PermanentDeliveryError, StoreError, TransientDeliveryError
from monitor.model import Match
from monitor.queue import AlertQueue, QueuedMatch

log = structlog.get_logger("monitor.deliver")


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
        queue: AlertQueue,
        channels: Mapping[str, Channel],
        policy: DeliveryPolicy,
        *,
        consumer: str,
    ) -> None:
        self.queue = queue
        self.channels = channels
        self.policy = policy
        self.consumer = consumer

    async def run_once(self, *, block_ms: int | None = None) -> DeliveryReport:
        """Deliver stale matches left by failed attempts, then new ones (waiting up to
        ``block_ms`` for some to arrive)."""
        report = DeliveryReport()
        stale = await self.queue.claim_stale(
            self.consumer, self.policy.claim_idle, self.policy.batch
        )
        fresh = await self.queue.read_matches(
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
            await self.queue.dead_letter(entry, "-", reason, self.policy.sent_ttl)
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
        await self.queue.acknowledge(entry.entry_id)
        report.delivered += 1

    async def _send(
        self,
        entry: QueuedMatch,
        match: Match,
        channel_name: str,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> str:
        """Send to one channel at most once; returns sent, skipped, retry or dead."""
        state = await self.queue.begin_send(match.key, channel_name, self.policy.send_lease)
        if state == "done":
            return "skipped"
        if state == "busy":
            return "retry"
        try:
            await self.channels[channel_name].send(match)
        except TransientDeliveryError as exc:
            await self.queue.abandon_send(match.key, channel_name)
            bound.warning("alert not accepted, will retry", channel=channel_name, error=str(exc))
            return "retry"
        except PermanentDeliveryError as exc:
            await self.queue.dead_letter(entry, channel_name, str(exc), self.policy.sent_ttl)
            bound.error(
                "alert refused, moved to dead letters", channel=channel_name, error=str(exc)
            )
            return "dead"
        except StoreError:
            raise
        except Exception as exc:  # a channel bug must not lose the alert: retry it later
            await self.queue.abandon_send(match.key, channel_name)
            bound.exception("channel failed unexpectedly", channel=channel_name, error=repr(exc))
            return "retry"
        await self.queue.finish_send(match.key, channel_name, self.policy.sent_ttl)
        bound.info("alert sent", channel=channel_name)
        return "sent"
