"""Rendering a Match for Slack, email and the console: content, escaping, limits, quotes."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.deliver.render.email_mime import (
    HEADER_BYTES,
    SUBJECT_CHARS,
    email_html,
    email_message,
    email_subject,
)
from monitor.deliver.render.plain import console_text
from monitor.deliver.render.quote import Segment, find_sentence, quote
from monitor.deliver.render.slack_blocks import (
    SLACK_CONTEXT_CHARS,
    SLACK_HEADER_CHARS,
    SLACK_MAX_BLOCKS,
    SLACK_SECTION_CHARS,
    SLACK_TEXT_CHARS,
    ZERO_WIDTH_SPACE,
    mrkdwn_escape,
    slack_escape,
    slack_payload,
    slack_text,
)
from monitor.deliver.render.strings import clean_line, clip, clip_bytes, format_time, safe_link
from monitor.model import Item, Match, Severity, SourceNote, TermHit

PUBLISHED = datetime(2024, 5, 1, 12, 34, tzinfo=UTC)
NOW = datetime(2024, 5, 1, 12, 40, tzinfo=UTC)
SUMMARY = (
    "Markets were calm on Monday. The army said new sanctions on Russia would follow soon! "
    "Officials declined to comment."
)


def hit(item: Item, term: str, field: str = "summary", occurrence: int = 0) -> TermHit:
    """A TermHit for the ``occurrence``-th place ``term`` appears in the item's field."""
    text = getattr(item, field)
    starts = [m.start() for m in re.finditer(re.escape(term), text, re.IGNORECASE)]
    start = starts[occurrence]
    return TermHit(term.lower(), field, start, start + len(term), text[start : start + len(term)])


def make_item(**changes: Any) -> Item:
    fields: dict[str, Any] = {
        "id": "item-1",
        "source": "reuters-world",
        "title": "Troops mass at the border",
        "summary": SUMMARY,
        "link": "https://example.com/news/1?a=1&b=2",
        "published": PUBLISHED,
    }
    fields.update(changes)
    return Item(**fields)


def make_match(
    item: Item | None = None, terms: tuple[str, ...] = ("sanctions",), **changes: Any
) -> Match:
    item = item or make_item()
    hits = tuple(hit(item, term) for term in terms)
    fields: dict[str, Any] = {
        "rule_id": "ru-sanctions",
        "rule_title": "Sanctions on Russia",
        "severity": Severity.HIGH,
        "rule_version": "rv-2024-05-01",
        "item": item,
        "hits": hits,
    }
    fields.update(changes)
    return Match(**fields)


def mrkdwn_texts(payload: dict[str, Any]) -> list[str]:
    """Every string Slack will parse as mrkdwn: the fallback text and mrkdwn text objects."""
    texts = [payload["text"]]
    for block in payload["blocks"]:
        objects = [block.get("text"), *list(block.get("elements", []))]
        texts += [o["text"] for o in objects if isinstance(o, dict) and o.get("type") == "mrkdwn"]
    return texts


def all_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in all_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in all_strings(v)]
    return []


# --- sentences and quotes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "term", "sentence"),
    [
        ("One. Two three. Four.", "three", "Two three."),
        ("One. Two three. Four.", "One", "One."),
        ("One. Two three. Four.", "Four", "Four."),
        ("No punctuation at all here", "at", "No punctuation at all here"),
        ("Before.\nThe line with it\nAfter", "with", "The line with it"),
        ("Ask? Really! Yes.", "Really", "Really!"),
        ('He said "stop." Then left.', "stop", 'He said "stop."'),
        ("The U.S. Navy sailed. Later.", "U.S. Navy", "The U.S. Navy sailed."),
        ("第一句。第二句有制裁。第三句。", "制裁", "第二句有制裁。"),
        ("Это первое. Второе о санкциях. Третье.", "санкциях", "Второе о санкциях."),
    ],
)
def test_find_sentence_returns_the_sentence_around_the_term(
    text: str, term: str, sentence: str
) -> None:
    start = text.index(term)
    begin, end = find_sentence(text, start, start + len(term))
    assert text[begin:end] == sentence


def test_quote_is_the_sentence_of_the_first_hit_with_every_hit_in_it_marked() -> None:
    match = make_match(terms=("sanctions", "Russia"))
    found = quote(match)
    assert found is not None
    assert found.text == "The army said new sanctions on Russia would follow soon!"
    assert [s.text for s in found.segments if s.hit] == ["sanctions", "Russia"]
    assert not found.clipped_start
    assert not found.clipped_end


