"""The lxml fast path (``monitor.ingest.fastparse``) gives exactly what the feedparser path
gives, for every body it accepts: over the shared corpus and over generated feeds."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree

from monitor.ingest.fastparse import _parser, fast_parse
from monitor.ingest.parse import (
    FAST_PARSE_ENV,
    NotAFeedError,
    ParsedFeed,
    fast_parse_enabled,
    parse_feed,
)
from monitor.ingest.pool.parsers import ParserPool
from monitor.rules import RuleSet

REPO = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
URL = "https://example.org/feed"

#: Response headers each body is also read with: feedparser's encoding rules, base URI and
#: default language come from them.
HEADER_SETS: tuple[dict[str, str], ...] = (
    {},
    {"content-type": "application/rss+xml"},
    {"content-type": "text/xml; charset=utf-8", "content-language": "en_GB"},
    {"content-type": "application/atom+xml", "content-location": "https://example.org/a/b/"},
)


def both_ways(body: bytes, headers: dict[str, str]) -> tuple[object, object]:
    """The feedparser path's result and the fast path's (a refusal as its message)."""

    def read(fast: bool) -> ParsedFeed | str:
        try:
            return parse_feed(body, headers, URL, fast=fast)
        except NotAFeedError as exc:
            return f"NotAFeedError: {exc}"

    return read(False), read(True)


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    skip = {".json", ".csv", ".tsv", ".md", ".html"}
    return sorted(
        path
        for path in CORPUS.rglob("*")
        if path.is_file() and path.suffix not in skip and path.name != "LICENSE"
    )


def corpus_body(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.suffix == ".gz" else raw


# -- the shared corpus -------------------------------------------------------------------------


@pytest.mark.corpus
def test_every_corpus_feed_the_fast_path_takes_parses_as_feedparser_parses_it() -> None:
    """Every real feed and every file of feedparser's own suite, with each set of response
    headers: wherever the fast path answers, the parsed feed (entries, titles and their types,
    summaries, links, guids, dates, tags, languages, bases, format, encoding, warnings) is the
    feedparser path's.  Most real feeds must take it, or the fast path is not worth keeping."""
    files = corpus_files()
    assert len(files) > 450, f"expected the whole corpus under {CORPUS}"
    taken = {id(headers): 0 for headers in HEADER_SETS}
    real = real_taken = 0
    for path in files:
        body = corpus_body(path)
        for headers in HEADER_SETS:
            if fast_parse(body, headers) is None:
                continue
            taken[id(headers)] += 1
            reference, fast = both_ways(body, headers)
            assert fast == reference, f"{path.relative_to(CORPUS)} with {headers}"
        if "realfeeds" in path.parts:
            real += 1
            real_taken += fast_parse(body, {}) is not None
    assert min(taken.values()) > 250
    assert real_taken / real > 0.6, f"only {real_taken} of {real} real feeds take the fast path"


@pytest.mark.corpus
@pytest.mark.parametrize(
    "name",
    [
        "realfeeds/malformed/prof18_leading_whitespace_before_decl.rss.xml",  # not well-formed
        "realfeeds/malformed/miniflux_cerclepsy_noenc_latin1.rss.xml",  # feedparser: bozo
        "realfeeds/ru-news/chardet_aif_health_windows1251.rss091.xml",  # a DOCTYPE
        "realfeeds/misc/nodefp_intertwingly.atom",  # XHTML content
    ],
)
def test_unusual_corpus_feeds_go_to_feedparser(name: str) -> None:
    assert fast_parse(corpus_body(CORPUS / name), {}) is None


# -- generated feeds -------------------------------------------------------------------------

WORDS = st.sampled_from(
    [
        "Tungsten",
        "bids",
        "Астана",
        "вольфрам",
        "钨矿",
        "投标",
        "Zürich",
        "Ã©t\u00e9",  # UTF-8 read as Latin-1: feedparser reads it again
        "\u0080\u0093quoted\u0094",  # C1 controls: feedparser maps them to windows-1252
        "AT&T",
        "a < b > c",
        "Vector<T>",
        "&amp;",
        "&lt;b&gt;",
        "&copy;",
        "&nbsp;",
        "5 &gt; 3",
        "<b>bold</b>",
        "<p>para</p>",
        "<a href='/x'>link</a>",
        "<script>x</script>",
        "<unknown>tag</unknown>",
        "'quotes' \"double\"",
        "  ",
        "\t\n",
        "",
        "\u00a0nbsp\u00a0",
        "é",
        "?a=1&b=2",
        "&foo;",
    ]
)


