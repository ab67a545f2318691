"""The daemon: the monitor's passes on a schedule, deliveries continuously, reloads on
change, Redis supervised, and a clean stop on SIGTERM/SIGINT (SIGHUP reloads).

Everything that sleeps, schedules or handles signals lives here.  The parts come from the
composition root (``wiring``), one pass from ``runner``, the probes from ``health`` and the
reload decisions from ``reload``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor.app.health import HealthServer
from monitor.app.reload import file_signature, rules_signature, source_changes
from monitor.app.runner import HEARTBEAT_TTL, PassSummary, PollSlot, Runner, utcnow
from monitor.deliver.ops_alerts import CHECK_EVERY as OPS_CHECK_EVERY
from monitor.errors import MonitorError, StoreError
from monitor.ingest.fetch import stepping_out
from monitor.model import Source
from monitor.settings import Settings

__all__ = ["Monitor", "PassSummary", "PollSlot", "rules_signature", "utcnow"]

log = structlog.get_logger("monitor.app.daemon")
SHUTDOWN_GRACE = 20.0
RULES_CHECK_EVERY = 5.0
HEARTBEAT_EVERY = 15.0
LEASE_FACTOR = 1.25
"""A feed's poll lease lasts this many intervals: longer than one, so the holder's next
(jittered) tick renews it before another replica can take it."""
DIGEST_CHECK_EVERY = 15.0


class Monitor(Runner):
    """The daemon: use as ``async with Monitor(settings) as m: await m.run_forever()``."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        consumer: str | None = None,
        config_path: Path | None = None,
    ) -> None:
        super().__init__(settings, clock=clock, consumer=consumer, config_path=config_path)
        self._scheduler: AsyncIOScheduler | None = None
        self._stopping = asyncio.Event()
        self._started = time.monotonic()
        self._redis_down_since: float | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._poll_slots = asyncio.Semaphore(settings.http.max_concurrency)

    # -- signals and reload --------------------------------------------------------------------

    def request_stop(self) -> None:
        if self._stopping.is_set():
            log.warning("second stop signal: exiting at once")
            server = self._parts.redis.server if self._parts is not None else None
            if server is not None:
                server.stop(timeout=2)
            os._exit(1)
        log.info("stopping: finishing in-flight polls and deliveries")
        self._stopping.set()

    def _apply_sources(self, sources: tuple[Source, ...]) -> None:
        """Poll these feeds from now on: added, removed or changed feeds are rescheduled at
        once; unchanged ones keep their schedule."""
        changes = source_changes(self.sources, sources)
        self.sources = sources
        scheduler = self._scheduler
        if scheduler is None:
            return
        for name in changes.removed:
            scheduler.remove_job(f"poll:{name}")
            log.info("feed removed", feed=name)
        for source in changes.changed:
            scheduler.remove_job(f"poll:{source.name}")
            self._schedule(scheduler, source)
            log.info("feed changed", feed=source.name)
        for source in changes.added:
            self._schedule(scheduler, source)
            log.info("feed added", feed=source.name)

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
        health = HealthServer(
            self.settings.health,
            queue=self.queue,
            metrics=self.metrics,
            heartbeat=self.heartbeat_fields,
            last_cycle=lambda: self._last_cycle,
            started=self._started,
        )
        await health.start()
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
            await health.stop()
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
            if file_signature(self.config_path) != self._config_signature:
                await self.reload_config("config file changed")
            elif rules_signature(self.settings.rule_paths()) != self._rules_signature:
                await self.reload_rules("rule files changed")

    async def _supervise_redis(self) -> None:
        server = self.parts.redis.server
        while not self._stopping.is_set() and server is not None:
            await self._sleep(1.0)
            try:
                if await asyncio.to_thread(server.restart_if_dead):
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
        while not self._stopping.is_set():
            try:
                await self.parts.ops.tick()
            except Exception:
                log.exception("ops check crashed; checking again shortly")
            await self._sleep(OPS_CHECK_EVERY)

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