def test_quote_prefers_a_summary_hit_because_the_title_is_shown_anyway() -> None:
    item = make_item(title="Sanctions loom")
    match = make_match(item, terms=(), hits=(hit(item, "sanctions", "title"), hit(item, "army")))
    found = quote(match)
    assert found is not None
    assert found.field == "summary"
    assert "army" in found.text


def test_quote_falls_back_to_the_title_when_only_the_title_matched() -> None:
    item = make_item(title="Sanctions loom")
    match = make_match(item, terms=(), hits=(hit(item, "sanctions", "title"),))
    found = quote(match)
    assert found is not None
    assert found.field == "title"
    assert found.segments[0] == Segment("Sanctions", hit=True)


def test_quote_clips_a_long_sentence_around_the_hit_visibly() -> None:
    words = " ".join(f"word{i}" for i in range(2000))
    item = make_item(summary=f"{words} sanctions {words}.")
    found = quote(make_match(item), limit=120)
    assert found is not None
    assert len(found.text) <= 120
    assert "sanctions" in found.text
    assert found.clipped_start
    assert found.clipped_end
    assert found.text.split()[0].startswith("word")  # cut at a space, not inside a word


def test_quote_survives_stale_offsets_by_searching_for_the_hit_text() -> None:
    stale = TermHit("sanctions", "summary", 0, 9, "sanctions")  # points at "Markets w"
    found = quote(make_match(hits=(stale,)))
    assert found is not None
    assert [s.text for s in found.segments if s.hit] == ["sanctions"]


def test_quote_ignores_hits_on_unknown_fields_and_falls_back_to_the_lead() -> None:
    odd = TermHit("x", "body", 0, 1, "x")
    found = quote(make_match(hits=(odd,)))
    assert found is not None
    assert found.text == "Markets were calm on Monday."
    assert not any(s.hit for s in found.segments)


def test_quote_is_none_when_there_is_nothing_to_quote() -> None:
    assert quote(make_match(make_item(summary="  "), terms=())) is None


def test_quote_removes_control_characters_and_line_breaks() -> None:
    item = make_item(summary="Alarm \x1b[31mred\x1b[0m sanctions\r\nnow")
    found = quote(make_match(item))
    assert found is not None
    assert "\x1b" not in found.text
    assert "\r" not in found.text


def test_quote_fallback_skips_leading_blank_lines() -> None:
    found = quote(make_match(make_item(summary="\n\n  First line here\nSecond"), terms=()))
    assert found is not None
    assert found.text == "First line here"


@settings(deadline=None)
@given(text=st.text(max_size=2000), data=st.data(), limit=st.integers(20, 400))
def test_quote_always_shows_the_hit_within_the_limit(
    text: str, data: st.DataObject, limit: int
) -> None:
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, min(len(text), start + 15)))
    item = make_item(summary=text)
    match = make_match(item, terms=(), hits=(TermHit("t", "summary", start, end, text[start:end]),))
    found = quote(match, limit=limit)
    if found is None:
        return
    assert len(found.text) <= limit
    assert "\n" not in found.text
    shown = clean_line(text[start:end])
    if start < end and shown:
        assert shown in found.text
        assert any(segment.hit for segment in found.segments)


# --- links and text helpers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/a?b=1&c=2", "https://example.com/a?b=1&c=2"),
        ("HTTP://Example.com/x", "http://Example.com/x"),
        ('https://example.com/a b<c>|d"e', "https://example.com/a%20b%3Cc%3E%7Cd%22e"),
        ("https://example.com/%E2%9C%93", "https://example.com/%E2%9C%93"),
        (
            "https://пример.рф/новости",
            "https://xn--e1afmkfd.xn--p1ai/%D0%BD%D0%BE%D0%B2%D0%BE%D1%81%D1%82%D0%B8",
        ),
        ("javascript:alert(1)", None),
        ("mailto:a@example.com", None),
        ("/relative/path", None),
        ("ftp://example.com/file", None),
        ("http://[::1", None),
        ("http://evil|bank", None),
        ("", None),
    ],
)
def test_safe_link_keeps_only_http_urls_and_encodes_delimiters(
    url: str, expected: str | None
) -> None:
    assert safe_link(url) == expected


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("exactly10!", 10, "exactly10!"),
        ("longer than ten", 10, "longer th…"),
    ],
)
def test_clip_marks_a_cut_with_an_ellipsis(text: str, limit: int, expected: str) -> None:
    assert clip(text, limit) == expected


