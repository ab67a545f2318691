"""AppriseChannel against real local servers answering as a self-hosted ntfy, a Matrix
homeserver and a JSON endpoint do: outcomes, retry or dead letter, one deadline, exactly once
per URL, and no token in any log, error or Redis record.

Apprise itself is not mocked: its ntfy, Matrix and JSON plugins make real HTTP requests (with
``requests``, in the channel's threads) to the servers below.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import secrets
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import aiohttp
import pytest
import redis.asyncio as aioredis
import structlog
from aiohttp import web
from hypothesis import assume, given
from hypothesis import strategies as st
from structlog.testing import capture_logs
from support.channel_fixtures import enqueue, make_match
from support.servers import LOOPBACK, bound_socket, unused_port

from monitor.app.logs import configure_logging
from monitor.app.wiring import build_channels
from monitor.deliver.build import delivery_policy, send_leases
from monitor.deliver.channels import Channel, DigestChannel, GroupChannel
from monitor.deliver.channels.apprise import (
    AppriseChannel,
    Attempt,
    combine,
    describe_url,
    http_status,
    judge_attempt,
    read_attempt,
)
from monitor.deliver.policy import RetryPolicy, Route
from monitor.deliver.queue import AlertQueue
from monitor.deliver.render.apprise_text import (
    apprise_digest_message,
    apprise_message,
    escape_markdown,
)
from monitor.deliver.render.digest import Digest
from monitor.deliver.worker import DeliveryPolicy, DeliveryReport, DeliveryWorker
from monitor.errors import (
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from monitor.model import RuleNote, Severity, Translation
from monitor.redisio import Keys
from monitor.settings import CHANNEL_KINDS, Settings, load_settings

TOKEN = "tk_XyzzySECRET0123456789abcdef"
"""ntfy access token: distinctive, so finding it anywhere proves a leak."""
PASSWORD = "MatrixPASSWORDq8z"
"""The Matrix bot's password (short enough that only the URL-aware masking catches it)."""
HOOK = "HOOKPATHsecret4242deadbeef"
"""The JSON endpoint's secret path."""
SECRETS = (TOKEN, PASSWORD, HOOK)
ACCESS = "syt_ACCESSTOKENmatrix77"
"""What the homeserver hands out at login; a secret as well."""
FAST = RetryPolicy(base=timedelta(milliseconds=50), cap=timedelta(milliseconds=200))


# --- the far ends -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """A scripted answer for one kind of request; ``delay`` holds it back (timeouts)."""

    status: int
    body: Any = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Received:
    kind: str
    method: str
    path: str
    headers: dict[str, str]
    payload: Any
    status: int


