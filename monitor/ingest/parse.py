"""Feed bytes plus response headers -> a parsed feed of plain entries (RSS, Atom, JSON Feed).

feedparser is always handed bytes: given a URL or a path it would fetch by itself (following
redirects anywhere, with no timeout) or read local files.  Its loosely typed dictionaries stop
here; what leaves this module is ``ParsedFeed`` and ``RawEntry``.
"""

from __future__ import annotations

import calendar
import codecs
import copy
import io
import json
import os
import re
import time
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urljoin

import charset_normalizer
import feedparser
import feedparser.mixin
from bs4 import BeautifulSoup

# feedparser's own date reader (every format it knows), for dates rewritten in ``read_date``;
# private, but its only public route is a parse of a whole feed.  A test pins its behaviour.
from feedparser.datetimes import _parse_date as feedparser_date
from feedparser.util import FeedParserDict

from monitor.ingest.fastparse import fast_parse

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


TextType = Literal["html", "text"]
"""How a title or summary is written: ``html`` is markup (entities and tags are read once),
``text`` is plain text that is never read as markup (``Vector<T>`` stays as it is)."""


@dataclass(frozen=True, slots=True)
class RawEntry:
    """One entry as the feed wrote it: HTML still in, times as found, links unresolved.

    ``title_type`` and ``summary_type`` say how the publisher declared the text (Atom's
    ``type``, JSON Feed's ``content_text``, feedparser's reading of an RSS title), so that it is
    decoded exactly once: ``summary_html`` holds plain text when ``summary_type`` is "text".
    """

    guid: str | None
    title: str
    summary_html: str
    link: str
    published: datetime | None
    lang: str | None = None
    base: str | None = None
    tags: tuple[str, ...] = ()
    title_type: TextType = "html"
    summary_type: TextType = "html"


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
    cut: bool = False
    """The body held more entries than ``max_entries``; only the first were read."""


FAST_PARSE_ENV = "MONITOR_FAST_PARSE"
"""Set to 0 (or false, off, no) to send every body to feedparser, skipping ``fastparse``."""


def fast_parse_enabled() -> bool:
    """Whether ``parse_feed`` tries ``fastparse`` first (on unless ``MONITOR_FAST_PARSE``
    says otherwise).  Read on each call, so parser processes follow the daemon's environment,
    which their fork server inherits."""
    return os.environ.get(FAST_PARSE_ENV, "1").strip().lower() not in {"0", "false", "off", "no"}


