"""HTTP (and file:) fetching of feeds with a total deadline, a size cap and conditional GET.

This is the I/O shell around the network: the aiohttp session is passed in by the composition
root, so tests and the daemon share one code path and nothing connects at import time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import ipaddress
import re
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp

from monitor import __version__
from monitor.errors import FetchError
from monitor.model import Source

_CHUNK = 64 * 1024
FILE_READERS = 4
"""Threads that read ``file:`` feeds at once (``ingest.file_readers``)."""
_T = TypeVar("_T")
#: Something a fetch steps out of while it waits for its host's turn (``stepping_out``).
Pause = Callable[[], contextlib.AbstractAsyncContextManager[None]]
#: What the running task's fetches step out of while they wait, innermost last.
_STEP_OUT: ContextVar[tuple[Pause, ...]] = ContextVar("step_out", default=())
_DEADLINE: ContextVar[tuple[asyncio.Timeout, float] | None] = ContextVar("deadline", default=None)
"""The poll's hard deadline and its length, for ``made_progress`` and ``clock_paused``."""


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A response worth looking at: 200 with a body, or 304 with none.

    Header names are lowercased, since HTTP treats them case-insensitively and servers vary.
    """

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    url: str = ""
    permanent_url: str | None = None
    """Where a chain of permanent redirects (301/308) led: the feed's new address."""

    @property
    def not_modified(self) -> bool:
        return self.status == 304


@dataclass(frozen=True, slots=True)
class Validators:
    """What the server told us last time, sent back so an unchanged feed costs a 304."""

    etag: str | None = None
    last_modified: str | None = None


