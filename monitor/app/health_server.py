"""The daemon's HTTP side for orchestrators: ``/healthz`` (alive), ``/readyz`` (Redis takes a
write) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import datetime

import structlog
from aiohttp import web

from monitor import __version__
from monitor.app.metrics import Metrics
from monitor.deliver.queue import AlertQueue
from monitor.errors import StoreError
from monitor.settings import HealthSettings

log = structlog.get_logger("monitor.app.health_server")


class HealthServer:
    """Serves what it is given to read: the queue (probed and counted on each request), the
    metrics, and the daemon's heartbeat fields and last cycle (read when asked, so always
    current).  ``started`` is a ``time.monotonic()`` reading, for the uptime."""

    def __init__(
        self,
        config: HealthSettings,
        *,
        queue: AlertQueue,
        metrics: Metrics,
        heartbeat: Callable[[], dict[str, str]],
        last_cycle: Callable[[], datetime | None],
        started: float,
    ) -> None:
        self.config = config
        self.queue = queue
        self.metrics = metrics
        self.heartbeat = heartbeat
        self.last_cycle = last_cycle
        self.started = started
        self._runner: web.AppRunner | None = None

    async def start(self) -> bool:
        """Listen on ``health.host:health.port``; port 0 switches it off.  A port already in
        use is logged, not fatal: the daemon's work matters more than its probes."""
        if self.config.port == 0:
            return False
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics_page)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.config.host, self.config.port).start()
        except OSError as exc:
            log.error("health endpoint not started", port=self.config.port, error=str(exc))
            await runner.cleanup()
            return False
        log.info("health endpoint listening", host=self.config.host, port=self.config.port)
        self._runner = runner
        return True

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def healthz(self, _request: web.Request) -> web.Response:
        last_cycle = self.last_cycle()
        return web.json_response(
            {
                "status": "ok",
                "version": __version__,
                "uptime_seconds": round(time.monotonic() - self.started, 1),
                "last_cycle": last_cycle.isoformat() if last_cycle else None,
            }
        )

    async def readyz(self, _request: web.Request) -> web.Response:
        """Ready when Redis takes a write: a full Redis or a read-only replica answers PING
        but stops polling and delivery all the same."""
        try:
            await self.queue.probe()
        except StoreError as exc:
            return web.json_response({"status": "unready", "reason": str(exc)}, status=503)
        return web.json_response({"status": "ready", **self.heartbeat()})

    async def metrics_page(self, _request: web.Request) -> web.Response:
        """Prometheus text format; queue gauges are read fresh from Redis on each scrape."""
        with contextlib.suppress(StoreError):
            self.metrics.observe_queue(await self.queue.stream_counts())
            self.metrics.observe_lag(*await self.queue.lag())
        return web.Response(body=self.metrics.render(), content_type="text/plain", charset="utf-8")