class DeskServer:
    """One HTTP server answering as three services do, told apart by path:

    - ntfy (self-hosted, https://docs.ntfy.sh/publish/): ``POST /`` with a JSON message naming
      its topic; a wrong or missing ``Authorization: Bearer`` token is ``401`` with ntfy's
      error JSON (``{"code": 40101, "http": 401, ...}``).
    - Matrix (client-server API v3): ``POST /login`` (password), ``POST /join/{room}``,
      ``PUT /rooms/{id}/send/m.room.message/{txn}``, ``POST /logout``; a wrong password is
      ``403 M_FORBIDDEN``, an unknown access token ``401 M_UNKNOWN_TOKEN``.
    - a JSON endpoint: ``POST /hook/<secret>`` takes Apprise's JSON; other paths are ``404``.

    ``script(kind, reply)`` sets the next answers to ``ntfy``, ``matrix-login``,
    ``matrix-send`` or ``json`` requests.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.port: int = sock.getsockname()[1]
        self._scripts: dict[str, deque[Reply]] = {}
        self._received: list[Received] = []
        self._changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # --- what tests use ---

    @property
    def ntfy_url(self) -> str:
        return f"ntfy://{TOKEN}@{LOOPBACK}:{self.port}/desk-alerts"

    @property
    def matrix_url(self) -> str:
        return f"matrix://bot:{PASSWORD}@{LOOPBACK}:{self.port}/#desk"

    @property
    def json_url(self) -> str:
        return f"json://{LOOPBACK}:{self.port}/hook/{HOOK}"

    def script(self, kind: str, reply: Reply, *, times: int = 1) -> None:
        with self._changed:
            self._scripts.setdefault(kind, deque()).extend([reply] * times)

    def received(self, kind: str | None = None) -> list[Received]:
        with self._changed:
            return [r for r in self._received if kind is None or r.kind == kind]

    def accepted(self, kind: str) -> list[Received]:
        return [r for r in self.received(kind) if r.status == 200]

    def wait_for(self, kind: str, count: int, within: float = 5.0) -> list[Received]:
        with self._changed:
            self._changed.wait_for(
                lambda: len([r for r in self._received if r.kind == kind]) >= count, within
            )
        found = self.received(kind)
        assert len(found) >= count, f"expected {count} {kind} request(s), got {len(found)}"
        return found

    # --- life cycle ---

    def __enter__(self) -> Self:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(10), "desk server did not start"
        return self

    def __exit__(self, *_: object) -> None:
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        loop.run_until_complete(self._runner.setup())
        loop.run_until_complete(web.SockSite(self._runner, self._sock).start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.close()

    # --- answering ---

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        kind, reply = self._answer(request, payload)
        with self._changed:
            self._received.append(
                Received(
                    kind, request.method, request.path, dict(request.headers), payload, reply.status
                )
            )
            self._changed.notify_all()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.json_response(reply.body, status=reply.status)

    def _scripted(self, kind: str) -> Reply | None:
        with self._changed:
            queue = self._scripts.get(kind)
            return queue.popleft() if queue else None

    def _answer(self, request: web.Request, payload: Any) -> tuple[str, Reply]:
        path = request.path
        auth = request.headers.get("Authorization", "")
        if path == "/" and request.method == "POST":
            return "ntfy", self._scripted("ntfy") or self._ntfy(auth, payload)
        if path.startswith("/_matrix/client/v3/"):
            return self._matrix(path.removeprefix("/_matrix/client/v3"), auth, payload)
        if path.startswith("/hook/"):
            ok = path == f"/hook/{HOOK}" and isinstance(payload, dict)
            return "json", self._scripted("json") or (Reply(200) if ok else Reply(404))
        return "other", Reply(404, {"error": "not found"})

    @staticmethod
    def _ntfy(auth: str, payload: Any) -> Reply:
        if auth != f"Bearer {TOKEN}":
            return Reply(401, {"code": 40101, "http": 401, "error": "unauthorized"})
        if not isinstance(payload, dict) or not payload.get("topic"):
            return Reply(400, {"code": 40009, "http": 400, "error": "invalid request"})
        return Reply(
            200,
            {
                "id": secrets.token_hex(6),
                "time": int(time.time()),
                "event": "message",
                "topic": payload["topic"],
                "message": payload.get("message", ""),
            },
        )

    def _matrix(self, path: str, auth: str, payload: Any) -> tuple[str, Reply]:
        if path == "/login":
            scripted = self._scripted("matrix-login")
            password = payload.get("password") if isinstance(payload, dict) else None
            if scripted is None and password != PASSWORD:
                scripted = Reply(403, {"errcode": "M_FORBIDDEN", "error": "Invalid password"})
            return "matrix-login", scripted or Reply(
                200,
                {
                    "access_token": ACCESS,
                    "user_id": "@bot:localhost",
                    "device_id": "DESK1",
                    "home_server": "localhost",
                },
            )
        if auth != f"Bearer {ACCESS}":
            return "matrix", Reply(
                401, {"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token passed."}
            )
        if path.startswith("/join/"):
            return "matrix-join", Reply(200, {"room_id": "!desk:localhost"})
        if path.startswith("/rooms/") and "/send/m.room.message/" in path:
            return "matrix-send", self._scripted("matrix-send") or Reply(
                200, {"event_id": f"${secrets.token_hex(6)}"}
            )
        if path == "/logout":
            return "matrix-logout", Reply(200, {})
        return "matrix", Reply(404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized"})


@pytest.fixture
def desk() -> Iterator[DeskServer]:
    with DeskServer(bound_socket()) as server:
        yield server


def deliver(channel: AppriseChannel, *what: Any) -> None:
    """Send each match (or digest) through ``channel`` in a fresh loop, then close it."""

    async def run() -> None:
        try:
            for item in what:
                if isinstance(item, Digest):
                    await channel.send_digest(item)
                else:
                    await channel.send(item)
        finally:
            await channel.close()

    asyncio.run(run())


def failure(channel: AppriseChannel) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        deliver(channel, make_match())
    return caught.value


def assert_no_secret(*shown: object) -> None:
    for thing in shown:
        text = (
            "".join(traceback.format_exception(thing))
            if isinstance(thing, BaseException)
            else f"{thing!s} {thing!r}"
        )
        for secret in (*SECRETS, ACCESS):
            assert secret not in text


# --- the three services -------------------------------------------------------------------------


def test_the_apprise_channel_is_a_channel_with_groups_and_digests() -> None:
    channel = AppriseChannel(["json://127.0.0.1/x"])
    assert isinstance(channel, Channel)
    assert isinstance(channel, GroupChannel)
    assert isinstance(channel, DigestChannel)


def test_ntfy_gets_the_alert_headline_first_with_its_token(desk: DeskServer) -> None:
    deliver(AppriseChannel([desk.ntfy_url], timeout=5), make_match())
    [posted] = desk.accepted("ntfy")
    assert posted.headers["Authorization"] == f"Bearer {TOKEN}"
    assert posted.payload["topic"] == "desk-alerts"
    assert posted.payload["title"] == "[HIGH] Kazakhstan opens tungsten tender"
    message = posted.payload["message"]
    assert message.startswith("Rule: Rule kz-tungsten (high)")
    assert "https://wire.example/wire/1" in message
    assert "*tungsten*" in message


def test_a_matrix_homeserver_is_logged_into_once_and_logged_out_of_on_close(
    desk: DeskServer,
) -> None:
    first, second = make_match(), make_match(item="wire:2", title="Second tender")
    deliver(AppriseChannel([desk.matrix_url], timeout=10, min_interval=timedelta(0)), first, second)
    assert len(desk.accepted("matrix-login")) == 1
    assert [r.path for r in desk.received("matrix-join")] == [
        "/_matrix/client/v3/join/#desk:localhost"
    ]
    sent = desk.accepted("matrix-send")
    assert len(sent) == 2
    assert sent[0].path != sent[1].path  # a new transaction id each message
    assert sent[0].payload["msgtype"] == "m.text"
    assert "Kazakhstan opens tungsten tender" in sent[0].payload["body"]
    assert "Second tender" in sent[1].payload["body"]
    assert desk.wait_for("matrix-logout", 1)


def test_a_json_endpoint_gets_the_alert(desk: DeskServer) -> None:
    deliver(AppriseChannel([desk.json_url], timeout=5), make_match())
    [posted] = desk.accepted("json")
    assert posted.payload["title"] == "[HIGH] Kazakhstan opens tungsten tender"
    assert posted.payload["type"] == "failure"  # high and critical are Apprise failures (red)
    assert "Rule: Rule kz-tungsten (high)" in posted.payload["message"]


def test_markdown_bodies_escape_feed_text(desk: DeskServer) -> None:
    match = make_match(title="Tender *closed* [early](javascript:alert(1))")
    deliver(AppriseChannel([desk.json_url], timeout=5, body_format="markdown"), match)
    [posted] = desk.accepted("json")
    message = posted.payload["message"]
    assert r"Tender \*closed\* \[early\]\(javascript:alert\(1\)\)" in message
    assert "**Rule:**" in message
    assert "(<https://wire.example/wire/1>)" in message


def test_a_digest_is_one_message_per_url(desk: DeskServer) -> None:
    digest = Digest(
        "apprise",
        datetime(2026, 3, 1, 8, 0, tzinfo=UTC),
        "UTC",
        (("minerals", (make_match(), make_match(item="wire:2", title="Second tender"))),),
    )
    deliver(AppriseChannel([desk.ntfy_url, desk.json_url], timeout=5), digest)
    [ntfy], [hook] = desk.accepted("ntfy"), desk.accepted("json")
    for body in (ntfy.payload["message"], hook.payload["message"]):
        assert "Kazakhstan opens tungsten tender" in body
        assert "Second tender" in body
    assert hook.payload["title"].startswith("Digest: 2 alerts")


def test_a_burst_is_one_message_listing_every_alert(desk: DeskServer) -> None:
    matches = [make_match(item=f"wire:{n}", title=f"Tender {n}") for n in range(3)]
    channel = AppriseChannel([desk.json_url], timeout=5)

    async def run() -> None:
        try:
            await channel.send_group(matches)
        finally:
            await channel.close()

    asyncio.run(run())
    [posted] = desk.accepted("json")
    assert posted.payload["title"] == "[HIGH] 3 alerts"
    assert all(f"Tender {n}" in posted.payload["message"] for n in range(3))


# --- retry or not -------------------------------------------------------------------------------


MATRIX_CODES = {
    400: "M_BAD_JSON",
    401: "M_UNKNOWN_TOKEN",
    403: "M_FORBIDDEN",
    404: "M_NOT_FOUND",
    429: "M_LIMIT_EXCEEDED",
}


def refusal(desk: DeskServer, kind: str, status: int) -> str:
    """Script the next ``kind`` request to fail with ``status`` as that service words it
    (ntfy's error JSON, Matrix's errcode); returns the URL to send to."""
    if kind == "ntfy":
        body: dict[str, Any] = {"code": status * 100 + 1, "http": status, "error": "failed"}
    elif kind == "matrix-send":
        body = {"errcode": MATRIX_CODES.get(status, "M_UNKNOWN"), "error": "failed"}
        if status == 429:
            body["retry_after_ms"] = 10
    else:
        body = {}
    # Matrix waits out a 429 and tries again on its own, up to its retry count.
    desk.script(kind, Reply(status, body), times=3 if kind == "matrix-send" else 1)
    return {"ntfy": desk.ntfy_url, "json": desk.json_url, "matrix-send": desk.matrix_url}[kind]


@pytest.mark.parametrize("kind", ["ntfy", "json", "matrix-send"])
@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_and_rate_limits_are_transient(
    desk: DeskServer, kind: str, status: int
) -> None:
    error = failure(AppriseChannel([refusal(desk, kind, status)], timeout=10))
    assert isinstance(error, TransientDeliveryError)
    assert f"HTTP {status}" in str(error)
    assert_no_secret(error)


@pytest.mark.parametrize("kind", ["ntfy", "json", "matrix-send"])
@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_permanent(desk: DeskServer, kind: str, status: int) -> None:
    error = failure(AppriseChannel([refusal(desk, kind, status)], timeout=10))
    assert isinstance(error, PermanentDeliveryError)
    assert f"HTTP {status}" in str(error)
    assert error.hint
    assert_no_secret(error)


def test_a_wrong_ntfy_token_is_permanent_and_says_credentials(desk: DeskServer) -> None:
    wrong = desk.ntfy_url.replace(TOKEN, "tk_wrongwrongwrongwrongwrong")
    error = failure(AppriseChannel([wrong], timeout=5))
    assert isinstance(error, PermanentDeliveryError)
    assert "refused the URL's credentials (HTTP 401)" in str(error)
    assert "tk_wrong" not in str(error)


def test_a_wrong_matrix_password_is_permanent(desk: DeskServer) -> None:
    wrong = desk.matrix_url.replace(PASSWORD, "not-the-password")
    error = failure(AppriseChannel([wrong], timeout=5))
    assert isinstance(error, PermanentDeliveryError)
    assert "refused the URL's credentials" in str(error)  # login 403, then register 401
    assert "not-the-password" not in str(error)


def test_a_slow_server_is_transient_within_the_deadline_and_the_loop_runs_on(
    desk: DeskServer,
) -> None:
    desk.script("json", Reply(200, delay=3.0))
    channel = AppriseChannel([desk.json_url], timeout=0.5)
    ticks = 0

    async def run() -> float:
        nonlocal ticks

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        try:
            with pytest.raises(
                TransientDeliveryError,
                match=r"no answer from #1 json://127\.0\.0\.1:\d+ within 0\.5s",
            ):
                await channel.send(make_match())
            return time.monotonic() - started
        finally:
            ticker.cancel()
            await channel.close()

    took = asyncio.run(run())
    assert 0.5 <= took < 1.5
    assert ticks >= 20  # the event loop was never blocked by the send


def test_connection_refused_is_transient() -> None:
    error = failure(AppriseChannel([f"json://{LOOPBACK}:{unused_port()}/hook/{HOOK}"], timeout=5))
    assert isinstance(error, TransientDeliveryError)
    assert "cannot reach #1 json://127.0.0.1" in str(error)
    assert_no_secret(error)


def test_a_url_apprise_cannot_use_is_permanent_without_echoing_it() -> None:
    error = failure(AppriseChannel([f"nosuchservice://{TOKEN}/x"], timeout=5))
    assert isinstance(error, PermanentDeliveryError)
    assert "Apprise cannot use URL #1 nosuchservice://***" in str(error)
    assert_no_secret(error)


def test_a_retry_goes_only_to_the_urls_that_lack_the_alert(desk: DeskServer) -> None:
    desk.script("json", Reply(500))
    channel = AppriseChannel([desk.ntfy_url, desk.json_url], timeout=5)

    async def run() -> None:
        try:
            with pytest.raises(TransientDeliveryError, match=r"HTTP 500 \(1 of 2 URLs have it\)"):
                await channel.send(make_match())
            await channel.send(make_match())  # the retry
            await channel.send(make_match())  # a redelivery: everyone has it, nothing is sent
        finally:
            await channel.close()

    asyncio.run(run())
    assert len(desk.received("ntfy")) == 1
    assert [r.status for r in desk.received("json")] == [500, 200]


def test_one_refusal_and_one_outage_retry_first_then_die(desk: DeskServer) -> None:
    desk.script("json", Reply(404))
    desk.script("ntfy", Reply(503, {"code": 50301, "http": 503, "error": "down"}))
    channel = AppriseChannel([desk.ntfy_url, desk.json_url], timeout=5)

    async def run() -> tuple[DeliveryError, DeliveryError]:
        try:
            with pytest.raises(DeliveryError) as first:
                await channel.send(make_match())
            desk.script("json", Reply(404))
            with pytest.raises(DeliveryError) as second:
                await channel.send(make_match())
            return first.value, second.value
        finally:
            await channel.close()

    first, second = asyncio.run(run())
    assert isinstance(first, TransientDeliveryError)
    assert "#1 ntfy://127.0.0.1" in str(first)
    assert "HTTP 404" in str(first)
    assert isinstance(second, PermanentDeliveryError)
    assert "(1 of 2 URLs have it)" in str(second)


# --- no secret anywhere -------------------------------------------------------------------------


@pytest.fixture
def daemon_logging() -> Iterator[io.StringIO]:
    """The daemon's logging at debug level into a buffer; put back afterwards (it is global)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=stream)
    yield stream
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_no_token_reaches_the_logs_even_at_debug(
    desk: DeskServer, daemon_logging: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every library's debug records are made too
    desk.script("json", Reply(401))
    desk.script("matrix-send", Reply(500, {"errcode": "M_UNKNOWN", "error": "failed"}))
    channel = AppriseChannel([desk.ntfy_url, desk.matrix_url, desk.json_url], timeout=10)
    with capture_logs() as logged, pytest.raises(DeliveryError) as caught:
        deliver(channel, make_match())
    structlog.get_logger("test").warning("not sent", error=str(caught.value))
    assert len(desk.accepted("ntfy")) == 1
    shown = [daemon_logging.getvalue(), caplog.text, json.dumps(logged, default=str)]
    assert "not sent" in shown[0]
    assert all(secret not in text for text in shown for secret in (*SECRETS, ACCESS))
    assert not [r for r in caplog.records if r.name.startswith(("apprise", "urllib3"))]
    assert_no_secret(caught.value, channel)


def test_the_channel_repr_names_urls_without_their_secrets(desk: DeskServer) -> None:
    channel = AppriseChannel([desk.ntfy_url, desk.matrix_url, f"tgram://123456789:{TOKEN}/-100123"])
    port = desk.port
    assert repr(channel) == (
        f"AppriseChannel(name='apprise', urls=['#1 ntfy://127.0.0.1:{port}', "
        f"'#2 matrix://127.0.0.1:{port}', '#3 tgram://***'])"
    )


# --- through the delivery worker and Redis --------------------------------------------------


PREFIX = "ap"


@pytest.fixture
async def queue(redis_client: aioredis.Redis) -> AlertQueue:
    queue = AlertQueue(redis_client, Keys(PREFIX))
    await queue.ensure_group()
    return queue


@pytest.fixture
async def worker_channel(desk: DeskServer) -> AsyncIterator[AppriseChannel]:
    channel = AppriseChannel([desk.ntfy_url, desk.json_url], timeout=5, min_interval=timedelta(0))
    yield channel
    await channel.close()


def make_worker(queue: AlertQueue, channel: AppriseChannel, attempts: int) -> DeliveryWorker:
    return DeliveryWorker(
        queue,
        {"apprise": channel},
        DeliveryPolicy(
            routes=(Route(channels=("apprise",)),),
            retry=RetryPolicy(FAST.base, FAST.cap, max_attempts=attempts),
        ),
        consumer="w1",
        jitter=lambda: 1.0,
    )


async def run_until(worker: DeliveryWorker, done: Any, within: float = 20.0) -> DeliveryReport:
    total = DeliveryReport()
    deadline = time.monotonic() + within
    while not done():
        assert time.monotonic() < deadline, "condition not reached in time"
        total.merge(await worker.run_once(block_ms=50))
    assert await worker.settle(within)
    return total


async def everything_in(client: aioredis.Redis) -> str:
    """Every key and value in the Redis database, as text."""
    parts = []
    for key in await client.keys("*"):
        kind = await client.type(key)
        if kind == "stream":
            parts.append(repr(await client.xrange(key)))
        elif kind == "hash":
            parts.append(repr(await client.hgetall(key)))
        elif kind == "string":
            parts.append(repr(await client.get(key)))
        elif kind == "zset":
            parts.append(repr(await client.zrange(key, 0, -1, withscores=True)))
        elif kind == "set":
            parts.append(repr(await client.smembers(key)))
        elif kind == "list":
            parts.append(repr(await client.lrange(key, 0, -1)))
        parts.append(repr(key))
    return "\n".join(parts)


async def test_the_worker_retries_a_500_and_sends_once_to_each_url(
    queue: AlertQueue, desk: DeskServer, worker_channel: AppriseChannel
) -> None:
    desk.script("json", Reply(500), times=2)
    await enqueue(queue.client, PREFIX, make_match())
    worker = make_worker(queue, worker_channel, attempts=5)
    await run_until(worker, lambda: len(desk.accepted("json")) == 1)
    await worker.run_once()
    assert len(desk.received("ntfy")) == 1
    assert [r.status for r in desk.received("json")] == [500, 500, 200]
    assert await queue.stream_counts() == {"queued": 0, "pending": 0, "dead": 0}


async def test_the_worker_dead_letters_a_refusal_without_the_token(
    queue: AlertQueue, desk: DeskServer, worker_channel: AppriseChannel
) -> None:
    desk.script("ntfy", Reply(401, {"code": 40101, "http": 401, "error": "unauthorized"}))
    await enqueue(queue.client, PREFIX, make_match())
    worker = make_worker(queue, worker_channel, attempts=5)
    with capture_logs() as logged:
        await run_until(worker, lambda: len(desk.received("ntfy")) == 1)
        await worker.run_once()
    [letter] = await queue.dead_letters()
    assert letter.channel == "apprise"
    assert "#1 ntfy://127.0.0.1" in letter.reason
    assert "HTTP 401" in letter.reason
    assert "(1 of 2 URLs have it)" in letter.reason
    assert len(desk.accepted("json")) == 1
    stored = await everything_in(queue.client)
    logs = json.dumps(logged, default=str)
    for secret in (*SECRETS, ACCESS):
        assert secret not in stored
        assert secret not in logs


async def test_the_worker_gives_up_on_an_outage_with_the_reason(
    queue: AlertQueue, desk: DeskServer, worker_channel: AppriseChannel
) -> None:
    desk.script("json", Reply(503), times=3)
    await enqueue(queue.client, PREFIX, make_match())
    worker = make_worker(queue, worker_channel, attempts=3)
    await run_until(worker, lambda: len(desk.received("json")) == 3)
    await worker.run_once()
    [letter] = await queue.dead_letters()
    assert "gave up after 3 attempts" in letter.reason
    assert "HTTP 503" in letter.reason
    assert len(desk.received("ntfy")) == 1  # the URL that took it at once got it once
    assert HOOK not in await everything_in(queue.client)


# --- reading Apprise (pure) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [(500, 500), (401, 401), (40101, 401), (50301, 503), (1234, None), (42, None)],
)
def test_http_status_reads_ntfys_own_codes(code: int, status: int | None) -> None:
    assert http_status(code) == status


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            ["Failed to send ntfy notification to topic 'x': unauthorized, error=40101."],
            Attempt(False, status=401),
        ),
        (
            ["Failed to send JSON POST notification: Internal server error., error=500."],
            Attempt(False, status=500),
        ),
        (
            [
                "Failed to handshake with Matrix server: error=401.",
                "Failed to handshake with Matrix server: error=503.",
            ],
            Attempt(False, status=503),
        ),
        (
            ["Matrix server requested we throttle back 10ms; retries left 0."],
            Attempt(False, rate_limited=True),
        ),
        (
            ["A Connection error occurred sending JSON notification."],
            Attempt(False, unreachable=True),
        ),
        (
            ["A Connection error occurred.", "Socket Exception: Read timed out. (read timeout=5)"],
            Attempt(False, timed_out=True, unreachable=True),
        ),
        ([], Attempt(False)),
    ],
)
def test_read_attempt(lines: list[str], expected: Attempt) -> None:
    assert read_attempt(False, lines) == expected


