"""A story's provenance, and a trend's explanation, in every channel's message: shown, and
escaped like any other feed text."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from monitor.deliver.render.email_mime import email_message
from monitor.deliver.render.plain import console_text
from monitor.deliver.render.slack_blocks import slack_payload
from monitor.deliver.render.webhook_json import webhook_alert_body
from monitor.model import Item, Match, Severity, SourceNote

NOW = datetime(2026, 3, 2, 20, 0, tzinfo=UTC)
EVIL = "<!channel> <https://evil.example|click> & <b>bold</b>"
NOTES = (
    SourceNote("reuters", "wire", "gb", "en"),
    SourceNote("interfax-kz", "wire", "kz", "ru"),
    SourceNote("xinhua", "state_media", "cn", "zh", new=True),
)


def follow_up(**fields: object) -> Match:
    item = Item("xinhua:1", "xinhua", "哈萨克斯坦将拍卖钨矿", "", "https://x.example/1", NOW, "zh")
    base: dict[str, object] = {
        "rule_id": "kz",
        "rule_title": "Kairakty",
        "severity": Severity.CRITICAL,
        "rule_version": "v1",
        "item": item,
        "story": "s1",
        "follow_up": "escalated at 3 independent sources",
        "story_title": f"Auction {EVIL}",
        "provenance": NOTES,
    }
    base.update(fields)
    return Match(**base)  # type: ignore[arg-type]


def test_slack_names_the_story_its_sources_and_what_is_new_without_obeying_its_markup() -> None:
    text = json.dumps(slack_payload(follow_up()), ensure_ascii=False)
    assert "Story: *Auction &lt;!channel&gt; &lt;https://evil.example|click&gt; &amp;" in text
    assert "<!channel>" not in text
    assert (
        "Sources (3): reuters (wire, gb, en); interfax-kz (wire, kz, ru); "
        "xinhua (state_media, cn, zh)" in text
    )
    assert "New since the last message: *xinhua (state_media, cn, zh)*" in text


def test_a_first_alert_lists_its_sources_but_no_story_line_or_news() -> None:
    alert = follow_up(follow_up=None, provenance=NOTES[:2])
    text = json.dumps(slack_payload(alert), ensure_ascii=False)
    assert "Sources (2): reuters (wire, gb, en); interfax-kz (wire, kz, ru)" in text
    assert "Story:" not in text
    assert "New since" not in text


def test_email_text_and_html_show_the_provenance_escaped() -> None:
    message = email_message(
        follow_up(), sender="m@example.org", recipients=["d@example.org"], now=NOW
    )
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None
    assert html is not None
    text, markup = plain.get_content(), html.get_content()
    assert "  Story:   Auction <!channel>" in text
    assert "  Sources: reuters (wire, gb, en); interfax-kz (wire, kz, ru); xinhua" in text
    assert "xinhua (state_media, cn, zh) [new]" in text
    assert "  New:     xinhua (state_media, cn, zh)" in text
    assert "<li>xinhua (state_media, cn, zh) <strong>(new)</strong></li>" in markup
    assert "&lt;!channel&gt;" in markup
    assert "<b>bold</b>" not in markup


def test_webhook_and_console_carry_the_provenance() -> None:
    body = webhook_alert_body(follow_up(), story="story:s1", now=NOW)
    assert body["story_title"].startswith("Auction <!channel>")
    assert [(p["source"], p["new"]) for p in body["provenance"]] == [
        ("reuters", False),
        ("interfax-kz", False),
        ("xinhua", True),
    ]
    assert "  New:     xinhua (state_media, cn, zh)" in console_text(follow_up())


def test_a_trend_alert_says_what_was_counted() -> None:
    trend = follow_up(
        follow_up=None,
        story=None,
        story_title="",
        provenance=(),
        explanation="14 items matched rule kz in the last 1h <!here>",
    )
    text = json.dumps(slack_payload(trend), ensure_ascii=False)
    assert "14 items matched rule kz in the last 1h &lt;!here&gt;" in text
    assert "Why:     14 items matched rule kz" in console_text(trend)
    assert webhook_alert_body(trend, story="x", now=NOW)["explanation"].startswith("14 items")
