"""SlackChannel against a real local webhook server: outcomes, retry hints, and no leaked URL."""

from __future__ import annotations

import asyncio
import traceback
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from support.servers import HttpReply, SlackServer, unused_port

from monitor.deliver.channels import Channel, SlackChannel
from monitor.deliver.channels.slack import parse_retry_after, redact_webhook
from monitor.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from monitor.model import Item, Match, Severity, TermHit

SECRET = "XyzzySECRET0123456789token"
"""Distinctive, so finding it anywhere in an error proves the webhook URL leaked."""

SUMMARY = "Officials said. The army said new sanctions on Russia would follow soon!"


def make_match(**item_changes: Any) -> Match:
    fields: dict[str, Any] = {
        "id": "item-1",
        "source": "reuters-world",
        "title": "Troops mass at the border",
        "summary": SUMMARY,
        "link": "https://example.com/news/1",
        "published": datetime(2024, 5, 1, 12, 34, tzinfo=UTC),
    }
    fields.update(item_changes)
    item = Item(**fields)
    start = item.summary.find("sanctions")
    hits = (TermHit("sanctions", "summary", start, start + 9, "sanctions"),) if start >= 0 else ()
    return Match("ru-sanctions", "Sanctions on Russia", Severity.HIGH, "rv-7", item, hits)


async def send_and_close(channel: SlackChannel, match: Match) -> None:
    try:
        await channel.send(match)
    finally:
        await channel.close()


def deliver(url: str, match: Match | None = None, *, timeout: float = 5.0) -> None:
    """Send one match through a fresh channel (own session) and close it, in a fresh loop."""
    asyncio.run(send_and_close(SlackChannel(url, timeout=timeout), match or make_match()))


def failure(url: str, *, timeout: float = 5.0) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        deliver(url, timeout=timeout)
    return caught.value


@pytest.fixture
def secret_server(slack_server_factory: Any) -> SlackServer:
    server: SlackServer = slack_server_factory(secret=SECRET)
    return server


def assert_secret_absent(error: BaseException, *also: object) -> None:
    """The secret is in no part of the error a log or tracker could show, nor in ``also``."""
    shown = [
        str(error),
        repr(error),
        str(getattr(error, "hint", "")),
        "".join(traceback.format_exception(error)),
        *(repr(x) for x in also),
        *(str(x) for x in also),
    ]
    for text in shown:
        assert SECRET not in text
    assert error.__cause__ is None
    assert error.__context__ is None


def test_slack_channel_is_a_channel() -> None:
    assert isinstance(SlackChannel("https://hooks.slack.com/services/T/B/x"), Channel)


def test_200_ok_means_delivered_and_the_payload_carries_the_alert(
    slack_server: SlackServer,
) -> None:
    deliver(slack_server.url)
    [request] = slack_server.requests
    assert request.method == "POST"
    assert request.headers["Content-Type"].startswith("application/json")
    assert request.reply.status == 200
    body = str(request.payload)
    assert request.payload["text"] == "Troops mass at the border — [HIGH] Sanctions on Russia"
    assert "<https://example.com/news/1|Troops mass at the border>" in body
    assert "*sanctions*" in body
    assert "ru-sanctions" in body
    assert "rv-7" in body


def test_feed_markup_is_delivered_as_literal_text(slack_server: SlackServer) -> None:
    """A title and summary full of mrkdwn markers reach Slack as look-alikes: accepted, and
    the only bold in the quote is the hit the renderer marked."""
    deliver(
        slack_server.url,
        make_match(
            title="*URGENT* _read_ ~now~ `x`",
            summary="Officials said. The *army* said new sanctions_ would follow soon!",
            source="wire_feed",
        ),
    )
    [request] = slack_server.requests
    assert request.reply.status == 200
    payload = request.payload
    assert payload["text"] == (
        "\u2217URGENT\u2217 \u02cdread\u02cd \u223cnow\u223c \u02cbx\u02cb"
        " — [HIGH] Sanctions on Russia"
    )
    texts = [
        t["text"]
        for block in payload["blocks"]
        for t in [block.get("text"), *block.get("elements", [])]
        if isinstance(t, dict) and t.get("type") == "mrkdwn"
    ]
    assert not any(set(text) & set("_~") for text in texts)
    assert "*wire\u02cdfeed* · 2024-05-01 12:34 UTC" in texts[1]
    assert "> The \u2217army\u2217 said new *sanctions*\u200b\u02cd would follow soon!" in texts


