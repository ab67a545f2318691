"""Slack's interactivity endpoint: the feedback buttons' presses, signed by Slack.

It runs on a port of its own (``channels.slack.interactivity``), not on the console's:
Slack must reach it from the internet and cannot sign in, while the console must never be
reachable without a login or a trusted proxy.  Only this one path is public, and every
request on it must carry Slack's signature (HMAC-SHA256 under the app's signing secret)
made within five minutes, and never seen before (a replay is refused).

A press is recorded (who, what, when, which alert), applied (a vote, or a silence), and
answered with 200 at once; the message is then updated in the background (``chat.update``)
to say who did what, since Slack wants its answer within three seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from collections.abc import Callable
from datetime import datetime
from urllib.parse import parse_qs

import structlog
from aiohttp import web

from monitor.deliver.channels.slack_app import SlackWebApi
from monitor.deliver.feedback import (
    Press,
    check_signature,
    parse_press,
    updated_blocks,
)
from monitor.deliver.feedback_store import FeedbackStore, apply_press
from monitor.deliver.silences import SilenceStore
from monitor.errors import DeliveryError, StoreError
from monitor.redact import mask_text

log = structlog.get_logger("monitor.console.slack_actions")

MAX_BODY = 1024 * 1024
"""A press carries the whole message (up to 50 blocks): well under a megabyte."""
UPDATE_TIMEOUT = 15.0


class SlackActionsServer:
    """``await start()`` listens on ``host:port`` (or a socket given, for tests) and serves
    ``path``; ``await stop()`` waits for the message updates still running, then closes."""

    def __init__(
        self,
        signing_secret: str,
        *,
        feedback: FeedbackStore,
        silences: SilenceStore,
        api: SlackWebApi,
        clock: Callable[[], datetime],
        host: str = "127.0.0.1",
        port: int = 8082,
        path: str = "/slack/actions",
    ) -> None:
        self._secret = signing_secret
        self.feedback = feedback
        self.silences = silences
        self.api = api
        self.clock = clock
        self.host = host
        self.port = port
        self.path = path
        self._runner: web.AppRunner | None = None
        self._updates: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"SlackActionsServer(host={self.host!r}, port={self.port}, path={self.path!r})"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(self.path, self.handle)
        return app

    async def start(self, sock: socket.socket | None = None) -> bool:
        """Listen; a port already in use is logged, not fatal (alerts still go out)."""
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        try:
            if sock is not None:
                await web.SockSite(runner, sock).start()
                self.port = sock.getsockname()[1]
            else:
                await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            log.error("Slack button endpoint not started", port=self.port, error=str(exc))
            await runner.cleanup()
            return False
        self._runner = runner
        log.info("Slack button endpoint listening", host=self.host, port=self.port, path=self.path)
        return True

    async def stop(self) -> None:
        if self._updates:
            await asyncio.wait(set(self._updates), timeout=UPDATE_TIMEOUT)
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self.api.close()

    async def settle(self) -> None:
        """Wait for the message updates started so far (for tests and shutdown)."""
        while self._updates:
            await asyncio.wait(set(self._updates))

    # -- one request ----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        now = self.clock()
        timestamp = request.headers.get("X-Slack-Request-Timestamp")
        signature = request.headers.get("X-Slack-Signature")
        refusal = check_signature(self._secret, timestamp, signature, body, now)
        if refusal is not None:
            log.warning("Slack request refused", reason=refusal.value, peer=request.remote)
            return web.Response(status=401, text=refusal.value)
        assert signature is not None
        seen = hashlib.sha256(signature.strip().encode()).hexdigest()
        try:
            if not await self.feedback.first_time(seen):
                log.warning("Slack request refused", reason="replayed", peer=request.remote)
                return web.Response(status=401, text="request already handled (replay)")
            press = self._press(body)
            if press is None:
                return web.Response(status=200)  # another interaction: nothing of ours to do
            await self._apply(press, now)
        except StoreError as exc:
            log.error("Slack button press not recorded (Redis)", error=str(exc))
            return web.Response(status=503, text="try again in a moment")
        task = asyncio.create_task(self._update_message(press, now), name="slack-update")
        self._updates.add(task)
        task.add_done_callback(self._updates.discard)
        return web.Response(status=200)

    @staticmethod
    def _press(body: bytes) -> Press | None:
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        values = form.get("payload")
        if not values:
            return None
        try:
            payload = json.loads(values[0])
        except ValueError:
            return None
        return parse_press(payload) if isinstance(payload, dict) else None

    async def _apply(self, press: Press, now: datetime) -> None:
        """Record the press, then its effect: a vote, or a silence by story, by a rule's
        source, or of the rule (``apply_press``, as the console's Inbox does)."""
        silence = await apply_press(press, now, feedback=self.feedback, silences=self.silences)
        bound = log.bind(
            user=press.who, action=press.action.value, rule=press.ref.rule, alert=press.ref.alert
        )
        if silence is None:
            bound.info("alert judged in Slack" if press.action.is_vote else "Slack press recorded")
        else:
            bound.info("silence added from Slack", silence=silence.id, target=silence.target)

    async def _update_message(self, press: Press, now: datetime) -> None:
        """Show who did what under the pressed buttons; a failure is logged, the press
        stands."""
        if not press.channel_id or not press.message_ts or not press.blocks:
            return
        blocks = updated_blocks(press.blocks, press, now)
        try:
            await self.api.update(
                press.channel_id, press.message_ts, press.text or "monitor alert", blocks
            )
        except DeliveryError as exc:
            log.warning("Slack message not updated", error=mask_text(str(exc)))
        except Exception as exc:  # an update is a courtesy; never crash the endpoint
            log.exception("Slack message update failed", error=repr(exc))