def test_slack_text_clips_by_escaped_length_without_splitting_entities() -> None:
    escaped = slack_text("<" * 100, 22)
    assert escaped == "&lt;" * 5 + "…"


def test_format_time_is_utc_whatever_the_zone() -> None:
    moment = datetime(2024, 5, 1, 15, 34, tzinfo=timezone(timedelta(hours=3)))
    assert format_time(moment) == "2024-05-01 12:34 UTC"


# --- Slack ------------------------------------------------------------------------------------


def test_slack_payload_carries_headline_link_source_rule_and_terms() -> None:
    payload = slack_payload(make_match(terms=("sanctions", "Russia")))
    blocks = payload["blocks"]
    assert blocks[0] == {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": "\N{LARGE ORANGE CIRCLE} HIGH · Sanctions on Russia",
        },
    }
    body = "\n".join(mrkdwn_texts(payload))
    assert "*<https://example.com/news/1?a=1&amp;b=2|Troops mass at the border>*" in body
    assert "*reuters-world* · 2024-05-01 12:34 UTC · severity *high*" in body
    assert "> The army said new *sanctions* on *Russia* would follow soon!" in body
    assert "Matched: *sanctions*, *russia*" in body
    assert "Rule `ru-sanctions` (Sanctions on Russia) · rule set `rv-2024-05-01`" in body
    assert payload["text"] == "Troops mass at the border — [HIGH] Sanctions on Russia"
    assert payload["unfurl_links"] is False


def test_slack_bold_inside_a_word_gets_a_zero_width_space_so_slack_renders_it() -> None:
    payload = slack_payload(make_match(terms=("sanction",)))
    assert "*sanction*\u200bs" in "\n".join(mrkdwn_texts(payload))


def test_slack_escapes_mentions_and_links_smuggled_in_item_text() -> None:
    item = make_item(
        title="<!channel> urgent <!here|here> & <@U123>",
        summary="Click <http://evil.example|your bank> for sanctions <!everyone>",
        source="feed <!subteam^S1>",
    )
    payload = slack_payload(make_match(item))
    dumped = json.dumps(payload)
    assert "<!" not in dumped
    assert "<http://evil.example" not in dumped
    body = "\n".join(mrkdwn_texts(payload))
    assert "&lt;!channel&gt; urgent &lt;!here|here&gt; &amp; &lt;@U123&gt;" in body
    assert "&lt;http://evil.example|your bank&gt;" in body


def test_slack_headline_is_not_linked_when_the_link_is_not_http() -> None:
    item = make_item(link="javascript:alert(1)")
    headline = slack_payload(make_match(item))["blocks"][1]["text"]["text"]
    assert headline == "*Troops mass at the border*"


def test_slack_payload_truncates_a_huge_item_visibly_within_slack_limits() -> None:
    huge = "x" * 10_000
    item = make_item(title="T" * 10_000, summary=f"{huge} sanctions {huge}", source="s" * 5000)
    match = make_match(item, rule_title="R" * 500)
    payload = slack_payload(match)
    header = payload["blocks"][0]["text"]["text"]
    assert len(header) <= SLACK_HEADER_CHARS
    assert header.endswith("…")
    assert all(len(text) <= SLACK_SECTION_CHARS for text in mrkdwn_texts(payload))
    assert "…" in payload["blocks"][1]["text"]["text"]
    quoted = payload["blocks"][3]["text"]["text"]
    assert quoted.startswith("> …")
    assert quoted.endswith("…")
    assert "*sanctions*" in quoted


def test_slack_term_list_is_cut_with_a_count_when_there_are_very_many() -> None:
    item = make_item(summary=" ".join(f"term{i:03d}" for i in range(600)))
    match = make_match(item, terms=tuple(f"term{i:03d}" for i in range(600)))
    terms_text = slack_payload(match)["blocks"][-1]["elements"][0]["text"]
    assert len(terms_text) <= SLACK_CONTEXT_CHARS
    assert re.search(r"… \(\+\d+ more\)$", terms_text)


untrusted = st.text(
    alphabet=st.sampled_from(list("<>&!|*_~`@^#:/.-? \n\r\t\x00\x1b\u2028") + list("abcXYZ")),
    max_size=200,
) | st.sampled_from(["<!channel>", "<!here>", "<http://evil|bank>", "<!date^1^x|y>", "&lt;"])


