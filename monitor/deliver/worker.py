"""The delivery worker: one pass reads matches from the queue and hands each to its channels.

It acknowledges an entry only when every channel accepted it, refused it for good (a dead
letter), or it was rescheduled for a later attempt, so a crash or an outage never loses an
alert; per-channel markers in Redis stop a redelivered entry from reaching a channel twice.
Routing, silences, throttling and digests are decided here, from pure rules in ``policy``.

Each channel delivers independently: a pass hands its sends to one lane per channel, and a
daemon pass (``block_ms`` given) does not wait for a slow lane: the next pass reads and
sends new alerts while a stuck mail server runs out its deadline.  Every send must end
within its lease budget (``policy.send_budget``), so no other worker can take it over while
it may still reach the far end.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from monitor.deliver.channels import (
    Channel,
    DigestChannel,
    EmailChannel,
    GroupChannel,
    min_interval,
    send_deadline,
)
from monitor.deliver.channels.email import RecipientsRefused
from monitor.deliver.digest_store import RETRY_DIGEST, DigestStore, parse_matches
from monitor.deliver.feedback import RuleStats
from monitor.deliver.feedback_store import FeedbackStore
from monitor.deliver.fold import fold_story_updates
from monitor.deliver.group import by_article, merge_rule_messages
from monitor.deliver.history import SentLog
from monitor.deliver.ops_alerts import ops_routed
from monitor.deliver.policy import (
    DigestSchedule,
    RetryPolicy,
    Route,
    Silence,
    backoff_delay,
    delivery_unit,
    digest_due,
    gives_up,
    group_by_topic,
    route_plan,
    rule_by_rule,
    send_budget,
    silenced_by,
    story_key,
    throttled_as,
)
from monitor.deliver.queue import AlertQueue, QueuedMatch
from monitor.deliver.render.digest import Digest
from monitor.deliver.render.slack_blocks import GROUP_MAX
from monitor.deliver.silences import SilenceStore
from monitor.deliver.translate import AlertTranslator
from monitor.errors import PermanentDeliveryError, StoreError, TransientDeliveryError
from monitor.model import Match

log = structlog.get_logger("monitor.deliver")
MAX_PACE_WAIT = 5.0
"""Longest a pass waits for a rate-limited channel; beyond it the alert is rescheduled."""
SEND_CONCURRENCY = 8
"""Sends in flight at once to one channel without a rate limit (email, webhook)."""
MAX_FLIGHTS = 8
"""Passes whose sends may still be running in the background; beyond it a pass waits."""
STATS_EVERY = timedelta(minutes=1)
"""How often a pass reads the rules' feedback numbers for the metrics."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class DeliveryReport:
    """What one delivery pass did."""

    read: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    throttled: int = 0
    silenced: int = 0
    folded: int = 0
    """Entries told by another message of their story and rule in the same pass (``fold``)."""
    digested: int = 0
    digests: int = 0
    channels: dict[str, int] = field(default_factory=dict)
    failed_channels: dict[str, int] = field(default_factory=dict)
    """Sends left for a retry, by channel (``failed`` counts entries)."""
    dead_channels: dict[str, int] = field(default_factory=dict)
    """Dead letters made, by channel ("-" for an unreadable entry)."""
    rule_stats: tuple[RuleStats, ...] | None = None
    """Each rule's sent / relevant / not relevant over 7 and 30 days, when this pass read
    them (``STATS_EVERY``), for the metrics."""

    def sent(self, channel: str, count: int = 1) -> None:
        self.channels[channel] = self.channels.get(channel, 0) + count

    def count_dead(self, channel: str) -> None:
        self.dead += 1
        self.dead_channels[channel] = self.dead_channels.get(channel, 0) + 1

    def merge(self, other: DeliveryReport) -> None:
        """Add what a pass that finished in the background did."""
        for name in ("read", "delivered", "failed", "dead", "throttled", "silenced", "folded"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.digested += other.digested
        self.digests += other.digests
        for mine, theirs in (
            (self.channels, other.channels),
            (self.failed_channels, other.failed_channels),
            (self.dead_channels, other.dead_channels),
        ):
            for channel, count in theirs.items():
                mine[channel] = mine.get(channel, 0) + count

    def count_failed(self, units: Sequence[str]) -> None:
        """One entry rescheduled, for the channels of ``units`` (channel or channel#subset)."""
        self.failed += 1
        for channel in {unit.partition("#")[0] for unit in units}:
            self.failed_channels[channel] = self.failed_channels.get(channel, 0) + 1


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How delivery behaves; built from the config by ``monitor.deliver.build``.

    ``routes`` may also be given as plain tuples of channel names (each a catch-all route).
    Without ``retry``, failed sends are retried after ``claim_idle``, doubling each time.
    ``burst``: more alerts than this waiting for one rate-limited channel in a pass are
    coalesced into grouped messages.
    """

    routes: tuple[Route, ...] | tuple[tuple[str, ...], ...]
    sent_ttl: timedelta = timedelta(days=30)
    send_lease: timedelta = timedelta(minutes=2)
    claim_idle: timedelta = timedelta(minutes=1)
    batch: int = 50
    retry: RetryPolicy | None = None
    throttle: timedelta = timedelta(hours=4)
    burst: int = 3
    digests: Mapping[str, DigestSchedule] = field(default_factory=dict)
    leases: Mapping[str, timedelta] = field(default_factory=dict)
    """Per channel, a send lease longer than ``send_lease`` (see ``policy.send_lease_for``)."""

    def lease(self, channel: str) -> timedelta:
        return self.leases.get(channel, self.send_lease)

    @property
    def route_list(self) -> tuple[Route, ...]:
        return tuple(r if isinstance(r, Route) else Route(channels=tuple(r)) for r in self.routes)

    @property
    def retry_policy(self) -> RetryPolicy:
        return self.retry or RetryPolicy(base=self.claim_idle, cap=max(self.claim_idle * 64, ONE))


ONE = timedelta(seconds=1)


@dataclass(slots=True)
class _Send:
    """One send to make: a match to one unit (a channel, or a channel and some recipients)."""

    entry: QueuedMatch
    match: Match
    channel: str
    unit: str
    recipients: tuple[str, ...]
    expires: float = float("inf")
    """Event-loop time by which the send must have ended: its lease, less the margin."""
    shares: bool = False
    """May share one message with the other rules' alerts about its item (``group``)."""

    @property
    def article(self) -> tuple[str, str] | None:
        """What sends sharing one message have in common: the unit and the item."""
        return (self.unit, self.match.item.id) if self.shares else None


@dataclass(slots=True)
class _Progress:
    """What happened to one entry's units in this pass, to finish the entry afterwards."""

    entry: QueuedMatch
    busy: bool = False
    unsettled: int = 0
    """Sends claimed but without an outcome yet (an outage cut the pass short)."""
    retry: dict[str, tuple[str, ...]] = field(default_factory=dict)
    retry_after: float = 0.0
    errors: list[str] = field(default_factory=list)


Step = Callable[[], Awaitable[Any]]


class DeliveryWorker:
    """Reads matches from the stream and hands each to its channels (see the module doc)."""

    def __init__(
        self,
        queue: AlertQueue,
        channels: Mapping[str, Channel],
        policy: DeliveryPolicy,
        *,
        consumer: str,
        clock: Callable[[], datetime] = utcnow,
        jitter: Callable[[], float] = random.random,
        translator: AlertTranslator | None = None,
    ) -> None:
        self.queue = queue
        self.translator = translator
        """Puts foreign alerts' headline and quote into English just before they are sent
        (``translate``); None: alerts carry only their gloss."""
        self.channels = channels
        self.policy = policy
        self.consumer = consumer
        self.clock = clock
        self.jitter = jitter
        self.silences = SilenceStore(queue.client, queue.keys)
        self.digests = DigestStore(queue.client, queue.keys)
        self.history = SentLog(queue.client, queue.keys)
        """The sent-alert log the console's Inbox reads (``history``); the composition root
        sets its cap (``delivery.keep_sent``)."""
        self._routes = policy.route_list
        self._backlog: list[Step] = []
        self._flights: set[asyncio.Task[DeliveryReport]] = set()
        self._landed: list[DeliveryReport] = []
        self._inflight: set[str] = set()
        """Entry ids whose sends are still running: a reclaim must not start them again."""
        self._token = uuid.uuid4().hex[:12]
        self.ops_channels: tuple[str, ...] = ()
        """Channels for operational alerts (``ops.channels``); empty: the routes decide."""
        self.feedback: FeedbackStore | None = None
        """Counts each rule's alerts sent, for its precision (``rules stats``); None: not."""
        self._stats_at: datetime | None = None

    # -- one pass -----------------------------------------------------------------------------

    async def run_once(self, *, block_ms: int | None = None) -> DeliveryReport:
        """Finish what an outage interrupted, re-queue due retries, then deliver stale
        matches left by dead workers and new ones (waiting up to ``block_ms`` for some)."""
        report = DeliveryReport()
        await self._land(report, wait=len(self._flights) >= MAX_FLIGHTS)
        await self._replay_backlog()
        now = self.clock()
        await self.queue.promote_due(now)
        stale = await self.queue.claim_stale(
            self.consumer, self.policy.claim_idle, self.policy.batch
        )
        wait = None if stale else await self._block_for(block_ms, now)
        fresh = await self.queue.read_matches(self.consumer, self.policy.batch, wait)
        entries = [e for e in (*stale, *fresh) if e.entry_id not in self._inflight]
        report.read = len(entries)
        if entries:
            background = None if block_ms is None else block_ms / 1000
            claimed = {entry.entry_id for entry in stale}
            await self._deliver(entries, report, background, claimed)
        report.rule_stats = await self._rule_stats(now)
        return report

    async def _rule_stats(self, now: datetime) -> tuple[RuleStats, ...] | None:
        """The rules' feedback numbers, at most once per ``STATS_EVERY`` (None otherwise)."""
        if self.feedback is None:
            return None
        if self._stats_at is not None and abs(now - self._stats_at) < STATS_EVERY:
            return None
        self._stats_at = now
        try:
            return tuple(await self.feedback.stats(now))
        except StoreError:
            return None

    async def settle(self, within: float | None = None) -> bool:
        """Wait (up to ``within`` seconds) for sends still running in the background; True
        when none are left.  For a shutdown: what is cut off stays in the stream."""
        if self._flights:
            await asyncio.wait(set(self._flights), timeout=within)
        return not self._flights

    async def _land(self, report: DeliveryReport, *, wait: bool) -> None:
        """Count the passes that finished in the background into ``report`` (waiting for
        the oldest when too many are running); re-raise a Redis failure one of them met."""
        if wait and self._flights:
            await asyncio.wait(set(self._flights), return_when=asyncio.FIRST_COMPLETED)
        landed, self._landed = self._landed, []
        for done in landed:
            report.merge(done)

    def _fly(self, flight: asyncio.Task[DeliveryReport], ids: set[str]) -> None:
        """Keep a pass's sends running after ``run_once`` returned."""
        self._flights.add(flight)
        self._inflight |= ids

        def landed(task: asyncio.Task[DeliveryReport]) -> None:
            self._flights.discard(task)
            self._inflight -= ids
            if task.cancelled():
                return
            error = task.exception()
            if error is not None:
                if not isinstance(error, StoreError):
                    log.error("background delivery failed", error=repr(error))
                return
            self._landed.append(task.result())

        flight.add_done_callback(landed)

    async def _block_for(self, block_ms: int | None, now: datetime) -> int | None:
        """Block no longer than until the next retry is due, so it is not sent late."""
        if block_ms is None:
            return None
        due = await self.queue.next_due()
        if due is None:
            return block_ms
        return max(1, min(block_ms, int((due - now.timestamp()) * 1000)))

    async def _deliver(
        self,
        entries: Sequence[QueuedMatch],
        report: DeliveryReport,
        background: float | None = None,
        claimed: Collection[str] = (),
    ) -> None:
        """Claim and send ``entries``; wait for every send, or with ``background`` (seconds)
        only that long, leaving the rest to finish their entries on their own.  ``claimed``:
        entries taken over from a dead worker, never folded (``fold``)."""
        now = self.clock()
        silences = await self.silences.active(now)
        progress: list[_Progress] = []
        sends: dict[str, list[_Send]] = {}
        entries = await self._in_current_stories(entries)
        folded = fold_story_updates(entries, claimed)
        for entry, carrier in folded.folded:
            await self._fold(entry, carrier, report)
        for entry in folded.send:
            state = await self._prepare(entry, silences, now, sends, report)
            if state is not None:
                progress.append(state)
        if background is None or not sends:
            await self._send_and_finish(sends, progress, report)
            return
        late = DeliveryReport()
        flight = asyncio.create_task(self._send_and_finish(sends, progress, late))
        ids = {state.entry.entry_id for state in progress}
        try:
            done, _ = await asyncio.wait({flight}, timeout=background)
        except asyncio.CancelledError:  # the pass is cancelled, not its sends: keep them known
            self._fly(flight, ids)
            raise
        if done:
            report.merge(flight.result())
            return
        self._fly(flight, ids)

    async def _send_and_finish(
        self,
        sends: Mapping[str, list[_Send]],
        progress: Sequence[_Progress],
        report: DeliveryReport,
    ) -> DeliveryReport:
        """One lane per channel, all at once; then finish every entry of the pass."""
        await self._translate(sends)
        by_entry = {id(p.entry): p for p in progress}
        results = await asyncio.gather(
            *(self._send_channel(name, batch, by_entry, report) for name, batch in sends.items()),
            return_exceptions=True,
        )
        for state in progress:
            await self._finish(state, report)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return report

    async def _translate(self, sends: Mapping[str, list[_Send]]) -> None:
        """Give the pass's foreign alerts their English, all at once and within the
        translator's deadline, just before they are rendered.  A translator that breaks
        costs the alerts their translation, never their delivery."""
        if self.translator is None or not sends:
            return
        by_entry = {id(send.entry): send.match for batch in sends.values() for send in batch}
        try:
            translated = await self.translator.translate_all(list(by_entry.values()))
        except Exception as exc:  # a translator bug must not stop an alert
            log.exception("translation failed unexpectedly", error=repr(exc))
            return
        english = dict(zip(by_entry, translated, strict=True))
        for batch in sends.values():
            for send in batch:
                send.match = english[id(send.entry)]

    async def _translated_digest(self, matches: list[Match]) -> list[Match]:
        """A digest's foreign headlines in English (see ``_translate``)."""
        if self.translator is None:
            return matches
        try:
            return await self.translator.translate_titles(matches)
        except Exception as exc:  # a translator bug must not stop a digest
            log.exception("translation failed unexpectedly", error=repr(exc))
            return matches

    # -- deciding what to send ------------------------------------------------------------------

    async def _in_current_stories(self, entries: Sequence[QueuedMatch]) -> list[QueuedMatch]:
        """``entries`` with each match's story as it is now: a story merged into another
        after its match was queued (a report that arrived later bridged the two) is that
        other story, so that ``fold`` tells the merged event in one message and throttling
        counts it as one story."""
        stories = [e.match.story for e in entries if e.match is not None and e.match.story]
        merged = await self.queue.merged_stories(stories) if stories else {}
        if not merged:
            return list(entries)
        return [
            dataclasses.replace(e, match=dataclasses.replace(e.match, story=merged[e.match.story]))
            if e.match is not None and e.match.story in merged
            else e
            for e in entries
        ]

    async def _fold(self, entry: QueuedMatch, carrier: str, report: DeliveryReport) -> None:
        """An entry whose story and rule another entry of this pass tells (``fold``): kept
        in the suppressed log with the message that carries it, then acknowledged."""
        assert entry.match is not None
        await self.queue.record_suppressed(entry.match, "*", f"folded into alert {carrier}")
        await self.queue.acknowledge(entry.entry_id)
        log.info(
            "alert folded into its story's message",
            rule=entry.match.rule_id,
            item=entry.match.item.id,
            alert=entry.origin or entry.entry_id,
            into=carrier,
        )
        report.folded += 1

    async def _prepare(
        self,
        entry: QueuedMatch,
        silences: Sequence[Silence],
        now: datetime,
        sends: dict[str, list[_Send]],
        report: DeliveryReport,
    ) -> _Progress | None:
        """Route one entry and claim its sends; None when the entry is already finished."""
        match = entry.match
        if match is None:
            log.error("unreadable match in stream", alert=entry.entry_id)
            reason = "the stream entry is not a readable match"
            await self.queue.dead_letter(entry, "-", reason, ttl=self.policy.sent_ttl)
            report.count_dead("-")
            return None
        bound = log.bind(
            rule=match.rule_id, item=match.item.id, alert=entry.origin or entry.entry_id
        )
        silence = None if entry.only else silenced_by(match, silences, now)
        if silence is not None:
            await self.queue.record_suppressed(match, "*", f"silenced by {silence.id}")
            await self.queue.acknowledge(entry.entry_id)
            bound.info("alert silenced", silence=silence.id, reason=silence.reason)
            report.silenced += 1
            return None
        state = _Progress(entry)
        alone = rule_by_rule(match, self._routes)
        for channel, unit, recipients in self._plan(entry, match, bound):
            if await self._held_for_digest(entry, match, channel, now):
                report.digested += 1
                continue
            verdict = await self.queue.begin_send(
                match.key,
                unit,
                self.policy.lease(channel),
                severity=int(match.severity),
                throttle_key=self.queue.keys.throttle(match.rule_id, throttled_as(match), channel),
                throttle=self.policy.throttle,
            )
            if verdict == "go":
                budget = send_budget(self.policy.lease(channel))
                expires = asyncio.get_running_loop().time() + budget
                sends.setdefault(channel, []).append(
                    _Send(entry, match, channel, unit, recipients, expires, channel not in alone)
                )
                state.unsettled += 1
            elif verdict == "busy":
                state.busy = True
            elif verdict == "throttled":
                await self.queue.record_suppressed(match, channel, "throttled")
                bound.info("alert throttled", channel=channel, story=story_key(match))
                report.throttled += 1
        return state

    def _plan(
        self, entry: QueuedMatch, match: Match, bound: Any
    ) -> list[tuple[str, str, tuple[str, ...]]]:
        """(channel, unit, recipients) to send to: a retry's remaining units, else the route's.

        Route recipients extend an email channel's own list; the unit then names the whole
        list, so a changed list is a different delivery.
        """
        if entry.only:
            planned = []
            for unit in entry.only:
                channel = unit.partition("#")[0]
                if channel in self.channels:
                    planned.append((channel, unit, tuple(entry.recipients.get(unit, ()))))
                else:
                    bound.warning("retry for a channel no longer configured", channel=channel)
            return planned
        planned = []
        addressable = [n for n, c in self.channels.items() if isinstance(c, EmailChannel)]
        routed = ops_routed(match, self.ops_channels)
        for channel, extra in route_plan(routed, self._routes, self.channels, addressable).items():
            if not extra:
                planned.append((channel, channel, ()))
                continue
            own = tuple(getattr(self.channels[channel], "recipients", ()))
            everyone = tuple(dict.fromkeys((*own, *extra)))
            planned.append((channel, delivery_unit(channel, everyone), everyone))
        if not planned:
            bound.warning("no route takes this alert; it is recorded, not sent")
        return planned

    async def _held_for_digest(
        self, entry: QueuedMatch, match: Match, channel: str, now: datetime
    ) -> bool:
        schedule = self.policy.digests.get(channel)
        if schedule is None or entry.only or not schedule.holds(match):
            return False
        await self.digests.hold(channel, entry.raw, now)
        return True

    # -- sending --------------------------------------------------------------------------------

    async def _send_channel(
        self,
        name: str,
        sends: list[_Send],
        progress: Mapping[int, _Progress],
        report: DeliveryReport,
    ) -> None:
        """Send everything due to one channel, one message per article (``group``): paced
        and coalesced when it is rate-limited, a few at a time otherwise."""
        channel = self.channels[name]
        interval = min_interval(channel)
        articles = [[sends[i] for i in group] for group in by_article([s.article for s in sends])]
        if interval <= timedelta(0):
            limit = asyncio.Semaphore(SEND_CONCURRENCY)

            async def one(article: list[_Send]) -> None:
                async with limit:
                    if asyncio.get_running_loop().time() >= min(s.expires for s in article):
                        for send in article:
                            await self._record_retry(send, progress, "no free sender in time", 0)
                        return
                    await self._attempt(channel, article, progress, report)

            await asyncio.gather(*(one(article) for article in articles))
            return
        for group in self._groups(channel, articles):
            expires = min(send.expires for send in group)
            token = f"{self._token}-{uuid.uuid4().hex[:8]}"
            deadline = send_deadline(channel)
            if deadline is not None:  # a worker killed mid-post holds the slot no longer
                hold_until = asyncio.get_running_loop().time() + deadline.total_seconds() + 1
                expires = min(expires, hold_until)
            wait = await self._wait_for_slot(name, interval, expires, token)
            if wait:
                for send in group:
                    await self._record_retry(send, progress, "rate limit", wait)
                continue
            try:
                await self._attempt(channel, group, progress, report)
            finally:
                with contextlib.suppress(StoreError):  # the slot then ends at its hold
                    await self.queue.paced(name, interval, token)

    def _groups(self, channel: Channel, articles: list[list[_Send]]) -> list[list[_Send]]:
        """The posts to a rate-limited channel: one per article, or for a burst (more
        articles than ``burst``) to a channel that coalesces, up to ``GROUP_MAX`` articles
        per post."""
        if not isinstance(channel, GroupChannel) or len(articles) <= self.policy.burst:
            return articles
        return [
            [send for article in articles[i : i + GROUP_MAX] for send in article]
            for i in range(0, len(articles), GROUP_MAX)
        ]

    async def _wait_for_slot(
        self, name: str, interval: timedelta, expires: float, token: str
    ) -> float:
        """Wait for the channel's rate limit (shared by every worker through Redis); returns
        0 once the slot is taken (held for the post, until ``expires`` at most), or the
        remaining wait when it is too long to wait here or would outlast the lease."""
        loop = asyncio.get_running_loop()
        while True:
            left = expires - loop.time()
            hold = timedelta(seconds=max(left, 0.0))
            wait = await self.queue.pace(name, interval, hold=hold, token=token)
            if wait <= 0:
                return 0.0
            if wait > MAX_PACE_WAIT or wait >= left - 1.0:
                return wait
            await asyncio.sleep(wait)

    async def _attempt(
        self,
        channel: Channel,
        group: list[_Send],
        progress: Mapping[int, _Progress],
        report: DeliveryReport,
    ) -> None:
        """One post (a single alert or a coalesced group) and what follows from its answer."""
        try:
            await self._post_within(channel, group)
        except RecipientsRefused as exc:
            await self._partly_sent(group[0], exc, progress, report)
        except TransientDeliveryError as exc:
            if exc.retry_after and min_interval(channel) > timedelta(0):
                await self.queue.hold_channel(channel.name, timedelta(seconds=exc.retry_after))
            for send in group:
                await self._record_retry(send, progress, str(exc), exc.retry_after or 0.0)
        except PermanentDeliveryError as exc:
            if len(group) > 1:  # find which alert the far end refuses; the others go through
                for send in group:
                    await self._attempt(channel, [send], progress, report)
                return
            await self._record_dead(group[0], str(exc), report, progress=progress)
        except StoreError:
            raise
        except Exception as exc:  # a channel bug must not lose the alert: retry it later
            log.exception("channel failed unexpectedly", channel=channel.name, error=repr(exc))
            for send in group:
                await self._record_retry(send, progress, f"unexpected {type(exc).__name__}", 0.0)
        else:
            for send in group:
                await self._record_sent(send, progress, report, grouped=len(group))

    async def _post_within(self, channel: Channel, group: list[_Send]) -> None:
        """Post, but never past the group's lease budget: a send still running then is
        cancelled (an email's socket is shut), so no other worker sends it meanwhile."""
        try:
            async with asyncio.timeout_at(min(send.expires for send in group)):
                await self._post(channel, group)
        except TimeoutError:
            raise TransientDeliveryError(
                channel.name, "the send did not finish within its lease"
            ) from None

    @staticmethod
    async def _post(channel: Channel, group: list[_Send]) -> None:
        """One post: the group's articles, each one message for all its rules' alerts."""
        first = group[0]
        messages = [
            merge_rule_messages([group[i].match for i in article])
            for article in by_article([send.article for send in group])
        ]
        if len(messages) > 1 and isinstance(channel, GroupChannel):
            await channel.send_group(messages)
        elif first.recipients and isinstance(channel, EmailChannel):
            await channel.send_to(messages[0], first.recipients)
        else:
            await channel.send(messages[0])

    # -- recording outcomes ---------------------------------------------------------------------

    async def _record_sent(
        self,
        send: _Send,
        progress: Mapping[int, _Progress],
        report: DeliveryReport,
        *,
        grouped: int,
    ) -> None:
        progress[id(send.entry)].unsettled -= 1
        await self._step(
            lambda: self.queue.finish_send(send.match.key, send.unit, self.policy.sent_ttl)
        )
        await self._log_sent([send.match], send.channel, "alert")
        await self._count_sent(send.match)
        report.sent(send.channel)
        if grouped > 1:
            self._log(send).info("alert sent", grouped=grouped)
        else:
            self._log(send).info("alert sent")

    async def _record_retry(
        self, send: _Send, progress: Mapping[int, _Progress], error: str, retry_after: float
    ) -> None:
        await self._step(lambda: self.queue.abandon_send(send.match.key, send.unit))
        state = progress[id(send.entry)]
        state.unsettled -= 1
        state.retry[send.unit] = send.recipients
        state.retry_after = max(state.retry_after, retry_after)
        state.errors.append(error)
        self._log(send).warning("alert not accepted, will retry", error=error)

    async def _record_dead(
        self,
        send: _Send,
        reason: str,
        report: DeliveryReport,
        recipients: Sequence[str] = (),
        progress: Mapping[int, _Progress] | None = None,
    ) -> None:
        if progress is not None:
            progress[id(send.entry)].unsettled -= 1
        unit = delivery_unit(send.channel, recipients) if recipients else send.unit
        attempts = send.entry.attempt + 1
        await self._step(
            lambda: self.queue.dead_letter(
                send.entry,
                unit,
                reason,
                ttl=self.policy.sent_ttl,
                attempts=attempts,
                recipients=recipients or send.recipients,
            )
        )
        throttle_key = self.queue.keys.throttle(
            send.match.rule_id, throttled_as(send.match), send.channel
        )
        await self._step(lambda: self.queue.release_throttle(throttle_key, send.match.key))
        report.count_dead(send.channel)
        self._log(send).error("alert refused, moved to dead letters", error=reason)

    async def _partly_sent(
        self,
        send: _Send,
        exc: RecipientsRefused,
        progress: Mapping[int, _Progress],
        report: DeliveryReport,
    ) -> None:
        """Some recipients have it: mark the unit sent for them, and retry or dead-letter the
        others as their own units, so nobody gets the alert twice."""
        if exc.accepted:
            await self._record_sent(send, progress, report, grouped=1)
        else:
            progress[id(send.entry)].unsettled -= 1
            await self._step(lambda: self.queue.abandon_send(send.match.key, send.unit))
        if exc.transient:
            unit = delivery_unit(send.channel, exc.transient)
            retry = _Send(send.entry, send.match, send.channel, unit, exc.transient)
            state = progress[id(send.entry)]
            state.retry[unit] = exc.transient
            state.errors.append(str(exc))
            self._log(retry).warning("some recipients refused, will retry", error=str(exc))
        if exc.permanent:
            unit = delivery_unit(send.channel, exc.permanent)
            dead = _Send(send.entry, send.match, send.channel, unit, exc.permanent)
            await self._record_dead(dead, str(exc), report, recipients=exc.permanent)

    async def _finish(self, state: _Progress, report: DeliveryReport) -> None:
        """Acknowledge the entry, reschedule its failed units, or leave it pending if another
        worker is sending part of it right now (it is then reclaimed later)."""
        entry = state.entry
        if state.busy or state.unsettled:
            report.failed += 1
            return
        if not state.retry:
            await self._step(lambda: self.queue.acknowledge(entry.entry_id))
            report.delivered += 1
            return
        attempt = entry.attempt + 1
        if gives_up(attempt, self.policy.retry_policy):
            await self._give_up(state, attempt, report)
            return
        delay = backoff_delay(
            attempt, self.policy.retry_policy, jitter=self.jitter(), retry_after=state.retry_after
        )
        due = self.clock() + timedelta(seconds=delay)
        units, recipients = list(state.retry), dict(state.retry)
        await self._step(
            lambda: self.queue.retry_later(
                entry, due, attempt=attempt, only=units, recipients=recipients
            )
        )
        report.count_failed(units)
        log.info(
            "alert rescheduled",
            alert=entry.origin or entry.entry_id,
            attempt=attempt,
            delay=round(delay, 2),
            units=units,
        )

    async def _give_up(self, state: _Progress, attempt: int, report: DeliveryReport) -> None:
        entry = state.entry
        assert entry.match is not None
        last = state.errors[-1] if state.errors else "unknown error"
        reason = f"gave up after {attempt} attempts; last error: {last}"
        for unit, recipients in state.retry.items():
            channel = unit.partition("#")[0]
            send = _Send(entry, entry.match, channel, unit, recipients)
            await self._record_dead(send, reason, report)
        await self._step(lambda: self.queue.acknowledge(entry.entry_id))

    @staticmethod
    def _log(send: _Send) -> Any:
        return log.bind(
            rule=send.match.rule_id,
            item=send.match.item.id,
            alert=send.entry.origin or send.entry.entry_id,
            channel=send.unit,
        )

    # -- Redis outages --------------------------------------------------------------------------

    async def _step(self, step: Step) -> None:
        """Record an outcome in Redis; if Redis is down, keep it to replay on the next pass
        instead of forgetting that a channel already accepted the alert (which would send it
        again once the lease ran out)."""
        if self._backlog:
            self._backlog.append(step)
            return
        try:
            await step()
        except StoreError:
            self._backlog.append(step)

    async def _replay_backlog(self) -> None:
        """Write the outcomes an outage kept from Redis, in order; raises while it is down."""
        while self._backlog:
            await self._backlog[0]()
            self._backlog.pop(0)

    @property
    def has_backlog(self) -> bool:
        return bool(self._backlog)

    async def _count_sent(self, match: Match) -> None:
        """Count an alert sent towards its rule's precision (``feedback``), best effort like
        ``_log_sent``; while an outage's backlog waits it is not counted."""
        if self.feedback is None or self._backlog:
            return
        try:
            await self.feedback.record_sent(match, self.clock())
        except Exception as exc:  # the numbers are for reading later; the send stands
            log.warning("sent alert not counted", rule=match.rule_id, error=str(exc))

    async def _log_sent(self, matches: Sequence[Match], channel: str, via: str) -> None:
        """Add alerts just sent to the sent-alert log, best effort: a write that fails is
        logged and the send still counts as sent.  It is never a ``_step`` that can fail: the
        backlog replays in order and stops at the first failure, so a write the log keeps
        refusing (a key of the wrong type, a full Redis) would hold back every outcome after
        it for ever.  While an outage's backlog waits, the write joins it, after the outcomes
        it follows, and is tried once when Redis is back."""
        sent = self.clock()

        async def write() -> None:
            try:
                await self.history.record(matches, channel, sent, via=via)
            except Exception as exc:  # the log is for reading later; the send stands
                log.warning(
                    "sent alert not logged", channel=channel, alerts=len(matches), error=str(exc)
                )

        if self._backlog:
            self._backlog.append(write)
            return
        await write()

    # -- digests --------------------------------------------------------------------------------

    async def flush_digests(self, on_sent: Callable[[str], None] | None = None) -> int:
        """Send the digest of every channel whose window closed; returns how many were sent
        and calls ``on_sent(channel)`` for each (the metrics count it as an alert sent)."""
        sent = 0
        await self._replay_backlog()
        for name, schedule in self.policy.digests.items():
            if name in self.channels and await self._flush_digest(name, schedule):
                sent += 1
                if on_sent is not None:
                    on_sent(name)
        return sent

    async def _flush_digest(self, name: str, schedule: DigestSchedule) -> bool:
        now = self.clock()
        closes = await self.digests.open_window(name)
        if closes is None:
            last = await self.digests.last_sent(name, now)
            window = digest_due(schedule, last, now)
            if window is None:
                return False
            closes = await self.digests.take(name, window)
        later = await self.digests.not_before(name)
        if later is not None and now < later:
            return False
        matches = parse_matches(await self.digests.batch(name, closes))
        if not matches:
            await self.digests.close(name, closes)
            return False
        matches = await self._translated_digest(matches)
        digest = Digest(name, closes, schedule.timezone, _grouped(matches))
        return await self._send_digest(name, digest, now)

    async def _send_digest(self, name: str, digest: Digest, now: datetime) -> bool:
        channel = self.channels[name]
        bound = log.bind(channel=name, digest=digest.key, alerts=digest.count)
        verdict = await self.queue.begin_send(digest.key, name, self.policy.lease(name))
        if verdict != "go":
            if verdict == "done":
                await self.digests.close(name, digest.closes)
            return False
        try:
            if not isinstance(channel, DigestChannel):
                raise PermanentDeliveryError(name, "this channel cannot send digests")
            await channel.send_digest(digest)
        except TransientDeliveryError as exc:
            await self.queue.abandon_send(digest.key, name)
            await self.digests.postpone(name, now + RETRY_DIGEST)
            bound.warning("digest not accepted, will retry", error=str(exc))
            return False
        except PermanentDeliveryError as exc:
            bound.error("digest refused; its alerts are dropped", error=str(exc))
            await self.queue.finish_send(digest.key, name, self.policy.sent_ttl)
            await self.digests.close(name, digest.closes)
            return False
        await self._step(lambda: self.queue.finish_send(digest.key, name, self.policy.sent_ttl))
        await self._step(lambda: self.digests.close(name, digest.closes))
        await self._log_sent([m for _, ms in digest.groups for m in ms], name, "digest")
        bound.info("digest sent")
        return True


def _grouped(matches: Sequence[Match]) -> tuple[tuple[str, tuple[Match, ...]], ...]:
    return tuple((topic, tuple(ms)) for topic, ms in group_by_topic(matches))
