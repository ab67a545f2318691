"""Text exactly as the publisher meant it: each case is a feed's bytes taken through parse,
prepare and the rules, and the item (or the rule's match) is checked (issue 15, item 5)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.deliver.render.plain import console_text
from monitor.ingest.parse import (
    SNIFFED_ENCODINGS,
    ZONE_OFFSETS,
    NotAFeedError,
    ParsedFeed,
    parse_feed,
    read_date,
    sniff_undeclared,
)
from monitor.ingest.prepare import PreparedFeed, prepare_feed
from monitor.model import Item, Match, Severity, Source, TermHit
from monitor.rules import RuleSet, load_rules

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SOURCE = Source(name="wire", url="https://wire.example/feed.xml")

RULES = """\
rules:
  - id: att
    title: AT&T
    severity: low
    match: {any: ["AT&T"]}
  - id: boguty
    title: Boguty deposit
    severity: low
    match: {any: [boguty]}
  - id: boguty-alt-only
    title: Boguty in images
    severity: low
    match: {any: [{term: boguty, in: alt_text}]}
  - id: tagged
    title: Filed under rare earths
    severity: low
    match: {any: [{term: rare earth*, in: categories}]}
  - id: tungsten-ru
    title: Tungsten in Russian
    severity: low
    match: {any: [вольфрам*]}
