"""Slack incoming-webhook channel: POST Block Kit JSON and map Slack's answer to retry or not.

The webhook URL is itself the credential, so it lives in a ``Secret`` and every error names
only a redacted form such as ``hooks.slack.com/services/***``.  aiohttp exceptions carry the
full URL in their text, so none of them is ever chained to an error raised here.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from monitor.deliver.channels.secret import Secret
from monitor.deliver.channels.session import SessionHolder
from monitor.deliver.render.digest import Digest
from monitor.deliver.render.slack_blocks import (
    slack_digest_payloads,
    slack_group_payload,
    slack_payload,
)
from monitor.deliver.templates import TemplateError, Templates
from monitor.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from monitor.model import Match

TEMPLATE_HINT = "fix the template in the config folder's templates/, then 'monitor alerts retry'"

NEW_WEBHOOK = "create a new incoming webhook and put its URL in SLACK_WEBHOOK_URL"
BUG = "monitor built a message Slack refuses; this is a bug, please report it with the rule id"

# Slack's documented webhook error codes, each with what an operator can do about it.
HINTS = {
    "invalid_payload": BUG,
    "invalid_blocks": BUG,
    "invalid_blocks_format": BUG,
    "no_text": BUG,
    "missing_text_or_fallback_or_attachments": BUG,
    "too_many_attachments": BUG,
    "invalid_token": f"the webhook's token is wrong or was revoked; {NEW_WEBHOOK}",
    "no_service": f"the webhook was revoked or deleted; {NEW_WEBHOOK}",
    "no_service_id": f"the webhook URL is incomplete or was revoked; {NEW_WEBHOOK}",
    "no_active_hooks": "the webhook is disabled; re-enable incoming webhooks for the Slack app",
    "action_prohibited": "a workspace admin restricted posting to this channel; ask an admin "
    "or point the webhook at another channel",
    "posting_to_general_channel_denied": "only admins may post in this channel; point the "
    "webhook at another channel",
    "channel_not_found": f"the webhook's channel was deleted; {NEW_WEBHOOK} for a live channel",
    "channel_is_archived": "the webhook's channel is archived; unarchive it, or "
    f"{NEW_WEBHOOK} for another channel",
    "user_not_found": f"the webhook's direct-message user no longer exists; {NEW_WEBHOOK}",
    "team_disabled": "the Slack workspace is disabled",
    "no_team": f"the webhook's workspace was not found; {NEW_WEBHOOK}",
}
_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_SAFE_PATH_HEADS = ("services", "workflows", "triggers", "commands")
BODY_LIMIT = 4096
"""Slack answers with one short word; anything longer is not Slack and is not read."""


def redact_webhook(url: str) -> str:
    """Describe a webhook URL without its secret parts: host, port, and a known first path part."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return "<unparseable webhook URL>"
    if not host:
        return "<webhook URL without a host>"
    head = next((p for p in parts.path.split("/") if p), "")
    shown = f"/{head}" if head in _SAFE_PATH_HEADS else ""
    return f"{host}{f':{port}' if port else ''}{shown}/***"


def is_webhook_url(url: str) -> bool:
    """True for an absolute http(s) URL with a host; anything else cannot be posted to."""
    try:
        parts = urlsplit(url.strip())
        return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:
        return False


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or HTTP date); None if absent.

    ``now`` is needed only for the date form; it is an argument so the function stays pure.
    """
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(text) - now).total_seconds()
        except (TypeError, ValueError, IndexError):
            return None
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def error_code(body: str) -> str:
    """Slack's error code from a response body, or "" when the body is not one (not echoed)."""
    word = body.strip()
    return word if _CODE.fullmatch(word) else ""


@dataclass(frozen=True, slots=True)
class Reply:
    """What Slack answered, reduced to what decides the outcome."""

    status: int
    body: str
    retry_after: str | None = None


def judge(channel: str, reply: Reply, *, now: datetime) -> DeliveryError | None:
    """Map a webhook answer as Slack documents it: None when accepted, else the error to raise.

    429 and 5xx are worth retrying (429 with Slack's Retry-After); other 4xx name the fault
    (revoked webhook, archived channel, ...), and retrying the same alert will not fix them.
    """
    if 200 <= reply.status < 300:
        return None
    code = error_code(reply.body)
    said = f"HTTP {reply.status}" + (f" {code}" if code else "")
    wait = parse_retry_after(reply.retry_after, now)
    if reply.status == 429:
        return TransientDeliveryError(
            channel, f"Slack rate-limited the webhook ({said})", retry_after=wait
        )
    if reply.status >= 500 or reply.status == 408:
        return TransientDeliveryError(channel, f"Slack is unavailable ({said})", retry_after=wait)
    if 300 <= reply.status < 400:
        return PermanentDeliveryError(
            channel,
            f"the webhook answered with a redirect ({said})",
            hint="check SLACK_WEBHOOK_URL; Slack webhooks never redirect",
        )
    hint = HINTS.get(code, "check the webhook in the Slack app settings and SLACK_WEBHOOK_URL")
    return PermanentDeliveryError(channel, f"Slack refused the alert ({said})", hint=hint)