class Fetcher:
    """Fetches feeds through one shared ``aiohttp.ClientSession``.

    Redirects are followed here rather than by aiohttp, so that each hop can be checked: at
    most five, only http(s), never to a loopback, private or link-local address unless the
    feed's own URL is one (or the feed allows it), and a chain of permanent redirects is
    reported so an operator can update the config.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        user_agent: str | None = None,
        host_gap: float = 0.0,
        per_host: int | None = None,
        resolve: Resolver | None = None,
        file_readers: int = FILE_READERS,
    ) -> None:
        self._session = session
        self._files = FileReaders(file_readers)
        self._resolve = resolve or system_addresses
        agent = user_agent or "monitor/{version}"
        self._user_agent = agent.replace("{version}", __version__)
        self._gate = HostGate(host_gap, per_host)

    async def fetch(self, source: Source, validators: Validators = Validators()) -> FetchResult:
        """One GET of ``source.url``; raises ``FetchError`` for anything but 200/304.

        The whole exchange (every hop, address lookups, headers and body) shares one
        deadline, because a server that trickles a byte a second defeats a read timeout
        alone.  Waiting for the host's turn (``HostGate``) is not part of it.
        """
        if urlsplit(source.url).scheme == "file":
            return await self._files.read(source)
        try:
            return await self._follow(source, validators, _Budget(source.timeout.total_seconds()))
        except TimeoutError:
            raise FetchError(
                source.name,
                source.url,
                f"no complete response within {source.timeout.total_seconds():g}s",
                hint="the server is slow or hanging; raise the feed's 'timeout' if it is just slow",
            ) from None
        except aiohttp.ClientError as exc:
            raise FetchError(source.name, source.url, _describe(exc)) from None

    async def _follow(self, source: Source, validators: Validators, budget: _Budget) -> FetchResult:
        url = source.url
        private_ok = source.allow_private or await budget.spend(
            _is_private_target(source.url, self._resolve)
        )
        permanent: str | None = None
        all_permanent = True
        for hop in range(MAX_REDIRECTS + 1):
            if hop:
                await budget.spend(_check_redirect_target(source, url, private_ok, self._resolve))
            async with self._gate.turn(urlsplit(url).netloc):
                request = self._request(source, url, validators, same_host=hop == 0)
                outcome = await budget.spend(request)
            if isinstance(outcome, FetchResult):
                return replace(outcome, permanent_url=permanent)
            status, url = outcome
            all_permanent = all_permanent and status in (301, 308)
            permanent = url if all_permanent else None
        raise FetchError(source.name, source.url, f"too many redirects (more than {MAX_REDIRECTS})")

    async def _request(
        self, source: Source, url: str, validators: Validators, *, same_host: bool
    ) -> FetchResult | tuple[int, str]:
        """One hop: a result, or (status, next URL) for a redirect."""
        headers = {"User-Agent": self._user_agent, "Accept": _ACCEPT, **dict(source.headers)}
        if validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
        if source.auth and same_host:
            headers["Authorization"] = _basic_auth(*source.auth)
        async with self._session.get(url, headers=headers, allow_redirects=False) as response:
            response_headers = {name.lower(): value for name, value in response.headers.items()}
            if response.status in _REDIRECTS:
                location = response_headers.get("location")
                if not location:
                    raise FetchError(
                        source.name, source.url, f"HTTP {response.status} without Location"
                    )
                return response.status, urljoin(url, location)
            if response.status == 304:
                return FetchResult(304, b"", response_headers, url)
            if response.status != 200:
                raise _status_error(source, response.status, response_headers)
            body = await _read_capped(response, source)
            return FetchResult(200, body, response_headers, url)


class FileReaders:
    """A bounded set of threads of their own for ``file:`` reads, with the feed's deadline.

    A read from a hung network mount (or a FIFO nobody writes to) blocks its thread for
    good, and no thread can be interrupted.  In the default executor such reads would take,
    one by one, the threads that SMTP and every other ``to_thread`` share; here they can hold
    at most ``size`` threads, which are daemon threads, so a hung one never keeps
    ``monitor run --once`` (or the daemon's exit) waiting.  A slot is given back only when
    its read really ends, so the bound holds; a feed waiting for a slot spends its deadline.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._slots: asyncio.Semaphore | None = None

    async def read(self, source: Source) -> FetchResult:
        seconds = source.timeout.total_seconds()
        try:
            async with asyncio.timeout(seconds):
                return await self._in_thread(source)
        except TimeoutError:
            raise FetchError(
                source.name,
                source.url,
                f"timed out reading {_file_label(source.url)} after {seconds:g}s",
                hint="the file is on a hung mount, or is a pipe nobody writes to",
            ) from None

    async def _in_thread(self, source: Source) -> FetchResult:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        slots = self._slots
        await slots.acquire()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[FetchResult] = loop.create_future()

        def settle(result: FetchResult | None, error: BaseException | None) -> None:
            slots.release()
            if done.cancelled():
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(result)  # type: ignore[arg-type]

        def run() -> None:
            try:
                result = _read_file(source)
            except BaseException as exc:  # handed to the event loop, never lost
                hand_back(None, exc)
            else:
                hand_back(result, None)

        def hand_back(result: FetchResult | None, error: BaseException | None) -> None:
            """A read that ends after its loop closed (a hung mount released once
            ``run --once`` or the daemon is gone) has nobody left to tell: end quietly."""
            with contextlib.suppress(RuntimeError):  # "Event loop is closed"
                loop.call_soon_threadsafe(settle, result, error)

        try:
            threading.Thread(target=run, name="file-read", daemon=True).start()
        except BaseException:
            slots.release()
            raise
        return await done


def _file_label(url: str) -> str:
    """``file:`` and the path, for an error message."""
    return f"file:{unquote(urlsplit(url).path)}"


def _basic_auth(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


class HostGate:
    """Takes turns for requests to one host, so that many feeds on one site stay polite: at
    most ``per_host`` in flight, and each started at least ``gap`` after the one before.

    Forty Google News searches are forty feeds on one host, their turns a second apart; the
    time spent waiting for a turn is not counted against a request's deadline, or the last
    of them would fail as "slow" on every pass."""

    def __init__(self, gap: float, per_host: int | None = None) -> None:
        self.gap = gap
        self.per_host = per_host
        self._next: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}

    @contextlib.asynccontextmanager
    async def turn(self, host: str) -> AsyncIterator[None]:
        """Hold one of the host's slots for the length of the block, having waited the gap.
        If that means waiting, the task steps out (``stepping_out``) of what it holds."""
        slot = None
        if self.per_host is not None:
            slot = self._slots.setdefault(host, asyncio.Semaphore(self.per_host))
        waiting = _stepped_out() if self._must_wait(host, slot) else contextlib.nullcontext()
        async with waiting:
            await self._take(host, slot)
        try:
            yield
        finally:
            if slot is not None:
                slot.release()

    def _must_wait(self, host: str, slot: asyncio.Semaphore | None) -> bool:
        if slot is not None and slot.locked():
            return True
        if self.gap <= 0:
            return False
        lock = self._locks.get(host)
        loop = asyncio.get_running_loop()
        return (lock is not None and lock.locked()) or self._next.get(host, 0.0) > loop.time()

    async def _take(self, host: str, slot: asyncio.Semaphore | None) -> None:
        if slot is not None:
            await slot.acquire()
        try:
            await self._spaced(host)
        except BaseException:
            if slot is not None:
                slot.release()
            raise

    async def _spaced(self, host: str) -> None:
        if self.gap <= 0:
            return
        lock = self._locks.setdefault(host, asyncio.Lock())
        async with lock:
            loop = asyncio.get_running_loop()
            delay = self._next.get(host, 0.0) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._next[host] = loop.time() + self.gap


@contextlib.contextmanager
def stepping_out(pause: Pause) -> Iterator[None]:
    """Within the block, whenever a fetch must wait for its host's turn, it waits inside
    ``pause()``: for what the caller holds that such a wait should not hold up (a
    deadline's clock, a place among the polls running at once)."""
    token = _STEP_OUT.set((*_STEP_OUT.get(), pause))
    try:
        yield
    finally:
        _STEP_OUT.reset(token)


@contextlib.asynccontextmanager
async def _stepped_out() -> AsyncIterator[None]:
    """Step out of everything registered, innermost first, and back in, outermost first."""
    async with contextlib.AsyncExitStack() as stack:
        for pause in reversed(_STEP_OUT.get()):
            await stack.enter_async_context(pause())
        yield


@contextlib.asynccontextmanager
async def hard_deadline(seconds: float) -> AsyncIterator[asyncio.Timeout]:
    """``asyncio.timeout(seconds)`` around a whole poll, so that nothing in it can hang its
    feed for ever, except that its clock stops while a fetch waits for its host's turn
    (``HostGate``), which may take long with many feeds on one site and is no fault of the
    poll's."""
    async with asyncio.timeout(seconds) as deadline:
        token = _DEADLINE.set((deadline, seconds))
        try:
            with stepping_out(functools.partial(_clock_stopped, deadline)):
                yield deadline
        finally:
            _DEADLINE.reset(token)


def made_progress() -> None:
    """The poll moved on (a parse began, a batch of items was recorded): its hard deadline
    starts over.  The deadline is there for a poll that hangs; one that records hundreds of
    items on a loop shared by fifty polls is slow, not hung, and abandoning it would waste
    its work and fetch the feed again.  Outside ``hard_deadline`` (or with its clock
    stopped), nothing happens."""
    current = _DEADLINE.get()
    if current is None:
        return
    deadline, seconds = current
    if deadline.when() is not None and not deadline.expired():
        deadline.reschedule(asyncio.get_running_loop().time() + seconds)


@contextlib.asynccontextmanager
async def clock_paused() -> AsyncIterator[None]:
    """Stop the poll's hard deadline for the block, nothing else: for a wait for a shared
    resource (a parser process's turn) that is no fault of the poll's."""
    current = _DEADLINE.get()
    if current is None:
        yield
        return
    async with _clock_stopped(current[0]):
        yield


@contextlib.asynccontextmanager
async def _clock_stopped(deadline: asyncio.Timeout) -> AsyncIterator[None]:
    """Stop ``deadline``'s clock for the length of the block."""
    when = deadline.when()
    if when is None or deadline.expired():
        yield
        return
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline.reschedule(None)
    try:
        yield
    finally:
        deadline.reschedule(when + loop.time() - started)


class _Budget:
    """The seconds one exchange may spend on the network, across all its hops: spent only
    while a lookup or a request is under way."""

    def __init__(self, seconds: float) -> None:
        self.left = seconds

    async def spend(self, work: Awaitable[_T]) -> _T:
        """``work``'s result; ``TimeoutError`` if the budget runs out first."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(max(self.left, 0.0)):
                return await work
        finally:
            self.left -= loop.time() - started


async def _is_private_target(url: str, resolve: Resolver) -> bool:
    """True when the URL's host is, or resolves to, a non-public address."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        addresses = await resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    except OSError:
        return False
    return any(_non_public(address) for address in addresses)


async def _check_redirect_target(
    source: Source, url: str, private_ok: bool, resolve: Resolver
) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchError(
            source.name, source.url, f"refused a redirect to a {parts.scheme or 'relative'}: URL"
        )
    if private_ok:
        return
    if await _is_private_target(url, resolve):
        raise FetchError(
            source.name,
            source.url,
            f"refused a redirect to a private or loopback address ({parts.hostname})",
            hint="set 'allow_private: true' on the feed if that address is really its home",
        )


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[Address]]]
"""Where a host name points, for the private-address checks (injectable: tests give a
public-looking name a public address while the connection goes to a local server)."""


