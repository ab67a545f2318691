"""EmailChannel against a real SMTP server: MIME, AUTH, TLS, reply codes, no leaked password."""

from __future__ import annotations

import asyncio
import re
import socket
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from support.servers import LOOPBACK, SmtpServer, unused_port

from monitor.deliver.channels import Channel, EmailChannel, RecipientsRefused
from monitor.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from monitor.model import Item, Match, Severity, TermHit

PASSWORD = "Pa55-QuuxSECRET-9876"
"""Distinctive, so finding it anywhere in an error proves the password leaked."""
SENT_AT = datetime(2024, 5, 1, 12, 40, tzinfo=UTC)
SMTP_SERVERS = Callable[..., SmtpServer]


def make_match(title: str = "Troops mass at the border", item_id: str = "item-1") -> Match:
    summary = "Officials said. The army said new sanctions on Russia would follow soon!"
    item = Item(
        id=item_id,
        source="reuters-world",
        title=title,
        summary=summary,
        link="https://example.com/news/1",
        published=datetime(2024, 5, 1, 12, 34, tzinfo=UTC),
    )
    start = summary.index("sanctions")
    hits = (TermHit("sanctions", "summary", start, start + 9, "sanctions"),)
    return Match("ru-sanctions", "Sanctions on Russia", Severity.HIGH, "rv-7", item, hits)


def channel_for(server: SmtpServer, **options: Any) -> EmailChannel:
    settings: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "sender": "Monitor <alerts@example.org>",
        "recipients": ["analyst@example.org"],
        "timeout": 5.0,
        "clock": lambda: SENT_AT,
    }
    settings.update(options)
    return EmailChannel(**settings)


def deliver(channel: EmailChannel, match: Match | None = None) -> None:
    async def scenario() -> None:
        try:
            await channel.send(match or make_match())
        finally:
            await channel.close()

    asyncio.run(scenario())


def failure(channel: EmailChannel) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        deliver(channel)
    return caught.value


def assert_password_absent(error: BaseException, channel: EmailChannel) -> None:
    shown = [
        str(error),
        repr(error),
        str(getattr(error, "hint", "")),
        "".join(traceback.format_exception(error)),
        repr(channel),
        str(vars(channel)),
    ]
    for text in shown:
        assert PASSWORD not in text
    assert error.__cause__ is None
    assert error.__context__ is None


@pytest.fixture
def auth_server(smtp_server_factory: SMTP_SERVERS) -> SmtpServer:
    return smtp_server_factory(auth=("alerts", PASSWORD))


def test_email_channel_is_a_channel(smtp_server: SmtpServer) -> None:
    assert isinstance(channel_for(smtp_server), Channel)


def test_an_alert_arrives_as_multipart_text_and_html_with_its_headers(
    smtp_server: SmtpServer,
) -> None:
    deliver(channel_for(smtp_server, recipients=["analyst@example.org", "Desk <desk@example.org>"]))
    [received] = smtp_server.messages
    assert received.mail_from == "alerts@example.org"
    assert received.rcpt_tos == ("analyst@example.org", "desk@example.org")
    message = received.message
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]
    assert message["Subject"] == "[HIGH] Sanctions on Russia: Troops mass at the border"
    assert message["From"] == "Monitor <alerts@example.org>"
    assert message["To"] == "analyst@example.org, Desk <desk@example.org>"
    assert message["Date"] == "Wed, 01 May 2024 12:40:00 +0000"
    assert re.fullmatch(r"<[0-9a-f]{32}@example\.org>", str(message["Message-ID"]))
    assert message["List-Id"] == "Monitor alerts <alerts.monitor.local>"
    assert message["X-Monitor-Rule"] == "ru-sanctions"
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    assert text_part is not None
    assert html_part is not None
    assert "*sanctions*" in text_part.get_content()
    assert "<mark><strong>sanctions</strong></mark>" in html_part.get_content()


def test_a_transient_refusal_then_a_retry_delivers_once(smtp_server: SmtpServer) -> None:
    smtp_server.reply("451 4.3.0 Try again later")
    channel = channel_for(smtp_server)
    with pytest.raises(TransientDeliveryError):
        deliver(channel)
    deliver(channel)
    assert len(smtp_server.messages) == 1


def test_message_id_is_the_same_on_every_attempt_and_differs_per_item(
    smtp_server: SmtpServer,
) -> None:
    channel = channel_for(smtp_server)
    deliver(channel)
    deliver(channel)
    deliver(channel, make_match(item_id="item-2"))
    first, again, other = (m.message["Message-ID"] for m in smtp_server.messages)
    assert first == again
    assert other != first


def test_auth_with_username_and_password(auth_server: SmtpServer) -> None:
    deliver(channel_for(auth_server, username="alerts", password=PASSWORD))
    assert auth_server.logins == ["alerts"]
    assert auth_server.messages[0].authenticated_as == "alerts"