def parse_feed(
    body: bytes,
    headers: Mapping[str, str],
    url: str,
    *,
    max_entries: int | None = None,
    fast: bool | None = None,
) -> ParsedFeed:
    """Parse one feed body; raise ``NotAFeedError`` when nothing in it is a feed.

    With ``max_entries``, entries past that many are never built: an XML body is cut after
    its ``max_entries``-th entry before feedparser sees it (``cut_entries``), since feedparser
    builds every entry of whatever it is given (190,000 tiny items cost it minutes).

    A body cut short (a lying Content-Length, a dropped connection) with no entry in it is
    refused as truncated (``truncated_ending``), not read as an empty feed.

    A well-formed RSS or Atom body is read by ``fastparse`` (lxml) to the same result, several
    times faster; anything unusual goes to feedparser, the reference.  ``fast`` False (or
    ``MONITOR_FAST_PARSE=0`` when it is None) sends every body to feedparser.

    ``warnings`` says what was recovered from a broken feed and what was left out of an entry
    (a date that cannot be read, a JSON Feed value of the wrong type), so that the poll logs it
    with the feed's name instead of the item quietly carrying a wrong value.
    """
    if not body.strip():
        raise NotAFeedError("the response body is empty")
    check_entity_expansion(body)
    headers = {key.lower(): value for key, value in headers.items()}
    body, sniffed = sniff_undeclared(body, headers)
    if sniffed is not None and "content-type" in headers:
        headers["content-type"] = _with_charset(headers["content-type"], "utf-8")
    if _looks_like_json(body, headers):
        return _parse_json_feed(body, url, headers, max_entries)
    whole = body
    body, cut = cut_entries(body, max_entries) if max_entries is not None else (body, False)
    parsed = fast_parse(body, headers) if (fast_parse_enabled() if fast is None else fast) else None
    if parsed is None:
        parsed = feedparser.parse(io.BytesIO(body), response_headers=headers, **FEEDPARSER_OPTIONS)
    warnings: tuple[str, ...] = ()
    if parsed.get("bozo"):
        problem = parsed.get("bozo_exception")
        warnings = (f"{MALFORMED}, recovered what could be read: {problem}",)
        ending = truncated_ending(whole, len(parsed.entries))
        if ending is not None:
            truncated = (
                f"the body is truncated: {ending} ({len(whole):,} bytes; "
                "a Content-Length that lies, or a connection dropped mid-body)"
            )
            if not parsed.entries:
                raise NotAFeedError(truncated)
            warnings += (truncated,)
    if cut:
        warnings += (f"the feed has more than {max_entries} entries; only the first were read",)
    if not parsed.entries and not parsed.get("version"):
        raise _not_a_feed(body, url, warnings)
    feed_info = parsed.get("feed", {})
    feed_lang = _lang(feed_info.get("language"))
    problems = _Problems()
    return ParsedFeed(
        title=str(feed_info.get("title") or ""),
        lang=feed_lang,
        entries=tuple(_entry(raw, feed_lang, problems) for raw in parsed.entries),
        format=str(parsed.get("version") or "unknown"),
        encoding=sniffed or parsed.get("encoding"),
        warnings=warnings + problems.warnings(),
        ttl=str(feed_info.get("ttl")) if feed_info.get("ttl") else None,
        cut=cut,
    )


def cut_entries(body: bytes, limit: int) -> tuple[bytes, bool]:
    """``body`` cut just after its ``limit``-th ``</item>`` or ``</entry>`` and closed again
    as its root element requires, and whether it was cut; pure and C-speed (one regular
    expression scan), so a 10 MiB body of tiny items costs milliseconds, not feedparser's
    minutes.  A body whose root is not RSS, RDF or Atom, or that is not in an ASCII-based
    encoding, is left whole."""
    if limit <= 0 or b"\x00" in body[:4]:
        return body, False
    root = _ROOT.search(body[:_ROOT_SCAN])
    if root is None:
        return body, False
    name = root.group(1)
    local = name.rsplit(b":", 1)[-1].lower()
    if local not in _CLOSERS:
        return body, False
    for count, found in enumerate(_ENTRY_END.finditer(body), start=1):
        if count == limit:
            end = found.end()
            if not _ENTRY_END.search(body, end):
                return body, False
            return body[:end] + _CLOSERS[local] % {b"root": name}, True
    return body, False


def truncated_ending(body: bytes, entries: int) -> str | None:
    """What shows that an XML feed body was cut short, or None.  Pure.

    A body with entries that is cut short is still read, with a warning (real feeds
    archived half-way are in the corpus); with none it is refused, so that a cut body is a
    failed poll, not an "ok" one with nothing in it.

    Cut short: it stops inside a tag or text (it does not end with ``>``), inside an entry
    (an ``<item>`` or ``<entry>`` opened after the last one closed), or, with no entry read
    at all, before its root element closes.  A feed that merely forgets its final
    ``</rss>`` after complete entries (some real ones do) is not refused."""
    if b"\x00" in body[:4]:
        return None
    root = _ROOT.search(body[:_ROOT_SCAN])
    if root is None:
        return None
    name = root.group(1).decode("ascii", "replace")
    tail = body.rstrip(b" \t\r\n\x00")
    if not tail.endswith(b">"):
        return "it stops in the middle of a tag or text"
    ends = [found.end() for found in _ENTRY_END.finditer(tail)]
    last_end = ends[-1] if ends else 0
    if _ENTRY_START.search(tail, last_end):
        return "it stops in the middle of an entry"
    if entries == 0 and not re.search(rb"</" + re.escape(root.group(1)) + rb"\s*>$", tail):
        return f"it stops before its closing </{name}>, with no entry read"
    return None


