"""The console's fixture: a real ``ConsoleServer`` on a free loopback port over the session's
private Redis, with a clock the tests move by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from support.servers import bound_socket

from console.harness import Clock, Console, StartConsole, console_settings, stores_on
from monitor.console.server import ConsoleServer
from monitor.model import Source
from monitor.settings import WebConsoleSettings


@pytest.fixture
async def start_console(redis_client: aioredis.Redis) -> AsyncIterator[StartConsole]:
    """Start consoles (settings, feeds) on free loopback ports; all stopped at the end."""
    started: list[ConsoleServer] = []

    async def start(
        settings: WebConsoleSettings | None = None, sources: list[Source] | None = None
    ) -> Console:
        config = settings or console_settings()
        clock = Clock()
        feeds = list(sources or [])
        stores = stores_on(redis_client)
        server = ConsoleServer(lambda: config, stores=stores, sources=lambda: feeds, clock=clock)
        sock = bound_socket()
        assert await server.start(sock)
        started.append(server)
        return Console(server, f"http://127.0.0.1:{server.port}", stores, clock, feeds)

    yield start
    for server in started:
        await server.stop()