def _fuzzed_match(title: str, summary: str, source: str, link: str, start: int, size: int) -> Match:
    item = make_item(title=title, summary=summary, source=source, link=link)
    end = min(len(summary), start + size)
    start = min(start, end)
    hits = (TermHit(summary[start:end] or "x", "summary", start, end, summary[start:end]),)
    return make_match(item, terms=(), hits=hits)


@settings(deadline=None)
@given(
    title=untrusted,
    summary=untrusted,
    source=untrusted,
    link=untrusted | st.just("https://ok.example/x"),
    start=st.integers(0, 200),
    size=st.integers(0, 20),
)
def test_item_text_never_reaches_slack_as_markup(
    title: str, summary: str, source: str, link: str, start: int, size: int
) -> None:
    payload = slack_payload(_fuzzed_match(title, summary, source, link, start, size))
    assert "<!" not in json.dumps(payload)
    expected_link = safe_link(link)
    for text in mrkdwn_texts(payload):
        for opened in re.finditer(r"<([^>]*)>", text):
            target = opened.group(1).split("|", 1)[0]
            assert expected_link is not None
            assert target == slack_escape(expected_link)
        assert text.count("<") == len(re.findall(r"<[^>]*>", text))


@settings(deadline=None, max_examples=50)
@given(
    title=st.text(max_size=12_000),
    summary=st.text(max_size=12_000),
    source=st.text(max_size=400),
    rule_title=st.text(max_size=400),
    terms=st.lists(st.text(min_size=1, max_size=300), max_size=60),
    link=st.text(max_size=3000).map(lambda path: "https://example.com/" + path),
)
def test_slack_payload_always_fits_slack_limits(
    title: str, summary: str, source: str, rule_title: str, terms: list[str], link: str
) -> None:
    item = make_item(title=title, summary=summary, source=source, link=link)
    hits = tuple(TermHit(t, "summary", 0, 0, t) for t in terms)
    payload = slack_payload(make_match(item, terms=(), hits=hits, rule_title=rule_title))
    blocks = payload["blocks"]
    assert len(blocks) <= SLACK_MAX_BLOCKS
    header = blocks[0]["text"]["text"]
    assert 0 < len(header) <= SLACK_HEADER_CHARS
    assert len(payload["text"]) <= SLACK_TEXT_CHARS
    for block in blocks[1:]:
        if block["type"] == "section":
            assert 0 < len(block["text"]["text"]) <= SLACK_SECTION_CHARS
        else:
            assert 1 <= len(block["elements"]) <= 10
            assert all(0 < len(e["text"]) <= SLACK_CONTEXT_CHARS for e in block["elements"])


# --- Slack: mrkdwn escaping, layout of the notification text and follow-ups ------------------

MARKERS = "*_~`\uff0a\uff3f\uff40"
"""The formatting markers Slack reads (ASCII and fullwidth): none may come from a feed."""


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("*bold*", "\u2217bold\u2217"),
        ("_italic_", "\u02cditalic\u02cd"),
        ("~strike~", "\u223cstrike\u223c"),
        ("`code`", "\u02cbcode\u02cb"),
        (
            "\uff0abold\uff0a \uff3fit\uff3f \uff40c\uff40",
            "\ufe61bold\ufe61 \u2e0fit\u2e0f \u02cbc\u02cb",
        ),
        ("a & <b> *c*", "a &amp; &lt;b&gt; \u2217c\u2217"),
        ("plain text, 100% ok!", "plain text, 100% ok!"),
    ],
)
def test_mrkdwn_escape_swaps_markers_for_look_alikes_and_keeps_the_entities(
    text: str, escaped: str
) -> None:
    assert mrkdwn_escape(text) == escaped


@settings(deadline=None)
@given(text=st.text())
def test_mrkdwn_escape_leaves_no_marker_and_no_bare_control_character(text: str) -> None:
    escaped = mrkdwn_escape(text)
    assert not set(escaped) & set(MARKERS + "<>")
    assert re.sub("&(amp|lt|gt);", "", escaped).count("&") == 0
    assert len(re.sub("&(amp|lt|gt);", "x", escaped)) == len(text)  # one character each


def test_slack_text_keeps_a_leading_quote_mark_from_starting_a_block_quote() -> None:
    assert slack_text("> not a quote", 100) == "\u00ad&gt; not a quote"
    assert slack_text("\uff1e nor this", 100) == "\u00ad\uff1e nor this"
    assert slack_text("a > b", 100) == "a &gt; b"
    assert slack_text(">" * 100, 22) == "\u00ad" + "&gt;" * 5 + "…"


