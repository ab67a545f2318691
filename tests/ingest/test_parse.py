"""Parsing feed bytes: formats, encodings, broken feeds, and pages that are not feeds."""

from __future__ import annotations

import copy
import csv
import gzip
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import feedparser.mixin
import pytest

from monitor.ingest.normalize import normalize_entry
from monitor.ingest.parse import (
    FEEDPARSER_OPTIONS,
    MALFORMED,
    NotAFeedError,
    install_fast_copy,
    parse_feed,
    read_date,
)
from monitor.model import Source

REALFEEDS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "realfeeds"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def manifest() -> list[dict[str, str]]:
    path = REALFEEDS / "MANIFEST.tsv"
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


ROWS = manifest()
FEEDS = [r for r in ROWS if r["format"].split("+")[0] not in {"csv", "html", "jsonfeed"}]
READABLE = [r for r in FEEDS if int(r["entries"] or 0) > 0]
CLEAN_CJK_CYRILLIC = [
    r for r in READABLE if r["bozo"] == "0" and r["local_path"].startswith(("zh-news", "ru-news"))
]
JSON_FEEDS = [r for r in ROWS if r["format"] == "jsonfeed"]


def corpus_bytes(row: dict[str, str]) -> bytes:
    raw = (REALFEEDS / row["local_path"]).read_bytes()
    return gzip.decompress(raw) if row["local_path"].endswith(".gz") else raw


def ids(rows: list[dict[str, str]]) -> list[str]:
    return [r["local_path"] for r in rows]


@pytest.mark.corpus
@pytest.mark.parametrize("row", READABLE, ids=ids(READABLE))
def test_real_feeds_yield_every_entry_the_manifest_counts(row: dict[str, str]) -> None:
    """Every entry, and a "malformed" warning exactly for the feeds feedparser calls broken,
    except those it called broken only for being undeclared and not UTF-8: they are now read
    in the encoding sniffed (``test_fidelity``)."""
    feed = parse_feed(corpus_bytes(row), {}, "https://example.org/feed")
    assert len(feed.entries) == int(row["entries"])
    malformed = [warning for warning in feed.warnings if warning.startswith(MALFORMED)]
    sniffed = row["bozo_exception"].startswith("CharacterEncodingOverride: document declared as")
    assert bool(malformed) == (row["bozo"] == "1" and not sniffed)


@pytest.mark.corpus
@pytest.mark.parametrize("row", CLEAN_CJK_CYRILLIC, ids=ids(CLEAN_CJK_CYRILLIC))
def test_chinese_and_russian_titles_decode_without_mojibake(row: dict[str, str]) -> None:
    feed = parse_feed(corpus_bytes(row), {}, "https://example.org/feed")
    source = Source(name="corpus", url="https://example.org/feed")
    titles = [normalize_entry(entry, source, NOW).title for entry in feed.entries]
    assert all("\ufffd" not in title for title in titles)
    script = "\u4e00" if row["local_path"].startswith("zh") else "\u0400"
    end = "\u9fff" if script == "\u4e00" else "\u04ff"
    assert any(script <= ch <= end for title in titles for ch in title), titles[:3]


@pytest.mark.corpus
def test_newsru_gives_identical_titles_in_all_five_cyrillic_encodings() -> None:
    files = sorted((REALFEEDS / "ru-news").glob("chardet_newsru_*"))
    assert len(files) == 5
    source = Source(name="newsru", url="https://example.org/feed")
    titles = {
        path.name: tuple(
            normalize_entry(e, source, NOW).title
            for e in parse_feed(path.read_bytes(), {}, source.url).entries
        )
        for path in files
    }
    assert len(set(titles.values())) == 1, titles.keys()


@pytest.mark.corpus
@pytest.mark.parametrize("row", JSON_FEEDS, ids=ids(JSON_FEEDS))
def test_json_feeds_are_read_or_refused_clearly(row: dict[str, str]) -> None:
    raw = corpus_bytes(row)
    document = json.loads(raw)
    if "jsonfeed.org/version/" in str(document.get("version", "")):
        assert len(parse_feed(raw, {}, "https://example.org/").entries) == int(row["entries"])
    else:
        with pytest.raises(NotAFeedError, match="not a JSON Feed"):
            parse_feed(raw, {}, "https://example.org/")