"""


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    path = tmp_path_factory.mktemp("rules") / "fidelity.yaml"
    path.write_text(RULES, encoding="utf-8")
    return load_rules([path])


def prepared(body: bytes, rules: RuleSet | None = None) -> PreparedFeed:
    found = prepare_feed(SOURCE, body, {}, SOURCE.url, NOW, rules)
    assert found.error is None, found.error
    return found


def items(body: bytes) -> list[Item]:
    return [Item.from_dict(json.loads(p.record.item_json)) for p in prepared(body).items]


def matches(body: bytes, rules: RuleSet) -> list[list[dict[str, object]]]:
    """Per item, its matches as queued (``Match.to_dict``)."""
    return [[json.loads(m) for m in p.record.match_json] for p in prepared(body, rules).items]


def matched_rules(body: bytes, rules: RuleSet) -> list[set[str]]:
    return [{str(m["rule"]) for m in found} for found in matches(body, rules)]


def rss(item: str, *, channel: str = "", declaration: str = '<?xml version="1.0"?>') -> bytes:
    return (
        f'{declaration}<rss version="2.0"><channel><title>Wire</title>{channel}'
        f"<item>{item}</item></channel></rss>"
    ).encode()


def atom(entry: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>Wire</title><id>urn:wire</id><updated>2026-11-20T10:00:00Z</updated>"
        f"<entry><id>urn:e1</id><updated>2026-11-20T10:00:00Z</updated>{entry}</entry></feed>"
    ).encode()


def json_feed(item: dict[str, object]) -> bytes:
    feed = {"version": "https://jsonfeed.org/version/1.1", "title": "Wire", "items": [item]}
    return json.dumps(feed).encode()


# -- titles honour the declared type ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "title"),
    [
        (rss("<title>AT&amp;amp;T buys a mine</title>"), "AT&T buys a mine"),
        (rss("<title>&amp;#8220;Quoted&amp;#8221; AT&amp;T</title>"), "\u201cQuoted\u201d AT&T"),
        (rss("<title>AT&amp;T buys a mine</title>"), "AT&T buys a mine"),
        (rss("<title>Shares of P&amp;amp;G</title>"), "Shares of P&G"),
        (rss("<title><![CDATA[AT&amp;T <b>buys</b>]]></title>"), "AT&T buys"),
        (rss("<title>Vector&lt;T&gt; in C++</title>"), "Vector<T> in C++"),
        (rss("<title>1 &lt; 2 and 3 &gt; 2</title>"), "1 < 2 and 3 > 2"),
        (
            atom('<title type="text">Vector&lt;T&gt; &amp;amp; AT&amp;T</title>'),
            "Vector<T> &amp; AT&T",
        ),
        (atom("<title>Vector&lt;T&gt;</title>"), "Vector<T>"),
        (atom('<title type="html">AT&amp;amp;T &lt;b&gt;buys&lt;/b&gt;</title>'), "AT&T buys"),
        (
            atom(
                '<title type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">'
                "AT&amp;T <b>buys</b> &lt;T&gt;</div></title>"
            ),
            "AT&T buys <T>",
        ),
        (
            json_feed({"id": "1", "title": "Vector<T> &amp; co", "content_text": "x"}),
            "Vector<T> &amp; co",
        ),
    ],
)
def test_titles_are_decoded_exactly_once_as_their_type_says(body: bytes, title: str) -> None:
    """An HTML title (RSS with entities, Atom html/xhtml) is read as markup once; a plain-text
    title (Atom text, JSON Feed) keeps every ``<`` and ``&`` it has."""
    assert [item.title for item in items(body)] == [title]


def test_a_rule_for_att_matches_a_title_escaped_twice(rules: RuleSet) -> None:
    """``AT&amp;amp;T`` in the XML was ``AT&amp;T`` before: the rule for AT&T never fired."""
    body = rss("<title>AT&amp;amp;T wins the tender</title><link>https://w.example/1</link>")
    assert matched_rules(body, rules) == [{"att"}]


def test_plain_text_content_keeps_its_markup_characters() -> None:
    """Atom ``type="text"`` content and JSON Feed ``content_text`` are never parsed as HTML."""
    (from_atom,) = items(atom('<content type="text">&lt;div&gt; stays, AT&amp;amp;T too</content>'))
    assert from_atom.summary == "<div> stays, AT&amp;T too"
    (from_json,) = items(json_feed({"id": "1", "content_text": "<div> stays</div> & so on"}))
    assert from_json.summary == "<div> stays</div> & so on"
    (from_html,) = items(json_feed({"id": "1", "content_html": "<div>read</div> &amp; so on"}))
    assert from_html.summary == "read\n\n& so on"


# -- image alt text and category tags reach the rules ----------------------------------------

IMAGE_ITEM = rss(
    "<title>Mining licence queue grows</title><link>https://w.example/2</link>"
    "<description>&lt;p&gt;Applications wait a year.&lt;/p&gt;"
    "&lt;img src=&quot;a.jpg&quot; alt=&quot;Workers at the Boguty &amp;amp; Co. deposit&quot;&gt;"
    "</description>"
)


def test_image_alt_text_is_its_own_field() -> None:
    (item,) = items(IMAGE_ITEM)
    assert item.alt == "Workers at the Boguty & Co. deposit"
    assert "Boguty" not in item.summary
    assert Item.from_dict(item.to_dict()) == item


def test_alt_text_is_in_the_default_scope_and_can_be_named(rules: RuleSet) -> None:
    """A rule without ``in:`` finds a word only the image's alt text has, and ``in: alt``
    (alias ``alt_text``) looks there alone; hits carry offsets into ``Item.alt``."""
    (found,) = matches(IMAGE_ITEM, rules)
    assert {m["rule"] for m in found} == {"boguty", "boguty-alt-only"}
    (item,) = items(IMAGE_ITEM)
    for match in found:
        for hit in match["hits"]:  # type: ignore[attr-defined]
            assert hit["field"] == "alt"
            assert item.alt[hit["start"] : hit["end"]] == hit["text"] == "Boguty"


def test_an_alert_for_an_alt_text_hit_renders() -> None:
    """Rendering quotes title and summary; a hit in ``alt`` must not break it."""
    (item,) = items(IMAGE_ITEM)
    start = item.alt.index("Boguty")
    hit = TermHit("boguty", "alt", start, start + 6, "Boguty")
    match = Match("boguty", "Boguty deposit", Severity.LOW, "v1", item, (hit,))
    text = console_text(match)
    assert "Mining licence queue grows" in text


@pytest.mark.parametrize(
    ("body", "tags"),
    [
        (
            rss("<title>x</title><category>Rare earths</category><category>KZ</category>"),
            ("Rare earths", "KZ"),
        ),
        (
            atom('<title>x</title><category term="rare-earths" label="Rare earths"/>'),
            ("rare-earths", "Rare earths"),
        ),
        (
            json_feed({"id": "1", "title": "x", "tags": ["Rare earths", "KZ"]}),
            ("Rare earths", "KZ"),
        ),
    ],
)
def test_category_tags_reach_the_rules(rules: RuleSet, body: bytes, tags: tuple[str, ...]) -> None:
    """RSS categories, Atom category terms and labels, JSON Feed tags: ``in: tags`` finds them."""
    assert [item.tags for item in items(body)] == [tags]
    assert matched_rules(body, rules) == [{"tagged"}]


# -- links keep their query as written -------------------------------------------------------


@pytest.mark.parametrize(
    ("link", "kept"),
    [
        ("https://w.example/a?r123", "https://w.example/a?r123"),
        (
            "https://w.example/a?url=https%3A%2F%2Fx.example%2Fb",
            "https://w.example/a?url=https%3A%2F%2Fx.example%2Fb",
        ),
        ("https://w.example/a?q=a+b&amp;utm_source=rss&amp;id=7", "https://w.example/a?q=a+b&id=7"),
        ("https://w.example/a?utm_medium=feed", "https://w.example/a"),
        ("https://w.example/a?x=%e2%9c%93&amp;fbclid=1", "https://w.example/a?x=%e2%9c%93"),
    ],
)
def test_links_keep_their_query_as_written_apart_from_tracking(link: str, kept: str) -> None:
    """An alert must open the page the feed linked: no ``?r123=``, nothing re-encoded."""
    (item,) = items(rss(f"<title>x</title><link>{link}</link>"))
    assert item.link == kept


# -- dates are read in their zone, or reported -----------------------------------------------


@pytest.mark.parametrize(
    ("written", "lang", "utc"),
    [
        ("Tue, 10 Nov 2026 04:00:00 EST", "en", datetime(2026, 11, 10, 9, 0, tzinfo=UTC)),
        ("Tue, 10 Nov 2026 04:00:00 MSK", "ru", datetime(2026, 11, 10, 1, 0, tzinfo=UTC)),
        ("Tue, 10 Nov 2026 04:00:00 CST", "zh-cn", datetime(2026, 11, 9, 20, 0, tzinfo=UTC)),
        ("Tue, 10 Nov 2026 04:00:00 CST", "en-us", datetime(2026, 11, 10, 10, 0, tzinfo=UTC)),
        ("Tue, 10 Nov 2026 04:00:00 BST", "en-gb", datetime(2026, 11, 10, 3, 0, tzinfo=UTC)),
        ("Tue, 10 Nov 2026 04:00:00 GMT", "en", datetime(2026, 11, 10, 4, 0, tzinfo=UTC)),
        ("Tue, 10 Nov 2026 04:00:00+0500", "kk", datetime(2026, 11, 9, 23, 0, tzinfo=UTC)),
        ("вт, 10 ноя 2026 04:00:00 +0300", "ru", datetime(2026, 11, 10, 1, 0, tzinfo=UTC)),
    ],
)
def test_a_date_is_read_in_the_zone_it_names(written: str, lang: str, utc: datetime) -> None:
    body = rss(
        f"<title>x</title><pubDate>{written}</pubDate>", channel=f"<language>{lang}</language>"
    )
    found = prepared(body)
    assert [p.published for p in found.items] == [utc]
    assert found.warnings == ()


@pytest.mark.parametrize(
    "written", ["Tue, 10 Nov 2026 04:00:00 XYZ", "Tue, 10 Nov 2026 04:00:00 IST", "next Tuesday"]
)
def test_a_date_that_cannot_be_read_is_reported_and_counts_as_first_seen(written: str) -> None:
    """Never silently UTC: feedparser reads an unknown zone name as UTC, hours off."""
    found = prepared(rss(f"<title>x</title><pubDate>{written}</pubDate>"))
    assert [p.published for p in found.items] == [NOW]
    (warning,) = found.warnings
    assert "date that cannot be read" in warning
    assert repr(written) in warning


def test_a_chinese_entry_without_a_language_reads_cst_as_china_time() -> None:
    body = rss("<title>钨矿出口许可</title><pubDate>Tue, 10 Nov 2026 04:00:00 CST</pubDate>")
    assert [p.published for p in prepared(body).items] == [datetime(2026, 11, 9, 20, tzinfo=UTC)]


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)),
    st.sampled_from(["EST", "EDT", "MSK", "BST", "CET", "CEST", "JST", "HKT", "ALMT"]),
)
def test_zone_names_give_the_same_time_as_their_numeric_offset(moment: datetime, zone: str) -> None:
    """``read_date`` of "..., HH:MM:SS MSK" equals that of "..., HH:MM:SS +0300"."""
    stamp = moment.replace(microsecond=0).strftime("%a, %d %b %Y %H:%M:%S")
    offset = int(ZONE_OFFSETS[zone].total_seconds() // 60)
    numeric = f"{'-' if offset < 0 else '+'}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"
    by_name, problem = read_date(f"{stamp} {zone}")
    assert problem is None
    assert by_name == moment.replace(microsecond=0, tzinfo=UTC) - timedelta(minutes=offset)
    assert by_name == read_date(f"{stamp} {numeric}")[0]


# -- JSON Feed values of the wrong type ------------------------------------------------------


def test_json_feed_values_of_the_wrong_type_are_left_out_and_reported() -> None:
    body = json_feed(
        {
            "id": 42,
            "title": {"text": "not a title"},
            "content_html": ["<p>x</p>"],
            "content_text": "Plain body",
            "url": "https://w.example/3",
            "tags": ["Mining", 7, {"a": 1}],
            "date_published": 1700000000,
        }
    )
    found = prepared(body)
    (item,) = [Item.from_dict(json.loads(p.record.item_json)) for p in found.items]
    assert (item.guid, item.title, item.summary, item.tags) == ("42", "", "Plain body", ("Mining",))
    assert found.items[0].published == NOW
    joined = " | ".join(found.warnings)
    for part in ("'title' is not text", "'content_html' is not text", "a tag is not text"):
        assert part in joined
    assert "(2 in this feed; first: a number)" in joined
    assert "'date_published' is not text" in joined


# -- bodies with no declared encoding --------------------------------------------------------

UNDECLARED = [
    ("Вольфрам: Казахстан выдал лицензию на экспорт", "cp1251", "windows-1251"),
    ("Вольфрам: Казахстан выдал лицензию на экспорт", "koi8_r", "koi8-r"),
    ("Вольфрам: Казахстан выдал лицензию на экспорт", "cp866", "ibm866"),
    ("Қазақстанда вольфрам кен орнын игеру басталды, үкімет лицензия берді", "kz1048", "kz-1048"),
    ("Қазақстан үкіметі сирек жер металдарына рұқсат берді, ғалымдар қуанды", "ptcp154", "ptcp154"),
    ("Уряд дозволив експорт: ґрунтовні зміни, її розвиток є важливим", "cp1251", "windows-1251"),
    ("哈萨克斯坦钨矿出口许可证获批，中国公司收购股份", "gb18030", "gb18030"),
    ("哈薩克斯坦鎢礦出口許可證獲批，中國公司收購股份", "big5", "big5"),
    ("Le gouvernement a approuvé l'exportation de tungstène à Genève", "cp1252", "windows-1252"),
]


@pytest.mark.parametrize(("title", "codec", "label"), UNDECLARED)
def test_an_undeclared_body_is_read_in_the_encoding_it_is_in(
    title: str, codec: str, label: str
) -> None:
    """No charset, no XML ``encoding``, not UTF-8: sniffed among the watched languages'
    encodings instead of read as windows-1252 (Kazakh in either of its two legacy
    encodings; Ukrainian, whose letters are Kazakh ones in KZ-1048, stays windows-1251)."""
    body = f'<rss version="2.0"><channel><title>t</title><item><title>{title}</title>'
    body += f"<description>{title}. {title}.</description></item></channel></rss>"
    raw = body.encode(codec)
    feed = parse_feed(raw, {"Content-Type": "application/rss+xml"}, SOURCE.url)
    assert [entry.title for entry in feed.entries] == [title]
    assert feed.encoding == label == SNIFFED_ENCODINGS[codec]
    assert not feed.warnings


def test_a_sniffed_russian_item_matches_a_russian_rule(rules: RuleSet) -> None:
    body = "<rss><channel><item><title>Вольфрамовый рудник продан</title></item></channel></rss>"
    assert matched_rules(body.encode("cp1251"), rules) == [{"tungsten-ru"}]


@pytest.mark.parametrize(
    ("head", "headers"),
    [
        ('<?xml version="1.0" encoding="windows-1252"?>', {}),
        ('<?xml version="1.0"?>', {"content-type": "text/xml; charset=windows-1252"}),
    ],
)
def test_a_declared_encoding_is_the_publishers_word(head: str, headers: dict[str, str]) -> None:
    """Sniffing is for bodies that declare nothing; a declaration is obeyed as before."""
    raw = f"{head}<rss><channel><item><title>Вольфрам</title></item></channel></rss>"
    body = raw.encode("cp1251")
    assert sniff_undeclared(body, headers) == (body, None)
    title = parse_feed(body, headers, SOURCE.url).entries[0].title
    assert title == "Вольфрам".encode("cp1251").decode("cp1252")


def test_utf8_bodies_are_left_alone() -> None:
    body = "<rss><channel><item><title>Вольфрам 钨</title></item></channel></rss>".encode()
    assert sniff_undeclared(body, {}) == (body, None)


# -- the shared corpus -----------------------------------------------------------------------

REALFEEDS = CORPUS / "realfeeds"
_DECLARATION = re.compile(rb'(<\?xml[^>]*?)\s+encoding\s*=\s*["\'][^"\']*["\']')


def _legacy_encoded(path: Path) -> bool:
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


DECLARED = (
    sorted(
        path
        for folder in ("ru-news", "zh-news")
        for path in (REALFEEDS / folder).glob("*")
        if path.is_file() and _legacy_encoded(path)
    )
    if REALFEEDS.is_dir()
    else []
)


@pytest.mark.corpus
@pytest.mark.parametrize("path", DECLARED, ids=[p.name for p in DECLARED])
def test_real_feeds_read_the_same_without_their_declaration(path: Path) -> None:
    """Every Russian and Chinese feed of the corpus in a legacy encoding (windows-1251,
    KOI8-R, IBM866, ISO-8859-5, MacCyrillic, GB2312/GB18030, Big5) gives the same titles
    when its XML ``encoding`` is removed: the sniffer finds what the publisher declared.
    (One of them, a fragment cut mid-text with no entry, is refused as truncated both ways.)"""
    raw = path.read_bytes()
    stripped = _DECLARATION.sub(rb"\1", raw, count=1)
    assert stripped != raw
    declared, sniffed = _read_or_refusal(raw), _read_or_refusal(stripped)
    if isinstance(declared, str) or isinstance(sniffed, str):
        assert "truncated" in str(declared)
        assert "truncated" in str(sniffed)
        return
    assert [e.title for e in sniffed.entries] == [e.title for e in declared.entries]
    assert [e.summary_html for e in sniffed.entries] == [e.summary_html for e in declared.entries]


def _read_or_refusal(body: bytes) -> ParsedFeed | str:
    """The parsed feed, or why it was refused."""
    try:
        return parse_feed(body, {}, SOURCE.url)
    except NotAFeedError as exc:
        return str(exc)


@pytest.mark.corpus
@pytest.mark.parametrize(
    ("name", "title"),
    [("koi8r.xml", "Как пережить новогоднюю ночь"), ("gb2312.xml", "不归移民漫画系列：专业工作")],
)
def test_feedparsers_undeclared_encoding_cases_read_right(name: str, title: str) -> None:
    """feedparser's own chardet cases (no encoding declared anywhere), once windows-1252."""
    raw = (CORPUS / "feedparser-tests" / "illformed" / "chardet" / name).read_bytes()
    assert parse_feed(raw, {}, SOURCE.url).entries[0].title == title


