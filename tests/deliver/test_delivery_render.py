"""Rendering of grouped Slack messages, digests, webhook JSON and user-overridden templates."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.channel_fixtures import make_match
from support.servers import slack_problems

from monitor.deliver.policy import group_by_topic
from monitor.deliver.render.digest import Digest
from monitor.deliver.render.email_mime import digest_email, email_message
from monitor.deliver.render.slack_blocks import (
    slack_blocks,
    slack_digest_payload,
    slack_digest_payloads,
    slack_group_payload,
    slack_payload,
)
from monitor.deliver.render.webhook_json import webhook_alert_body, webhook_digest_body
from monitor.deliver.templates import TemplateError, Templates
from monitor.model import Severity

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
EVIL = "<!channel> <https://evil.example|click> & <@U123>"


def digest_of(*severities: Severity) -> Digest:
    matches = [
        make_match(f"r{n % 3}", item=f"w:{n}", title=f"Item {n}", severity=s)
        for n, s in enumerate(severities)
    ]
    groups = tuple((topic, tuple(ms)) for topic, ms in group_by_topic(matches))
    return Digest("slack", NOW, "Asia/Almaty", groups)


def test_a_grouped_slack_message_lists_every_alert_within_slacks_limits() -> None:
    matches = [make_match(f"r{n}", item=f"w:{n}", title=f"Story {n} {EVIL}") for n in range(10)]
    payload = slack_group_payload(matches)
    assert slack_problems(payload) == []
    text = json.dumps(payload)
    assert all(f"Story {n}" in text for n in range(10))
    assert "<!channel>" not in text
    assert "<https://evil.example|click>" not in text
    assert payload["blocks"][0]["text"]["text"].endswith("10 alerts")


def test_a_grouped_slack_message_leads_each_notification_line_with_the_headline() -> None:
    matches = [make_match(f"r{n}", item=f"w:{n}", title=f"*Story* {n}") for n in range(2)]
    payload = slack_group_payload(matches)
    assert payload["text"] == (
        "\u2217Story\u2217 0 — [HIGH] Rule r0; \u2217Story\u2217 1 — [HIGH] Rule r1"
    )
    sections = [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"]
    assert sections[0].startswith("*<https://wire.example/w/0|\u2217Story\u2217 0>*")
    assert slack_problems(payload) == []


def test_a_slack_digest_groups_by_topic_and_lists_every_alert() -> None:
    digest = digest_of(*([Severity.LOW] * 60), Severity.HIGH)  # the HIGH one is in r0
    [payload] = slack_digest_payloads(digest)
    assert payload == slack_digest_payload(digest)
    assert slack_problems(payload) == []
    sections = [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"]
    assert sections[0].startswith("*Rule r0* (21)")  # the topic with the HIGH alert first
    assert [s.split("*")[1] for s in sections[1:]] == ["Rule r1", "Rule r2"]
    listed = "\n".join(sections)
    assert all(f"Item {n}>" in listed for n in range(61))
    assert "more" not in listed
    assert "08:00 Asia/Almaty" in payload["blocks"][0]["text"]["text"]


def test_a_long_slack_digest_continues_in_further_posts_within_slacks_limits() -> None:
    """300 alerts with long headlines: every one listed once, in posts Slack accepts (50
    blocks, 3,000-character sections), each marked "part k of n"; a topic that goes on in
    another section says so."""
    matches = [
        make_match(f"r{n % 2}", item=f"w:{n}", title=f"Item {n} " + "tungsten " * 20)
        for n in range(300)
    ]
    groups = tuple((topic, tuple(ms)) for topic, ms in group_by_topic(matches))
    payloads = slack_digest_payloads(Digest("slack", NOW, "Asia/Almaty", groups))
    assert len(payloads) > 1
    listed: list[str] = []
    for part, payload in enumerate(payloads, start=1):
        assert slack_problems(payload) == []
        assert len(payload["blocks"]) <= 50
        header = payload["blocks"][0]["text"]["text"]
        assert header.endswith(f"part {part} of {len(payloads)}")
        assert payload["text"].endswith(f"(part {part} of {len(payloads)})")
        for block in payload["blocks"][1:]:
            assert len(block["text"]["text"]) <= 3000
            listed += block["text"]["text"].splitlines()[1:]
    assert sorted(int(line.split("Item ")[1].split()[0]) for line in listed) == list(range(300))
    headings = [b["text"]["text"].splitlines()[0] for p in payloads for b in p["blocks"][1:]]
    assert headings[0] == "*Rule r0* (150)"
    assert "*Rule r0* (cont.)" in headings


def test_a_digest_email_has_both_parts_and_a_stable_message_id() -> None:
    digest = digest_of(Severity.LOW, Severity.HIGH)
    first = digest_email(digest, sender="m@example.org", recipients=["a@example.org"], now=NOW)
    again = digest_email(digest, sender="m@example.org", recipients=["a@example.org"], now=NOW)
    assert first["Message-ID"] == again["Message-ID"]
    assert "Item 0" in first.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = first.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<h3>Rule r0 (1)</h3>" in html


def test_webhook_bodies_follow_the_documented_schema() -> None:
    match = make_match(title=f"Tender {EVIL}")
    body = webhook_alert_body(match, story="s1", now=NOW)
    assert set(body) == {
        "schema", "kind", "sent_at", "id", "story", "follow_up", "update", "rule", "item",
        "terms", "hits", "quote", "story_title", "provenance", "explanation", "gloss",
        "translation", "also",
    }  # fmt: skip
    assert body["also"] == []
    assert body["follow_up"] is None
    assert body["update"] is False
    assert body["item"]["alt"] == ""
    assert body["item"]["title"] == f"Tender {EVIL}"  # data, not markup: not escaped
    assert body["sent_at"] == "2026-03-02T03:00:00+00:00"
    assert body["hits"][0]["term"] == "tungsten"
    bad_link = webhook_alert_body(make_match(), story="s", now=NOW)
    assert bad_link["item"]["link"].startswith("https://")
    digest = webhook_digest_body(digest_of(Severity.LOW), stories={}, now=NOW)
    assert digest["schema"] == "monitor.digest.v1"
    assert digest["count"] == 1
    assert digest["groups"][0]["alerts"][0]["item"]["title"] == "Item 0"


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        (
            "#header\nHi\n#section\nbody\n#divider\n#context\na\nb\n",
            ["header", "section", "divider", "context"],
        ),
        ("#section\n\n#context\n\n", []),  # empty blocks are dropped
        ("no marker at all\n", []),
        ("#section\n" + "x" * 5000, ["section"]),
    ],
)  # fmt: skip
def test_slack_blocks_parse_the_template_format(text: str, kinds: list[str]) -> None:
    blocks = slack_blocks(text)
    assert [b["type"] for b in blocks] == kinds
    assert slack_problems({"text": "t", "blocks": blocks}) == []


def test_a_slack_template_cannot_exceed_50_blocks() -> None:
    assert len(slack_blocks("#divider\n" * 80)) == 50


def write(folder: Path, name: str, text: str) -> Templates:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return Templates(folder)


def test_an_overriding_slack_template_escapes_feed_text(tmp_path: Path) -> None:
    templates = write(
        tmp_path / "t",
        "slack_alert.j2",
        "#section\n*{{ alert.title }}* from {{ alert.source }}\n{{ alert.headline }}\n",
    )
    payload = slack_payload(make_match(title=f"Tender {EVIL}"), templates)
    [block] = payload["blocks"]
    text = block["text"]["text"]
    assert "&lt;!channel&gt;" in text
    assert "<!channel>" not in text
    assert "*<https://wire.example/wire/1|Tender &lt;!channel&gt;" in text  # the Markup link


def test_an_overriding_slack_template_gets_feed_text_without_formatting_markers(
    tmp_path: Path,
) -> None:
    """``finalize`` escapes only ``&<>``; the feed variables arrive with their markers
    already swapped for look-alikes, so a template's own bold is the only bold."""
    templates = write(
        tmp_path / "t",
        "slack_alert.j2",
        "#section\n*{{ alert.title }}* from {{ alert.source }} ({{ alert.rule_title }})\n",
    )
    match = make_match(title="*Big* _news_ ~x~ `y`")
    payload = slack_payload(replace(match, item=replace(match.item, source="wire_*1*")), templates)
    [block] = payload["blocks"]
    assert block["text"]["text"] == (
        "*\u2217Big\u2217 \u02cdnews\u02cd \u223cx\u223c \u02cby\u02cb* from "
        "wire\u02cd\u22171\u2217 (Rule kz-tungsten)"
    )


