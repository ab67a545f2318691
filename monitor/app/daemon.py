"""The daemon: the monitor's passes on a schedule, deliveries continuously, reloads on
change, Redis supervised, and a clean stop on SIGTERM/SIGINT (SIGHUP reloads).

Everything that sleeps, schedules or handles signals lives here.  The parts come from the
composition root (``wiring``), one pass from ``runner``, the probes from ``health`` and the
reload decisions from ``reload``.

Stopping has a hard bound, ``shutdown.grace`` after the signal: in-flight polls and
deliveries get most of it (``stop_budget``), the parts are closed in the rest, parser
processes are terminated, and threads that cannot be interrupted (a file read hung in
``open``, an SMTP send waiting on a silent server) are left behind with ``os._exit`` once the
logs are flushed.  A watchdog thread ends the process at the grace deadline whatever the event
loop is doing.  Nothing acknowledged is lost: an alert is acknowledged only once sent, so an
unsent one stays in the Redis stream for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NoReturn, Self
from urllib.parse import urlsplit

import aiohttp
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor.app.health_server import HealthServer
from monitor.app.reload import file_signature, rules_signature, source_changes
from monitor.app.runner import HEARTBEAT_TTL, PassSummary, PollSlot, Runner, utcnow
from monitor.app.wiring import console_server
from monitor.deliver.ops_alerts import CHECK_EVERY as OPS_CHECK_EVERY
from monitor.errors import MonitorError, StoreError
from monitor.ingest.fetch import stepping_out
from monitor.model import Source
from monitor.settings import Settings

__all__ = ["Monitor", "PassSummary", "PollSlot", "rules_signature", "utcnow"]

log = structlog.get_logger("monitor.app.daemon")
CLOSE_RESERVE = 5.0
"""Most of the grace period that closing the parts (Redis, channels, parsers) may take."""
THREAD_JOIN = 0.5
"""How long, after closing, threads get to finish before the process leaves them behind."""
PING_TIMEOUT = 5.0
"""The dead-man ping's whole exchange; well under ``HEARTBEAT_EVERY``."""
RULES_CHECK_EVERY = 5.0
HEARTBEAT_EVERY = 15.0
LEASE_FACTOR = 1.25
"""A feed's poll lease lasts this many intervals: longer than one, so the holder's next
(jittered) tick renews it before another replica can take it."""
DIGEST_CHECK_EVERY = 15.0


def stop_budget(grace: float) -> tuple[float, float]:
    """Pure: split ``grace`` seconds into (draining in-flight work, closing the parts).

    Closing gets a third of the grace, at most ``CLOSE_RESERVE``; draining the rest, so a
    longer grace period is spent letting polls and sends finish, not waiting on a close."""
    reserve = min(CLOSE_RESERVE, grace / 3)
    return grace - reserve, reserve


def _flush_logs() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