def test_429_is_transient_with_slacks_retry_after(slack_server: SlackServer) -> None:
    slack_server.reply(429, "rate_limited", retry_after=30)
    error = failure(slack_server.url)
    assert isinstance(error, TransientDeliveryError)
    assert error.retry_after == 30.0
    assert "429" in str(error)
    assert error.channel == "slack"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_transient(slack_server: SlackServer, status: int) -> None:
    slack_server.reply(status, "internal_error")
    error = failure(slack_server.url)
    assert isinstance(error, TransientDeliveryError)
    assert error.retry_after is None


def test_503_with_retry_after_passes_the_wait_on(slack_server: SlackServer) -> None:
    slack_server.reply(503, "", retry_after=12)
    error = failure(slack_server.url)
    assert isinstance(error, TransientDeliveryError)
    assert error.retry_after == 12.0


@pytest.mark.parametrize(
    ("status", "code", "hint_words"),
    [
        (404, "no_service", "revoked"),
        (403, "invalid_token", "revoked"),
        (403, "action_prohibited", "admin"),
        (404, "channel_not_found", "deleted"),
        (410, "channel_is_archived", "archived"),
        (400, "invalid_payload", "bug"),
        (400, "invalid_blocks", "bug"),
        (400, "something_new", "SLACK_WEBHOOK_URL"),
    ],
)
def test_slack_refusals_are_permanent_and_name_the_code_with_a_hint(
    slack_server: SlackServer, status: int, code: str, hint_words: str
) -> None:
    slack_server.reply(status, code)
    error = failure(slack_server.url)
    assert isinstance(error, PermanentDeliveryError)
    assert code in str(error)
    assert error.hint is not None
    assert hint_words in error.hint


def test_an_unknown_webhook_path_is_refused_as_slack_does(slack_server: SlackServer) -> None:
    error = failure(f"{slack_server.base_url}/services/T000/B000/revoked")
    assert isinstance(error, PermanentDeliveryError)
    assert "no_service" in str(error)


def test_a_body_that_is_not_a_code_is_not_echoed(slack_server: SlackServer) -> None:
    slack_server.reply(400, "<html>Bad gateway page with stuff</html>")
    error = failure(slack_server.url)
    assert isinstance(error, PermanentDeliveryError)
    assert "html" not in str(error)


def test_connection_refused_is_transient() -> None:
    url = f"http://127.0.0.1:{unused_port()}/services/T000/B000/{SECRET}"
    error = failure(url)
    assert isinstance(error, TransientDeliveryError)
    assert "cannot connect" in str(error)
    assert_secret_absent(error)


def test_no_answer_within_the_timeout_is_transient(secret_server: SlackServer) -> None:
    secret_server.reply(200, "ok", delay=3)
    error = failure(secret_server.url, timeout=0.3)
    assert isinstance(error, TransientDeliveryError)
    assert "within 0.3s" in str(error)
    assert_secret_absent(error)


@pytest.mark.parametrize(
    ("status", "body"),
    [(429, "rate_limited"), (500, "x"), (404, "no_service"), (403, "invalid_token"), (302, "")],
)
def test_the_webhook_url_never_appears_in_errors(
    secret_server: SlackServer, status: int, body: str
) -> None:
    secret_server.reply(status, body, headers={"Location": secret_server.url})
    channel = SlackChannel(secret_server.url)
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(send_and_close(channel, make_match()))
    assert_secret_absent(caught.value, channel)


@pytest.mark.parametrize(
    "url",
    [
        f"http://[::1/services/T000/B000/{SECRET}",
        f"ftp://hooks.example/services/T000/B000/{SECRET}",
        f"hooks.slack.com/services/T000/B000/{SECRET}",
        f"http://127.0.0.1:99999/services/T000/B000/{SECRET}",
        f"http://user:{SECRET}@/services",
    ],
)
def test_an_unusable_webhook_url_is_permanent_and_not_echoed(url: str) -> None:
    channel = SlackChannel(url)
    with pytest.raises(PermanentDeliveryError) as caught:
        asyncio.run(send_and_close(channel, make_match()))
    assert "SLACK_WEBHOOK_URL" in str(caught.value)
    assert_secret_absent(caught.value, channel)