def test_an_overriding_email_template_is_autoescaped(tmp_path: Path) -> None:
    templates = write(
        tmp_path / "t", "email_alert.html.j2", "<p>{{ alert.title }}</p><p>{{ alert.link }}</p>"
    )
    message = email_message(
        make_match(title="<script>alert(1)</script>"),
        sender="m@example.org",
        recipients=["a@example.org"],
        now=NOW,
        templates=templates,
    )
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert html.startswith("<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>")
    plain = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Title:   <script>" in plain  # the shipped text template still applies


def test_feed_text_is_never_compiled_as_a_template() -> None:
    match = make_match(title="{{ 7 * 7 }} {% for x in range(3) %}x{% endfor %}")
    payload = slack_payload(match)
    dumped = json.dumps(payload, ensure_ascii=False)
    assert "{{ 7 \u2217 7 }} {% for x in range(3) %}x{% endfor %}" in dumped  # `*` escaped
    assert "49" not in dumped


def test_a_broken_override_is_reported_with_file_and_line(tmp_path: Path) -> None:
    templates = write(tmp_path / "t", "email_alert.txt.j2", "ok\n{% if %}\n")
    with pytest.raises(TemplateError, match=r"email_alert\.txt\.j2:2"):
        templates.check()
    undefined = write(tmp_path / "u", "email_alert.txt.j2", "{{ alert.nope }}")
    with pytest.raises(TemplateError, match="nope"):
        undefined.render("email_alert.txt.j2", alert={})


def test_shipped_templates_all_compile() -> None:
    Templates().check()
    Templates(Path("/nonexistent")).check()
