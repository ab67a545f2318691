"""Real local servers for channel tests: a Slack incoming-webhook look-alike and an SMTP server.

Both listen on a free loopback port in a background thread with its own event loop, so they
work the same from synchronous tests, from ``asyncio.run`` and from a daemon under test.  They
record what they receive and can be scripted to fail the way the real services fail.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeVar

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 10.0


def bound_socket() -> socket.socket:
    """A TCP socket bound to a free loopback port: handing it to the server avoids port races."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, 0))
    return sock


def unused_port() -> int:
    """A loopback port nothing listens on (right now), for "connection refused" tests."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


T = TypeVar("T")


class _Recorder(Generic[T]):
    """A thread-safe list that tests can wait on while a server thread appends to it."""

    def __init__(self) -> None:
        self._items: list[T] = []
        self._changed = threading.Condition()

    def append(self, item: T) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    def snapshot(self) -> list[T]:
        with self._changed:
            return list(self._items)

    def wait_for(self, count: int, within: float) -> list[T]:
        """Block until at least ``count`` items arrived; AssertionError after ``within`` s."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._items) >= count, within):
                raise AssertionError(
                    f"expected {count} item(s) within {within:g}s, got {len(self._items)}"
                )
            return list(self._items)

    async def wait_for_async(self, count: int, within: float) -> list[T]:
        """Like ``wait_for`` but yields to the event loop, so a daemon in it keeps running."""
        deadline = time.monotonic() + within
        while True:
            items = self.snapshot()
            if len(items) >= count:
                return items
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"expected {count} item(s) within {within:g}s, got {len(items)}"
                )
            await asyncio.sleep(0.01)


# --- Slack ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpReply:
    """One scripted answer; ``delay`` (seconds) holds the answer back to provoke timeouts."""

    status: int = 200
    body: str = "ok"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0


OK = HttpReply()


