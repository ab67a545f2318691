"""Email channel: one multipart alert per match over SMTP (stdlib smtplib, in a thread pool).

Each send has a total deadline (``timeout``): the whole conversation, not each read, so a
server that answers every line just before the socket timeout cannot hold a send for
minutes.  The threads are the channel's own bounded pool, never the event loop's default
executor, so blocking work elsewhere (file reads, DNS) cannot starve email and a stuck mail
server cannot starve anything else.

SMTP replies map onto retry or not as RFC 5321 intends: 4xx and lost connections are
transient, 5xx permanent.  smtplib's debug output is never enabled (it prints the AUTH
exchange), and server replies are scrubbed of the password before they reach an error.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import smtplib
import socket
import ssl as tls
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

import structlog

from monitor.deliver.channels.secret import Secret
from monitor.deliver.policy import story_key
from monitor.deliver.render.digest import Digest
from monitor.deliver.render.email_mime import digest_email, email_message
from monitor.deliver.render.strings import clean_line, clip
from monitor.deliver.templates import TemplateError, Templates
from monitor.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from monitor.model import Match

TEMPLATE_HINT = "fix the template in the config folder's templates/, then 'monitor alerts retry'"

TLS_HINT = "check that the port matches the mode: 465 is implicit TLS (ssl), 587 is STARTTLS"
AUTH_HINT = "check the SMTP username and password"
_REPLY_CHARS = 300
SMTP_THREADS = 4
"""Conversations in flight at once per email channel; more wait (their deadline running)."""
ABORT_GRACE = 1.0
"""Seconds past the deadline before the watchdog shuts the socket of a conversation that
the socket timeouts did not end (a reply trickling in line by line)."""


class _Deadline:
    """One conversation's total deadline (``time.monotonic``), and the socket to shut down
    when the watchdog abandons it.  Shared by the event loop and the conversation thread."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.abandoned = False
        self._client: smtplib.SMTP | None = None
        self._lock = threading.Lock()

    def left(self) -> float:
        """Seconds left; raises TimeoutError (which the conversation reports) when none are."""
        left = self.at - time.monotonic()
        if left <= 0 or self.abandoned:
            raise TimeoutError("the SMTP conversation ran out of time")
        return left

    def attach(self, client: smtplib.SMTP) -> None:
        with self._lock:
            self._client = client

    def abandon(self) -> None:
        """Called on the event loop: end the conversation now by shutting its socket down;
        the blocked thread's read or write then fails at once."""
        with self._lock:
            self.abandoned = True
            sock = getattr(self._client, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Timed:
    """smtplib with a total deadline: every command and reply waits at most until it."""

    deadline: _Deadline
    sock: socket.socket | None

    def _arm(self) -> None:
        left = self.deadline.left()
        if self.sock is not None:
            self.sock.settimeout(left)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(  # type: ignore[misc]
            host, port, min(timeout, self.deadline.left())
        )
        return sock

    def send(self, s: Any) -> None:
        self._arm()
        super().send(s)  # type: ignore[misc]

    def getreply(self) -> tuple[int, bytes]:
        self._arm()
        reply: tuple[int, bytes] = super().getreply()  # type: ignore[misc]
        return reply


class _TimedSMTP(_Timed, smtplib.SMTP):
    pass


class _TimedSMTPSSL(_Timed, smtplib.SMTP_SSL):
    pass


# Which step of the conversation each smtplib error comes from, for the operator.
_STAGES: tuple[tuple[type[smtplib.SMTPResponseException], str], ...] = (
    (smtplib.SMTPConnectError, "the greeting"),
    (smtplib.SMTPHeloError, "EHLO"),
    (smtplib.SMTPAuthenticationError, "AUTH"),
    (smtplib.SMTPSenderRefused, "MAIL FROM"),
    (smtplib.SMTPDataError, "DATA"),
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses: the only places a password may go in clear."""
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def classify(channel: str, code: int, message: str, *, hint: str | None = None) -> DeliveryError:
    """SMTP reply code to error: 5xx permanent, everything else (4xx, odd codes) transient."""
    if 500 <= code < 600:
        return PermanentDeliveryError(channel, message, hint=hint)
    return TransientDeliveryError(channel, message, hint=hint)


class EmailChannel:
    """Sends each alert as one email to a fixed list of recipients.

    Each ``send`` opens a fresh SMTP connection in one of the channel's own threads
    (``executor``, else a pool of ``SMTP_THREADS``): alerts are rare enough that a pooled
    connection would mostly be a stale one.  ``timeout`` is the whole conversation's
    deadline, counted from the call (time waiting for a free thread included).
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        ssl: bool = False,
        timeout: float = 30.0,
        name: str = "email",
        clock: Callable[[], datetime] = _utcnow,
        tls_context: tls.SSLContext | None = None,
        local_hostname: str | None = None,
        templates: Templates | None = None,
        executor: Executor | None = None,
    ) -> None:
        self._templates = templates
        self._executor = executor
        self._own_pool: ThreadPoolExecutor | None = None
        if starttls and ssl:
            raise ValueError("choose starttls (usually port 587) or ssl (port 465), not both")
        if not recipients:
            raise ValueError("an email channel needs at least one recipient")
        if username and not (starttls or ssl) and not is_loopback(host):
            raise ValueError(
                f"refusing to send the SMTP password to {host} without TLS; set starttls or ssl"
            )
        self.name = name
        self.host, self.port = host, port
        self.sender = sender
        self.recipients = tuple(recipients)
        self.username = username
        self._password = Secret(password or "")
        self.starttls, self.ssl = starttls, ssl
        self.timeout = timeout
        self.deadline = timedelta(seconds=timeout)
        """The whole SMTP conversation of one send ends within this."""
        self._clock = clock
        self._tls_context = tls_context
        self._local_hostname = local_hostname

    def __repr__(self) -> str:
        mode = "ssl" if self.ssl else "starttls" if self.starttls else "plain"
        return (
            f"EmailChannel(name={self.name!r}, server={self.host}:{self.port}, {mode}, "
            f"recipients={len(self.recipients)})"
        )

    async def send(self, match: Match) -> None:
        """Send one alert to the channel's recipients; see ``send_to``."""
        await self.send_to(match, self.recipients)

    async def send_to(self, match: Match, recipients: Sequence[str]) -> None:
        """Send one alert to ``recipients``; return once the server accepted every one.

        Raises ``RecipientsRefused`` when the server took the message for some recipients and
        refused others (or refused them for different reasons), so the caller retries or
        dead-letters only those; the others already have it.
        """
        try:
            message = email_message(
                match,
                sender=self.sender,
                recipients=recipients,
                now=self._clock(),
                channel=self.name,
                thread=story_key(match),
                templates=self._templates,
            )
        except TemplateError as exc:
            raise PermanentDeliveryError(self.name, str(exc), hint=TEMPLATE_HINT) from None
        await self._send_message(message, recipients)

    async def send_digest(self, digest: Digest) -> None:
        """Send one digest email to the channel's recipients."""
        try:
            message = digest_email(
                digest,
                sender=self.sender,
                recipients=self.recipients,
                now=self._clock(),
                templates=self._templates,
            )
        except TemplateError as exc:
            raise PermanentDeliveryError(self.name, str(exc), hint=TEMPLATE_HINT) from None
        await self._send_message(message, self.recipients)

    async def _send_message(self, message: EmailMessage, recipients: Sequence[str]) -> None:
        deadline = _Deadline(time.monotonic() + self.timeout)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(
            self._pool(), self._deliver, message, tuple(recipients), deadline
        )
        try:
            async with asyncio.timeout(self.timeout + ABORT_GRACE):
                failure = await asyncio.shield(future)
        except TimeoutError:
            deadline.abandon()
            failure = self._timed_out()
        except asyncio.CancelledError:
            deadline.abandon()  # the caller gave up (its lease budget, a shutdown)
            raise
        if failure is not None:
            # Raised outside any except block, so no smtplib exception is chained to it.
            raise failure

    def _pool(self) -> Executor:
        if self._executor is not None:
            return self._executor
        if self._own_pool is None:
            self._own_pool = ThreadPoolExecutor(
                SMTP_THREADS, thread_name_prefix=f"smtp-{self.name}"
            )
        return self._own_pool

    async def close(self) -> None:
        """Stop the channel's own thread pool (conversations still running end at their
        deadline); every send uses its own connection, so there is nothing else to release."""
        pool, self._own_pool = self._own_pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    # --- the blocking part, run in a worker thread ---------------------------------------

    def _deliver(
        self, message: EmailMessage, recipients: Sequence[str], deadline: _Deadline
    ) -> DeliveryError | None:
        """Run one SMTP conversation; return the error instead of raising it (see ``send``)."""
        try:
            refused = self._converse(message, recipients, deadline)
        except smtplib.SMTPRecipientsRefused as exc:
            return self._all_refused(exc.recipients, recipients)
        except smtplib.SMTPResponseException as exc:
            return self._rejected(exc)
        except smtplib.SMTPServerDisconnected as exc:
            # smtplib reports a read timeout as a disconnection ("...closed: timed out").
            if "timed out" in str(exc) or deadline.abandoned:
                return self._timed_out()
            return TransientDeliveryError(self.name, f"{self._where} closed the connection")
        except smtplib.SMTPNotSupportedError as exc:
            return PermanentDeliveryError(
                self.name,
                f"{self._where}: {self._scrub(str(exc))}",
                hint="check the starttls, ssl and username settings against what the server offers",
            )
        except smtplib.SMTPException as exc:
            return PermanentDeliveryError(self.name, f"{self._where}: {self._scrub(str(exc))}")
        except tls.SSLCertVerificationError as exc:
            return PermanentDeliveryError(
                self.name,
                f"TLS certificate of {self._where} not trusted: {exc.verify_message}",
                hint="check the host name and the CA store",
            )
        except tls.SSLError as exc:
            reason = exc.reason or type(exc).__name__
            return TransientDeliveryError(
                self.name, f"TLS with {self._where} failed: {reason}", hint=TLS_HINT
            )
        except TimeoutError:
            return self._timed_out()
        except OSError as exc:
            if deadline.abandoned:
                return self._timed_out()
            reason = exc.strerror or type(exc).__name__
            return TransientDeliveryError(self.name, f"cannot connect to {self._where}: {reason}")
        if refused:
            return self._some_refused(refused, recipients)
        return None

    def _converse(
        self, message: EmailMessage, recipients: Sequence[str], deadline: _Deadline
    ) -> dict[str, tuple[int, bytes]]:
        """Connect, secure, authenticate, send; return the recipients refused (if some were)."""
        deadline.left()  # waited past the deadline for a thread: do not start
        client = self._client(deadline)
        deadline.attach(client)
        # smtplib takes the TLS server name (for the certificate check) from ``_host``, which
        # it sets only when its constructor connects; but a constructor that fails half way (a
        # greeting that times out) leaves its socket open, so we connect separately.
        client._host = self.host  # type: ignore[attr-defined]
        try:
            code, reply = client.connect(self.host, self.port)
            if code != 220:
                raise smtplib.SMTPConnectError(code, reply)
            if self.starttls:
                client.starttls(context=self._context())
            if self.username:
                client.login(self.username, self._password.reveal())
            refused = client.send_message(
                message,
                from_addr=parseaddr(self.sender)[1],
                to_addrs=[parseaddr(r)[1] for r in recipients],
            )
            self._quit(client)
            return refused
        finally:
            client.close()

    def _client(self, deadline: _Deadline) -> smtplib.SMTP:
        """An unconnected client: connecting separately lets ``finally`` close every socket."""
        client: _TimedSMTP | _TimedSMTPSSL
        if self.ssl:
            client = _TimedSMTPSSL(
                local_hostname=self._local_hostname, timeout=self.timeout, context=self._context()
            )
        else:
            client = _TimedSMTP(local_hostname=self._local_hostname, timeout=self.timeout)
        client.deadline = deadline
        return client

    @staticmethod
    def _quit(client: smtplib.SMTP) -> None:
        """Say goodbye politely; the message is already accepted, so a failure here is not one."""
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()

    def _timed_out(self) -> DeliveryError:
        return TransientDeliveryError(
            self.name, f"{self._where} did not complete the exchange within {self.timeout:g}s"
        )

    def _context(self) -> tls.SSLContext:
        return self._tls_context or tls.create_default_context()

    @property
    def _where(self) -> str:
        return f"SMTP server {self.host}:{self.port}"

    def _scrub(self, text: str) -> str:
        """Remove the password (plain and as AUTH would encode it) from server-supplied text."""
        password = self._password.reveal()
        if password:
            user = self.username or ""
            encodings = (
                password,
                base64.b64encode(password.encode()).decode(),
                base64.b64encode(f"\0{user}\0{password}".encode()).decode(),
            )
            for secret in encodings:
                text = text.replace(secret, "***")
        return clip(clean_line(text), _REPLY_CHARS)

    def _reply_text(self, reply: bytes | str) -> str:
        raw = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
        return self._scrub(raw)

    def _rejected(self, exc: smtplib.SMTPResponseException) -> DeliveryError:
        stage = next((name for kind, name in _STAGES if isinstance(exc, kind)), "a command")
        said = f"{exc.smtp_code} {self._reply_text(exc.smtp_error)}".strip()
        hint = AUTH_HINT if isinstance(exc, smtplib.SMTPAuthenticationError) else None
        return classify(
            self.name, exc.smtp_code, f"{self._where} answered {said} to {stage}", hint=hint
        )

    def _all_refused(
        self, refused: dict[str, tuple[int, bytes]], recipients: Sequence[str]
    ) -> DeliveryError:
        """Every recipient was refused: one error when all refusals agree on retrying or not,
        else a ``RecipientsRefused`` so each recipient gets the right treatment."""
        kinds = {code >= 500 for code, _ in refused.values()}
        if len(kinds) > 1:
            return self._some_refused(refused, recipients)
        code = min((code for code, _ in refused.values()), default=0)
        return classify(
            self.name,
            code,
            f"{self._where} refused every recipient ({self._details(refused)})",
            hint="check the recipient addresses" if code >= 500 else None,
        )

    def _details(self, refused: dict[str, tuple[int, bytes]]) -> str:
        return "; ".join(
            f"{clean_line(rcpt)}: {code} {self._reply_text(reply)}"
            for rcpt, (code, reply) in sorted(refused.items())
        )

    def _some_refused(
        self, refused: dict[str, tuple[int, bytes]], recipients: Sequence[str]
    ) -> RecipientsRefused:
        """Split the envelope by outcome, mapping refused addresses back to the configured
        recipient strings (which may carry display names)."""
        by_address = {parseaddr(r)[1]: r for r in recipients}
        transient = tuple(by_address.get(a, a) for a, (code, _) in refused.items() if code < 500)
        permanent = tuple(by_address.get(a, a) for a, (code, _) in refused.items() if code >= 500)
        accepted = tuple(r for a, r in by_address.items() if a not in refused)
        structlog.get_logger(__name__).warning(
            "email recipients refused", channel=self.name, refused=sorted(refused)
        )
        return RecipientsRefused(
            self.name,
            f"{self._where} refused some recipients ({self._details(refused)})",
            accepted=accepted,
            transient=transient,
            permanent=permanent,
        )


class RecipientsRefused(DeliveryError):
    """The server refused some recipients: ``accepted`` have the message; ``transient`` may
    take it later; ``permanent`` never will (4xx versus 5xx per address)."""

    def __init__(
        self,
        channel: str,
        message: str,
        *,
        accepted: tuple[str, ...],
        transient: tuple[str, ...],
        permanent: tuple[str, ...],
    ) -> None:
        super().__init__(channel, message, hint="check the refused addresses")
        self.accepted = accepted
        self.transient = transient
        self.permanent = permanent