def test_an_accepted_send_ignores_what_was_logged() -> None:
    assert read_attempt(True, ["error=500"]) == Attempt(True)


@pytest.mark.parametrize(
    ("attempt", "kind", "says"),
    [
        (Attempt(True), None, ""),
        (Attempt(False, status=500), TransientDeliveryError, "answered HTTP 500"),
        (Attempt(False, status=429), TransientDeliveryError, "answered HTTP 429"),
        (Attempt(False, status=408), TransientDeliveryError, "answered HTTP 408"),
        (Attempt(False, status=401), PermanentDeliveryError, "credentials"),
        (Attempt(False, status=404), PermanentDeliveryError, "topic, room or hook"),
        (Attempt(False, status=400), PermanentDeliveryError, "refused the alert (HTTP 400)"),
        (Attempt(False, status=302), PermanentDeliveryError, "HTTP 302"),
        (Attempt(False, rate_limited=True), TransientDeliveryError, "rate-limiting (HTTP 429)"),
        (Attempt(False, timed_out=True), TransientDeliveryError, "within 5s"),
        (Attempt(False, unreachable=True), TransientDeliveryError, "cannot reach"),
        (Attempt(False, unusable=True), PermanentDeliveryError, "cannot use URL"),
        (Attempt(False, crashed="KeyError"), TransientDeliveryError, "KeyError"),
        (Attempt(False), TransientDeliveryError, "did not accept"),
    ],
)
def test_judge_attempt(attempt: Attempt, kind: type[DeliveryError] | None, says: str) -> None:
    error = judge_attempt("apprise", "#1 json://h", attempt, timeout=5)
    if kind is None:
        assert error is None
    else:
        assert isinstance(error, kind)
        assert says in str(error)