def test_feed_text_with_markers_is_shown_literally_everywhere() -> None:
    item = make_item(
        title="*Breaking* _news_ ~old~ `code`",
        summary="Markets were calm. The *army* said new sanctions_ on ~Russia~ would follow.",
        source="wire_*feed*",
    )
    payload = slack_payload(make_match(item))
    texts = mrkdwn_texts(payload)
    body = "\n".join(texts)
    assert "|\u2217Breaking\u2217 \u02cdnews\u02cd \u223cold\u223c \u02cbcode\u02cb>*" in body
    assert "*wire\u02cd\u2217feed\u2217* · 2024-05-01" in body
    assert (
        f"> The \u2217army\u2217 said new *sanctions*{ZERO_WIDTH_SPACE}\u02cd on \u223cRussia\u223c"
        in body
    )
    assert payload["text"].startswith("\u2217Breaking\u2217 \u02cdnews\u02cd")
    assert not any(set(text) & set("_~") for text in texts)


def test_rule_terms_with_wildcards_and_prefixes_are_not_formatting() -> None:
    item = make_item(summary="Talks in Kazakhstan on sanctions.")
    start = item.summary.index("Kazakhstan")
    hits = (
        TermHit("@kazakhstan:Kazakh*", "summary", start, start + 10, "Kazakhstan"),
        TermHit("sanction_s~", "summary", start + 14, start + 23, "sanctions"),
    )
    payload = slack_payload(make_match(item, terms=(), hits=hits))
    terms_text = payload["blocks"][-1]["elements"][0]["text"]
    assert terms_text == "Matched: *@kazakhstan:Kazakh\u2217*, *sanction\u02cds\u223c*"


@pytest.mark.parametrize(
    ("summary", "term", "expected"),
    [
        ("New sanctions.", "sanctions", "> New *sanctions*\u200b."),
        ("New sanctions now", "sanctions", "> New *sanctions* now"),
        ("Big *sanctions* now", "sanctions", "> Big \u2217\u200b*sanctions*\u200b\u2217 now"),
        ("A&sanctions now", "sanctions", "> A&amp;\u200b*sanctions* now"),
        ("Sanctions_now", "Sanctions", "> *Sanctions*\u200b\u02cdnow"),
    ],
)
def test_a_hit_next_to_escaped_text_still_renders_bold(
    summary: str, term: str, expected: str
) -> None:
    """Slack honours ``*`` only at a word boundary; a look-alike or an entity next to a hit is
    not one, so the renderer puts a zero-width space between them."""
    payload = slack_payload(make_match(make_item(summary=summary), terms=(term,)))
    assert expected in mrkdwn_texts(payload)


marked = st.text(
    alphabet=st.sampled_from(list(MARKERS + "<>&!|:@.? \n") + list("abcXYZ\u200b")), max_size=120
)


def _marked_match(
    title: str, summary: str, source: str, terms: list[str], start: int, size: int
) -> Match:
    """A story's follow-up whose every feed text and term is ``title`` ... ``terms``."""
    end = min(len(summary), start + size)
    start = min(start, end)
    hits = tuple(TermHit(term, "summary", start, end, summary[start:end]) for term in terms)
    notes = (
        SourceNote(source, "state_media", title[:2], summary[:2]),
        SourceNote(f"{source}-2", "wire", "kz", "ru", new=True),
    )
    return make_match(
        make_item(title=title, summary=summary, source=source),
        terms=(),
        hits=hits,
        follow_up="new language",
        story_title=summary,
        provenance=notes,
        explanation=f"first mention of {title}",
    )


def _markers_in(payload: dict[str, Any]) -> Counter[str]:
    return Counter(char for text in mrkdwn_texts(payload) for char in text if char in MARKERS)


_NEUTRAL = str.maketrans({marker: str(digit) for digit, marker in enumerate(MARKERS)})
"""Each marker to its own digit (no digit is in the alphabet): same length, nothing merges."""