def test_a_wrong_password_is_permanent_and_never_shown(auth_server: SmtpServer) -> None:
    channel = channel_for(auth_server, username="alerts", password=PASSWORD + "-old")
    error = failure(channel)
    assert isinstance(error, PermanentDeliveryError)
    assert "535" in str(error)
    assert error.hint is not None
    assert "password" in error.hint
    assert auth_server.failed_logins
    assert_password_absent(error, channel)
    assert PASSWORD + "-old" not in str(error)


def test_a_server_requiring_auth_refuses_an_anonymous_channel(auth_server: SmtpServer) -> None:
    error = failure(channel_for(auth_server))
    assert isinstance(error, PermanentDeliveryError)
    assert "530" in str(error)


@pytest.mark.parametrize(
    ("answer", "stage", "kind"),
    [
        ("421 4.3.2 Service shutting down", "DATA", TransientDeliveryError),
        ("451 4.3.0 Local error", "DATA", TransientDeliveryError),
        ("550 5.7.1 Message rejected as spam", "DATA", PermanentDeliveryError),
        ("421 4.7.0 Too many connections", "MAIL", TransientDeliveryError),
        ("553 5.1.8 Sender address rejected", "MAIL", PermanentDeliveryError),
        ("450 4.2.0 Mailbox busy", "RCPT", TransientDeliveryError),
        ("550 5.1.1 No such user", "RCPT", PermanentDeliveryError),
    ],
)
def test_smtp_reply_codes_decide_transient_or_permanent(
    smtp_server: SmtpServer, answer: str, stage: Any, kind: type[DeliveryError]
) -> None:
    smtp_server.reply(answer, stage=stage)
    error = failure(channel_for(smtp_server))
    assert type(error) is kind
    assert answer.split()[0] in str(error)
    assert smtp_server.messages == []


def test_some_recipients_refused_names_who_got_it_and_who_did_not(
    smtp_server: SmtpServer,
) -> None:
    """The caller must not resend to those who got it, and must retry or dead-letter the rest."""
    smtp_server.refuse("gone@example.org", "550 5.1.1 No such user")
    smtp_server.refuse("busy@example.org", "451 4.3.0 Try later")
    channel = channel_for(
        smtp_server,
        recipients=["gone@example.org", "analyst@example.org", "Busy <busy@example.org>"],
    )
    with pytest.raises(RecipientsRefused) as caught:
        deliver(channel)
    refused = caught.value
    assert refused.accepted == ("analyst@example.org",)
    assert refused.permanent == ("gone@example.org",)
    assert refused.transient == ("Busy <busy@example.org>",)
    [received] = smtp_server.messages
    assert received.rcpt_tos == ("analyst@example.org",)


def test_every_recipient_refused_alike_is_one_plain_error(smtp_server: SmtpServer) -> None:
    smtp_server.reply("550 5.1.1 No such user", stage="RCPT", times=2)
    channel = channel_for(smtp_server, recipients=["a@example.org", "b@example.org"])
    error = failure(channel)
    assert type(error) is PermanentDeliveryError
    assert "refused every recipient" in str(error)


def test_send_to_reaches_only_the_given_recipients(smtp_server: SmtpServer) -> None:
    channel = channel_for(smtp_server, recipients=["a@example.org", "b@example.org"])

    async def scenario() -> None:
        await channel.send_to(make_match(), ["c@example.org"])

    asyncio.run(scenario())
    [received] = smtp_server.messages
    assert received.rcpt_tos == ("c@example.org",)
    assert received.message["To"] == "c@example.org"


def test_follow_ups_of_one_story_thread_together(smtp_server: SmtpServer) -> None:
    """Same headline (one story) from two items: distinct Message-IDs, one thread root."""
    channel = channel_for(smtp_server)
    deliver(channel, make_match(item_id="wire-1"))
    deliver(channel, make_match(item_id="other-feed-7"))
    deliver(channel, make_match(title="A different story", item_id="wire-2"))
    first, second, other = (m.message for m in smtp_server.wait_for(3))
    assert first["Message-ID"] != second["Message-ID"]
    assert first["In-Reply-To"] == second["In-Reply-To"] == second["References"]
    assert other["References"] != first["References"]


def test_connection_refused_is_transient() -> None:
    channel = EmailChannel(
        host=LOOPBACK, port=unused_port(), sender="a@example.org", recipients=["b@example.org"]
    )
    error = failure(channel)
    assert isinstance(error, TransientDeliveryError)
    assert "cannot connect" in str(error)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections but never says hello, like a hung server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(4)
        yield listener.getsockname()[1]


def test_a_server_that_never_answers_times_out_as_transient(silent_port: int) -> None:
    channel = EmailChannel(
        host=LOOPBACK,
        port=silent_port,
        sender="a@example.org",
        recipients=["b@example.org"],
        timeout=0.3,
    )
    error = failure(channel)
    assert isinstance(error, TransientDeliveryError)
    assert "within 0.3s" in str(error)


