"""Apprise channel: each alert to every configured Apprise URL (Teams, Telegram, Matrix,
Discord, ntfy, SMS gateways, JSON ...), each URL accepted, retried or refused on its own.

Apprise sends synchronously (``requests``) and answers only True or False; what the far end
said, it logs.  So each URL's plugin sends in a thread of this channel's own pool (the event
loop never waits on a socket, and a stuck service cannot starve the loop's default pool), and
a log tap collects the records Apprise writes in that thread while it sends: the HTTP status
Apprise reports (``error=503``, the form its HTTP plugins share) decides retry or not.

Every Apprise URL is a secret: tokens sit in its user, host, path or query.  Apprise's log
lines hold topics, URLs and, at debug level, ``Authorization`` headers, so no record it writes
reaches the daemon's log: the tap drops them all, and errors name a URL only by its number,
scheme and host (``#2 tgram://***``, ``#1 ntfy://ntfy.example.org``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from monitor.deliver.render.apprise_text import (
    AppriseMessage,
    BodyFormat,
    apprise_digest_message,
    apprise_group_message,
    apprise_message,
)
from monitor.deliver.render.digest import Digest
from monitor.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from monitor.model import Match, Severity

if TYPE_CHECKING:
    from apprise import AppriseAsset, NotifyBase

URL_HINT = "check the Apprise URL in channels.apprise.urls"

# --- reading what Apprise said (pure) ----------------------------------------------------------

_STATUS = re.compile(r"\berror=(\d{3,5})\b")
_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.\-]{0,31})://")
# A host name (its last label a top-level domain's letters), an IPv4 or an IPv6 address.
_HOST = re.compile(
    r"^(?:localhost|(?:[a-z0-9\-]{1,63}\.)+[a-z]{2,63}|\d{1,3}(?:\.\d{1,3}){3}|[0-9a-f:.]*:[0-9a-f:.]+)$"
)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What sending to one URL came to, read from Apprise's answer and the lines it logged.

    ``status`` is the HTTP status Apprise reported for the failed request; ``unusable`` says
    Apprise could not make a service of the URL; ``crashed`` names an exception a plugin
    raised (its text is not kept: it may hold the URL).
    """

    accepted: bool
    status: int | None = None
    rate_limited: bool = False
    timed_out: bool = False
    unreachable: bool = False
    unusable: bool = False
    crashed: str = ""


def http_status(code: int) -> int | None:
    """The HTTP status in a code Apprise logged: ntfy reports its own five-digit codes
    (``40101`` for HTTP 401, unauthorized), every other service the status itself."""
    if 100 <= code < 600:
        return code
    if 10_000 <= code < 60_000:
        return code // 100
    return None


def read_attempt(accepted: bool, lines: Sequence[str]) -> Attempt:
    """Reduce Apprise's answer and log lines for one send to what decides the outcome.

    The last status wins: a Matrix send logs in, joins and posts, and the request that
    failed is the last one it made.
    """
    if accepted:
        return Attempt(accepted=True)
    status = None
    for line in lines:
        for found in _STATUS.finditer(line):
            status = http_status(int(found.group(1))) or status
    said = " ".join(lines).lower()
    return Attempt(
        accepted=False,
        status=status,
        rate_limited=any(words in said for words in ("throttle back", "rate limit", "too many")),
        timed_out="timed out" in said or "timeout" in said,
        unreachable="connection error" in said or "socket exception" in said,
    )