@st.composite
def texts(draw: st.DrawFn) -> str:
    """Element content as a publisher writes it: escaped text, character references or a
    CDATA section, sometimes with markup in it."""
    raw = " ".join(draw(st.lists(WORDS, max_size=4)))
    how = draw(st.sampled_from(["escape", "cdata", "charref", "raw-entity"]))
    if how == "cdata" and "]]>" not in raw:
        return f"<![CDATA[{raw}]]>"
    if how == "charref":
        return "".join(f"&#{ord(c)};" if c in "<&é\u0080" else escape(c) for c in raw)
    if how == "raw-entity":
        return escape(raw).replace("&amp;amp;", "&amp;")
    return escape(raw)


DATES = st.sampled_from(
    [
        "Fri, 31 May 2019 12:17:58 -0700",
        "Fri, 31 May 2019 12:17:58 GMT",
        "Fri, 31 May 2019 12:17:58 MSK",
        "Fri, 31 May 2019 12:17:58 CST",
        "Fri, 31 May 2019 12:17:58 XYZ",
        "31 May 2019 12:17:58 +0900",
        "Fri, 31 May 2019 13:08:54+0900",
        "пт, 31 мая 2019 12:17:58 +0300",
        "2019-05-31T12:17:58Z",
        "2019-05-31T12:17:58+08:00",
        "2019-05-31T12:17:58.123456Z",
        "2019-05-31",
        "2019-05-31 12:17:58",
        "yesterday",
        "",
        "  2019-05-31T12:17:58Z  ",
    ]
)

URLS = st.sampled_from(
    [
        "https://wire.example/1",
        "https://wire.example/2?a=1&b=2",
        "/relative/path",
        "relative",
        "http:///broken",
        "",
        "tag:wire.example,2019:1",
        "javascript:alert(1)",
    ]
)

NAMESPACES = {
    "dc": "http://purl.org/dc/elements/1.1/",
    "content": "http://purl.org/rss/1.0/modules/content/",
    "media": "http://search.yahoo.com/mrss/",
    "atom": "http://www.w3.org/2005/Atom",
    "x": "http://example.com/unknown",
    "itunes": "http://www.itunes.com/dtds/podcast-1.0.dtd",
}


def element(name: str, text: str, attrs: str = "") -> str:
    return f"<{name}{attrs}>{text}</{name}>"


@st.composite
def attributes(draw: st.DrawFn, *names: str) -> str:
    """A few of ``names`` as attributes, with values a feed may give them."""
    chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=3)) if names else []
    values = {
        "type": st.sampled_from(
            ["text", "html", "xhtml", "TEXT", "text/html", "text/plain", "image/png"]
        ),
        "xml:lang": st.sampled_from(["en", "ru-RU", "zh_CN", "", "DE"]),
        "xml:base": st.sampled_from(["https://other.example/base/", "/sub/", "x/"]),
        "isPermaLink": st.sampled_from(["true", "false", "True"]),
        "rel": st.sampled_from(["alternate", "self", "enclosure", "ALTERNATE", "related"]),
        "href": URLS,
        "term": st.sampled_from(["politics", "Rare earths", ""]),
        "label": st.sampled_from(["Politics", "rare EARTHS", ""]),
        "domain": st.sampled_from(["https://cat.example/", ""]),
        "scheme": st.sampled_from(["urn:x", ""]),
        "x:type": st.sampled_from(["text", "html"]),
        "mode": st.sampled_from(["escaped", "base64"]),
    }
    return "".join(f" {name}={quoteattr(draw(values[name]))}" for name in chosen)


