"""ConsoleChannel: a readable block per alert on the given stream, or on stdout at send time."""

from __future__ import annotations

import asyncio
import io
import sys
from datetime import UTC, datetime

import pytest

from monitor.deliver.channels import Channel, ConsoleChannel
from monitor.errors import PermanentDeliveryError
from monitor.model import Item, Match, Severity, TermHit


def make_match(title: str = "Troops mass at the border") -> Match:
    summary = "The army said new sanctions on Russia would follow soon!"
    item = Item(
        id="item-1",
        source="reuters-world",
        title=title,
        summary=summary,
        link="https://example.com/news/1",
        published=datetime(2024, 5, 1, 12, 34, tzinfo=UTC),
    )
    start = summary.index("sanctions")
    hits = (TermHit("sanctions", "summary", start, start + 9, "sanctions"),)
    return Match("ru-sanctions", "Sanctions on Russia", Severity.CRITICAL, "rv-7", item, hits)


def send(channel: ConsoleChannel, match: Match) -> None:
    async def scenario() -> None:
        await channel.send(match)
        await channel.close()

    asyncio.run(scenario())


def test_console_channel_is_a_channel() -> None:
    assert isinstance(ConsoleChannel(), Channel)


def test_an_alert_is_written_as_a_block_followed_by_a_blank_line() -> None:
    stream = io.StringIO()
    send(ConsoleChannel(stream), make_match())
    text = stream.getvalue()
    assert text.endswith("\n\n")
    lines = text.splitlines()
    assert lines[0] == "[CRITICAL] Sanctions on Russia"
    assert "  Title:   Troops mass at the border" in lines
    assert "  Link:    https://example.com/news/1" in lines
    assert "  Source:  reuters-world" in lines
    assert "  Time:    2024-05-01 12:34 UTC" in lines
    assert "  Matched: sanctions" in lines
    assert "  Quote:   “The army said new *sanctions* on Russia would follow soon!”" in lines


def test_two_alerts_are_two_blocks() -> None:
    stream = io.StringIO()
    channel = ConsoleChannel(stream)

    async def scenario() -> None:
        await channel.send(make_match("First"))
        await channel.send(make_match("Second"))

    asyncio.run(scenario())
    blocks = stream.getvalue().strip().split("\n\n")
    assert [b.splitlines()[1] for b in blocks] == ["  Title:   First", "  Title:   Second"]


def test_no_stream_means_stdout_looked_up_at_send_time(capsys: pytest.CaptureFixture[str]) -> None:
    channel = ConsoleChannel()
    send(channel, make_match())
    assert "[CRITICAL] Sanctions on Russia" in capsys.readouterr().out


def test_terminal_escape_sequences_from_a_feed_are_not_written() -> None:
    stream = io.StringIO()
    send(ConsoleChannel(stream), make_match("\x1b[2J\x1b]0;owned\x07Headline"))
    assert "\x1b" not in stream.getvalue()
    assert "Headline" in stream.getvalue()


def test_a_stream_that_cannot_encode_the_text_gets_replacements_not_a_crash() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    send(ConsoleChannel(stream), make_match("Войска у границы"))
    assert b"Title:   ?????? ? ???????" in raw.getvalue()
    stream.close()


def test_a_closed_stream_is_a_permanent_failure() -> None:
    stream = io.StringIO()
    stream.close()
    with pytest.raises(PermanentDeliveryError, match="console"):
        send(ConsoleChannel(stream), make_match())


def test_close_leaves_the_stream_open() -> None:
    stream = io.StringIO()
    send(ConsoleChannel(stream), make_match())
    assert not stream.closed
    assert not sys.stdout.closed