def judge_attempt(
    channel: str, target: str, attempt: Attempt, *, timeout: float
) -> DeliveryError | None:
    """None when the URL's service accepted the alert, else the error it amounts to.

    408, 425, 429 and 5xx, timeouts, refused connections and failures Apprise gives no
    reason for are worth retrying (the last then die after ``max_attempts``, with this
    reason); other 4xx (a wrong token, an unknown topic or room), 3xx and a URL Apprise cannot
    read will not change by retrying.
    """
    if attempt.accepted:
        return None
    if attempt.unusable:
        return PermanentDeliveryError(
            channel,
            f"Apprise cannot use URL {target} (unknown service or incomplete URL)",
            hint=f"{URL_HINT}; see Apprise's list of services for its form",
        )
    status = attempt.status
    if status is not None:
        said = f"HTTP {status}"
        if status in (408, 425, 429) or status >= 500:
            return TransientDeliveryError(channel, f"{target} answered {said}")
        if status in (401, 403):
            return PermanentDeliveryError(
                channel,
                f"{target} refused the URL's credentials ({said})",
                hint=f"{URL_HINT}: its token, or user and password, are wrong or revoked",
            )
        if status == 404:
            return PermanentDeliveryError(
                channel,
                f"{target} does not know the URL's topic, room or hook ({said})",
                hint=URL_HINT,
            )
        if not 200 <= status < 300:
            return PermanentDeliveryError(
                channel, f"{target} refused the alert ({said})", hint=URL_HINT
            )
    if attempt.rate_limited:
        return TransientDeliveryError(channel, f"{target} is rate-limiting (HTTP 429)")
    if attempt.timed_out:
        return TransientDeliveryError(channel, f"no answer from {target} within {timeout:g}s")
    if attempt.unreachable:
        return TransientDeliveryError(channel, f"cannot reach {target}")
    if attempt.crashed:
        return TransientDeliveryError(
            channel, f"Apprise failed sending to {target} ({attempt.crashed})"
        )
    return TransientDeliveryError(channel, f"{target} did not accept the alert")


def describe_url(url: str, index: int) -> str:
    """Which URL is meant, without its secrets: ``#1 ntfy://ntfy.example.org:8080``.

    The host is shown only when it reads as a host name or an address; in many Apprise URLs
    the "host" is a bot token (``tgram://123456:AAH.../``) or a webhook id, shown as ``***``.
    """
    found = _SCHEME.match(url)
    hidden = f"#{index} {found.group(1).lower() if found else '?'}://***"
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return hidden
    if not found or not _HOST.match(host):
        return hidden
    shown = f"[{host}]" if ":" in host else host
    return f"{hidden[: -len('***')]}{shown}{f':{port}' if port else ''}"


def combine(
    channel: str, errors: Sequence[DeliveryError], *, have: int, total: int
) -> DeliveryError:
    """One error for one send to several URLs: transient while any URL may still take it
    (a retry then goes only to the URLs that do not have it yet), permanent once every URL
    left refused it for good."""
    said = "; ".join(error.message for error in errors)
    if have:
        said += f" ({have} of {total} URLs have it)"
    if any(isinstance(error, TransientDeliveryError) for error in errors):
        return TransientDeliveryError(channel, said)
    hints = list(dict.fromkeys(error.hint for error in errors if error.hint))
    return PermanentDeliveryError(channel, said, hint="; ".join(hints) or None)


def notify_type_name(severity: Severity) -> str:
    """Apprise's notification type (its colour and icon) for a severity."""
    if severity >= Severity.HIGH:
        return "failure"
    if severity == Severity.MEDIUM:
        return "warning"
    return "info"


# --- the log tap ---------------------------------------------------------------------------------

_TAPPED: ContextVar[list[logging.LogRecord] | None] = ContextVar("apprise_tapped", default=None)
APPRISE_LOGGER = "apprise"
HTTP_LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.response", "requests")
"""Loggers of the HTTP stack Apprise uses; their warnings may quote a request's URL."""
TAP_RECORDS = 200
"""Most records kept per send (a Matrix send logs a dozen)."""


class _Tap(logging.Filter):
    """Takes the records logged in a thread that is sending for this channel, so no handler
    (the daemon's log included) sees them; ``drop_all`` also silences the logger otherwise."""

    def __init__(self, *, drop_all: bool) -> None:
        super().__init__()
        self.drop_all = drop_all

    def filter(self, record: logging.LogRecord) -> bool:
        tapped = _TAPPED.get()
        if tapped is None:
            return not self.drop_all
        if len(tapped) < TAP_RECORDS and _telling(record):
            tapped.append(record)
        return False


def _telling(record: logging.LogRecord) -> bool:
    """Warnings and errors say what failed; the one debug line kept says why a connection
    failed (timed out, refused)."""
    return record.levelno >= logging.WARNING or str(record.msg).startswith("Socket Exception")