@pytest.mark.corpus
def test_html_page_names_the_feeds_it_advertises() -> None:
    pages = sorted((REALFEEDS / "html-pages").iterdir())
    advertised: list[str] = []
    for page in pages:
        with pytest.raises(NotAFeedError) as caught:
            parse_feed(page.read_bytes(), {"Content-Type": "text/html"}, "https://blog.example/")
        advertised.extend(caught.value.feed_links)
    assert advertised, "at least one saved blog page advertises its feed"
    assert all(link.startswith(("http://", "https://")) for link in advertised)


def test_html_page_error_lists_alternate_links() -> None:
    page = b"""<!DOCTYPE html><html><head>
    <link rel="alternate" type="application/rss+xml" href="/feed.xml">
    <link rel="alternate" type="application/atom+xml" href="https://x.example/atom">
    <link rel="stylesheet" href="/s.css"></head><body>News</body></html>"""
    with pytest.raises(NotAFeedError) as caught:
        parse_feed(page, {"Content-Type": "text/html"}, "https://news.example/section/")
    assert caught.value.feed_links == ("https://news.example/feed.xml", "https://x.example/atom")
    assert "https://news.example/feed.xml" in str(caught.value)


@pytest.mark.parametrize("body", [b"", b"   \n\t ", b"\n"])
def test_an_empty_body_is_not_a_feed(body: bytes) -> None:
    with pytest.raises(NotAFeedError, match="empty"):
        parse_feed(body, {}, "https://example.org/")


def test_plain_text_is_not_a_feed() -> None:
    with pytest.raises(NotAFeedError, match="not a feed"):
        parse_feed(b"Service temporarily unavailable", {}, "https://example.org/")


def test_atom_entries_carry_language_and_guid() -> None:
    atom = """<?xml version="1.0" encoding="utf-8"?>
    <feed xmlns="http://www.w3.org/2005/Atom" xml:lang="ru-RU">
      <title>t</title><id>urn:feed</id><updated>2026-11-22T06:00:00Z</updated>
      <entry><id>urn:x:1</id><title>Вольфрам</title><updated>2026-11-22T06:00:00+05:00</updated>
        <link href="/news/1"/><summary type="html">&lt;p&gt;Текст&lt;/p&gt;</summary></entry>
    </feed>""".encode()
    (entry,) = parse_feed(atom, {}, "https://kz.example/atom").entries
    assert entry.guid == "urn:x:1"
    assert entry.lang == "ru"
    assert entry.published == datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
    assert entry.title == "Вольфрам"


def test_charset_from_http_header_is_used_when_the_prolog_has_none() -> None:
    body = "<rss version='2.0'><channel><title>t</title><item><title>Казахстан</title>"
    body += "</item></channel></rss>"
    feed = parse_feed(
        body.encode("cp1251"), {"Content-Type": "application/rss+xml; charset=windows-1251"}, "u"
    )
    assert feed.entries[0].title == "Казахстан"


def test_json_feed_items_become_entries() -> None:
    document = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "J",
        "language": "zh-CN",
        "items": [
            {
                "id": "1",
                "url": "https://j.example/1",
                "title": "稀土",
                "content_html": "<p>x</p>",
                "date_published": "2026-11-22T08:00:00+08:00",
                "tags": ["minerals"],
            },
            "not an item",
        ],
    }
    feed = parse_feed(json.dumps(document).encode(), {"Content-Type": "application/feed+json"}, "u")
    (entry,) = feed.entries
    assert (entry.guid, entry.title, entry.lang, entry.tags) == ("1", "稀土", "zh", ("minerals",))
    assert entry.published == datetime(2026, 11, 22, 0, 0, tzinfo=UTC)