@settings(deadline=None)
@given(
    title=marked,
    summary=marked,
    source=marked,
    terms=st.lists(marked.filter(bool), min_size=1, max_size=4),
    start=st.integers(0, 120),
    size=st.integers(0, 20),
)
def test_no_formatting_marker_from_a_feed_or_a_term_survives_into_slack(
    title: str, summary: str, source: str, terms: list[str], start: int, size: int
) -> None:
    """Every marker in the payload is one the renderer wrote: the same text with its markers
    swapped for digits renders exactly the same markers (bold pairs, the rule's code spans,
    the config keyword ``state_media``)."""
    payload = slack_payload(_marked_match(title, summary, source, terms, start, size))
    neutral = _marked_match(
        title.translate(_NEUTRAL),
        summary.translate(_NEUTRAL),
        source.translate(_NEUTRAL),
        [term.translate(_NEUTRAL) for term in terms],
        start,
        size,
    )
    found = _markers_in(payload)
    assert found == _markers_in(slack_payload(neutral))
    assert found["~"] == 0
    assert found["`"] == 4  # the rule id and the rule set version, as code
    assert set(found) <= set("*_`")


@settings(deadline=None)
@given(summary=marked, data=st.data())
def test_every_hit_in_a_quote_is_bold_at_word_boundaries(summary: str, data: st.DataObject) -> None:
    spans = data.draw(st.lists(st.tuples(st.integers(0, 120), st.integers(1, 15)), max_size=4))
    hits = tuple(
        TermHit("t", "summary", min(s, len(summary)), min(s + n, len(summary)), "")
        for s, n in spans
    )
    hits = tuple(replace(h, text=summary[h.start : h.end]) for h in hits if h.start < h.end)
    match = make_match(make_item(summary=summary), terms=(), hits=hits)
    found = quote(match)
    quoted = [t for t in mrkdwn_texts(slack_payload(match)) if t.startswith("> ")]
    if found is None:
        assert quoted == []
        return
    [text] = quoted
    bold = list(re.finditer(r"\*([^*]+)\*", text))
    expected = [mrkdwn_escape(s.text).strip() for s in found.segments if s.hit and s.text.strip()]
    assert [b.group(1) for b in bold] == expected
    assert text.count("*") == 2 * len(expected)
    for b in bold:
        assert text[b.start() - 1] in (" ", ZERO_WIDTH_SPACE)
        assert text[b.end() : b.end() + 1] in ("", " ", ZERO_WIDTH_SPACE)


def test_the_notification_text_starts_with_the_headline_then_the_rule() -> None:
    payload = slack_payload(make_match(make_item(title="> *Troops* mass")))
    assert payload["text"] == "\u00ad&gt; \u2217Troops\u2217 mass — [HIGH] Sanctions on Russia"
    untitled = slack_payload(make_match(make_item(title="  ")))
    assert untitled["text"] == "(untitled) — [HIGH] Sanctions on Russia"
    updated = slack_payload(make_match(update=True))
    assert updated["text"] == "Troops mass at the border — [HIGH] Updated: Sanctions on Russia"


def test_a_follow_up_says_why_and_which_story_in_one_line() -> None:
    notes = (
        SourceNote("reuters", "wire", "gb", "en"),
        SourceNote("xinhua", "state_media", "cn", "zh", new=True),
    )
    match = make_match(
        follow_up="new language",
        story_title="Russia *faces* new sanctions",
        provenance=notes,
        rule_id="ru_sanctions",
    )
    payload = slack_payload(match)
    blocks = payload["blocks"]
    assert (
        blocks[0]["text"]["text"] == "\N{LARGE ORANGE CIRCLE} HIGH · Follow-up: Sanctions on Russia"
    )
    story = next(t for t in mrkdwn_texts(payload) if "Sources (2)" in t)
    assert story.splitlines() == [
        "Follow-up (new language) · Story: *Russia \u2217faces\u2217 new sanctions*",
        "Sources (2): reuters (wire, gb, en); xinhua (state_media, cn, zh)",
        "New since the last message: *xinhua (state_media, cn, zh)*",
    ]
    rule = blocks[-1]["elements"][1]["text"]
    assert rule == "Rule `ru_sanctions` (Sanctions on Russia) · rule set `rv-2024-05-01`"
    assert "\n".join(mrkdwn_texts(payload)[1:]).count("new language") == 1
    assert payload["text"].startswith("Troops mass at the border — [HIGH] Follow-up (new language)")


def test_a_follow_up_without_a_story_title_still_gets_its_line() -> None:
    payload = slack_payload(make_match(follow_up="corroborated by 3 independent sources"))
    assert "Follow-up (corroborated by 3 independent sources)" in mrkdwn_texts(payload)


