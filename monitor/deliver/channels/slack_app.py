"""Slack app channel: posts with the Web API (``chat.postMessage``) under a bot token, with
feedback buttons, and threads a story's follow-ups under its first message.

Slack's Web API answers HTTP 200 with ``{"ok": false, "error": "..."}`` for most refusals,
429 with Retry-After when rate limited.  ``judge_api`` maps both to retry-or-not.  The bot
token travels only in the Authorization header: no error, log line or Redis record has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import structlog

from monitor.deliver.channels.secret import Secret
from monitor.deliver.channels.session import SessionHolder
from monitor.deliver.channels.slack import TEMPLATE_HINT, parse_retry_after, transport_error
from monitor.deliver.feedback import action_blocks
from monitor.deliver.feedback_store import FeedbackStore
from monitor.deliver.render.digest import Digest
from monitor.deliver.render.slack_blocks import (
    SLACK_MAX_BLOCKS,
    slack_digest_payloads,
    slack_group_payload,
    slack_payload,
)
from monitor.deliver.templates import TemplateError, Templates
from monitor.errors import (
    DeliveryError,
    PermanentDeliveryError,
    StoreError,
    TransientDeliveryError,
)
from monitor.model import Match
from monitor.redact import url_host

log = structlog.get_logger("monitor.deliver.slack_app")

API_URL = "https://slack.com/api"
BODY_LIMIT = 1024 * 1024
"""The Web API answers with a small JSON object; more than this is not Slack."""
ACTIONS_BLOCK = "monitor_actions_{}"
REDIS_MARGIN = timedelta(seconds=5)
"""What a send may spend in Redis besides the post (thread look-up, records)."""

CHECK_BOT = "check SLACK_BOT_TOKEN: the app's Bot User OAuth Token (xoxb-...), app installed"
INVITE = "invite the app to the channel (/invite @app) or check channels.slack.channel"
BUG = "monitor built a message Slack refuses; this is a bug, please report it with the rule id"
#: Web API error codes that retrying will not fix, with what an operator can do.
PERMANENT = {
    "invalid_auth": CHECK_BOT,
    "not_authed": CHECK_BOT,
    "account_inactive": f"the token's user or app was deactivated; {CHECK_BOT}",
    "token_revoked": f"the token was revoked; {CHECK_BOT}",
    "token_expired": f"the token expired; {CHECK_BOT}",
    "no_permission": f"the token may not do this; {CHECK_BOT}",
    "missing_scope": "add the chat:write scope to the app and reinstall it",
    "not_allowed_token_type": "use the Bot User OAuth Token (xoxb-...), not a user token",
    "channel_not_found": f"no such channel for this app; {INVITE}",
    "not_in_channel": INVITE,
    "is_archived": "the channel is archived; unarchive it or set another channels.slack.channel",
    "restricted_action": "a workspace admin restricted posting to this channel",
    "team_access_not_granted": "the app is not installed in this workspace",
    "msg_too_long": BUG,
    "no_text": BUG,
    "invalid_blocks": BUG,
    "invalid_blocks_format": BUG,
    "invalid_arguments": BUG,
    "too_many_attachments": BUG,
    "message_not_found": "the message was deleted",
    "cant_update_message": "the message was not posted by this app",
    "edit_window_closed": "the message is too old to edit",
}
#: Web API error codes that say "try again later".
TRANSIENT = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
    }
)


@dataclass(frozen=True, slots=True)
class ApiReply:
    """What the Web API answered, reduced to what decides the outcome."""

    status: int
    data: dict[str, Any] | None
    """The JSON object answered, or None when the body was not one."""
    retry_after: str | None = None


def judge_api(channel: str, method: str, reply: ApiReply, *, now: datetime) -> DeliveryError | None:
    """None when Slack said ``ok: true``; else the error: 429, 5xx and Slack's transient
    codes are retried (after Retry-After), a revoked token or an unknown channel is not."""
    wait = parse_retry_after(reply.retry_after, now)
    if reply.status == 429:
        return TransientDeliveryError(
            channel, f"Slack rate-limited {method} (HTTP 429)", retry_after=wait
        )
    if reply.status >= 500 or reply.status == 408:
        return TransientDeliveryError(
            channel, f"Slack is unavailable ({method}: HTTP {reply.status})", retry_after=wait
        )
    if not 200 <= reply.status < 300:
        return PermanentDeliveryError(
            channel,
            f"Slack refused {method} (HTTP {reply.status})",
            hint="check channels.slack.api_url and the app's settings",
        )
    if reply.data is None or not isinstance(reply.data.get("ok"), bool):
        return TransientDeliveryError(channel, f"{method}: the answer was not Slack's JSON")
    if reply.data["ok"]:
        return None
    raw = reply.data.get("error")
    code = raw if isinstance(raw, str) and raw.replace("_", "").isalnum() else "unknown"
    code = code[:64]
    if code in TRANSIENT:
        return TransientDeliveryError(
            channel, f"Slack could not take {method} now ({code})", retry_after=wait
        )
    hint = PERMANENT.get(code, "see Slack's documentation of this error for the method")
    return PermanentDeliveryError(channel, f"Slack refused {method} ({code})", hint=hint)


@dataclass(frozen=True, slots=True)
class Posted:
    """Where a message landed: its channel id and timestamp (Slack's message id)."""

    channel: str
    ts: str


class SlackWebApi:
    """A small Slack Web API client: ``chat.postMessage`` and ``chat.update`` with a bot
    token, on a borrowed or own aiohttp session."""

    def __init__(
        self,
        token: str,
        *,
        api_url: str = API_URL,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        name: str = "slack",
    ) -> None:
        self.name = name
        self._token = Secret(token.strip())
        self._base = api_url.rstrip("/")
        self.where = url_host(self._base) or "the Slack API"
        self._sessions = SessionHolder(session)
        self._timeout = timeout

    @property
    def timeout(self) -> float:
        """Seconds one call may take, answer included."""
        return self._timeout

    def __repr__(self) -> str:
        return f"SlackWebApi(name={self.name!r}, api={self.where!r})"

    async def call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """Call one method with a JSON body; its answer when ``ok``, else a DeliveryError."""
        outcome = await self._exchange(method, body)
        failure = (
            judge_api(self.name, method, outcome, now=datetime.now(UTC))
            if isinstance(outcome, ApiReply)
            else outcome
        )
        if failure is not None:
            raise failure  # outside any except block: no aiohttp exception is chained
        assert isinstance(outcome, ApiReply)
        assert outcome.data is not None
        return outcome.data

    async def post_message(
        self, channel: str, payload: dict[str, Any], thread_ts: str | None = None
    ) -> Posted:
        body = {"channel": channel, **payload}
        if thread_ts:
            body["thread_ts"] = thread_ts
        data = await self.call("chat.postMessage", body)
        ts, where = data.get("ts"), data.get("channel")
        if not isinstance(ts, str) or not ts:
            raise TransientDeliveryError(self.name, "chat.postMessage answered without a ts")
        return Posted(where if isinstance(where, str) and where else channel, ts)

    async def update(
        self, channel: str, ts: str, text: str, blocks: Sequence[dict[str, Any]]
    ) -> None:
        await self.call(
            "chat.update", {"channel": channel, "ts": ts, "text": text, "blocks": list(blocks)}
        )

    async def _exchange(self, method: str, body: dict[str, Any]) -> ApiReply | DeliveryError:
        try:
            async with (
                asyncio.timeout(self._timeout),
                self._sessions.get().post(
                    f"{self._base}/{method}",
                    data=json.dumps(body, ensure_ascii=False).encode(),
                    headers={
                        "Authorization": f"Bearer {self._token.reveal()}",
                        "Content-Type": "application/json; charset=utf-8",
                    },
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=self._timeout),
                ) as response,
            ):
                raw = await response.content.read(BODY_LIMIT)
                retry_after = response.headers.get("Retry-After")
                return ApiReply(response.status, _json_object(raw), retry_after)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return transport_error(self.name, self.where, self._timeout, exc)

    async def close(self) -> None:
        await self._sessions.close()


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def utcnow() -> datetime:
    return datetime.now(UTC)