async def system_addresses(host: str, port: int) -> list[Address]:
    """The host's addresses as the system resolver gives them (an address literal as is)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def _non_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)


async def _read_capped(response: aiohttp.ClientResponse, source: Source) -> bytes:
    """Read the (already decompressed) body, stopping as soon as it passes the cap, so a
    compression bomb or an endless body never fills memory."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > source.max_bytes:
            raise FetchError(
                source.name,
                source.url,
                f"body larger than the {source.max_bytes} byte limit",
                hint="raise the feed's 'max_bytes' if the feed is really this large",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _status_error(source: Source, status: int, headers: dict[str, str]) -> FetchError:
    retry_after = _retry_after(headers.get("retry-after"))
    hints = {
        401: "the feed needs credentials: set 'headers' on the feed",
        403: "the server refuses us; check the User-Agent or whether the feed moved",
        404: "the feed URL is wrong or the feed was removed",
        410: "the publisher removed this feed; delete it from the config",
        429: "we poll too often; raise the feed's 'interval'",
    }
    return FetchError(
        source.name,
        source.url,
        f"HTTP {status}",
        status=status,
        retry_after=retry_after,
        hint=hints.get(status),
    )


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds; it may be a number or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _describe(exc: aiohttp.ClientError) -> str:
    """A short cause without the library's URL-laden repr."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ClientPayloadError):
        if "content length" in f"{exc} {exc.__cause__}".lower():
            return "the response body was truncated: fewer bytes than its Content-Length said"
        return "the response body was truncated or badly encoded"
    if isinstance(exc, aiohttp.ClientResponseError) and _HEADER_FLOOD.search(exc.message):
        return f"header flood: the server sent too many or too long headers ({exc.message})"
    if isinstance(exc, aiohttp.ClientResponseError) and "bad status line" in exc.message.lower():
        return (
            "the response body was truncated or the reply is not HTTP: bytes came after the "
            "body its Content-Length announced"
        )
    if isinstance(exc, aiohttp.InvalidURL):
        return "the URL is not valid"
    return type(exc).__name__


_HEADER_FLOOD = re.compile(r"too many headers|header.*too long|got more than \d+ bytes", re.I)


def _read_file(source: Source) -> FetchResult:
    """``file:`` feeds, for offline examples and local exports; same size cap as HTTP."""
    path = Path(unquote(urlsplit(source.url).path))
    try:
        with path.open("rb") as handle:
            body = handle.read(source.max_bytes + 1)
    except OSError as exc:
        raise FetchError(source.name, source.url, f"cannot read file: {exc.strerror}") from None
    if len(body) > source.max_bytes:
        raise FetchError(source.name, source.url, f"file larger than {source.max_bytes} bytes")
    return FetchResult(200, body, {}, source.url)
