"""A Slack Web API look-alike (``chat.postMessage``, ``chat.update``) and Slack's side of
the interactivity exchange (a ``block_actions`` payload, signed as Slack signs it).

The server answers as Slack documents it: HTTP 200 with ``{"ok": true, ...}`` or
``{"ok": false, "error": "<code>"}`` (``invalid_auth`` for a wrong token, ``channel_not_found``,
``invalid_blocks`` for blocks over Block Kit's limits, ``message_not_found`` for an update of
an unknown ts), and HTTP 429 with Retry-After when rate limited.  It keeps every message it
took, with its updates, so tests read the channel as a user would.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from support.servers import (
    LOOPBACK,
    AioServerThread,
    _json_or_none,
    _Recorder,
    slack_problems,
)

BOT_TOKEN = "xoxb-111-222-testtokenvalue0123456789"
CHANNEL = "C0ALERTS01"


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One request the server received, and what it answered."""

    method: str
    headers: Mapping[str, str]
    body: bytes
    payload: Any
    status: int
    answer: Mapping[str, Any]


@dataclass(slots=True)
class Message:
    """A message as the channel holds it."""

    channel: str
    ts: str
    text: str
    blocks: list[Any]
    thread_ts: str | None = None
    updates: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Scripted:
    status: int
    answer: Mapping[str, Any]
    retry_after: str | None = None


def action_problems(block: Any) -> list[str]:
    """Block Kit's limits on an ``actions`` block of buttons (a useful subset)."""
    elements = block.get("elements")
    if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
        return ["actions need 1 to 25 elements"]
    problems = []
    ids = [e.get("action_id") for e in elements if isinstance(e, dict)]
    if len(set(ids)) != len(ids):
        problems.append("action_id repeated in a block")
    for element in elements:
        text = (element.get("text") or {}).get("text")
        if element.get("type") != "button":
            problems.append("not a button")
        elif not isinstance(text, str) or not 1 <= len(text) <= 75:
            problems.append("button text must be 1 to 75 characters")
        elif len(str(element.get("value") or "")) > 2000:
            problems.append("button value longer than 2000")
        elif len(str(element.get("action_id") or "")) > 255:
            problems.append("action_id longer than 255")
    return problems


def api_problems(payload: Any) -> list[str]:
    """Every Block Kit problem of a message, actions blocks included."""
    problems = slack_problems(payload)
    for index, block in enumerate(payload.get("blocks") or []):
        if isinstance(block, dict) and block.get("type") == "actions":
            problems += [f"block {index}: {p}" for p in action_problems(block)]
    block_ids = [b.get("block_id") for b in payload.get("blocks") or [] if b.get("block_id")]
    if len(set(block_ids)) != len(block_ids):
        problems.append("block_id repeated")
    return problems


