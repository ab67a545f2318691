"""Helpers of the console's tests: settings with the two test accounts, a clock moved by
hand, a browser-like client, and signing in through the form."""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from monitor.console.passwords import hash_password
from monitor.console.server import ConsoleServer, ConsoleStores
from monitor.deliver.queue import AlertQueue
from monitor.deliver.silences import SilenceStore
from monitor.ingest.state import Store
from monitor.model import Source
from monitor.redisio import Keys
from monitor.settings import WebConsoleSettings
from monitor.stories.cluster import Extractor
from monitor.stories.store import StoryStore

KEYS = Keys("c")
PASSWORDS = {"ana": "analyst-password-1", "vic": "viewer-password-1"}
ROLES = {"ana": "analyst", "vic": "viewer"}
_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


@functools.cache
def users() -> dict[str, dict[str, str]]:
    """The two test accounts, hashed once per session (Argon2 is slow on purpose)."""
    return {
        name: {"password_hash": hash_password(password), "role": ROLES[name]}
        for name, password in PASSWORDS.items()
    }


def console_settings(**changes: Any) -> WebConsoleSettings:
    """Login-mode settings for a console on plain-HTTP loopback, with ``changes``."""
    data: dict[str, Any] = {
        "enabled": True,
        "host": "127.0.0.1",
        "secure_cookie": False,
        "users": users(),
    }
    data.update(changes)
    return WebConsoleSettings.model_validate(data)


@dataclass
class Clock:
    """The server's clock: real time at the start, moved only by the test."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class Console:
    """A running console and what it reads."""

    server: ConsoleServer
    url: str
    stores: ConsoleStores
    clock: Clock
    sources: list[Source]

    def client(self) -> aiohttp.ClientSession:
        """A browser-like client: keeps cookies (loopback IPs too), does not follow
        redirects unless asked."""
        return aiohttp.ClientSession(base_url=self.url, cookie_jar=aiohttp.CookieJar(unsafe=True))


def csrf_of(page: str) -> str:
    found = _CSRF.search(page)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def sign_in(console: Console, client: aiohttp.ClientSession, user: str) -> str:
    """Sign in through the form as a browser would; returns the stories page's HTML."""
    async with client.get("/login") as page:
        token = csrf_of(await page.text())
    form = {"user": user, "password": PASSWORDS[user], "csrf": token, "next": "/stories"}
    async with client.post("/login", data=form) as landed:
        assert landed.status == 200, await landed.text()
        assert landed.url.path == "/stories"
        return await landed.text()


def stores_on(client: aioredis.Redis) -> ConsoleStores:
    return ConsoleStores(
        stories=StoryStore(client, KEYS, Extractor()),
        ingest=Store(client, KEYS),
        queue=AlertQueue(client, KEYS),
        silences=SilenceStore(client, KEYS),
    )


StartConsole = Callable[..., Awaitable[Console]]
"""``start_console(settings=None, sources=None)``: the fixture in ``conftest``."""