def test_source_names_are_escaped_but_source_kinds_read_as_configured() -> None:
    notes = (
        SourceNote("wire_*one*", "state_media", "k_z", "r~u"),
        SourceNote("two", "_odd_ kind", "", "", new=True),
    )
    match = make_match(follow_up="new language", provenance=notes)
    story = next(t for t in mrkdwn_texts(slack_payload(match)) if "Sources (2)" in t)
    assert (
        "Sources (2): wire\u02cd\u2217one\u2217 (state_media, k\u02cdz, r\u223cu); "
        "two (\u02cdodd\u02cd kind, ?)"
    ) in story


def test_a_rule_id_that_is_not_an_identifier_is_escaped_not_put_in_code() -> None:
    payload = slack_payload(make_match(rule_id="odd `id` *x*", rule_version=""))
    rule = payload["blocks"][-1]["elements"][1]["text"]
    assert rule == "Rule odd \u02cbid\u02cb \u2217x\u2217 (Sanctions on Russia) · rule set unknown"


# --- email ------------------------------------------------------------------------------------


def parse_bytes(message: EmailMessage) -> EmailMessage:
    """Serialise and parse back, as a mail server and client would see the message."""
    parsed = BytesParser(policy=policy.default).parsebytes(message.as_bytes())
    assert isinstance(parsed, EmailMessage)
    return parsed


def render_email(match: Match, channel: str = "email") -> EmailMessage:
    return email_message(
        match,
        sender="Monitor <alerts@example.org>",
        recipients=["analyst@example.org", "desk@example.org"],
        now=NOW,
        channel=channel,
    )


def test_email_has_text_and_html_parts_and_the_alert_headers() -> None:
    message = parse_bytes(render_email(make_match(terms=("sanctions", "Russia"))))
    assert message.get_content_type() == "multipart/alternative"
    assert message["Subject"] == "[HIGH] Sanctions on Russia: Troops mass at the border"
    assert message["From"] == "Monitor <alerts@example.org>"
    assert message["To"] == "analyst@example.org, desk@example.org"
    assert message["Date"] == "Wed, 01 May 2024 12:40:00 +0000"
    assert re.fullmatch(r"<[0-9a-f]{32}@example\.org>", str(message["Message-ID"]))
    assert message["List-Id"] == "Monitor alerts <alerts.monitor.local>"
    assert message["X-Monitor-Rule"] == "ru-sanctions"
    assert message["Auto-Submitted"] == "auto-generated"
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    assert text_part is not None
    assert html_part is not None
    text, markup = text_part.get_content(), html_part.get_content()
    assert "https://example.com/news/1?a=1&b=2" in text
    assert "*sanctions* on *Russia*" in text
    assert (
        '<a href="https://example.com/news/1?a=1&amp;b=2">Troops mass at the border</a>' in markup
    )
    assert "<mark><strong>sanctions</strong></mark>" in markup


def test_email_html_escapes_item_text() -> None:
    item = make_item(title="<script>alert(1)</script>", summary="<b>bold</b> sanctions & more")
    markup = email_html(make_match(item))
    assert "<script>" not in markup
    assert "<b>" not in markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup
    assert "&lt;b&gt;bold&lt;/b&gt; <mark><strong>sanctions</strong></mark> &amp; more" in markup


def test_email_html_does_not_link_non_http_urls() -> None:
    markup = email_html(make_match(make_item(link="javascript:alert(1)")))
    assert "href" not in markup


def test_email_message_id_is_stable_per_match_and_channel() -> None:
    match = make_match()
    first, again = render_email(match), render_email(match)
    assert first["Message-ID"] == again["Message-ID"]
    assert render_email(match, channel="email-desk")["Message-ID"] != first["Message-ID"]
    other = make_match(make_item(id="item-2"))
    assert render_email(other)["Message-ID"] != first["Message-ID"]


def test_email_header_injection_in_the_title_is_neutralised() -> None:
    item = make_item(title="Breaking\r\nBcc: x@evil.example\r\n\r\nbody")
    raw = render_email(make_match(item, rule_id="rule\nX-Evil: 1")).as_bytes()
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert parsed["Bcc"] is None
    assert parsed["X-Evil"] is None
    assert parsed["Subject"] == "[HIGH] Sanctions on Russia: Breaking Bcc: x@evil.example body"
    assert parsed["X-Monitor-Rule"] == "rule X-Evil: 1"