def transport_error(channel: str, where: str, timeout: float, exc: Exception) -> DeliveryError:
    """Describe a failure to talk to Slack from its type only; the exception text has the URL."""
    if isinstance(exc, aiohttp.InvalidURL):
        return PermanentDeliveryError(
            channel, f"the webhook URL is not usable ({where})", hint="check SLACK_WEBHOOK_URL"
        )
    if isinstance(exc, TimeoutError):
        return TransientDeliveryError(channel, f"no answer from {where} within {timeout:g}s")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return TransientDeliveryError(
            channel,
            f"TLS certificate of {where} was not trusted",
            hint="check the system CA store or a proxy intercepting TLS",
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return TransientDeliveryError(channel, f"cannot connect to {where}: {reason}")
    return TransientDeliveryError(channel, f"request to {where} failed: {type(exc).__name__}")


class SlackChannel:
    """Posts alerts to one Slack incoming webhook.

    Uses the given aiohttp session, or creates one on first use (inside the running loop, as
    aiohttp requires) and closes only that one in ``close()``.
    """

    def __init__(
        self,
        webhook_url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        name: str = "slack",
        min_interval: timedelta = timedelta(seconds=1),
        templates: Templates | None = None,
    ) -> None:
        self.name = name
        self._templates = templates
        self.min_interval = min_interval
        """Slack allows about one message per second per webhook; the worker paces posts."""
        self._webhook = Secret(webhook_url.strip())
        self.where = redact_webhook(webhook_url)
        self._sessions = SessionHolder(session)
        self._timeout = timeout
        self.deadline = timedelta(seconds=timeout)
        self._digest_parts: dict[str, int] = {}
        """Per digest being sent (its key), how many of its posts Slack accepted: a retry
        of a digest cut short by an error posts only the rest."""
        """The whole exchange of one post ends within this."""

    def __repr__(self) -> str:
        return f"SlackChannel(name={self.name!r}, webhook={self.where!r})"

    async def send(self, match: Match) -> None:
        """Post one alert; return once Slack answered 200, else raise a DeliveryError."""
        try:
            payload = slack_payload(match, self._templates)
        except TemplateError as exc:
            raise PermanentDeliveryError(self.name, str(exc), hint=TEMPLATE_HINT) from None
        await self._deliver(payload)

    async def send_group(self, matches: Sequence[Match]) -> None:
        """Post a burst of alerts as one grouped message (at most ``GROUP_MAX``)."""
        if len(matches) == 1:
            await self.send(matches[0])
            return
        await self._deliver(slack_group_payload(matches))

    async def send_digest(self, digest: Digest) -> None:
        """Post a digest: one message, or as many as it takes to list every alert, in order
        and at most one per ``min_interval``.  A retry after a part failed starts at that part
        (a replica that takes the retry over, after a crash, starts at the first)."""
        posts = slack_digest_payloads(digest)
        done = self._digest_parts.get(digest.key, 0)
        try:
            for part in range(done, len(posts)):
                if part > done and self.min_interval > timedelta(0):
                    await asyncio.sleep(self.min_interval.total_seconds())
                await self._deliver(posts[part])
                self._digest_parts[digest.key] = part + 1
        except PermanentDeliveryError:
            self._digest_parts.pop(digest.key, None)  # refused: the digest is given up
            raise
        self._digest_parts.pop(digest.key, None)

    async def _deliver(self, payload: dict[str, Any]) -> None:
        if not is_webhook_url(self._webhook.reveal()):
            raise PermanentDeliveryError(
                self.name,
                f"the webhook URL is not an http(s) URL ({self.where})",
                hint="check SLACK_WEBHOOK_URL",
            )
        outcome = await self._post(payload)
        failure = (
            judge(self.name, outcome, now=datetime.now(UTC))
            if isinstance(outcome, Reply)
            else outcome
        )
        if failure is not None:
            # Raised here, outside any except block: no aiohttp exception is chained to it.
            raise failure

    async def _post(self, payload: dict[str, Any]) -> Reply | DeliveryError:
        try:
            # The whole exchange (connect, send, read the answer) has one deadline.
            async with (
                asyncio.timeout(self._timeout),
                self._client().post(
                    self._webhook.reveal(),
                    json=payload,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=self._timeout),
                ) as response,
            ):
                body = await response.content.read(BODY_LIMIT)
                return Reply(
                    response.status,
                    body.decode("utf-8", "replace"),
                    response.headers.get("Retry-After"),
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return transport_error(self.name, self.where, self._timeout, exc)

    def _client(self) -> aiohttp.ClientSession:
        return self._sessions.get()

    async def close(self) -> None:
        """Close the session this channel created; a session passed in belongs to the caller."""
        await self._sessions.close()