def test_combine_keeps_retrying_while_any_url_may_still_take_it() -> None:
    gone = PermanentDeliveryError("apprise", "#1 refused", hint="fix #1")
    down = TransientDeliveryError("apprise", "#2 down")
    assert isinstance(combine("apprise", [gone, down], have=1, total=3), TransientDeliveryError)
    both = combine("apprise", [gone, gone], have=1, total=3)
    assert isinstance(both, PermanentDeliveryError)
    assert str(both) == "apprise: #1 refused; #1 refused (1 of 3 URLs have it) (hint: fix #1)"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ntfys://ntfy.example.org/topic", "#1 ntfys://ntfy.example.org"),
        ("ntfy://tk_abc@127.0.0.1:8080/topic", "#1 ntfy://127.0.0.1:8080"),
        ("matrix://bot:pw@matrix.example.org/#room", "#1 matrix://matrix.example.org"),
        ("json://[::1]:8080/path", "#1 json://[::1]:8080"),
        ("tgram://123456789:AAHsecretsecret/-1001", "#1 tgram://***"),
        ("discord://1234567890/webhooktoken", "#1 discord://***"),
        ("msteams://a1b2@c3d4/tokenb/tokenc", "#1 msteams://***"),
        ("not a url", "#1 ?://***"),
    ],
)
def test_describe_url_names_only_the_service_and_a_real_host(url: str, shown: str) -> None:
    assert describe_url(url, 1) == shown


TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_:"


@given(st.text(alphabet=TOKEN_CHARS, min_size=8))
def test_describe_url_never_shows_a_token_in_the_host_or_path(token: str) -> None:
    assume(token != "localhost")  # a host name, not a token
    for url in (f"tgram://{token}/chat", f"discord://123/{token}", f"json://host.example/{token}"):
        assert token not in describe_url(url, 1).partition("://")[2].replace("host.example", "")


@given(st.text())
def test_escaped_markdown_reads_back_as_the_text(text: str) -> None:
    escaped = escape_markdown(text)
    assert re.sub(r"\\(.)", r"\1", escaped, flags=re.DOTALL) == text
    # With the escaped pairs taken out, no character that starts markup is left.
    assert not re.search(r"[\\*_`\[\]()#<>!|~]", re.sub(r"\\.", "", escaped, flags=re.DOTALL))


def test_a_digest_lists_every_match_of_the_window() -> None:
    matches = tuple(make_match(item=f"wire:{n}", title=f"Item {n}") for n in range(40))
    digest = Digest("apprise", datetime(2026, 3, 1, 8, tzinfo=UTC), "UTC", (("minerals", matches),))
    message = apprise_digest_message(digest)
    assert message.title.startswith("Digest: 40 alerts")
    assert all(f"Item {n}\n" in message.body for n in range(40))


