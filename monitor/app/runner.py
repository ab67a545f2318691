"""One pass of the monitor: poll every feed, deliver what is due, report; and the rules and
feeds those passes use, reloaded on request.

``daemon.Monitor`` runs these passes on a schedule; ``monitor run --once`` runs one.  The
parts come from the composition root (``wiring.daemon_parts``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Self

import structlog

from monitor import __version__
from monitor.app import wiring
from monitor.app.metrics import Metrics
from monitor.app.reload import (
    checked_rules,
    file_signature,
    load_checked_rules,
    restart_sections,
    rules_signature,
)
from monitor.deliver.queue import AlertQueue
from monitor.deliver.worker import DeliveryReport, DeliveryWorker
from monitor.errors import ConfigError, RuleSetError, StoreError
from monitor.ingest.fetch import hard_deadline, stepping_out
from monitor.ingest.poll import poll_once, summarize
from monitor.ingest.schedule import busy_hosts
from monitor.ingest.state import Store
from monitor.model import PollResult, Source
from monitor.rules import RuleSet, load_rules
from monitor.settings import Settings, load_settings
from monitor.stories.cluster import Extractor

log = structlog.get_logger("monitor.app.runner")
HEARTBEAT_TTL = timedelta(minutes=2)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class PassSummary:
    """What ``monitor run --once`` did, for its closing log line and for tests."""

    polls: list[PollResult] = field(default_factory=list)
    delivery: DeliveryReport = field(default_factory=DeliveryReport)
    queue: dict[str, int] = field(default_factory=dict)


class PollSlot:
    """A poll's place among the ``http.max_concurrency`` polls running at once, lent to
    other polls while this one waits for its host's turn (``fetch.stepping_out``): hundreds
    of Google News searches are hundreds of feeds on one host, a second apart, and holding
    places while they wait would leave none for every other site's feeds."""

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self._slots = slots
        self._held = False

    async def __aenter__(self) -> PollSlot:
        await self._slots.acquire()
        self._held = True
        return self

    async def __aexit__(self, *_: object) -> None:
        self._give_back()

    def _give_back(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()

    @contextlib.asynccontextmanager
    async def lent(self) -> AsyncIterator[None]:
        """Give the place back for the block, and take one again after it, unless the block
        failed (the poll is over then).  Cancelled while waiting for a place, the poll holds
        none, and gives none back."""
        self._give_back()
        yield
        await self._slots.acquire()
        self._held = True


class Runner:
    """The built parts driven one pass at a time: ``async with Runner(settings) as r:
    await r.run_once()``.  ``Monitor`` (``daemon``) runs the same passes on a schedule.

    It also owns what a pass reads that can change while running: the rules and feeds,
    swapped by ``reload_rules`` and ``reload_config``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        consumer: str | None = None,
        config_path: Path | None = None,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self._config_signature = file_signature(config_path)
        self.clock = clock
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.sources: tuple[Source, ...] = settings.sources()
        self.rules: RuleSet = checked_rules(load_rules(settings.rule_paths()), settings)
        self._rules_signature = rules_signature(settings.rule_paths())
        self._parts: wiring.DaemonParts | None = None
        self._closing = contextlib.AsyncExitStack()
        self._last_cycle: datetime | None = None
        self.metrics = Metrics()
        self.metrics.rules.set(len(self.rules))
        self._started_at = datetime.now(UTC)
        self._last_alert: datetime | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._parts = await self._closing.enter_async_context(
            wiring.daemon_parts(
                self.settings,
                self.rules,
                consumer=self.consumer,
                clock=self.clock,
                ops_config=lambda: self.settings.ops,
            )
        )
        log.info(
            "monitor started",
            version=__version__,
            feeds=len(self.sources),
            rules=len(self.rules),
            rules_version=self.rules.version,
            entities=len(self.rules.entities),
            channels=sorted(self._parts.channels),
        )
        self._warn_of_busy_hosts()
        return self

    def _warn_of_busy_hosts(self) -> None:
        gap = self.settings.http.host_gap
        feeds = ((source.url, source.interval) for source in self.sources)
        for busy in busy_hosts(feeds, gap):
            log.warning(
                "feeds on one host need more turns than http.host_gap allows; "
                "their polls will fall behind",
                host=busy.host,
                feeds=busy.feeds,
                turns_per_minute_needed=round(busy.needed_per_minute, 1),
                turns_per_minute_allowed=round(busy.allowed_per_minute, 1),
                hint="lengthen these feeds' interval, or lower http.host_gap if the site allows it",
            )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._forget_beat()
        await self._closing.aclose()

    async def _forget_beat(self) -> None:
        """Stopped (a signal, Ctrl-C, ``run --once`` done): no longer listed as up.  Best
        effort within a second; with Redis away the heartbeat expires on its own."""
        if self._parts is None:
            return
        with contextlib.suppress(StoreError, TimeoutError):
            async with asyncio.timeout(1.0):
                await self.store.forget_beat(self.consumer)

    @property
    def parts(self) -> wiring.DaemonParts:
        """What ``wiring.daemon_parts`` built: Redis, stores, channels, worker, parser pool."""
        assert self._parts is not None, "use Monitor as an async context manager"
        return self._parts

    @property
    def store(self) -> Store:
        return self.parts.stores.ingest

    @property
    def queue(self) -> AlertQueue:
        return self.parts.stores.queue

    @property
    def worker(self) -> DeliveryWorker:
        return self.parts.worker

    # -- one pass -----------------------------------------------------------------------------

    async def poll(
        self, source: Source, *, due_only: bool = False, tick: datetime | None = None
    ) -> PollResult:
        """Poll one feed under a hard deadline, so a hung poll can never block its feed
        (its clock stops while the fetch waits for the host's turn)."""
        deadline = source.timeout.total_seconds() + 30
        try:
            async with hard_deadline(deadline):
                result = await poll_once(
                    source, self.rules, self.parts.poll, due_only=due_only, tick=tick
                )
        except TimeoutError:
            log.warning("poll abandoned after deadline", feed=source.name, deadline=deadline)
            result = PollResult(source=source.name, status="error", error="poll deadline passed")
        self.metrics.observe_poll(result)
        return result

    async def poll_all(self) -> list[PollResult]:
        limit = asyncio.Semaphore(self.settings.http.max_concurrency)

        async def bounded(source: Source) -> PollResult:
            async with PollSlot(limit) as slot:
                with stepping_out(slot.lent):
                    return await self.poll(source)

        return list(await asyncio.gather(*(bounded(source) for source in self.sources)))

    async def deliver_due(self) -> DeliveryReport:
        """Deliver everything deliverable now, pass after pass, until a pass reads nothing;
        then send the digests whose window has closed."""
        total = DeliveryReport()
        total.digests = await self.worker.flush_digests(self.metrics.digest_sent)
        while True:
            report = await self.worker.run_once()
            self._observe_delivery(report)
            if report.read == 0:
                return total
            total.merge(report)
            if report.delivered == 0 and report.dead == 0:
                return total  # only retries left; they wait for the retry interval

    async def run_once(self) -> PassSummary:
        """``monitor run --once``: poll every feed, deliver what is due, report."""
        summary = PassSummary()
        summary.polls = await self.poll_all()
        summary.delivery = await self.deliver_due()
        # The daemon's operational checks, once: a cron-driven setup hears of dead letters
        # too (the check queues its alert; the second delivery sends it).
        await self.parts.ops.tick()
        summary.delivery.merge(await self.deliver_due())
        summary.queue = await self.queue.stream_counts()
        self._last_cycle = self.clock()
        await self.store.beat(self.consumer, self.heartbeat_fields(), HEARTBEAT_TTL)
        counts = summarize(summary.polls)
        log.info(
            "pass complete",
            **counts,
            alerts_delivered=summary.delivery.delivered,
            alerts_retrying=summary.delivery.failed,
            alerts_dead=summary.delivery.dead,
            queue=summary.queue,
        )
        for failed in (r for r in summary.polls if r.status == "error"):
            log.warning("feed failed this pass", feed=failed.source, error=failed.error)
        return summary

    def _observe_delivery(self, report: DeliveryReport) -> None:
        self.metrics.observe_delivery(report)
        if report.channels:
            self._last_alert = self.clock()

    def heartbeat_fields(self) -> dict[str, str]:
        """What this daemon tells ``monitor status`` and ``/readyz`` about itself."""
        return {
            "version": __version__,
            "started_at": self._started_at.isoformat(),
            "last_cycle": self._last_cycle.isoformat() if self._last_cycle else "",
            "last_alert": self._last_alert.isoformat() if self._last_alert else "",
            "rules": str(len(self.rules)),
            "rules_version": self.rules.version,
        }

    # -- reload -------------------------------------------------------------------------------

    async def reload_rules(self, reason: str) -> bool:
        """Swap in the rule files as they are now; a broken edit keeps the running set."""
        self._rules_signature = rules_signature(self.settings.rule_paths())
        try:
            rules = await load_checked_rules(self.settings)
        except RuleSetError as exc:
            for problem in exc.problems:
                log.error("rule reload refused", reason=reason, problem=str(problem))
            log.error(
                "keeping the running rules",
                rules=len(self.rules),
                rules_version=self.rules.version,
                entities=len(self.rules.entities),
            )
            self.metrics.rule_reloads.labels(result="refused").inc()
            return False
        self.rules = rules
        self._use_entities(rules)
        pool = self._parts.pool if self._parts is not None else None
        if pool is not None:
            await pool.use_rules(rules)
        self.metrics.rule_reloads.labels(result="ok").inc()
        self.metrics.rules.set(len(rules))
        log.info(
            "rules reloaded",
            reason=reason,
            rules=len(rules),
            rules_version=rules.version,
            entities=len(rules.entities),
        )
        return True

    def _use_entities(self, rules: RuleSet) -> None:
        """Stories find entities with the entity list loaded with ``rules`` from now on (items
        already in stories keep the entity ids they were stored with)."""
        stories = self._parts.poll.stories if self._parts is not None else None
        if stories is not None:
            stories.extractor = Extractor(rules.lexicon)

    async def reload_config(self, reason: str) -> bool:
        """Apply the config file as it is now: feeds added, removed or changed are rescheduled
        at once; rules are reloaded; a config that fails validation changes nothing.

        Settings that need new connections (Redis, channels, the health port) are reported as
        needing a restart rather than half-applied.
        """
        self._config_signature = file_signature(self.config_path)
        if self.config_path is None:
            return await self.reload_rules(reason)
        try:
            fresh = load_settings(self.config_path)
        except ConfigError as exc:
            log.error("config reload refused; keeping the running config", error=str(exc))
            return False
        needs_restart = restart_sections(self.settings, fresh)
        if needs_restart:
            log.warning("config changes that need a restart", sections=needs_restart)
        self.settings = fresh
        if self._parts is not None:
            self._parts.worker.ops_channels = fresh.ops.channels
        self._apply_sources(fresh.sources())
        return await self.reload_rules(reason)

    def _apply_sources(self, sources: tuple[Source, ...]) -> None:
        """Poll these feeds from now on (the daemon also reschedules them)."""
        self.sources = sources