@st.composite
def rss_item(draw: st.DrawFn, rdf: bool) -> str:
    """An RSS item: any of its usual elements, in any order, some twice, some missing."""
    parts: dict[str, Callable[[], str]] = {
        "title": lambda: element("title", draw(texts()), draw(attributes("xml:lang", "type"))),
        "link": lambda: element("link", escape(draw(URLS))),
        "atomlink": lambda: f"<atom:link{draw(attributes('rel', 'href', 'type'))}/>",
        "guid": lambda: element("guid", escape(draw(URLS)), draw(attributes("isPermaLink"))),
        "description": lambda: element(
            "description", draw(texts()), draw(attributes("type", "xml:lang"))
        ),
        "encoded": lambda: element("content:encoded", draw(texts())),
        "pubDate": lambda: element("pubDate", escape(draw(DATES))),
        "dcdate": lambda: element("dc:date", escape(draw(DATES))),
        "category": lambda: element(
            "category", draw(texts()), draw(attributes("domain", "term", "label"))
        ),
        "subject": lambda: element("dc:subject", draw(texts())),
        "creator": lambda: element("dc:creator", draw(texts())),
        "author": lambda: element("author", draw(texts())),
        "enclosure": lambda: '<enclosure url="https://wire.example/a.mp3" type="audio/mpeg"/>',
        "media": lambda: (
            '<media:content url="https://wire.example/a.jpg">'
            + element("media:description", draw(texts()), draw(attributes("type")))
            + element("media:title", draw(texts()))
            + "</media:content>"
        ),
        "group": lambda: "<media:group>" + element("media:title", draw(texts())) + "</media:group>",
        "unknown": lambda: element("x:extra", draw(texts()), draw(attributes("x:type"))),
        "ttl": lambda: element("ttl", "5"),
        "source": lambda: element("source", draw(texts()), ' url="https://src.example/"'),
        "comments": lambda: "<!-- a comment -->",
        "image": lambda: element("image", "https://wire.example/i.jpg"),
    }
    names = draw(st.lists(st.sampled_from(sorted(parts)), max_size=9))
    about = draw(st.sampled_from(["", ' rdf:about="https://wire.example/about"']))
    attrs = (about if rdf else "") + draw(attributes("xml:lang", "xml:base"))
    return f"<item{attrs}>" + "".join(parts[name]() for name in names) + "</item>"


@st.composite
def atom_entry(draw: st.DrawFn) -> str:
    typed = ("type", "xml:lang", "xml:base")
    parts: dict[str, Callable[[], str]] = {
        "title": lambda: element("title", draw(texts()), draw(attributes(*typed))),
        "link": lambda: f"<link{draw(attributes('rel', 'href', 'type'))}/>",
        "textlink": lambda: element("link", escape(draw(URLS))),
        "id": lambda: element("id", escape(draw(URLS))),
        "summary": lambda: element("summary", draw(texts()), draw(attributes(*typed))),
        "content": lambda: element("content", draw(texts()), draw(attributes(*typed, "mode"))),
        "xhtml": lambda: (
            '<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div></content>'
        ),
        "published": lambda: element("published", escape(draw(DATES))),
        "updated": lambda: element("updated", escape(draw(DATES))),
        "category": lambda: f"<category{draw(attributes('term', 'label', 'scheme'))}/>",
        "author": lambda: (
            "<author>"
            + element("name", draw(texts()))
            + element("email", "a@b.example")
            + "</author>"
        ),
        "media": lambda: (
            "<media:group>" + element("media:description", draw(texts())) + "</media:group>"
        ),
        "unknown": lambda: element("x:extra", draw(texts())),
        "rights": lambda: element("rights", draw(texts()), draw(attributes("type"))),
    }
    names = draw(st.lists(st.sampled_from(sorted(parts)), max_size=9))
    return (
        f"<entry{draw(attributes('xml:lang', 'xml:base'))}>"
        + "".join(parts[n]() for n in names)
        + "</entry>"
    )


def declarations(used: list[str]) -> str:
    return "".join(f' xmlns:{prefix}="{NAMESPACES[prefix]}"' for prefix in used)