@pytest.mark.corpus
def test_craigslists_double_escaped_prices_are_decoded_once() -> None:
    raw = (REALFEEDS / "misc" / "rssparser_craigslist.rdf.xml").read_bytes()
    titles = [i.title for i in items(raw)]
    assert any(t.endswith("$3449") for t in titles)
    assert not any("&#x" in t for t in titles)


@pytest.mark.corpus
def test_real_dates_with_zone_names_and_glued_offsets_are_read() -> None:
    """Sky Sports writes BST (feedparser: UTC, an hour off); ACN Newswire glues its offset to
    the time (feedparser: unreadable, so every item counted as first seen)."""
    sky = parse_feed((REALFEEDS / "misc" / "prof18_skysports_xsl.rss.xml").read_bytes(), {}, "")
    assert sky.entries[0].published == datetime(2019, 5, 17, 5, 0, tzinfo=UTC)
    acn = parse_feed(
        (REALFEEDS / "zh-news" / "chardet_acnnewswire_gb2312.rss.xml").read_bytes(), {}, ""
    )
    assert all(entry.published is not None for entry in acn.entries)
    assert acn.entries[0].published == datetime(2005, 12, 27, 4, 8, 54, tzinfo=UTC)


@pytest.mark.corpus
def test_real_image_alt_texts_reach_items() -> None:
    raw = (REALFEEDS / "en-news" / "feedjira_huffpost_canada.rss.xml").read_bytes()
    alts = [i.alt for i in items(raw)]
    assert any("Dakota Collegiate" in alt for alt in alts)


@pytest.mark.corpus
def test_real_json_feed_dates_in_rfc_822_are_read() -> None:
    raw = (REALFEEDS / "jsonfeed" / "feedrs_elastic_jsonfeed11.json").read_bytes()
    feed = parse_feed(raw, {}, SOURCE.url)
    assert [entry.published for entry in feed.entries] == [
        datetime(2019, 5, 31, 19, 17, 58, tzinfo=UTC),
        datetime(2018, 2, 6, 13, 34, 12, tzinfo=UTC),
        None,  # it has no date at all
    ]
    assert feed.warnings == ()


def test_corpus_paths_exist_when_the_corpus_does() -> None:
    """The corpus tests above name files; a renamed file must fail here, not skip quietly."""
    if not CORPUS.is_dir():
        pytest.skip("no shared corpus")
    assert len(DECLARED) >= 20
    for name in ("misc/rssparser_craigslist.rdf.xml", "jsonfeed/feedrs_elastic_jsonfeed11.json"):
        assert (REALFEEDS / name).is_file()