class ExitWatchdog:
    """A daemon thread that ends the process ``grace`` seconds after ``arm`` unless the
    process has ended first: the bound on SIGTERM holds even when the event loop itself is
    stuck (a blocking call on it, a close that never returns).

    ``arm`` only sets an event, so it is safe to call from a signal handler."""

    def __init__(self, last_resort: Callable[[str, int], None]) -> None:
        self._last_resort = last_resort
        self._wake = threading.Event()
        self._deadline: float | None = None
        self._thread = threading.Thread(target=self._run, name="exit-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def arm(self, grace: float) -> None:
        self._deadline = time.monotonic() + grace
        self._wake.set()

    def close(self) -> None:
        """Let the thread end without acting (the daemon stopped without a signal)."""
        self._wake.set()

    def _run(self) -> None:
        self._wake.wait()
        if self._deadline is None:
            return
        time.sleep(max(0.0, self._deadline - time.monotonic()))
        self._last_resort("shutdown grace period over; exiting now", 1)


class DeadManPing:
    """The dead-man switch (``ops.heartbeat_url``): a GET on every healthy heartbeat, so an
    outside service (healthchecks.io, a watchdog route) alerts when the pings stop: when the
    daemon is down, wedged or cut off, which it cannot report itself.

    A ping never blocks anything: it runs as its own task with a short total timeout, and a
    new one is skipped while the last still waits.  A failing ping is logged once per outage
    (and its end once), never with the URL, which is the secret."""

    def __init__(self, timeout: float = PING_TIMEOUT) -> None:
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[bool] | None = None
        self._failing = False

    def ping(self, url: str) -> asyncio.Task[bool] | None:
        """Start a ping of ``url``; None when the previous one is still under way."""
        if self._task is not None and not self._task.done():
            return None
        self._task = asyncio.create_task(self._get(url), name="dead-man-ping")
        return self._task

    async def _get(self, url: str) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
        problem = ""
        try:
            async with self._session.get(url) as response:
                await response.read()
                if response.status >= 400:
                    problem = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            problem = type(exc).__name__
        self._record(urlsplit(url).hostname or "", problem)
        return not problem

    def _record(self, host: str, problem: str) -> None:
        if problem and not self._failing:
            log.warning(
                "dead-man ping failed; logged once until it succeeds again",
                host=host,
                error=problem,
                hint="check ops.heartbeat_url and that this host can reach it",
            )
        elif not problem and self._failing:
            log.info("dead-man ping succeeds again", host=host)
        self._failing = bool(problem)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()


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
        self._stop_deadline: float | None = None
        self._signalled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchdog = ExitWatchdog(self._exit_now)
        self._dead_man = DeadManPing()
        # The loop's default executor, ours so that the shutdown can tell threads still
        # blocked in it from idle ones (``_leave_blocked_threads``).
        self._threads = ThreadPoolExecutor(thread_name_prefix="monitor-io")

    async def __aenter__(self) -> Self:
        asyncio.get_running_loop().set_default_executor(self._threads)
        await super().__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the parts; after a stop signal, within what is left of the grace period,
        and then end the process even if threads are still blocked."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(min(1.0, self._time_left()), 0.1)):
                await self._dead_man.close()
        if not self._signalled:
            await super().__aexit__(exc_type, exc, traceback)
            return
        try:
            async with asyncio.timeout(max(self._time_left(), 0.1)):
                await super().__aexit__(exc_type, exc, traceback)
        except TimeoutError:
            log.warning("closing took the rest of the grace period; some parts left open")
        self._leave_blocked_threads()

    # -- signals, stopping and reload ----------------------------------------------------------

    @property
    def grace(self) -> float:
        return self.settings.shutdown.grace.total_seconds()

    def _time_left(self) -> float:
        if self._stop_deadline is None:
            return self.grace
        return self._stop_deadline - time.monotonic()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        """SIGTERM/SIGINT, as a real signal handler rather than an event-loop callback, so it
        runs even while something blocks the loop: it arms the watchdog and asks the loop to
        stop."""
        if self._signalled:
            self._exit_now("second stop signal: exiting at once", 1)
        self._signalled = True
        self._watchdog.arm(self.grace)
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self.request_stop)

    def request_stop(self) -> None:
        if self._stopping.is_set():
            self._exit_now("second stop signal: exiting at once", 1)
        self._stop_deadline = time.monotonic() + self.grace
        log.info(
            "stopping: finishing in-flight polls and deliveries",
            grace_seconds=round(self.grace, 1),
        )
        self._stopping.set()

    def _exit_now(self, reason: str, code: int) -> NoReturn:
        """End the process at once: parser processes terminated, the embedded Redis stopped
        (it saves its append-only file), logs flushed.  Unsent alerts stay unacknowledged in
        the stream, for the next start."""
        with contextlib.suppress(Exception):
            log.warning(reason)
        parts = self._parts
        if parts is not None:
            with contextlib.suppress(Exception):
                for pid in parts.pool.pids() if parts.pool is not None else []:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            if parts.redis.server is not None:
                with contextlib.suppress(Exception):
                    parts.redis.server.stop(timeout=2)
        _flush_logs()
        os._exit(code)

    def _leave_blocked_threads(self) -> None:
        """After the orderly part: threads that cannot be interrupted (a read hung in
        ``open``, a send waiting on a silent server) would keep the interpreter from exiting,
        since executor threads are joined at exit; give them a moment, then leave them."""
        self._threads.shutdown(wait=False, cancel_futures=True)
        until = time.monotonic() + min(THREAD_JOIN, max(self._time_left(), 0.0))
        current = threading.current_thread()
        blocked = []
        for thread in threading.enumerate():
            if thread is current or thread.daemon:
                continue
            thread.join(max(0.0, until - time.monotonic()))
            if thread.is_alive():
                blocked.append(thread.name)
        if blocked:
            log.warning("monitor stopped; leaving threads that are still blocked", threads=blocked)
            _flush_logs()
            os._exit(0)

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
        self._loop = loop
        self._watchdog.start()
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
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
        console = console_server(
            lambda: self.settings,
            self.parts.stores,
            lambda: self.sources,
            self.clock,
            rules=lambda: self.rules,
        )
        if console is not None:
            await console.start()
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
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(self._time_left(), 0.1)):
                    await health.stop()
                    if console is not None:
                        await console.stop()
            loop.remove_signal_handler(signal.SIGHUP)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if not self._signalled:
                self._watchdog.close()
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
            await self.worker.flush_digests(self.metrics.digest_sent)
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
        # Sends a pass left running in the background (a slow channel) finish within the
        # shutdown's grace period (``_drain`` cancels this task after it).
        await self.worker.settle()

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
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def _drain(self, background: list[asyncio.Task[Any]]) -> None:
        """Let in-flight polls and the current delivery pass finish within the draining part
        of the grace period (``stop_budget``); cancel what is still running then.  A send
        cancelled half-way is not acknowledged: it stays in the stream for the next start."""
        drain, reserve = stop_budget(self.grace)
        pending = [*background, *self._inflight]
        _done, still = await asyncio.wait(pending, timeout=max(self._time_left() - reserve, 0))
        for task in still:
            task.cancel()
        if still:
            log.warning(
                "cancelled work still running after the grace period",
                tasks=len(still),
                drain_seconds=round(drain, 1),
            )
            await asyncio.wait(still, timeout=min(1.0, reserve / 2))
        with contextlib.suppress(StoreError, TimeoutError):
            async with asyncio.timeout(max(min(1.0, self._time_left() - reserve / 2), 0.1)):
                await self.store.release_leases([s.name for s in self.sources], self.consumer)

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
            await self.heartbeat_once()
            await self._sleep(HEARTBEAT_EVERY)

    async def heartbeat_once(self) -> asyncio.Task[bool] | None:
        """Write this replica's heartbeat to Redis and, when that worked (a healthy cycle:
        the loop runs and Redis answers), ping ``ops.heartbeat_url``.  Returns the ping's
        task (None: no URL, unhealthy, or the last ping still under way)."""
        try:
            await self.store.beat(self.consumer, self.heartbeat_fields(), HEARTBEAT_TTL)
        except StoreError as exc:
            self._redis_failed(exc)
            return None
        url = self.settings.ops.heartbeat_url
        return None if url is None else self._dead_man.ping(url.get_secret_value())

    def _redis_recovered(self) -> None:
        if self._redis_down_since is not None:
            down = time.monotonic() - self._redis_down_since
            self._redis_down_since = None
            self.metrics.redis_reconnects.inc()
            log.info("redis reachable again", outage_seconds=round(down, 1))