def install_log_tap() -> None:
    """Put the tap on Apprise's logger (and the HTTP stack's); once per process.

    Apprise's logger is set to debug so its records are made whatever the daemon's level
    (at ``error`` its warnings, which carry the status, would not be); the tap drops them all.
    """
    apprise_logger = logging.getLogger(APPRISE_LOGGER)
    if not any(isinstance(f, _Tap) for f in apprise_logger.filters):
        apprise_logger.addFilter(_Tap(drop_all=True))
        apprise_logger.setLevel(logging.DEBUG)
    for name in HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Tap) for f in logger.filters):
            logger.addFilter(_Tap(drop_all=False))


def _messages(records: Sequence[logging.LogRecord]) -> list[str]:
    lines = []
    for record in records:
        with contextlib.suppress(Exception):  # a malformed record must not hide the outcome
            lines.append(record.getMessage())
    return lines


# --- the shell -----------------------------------------------------------------------------------


class _Accepted:
    """Which URLs already took which message (by alert key), so a retry after a partial
    failure goes only to the URLs that lack it.  Bounded; kept while the process lives."""

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._seen: OrderedDict[str, set[int]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key: str, index: int) -> None:
        with self._lock:
            self._seen.setdefault(key, set()).add(index)
            self._seen.move_to_end(key)
            while len(self._seen) > self._limit:
                self._seen.popitem(last=False)

    def has(self, key: str, index: int) -> bool:
        with self._lock:
            return index in self._seen.get(key, ())


class _Target:
    """One Apprise URL and its plugin, made on first use (in a pool thread: loading Apprise's
    plugins takes a while) and kept, so a Matrix login or a session is reused."""

    def __init__(self, url: str, index: int) -> None:
        self._url = url
        self.index = index
        self.label = describe_url(url, index)
        self.lock = threading.Lock()
        """One send at a time per plugin: plugins keep state (Matrix: token, transaction id)."""
        self._plugin: NotifyBase | None = None
        self._unusable = False

    def __repr__(self) -> str:
        return f"_Target({self.label!r})"

    def plugin(self, asset: AppriseAsset, timeout: float, pause: float) -> NotifyBase | None:
        """The URL's plugin, its timeouts set from the channel's deadline and its pause
        between two requests capped to ``pause`` (the channel's rate limit): Apprise pauses
        5.5 s by default, for one-shot use, and the worker already paces the channel."""
        if self._plugin is None and not self._unusable:
            import apprise

            plugin = apprise.Apprise.instantiate(self._url, asset=asset)
            if plugin is None:
                self._unusable = True
                return None
            # Connect within the deadline; a read may take a second longer, so a slow server
            # is ended by the channel's own deadline (which says so) rather than by requests.
            plugin.socket_connect_timeout = timeout
            plugin.socket_read_timeout = timeout + 1.0
            plugin.request_rate_per_sec = min(plugin.request_rate_per_sec, pause)
            if "overflow=" not in self._url:
                plugin.overflow_mode = apprise.OverflowMode.SPLIT  # a long digest is split
            self._plugin = plugin
        return self._plugin

    def forget(self) -> None:
        """Drop the plugin; a Matrix plugin logs out as it goes (call it in a pool thread)."""
        self._plugin = None