@dataclass(frozen=True, slots=True)
class SlackRequest:
    """One request the server received, and what it answered."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    payload: Any
    """The JSON body parsed, or None when it was not JSON."""
    reply: HttpReply
    received_at: float = 0.0
    """``time.monotonic()`` when the request arrived, for timing and latency measurements."""


def slack_problems(payload: Any) -> list[str]:
    """The Block Kit limits a payload breaks, as Slack checks them (a useful subset)."""
    if not isinstance(payload, dict):
        return ["payload is not a JSON object"]
    blocks = payload.get("blocks")
    if not payload.get("text") and not blocks:
        return ["neither text nor blocks"]
    problems: list[str] = []
    if blocks is not None:
        if not isinstance(blocks, list) or len(blocks) > 50:
            return ["blocks must be a list of at most 50"]
        for index, block in enumerate(blocks):
            problems += [f"block {index}: {p}" for p in _block_problems(block)]
    return problems


def _block_problems(block: Any) -> list[str]:
    if not isinstance(block, dict):
        return ["not an object"]
    kind = block.get("type")
    limits = {"header": 150, "section": 3000}
    texts: list[Any] = []
    if kind in limits:
        texts = [block.get("text")]
    elif kind == "context":
        elements = block.get("elements") or []
        if not 1 <= len(elements) <= 10:
            return ["context needs 1 to 10 elements"]
        texts = elements
    else:
        return []
    problems = []
    for text in texts:
        value = text.get("text") if isinstance(text, dict) else None
        if not isinstance(value, str) or not value:
            problems.append("missing text")
        elif len(value) > limits.get(str(kind), 3000):
            problems.append(f"text longer than {limits.get(str(kind), 3000)}")
        elif kind == "header" and text.get("type") != "plain_text":
            problems.append("header text must be plain_text")
    return problems


class _Running:
    """``with Server() as server:`` starts the server and always stops it."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class AioServerThread(_Running):
    """An aiohttp server on its own event loop in a thread, on a free loopback port: the
    life cycle every look-alike server shares.  Subclasses add their routes (``_routes``)."""

    label = "test server"
    """How start-up failures name the server."""

    def __init__(self) -> None:
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._failure: BaseException | None = None

    def _routes(self, app: web.Application) -> None:
        raise NotImplementedError

    # --- life cycle ---

    def start(self) -> Self:
        sock = bound_socket()
        self.port = sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(sock, ready), name=self.label, daemon=True
        )
        self._thread.start()
        if not ready.wait(START_TIMEOUT) or self._failure is not None:
            self.stop()
            raise RuntimeError(f"{self.label} did not start: {self._failure!r}")
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and the loop; safe to call twice."""
        if self._thread is not None and self._loop is not None:
            if self._thread.is_alive():
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(START_TIMEOUT)
            self._thread = None

    def _run(self, sock: socket.socket, ready: threading.Event) -> None:
        assert self._loop is not None
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(sock))
            ready.set()
            loop.run_forever()
        except BaseException as exc:  # reported by start()
            self._failure = exc
            sock.close()
            ready.set()
        finally:
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            _cancel_leftovers(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            asyncio.set_event_loop(None)

    async def _serve(self, sock: socket.socket) -> None:
        app = web.Application()
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()


class SlackServer(AioServerThread):
    """An HTTP server that answers like a Slack incoming webhook.

    The webhook path ``/services/T000/B000/<secret>`` answers ``200 ok`` to a valid payload,
    ``400 invalid_payload`` to a body that is not JSON, ``400 invalid_blocks`` to blocks over
    Slack's limits, and any other path ``404 no_service`` (an unknown or revoked webhook).
    ``reply()`` scripts the next answers, ``set_default()`` every later one.
    """

    def __init__(self, *, secret: str | None = None, validate: bool = True) -> None:
        super().__init__()
        self.secret = secret or f"SECRET{secrets.token_hex(8)}"
        self.path = f"/services/T000/B000/{self.secret}"
        self.validate = validate
        self._requests: _Recorder[SlackRequest] = _Recorder()
        self._script: deque[HttpReply] = deque()
        self._default: HttpReply | None = None
        self._lock = threading.Lock()

    label = "Slack test server"

    def _routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)

    # --- what tests use ---

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """The webhook URL to give a SlackChannel; it embeds ``secret`` as real ones do."""
        return f"{self.base_url}{self.path}"

    def reply(
        self,
        status: int,
        body: str = "",
        *,
        headers: Mapping[str, str] | None = None,
        retry_after: float | str | None = None,
        delay: float = 0.0,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests like this (then back to normal)."""
        extra = dict(headers or {})
        if retry_after is not None:
            extra["Retry-After"] = str(retry_after)
        with self._lock:
            self._script.extend([HttpReply(status, body, extra, delay)] * times)

    def set_default(self, reply: HttpReply | None) -> None:
        """Answer every request not scripted by ``reply()`` like this; None restores normal."""
        with self._lock:
            self._default = reply

    @property
    def requests(self) -> list[SlackRequest]:
        return self._requests.snapshot()

    @property
    def payloads(self) -> list[Any]:
        """Every JSON payload received, in order, whatever the server answered."""
        return [r.payload for r in self._requests.snapshot()]

    def wait_for(self, count: int, within: float = 5.0) -> list[SlackRequest]:
        return self._requests.wait_for(count, within)

    async def wait_for_async(self, count: int, within: float = 5.0) -> list[SlackRequest]:
        return await self._requests.wait_for_async(count, within)

    # --- answering ---

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        arrived = time.monotonic()
        payload = _json_or_none(body)
        reply = self._next_reply(request, payload)
        self._requests.append(
            SlackRequest(
                request.method, request.path, dict(request.headers), body, payload, reply, arrived
            )
        )
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, text=reply.body, headers=dict(reply.headers))

    def _next_reply(self, request: web.Request, payload: Any) -> HttpReply:
        with self._lock:
            if self._script:
                return self._script.popleft()
            if self._default is not None:
                return self._default
        if request.path != self.path:
            return HttpReply(404, "no_service")
        if request.method != "POST":
            return HttpReply(405, "invalid_method")
        if payload is None:
            return HttpReply(400, "invalid_payload")
        if self.validate and slack_problems(payload):
            return HttpReply(400, "invalid_blocks")
        return OK


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel handlers still sleeping (a delayed reply whose client gave up) and let them end."""
    leftovers = asyncio.all_tasks(loop)
    for task in leftovers:
        task.cancel()
    if leftovers:
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


# --- SMTP -------------------------------------------------------------------------------------

Stage = Literal["MAIL", "RCPT", "DATA"]
TlsMode = Literal["starttls", "implicit"]


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One message the SMTP server accepted: envelope, parsed message and the raw bytes."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes
    authenticated_as: str | None
    tls: bool


class _Handler:
    """aiosmtpd hooks: enforce AUTH when configured, play scripted replies, record messages."""

    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.owner.auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        scripted = self.owner.scripted("MAIL")
        if scripted:
            return scripted
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        scripted = self.owner.refusal_for(address) or self.owner.scripted("RCPT")
        if scripted:
            return scripted
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        scripted = self.owner.scripted("DATA")
        if scripted:
            return scripted
        raw = bytes(envelope.original_content or b"")
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        login = session.auth_data if session.authenticated else None
        self.owner.received(
            ReceivedMessage(
                envelope.mail_from,
                tuple(envelope.rcpt_tos),
                message,
                raw,
                login,
                session.ssl is not None,
            )
        )
        return "250 2.0.0 Message accepted for delivery"


class _Controller(Controller):
    """aiosmtpd's threaded controller, serving on a socket we bound (no free-port race)."""

    def __init__(self, handler: Any, sock: socket.socket, **kwargs: Any) -> None:
        self._sock = sock
        super().__init__(handler, hostname=LOOPBACK, port=sock.getsockname()[1], **kwargs)

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