def test_a_url_aiohttp_rejects_is_reported_without_the_url(secret_server: SlackServer) -> None:
    """A URL that passes the shape check but that aiohttp refuses (a space in the host)."""
    url = secret_server.url.replace("127.0.0.1", "127.0.0.1 ")
    channel = SlackChannel(url)
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(send_and_close(channel, make_match()))
    assert_secret_absent(caught.value, channel)


def test_the_channel_repr_shows_only_the_redacted_webhook(secret_server: SlackServer) -> None:
    channel = SlackChannel(secret_server.url, name="slack-desk")
    assert repr(channel) == (
        f"SlackChannel(name='slack-desk', webhook='127.0.0.1:{secret_server.port}/services/***')"
    )
    assert SECRET not in str(vars(channel))


def test_a_payload_from_a_huge_item_is_accepted_by_slacks_limits(
    slack_server: SlackServer,
) -> None:
    """The server checks Block Kit limits as Slack does, so truncation is proven end to end."""
    huge = "x" * 10_000
    deliver(slack_server.url, make_match(title="T" * 10_000, summary=f"{huge} sanctions {huge}"))
    assert slack_server.requests[0].reply.status == 200


def test_a_session_passed_in_is_used_and_left_open(slack_server: SlackServer) -> None:
    async def scenario() -> bool:
        async with aiohttp.ClientSession() as session:
            channel = SlackChannel(slack_server.url, session=session)
            await channel.send(make_match())
            await channel.close()
            still_open = not session.closed
            await channel.send(make_match())
        return still_open

    assert asyncio.run(scenario())
    assert len(slack_server.requests) == 2


def test_close_closes_the_channels_own_session_and_send_can_reopen_one(
    slack_server: SlackServer,
) -> None:
    async def scenario() -> None:
        channel = SlackChannel(slack_server.url)
        await channel.send(make_match())
        await channel.close()
        await channel.close()  # closing twice is harmless
        await channel.send(make_match())
        await channel.close()

    asyncio.run(scenario())
    assert len(slack_server.requests) == 2


def test_close_without_any_send_is_harmless() -> None:
    asyncio.run(SlackChannel("https://hooks.slack.com/services/T/B/x").close())


def test_retrying_after_a_transient_failure_delivers(slack_server: SlackServer) -> None:
    slack_server.reply(500, "internal_error")

    async def scenario() -> None:
        channel = SlackChannel(slack_server.url)
        try:
            with pytest.raises(TransientDeliveryError):
                await channel.send(make_match())
            await channel.send(make_match())
        finally:
            await channel.close()

    asyncio.run(scenario())
    assert [r.reply.status for r in slack_server.requests] == [500, 200]


# --- pure helpers ------------------------------------------------------------------------------

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("30", 30.0),
        (" 1.5 ", 1.5),
        ("-4", 0.0),
        ("Wed, 01 May 2024 12:01:00 GMT", 60.0),
        ("Wed, 01 May 2024 11:00:00 GMT", 0.0),
        ("soon", None),
        ("nan", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/abc", "hooks.slack.com/services/***"),
        ("http://127.0.0.1:8080/services/T0/B0/abc", "127.0.0.1:8080/services/***"),
        ("https://example.com/abcsecret/x", "example.com/***"),
        ("https://user:pw@hooks.slack.com/services/x", "hooks.slack.com/services/***"),
        ("http://[::1/x", "<unparseable webhook URL>"),
        ("not a url", "<webhook URL without a host>"),
    ],
)
def test_redact_webhook_keeps_only_what_is_not_secret(url: str, shown: str) -> None:
    assert redact_webhook(url) == shown


def test_an_outage_set_as_the_default_lasts_until_cleared(slack_server: SlackServer) -> None:
    """``set_default`` models an outage of any length; ``reply(times=n)`` only n requests."""
    slack_server.set_default(HttpReply(503, "service_unavailable"))
    for _ in range(3):
        assert isinstance(failure(slack_server.url), TransientDeliveryError)
    slack_server.set_default(None)
    deliver(slack_server.url)
    assert [r.reply.status for r in slack_server.wait_for(4)] == [503, 503, 503, 200]