def test_header_injection_through_the_title_is_neutralised(smtp_server: SmtpServer) -> None:
    deliver(channel_for(smtp_server), make_match(title="Breaking\r\nBcc: x@evil.example\r\n"))
    [received] = smtp_server.messages
    assert received.rcpt_tos == ("analyst@example.org",)
    assert received.message["Bcc"] is None
    assert received.message["Subject"] == "[HIGH] Sanctions on Russia: Breaking Bcc: x@evil.example"
    assert b"\r\nBcc:" not in received.raw


LONG_TITLES = [
    "Казахстан объявил тендер на разработку вольфрамового месторождения Верхнее Кайракты, "
    "заявки принимаются до конца марта, сообщает министерство промышленности",
    "哈萨克斯坦宣布上凯拉克特钨矿开发招标，投标截止日期为三月底，工业和建设部表示，"
    "多家中国企业已表达参与意向，专家认为该项目将改变全球钨市场格局",
]


@pytest.mark.parametrize("title", LONG_TITLES)
def test_a_long_non_english_alert_arrives_in_short_lines_with_its_subject_intact(
    smtp_server: SmtpServer, title: str
) -> None:
    """On the wire (CRLF lines, as the server got them): lines of at most 78 characters,
    encoded-words of at most 75, and the subject and body read back exactly."""
    deliver(channel_for(smtp_server), make_match(title=title))
    [received] = smtp_server.messages
    lines = received.raw.split(b"\r\n")
    assert max(len(line) for line in lines) <= 78
    words = re.findall(rb"=\?[^?]+\?[QBqb]\?[^?]*\?=", received.raw)
    assert len(words) > 2
    assert max(len(word) for word in words) <= 75
    assert received.message["Subject"] == f"[HIGH] Sanctions on Russia: {title}"
    text_part = received.message.get_body(preferencelist=("plain",))
    assert text_part is not None
    assert text_part["Content-Transfer-Encoding"] == "base64"
    assert f"  Title:   {title}\n" in text_part.get_content()


def test_starttls_then_auth(smtp_server_factory: SMTP_SERVERS) -> None:
    server = smtp_server_factory(auth=("alerts", PASSWORD), tls="starttls")
    channel = channel_for(
        server,
        host="localhost",
        starttls=True,
        username="alerts",
        password=PASSWORD,
        tls_context=server.client_tls_context(),
    )
    deliver(channel)
    [received] = server.messages
    assert received.tls
    assert received.authenticated_as == "alerts"


def test_implicit_tls(smtp_server_factory: SMTP_SERVERS) -> None:
    server = smtp_server_factory(auth=("alerts", PASSWORD), tls="implicit")
    channel = channel_for(
        server,
        ssl=True,
        username="alerts",
        password=PASSWORD,
        tls_context=server.client_tls_context(),
    )
    deliver(channel)
    assert server.logins == ["alerts"]
    assert len(server.messages) == 1


def test_an_untrusted_certificate_is_permanent(smtp_server_factory: SMTP_SERVERS) -> None:
    server = smtp_server_factory(tls="starttls")
    channel = channel_for(server, starttls=True, username="alerts", password=PASSWORD)
    error = failure(channel)
    assert isinstance(error, PermanentDeliveryError)
    assert "certificate" in str(error)
    assert_password_absent(error, channel)


def test_starttls_against_a_server_without_it_is_refused_not_downgraded(
    smtp_server: SmtpServer,
) -> None:
    error = failure(channel_for(smtp_server, starttls=True))
    assert isinstance(error, PermanentDeliveryError)
    assert "STARTTLS" in str(error)
    assert smtp_server.messages == []


def test_implicit_tls_against_a_plain_server_is_transient_with_a_hint(
    smtp_server: SmtpServer,
) -> None:
    error = failure(channel_for(smtp_server, ssl=True, timeout=2.0))
    assert isinstance(error, TransientDeliveryError)
    assert error.hint is not None
    assert "465" in error.hint


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"starttls": True, "ssl": True}, "not both"),
        ({"recipients": []}, "at least one recipient"),
        ({"host": "smtp.example.org", "username": "u", "password": PASSWORD}, "without TLS"),
    ],
)
def test_misconfiguration_is_refused_when_the_channel_is_built(
    options: dict[str, Any], message: str
) -> None:
    settings: dict[str, Any] = {
        "host": LOOPBACK,
        "port": 25,
        "sender": "a@example.org",
        "recipients": ["b@example.org"],
    }
    settings.update(options)
    with pytest.raises(ValueError, match=message) as caught:
        EmailChannel(**settings)
    assert PASSWORD not in str(caught.value)


def test_repr_names_the_server_but_not_the_password() -> None:
    channel = EmailChannel(
        host="smtp.example.org",
        port=587,
        sender="a@example.org",
        recipients=["b@example.org"],
        username="alerts",
        password=PASSWORD,
        starttls=True,
    )
    assert repr(channel) == (
        "EmailChannel(name='email', server=smtp.example.org:587, starttls, recipients=1)"
    )
    assert PASSWORD not in str(vars(channel))