_ROOT = re.compile(rb"<([A-Za-z_][\w.-]*(?::[A-Za-z_][\w.-]*)?)[\s>/]")
_ROOT_SCAN = 4096
_ENTRY_END = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?(?:item|entry)\s*>")
_ENTRY_START = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(?:item|entry)[\s>/]")
_CLOSERS = {b"rss": b"</channel></%(root)s>", b"rdf": b"</%(root)s>", b"feed": b"</%(root)s>"}


MALFORMED = "feed is malformed"
"""How a warning about a broken feed starts (other warnings are about single values)."""

SNIFFED_ENCODINGS = {
    "utf_8": "utf-8",
    "cp1251": "windows-1251",
    "koi8_r": "koi8-r",
    "iso8859_5": "iso-8859-5",
    "mac_cyrillic": "x-mac-cyrillic",
    "cp866": "ibm866",
    "kz1048": "kz-1048",
    "ptcp154": "ptcp154",
    "gb18030": "gb18030",
    "big5": "big5",
    "cp1252": "windows-1252",
}
"""The encodings a body that declares none may be in (Python's name: the usual label): those
of the watched languages (Russian and Kazakh in Cyrillic, Chinese in both scripts) and
windows-1252 for Western ones.
Keeping the list short is what makes detection on a few KB reliable: with these candidates
charset-normalizer names the right encoding for all 30 non-UTF-8 files of the shared corpus
once their declarations are removed (``tests/ingest/test_fidelity.py``)."""

MAX_CHAOS = 0.1
"""Above this share of odd characters charset-normalizer's best guess is a guess (Korean or
Japanese bodies read as Chinese or Kazakh score 0.12-0.18; the corpus's real feeds at most
0.04), and the body is left to feedparser as before."""


def sniff_undeclared(body: bytes, headers: Mapping[str, str]) -> tuple[bytes, str | None]:
    """A body that declares no encoding and is not UTF-8, re-encoded as UTF-8, and the
    encoding it was found to be in; any other body as it is, and None.

    feedparser would read such a body as windows-1252 (Huginn #2625: windows-1251 and GBK
    feeds garbled).  A declaration (a byte-order mark, an HTTP charset, an XML ``encoding``)
    is the publisher's word and is left to feedparser, even when it is wrong.
    """
    head = body[:1024]
    if (
        head.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        or b"\x00" in head[:4]  # UTF-16 or UTF-32 without a byte-order mark
        or _charset(headers)
        or _XML_ENCODING.search(head)
    ):
        return body, None
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return body, None
    best = charset_normalizer.from_bytes(body, cp_isolation=list(SNIFFED_ENCODINGS)).best()
    if best is None or best.chaos > MAX_CHAOS:
        return body, None
    encoding = kazakh_variant(body, best.encoding)
    text = body.decode(encoding, "replace")
    return text.encode("utf-8"), SNIFFED_ENCODINGS.get(encoding, encoding)


def kazakh_variant(body: bytes, guess: str) -> str:
    """Among windows-1251 and its two Kazakh variants (KZ-1048, PT154), the one that reads
    ``body`` as Kazakh, when windows-1251 cannot be right.

    The three differ only in a few dozen bytes, which the detector barely sees.  Read as
    windows-1251, Kazakh's commonest letters (қ, ң, һ, ғ) come out as Serbian and Macedonian
    ones (ќ, њ, ћ, ѓ), which no watched language uses; only then is windows-1251 given up,
    for the variant that reads the most Kazakh letters.  Ukrainian, whose є, ї, ґ are Kazakh
    letters in KZ-1048, stays windows-1251.
    """
    if guess not in _KAZAKH_VARIANTS:
        return guess
    scores = {name: _kazakh_score(body.decode(name, "replace")) for name in _KAZAKH_VARIANTS}
    if guess == "cp1251" and scores[guess] >= 0:
        return guess
    return max(_KAZAKH_VARIANTS, key=lambda name: (scores[name], name == guess))


