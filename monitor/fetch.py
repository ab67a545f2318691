"""HTTP (and file:) fetching of feeds with a total deadline, a size cap and conditional GET.

This is the I/O shell around the network: the aiohttp session is passed in by the composition
root, so tests and the daemon share one code path and nothing connects at import time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp

from monitor import __version__
from monitor.errors import FetchError
from monitor.model import Source

_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A response worth looking at: 200 with a body, or 304 with none.

    Header names are lowercased, since HTTP treats them case-insensitively and servers vary.
    """

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    url: str = ""

    @property
    def not_modified(self) -> bool:
        return self.status == 304


@dataclass(frozen=True, slots=True)
class Validators:
    """What the server told us last time, sent back so an unchanged feed costs a 304."""

    etag: str | None = None
    last_modified: str | None = None


class Fetcher:
    """Fetches feeds through one shared ``aiohttp.ClientSession``."""

    def __init__(self, session: aiohttp.ClientSession, *, user_agent: str | None = None) -> None:
        self._session = session
        agent = user_agent or "monitor/{version}"
        self._user_agent = agent.replace("{version}", __version__)

    async def fetch(self, source: Source, validators: Validators = Validators()) -> FetchResult:
        """One GET of ``source.url``; raises ``FetchError`` for anything but 200/304.

        The whole exchange (connect, headers, body) shares one deadline, because a server that
        trickles a byte a second defeats a read timeout alone.
        """
        if urlsplit(source.url).scheme == "file":
            return await asyncio.to_thread(_read_file, source)
        try:
            async with asyncio.timeout(source.timeout.total_seconds()):
                return await self._get(source, validators)
        except TimeoutError:
            raise FetchError(
                source.name,
                source.url,
                f"no complete response within {source.timeout.total_seconds():g}s",
                hint="the server is slow or hanging; raise the feed's 'timeout' if it is just slow",
            ) from None
        except aiohttp.TooManyRedirects:
            raise FetchError(source.name, source.url, "too many redirects (more than 5)") from None
        except aiohttp.ClientError as exc:
            raise FetchError(source.name, source.url, _describe(exc)) from None

    async def _get(self, source: Source, validators: Validators) -> FetchResult:
        headers = {"User-Agent": self._user_agent, "Accept": _ACCEPT, **dict(source.headers)}
        if validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
        async with self._session.get(
            source.url, headers=headers, max_redirects=5, allow_redirects=True
        ) as response:
            response_headers = {name.lower(): value for name, value in response.headers.items()}
            if response.status == 304:
                return FetchResult(304, b"", response_headers, str(response.url))
            if response.status != 200:
                raise _status_error(source, response.status, response_headers)
            body = await _read_capped(response, source)
            return FetchResult(200, body, response_headers, str(response.url))


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
        return "the response body was cut off or badly encoded"
    if isinstance(exc, aiohttp.InvalidURL):
        return "the URL is not valid"
    return type(exc).__name__


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