def laughs(depth: int = 9) -> bytes:
    entities = ['<!ENTITY lol0 "lol">']
    for level in range(1, depth + 1):
        entities.append(f'<!ENTITY lol{level} "{f"&lol{level - 1};" * 10}">')
    doctype = "<!DOCTYPE rss [" + "".join(entities) + "]>"
    return (
        f'<?xml version="1.0"?>{doctype}<rss version="2.0"><channel><title>&lol{depth};</title>'
        "<item><title>x</title></item></channel></rss>"
    ).encode()


def quadratic(size: int = 100_000, refs: int = 2_000) -> bytes:
    doctype = f'<!DOCTYPE rss [<!ENTITY a "{"A" * size}">]>'
    return (
        f'<?xml version="1.0"?>{doctype}<rss version="2.0"><channel><title>t</title>'
        f"<item><title>{'&a;' * refs}</title></item></channel></rss>"
    ).encode()


@pytest.mark.parametrize("body", [laughs(), quadratic()], ids=["billion-laughs", "quadratic"])
def test_entity_expansion_attacks_are_refused_quickly(body: bytes) -> None:
    import time
    import tracemalloc

    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(NotAFeedError, match="entity-expansion attack"):
        parse_feed(body, {}, "https://evil.example/")
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 100 * 1024 * 1024


@pytest.mark.corpus
def test_a_few_short_declared_entities_are_still_read() -> None:
    raw = (REALFEEDS.parent / "feedparser-tests/wellformed/rss/entity_in_doctype.xml").read_bytes()
    (entry,) = parse_feed(raw, {}, "https://ok.example/").entries
    assert entry.guid == "tag:example.com,2006-05-04:/blog/"


def test_external_entities_are_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    body = f"""<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>
    <rss version="2.0"><channel><title>t</title><item><title>&xxe;</title>
    <description>&xxe;</description></item></channel></rss>""".encode()
    try:
        feed = parse_feed(body, {}, "https://evil.example/")
    except NotAFeedError:
        return
    assert all("TOP-SECRET" not in e.title + e.summary_html for e in feed.entries)


FEEDPARSER_TESTS = REALFEEDS.parent / "feedparser-tests"
FP_FILES = sorted(FEEDPARSER_TESTS.rglob("*.xml")) if FEEDPARSER_TESTS.is_dir() else []


@pytest.mark.corpus
def test_feedparsers_own_test_files_never_crash_the_pipeline() -> None:
    """Every file of feedparser's suite either parses or is refused with NotAFeedError."""
    assert len(FP_FILES) > 300
    source = Source(name="fp", url="https://example.org/feed")
    parsed = 0
    for path in FP_FILES:
        try:
            feed = parse_feed(path.read_bytes(), {}, source.url)
        except NotAFeedError:
            continue
        for entry in feed.entries:
            normalize_entry(entry, source, NOW)
        parsed += 1
    assert parsed > 250


# -- feedparser's content-parameter copies (``parse.install_fast_copy``) ---------------------


def _comparable(value: object) -> object:
    """A parse result with its exceptions (``bozo_exception``) as type and message, since
    exceptions compare by identity."""
    if isinstance(value, BaseException):
        return (type(value).__name__, str(value))
    if isinstance(value, dict):
        return {key: _comparable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_comparable(item) for item in value]
    return value


def _feedparser_result(body: bytes) -> object:
    return _comparable(
        feedparser.parse(
            io.BytesIO(body),
            response_headers={"content-location": "https://example.org/feed"},
            **FEEDPARSER_OPTIONS,
        )
    )


CORPUS_FILES = sorted(
    [p for p in REALFEEDS.rglob("*") if p.is_file() and p.name != "MANIFEST.tsv"] + FP_FILES
)


def test_the_fast_copy_of_content_parameters_is_installed() -> None:
    """If a feedparser release stops copying through ``feedparser.mixin.copy``, the shim is
    not installed and this fails: look at what that release does before trusting it."""
    assert install_fast_copy()
    assert feedparser.mixin.copy.deepcopy is not copy.deepcopy