@st.composite
def feeds(draw: st.DrawFn) -> bytes:
    """A whole feed: RSS 2.0, RSS 1.0 or Atom 1.0, in UTF-8 or a declared encoding."""
    kind = draw(st.sampled_from(["rss", "rdf", "atom"]))
    prefixes = draw(st.lists(st.sampled_from(sorted(NAMESPACES)), unique=True))
    for needed in ("dc", "content", "media", "atom", "x"):
        if needed not in prefixes:
            prefixes.append(needed)
    head_attrs = draw(attributes("xml:lang"))
    title = element("title", draw(texts()), draw(attributes("type", "xml:lang")))
    extras = "".join(
        draw(
            st.lists(
                st.sampled_from(
                    [
                        element("language", "ru-RU"),
                        element("ttl", "30"),
                        element("description", "About"),
                        "<image><title>Logo</title><url>https://wire.example/l.png</url></image>",
                        element("dc:language", "zh_CN"),
                        element("lastBuildDate", "Fri, 31 May 2019 12:17:58 GMT"),
                    ]
                ),
                max_size=3,
            )
        )
    )
    if kind == "atom":
        entries = "".join(draw(st.lists(atom_entry(), max_size=4)))
        decls = declarations([p for p in prefixes if p != "atom"])
        text = f'<feed xmlns="http://www.w3.org/2005/Atom"{decls}{head_attrs}>{title}{extras}{entries}</feed>'
    elif kind == "rss":
        items = "".join(draw(st.lists(rss_item(rdf=False), max_size=4)))
        version = draw(st.sampled_from(["2.0", "0.91", "0.92", ""]))
        text = (
            f'<rss version="{version}"{declarations(prefixes)}{head_attrs}>'
            f"<channel>{title}{extras}{items}</channel></rss>"
        )
    else:
        items = "".join(draw(st.lists(rss_item(rdf=True), max_size=4)))
        text = (
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
            f'xmlns="http://purl.org/rss/1.0/"{declarations(prefixes)}>'
            f'<channel rdf:about="https://wire.example/">{title}{extras}</channel>{items}</rdf:RDF>'
        )
    encoding = draw(
        st.sampled_from(["utf-8", "UTF-8", "windows-1251", "gb2312", "iso-8859-1", None])
    )
    declaration = f'<?xml version="1.0" encoding="{encoding}"?>\n' if encoding else ""
    if encoding is None:
        encoding = "utf-8"
    return (declaration + text).encode(encoding, "xmlcharrefreplace")


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(body=feeds(), headers=st.sampled_from(HEADER_SETS))
@example(
    body=b'<rss version="2.0"><channel><title>W</title><item><title>a &amp;amp; b</title>'
    b"<description>x</description><description>longer one</description></item></channel></rss>",
    headers={},
)
def test_generated_feeds_parse_alike_both_ways(body: bytes, headers: dict[str, str]) -> None:
    """Entities, CDATA, markup in titles and summaries, namespaces known and unknown, dates
    in many forms, elements twice or missing, other encodings, response headers: whatever
    the fast path accepts, it reads as feedparser does."""
    if fast_parse(body, headers) is None:
        return
    reference, fast = both_ways(body, headers)
    assert fast == reference


def plain_rss(items: int) -> bytes:
    entries = "".join(
        f"<item><title>Item {n} &amp; more</title><link>https://wire.example/{n}</link>"
        f"<guid isPermaLink='false'>w-{n}</guid><pubDate>Fri, 31 May 2019 12:17:58 GMT</pubDate>"
        f"<description>&lt;p&gt;Summary {n}&lt;/p&gt;</description>"
        f"<category>news</category></item>"
        for n in range(items)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>Wire</title>'
        f"<language>en-us</language><ttl>15</ttl>{entries}</channel></rss>"
    ).encode()


def test_a_plain_feed_takes_the_fast_path_and_reads_as_feedparser_reads_it() -> None:
    body = plain_rss(3)
    assert fast_parse(body, {}) is not None
    reference, fast = both_ways(body, {})
    assert isinstance(fast, ParsedFeed)
    assert fast == reference
    assert [e.title for e in fast.entries] == ["Item 0 & more", "Item 1 & more", "Item 2 & more"]
    assert fast.entries[0].published == datetime(2019, 5, 31, 12, 17, 58, tzinfo=UTC)
    assert (fast.format, fast.lang, fast.ttl, fast.encoding) == ("rss20", "en", "15", "utf-8")


# -- what goes to feedparser -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<rss><channel><title>a</title>", "not well-formed"),
        (b"<html><body>page</body></html>", "HTML, not a feed"),
        (
            b'<!DOCTYPE rss [<!ENTITY e "x">]><rss><channel><title>&e;</title></channel></rss>',
            "DTD",
        ),
        (b"<rss><channel><title>&nbsp;</title></channel></rss>", "an undeclared entity"),
        ("<rss><channel><title>a</title></channel></rss>".encode("utf-16"), "UTF-16"),
        (
            b'<feed xmlns="http://purl.org/atom/ns#" version="0.3"><title>a</title></feed>',
            "Atom 0.3",
        ),
        (
            b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><content type="xhtml">'
            b'<div xmlns="http://www.w3.org/1999/xhtml">x</div></content></entry></feed>',
            "XHTML content",
        ),
        (
            b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><content type="image/png">'
            b"aGVsbG8=</content></entry></feed>",
            "base64 content",
        ),
        (b"<rss><channel><item><title>a</title></item></chanel></rss>", "mismatched tags"),
        (b"\xef\xbb\xbf  <?xml version='1.0'?><rss/>", "a declaration after white space"),
        (
            b'<rss version="2.0" xmlns:georss="http://www.georss.org/georss"><channel><item>'
            b"<georss:where><x/></georss:where></item></channel></rss>",
            "an element feedparser handles that is not ported",
        ),
    ],
)
def test_unusual_bodies_go_to_feedparser(body: bytes, why: str) -> None:
    assert fast_parse(body, {}) is None, why


