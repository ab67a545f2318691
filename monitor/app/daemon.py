"""The composition root: builds every part once from the settings, then runs the daemon.

Everything that sleeps, schedules, handles signals or owns a connection lives here; the
stages themselves (``poll``) are driven one pass at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import redis.asyncio as aioredis
import structlog
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from monitor import __version__
from monitor.app.embedded_redis import EmbeddedRedis
from monitor.app.metrics import Metrics
from monitor.deliver import build as delivery
from monitor.deliver.channels import Channel
from monitor.deliver.ops_alerts import CHECK_EVERY as OPS_CHECK_EVERY
from monitor.deliver.ops_alerts import OpsWatch
from monitor.deliver.queue import AlertQueue
from monitor.deliver.worker import DeliveryReport, DeliveryWorker
from monitor.errors import ConfigError, MonitorError, RuleSetError, StoreError
from monitor.ingest.fetch import Fetcher, hard_deadline, stepping_out
from monitor.ingest.poll import (
    PollContext,
    poll_once,
    prepare_in_process,
    summarize,
)
from monitor.ingest.pool.parsers import ParserPool, worker_count
from monitor.ingest.schedule import busy_hosts
from monitor.ingest.state import Store
from monitor.model import PollResult, Source
from monitor.redisio import Keys
from monitor.rules import RuleSet, find_rule_files, load_rules, stories_problems
from monitor.settings import Settings, load_settings
from monitor.stories import source_metas
from monitor.stories.store import StoryStore
from monitor.stories.story import FollowUpPolicy
from monitor.stories.volume import VolumeStore

log = structlog.get_logger("monitor.app.daemon")
SHUTDOWN_GRACE = 20.0
RULES_CHECK_EVERY = 5.0
HEARTBEAT_EVERY = 15.0
LEASE_FACTOR = 1.25
"""A feed's poll lease lasts this many intervals: longer than one, so the holder's next
(jittered) tick renews it before another replica can take it."""
HEARTBEAT_TTL = timedelta(minutes=2)
DIGEST_CHECK_EVERY = 15.0


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class PassSummary:
    """What ``monitor run --once`` did, for its closing log line and for tests."""

    polls: list[PollResult] = field(default_factory=list)
    delivery: DeliveryReport = field(default_factory=DeliveryReport)
    queue: dict[str, int] = field(default_factory=dict)


def build_channels(settings: Settings, session: aiohttp.ClientSession) -> dict[str, Channel]:
    """One channel object per active channel in the config.

    Channels refuse unsafe combinations themselves (a password over plain SMTP to a remote
    host, say); that is a config problem, so it is raised as one.
    """
    try:
        return _channels(settings, session)
    except ValueError as exc:
        raise MonitorError(f"channels: {exc}", hint="fix the channel settings") from None


def _channels(settings: Settings, session: aiohttp.ClientSession) -> dict[str, Channel]:
    return delivery.build_channels(settings, session)


def rules_signature(paths: tuple[Path, ...]) -> tuple[tuple[str, int, int], ...]:
    """Cheap change detector for rule files: names, sizes and modification times."""
    signature = []
    for path in find_rule_files(paths):
        with contextlib.suppress(OSError):
            stat = path.stat()
            signature.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(signature)


def _parser_pool(workers: int, rules: RuleSet) -> ParserPool | None:
    """Worker processes for parsing and matching; none on a one-core machine or when
    switched off."""
    count = worker_count(workers)
    return ParserPool(count, rules) if count > 1 else None


def _file_signature(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_size, stat.st_mtime_ns)


def checked_rules(rules: RuleSet, settings: Settings) -> RuleSet:
    """The rule set, refused (``RuleSetError``) when a rule needs stories and the config has
    them off: at start the daemon stops with the rule's file and line, on a reload it keeps
    the running rules."""
    problems = [] if settings.stories.enabled else stories_problems(rules)
    if problems:
        raise RuleSetError(problems)
    return rules


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


class Monitor:
    """The daemon: use as ``async with Monitor(settings) as m: await m.run_forever()``."""

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
        self._config_signature = _file_signature(config_path)
        self._scheduler: AsyncIOScheduler | None = None
        self.clock = clock
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.sources: tuple[Source, ...] = settings.sources()
        self.rules: RuleSet = checked_rules(load_rules(settings.rule_paths()), settings)
        self._rules_signature = rules_signature(settings.rule_paths())
        self._embedded: EmbeddedRedis | None = None
        self._redis: aioredis.Redis | None = None
        self._session: aiohttp.ClientSession | None = None
        self._delivery_session: aiohttp.ClientSession | None = None
        self._channels: dict[str, Channel] = {}
        self._store: Store | None = None
        self._pool: ParserPool | None = None
        self._queue: AlertQueue | None = None
        self._worker: DeliveryWorker | None = None
        self._ops: OpsWatch | None = None
        self._poll_context: PollContext | None = None
        self._stopping = asyncio.Event()
        self._started = time.monotonic()
        self._last_cycle: datetime | None = None
        self._redis_down_since: float | None = None
        self.metrics = Metrics()
        self.metrics.rules.set(len(self.rules))
        self._started_at = datetime.now(UTC)
        self._last_alert: datetime | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._poll_slots = asyncio.Semaphore(settings.http.max_concurrency)

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Monitor:
        url = self.settings.redis.url
        if url == "embedded":
            self._embedded = EmbeddedRedis(
                self.settings.resolve_path(self.settings.redis.data_dir),
                binary=self.settings.redis.binary,
            )
            await asyncio.to_thread(self._embedded.start)
            url = self._embedded.url
            log.info("embedded redis started", port=self._embedded.port)
        self._redis = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=3),
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        keys = Keys(self.settings.redis.key_prefix)
        self._store = Store(
            self._redis,
            keys,
            seen_ttl=self.settings.dedup.ttl,
            history_retention=self.settings.history.retention,
        )
        self._queue = AlertQueue(
            self._redis,
            keys,
            keep_dead=self.settings.delivery.keep_dead,
            keep_log=self.settings.delivery.keep_log,
        )
        await self._queue.ensure_group()
        limit = self.settings.http.max_concurrency
        # The fetches' own pool.  ``HostGate`` keeps to ``http.per_host`` before a request
        # starts (so that the wait is not timed); the connector's equal limit is a backstop.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, limit_per_host=self.settings.http.per_host),
            auto_decompress=True,
        )
        # Alerts have connections of their own: a burst of slow feeds may hold every
        # connection the fetches may use, and an alert must not wait (or time out) behind it.
        self._delivery_session = aiohttp.ClientSession()
        self._channels = build_channels(self.settings, self._delivery_session)
        self._worker = delivery.build_worker(
            self.settings, self._queue, self._channels, consumer=self.consumer, clock=self.clock
        )
        self._worker.ops_channels = self.settings.ops.channels
        self._ops = OpsWatch(
            self._queue,
            self._channels,
            self._worker.policy.route_list,
            replica=self.consumer,
            config=lambda: self.settings.ops,
            secrets=self.settings.secrets(),
            clock=self.clock,
        )
        self._pool = _parser_pool(self.settings.ingest.workers, self.rules)
        if self._pool is not None:
            self._pool.start()
        self._poll_context = PollContext(
            fetcher=Fetcher(
                self._session,
                user_agent=self.settings.http.user_agent,
                host_gap=self.settings.http.host_gap.total_seconds(),
                per_host=self.settings.http.per_host,
            ),
            store=self._store,
            clock=self.clock,
            backfill=self.settings.ingest.backfill,
            health_alert_after=self.settings.ingest.health_alert_after,
            prepare=self._pool.prepare if self._pool is not None else prepare_in_process,
            stories=self._story_store(keys),
            follow_ups=FollowUpPolicy(corroboration=self.settings.stories.corroboration),
            volume=VolumeStore(self._store.client, keys),
        )
        log.info(
            "monitor started",
            version=__version__,
            feeds=len(self.sources),
            rules=len(self.rules),
            rules_version=self.rules.version,
            channels=sorted(self._channels),
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
        for channel in self._channels.values():
            with contextlib.suppress(Exception):
                await channel.close()
        for session in (self._session, self._delivery_session):
            if session is not None:
                await session.close()
        if self._pool is not None:
            self._pool.close()
        if self._redis is not None:
            await self._redis.aclose()
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop)
            log.info("embedded redis stopped")

    def _story_store(self, keys: Keys) -> StoryStore | None:
        """Stories for matched items (``stories.enabled``), sharing the daemon's Redis."""
        config = self.settings.stories
        if not config.enabled:
            return None
        assert self._redis is not None
        return StoryStore(
            self._redis,
            keys,
            window=config.window,
            retention=config.retention,
            sources=source_metas(config),
        )

    @property
    def store(self) -> Store:
        assert self._store is not None, "use Monitor as an async context manager"
        return self._store

    @property
    def queue(self) -> AlertQueue:
        assert self._queue is not None, "use Monitor as an async context manager"
        return self._queue

    @property
    def worker(self) -> DeliveryWorker:
        assert self._worker is not None, "use Monitor as an async context manager"
        return self._worker

    # -- one pass -----------------------------------------------------------------------------

    async def poll(
        self, source: Source, *, due_only: bool = False, tick: datetime | None = None
    ) -> PollResult:
        """Poll one feed under a hard deadline, so a hung poll can never block its feed
        (its clock stops while the fetch waits for the host's turn)."""
        assert self._poll_context is not None
        deadline = source.timeout.total_seconds() + 30
        try:
            async with hard_deadline(deadline):
                result = await poll_once(
                    source, self.rules, self._poll_context, due_only=due_only, tick=tick
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
        total.digests = await self.worker.flush_digests()
        while True:
            report = await self.worker.run_once()
            self._observe_delivery(report)
            if report.read == 0:
                return total
            total.read += report.read
            total.delivered += report.delivered
            total.failed += report.failed
            total.dead += report.dead
            total.throttled += report.throttled
            total.silenced += report.silenced
            total.digested += report.digested
            for name, count in report.channels.items():
                total.channels[name] = total.channels.get(name, 0) + count
            if report.delivered == 0 and report.dead == 0:
                return total  # only retries left; they wait for the retry interval

    async def run_once(self) -> PassSummary:
        """``monitor run --once``: poll every feed, deliver what is due, report."""
        summary = PassSummary()
        summary.polls = await self.poll_all()
        summary.delivery = await self.deliver_due()
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

    # -- the daemon ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        if self._stopping.is_set():
            log.warning("second stop signal: exiting at once")
            if self._embedded is not None:
                self._embedded.stop(timeout=2)
            os._exit(1)
        log.info("stopping: finishing in-flight polls and deliveries")
        self._stopping.set()

    async def reload_rules(self, reason: str) -> bool:
        """Swap in the rule files as they are now; a broken edit keeps the running set.

        Loading runs in a thread: compiling 10,000 rules takes seconds, and polls, deliveries
        and health checks must not wait for it.
        """
        paths = self.settings.rule_paths()
        self._rules_signature = rules_signature(paths)
        try:
            rules = checked_rules(await asyncio.to_thread(load_rules, paths), self.settings)
        except RuleSetError as exc:
            for problem in exc.problems:
                log.error("rule reload refused", reason=reason, problem=str(problem))
            log.error(
                "keeping the running rules",
                rules=len(self.rules),
                rules_version=self.rules.version,
            )
            self.metrics.rule_reloads.labels(result="refused").inc()
            return False
        self.rules = rules
        if self._pool is not None:
            await self._pool.use_rules(rules)
        self.metrics.rule_reloads.labels(result="ok").inc()
        self.metrics.rules.set(len(rules))
        log.info("rules reloaded", reason=reason, rules=len(rules), rules_version=rules.version)
        return True

    async def reload_config(self, reason: str) -> bool:
        """Apply the config file as it is now: feeds added, removed or changed are rescheduled
        at once; rules are reloaded; a config that fails validation changes nothing.

        Settings that need new connections (Redis, channels, the health port) are reported as
        needing a restart rather than half-applied.
        """
        self._config_signature = _file_signature(self.config_path)
        if self.config_path is None:
            return await self.reload_rules(reason)
        try:
            fresh = load_settings(self.config_path)
        except ConfigError as exc:
            log.error("config reload refused; keeping the running config", error=str(exc))
            return False
        needs_restart = [
            name
            for name in ("redis", "channels", "routes", "health", "http", "log")
            if getattr(fresh, name) != getattr(self.settings, name)
        ]
        if needs_restart:
            log.warning("config changes that need a restart", sections=needs_restart)
        self.settings = fresh
        if self._worker is not None:
            self._worker.ops_channels = fresh.ops.channels
        self._apply_sources(fresh.sources())
        return await self.reload_rules(reason)

    def _apply_sources(self, sources: tuple[Source, ...]) -> None:
        old = {source.name: source for source in self.sources}
        new = {source.name: source for source in sources}
        self.sources = sources
        if self._scheduler is None:
            return
        for name in old.keys() - new.keys():
            self._scheduler.remove_job(f"poll:{name}")
            log.info("feed removed", feed=name)
        for name, source in new.items():
            if old.get(name) == source:
                continue
            if name in old:
                self._scheduler.remove_job(f"poll:{name}")
            self._schedule(self._scheduler, source)
            log.info("feed changed" if name in old else "feed added", feed=name)

    def _reload_on_signal(self) -> None:
        task = asyncio.create_task(self.reload_config("SIGHUP"), name="reload")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def run_forever(self) -> None:
        """Poll on schedule and deliver continuously until SIGTERM/SIGINT."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        scheduler = AsyncIOScheduler(timezone="UTC")
        self._scheduler = scheduler
        for source in self.sources:
            self._schedule(scheduler, source)
        if self.settings.channels.digests():
            scheduler.add_job(
                self._digest_job,
                "interval",
                seconds=DIGEST_CHECK_EVERY,
                id="digests",
                max_instances=1,
                coalesce=True,
            )
        scheduler.start()
        runner = await self._start_health_server()
        background = [
            asyncio.create_task(self._delivery_loop(), name="delivery"),
            asyncio.create_task(self._watch_rules(), name="rules-watch"),
            asyncio.create_task(self._supervise_redis(), name="redis-supervisor"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._ops_loop(), name="ops"),
        ]
        try:
            await self._stopping.wait()
        finally:
            scheduler.shutdown(wait=False)
            await self._drain(background)
            if runner is not None:
                await runner.cleanup()
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
        log.info("monitor stopped")

    def _schedule(self, scheduler: AsyncIOScheduler, source: Source) -> None:
        seconds = source.interval.total_seconds()
        first = datetime.now(UTC) + timedelta(seconds=random.uniform(0, min(5.0, seconds / 10)))
        scheduler.add_job(
            self._poll_job,
            "interval",
            seconds=seconds,
            jitter=max(1, int(seconds * 0.1)),
            args=[source],
            id=f"poll:{source.name}",
            name=f"poll {source.name}",  # what APScheduler's own log lines call it
            next_run_time=first,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=int(seconds),
        )

    async def _poll_job(self, source: Source) -> None:
        if self._stopping.is_set():
            return
        tick = self.clock()  # before any queueing: the next poll is planned from here
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            # Ticks of thousands of feeds can fall due together (every feed's first one does):
            # at most max_concurrency polls at once, or they would exhaust the Redis pool.
            # A poll waiting for its host's turn lends its slot meanwhile (``PollSlot``).
            async with PollSlot(self._poll_slots) as slot:
                if self._stopping.is_set():
                    return
                lease = source.interval * LEASE_FACTOR
                if not await self.store.take_lease(source.name, self.consumer, lease):
                    return  # another replica polls this feed this interval
                with stepping_out(slot.lent):
                    await self.poll(source, due_only=True, tick=tick)
            self._redis_recovered()
            self._last_cycle = self.clock()
        except StoreError as exc:
            self._redis_failed(exc)
        except Exception:
            log.exception("poll crashed", feed=source.name)
        except asyncio.CancelledError:
            if not self._stopping.is_set():
                raise
            # Cancelled by the shutdown, past its grace period (``_drain`` logs that once):
            # ending quietly spares the log a traceback from APScheduler for every such poll.
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _digest_job(self) -> None:
        """Send each digest whose window closed (windows follow each channel's cron)."""
        if self._stopping.is_set():
            return
        try:
            await self.worker.flush_digests()
        except StoreError as exc:
            self._redis_failed(exc)
        except Exception:
            log.exception("digest job crashed; retrying at the next check")

    async def _delivery_loop(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            try:
                self._observe_delivery(await self.worker.run_once(block_ms=1000))
                self._redis_recovered()
                backoff = 1.0
            except StoreError as exc:
                self._redis_failed(exc)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            except Exception:
                log.exception("delivery pass crashed; retrying")
                await self._sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _watch_rules(self) -> None:
        """Pick up edits to the config file and the rule files within seconds."""
        while not self._stopping.is_set():
            await self._sleep(RULES_CHECK_EVERY)
            if _file_signature(self.config_path) != self._config_signature:
                await self.reload_config("config file changed")
            elif rules_signature(self.settings.rule_paths()) != self._rules_signature:
                await self.reload_rules("rule files changed")

    async def _supervise_redis(self) -> None:
        while not self._stopping.is_set() and self._embedded is not None:
            await self._sleep(1.0)
            try:
                if await asyncio.to_thread(self._embedded.restart_if_dead):
                    log.warning("embedded redis had stopped and was restarted")
            except MonitorError as exc:
                log.error("embedded redis cannot be restarted", error=str(exc))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _drain(self, background: list[asyncio.Task[Any]]) -> None:
        """Let in-flight polls and the current delivery pass finish within the grace period."""
        pending = [*background, *self._inflight]
        _done, still = await asyncio.wait(pending, timeout=SHUTDOWN_GRACE)
        with contextlib.suppress(StoreError):
            await self.store.release_leases([s.name for s in self.sources], self.consumer)
        for task in still:
            task.cancel()
        if still:
            log.warning("cancelled work still running after the grace period", tasks=len(still))
            await asyncio.wait(still, timeout=2)

    def _redis_failed(self, exc: StoreError) -> None:
        if self._redis_down_since is None:
            self._redis_down_since = time.monotonic()
            log.error("redis unavailable; retrying with backoff", error=str(exc))

    async def _ops_loop(self) -> None:
        """Operational alerts: dead letters piling up, Redis unreachable (``ops_alerts``)."""
        while not self._stopping.is_set() and self._ops is not None:
            try:
                await self._ops.tick()
            except Exception:
                log.exception("ops check crashed; checking again shortly")
            await self._sleep(OPS_CHECK_EVERY)

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

    async def _heartbeat_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.store.beat(self.consumer, self.heartbeat_fields(), HEARTBEAT_TTL)
            except StoreError as exc:
                self._redis_failed(exc)
            await self._sleep(HEARTBEAT_EVERY)

    def _redis_recovered(self) -> None:
        if self._redis_down_since is not None:
            down = time.monotonic() - self._redis_down_since
            self._redis_down_since = None
            self.metrics.redis_reconnects.inc()
            log.info("redis reachable again", outage_seconds=round(down, 1))

    # -- health -------------------------------------------------------------------------------

    async def _start_health_server(self) -> web.AppRunner | None:
        health = self.settings.health
        if health.port == 0:
            return None
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, health.host, health.port).start()
        except OSError as exc:
            log.error("health endpoint not started", port=health.port, error=str(exc))
            await runner.cleanup()
            return None
        log.info("health endpoint listening", host=health.host, port=health.port)
        return runner

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "version": __version__,
                "uptime_seconds": round(time.monotonic() - self._started, 1),
                "last_cycle": self._last_cycle.isoformat() if self._last_cycle else None,
            }
        )

    async def _readyz(self, _request: web.Request) -> web.Response:
        """Ready when Redis takes a write: a full Redis or a read-only replica answers PING
        but stops polling and delivery all the same."""
        try:
            await self.queue.probe()
        except StoreError as exc:
            return web.json_response({"status": "unready", "reason": str(exc)}, status=503)
        return web.json_response({"status": "ready", **self.heartbeat_fields()})

    async def _metrics(self, _request: web.Request) -> web.Response:
        """Prometheus text format; queue gauges are read fresh from Redis on each scrape."""
        with contextlib.suppress(StoreError):
            self.metrics.observe_queue(await self.queue.stream_counts())
            self.metrics.observe_lag(*await self.queue.lag())
        return web.Response(body=self.metrics.render(), content_type="text/plain", charset="utf-8")