def _kazakh_score(text: str) -> int:
    return sum(map(text.count, _KAZAKH_LETTERS)) - 3 * sum(map(text.count, _SOUTH_SLAVIC))


_KAZAKH_VARIANTS = ("cp1251", "kz1048", "ptcp154")
_KAZAKH_LETTERS = tuple("ӘәҒғҚқҢңӨөҰұҮүҺһ")
_SOUTH_SLAVIC = tuple("ЂђЃѓЉљЊњЌќЋћЏџЈјЅѕ")


_XML_ENCODING = re.compile(rb"^\s*<\?xml[^>]*?\sencoding\s*=", re.IGNORECASE)
_CHARSET = re.compile(r";\s*charset\s*=\s*[\"']?([^\s;\"']+)", re.IGNORECASE)


def _charset(headers: Mapping[str, str]) -> str | None:
    found = _CHARSET.search(headers.get("content-type", ""))
    return found.group(1) if found else None


def _with_charset(content_type: str, charset: str) -> str:
    return f"{_CHARSET.sub('', content_type)}; charset={charset}"


class _Problems:
    """Values left out of a feed's entries, counted per kind with the first one found, so
    that a feed with a hundred bad dates gives one warning, not a hundred."""

    def __init__(self) -> None:
        self._found: dict[str, tuple[int, str]] = {}

    def add(self, kind: str, example: str) -> None:
        count, first = self._found.get(kind, (0, example))
        self._found[kind] = (count + 1, first)

    def warnings(self) -> tuple[str, ...]:
        return tuple(
            f"{kind} ({count} in this feed; first: {first})"
            for kind, (count, first) in self._found.items()
        )


UNREADABLE_DATE = "a date that cannot be read; the entry counts as published when first seen"


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


def _entry(raw: Any, feed_lang: str | None, problems: _Problems) -> RawEntry:
    summary, summary_type = _longest_content(raw)
    detail = raw.get("title_detail") or {}
    title = str(raw.get("title") or "")
    lang = _lang(detail.get("language")) or feed_lang
    return RawEntry(
        guid=str(raw["id"]) if raw.get("id") else None,
        title=title,
        summary_html=summary,
        link=str(raw.get("link") or ""),
        published=_entry_time(raw, _chinese(lang, title), problems),
        lang=lang,
        base=detail.get("base") or None,
        tags=_tags(raw.get("tags") or ()),
        title_type=_text_type(detail),
        summary_type=summary_type,
    )


def _longest_content(raw: Any) -> tuple[str, TextType]:
    """The entry's longest text (its summary or a content element) and how it is written."""
    summary = str(raw.get("summary") or "")
    detail = raw.get("summary_detail")
    kind = _text_type(detail)
    for part in raw.get("content") or ():
        value = str(part.get("value") or "")
        # feedparser copies an Atom entry's only content to "summary", without its type
        if len(value) > len(summary) or (value == summary and detail is None):
            summary, kind = value, _text_type(part)
    return summary, kind


def _text_type(detail: Any) -> TextType:
    """feedparser's content type as ``TextType``: only ``text/plain`` is plain text (Atom's
    ``type="text"``, or an RSS title in which feedparser found no markup nor entity)."""
    kind = str((detail or {}).get("type") or "text/html").lower()
    return "text" if kind == "text/plain" else "html"