class SmtpServer(_Running):
    """An aiosmtpd server on a free loopback port that records the messages it accepts.

    ``auth=(user, password)`` makes it require AUTH (PLAIN/LOGIN) before MAIL, over a plain
    connection unless ``tls`` is set; ``tls="starttls"`` or ``"implicit"`` serves a throwaway
    self-signed certificate that ``client_tls_context()`` trusts.  ``reply()`` scripts
    failures such as 421 or 550 for the next messages.
    """

    def __init__(self, *, auth: tuple[str, str] | None = None, tls: TlsMode | None = None) -> None:
        self.auth = auth
        self.tls = tls
        self.host = LOOPBACK
        self.port = 0
        self.logins: list[str] = []
        """User names that authenticated successfully (passwords are never kept)."""
        self.failed_logins: list[str] = []
        self._messages: _Recorder[ReceivedMessage] = _Recorder()
        self._script: dict[str, deque[str]] = {"MAIL": deque(), "RCPT": deque(), "DATA": deque()}
        self._refusals: dict[str, deque[str]] = {}
        self._lock = threading.Lock()
        self._controller: _Controller | None = None
        self._certs: tempfile.TemporaryDirectory[str] | None = None
        self._cert_pem = ""

    # --- what tests use ---

    def refuse(self, address: str, answer: str, *, times: int = 1) -> None:
        """Answer RCPT TO for ``address`` with ``answer`` ("550 5.1.1 No such user"), the
        next ``times`` times it is named; other recipients are accepted as usual."""
        with self._lock:
            self._refusals.setdefault(address.lower(), deque()).extend([answer] * times)

    def refusal_for(self, address: str) -> str | None:
        with self._lock:
            queue = self._refusals.get(address.lower())
            return queue.popleft() if queue else None

    def reply(self, answer: str, *, times: int = 1, stage: Stage = "DATA") -> None:
        """Answer the next ``times`` messages with ``answer`` ("421 4.3.2 Busy") at ``stage``."""
        with self._lock:
            self._script[stage].extend([answer] * times)

    @property
    def messages(self) -> list[ReceivedMessage]:
        return self._messages.snapshot()

    def wait_for(self, count: int, within: float = 5.0) -> list[ReceivedMessage]:
        return self._messages.wait_for(count, within)

    async def wait_for_async(self, count: int, within: float = 5.0) -> list[ReceivedMessage]:
        return await self._messages.wait_for_async(count, within)

    def client_tls_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate (and checks the host name)."""
        if not self._cert_pem:
            raise RuntimeError("this SmtpServer was started without tls")
        return ssl.create_default_context(cadata=self._cert_pem)

    # --- used by the handler, in the server thread ---

    def scripted(self, stage: str) -> str | None:
        with self._lock:
            queue = self._script[stage]
            return queue.popleft() if queue else None

    def received(self, message: ReceivedMessage) -> None:
        self._messages.append(message)

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self.auth is None:
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        ok = (login, auth_data.password.decode("utf-8", "replace")) == self.auth
        (self.logins if ok else self.failed_logins).append(login)
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    # --- life cycle ---

    def start(self) -> Self:
        sock = bound_socket()
        self.port = sock.getsockname()[1]
        options: dict[str, Any] = {"ready_timeout": START_TIMEOUT}
        if self.auth is not None:
            options["authenticator"] = self.authenticate
        # AUTH is enforced in handle_MAIL rather than with auth_required, which warns when
        # combined with a plain connection (and warnings are errors in this suite).
        options["auth_require_tls"] = self.tls == "starttls"
        if self.tls is not None:
            context = self._server_tls_context()
            key = "tls_context" if self.tls == "starttls" else "ssl_context"
            options[key] = context
            options["require_starttls"] = self.tls == "starttls"
        self._controller = _Controller(_Handler(self), sock, **options)
        try:
            self._controller.start()
        except BaseException:
            self._controller.stop(no_assert=True)
            if not self._controller.loop.is_closed():
                self._controller.loop.close()
            sock.close()
            self._controller = None
            self._cleanup_certs()
            raise
        return self

    def stop(self) -> None:
        """Stop the server thread, close its loop and socket, remove certificates; idempotent."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        self._cleanup_certs()

    def _server_tls_context(self) -> ssl.SSLContext:
        self._certs = tempfile.TemporaryDirectory(prefix="smtp-test-tls-")
        cert, key = make_self_signed(Path(self._certs.name))
        self._cert_pem = cert.read_text()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return context

    def _cleanup_certs(self) -> None:
        if self._certs is not None:
            self._certs.cleanup()
            self._certs = None


class OpensslMissingError(RuntimeError):
    """TLS test servers need the openssl command to make a certificate; it is not installed."""


def make_self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, valid one day, made with the openssl CLI.

    Raises OpensslMissingError when openssl is not installed, so callers can skip TLS tests.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise OpensslMissingError("openssl is not installed; TLS test servers need it")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    key_options = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        [openssl, "req", "-x509", *key_options, "-days", "1", *subject, *files],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key