@settings(deadline=None)
@given(title=untrusted, rule_title=untrusted, rule_id=untrusted)
def test_email_headers_are_always_single_lines(title: str, rule_title: str, rule_id: str) -> None:
    match = make_match(make_item(title=title), rule_title=rule_title, rule_id=rule_id)
    parsed = parse_bytes(render_email(match))
    assert parsed["Bcc"] is None
    for name in ("Subject", "X-Monitor-Rule"):
        value = str(parsed[name])
        assert "\r" not in value
        assert "\n" not in value
    assert len(parsed.get_all("Subject") or []) == 1


@pytest.mark.parametrize(
    "title",
    [
        "Казахстан и вольфрамовое месторождение",
        "日本 と 中国 " * 20,
        "Россия и Китай " * 12,
        "🚨 " * 80,
    ],
)
def test_a_non_ascii_subject_survives_the_trip_through_mime_with_its_spaces(title: str) -> None:
    """Python folds long encoded headers and can lose the space between encoded words."""
    match = make_match(make_item(title=title), rule_title="Kazakhstan tungsten")
    assert parse_bytes(render_email(match))["Subject"] == email_subject(match)


words = st.text(alphabet=st.sampled_from(list("абвгд日本語é🚨ab ")), min_size=1, max_size=12)


@settings(deadline=None)
@given(title=st.lists(words, max_size=60).map(" ".join), rule_title=words)
def test_every_subject_round_trips_exactly(title: str, rule_title: str) -> None:
    match = make_match(make_item(title=title), rule_title=rule_title)
    parsed = parse_bytes(render_email(match))
    assert parsed["Subject"] == email_subject(match)


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [("abc", 3, "abc"), ("абвгд", 7, "аб…"), ("日本語", 8, "日…"), ("ab", 2, "ab")],
)
def test_clip_bytes_counts_utf8_bytes_and_never_splits_a_character(
    text: str, limit: int, expected: str
) -> None:
    assert clip_bytes(text, limit) == expected


def test_email_subject_is_clipped() -> None:
    subject = email_subject(make_match(make_item(title="x" * 5000)))
    assert len(subject) <= SUBJECT_CHARS
    wide = email_subject(make_match(make_item(title="🚨" * 5000)))
    assert len(wide.encode()) <= HEADER_BYTES
    assert subject.endswith("…")


def test_email_date_treats_a_naive_now_as_utc() -> None:
    message = email_message(
        make_match(), sender="a@example.org", recipients=["b@example.org"], now=datetime(2024, 1, 2)
    )
    assert message["Date"] == "Tue, 02 Jan 2024 00:00:00 +0000"


# --- console ----------------------------------------------------------------------------------


def test_console_text_is_a_readable_block_with_every_field() -> None:
    text = console_text(make_match(terms=("sanctions", "Russia")))
    assert text.splitlines() == [
        "[HIGH] Sanctions on Russia",
        "  Title:   Troops mass at the border",
        "  Link:    https://example.com/news/1?a=1&b=2",
        "  Source:  reuters-world",
        "  Time:    2024-05-01 12:34 UTC",
        "  Matched: sanctions, russia",
        "  Quote:   “The army said new *sanctions* on *Russia* would follow soon!”",
        "  Rule:    ru-sanctions (rule set rv-2024-05-01)",
    ]


def test_console_text_strips_terminal_escape_sequences_and_bidi_overrides() -> None:
    item = make_item(title="\x1b]0;pwned\x07Title \u202egnp.exe", source="src\x1b[2J")
    text = console_text(make_match(item))
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "\u202e" not in text
    assert len(text.splitlines()) == 8


def test_a_hit_only_in_the_image_alt_text_quotes_the_alt_text() -> None:
    """A picture captioned "Tungsten ore at Boguty" and a headline that names neither: the
    quote shows the caption, the words the rule found, not the summary's first sentence."""
    alt = "Tungsten ore from the Boguty deposit."
    start = alt.index("Boguty")
    match = Match(
        rule_id="kz-tungsten",
        rule_title="Kazakhstan tungsten",
        severity=Severity.HIGH,
        rule_version="rv1",
        item=Item(
            id="wire:alt",
            source="wire",
            title="A week in mining",
            summary="Prices were steady. Output rose.",
            link="https://wire.example/alt",
            published=datetime(2026, 3, 1, 6, 0, tzinfo=UTC),
            alt=alt,
        ),
        hits=(TermHit("Boguty", "alt", start, start + 6, "Boguty"),),
    )
    found = quote(match)
    assert found is not None
    assert found.field == "alt"
    assert "Boguty" in found.text
    assert [s.text for s in found.segments if s.hit] == ["Boguty"]
