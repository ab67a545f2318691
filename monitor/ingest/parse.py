"""Feed bytes plus response headers -> a parsed feed of plain entries (RSS, Atom, JSON Feed).

feedparser is always handed bytes: given a URL or a path it would fetch by itself (following
redirects anywhere, with no timeout) or read local files.  Its loosely typed dictionaries stop
here; what leaves this module is ``ParsedFeed`` and ``RawEntry``.
"""

from __future__ import annotations

import calendar
import copy
import io
import json
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import feedparser
import feedparser.mixin
from bs4 import BeautifulSoup
from feedparser.util import FeedParserDict

_HTML_SNIFF = (b"<!doctype html", b"<html")
_FEED_TYPES = (
    "application/rss+xml",
    "application/atom+xml",
    "application/feed+json",
    "application/json",
    "application/rdf+xml",
)


#: feedparser's sanitizer and link rewriting are off: summaries become plain text here anyway,
#: and links are made absolute by ``normalize.canonical_url``.
FEEDPARSER_OPTIONS: dict[str, Any] = {"sanitize_html": False, "resolve_relative_uris": False}

#: Values that ``copy.deepcopy`` returns as they are.
_ATOMIC = frozenset({str, bytes, int, float, bool, type(None)})


def _copy_content_params(params: Any) -> Any:
    """``copy.deepcopy`` for feedparser's content parameters, without its cost.

    For every title, summary and content element, feedparser deep-copies the element's
    parameters (type, language, base: strings) into the entry's ``*_detail``.  In CPython
    ``deepcopy`` of a dict subclass is Python code that pickles and rebuilds it: about a
    tenth of the parsers' time (24.7 -> 22.7 ms a 50-entry feed here, shipped rules
    included).  A dict whose values are all immutable atoms deep-copies to an equal dict
    holding the same values, which this builds directly, through ``__setitem__`` as
    ``deepcopy`` does; anything else still goes through ``deepcopy``.
    ``tests/test_parse.py`` parses every corpus file both ways and requires the same result.
    """
    if type(params) is FeedParserDict and all(type(v) in _ATOMIC for v in params.values()):
        copied = FeedParserDict()
        for key, value in params.items():
            copied[key] = value
        return copied
    return copy.deepcopy(params)


def install_fast_copy() -> bool:
    """Point feedparser's parser mixin at ``_copy_content_params``; True once installed.

    Only ``feedparser.mixin`` is changed, and only while it still names the ``copy`` module
    (it uses it for nothing but these copies in feedparser 6.0); a release that does
    otherwise is left alone, and a test then fails, asking for a look.
    """
    current = getattr(feedparser.mixin, "copy", None)
    if current is copy:
        feedparser.mixin.copy = types.SimpleNamespace(deepcopy=_copy_content_params)
    return getattr(feedparser.mixin.copy, "deepcopy", None) is _copy_content_params


install_fast_copy()