def _tags(tags: Any) -> tuple[str, ...]:
    """Category terms, and an Atom category's label where it says more than its term
    (``term="rare-earths" label="Rare earths"``), each once."""
    found: dict[str, str] = {}
    for tag in tags:
        for key in ("term", "label"):
            value = " ".join(str(tag.get(key) or "").split())
            if value:
                found.setdefault(value.casefold(), value)
    return tuple(found.values())


def _chinese(lang: str | None, title: str) -> bool:
    """Whether the entry is Chinese, by its language or else by Han characters in its title:
    "CST" then means China Standard Time, not US Central."""
    if lang is not None:
        return lang == "zh"
    return any("\u4e00" <= char <= "\u9fff" for char in title)


def _entry_time(raw: Any, chinese: bool, problems: _Problems) -> datetime | None:
    """The entry's publication time (its update time if it has none), read in the zone it
    names; None, reported, when it cannot be read."""
    for key in ("published", "updated"):
        written = str(dict.get(raw, key) or "").strip()
        parsed = dict.get(raw, f"{key}_parsed")
        if written or parsed:
            break
    else:
        return None
    moment, problem = read_date(written, parsed, chinese=chinese)
    if problem is not None:
        problems.add(UNREADABLE_DATE, f"{written!r}, {problem}")
    return moment


def read_date(
    written: str, parsed: time.struct_time | None = None, *, chinese: bool = False
) -> tuple[datetime | None, str | None]:
    """A feed's date as an aware UTC time, or None and why it cannot be read.

    ``parsed`` is feedparser's reading, used when the date names no zone, or UTC.  feedparser
    reads a zone name it does not know ("MSK", "BST", "HKT") as UTC, silently; here the name is
    looked up in ``ZONE_OFFSETS`` and an unknown one is a date that cannot be read.  "CST" is
    China Standard Time in a Chinese entry (``chinese``), US Central otherwise.  An offset
    glued to the time ("13:08:54+0900") is read too.
    """
    zone = _ZONE_NAME.search(written)
    if zone is not None and zone.group(1).upper() not in _NOT_ZONES | _UTC_NAMES:
        name = zone.group(1).upper()
        offset = ZONE_OFFSETS.get("CST-ZH" if name == "CST" and chinese else name)
        if offset is None:
            return None, f"unknown time zone {zone.group(1)!r}"
        numeric = f"{written[: zone.start()].rstrip()} {_hhmm(offset)}"
        parsed = feedparser_date(numeric) or feedparser_date(_mended(numeric))
        if parsed is None:
            return None, "not a date feedparser can read"
    elif parsed is None and written:
        mended = _mended(written)
        parsed = feedparser_date(mended) if mended != written else None
        if parsed is None:
            return None, "not a date feedparser can read"
    if parsed is None:
        return None, None
    return datetime.fromtimestamp(calendar.timegm(parsed), UTC), None


def _mended(written: str) -> str:
    """An RFC 822 date as publishers misspell it, spelt right: an offset glued to the time
    ("13:08:54+0900"), weekday and month named in the feed's language ("Seg, 24 Set 2018",
    "пн, 24 сен 2018")."""
    mended = _GLUED_OFFSET.sub(r"\1 \2", written)
    mended = _WEEKDAY.sub("", mended)
    return _MONTH_WORD.sub(lambda found: _MONTHS.get(found.group(1).lower(), found.group()), mended)


