"""Generic webhook channel: POST each alert (or digest) as documented JSON to a URL.

The URL may carry a token, so it is kept like Slack's: in a ``Secret``, shown redacted.
Each request carries ``Idempotency-Key`` (the alert's id) so a receiver can drop the rare
duplicate a crash mid-send causes, and, with a secret configured, ``X-Monitor-Signature``:
``sha256=`` and the hex HMAC-SHA256 of the body.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from monitor import __version__
from monitor.deliver.channels.secret import Secret
from monitor.deliver.channels.session import SessionHolder
from monitor.deliver.channels.slack import (
    BODY_LIMIT,
    Reply,
    is_webhook_url,
    parse_retry_after,
    redact_webhook,
    transport_error,
)
from monitor.deliver.policy import story_key
from monitor.deliver.render.digest import Digest
from monitor.deliver.render.webhook_json import webhook_alert_body, webhook_digest_body
from monitor.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from monitor.model import Match


def _utcnow() -> datetime:
    return datetime.now(UTC)


def judge_http(channel: str, reply: Reply, *, now: datetime) -> DeliveryError | None:
    """2xx accepted; 408, 429 and 5xx worth retrying (honouring Retry-After); anything else
    (3xx, other 4xx) refused for good: the receiver will not change its mind."""
    if 200 <= reply.status < 300:
        return None
    wait = parse_retry_after(reply.retry_after, now)
    said = f"HTTP {reply.status}"
    if reply.status in (408, 429) or reply.status >= 500:
        return TransientDeliveryError(channel, f"the webhook answered {said}", retry_after=wait)
    return PermanentDeliveryError(
        channel,
        f"the webhook refused the alert ({said})",
        hint="check the webhook URL and receiver",
    )


class WebhookChannel:
    """POSTs alerts as JSON (schema ``monitor.alert.v1`` / ``monitor.digest.v1``)."""

    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        secret: str | None = None,
        headers: Mapping[str, str] | None = None,
        name: str = "webhook",
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.name = name
        self.min_interval = timedelta(0)
        self._url = Secret(url.strip())
        self._secret = Secret(secret or "")
        self.where = redact_webhook(url)
        self._headers = dict(headers or {})
        self._sessions = SessionHolder(session)
        self._timeout = timeout
        self.deadline = timedelta(seconds=timeout)
        """The whole exchange of one post ends within this."""
        self._clock = clock

    def __repr__(self) -> str:
        return f"WebhookChannel(name={self.name!r}, url={self.where!r})"

    async def send(self, match: Match) -> None:
        """POST one alert; return on a 2xx answer, else raise a DeliveryError."""
        story = story_key(match)
        await self._deliver(webhook_alert_body(match, story=story, now=self._clock()))

    async def send_digest(self, digest: Digest) -> None:
        stories = {m.key: story_key(m) for _, ms in digest.groups for m in ms}
        await self._deliver(webhook_digest_body(digest, stories=stories, now=self._clock()))

    def _signed_headers(self, body: bytes, idempotency_key: str) -> dict[str, str]:
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "User-Agent": f"monitor/{__version__}",
            "Idempotency-Key": idempotency_key,
        }
        if self._secret:
            digest = hmac.new(self._secret.reveal().encode(), body, hashlib.sha256).hexdigest()
            headers["X-Monitor-Signature"] = f"sha256={digest}"
        return headers

    async def _deliver(self, payload: dict[str, Any]) -> None:
        if not is_webhook_url(self._url.reveal()):
            raise PermanentDeliveryError(
                self.name, f"the webhook URL is not an http(s) URL ({self.where})"
            )
        body = json.dumps(payload, ensure_ascii=False).encode()
        outcome = await self._post(body, self._signed_headers(body, str(payload["id"])))
        failure = (
            judge_http(self.name, outcome, now=self._clock())
            if isinstance(outcome, Reply)
            else outcome
        )
        if failure is not None:
            raise failure

    async def _post(self, body: bytes, headers: dict[str, str]) -> Reply | DeliveryError:
        try:
            # The whole exchange (connect, send, read the answer) has one deadline.
            async with (
                asyncio.timeout(self._timeout),
                self._client().post(
                    self._url.reveal(),
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=self._timeout),
                ) as response,
            ):
                await response.content.read(BODY_LIMIT)
                return Reply(response.status, "", response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return transport_error(self.name, self.where, self._timeout, exc)

    def _client(self) -> aiohttp.ClientSession:
        return self._sessions.get()

    async def close(self) -> None:
        """Close the session this channel created; a session passed in belongs to the caller."""
        await self._sessions.close()