class SlackAppChannel:
    """Posts alerts to one Slack channel as the app's bot.

    With ``buttons`` each alert carries the five feedback buttons (the interactivity
    endpoint must be set up, see docs/delivery.md).  With a ``feedback`` store the first
    message of each story and rule is remembered, and later messages of it (follow-ups,
    updates) are posted in its thread.  Redis trouble never fails a post that Slack took:
    the message is then simply not threaded.
    """

    def __init__(
        self,
        api: SlackWebApi,
        channel_id: str,
        *,
        feedback: FeedbackStore | None = None,
        buttons: bool = False,
        min_interval: timedelta = timedelta(seconds=1),
        templates: Templates | None = None,
        thread_ttl: timedelta = timedelta(days=30),
    ) -> None:
        self.name = api.name
        self.api = api
        self.channel_id = channel_id
        self.feedback = feedback
        self.buttons = buttons
        self.min_interval = min_interval
        """chat.postMessage allows about one message per second per channel."""
        self.deadline = timedelta(seconds=api.timeout) + REDIS_MARGIN
        """A post and, around it, a thread look-up and record in Redis."""
        self._templates = templates
        self._thread_ttl = thread_ttl
        self._digest_parts: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"SlackAppChannel(name={self.name!r}, channel={self.channel_id!r})"

    async def send(self, match: Match) -> None:
        """Post one alert (in its story's thread when there is one)."""
        try:
            payload = slack_payload(match, self._templates)
        except TemplateError as exc:
            raise PermanentDeliveryError(self.name, str(exc), hint=TEMPLATE_HINT) from None
        if self.buttons:
            payload["blocks"] = [
                *payload["blocks"][: SLACK_MAX_BLOCKS - 1],
                action_blocks(match, ACTIONS_BLOCK.format(0)),
            ]
        thread = await self._thread(match)
        posted = await self.api.post_message(
            thread[0] if thread else self.channel_id, payload, thread[1] if thread else None
        )
        await self._remember([match], posted, threaded=thread is not None)

    async def send_group(self, matches: Sequence[Match]) -> None:
        """A burst in one message; with buttons, each alert keeps its own row of them."""
        if len(matches) == 1:
            await self.send(matches[0])
            return
        extra = None
        if self.buttons:

            def extra(index: int, match: Match) -> list[dict[str, Any]]:
                return [action_blocks(match, ACTIONS_BLOCK.format(index))]

        payload = slack_group_payload(matches, after_each=extra)
        posted = await self.api.post_message(self.channel_id, payload)
        await self._remember(matches, posted, threaded=False)

    async def send_digest(self, digest: Digest) -> None:
        """A digest as plain posts (no buttons), resuming at the part that failed."""
        posts = slack_digest_payloads(digest)
        done = self._digest_parts.get(digest.key, 0)
        try:
            for part in range(done, len(posts)):
                if part > done and self.min_interval > timedelta(0):
                    await asyncio.sleep(self.min_interval.total_seconds())
                await self.api.post_message(self.channel_id, posts[part])
                self._digest_parts[digest.key] = part + 1
        except PermanentDeliveryError:
            self._digest_parts.pop(digest.key, None)
            raise
        self._digest_parts.pop(digest.key, None)

    async def _thread(self, match: Match) -> tuple[str, str] | None:
        if self.feedback is None:
            return None
        try:
            return await self.feedback.thread(match, self.name)
        except StoreError as exc:
            log.warning("story thread unknown (Redis)", rule=match.rule_id, error=str(exc))
            return None

    async def _remember(self, matches: Sequence[Match], posted: Posted, *, threaded: bool) -> None:
        """After Slack took the post: keep each alert's text for votes and, for a story's
        first message, its ts for the follow-ups.  Never raises: the post is done."""
        if self.feedback is None:
            return
        now = utcnow()
        for match in matches:
            with contextlib.suppress(StoreError):
                await self.feedback.remember_alert(match, now)
                if not threaded:
                    await self.feedback.keep_thread(
                        match, self.name, posted.channel, posted.ts, self._thread_ttl
                    )

    async def close(self) -> None:
        await self.api.close()