class SlackApiServer(AioServerThread):
    """An HTTP server answering as Slack's Web API does, under ``/api/<method>``."""

    def __init__(self, *, token: str = BOT_TOKEN, channels: tuple[str, ...] = (CHANNEL,)) -> None:
        super().__init__()
        self.token = token
        self.channels = set(channels)
        self._calls: _Recorder[ApiCall] = _Recorder()
        self._script: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._messages: dict[str, Message] = {}
        self._clock = itertools.count(1)

    # --- what tests use ---

    @property
    def api_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/api"

    def reply(
        self, status: int, answer: Mapping[str, Any], *, retry_after: str | None = None
    ) -> None:
        """Answer the next request like this (then back to normal)."""
        with self._lock:
            self._script.append(Scripted(status, answer, retry_after))

    def fail(self, error: str, *, times: int = 1) -> None:
        """Answer the next ``times`` requests ``{"ok": false, "error": error}``."""
        for _ in range(times):
            self.reply(200, {"ok": False, "error": error})

    def rate_limit(self, retry_after: int = 1) -> None:
        self.reply(429, {"ok": False, "error": "ratelimited"}, retry_after=str(retry_after))

    @property
    def calls(self) -> list[ApiCall]:
        return self._calls.snapshot()

    def calls_of(self, method: str) -> list[ApiCall]:
        return [c for c in self._calls.snapshot() if c.method == method]

    def wait_for(self, count: int, within: float = 5.0) -> list[ApiCall]:
        return self._calls.wait_for(count, within)

    async def wait_for_async(self, count: int, within: float = 5.0) -> list[ApiCall]:
        return await self._calls.wait_for_async(count, within)

    @property
    def messages(self) -> list[Message]:
        """Messages posted, oldest first, as they read now (updates applied)."""
        with self._lock:
            return sorted(self._messages.values(), key=lambda m: float(m.ts))

    def message(self, ts: str) -> Message:
        with self._lock:
            return self._messages[ts]

    label = "Slack API test server"

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/api/{method}", self._handle)

    # --- answering ---

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        body = await request.read()
        payload = _json_or_none(body)
        scripted = self._scripted()
        if scripted is not None:
            status, answer, retry = scripted.status, dict(scripted.answer), scripted.retry_after
        else:
            status, retry = 200, None
            answer = self._answer(method, request, payload)
        self._calls.append(ApiCall(method, dict(request.headers), body, payload, status, answer))
        headers = {"Retry-After": retry} if retry else {}
        return web.json_response(answer, status=status, headers=headers)

    def _scripted(self) -> Scripted | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def _answer(self, method: str, request: web.Request, payload: Any) -> dict[str, Any]:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return {"ok": False, "error": "invalid_auth"}
        if not isinstance(payload, dict):
            return {"ok": False, "error": "invalid_arguments"}
        if method == "chat.postMessage":
            return self._post(payload)
        if method == "chat.update":
            return self._update(payload)
        return {"ok": False, "error": "unknown_method"}

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        channel = payload.get("channel")
        if channel not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        if not payload.get("text") and not payload.get("blocks"):
            return {"ok": False, "error": "no_text"}
        if api_problems(payload):
            return {"ok": False, "error": "invalid_blocks"}
        ts = f"{1_700_000_000 + next(self._clock)}.000100"
        thread = payload.get("thread_ts")
        message = Message(
            str(channel),
            ts,
            str(payload.get("text") or ""),
            list(payload.get("blocks") or []),
            str(thread) if thread else None,
        )
        with self._lock:
            self._messages[ts] = message
        return {
            "ok": True,
            "channel": channel,
            "ts": ts,
            "message": {"type": "message", "text": message.text, "ts": ts},
        }

    def _update(self, payload: dict[str, Any]) -> dict[str, Any]:
        ts = str(payload.get("ts") or "")
        with self._lock:
            message = self._messages.get(ts)
            if message is None or message.channel != payload.get("channel"):
                return {"ok": False, "error": "message_not_found"}
        if api_problems(payload):
            return {"ok": False, "error": "invalid_blocks"}
        with self._lock:
            message.updates.append(dict(payload))
            message.text = str(payload.get("text") or message.text)
            message.blocks = list(payload.get("blocks") or message.blocks)
        return {"ok": True, "channel": message.channel, "ts": ts, "text": message.text}


# --- Slack's side of a button press ---------------------------------------------------------


def press_payload(
    message: Message,
    action_id: str,
    *,
    user_id: str = "U0ANALYST",
    user_name: str = "dana",
    block: int = 0,
) -> dict[str, Any]:
    """The ``block_actions`` payload Slack sends when a user presses the button
    ``action_id`` in the ``block``-th actions block of ``message``."""
    actions = [b for b in message.blocks if b.get("type") == "actions"]
    chosen = actions[block]
    button = next(e for e in chosen["elements"] if e["action_id"] == action_id)
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": "T0TEAM"},
        "api_app_id": "A0APP",
        "token": "legacy-verification-token",
        "container": {
            "type": "message",
            "message_ts": message.ts,
            "channel_id": message.channel,
            "is_ephemeral": False,
        },
        "trigger_id": "123.456.abc",
        "team": {"id": "T0TEAM", "domain": "desk"},
        "channel": {"id": message.channel, "name": "alerts"},
        "message": {
            "type": "message",
            "text": message.text,
            "ts": message.ts,
            "blocks": message.blocks,
        },
        "response_url": "https://hooks.slack.com/actions/T0TEAM/1/abc",
        "actions": [
            {
                "action_id": action_id,
                "block_id": chosen["block_id"],
                "text": button["text"],
                "value": button["value"],
                "type": "button",
                "action_ts": "1700000000.123456",
            }
        ],
    }


def signed_request(
    secret: str, payload: Mapping[str, Any], *, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The form body and headers of an interactivity request, signed as Slack signs it."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    body = urlencode({"payload": json.dumps(payload)}).encode()
    base = f"v0:{stamp}:".encode() + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return body, {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }
