"""Onboarding's pure core: feed discovery in HTML, config names, config lines, OPML in and out."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.errors import Location
from monitor.ingest.onboard import (
    NAME_LIMIT,
    FeedEntry,
    FeedLink,
    OnboardError,
    OpmlError,
    advertised_feeds,
    discover,
    discovery_entries,
    entries_opml,
    opml_entries,
    slug,
    unique_name,
    url_slug,
    without_credentials,
    yaml_entry,
    yaml_scalar,
)
from monitor.redact import mask_url
from monitor.yamlsrc import load_yaml_text

#: What the config accepts as a feed name (settings.FeedSettings.name).
CONFIG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
PAGE = "https://news.example/world/index.html"


# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BBC News - World", "bbc-news-world"),
        ("Café Zürich — Top stories!", "cafe-zurich-top-stories"),
        ("  Example.org » Comments Feed  ", "example.org-comments-feed"),
        ("__a__b..", "a__b"),
        ("新闻", ""),
        ("Новости", ""),
        ("", ""),
    ],
)
def test_slug(text: str, expected: str) -> None:
    assert slug(text) == expected


def test_slug_is_capped_without_a_trailing_separator() -> None:
    name = slug("word " * 40)
    assert len(name) <= NAME_LIMIT
    assert name.startswith("word-word")
    assert not name.endswith("-")


@given(st.text())
def test_slug_is_a_config_name_and_idempotent(text: str) -> None:
    name = slug(text)
    assert name == "" or CONFIG_NAME.fullmatch(name)
    assert len(name) <= NAME_LIMIT
    assert slug(name) == name


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://www.example.org/news/rss.xml", "example.org-news-rss.xml"),
        ("https://feeds.example/", "feeds.example"),
        ("https://[::1", "https-1"),  # urlsplit refuses it; the text still names something
    ],
)
def test_url_slug(url: str, expected: str) -> None:
    assert url_slug(url) == expected


def test_unique_name_counts_up_and_keeps_within_the_limit() -> None:
    assert unique_name("news", set()) == "news"
    assert unique_name("news", {"news", "news-2"}) == "news-3"
    long = "a" * NAME_LIMIT
    assert unique_name(long, {long}) == "a" * (NAME_LIMIT - 2) + "-2"


@given(st.lists(st.text(max_size=80), max_size=8))
def test_unique_names_are_their_own_slugs(titles: list[str]) -> None:
    taken: set[str] = set()
    for title in titles:
        name = unique_name(slug(title) or "feed", taken)
        assert name not in taken
        assert slug(name) == name
        taken.add(name)


# --- discovery -----------------------------------------------------------------------------

HTML = """<!doctype html>
<html><head>
<title>World news</title>
<base href="/feeds/">
<link rel="stylesheet" href="site.css">
<link rel="Alternate" type="application/rss+xml; charset=utf-8" title=" World
   headlines " href="world.xml">
<link rel="alternate" type="application/atom+xml" title="World headlines" href="world.atom">
<link rel="alternate" type="application/feed+json" href="https://cdn.example/world.json">
<link rel="alternate" type="text/html" hreflang="fr" href="/fr/">
<link rel="alternate" type="application/rss+xml" title="bad" href="javascript:alert(1)">
<link rel="alternate" type="application/rss+xml" title="again" href="/feeds/world.xml">
</head><body>
<link rel="alternate" type="application/rss+xml" title="In the body" href="body.xml">
</body></html>
"""


def test_advertised_feeds_resolve_against_base_href_in_page_order() -> None:
    assert advertised_feeds(HTML, PAGE) == (
        FeedLink("World headlines", "https://news.example/feeds/world.xml", "RSS"),
        FeedLink("World headlines", "https://news.example/feeds/world.atom", "Atom"),
        FeedLink("", "https://cdn.example/world.json", "JSON Feed"),
        FeedLink("In the body", "https://news.example/feeds/body.xml", "RSS"),
    )


def test_without_base_href_links_resolve_against_the_page() -> None:
    page = '<html><head><link rel="alternate" type="application/rss+xml" href="rss"></head>'
    assert advertised_feeds(page, PAGE)[0].url == "https://news.example/world/rss"


def test_discovery_entries_are_named_after_titles_uniquely() -> None:
    names = [entry.name for entry in discovery_entries(advertised_feeds(HTML, PAGE))]
    assert names == [
        "world-headlines",
        "world-headlines-2",
        "cdn.example-world.json",
        "in-the-body",
    ]


RSS = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>Wire  service</title>'
    b"<link>https://w.example/</link><item><title>a</title><guid>1</guid></item>"
    b"</channel></rss>"
)
ATOM = (
    b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>Desk</title>'
    b"<id>urn:x</id><updated>2026-01-01T00:00:00Z</updated></feed>"
)
JSON_FEED = json.dumps(
    {"version": "https://jsonfeed.org/version/1.1", "title": "Jay", "items": []}
).encode()


@pytest.mark.parametrize(
    ("body", "content_type", "title", "kind"),
    [
        (RSS, "application/rss+xml", "Wire service", "RSS"),
        (RSS, "text/html; charset=utf-8", "Wire service", "RSS"),  # a server that mislabels
        (ATOM, "application/atom+xml", "Desk", "Atom"),
        (JSON_FEED, "application/feed+json", "Jay", "JSON Feed"),
    ],
)
def test_a_feed_is_discovered_as_itself(
    body: bytes, content_type: str, title: str, kind: str
) -> None:
    found = discover(body, {"Content-Type": content_type}, "https://w.example/f")
    assert found.is_feed
    assert found.links == (FeedLink(title, "https://w.example/f", kind),)


def test_a_page_is_discovered_by_its_links() -> None:
    found = discover(HTML.encode(), {"Content-Type": "text/html"}, PAGE)
    assert not found.is_feed
    assert len(found.links) == 4


def test_the_page_charset_from_the_header_is_used() -> None:
    page = '<link rel="alternate" type="application/rss+xml" title="Новости" href="/r">'
    found = discover(page.encode("cp1251"), {"content-type": "text/html; charset=cp1251"}, PAGE)
    assert found.links[0].title == "Новости"


def test_a_page_without_feed_links_says_so() -> None:
    with pytest.raises(OnboardError, match="the page advertises no feed"):
        discover(b"<html><head><title>x</title></head></html>", {}, PAGE)


def test_a_body_that_is_neither_says_so() -> None:
    with pytest.raises(OnboardError, match="neither a feed nor a web page"):
        discover(b"just text", {"Content-Type": "text/plain"}, PAGE)


# --- config lines --------------------------------------------------------------------------


def test_yaml_entry_is_one_flow_line_the_config_loader_reads() -> None:
    entry = FeedEntry("null", 'https://a.example/f?q="x"&b=1', ("kz", "yes", "1.0"))
    line = yaml_entry(entry)
    assert line == (
        '- {name: "null", url: "https://a.example/f?q=\\"x\\"&b=1", tags: [kz, "yes", "1.0"]}'
    )
    loaded = load_yaml_text("feeds:\n  " + line + "\n", "monitor.yaml").data
    assert loaded == {"feeds": [{"name": "null", "url": entry.url, "tags": ["kz", "yes", "1.0"]}]}


def test_yaml_entry_masks_credentials() -> None:
    line = yaml_entry(FeedEntry("f", "https://bob:hunter2@a.example/f?apikey=K3Y&q=1"))
    assert "hunter2" not in line
    assert "K3Y" not in line
    assert "https://bob:***@a.example/f?apikey=***&q=1" in line


@given(st.text())
def test_yaml_scalar_reads_back_as_the_same_string(text: str) -> None:
    assert yaml.safe_load(f"key: {yaml_scalar(text)}") == {"key": text}


# --- OPML ----------------------------------------------------------------------------------

OPML = """<?xml version="1.0" encoding="UTF-8"?>
<opml version="1.0">
  <head><title>My subscriptions</title></head>
  <body>
    <outline text="World News" title="World News">
      <outline type="rss" text="BBC World" xmlUrl="https://feeds.bbc.example/world.xml"
               htmlUrl="https://bbc.example/"/>
      <outline text="Asia">
        <outline type="rss" title="Only a title" xmlUrl="https://asia.example/rss?a=1&amp;b=2"
                 category="/Central Asia/Kazakhstan,/Mining"/>
      </outline>
    </outline>
    <outline text="Tech">
      <outline type="rss" text="BBC World" xmlUrl="https://feeds.bbc.example/world.xml"/>
      <outline type="rss" text="BBC World" xmlUrl="https://feeds.bbc.example/tech.xml"/>
      <outline type="rss" text="新闻" xmlUrl="https://www.xinhua.example/rss/world.xml"/>
      <outline type="rss" text="Podcast" xmlUrl="feed://pods.example/x"/>
    </outline>
    <outline type="rss" text="Loose" xmlUrl="https://loose.example/f"/>
  </body>