class NotAFeedError(ValueError):
    """The body is not a feed; ``feed_links`` lists feeds an HTML page advertises."""

    def __init__(self, message: str, feed_links: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.feed_links = feed_links


@dataclass(frozen=True, slots=True)
class RawEntry:
    """One entry as the feed wrote it: HTML still in, times as found, links unresolved."""

    guid: str | None
    title: str
    summary_html: str
    link: str
    published: datetime | None
    lang: str | None = None
    base: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """What a feed body yielded; ``warnings`` says what was recovered from a broken feed."""

    title: str
    lang: str | None
    entries: tuple[RawEntry, ...]
    format: str
    encoding: str | None = None
    warnings: tuple[str, ...] = field(default=())
    ttl: str | None = None
    """RSS <ttl>: minutes the publisher says the feed stays fresh."""


def parse_feed(body: bytes, headers: Mapping[str, str], url: str) -> ParsedFeed:
    """Parse one feed body; raise ``NotAFeedError`` when nothing in it is a feed."""
    if not body.strip():
        raise NotAFeedError("the response body is empty")
    check_entity_expansion(body)
    if _looks_like_json(body, headers):
        return _parse_json_feed(body, url)
    parsed = feedparser.parse(
        io.BytesIO(body),
        response_headers={key.lower(): value for key, value in headers.items()},
        **FEEDPARSER_OPTIONS,
    )
    warnings: tuple[str, ...] = ()
    if parsed.get("bozo"):
        problem = parsed.get("bozo_exception")
        warnings = (f"feed is malformed, recovered what could be read: {problem}",)
    if not parsed.entries and not parsed.get("version"):
        raise _not_a_feed(body, url, warnings)
    feed_info = parsed.get("feed", {})
    feed_lang = _lang(feed_info.get("language"))
    return ParsedFeed(
        title=str(feed_info.get("title") or ""),
        lang=feed_lang,
        entries=tuple(_entry(raw, feed_lang) for raw in parsed.entries),
        format=str(parsed.get("version") or "unknown"),
        encoding=parsed.get("encoding"),
        warnings=warnings,
        ttl=str(feed_info.get("ttl")) if feed_info.get("ttl") else None,
    )


def check_entity_expansion(body: bytes) -> None:
    """Refuse a document whose declared XML entities would expand it beyond reason.

    Feeds may declare a few short entities (feedparser's own tests do), so they are not
    refused outright; but "billion laughs" (entities nested ten deep) and the quadratic kind
    (one large entity referenced thousands of times, which cost stock feedparser 77 s and
    3.8 GB on a 166 KB file) are stopped here, before any parser sees them.
    """
    head = body[:_DTD_SCAN]
    if b"<!ENTITY" not in head:
        return
    text = head.decode("latin-1")
    declared = {name: value for name, _quote, value in _ENTITY_DECL.findall(text)}
    sizes: dict[str, int] = {}
    for name in declared:
        _expanded_size(name, declared, sizes, depth=0)
    document = body.decode("latin-1")
    total = sum(document.count(f"&{name};") * size for name, size in sizes.items())
    limit = max(_EXPANSION_FLOOR, _EXPANSION_FACTOR * len(body))
    if total > limit:
        raise NotAFeedError(
            f"the feed declares XML entities that would expand it to about {total:,} characters; "
            "refused as an entity-expansion attack"
        )


def _expanded_size(name: str, declared: dict[str, str], sizes: dict[str, int], depth: int) -> int:
    if name in sizes:
        return sizes[name]
    if depth > 20 or name not in declared:
        sizes[name] = _EXPANSION_FLOOR + 1 if depth > 20 else len(name) + 2
        return sizes[name]
    sizes[name] = 0  # a reference cycle counts as nothing; expat rejects cycles anyway
    value = declared[name]
    size = len(_ENTITY_REF.sub("", value))
    for ref in _ENTITY_REF.findall(value):
        size += _expanded_size(ref, declared, sizes, depth + 1)
        if size > _EXPANSION_CAP:
            break
    sizes[name] = min(size, _EXPANSION_CAP)
    return sizes[name]


_DTD_SCAN = 1024 * 1024
_EXPANSION_FLOOR = 1024 * 1024
_EXPANSION_FACTOR = 10
_EXPANSION_CAP = 10**15
_ENTITY_DECL = re.compile(r"<!ENTITY\s+([A-Za-z_][\w.-]*)\s+([\"'])(.*?)\2", re.DOTALL)
_ENTITY_REF = re.compile(r"&([A-Za-z_][\w.-]*);")


def _entry(raw: Any, feed_lang: str | None) -> RawEntry:
    content = raw.get("content") or []
    summary = str(raw.get("summary") or "")
    longest = max((str(part.get("value") or "") for part in content), key=len, default="")
    if len(longest) > len(summary):
        summary = longest
    detail = raw.get("title_detail") or {}
    moment = dict.get(raw, "published_parsed") or dict.get(raw, "updated_parsed")
    return RawEntry(
        guid=str(raw["id"]) if raw.get("id") else None,
        title=str(raw.get("title") or ""),
        summary_html=summary,
        link=str(raw.get("link") or ""),
        published=datetime.fromtimestamp(calendar.timegm(moment), UTC) if moment else None,
        lang=_lang(detail.get("language")) or feed_lang,
        base=detail.get("base") or None,
        tags=tuple(str(tag.get("term")) for tag in raw.get("tags") or () if tag.get("term")),
    )


def _lang(value: object) -> str | None:
    """``en-US`` -> ``en``: rules care about the language, not the region."""
    if not value:
        return None
    return str(value).strip().replace("_", "-").split("-")[0].lower() or None


def _looks_like_json(body: bytes, headers: Mapping[str, str]) -> bool:
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    return "json" in content_type or body.lstrip()[:1] == b"{"


def _parse_json_feed(body: bytes, url: str) -> ParsedFeed:
    """JSON Feed 1.0/1.1 (https://jsonfeed.org), which feedparser does not read."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotAFeedError(f"the body is not valid JSON: {exc}") from None
    version = str(document.get("version", "")) if isinstance(document, dict) else ""
    if "jsonfeed.org/version/" not in version:
        raise NotAFeedError("JSON body is not a JSON Feed (no jsonfeed.org version)")
    feed_lang = _lang(document.get("language"))
    entries = []
    for raw in document.get("items") or ():
        if not isinstance(raw, dict):
            continue
        when = raw.get("date_published") or raw.get("date_modified")
        entries.append(
            RawEntry(
                guid=str(raw["id"]) if raw.get("id") is not None else None,
                title=str(raw.get("title") or ""),
                summary_html=str(
                    raw.get("content_html") or raw.get("content_text") or raw.get("summary") or ""
                ),
                link=str(raw.get("url") or raw.get("external_url") or ""),
                published=_json_time(when),
                lang=_lang(raw.get("language")) or feed_lang,
                base=url,
                tags=tuple(str(tag) for tag in raw.get("tags") or ()),
            )
        )
    return ParsedFeed(
        title=str(document.get("title") or ""),
        lang=feed_lang,
        entries=tuple(entries),
        format="json" + version.rsplit("/", 1)[-1],
    )


def _json_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _not_a_feed(body: bytes, url: str, warnings: tuple[str, ...]) -> NotAFeedError:
    head = body[:2048].lstrip().lower()
    if any(marker in head for marker in _HTML_SNIFF):
        links = advertised_feed_links(body, url)
        if links:
            return NotAFeedError(
                "the URL returned an HTML page, not a feed; the page advertises: "
                + ", ".join(links),
                links,
            )
        return NotAFeedError("the URL returned an HTML page that advertises no feed")
    reason = warnings[0] if warnings else "no RSS, Atom or JSON Feed found"
    return NotAFeedError(f"the body is not a feed: {reason}")


def advertised_feed_links(body: bytes, url: str) -> tuple[str, ...]:
    """Feed URLs an HTML page names in ``<link rel="alternate" type="...">``."""
    soup = BeautifulSoup(body, "html.parser")
    links = []
    for tag in soup.find_all("link"):
        rel = tag.get_attribute_list("rel")
        kind = str(tag.get("type") or "").lower()
        href = tag.get("href")
        if "alternate" in rel and kind in _FEED_TYPES and href:
            links.append(urljoin(url, str(href)))
    return tuple(dict.fromkeys(links))