def test_a_critical_alert_is_an_apprise_failure_type() -> None:
    message = apprise_message(make_match(severity=Severity.CRITICAL))
    assert message.severity is Severity.CRITICAL
    assert message.title.startswith("[CRITICAL] ")


# --- the config ---------------------------------------------------------------------------------


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "monitor.yaml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, env=env or {})


APPRISE_CONFIG = """\
channels:
  apprise:
    urls:
      - ${NTFY_URL}
      - ${MATRIX_URL}
    format: markdown
    timeout: 20s
    rate_limit: 2s
    digest: {schedule: "0 8 * * *"}
routes:
  - {channels: [apprise]}
"""


async def test_the_apprise_config_builds_a_channel_with_masked_urls(tmp_path: Path) -> None:
    env = {
        "NTFY_URL": f"ntfy://{TOKEN}@ntfy.example.org/desk",
        "MATRIX_URL": f"matrix://bot:{PASSWORD}@matrix.example.org/#desk",
    }
    settings = load(tmp_path, APPRISE_CONFIG, env)
    assert "apprise" in CHANNEL_KINDS
    config = settings.channels.apprise
    assert config is not None
    assert config.active
    assert config.format == "markdown"
    assert settings.channels.active_names() == ("apprise",)
    assert set(settings.secrets()) >= {env["NTFY_URL"], env["MATRIX_URL"], TOKEN, PASSWORD}
    assert TOKEN not in repr(settings)
    assert PASSWORD not in repr(settings)
    assert send_leases(settings)["apprise"] >= timedelta(seconds=22)
    assert "apprise" in delivery_policy(settings).digests
    async with aiohttp.ClientSession() as session:
        channels = build_channels(settings, session)
        channel = channels["apprise"]
        assert isinstance(channel, AppriseChannel)
        assert channel.min_interval == timedelta(seconds=2)
        assert channel.deadline == timedelta(seconds=20)
        assert repr(channel) == (
            "AppriseChannel(name='apprise', urls=['#1 ntfy://ntfy.example.org', "
            "'#2 matrix://matrix.example.org'])"
        )
        await channel.close()