def _hhmm(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def _hours(hours: float) -> timedelta:
    return timedelta(hours=hours)


ZONE_OFFSETS: dict[str, timedelta] = {
    name: _hours(hours)
    for name, hours in {
        # North America (RFC 822's own names, as feedparser reads them)
        "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7,
        "AKST": -9, "AKDT": -8, "HST": -10, "AST": -4, "ADT": -3, "NST": -3.5, "NDT": -2.5,
        # Europe
        "WET": 0, "WEST": 1, "BST": 1, "CET": 1, "CEST": 2, "MET": 1, "MEST": 2,
        "EET": 2, "EEST": 3, "MSK": 3, "MSD": 4, "SAMT": 4, "TRT": 3,
        # Russia east of the Urals, Central Asia (Kazakhstan is on +5 since 1 March 2024)
        "YEKT": 5, "OMST": 6, "NOVT": 7, "KRAT": 7, "IRKT": 8, "YAKT": 9, "VLAT": 10,
        "MAGT": 11, "PETT": 12, "ALMT": 5, "QYZT": 5, "AQTT": 5, "ORAT": 5, "UZT": 5,
        "TJT": 5, "KGT": 6, "PKT": 5, "NPT": 5.75, "IRST": 3.5, "AFT": 4.5, "GST": 4,
        # East Asia and the Pacific
        "CST-ZH": 8, "HKT": 8, "SGT": 8, "PHT": 8, "MYT": 8, "AWST": 8, "JST": 9, "KST": 9,
        "ICT": 7, "WIB": 7, "ACST": 9.5, "AEST": 10, "AEDT": 11, "NZST": 12, "NZDT": 13,
        # Africa
        "WAT": 1, "CAT": 2, "SAST": 2, "EAT": 3,
    }.items()
}  # fmt: skip
"""Zone names that feeds write, with their offset from UTC.  Names that mean several zones
("IST": India, Ireland or Israel) are left out, so such a date is reported, not guessed."""

_UTC_NAMES = frozenset({"Z", "UT", "UTC", "GMT"})
_NOT_ZONES = frozenset({"AM", "PM"})
_ZONE_NAME = re.compile(r"(?<=[\d\s])([A-Za-z]{1,5})$")
_GLUED_OFFSET = re.compile(r"(\d:\d\d)([+-]\d{4})$")
_WEEKDAY = re.compile(r"^\s*[^\W\d_]+\.?,\s*(?=\d)")
_MONTH_WORD = re.compile(r"(?<=\d )([^\W\d_]{3})[^\W\d_]*\.?(?= \d{4})")
#: Month names by their first three letters, where those settle the month: Russian, Kazakh
#: (Cyrillic), Portuguese, Spanish, Italian, German, French.
_MONTHS = {
    word: month
    for month, words in {
        "Jan": "янв қаң jan ene gen jän", "Feb": "фев ақп fev feb fév", "Mar": "мар нау mär mrz",
        "Apr": "апр сәу abr avr", "May": "мая май мам mai mag", "Jun": "июн мау giu",
        "Jul": "июл шіл lug", "Aug": "авг там ago aoû", "Sep": "сен қыр set sep",
        "Oct": "окт қаз out ott okt", "Nov": "ноя қар nov", "Dec": "дек жел dez dic déc",
    }.items()
    for word in words.split()
}  # fmt: skip


def _lang(value: object) -> str | None:
    """``en-US`` -> ``en``: rules care about the language, not the region."""
    if not value:
        return None
    return str(value).strip().replace("_", "-").split("-")[0].lower() or None


def _looks_like_json(body: bytes, headers: Mapping[str, str]) -> bool:
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    return "json" in content_type or body.lstrip()[:1] == b"{"


def _parse_json_feed(
    body: bytes, url: str, headers: Mapping[str, str], max_entries: int | None = None
) -> ParsedFeed:
    """JSON Feed 1.0/1.1 (https://jsonfeed.org), which feedparser does not read.

    Values of the wrong type (a title that is a number, tags that are objects) are left out
    and reported, never turned into text such as "{'a': 1}"; only an ``id`` that is a number
    is taken as text, as the specification asks.  ``title``, ``content_text`` and
    ``summary`` are plain text, ``content_html`` is markup.
    """
    try:
        document = json.loads(_json_text(body, headers))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotAFeedError(f"the body is not valid JSON: {exc}") from None
    version = document.get("version", "") if isinstance(document, dict) else ""
    if not isinstance(version, str) or "jsonfeed.org/version/" not in version:
        raise NotAFeedError("JSON body is not a JSON Feed (no jsonfeed.org version)")
    problems = _Problems()
    feed_lang = _lang(_json_str(document, "language", problems))
    entries = []
    items = document.get("items") or ()
    cut = max_entries is not None and isinstance(items, list) and len(items) > max_entries
    if cut:
        items = items[:max_entries]
    for raw in items if isinstance(items, list) else ():
        if isinstance(raw, dict):
            entries.append(_json_entry(raw, url, feed_lang, problems))
        else:
            problems.add(_json_problem("an item", "an object"), _json_kind(raw))
    if not isinstance(items, list):
        problems.add(_json_problem("'items'", "a list"), _json_kind(items))
    return ParsedFeed(
        title=_json_str(document, "title", problems) or "",
        lang=feed_lang,
        entries=tuple(entries),
        format="json" + version.rsplit("/", 1)[-1],
        warnings=problems.warnings(),
        cut=cut,
    )


def _json_text(body: bytes, headers: Mapping[str, str]) -> bytes | str:
    """The body as ``json.loads`` should read it: decoded by the HTTP charset when there is
    one (``json.loads`` itself knows only UTF-8, -16 and -32)."""
    charset = _charset(headers)
    if charset is None:
        return body
    try:
        return body.decode(charset)
    except LookupError:
        return body


def _json_entry(
    raw: dict[str, Any], url: str, feed_lang: str | None, problems: _Problems
) -> RawEntry:
    html = _json_str(raw, "content_html", problems)
    text = _json_str(raw, "content_text", problems)
    summary = _json_str(raw, "summary", problems)
    link = _json_str(raw, "url", problems) or _json_str(raw, "external_url", problems)
    when = _json_str(raw, "date_published", problems) or _json_str(raw, "date_modified", problems)
    return RawEntry(
        guid=_json_id(raw.get("id"), problems),
        title=_json_str(raw, "title", problems) or "",
        summary_html=html or text or summary or "",
        link=link or "",
        published=_json_time(when, problems),
        lang=_lang(_json_str(raw, "language", problems)) or feed_lang,
        base=url,
        tags=_json_tags(raw.get("tags"), problems),
        title_type="text",
        summary_type="html" if html else "text",
    )


def _json_str(data: Mapping[str, Any], key: str, problems: _Problems) -> str | None:
    """``data[key]`` when it is text; None when it is absent, null or of another type (then
    reported)."""
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value or None
    problems.add(_json_problem(repr(key), "text"), _json_kind(value))
    return None


def _json_id(value: object, problems: _Problems) -> str | None:
    if value is None:
        return None
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    problems.add(_json_problem("'id'", "text or a number"), _json_kind(value))
    return None


def _json_tags(value: object, problems: _Problems) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.add(_json_problem("'tags'", "a list of text"), _json_kind(value))
        return ()
    tags = []
    for tag in value:
        if isinstance(tag, str):
            if tag.strip():
                tags.append(tag.strip())
        else:
            problems.add(_json_problem("a tag", "text"), _json_kind(tag))
    return tuple(tags)


def _json_problem(what: str, expected: str) -> str:
    return f"JSON Feed: {what} is not {expected}; left out"


def _json_kind(value: object) -> str:
    """What a JSON value is, for a warning (not the value: it may be large)."""
    kinds = {bool: "true/false", int: "a number", float: "a number", str: "text"}
    kinds |= {list: "a list", dict: "an object", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _json_time(value: str | None, problems: _Problems) -> datetime | None:
    """An RFC 3339 date (a date without an offset is taken as UTC, as feedparser does), or
    any other a feed may hold ("Fri, 31 May 2019 12:17:58 -0700")."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        written = value.strip()
        read, problem = read_date(written, feedparser_date(written))
        if problem is not None:
            problems.add(UNREADABLE_DATE, f"{value!r}, {problem}")
        return read
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


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
