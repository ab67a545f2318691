"""Turning raw entries into clean items: text, links, times, identity."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.ingest.dedup import content_fingerprint, item_identity, seen_keys
from monitor.ingest.markup import html_to_text
from monitor.ingest.normalize import _CONTROL as CONTROL
from monitor.ingest.normalize import (
    as_text,
    canonical_url,
    clamp_published,
    clean_query,
    clean_text,
    detect_script_language,
    normalize_entry,
    script_counts,
)
from monitor.ingest.parse import RawEntry
from monitor.model import Source
from monitor.rules import Term
from monitor.rules.match import ItemText

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SOURCE = Source(name="wire", url="https://wire.example/feed.xml", tags=("kz",))


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        ("<p>One</p><p>Two</p>", "One\n\nTwo"),
        ("Line<br>break", "Line\nbreak"),
        ("<b>bold</b> &amp; <i>italic</i>", "bold & italic"),
        ("<script>alert(1)</script><p>Safe</p><style>p{}</style>", "Safe"),
        ("A&nbsp;&mdash;&nbsp;B", "A — B"),
        ("<ul><li>one</li><li>two</li></ul>", "one\n\ntwo"),
        ("plain text", "plain text"),
        ("<!-- hidden --><p>shown</p>", "shown"),
    ],
)
def test_html_to_text(markup: str, expected: str) -> None:
    assert clean_text(html_to_text(markup)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ｆｕｌｌ　ｗｉｄｔｈ", "ｆｕｌｌ ｗｉｄｔｈ"),  # verbatim, the ideographic space a space
        ("商务部：含中国原产稀土", "商务部：含中国原产稀土"),  # full-width colon kept
        ("soft\u00adhyphen zero\u200bwidth", "softhyphen zerowidth"),
        ("  many   spaces\t\there ", "many spaces here"),
        ("a\n\n\n\nb", "a\n\nb"),
        ("bell\x07char", "bell char"),
    ],
)
def test_clean_text(text: str, expected: str) -> None:
    assert clean_text(text) == expected


def reference_clean_text(text: str) -> str:
    """The plain regex version ``clean_text`` was optimised from, kept as its oracle."""
    text = re.sub("[\u00ad\u200b\u200c\u200d\u2060\ufeff]", "", text)
    text = CONTROL.sub(" ", text)
    text = re.sub(r"[^\S\n]+", " ", text)
    text = re.sub(r"\s*\n\s*\n\s*", "\n\n", text)
    return re.sub(r" *\n *", "\n", text).strip()


_messy_text = (
    st.text(
        alphabet=st.sampled_from(
            [*"ab \n\t\r\x0b\x85\xa0", "\u3000", "\u2028", "\u200b", "\u00ad", "é", "Ｋ"]
        )
    )
    | st.text()
)


@given(_messy_text)
def test_clean_text_equals_the_plain_regex_version(text: str) -> None:
    assert clean_text(text) == reference_clean_text(text)


@given(st.text())
def test_clean_text_is_idempotent(text: str) -> None:
    once = clean_text(text)
    assert clean_text(once) == once


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        ("https://News.Example.COM/a?id=1#top", None, "https://news.example.com/a?id=1"),
        ("https://x.example/a?utm_source=rss&utm_medium=f&id=2", None, "https://x.example/a?id=2"),
        ("https://x.example/a?fbclid=abc&gclid=d", None, "https://x.example/a"),
        ("/news/1", "https://x.example/feed.xml", "https://x.example/news/1"),
        ("news/1", "https://x.example/dir/feed.xml", "https://x.example/dir/news/1"),
        ("http://x.example:80/a", None, "http://x.example/a"),
        ("https://x.example:8443/a", None, "https://x.example:8443/a"),
        ("https://x.example", None, "https://x.example/"),
        ("javascript:alert(1)", None, ""),
        ("data:text/html,hi", None, ""),
        ("mailto:desk@example.org", None, ""),
        ("http://x.example:70000/a", None, ""),  # a port out of range: dropped, not raised
        ("http://[::1/a", "https://x.example/", ""),  # a broken IPv6 address
    ],
)
def test_canonical_url(url: str, base: str | None, expected: str) -> None:
    assert canonical_url(url, base) == expected


_hosts = st.from_regex(r"[a-z]{1,10}\.(example|test)", fullmatch=True)
_paths = st.lists(st.from_regex(r"[a-z0-9-]{1,8}", fullmatch=True), max_size=4)
_params = st.lists(
    st.tuples(
        st.sampled_from(["id", "utm_source", "page", "fbclid", "q"]), st.text("ab12", max_size=3)
    ),
    max_size=4,
)


@given(_hosts, _paths, _params)
def test_canonical_url_is_idempotent_and_drops_tracking(
    host: str, path: list[str], params: list[tuple[str, str]]
) -> None:
    query = "&".join(f"{k}={v}" for k, v in params)
    url = f"https://{host.upper()}/{'/'.join(path)}?{query}#frag"
    once = canonical_url(url)
    assert canonical_url(once) == once
    assert "utm_" not in once
    assert "fbclid" not in once
    assert "#" not in once
    assert once.startswith(f"https://{host}/")


_absolute_links = st.builds(
    "{}://{}{}{}".format,
    st.sampled_from(["http", "https", "HTTP", "Https", "ftp"]),
    st.from_regex(r"[A-Za-z]{0,8}(\.example)?(:[0-9]{1,5})?", fullmatch=True),
    st.from_regex(r"(/[a-z0-9;.=-]{0,6}){0,3};?", fullmatch=True),
    st.from_regex(
        r"(\?[a-z_]{0,5}=?[a-z0-9;]{0,3}(&[a-z_]{1,5}=[a-z0-9]{0,3})?)?(#[a-z;]{0,3})?",
        fullmatch=True,
    ),
)


@given(_absolute_links, st.sampled_from(["https://x.example/dir/feed.xml", "http://y.example/"]))
def test_canonical_url_equals_joining_every_link_first(url: str, base: str) -> None:
    """Absolute links skip ``urljoin``; the result must be what joining them gave (hosts
    left empty, empty ";" parameters and out-of-range ports included)."""
    joined = urljoin(base, url)
    assert canonical_url(url, base) == canonical_url(joined)


def test_dates_missing_or_far_in_the_future_become_now() -> None:
    assert clamp_published(None, NOW) == NOW
    assert clamp_published(NOW + timedelta(days=30), NOW) == NOW
    soon = NOW + timedelta(hours=3)  # publishers' clocks and time zones drift a little
    assert clamp_published(soon, NOW) == soon


def entry(**overrides: object) -> RawEntry:
    fields: dict[str, object] = {
        "guid": "urn:1",
        "title": "Kazakhstan <b>tungsten</b>",
        "summary_html": "<p>First.</p><p>Second.</p>",
        "link": "/news/1?utm_campaign=x",
        "published": None,
        "lang": "en",
    }
    fields.update(overrides)
    return RawEntry(**fields)  # type: ignore[arg-type]


def test_normalized_item_is_clean_and_complete() -> None:
    item = normalize_entry(entry(), SOURCE, NOW)
    assert item.title == "Kazakhstan tungsten"
    assert item.summary == "First.\n\nSecond."
    assert item.link == "https://wire.example/news/1"
    assert item.published == NOW
    assert (item.source, item.source_tags) == ("wire", ("kz",))
    assert item.id == item_identity("wire", "urn:1", item.link, item.title, item.summary)


def test_identity_prefers_guid_then_link_then_text() -> None:
    by_guid = item_identity("f", "g", "https://a/", "t", "s")
    assert by_guid == item_identity("f", "g", "https://b/", "other", "text")
    by_link = item_identity("f", None, "https://a/", "t", "s")
    assert by_link == item_identity("f", "  ", "https://a/", "changed", "text")
    by_text = item_identity("f", None, "", "Title", "Body")
    assert by_text == item_identity("f", None, "", "title", "  body ")
    assert len({by_guid, by_link, by_text}) == 3
    assert by_text.endswith(content_fingerprint("Title", "Body"))


def test_the_same_article_in_two_feeds_shares_a_seen_key() -> None:
    first = normalize_entry(entry(guid="a-1"), SOURCE, NOW)
    other = Source(name="reprint", url="https://wire.example/other.xml")
    second = normalize_entry(entry(guid="zz-9", link="https://WIRE.example/news/1#c"), other, NOW)
    assert first.id != second.id
    assert set(seen_keys(first)) & set(seen_keys(second))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("商务部：含中国原产稀土的产品出口须申领许可", "zh"),
        ("Казахстан и вольфрамовое месторождение", "ru"),
        ("Қазақстан вольфрам кен орнын игеру туралы шешім қабылдады", "kk"),
        ("Kazakhstan opens tungsten tender", None),
        ("美国DFC宣布投资 Central Asia minerals", "zh"),
        ("", None),
    ],
)
def test_language_from_the_script_when_the_feed_names_none(text: str, expected: str | None) -> None:
    assert detect_script_language(text) == expected


def script_counts_reference(text: str) -> tuple[int, int, int, int]:
    """What ``script_counts`` counts, one character at a time."""
    han = cyrillic = kazakh = latin = 0
    for ch in text:
        if "\u4e00" <= ch <= "\u9fff":
            han += 1
        elif "\u0400" <= ch <= "\u04ff":
            cyrillic += 1
            kazakh += ch in "әғқңөұүһіӘҒҚҢӨҰҮҺІ"
        elif ch.isascii() and ch.isalpha():
            latin += 1
    return han, cyrillic, kazakh, latin


SCRIPT_SAMPLES = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.characters(min_codepoint=0x3FF0, max_codepoint=0x5010),  # around the Han start
        st.characters(min_codepoint=0x9FF0, max_codepoint=0xA010),  # and its end
        st.characters(min_codepoint=0x03F0, max_codepoint=0x0510),  # Cyrillic and neighbours
        st.sampled_from("әғқңөұүһіӘҒҚҢӨҰҮҺІёЁ"),
        st.characters(codec="utf-8"),
    ),
    max_size=200,
)


@given(SCRIPT_SAMPLES)
def test_script_counts_are_the_counts_of_a_character_loop(text: str) -> None:
    """Counting on UTF-8 bytes must count exactly the characters a plain loop counts, at
    the edges of each range too."""
    assert script_counts(text) == script_counts_reference(text)


def test_feed_language_wins_over_detection() -> None:
    russian = {"title": "Вольфрам", "summary_html": "<p>Казахстан</p>"}
    assert normalize_entry(entry(**russian, lang="kk"), SOURCE, NOW).lang == "kk"
    assert normalize_entry(entry(**russian, lang=None), SOURCE, NOW).lang == "ru"


def test_a_reprint_under_another_link_shares_the_text_key() -> None:
    text = "<p>The tender for the Upper Kairakty tungsten deposit drew two bids.</p>"
    first = normalize_entry(entry(guid="a", summary_html=text), SOURCE, NOW)
    other = Source(name="reprint", url="https://reprint.example/feed")
    second = normalize_entry(
        entry(guid="b", link="https://r.example/x", summary_html=text), other, NOW
    )
    assert set(seen_keys(first)) & set(seen_keys(second))
    short = normalize_entry(entry(guid="c", title="Weather", summary_html=""), SOURCE, NOW)
    assert not any(key.startswith("text:") for key in seen_keys(short))


# -- text types and queries as written -------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "kind", "text"),
    [
        ("AT&amp;T", "html", "AT&T"),
        ("&#8220;x&#8221;", "html", "\u201cx\u201d"),
        ("<b>bold</b>", "html", "bold"),
        ("Vector<T>", "text", "Vector<T>"),
        ("AT&amp;T", "text", "AT&amp;T"),
        ("<div>x</div>", "text", "<div>x</div>"),
    ],
)
def test_as_text_reads_markup_once_and_plain_text_never(written: str, kind: str, text: str) -> None:
    assert as_text(written, kind) == text  # type: ignore[arg-type]


def test_alt_text_comes_from_html_summaries_only() -> None:
    html = entry(summary_html='<p>x</p><img alt="Boguty  deposit"><img alt="AT&amp;T">')
    assert normalize_entry(html, SOURCE, NOW).alt == "Boguty deposit\nAT&T"
    plain = entry(summary_html='<img alt="Boguty">', summary_type="text")
    assert normalize_entry(plain, SOURCE, NOW).alt == ""


@pytest.mark.parametrize(
    ("query", "kept"),
    [
        ("r123", "r123"),
        ("a=1&utm_source=x&b=2", "a=1&b=2"),
        ("url=https%3A%2F%2Fx.example%2F&fbclid=9", "url=https%3A%2F%2Fx.example%2F"),
        ("q=a+b&q=c%20d", "q=a+b&q=c%20d"),
        ("x=%e2%9c%93", "x=%e2%9c%93"),
        ("utm%5Fsource=x&id=1", "id=1"),
        ("q=a b", "q=a%20b"),
        ("a&&b", "a&&b"),
        ("", ""),
    ],
)
def test_clean_query_removes_tracking_and_nothing_else(query: str, kept: str) -> None:
    assert clean_query(query) == kept


query_parts = st.text(
    alphabet=st.sampled_from("abcXYZ019-._~%2F+=,:/?@!$'()*;"), min_size=0, max_size=12
)


@given(
    st.lists(query_parts, max_size=6),
    st.lists(st.sampled_from(["utm_source=a", "fbclid=b", "gclid"]), max_size=3),
)
def test_clean_query_keeps_every_other_parameter_byte_for_byte(
    parts: list[str], tracking: list[str]
) -> None:
    """Whatever the publisher wrote, only tracking parameters go; nothing is re-encoded."""
    plain = [part for part in parts if not part.lower().startswith(("utm_", "fbclid", "gclid"))]
    assert clean_query("&".join(plain + tracking)) == "&".join(plain)


def test_a_title_reaches_the_alert_as_written_and_still_matches() -> None:
    """Issue 16: folding is for matching only.  The publisher's full-width colon and
    full-width letters stay in the item; a rule's term finds them, quoting them as written."""
    title = "商务部：含中国原产稀土 ｔｕｎｇｓｔｅｎ"
    item = normalize_entry(entry(title=title), SOURCE, NOW)
    assert item.title == title
    found = ItemText(item).hits(Term.parse("tungsten"), "title")
    assert [hit.text for hit in found] == ["ｔｕｎｇｓｔｅｎ"]
    assert [hit.text for hit in ItemText(item).hits(Term.parse("商务部"), "title")] == ["商务部"]