def test_one_string_may_hold_several_urls_and_an_empty_one_switches_it_off(
    tmp_path: Path,
) -> None:
    several = load(
        tmp_path, 'channels: {apprise: {urls: "json://a.example/x  ntfy://b.example/t"}}\n'
    )
    assert several.channels.apprise is not None
    assert len(several.channels.apprise.urls) == 2
    off = load(tmp_path, "channels:\n  console: {}\n  apprise: {urls: '${APPRISE_URLS:-}'}\n")
    assert off.channels.apprise is not None
    assert not off.channels.apprise.active
    assert off.channels.active_names() == ("console",)


def test_a_url_that_is_not_an_apprise_url_is_refused_without_echoing_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"URL 2 is not an Apprise URL") as caught:
        load(tmp_path, f"channels:\n  apprise:\n    urls: [json://a.example/x, {TOKEN}]\n")
    assert TOKEN not in str(caught.value)


def test_an_unknown_apprise_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="url"):
        load(tmp_path, "channels: {apprise: {url: json://a.example/x}}\n")


def test_a_foreign_alert_carries_its_english_and_gloss_beside_the_original() -> None:
    match = replace(
        make_match(title="商务部：钨出口管制"),
        gloss="China · tungsten · export controls",
        translation=Translation(
            title="Ministry of Commerce: tungsten export controls", provider="libretranslate"
        ),
    )
    for body_format in ("text", "markdown"):
        message = apprise_message(match, body_format)
        assert message.title == "[HIGH] 商务部：钨出口管制"  # the publisher's words, verbatim
        first = message.body.splitlines()[0]
        assert "Ministry of Commerce: tungsten export controls" in first
        assert "machine translation (libretranslate)" in first
        assert "China · tungsten · export controls" in message.body


def test_an_unavailable_translation_says_so() -> None:
    match = replace(make_match(), translation=Translation(unavailable=True), gloss="tungsten")
    body = apprise_message(match).body
    assert body.startswith("English: translation unavailable\n")
    assert "Gloss: tungsten" in body


def test_one_message_per_article_names_the_other_rules() -> None:
    match = replace(make_match(), also=(RuleNote("us-bids", "US bids", Severity.MEDIUM),))
    body = apprise_message(match).body
    assert "Also: US bids (MEDIUM)" in body
    assert "Rule id: kz-tungsten, us-bids (rule set rv1)" in body