class AppriseChannel:
    """Sends alerts through Apprise to every URL in ``urls``.

    ``send`` returns once every URL's service accepted the alert.  Otherwise it raises one
    error for all the URLs that did not (see ``combine``); the URLs that accepted are
    remembered, and the retry goes to the others only.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout: float = 10.0,
        name: str = "apprise",
        min_interval: timedelta = timedelta(seconds=1),
        body_format: BodyFormat = "text",
    ) -> None:
        self.name = name
        self.min_interval = min_interval
        """Chat services limit posts (Telegram about one a second per chat); the worker paces."""
        self._targets = tuple(_Target(url.strip(), n) for n, url in enumerate(urls, start=1))
        self._timeout = timeout
        self.deadline = timedelta(seconds=timeout)
        """Every URL's send ends (or is given up) within this, all URLs at once."""
        self._format: BodyFormat = body_format
        self._accepted = _Accepted()
        self._pool: ThreadPoolExecutor | None = None
        self._asset: AppriseAsset | None = None
        install_log_tap()

    def __repr__(self) -> str:
        labels = [target.label for target in self._targets]
        return f"AppriseChannel(name={self.name!r}, urls={labels!r})"

    @property
    def where(self) -> str:
        return ", ".join(target.label for target in self._targets)

    async def send(self, match: Match) -> None:
        """Send one alert to every URL that does not have it yet."""
        await self._deliver((match.key,), lambda _keys: apprise_message(match, self._format))

    async def send_group(self, matches: Sequence[Match]) -> None:
        """A burst of alerts as one message per URL (each URL gets the ones it lacks)."""
        by_key = {match.key: match for match in matches}

        def render(keys: Sequence[str]) -> AppriseMessage:
            chosen = [by_key[key] for key in keys]
            if len(chosen) == 1:
                return apprise_message(chosen[0], self._format)
            return apprise_group_message(chosen, self._format)

        await self._deliver(tuple(by_key), render)

    async def send_digest(self, digest: Digest) -> None:
        """Send one digest message to every URL."""
        await self._deliver(
            (digest.key,), lambda _keys: apprise_digest_message(digest, self._format)
        )

    async def _deliver(
        self, keys: tuple[str, ...], render: Callable[[Sequence[str]], AppriseMessage]
    ) -> None:
        if not self._targets:
            raise PermanentDeliveryError(self.name, "no Apprise URL is configured", hint=URL_HINT)
        jobs: list[tuple[_Target, asyncio.Future[Attempt]]] = []
        pool = self._executor()
        for target in self._targets:
            pending = [key for key in keys if not self._accepted.has(key, target.index)]
            if not pending:
                continue
            message = render(pending)
            sending = pool.submit(self._send_one, target, pending, message)
            jobs.append((target, asyncio.wrap_future(sending)))
        if not jobs:
            return  # every URL took it on an earlier attempt
        # One deadline for all: services are tried at once, none waits for another.
        await asyncio.wait([future for _, future in jobs], timeout=self._timeout)
        errors = []
        for target, future in jobs:
            attempt = (
                future.result()
                if future.done() and not future.cancelled()
                else Attempt(accepted=False, timed_out=True)
            )
            if not future.done():
                future.cancel()  # stop waiting; the thread ends at its socket timeouts
            error = judge_attempt(self.name, target.label, attempt, timeout=self._timeout)
            if error is not None:
                errors.append(error)
        if errors:
            have = sum(all(self._accepted.has(k, t.index) for k in keys) for t in self._targets)
            # Raised outside any except block: no exception holding a URL is chained to it.
            raise combine(self.name, errors, have=have, total=len(self._targets))

    def _send_one(self, target: _Target, keys: Sequence[str], message: AppriseMessage) -> Attempt:
        """Runs in a pool thread: one URL's send, its log lines tapped."""
        import apprise

        records: list[logging.LogRecord] = []
        token = _TAPPED.set(records)
        accepted = False
        try:
            with target.lock:
                plugin = target.plugin(
                    self._apprise_asset(), self._timeout, self.min_interval.total_seconds()
                )
                if plugin is None:
                    return Attempt(accepted=False, unusable=True)
                accepted = bool(
                    plugin.notify(
                        body=message.body,
                        title=message.title,
                        notify_type=apprise.NotifyType(notify_type_name(message.severity)),
                        body_format=apprise.NotifyFormat.MARKDOWN
                        if message.markdown
                        else apprise.NotifyFormat.TEXT,
                    )
                )
        except Exception as exc:  # a plugin's bug must not escape with a URL in its text
            return Attempt(accepted=False, crashed=type(exc).__name__)
        finally:
            _TAPPED.reset(token)
        if accepted:  # recorded here, so a send that outlived the deadline still counts
            for key in keys:
                self._accepted.add(key, target.index)
        return read_attempt(accepted, _messages(records))

    def _apprise_asset(self) -> AppriseAsset:
        if self._asset is None:
            import apprise

            # In memory only: Apprise would otherwise keep tokens (Matrix logins) on disk.
            self._asset = apprise.AppriseAsset(storage_mode="memory", secure_logging=True)
        return self._asset

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            workers = min(32, 2 * len(self._targets) + 2)
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"{self.name}-send")
        return self._pool

    async def close(self) -> None:
        """Drop the plugins (a Matrix login is logged out) and the pool; a later send starts
        afresh."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        release = asyncio.wrap_future(pool.submit(self._release))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release, timeout=self._timeout)
        pool.shutdown(wait=False)

    def _release(self) -> None:
        token = _TAPPED.set([])
        try:
            for target in self._targets:
                with target.lock:
                    target.forget()
        finally:
            _TAPPED.reset(token)