@pytest.mark.corpus
def test_the_fast_copy_gives_what_deepcopy_gives_on_every_corpus_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every real feed and every file of feedparser's own suite parses to the same result
    (entries, their ``*_detail`` dicts, warnings) with the shim as with ``copy.deepcopy``."""
    assert len(CORPUS_FILES) > 450
    bodies = [
        gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        for path in CORPUS_FILES
    ]
    fast = [_feedparser_result(body) for body in bodies]
    monkeypatch.setattr(feedparser.mixin, "copy", copy)
    for path, body, result in zip(CORPUS_FILES, bodies, fast, strict=True):
        assert _feedparser_result(body) == result, path.name


# -- dates (``parse.read_date``) -------------------------------------------------------------


def test_feedparsers_date_reader_that_read_date_relies_on_still_works() -> None:
    """``read_date`` hands rewritten dates to feedparser's private ``_parse_date``; a release
    that renames or changes it must fail here, not read every zone-named date as None."""
    from feedparser.datetimes import _parse_date

    moment = _parse_date("Tue, 10 Jun 2003 04:00:00 +0300")
    assert moment is not None
    assert tuple(moment)[:5] == (2003, 6, 10, 1, 0)


@pytest.mark.parametrize(
    ("written", "chinese", "expected"),
    [
        ("Tue, 10 Jun 2003 04:00:00 EST", False, datetime(2003, 6, 10, 9, 0, tzinfo=UTC)),
        ("Tue, 10 Jun 2003 04:00:00 EDT", False, datetime(2003, 6, 10, 8, 0, tzinfo=UTC)),
        ("Tue, 10 Jun 2003 04:00:00 MSK", False, datetime(2003, 6, 10, 1, 0, tzinfo=UTC)),
        ("Tue, 10 Jun 2003 04:00:00 CST", False, datetime(2003, 6, 10, 10, 0, tzinfo=UTC)),
        ("Tue, 10 Jun 2003 04:00:00 CST", True, datetime(2003, 6, 9, 20, 0, tzinfo=UTC)),
        ("Tue, 10 Jun 2003 04:00:00 NPT", False, datetime(2003, 6, 9, 22, 15, tzinfo=UTC)),
        ("2003-06-10 04:00:00 MSK", False, datetime(2003, 6, 10, 1, 0, tzinfo=UTC)),
        ("Tue, 10 Jun 2003 04:00:00 Z", False, datetime(2003, 6, 10, 4, 0, tzinfo=UTC)),
        ("2003-06-10T04:00:00Z", False, datetime(2003, 6, 10, 4, 0, tzinfo=UTC)),
        ("Tue, 10 Jun 2003 04:00:00 +0300", False, datetime(2003, 6, 10, 1, 0, tzinfo=UTC)),
        ("Tue, 27 Dec 2005 13:08:54+0900", False, datetime(2005, 12, 27, 4, 8, 54, tzinfo=UTC)),
        ("Seg, 24 Set 2018 19:42:40 -0300", False, datetime(2018, 9, 24, 22, 42, 40, tzinfo=UTC)),
        ("пн, 24 сен 2018 19:42:40 +0300", False, datetime(2018, 9, 24, 16, 42, 40, tzinfo=UTC)),
        ("24 мая 2021 10:00:00 MSK", False, datetime(2021, 5, 24, 7, 0, tzinfo=UTC)),
        ("Tue, 10 Jun 2003 04:00:00 XYZ", False, None),
        ("Tue, 10 Jun 2003 04:00:00 IST", False, None),
        ("Friday, January 29, 2021 04:42 PM", False, None),
        ("soon", False, None),
    ],
)
def test_read_date(written: str, chinese: bool, expected: datetime | None) -> None:
    """Zone names in their zone, misspelt RFC 822 mended, anything else None with a reason."""
    from feedparser.datetimes import _parse_date

    found, problem = read_date(written, _parse_date(written), chinese=chinese)
    assert found == expected
    assert (problem is None) == (expected is not None)