</opml>
""".encode()


def test_opml_entries_take_names_from_titles_and_tags_from_folders() -> None:
    imported = opml_entries(OPML, "subs.opml")
    assert imported.entries == (
        FeedEntry("bbc-world", "https://feeds.bbc.example/world.xml", ("world-news", "tech")),
        FeedEntry(
            "only-a-title",
            "https://asia.example/rss?a=1&b=2",
            ("world-news", "asia", "central-asia", "kazakhstan", "mining"),
        ),
        FeedEntry("bbc-world-2", "https://feeds.bbc.example/tech.xml", ("tech",)),
        FeedEntry(
            "xinhua.example-rss-world.xml", "https://www.xinhua.example/rss/world.xml", ("tech",)
        ),
        FeedEntry("loose", "https://loose.example/f"),
    )
    assert imported.skipped == ("feed://pods.example/x",)


def test_opml_attributes_are_read_whatever_their_case_and_depth() -> None:
    depth = 20_000
    document = (
        "<opml><body>"
        + '<outline text="deep">' * depth
        + '<outline TEXT="Old tool" xmlurl="https://old.example/rss"/>'
        + "</outline>" * depth
        + "</body></opml>"
    ).encode()
    assert opml_entries(document).entries == (
        FeedEntry("old-tool", "https://old.example/rss", ("deep",)),
    )


@pytest.mark.parametrize(
    ("document", "location", "message"),
    [
        (b"<opml>\n<body>\n<outline></body></opml>", Location("f.opml", 3, 12), "mismatched tag"),
        (b"", Location("f.opml", 1, 1), "no element found"),
        (b"<rss/>", Location("f.opml"), "the root element is <rss>"),
        (b"<opml><head/></opml>", Location("f.opml"), "no <body>"),
        (
            b'<!DOCTYPE opml [<!ENTITY a "aaaa">]><opml><body/></opml>',
            Location("f.opml"),
            "declares XML entities",
        ),
    ],
)
def test_broken_opml_is_refused_naming_file_and_line(
    document: bytes, location: Location, message: str
) -> None:
    with pytest.raises(OpmlError, match=re.escape(message)) as caught:
        opml_entries(document, "f.opml")
    assert caught.value.location == location
    assert str(caught.value).startswith(f"{location}: ")


def test_export_is_opml_2_without_credentials() -> None:
    entries = [
        FeedEntry("wire", "https://ann:s3cret@wire.example/f.xml?apikey=K3Y&lang=en", ("kz", "en")),
        FeedEntry("plain", "https://plain.example/rss"),
    ]
    document = entries_opml(entries, created=datetime(2026, 11, 22, 12, 0, tzinfo=UTC))
    assert "s3cret" not in document
    assert "K3Y" not in document
    assert "ann" not in document
    root = ET.fromstring(document)  # noqa: S314 - our own output
    assert root.get("version") == "2.0"
    assert root.findtext("head/dateCreated") == "Sun, 22 Nov 2026 12:00:00 +0000"
    outlines = [outline.attrib for outline in root.iter("outline")]
    assert outlines == [
        {
            "type": "rss",
            "text": "wire",
            "title": "wire",
            "xmlUrl": "https://wire.example/f.xml?lang=en",
            "category": "kz,en",
        },
        {"type": "rss", "text": "plain", "title": "plain", "xmlUrl": "https://plain.example/rss"},
    ]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://a.example/f?x=1", "https://a.example/f?x=1"),
        ("https://u:p@a.example/f", "https://a.example/f"),
        ("https://tok3n@a.example:8443/f", "https://a.example:8443/f"),
        ("https://a.example/f?token=t&x=1;sig=s", "https://a.example/f?x=1"),
        ("https://a.example/f#access_token=t", "https://a.example/f"),
        ("https://hooks.slack.com/services/T/B/X", "https://hooks.slack.com/***"),
    ],
)
def test_without_credentials(url: str, expected: str) -> None:
    assert without_credentials(url) == expected
    assert mask_url(expected) == expected


# --- round trip ----------------------------------------------------------------------------

#: Text XML can hold (no control characters, surrogates or non-characters).
XML_TEXT = st.characters(exclude_categories=("Cc", "Cs", "Cn"))
NAMES = st.text(XML_TEXT, max_size=30).map(slug).filter(bool)
_URL_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp")),
    max_size=12,
)
URLS = st.builds(
    "{}://{}.{}/{}?{}".format,
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
    st.sampled_from(["example", "org", "kz"]),
    _URL_TEXT,
    _URL_TEXT,
).filter(lambda url: mask_url(url) == url and "#" not in url)


@st.composite
def entry_lists(draw: st.DrawFn) -> list[FeedEntry]:
    """Entries as ``feeds import`` makes them: unique slug names, unique URLs without
    credentials, tags that are slugs, each once."""
    names = draw(st.lists(NAMES, unique=True, max_size=6))
    urls = draw(st.lists(URLS, unique=True, min_size=len(names), max_size=len(names)))
    return [
        FeedEntry(name, url, tuple(draw(st.lists(NAMES, unique=True, max_size=3))))
        for name, url in zip(names, urls, strict=True)
    ]


@settings(deadline=None)
@given(entry_lists())
def test_export_then_import_gives_back_the_entries(entries: list[FeedEntry]) -> None:
    assert opml_entries(entries_opml(entries).encode()).entries == tuple(entries)


@st.composite
def opml_documents(draw: st.DrawFn) -> bytes:
    """An OPML document as a reader might write it: feeds with any titles, in folders."""
    root = ET.Element("opml", version="2.0")
    body = ET.SubElement(root, "body")
    parents = [body]
    for url in draw(st.lists(URLS, max_size=8)):
        if draw(st.booleans()):
            folder = ET.SubElement(draw(st.sampled_from(parents)), "outline")
            folder.set("text", draw(st.text(XML_TEXT, max_size=15)))
            parents.append(folder)
        outline = ET.SubElement(draw(st.sampled_from(parents)), "outline", xmlUrl=url)
        outline.set(draw(st.sampled_from(["text", "title"])), draw(st.text(XML_TEXT, max_size=70)))
        tags = draw(st.lists(st.text(XML_TEXT, max_size=10), max_size=2))
        if tags:
            outline.set("category", ",".join(tags))
    return bytes(ET.tostring(root, encoding="utf-8"))


@settings(deadline=None)
@given(opml_documents())
def test_import_export_import_is_stable(document: bytes) -> None:
    entries = opml_entries(document).entries
    assert opml_entries(entries_opml(entries).encode()).entries == entries
    for entry in entries:
        assert CONFIG_NAME.fullmatch(entry.name)
        assert all(slug(tag) == tag and tag for tag in entry.tags)