def test_a_body_feedparser_flags_for_its_encoding_goes_to_feedparser() -> None:
    """text/xml without a charset means US-ASCII to feedparser: non-ASCII bytes make it
    flag the body (bozo) and read it otherwise; the fast path leaves that to it."""
    body = "<rss version='2.0'><channel><title>Zürich</title></channel></rss>".encode()
    assert fast_parse(body, {"content-type": "text/xml"}) is None
    assert fast_parse(body, {"content-type": "text/html; charset=utf-8"}) is None


def test_the_parser_reads_no_external_entity_nor_dtd(tmp_path: Path) -> None:
    """XXE: even given a document with a DTD (the fast path refuses those before parsing),
    the parser it uses reads no file and expands no external entity."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    body = (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY x SYSTEM "file://{secret}">]>'
        "<rss><channel><title>&x;</title></channel></rss>"
    ).encode()
    root = etree.fromstring(body, _parser())
    assert "TOP-SECRET" not in etree.tostring(root).decode()
    assert fast_parse(body, {}) is None


# -- switching it off, and the parser processes -------------------------------------------------


def test_the_environment_switches_the_fast_path_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FAST_PARSE_ENV, raising=False)
    assert fast_parse_enabled()
    for off in ("0", "false", "OFF", "no"):
        monkeypatch.setenv(FAST_PARSE_ENV, off)
        assert not fast_parse_enabled()
    monkeypatch.setenv(FAST_PARSE_ENV, "1")
    assert fast_parse_enabled()


def test_parse_feed_skips_the_fast_path_when_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the switch off the fast path is never called (a body it would take shows it)."""
    calls: list[bytes] = []
    import monitor.ingest.parse as parse_module

    def counting(body: bytes, headers: dict[str, str]) -> object:
        calls.append(body)
        return fast_parse(body, headers)

    monkeypatch.setattr(parse_module, "fast_parse", counting)
    monkeypatch.setenv(FAST_PARSE_ENV, "0")
    parse_feed(plain_rss(1), {}, URL)
    assert calls == []
    monkeypatch.setenv(FAST_PARSE_ENV, "1")
    parse_feed(plain_rss(1), {}, URL)
    assert len(calls) == 1


def submit_in_worker(pool: ParserPool, function: Callable[..., object], *args: object) -> object:
    return pool._pool.submit(function, *args).result(timeout=60)


async def test_parser_processes_take_the_fast_path() -> None:
    """The parser processes (forked from the fork server that preloads the parsing modules)
    have lxml and the switch on, and the fast path takes a plain feed there."""
    pool = ParserPool(1, RuleSet(rules=(), version="none"))
    try:
        pool.start()
        assert pool._started is not None
        await pool._started
        assert submit_in_worker(pool, fast_parse_enabled) is True
        assert submit_in_worker(pool, fast_parse, plain_rss(2), {}) is not None
    finally:
        pool.close()


SWITCHED_OFF_SCRIPT = """
import asyncio
from monitor.ingest.parse import fast_parse_enabled
from monitor.ingest.pool.parsers import ParserPool
from monitor.rules import RuleSet

async def main() -> None:
    pool = ParserPool(1, RuleSet(rules=(), version="none"))
    pool.start()
    await pool._started
    print(pool._pool.submit(fast_parse_enabled).result(timeout=60), flush=True)
    pool.close()

if __name__ == "__main__":
    asyncio.run(main())
"""


@pytest.mark.slow
def test_the_daemons_environment_switches_it_off_in_its_parser_processes(
    tmp_path: Path,
) -> None:
    """``MONITOR_FAST_PARSE=0`` in the daemon's environment reaches its parser processes
    (a fresh interpreter, so that its fork server starts with that environment)."""
    script = tmp_path / "switched_off.py"
    script.write_text(SWITCHED_OFF_SCRIPT)
    env = {**os.environ, FAST_PARSE_ENV: "0"}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
