"""Onboarding feeds: find the feeds a web page advertises, and move feed lists in and out as
OPML, the format every feed reader imports and exports.

Pure functions on bytes and values (no network, no files, no clock): the ``monitor feeds
discover | import | export`` commands do the I/O and hand the bytes here, so each rule
(which ``<link>`` counts, how a title becomes a config name, what an export may contain) is
tested without a server.  Everything rendered for output passes through ``monitor.redact``:
a feed URL's credentials are masked in the config lines (``***``, for the operator to fill
in from the environment) and removed from an OPML export, which leaves the machine.
"""

from __future__ import annotations

import json
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from urllib.parse import urljoin, urlsplit, urlunsplit

import yaml
from bs4 import BeautifulSoup

from monitor.errors import Location, MonitorError
from monitor.ingest.parse import NotAFeedError, parse_feed
from monitor.redact import REDACTED, mask_url

#: The ``type`` of a ``<link rel="alternate">`` that names a feed, and how a person calls it.
FEED_TYPES: Mapping[str, str] = {
    "application/rss+xml": "RSS",
    "application/atom+xml": "Atom",
    "application/feed+json": "JSON Feed",
}

#: Config names are at most this long: long enough for a headline-like title, short enough
#: for the ``monitor feeds status`` table.
NAME_LIMIT = 64

_SCHEMES = ("http", "https")


class OnboardError(MonitorError):
    """A page, feed or OPML document that onboarding cannot use; the message says why."""


class OpmlError(OnboardError):
    """An OPML document that cannot be read, at ``location`` when the parser knows it."""

    def __init__(self, location: Location, message: str) -> None:
        super().__init__(message)
        self.location = location

    def __str__(self) -> str:
        return f"{self.location}: {super().__str__()}"


@dataclass(frozen=True, slots=True)
class FeedLink:
    """A feed found by discovery: its title as the page (or feed) gives it, where it is,
    and its kind (``RSS``, ``Atom``, ``JSON Feed``)."""

    title: str
    url: str
    kind: str


@dataclass(frozen=True, slots=True)
class Discovery:
    """What a URL turned out to be: a feed itself (``links`` holds just it) or a page that
    advertises ``links``."""

    is_feed: bool
    links: tuple[FeedLink, ...]


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One ``feeds:`` entry of the config, as onboarding writes and reads it."""

    name: str
    url: str
    tags: tuple[str, ...] = ()


# --- names ---------------------------------------------------------------------------------


def slug(text: str, limit: int = NAME_LIMIT) -> str:
    """``text`` as a config name: lower-case ASCII letters and digits, with ``_`` and ``.``
    kept and every other run of characters one ``-`` (accents are dropped, so "Café Zürich"
    is ``cafe-zurich``; a title in another script gives ``""``, for the caller to fall back
    on the URL).  Idempotent, so a name exported and imported again stays the same."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    joined = re.sub(r"[^a-z0-9_.]+", "-", folded).strip("-_.")
    return _trimmed(joined, limit)


def url_slug(url: str) -> str:
    """A name for a feed whose title gives none: its host (without ``www.``) and path, so
    ``https://www.example.org/news/rss.xml`` is ``example.org-news-rss.xml``."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").removeprefix("www.")
    except ValueError:
        return slug(url) or "feed"
    return slug(f"{host} {parts.path}") or "feed"


def unique_name(base: str, taken: set[str], limit: int = NAME_LIMIT) -> str:
    """``base``, or ``base-2``, ``base-3`` ... whichever is not ``taken`` yet; the base is
    shortened so that the result still fits ``limit`` (and so is its own slug)."""
    if base not in taken:
        return base
    number = 2
    while True:
        suffix = f"-{number}"
        candidate = _trimmed(base, limit - len(suffix)) + suffix
        if candidate not in taken:
            return candidate
        number += 1


def _trimmed(name: str, limit: int) -> str:
    return name[:limit].rstrip("-_.") if len(name) > limit else name


def _named(titled: Iterable[tuple[str, str]]) -> Iterator[str]:
    """Unique names for (title, url) pairs in order: the title's slug, else the URL's."""
    taken: set[str] = set()
    for title, url in titled:
        name = unique_name(slug(title) or url_slug(url), taken)
        taken.add(name)
        yield name


# --- discovery -----------------------------------------------------------------------------


def discover(body: bytes, headers: Mapping[str, str], url: str) -> Discovery:
    """What the body fetched from ``url`` offers: itself when it is a feed (RSS, Atom or JSON
    Feed, whatever the Content-Type claims: servers often send feeds as text/html), else the
    feeds the HTML page advertises.  ``OnboardError`` when it is neither."""
    try:
        feed = parse_feed(body, headers, url)
    except NotAFeedError as exc:
        links = advertised_feeds(body, url, _charset(headers))
        if links:
            return Discovery(is_feed=False, links=links)
        raise OnboardError(_nothing_found(body, headers, str(exc))) from None
    title = " ".join(feed.title.split())
    return Discovery(is_feed=True, links=(FeedLink(title, url, _format_kind(feed.format)),))


def advertised_feeds(
    html: bytes | str, page_url: str, encoding: str | None = None
) -> tuple[FeedLink, ...]:
    """The feeds an HTML page names in ``<link rel="alternate" type="application/rss+xml"
    (atom+xml, feed+json) href=... title=...>``, in page order, each URL made absolute
    against the page's ``<base href>`` (or its own URL) and listed once.  Links outside the
    ``<head>`` count too, since browsers and readers honour them there.  Hrefs that do not
    resolve to http(s) (``javascript:``, ``data:``) are left out."""
    soup = BeautifulSoup(html, "html.parser", from_encoding=encoding)
    base = page_url
    base_tag = soup.find("base", href=True)
    if base_tag is not None:
        candidate = urljoin(page_url, str(base_tag.get("href", "")).strip())
        base = candidate if urlsplit(candidate).scheme in _SCHEMES else page_url
    found: dict[str, FeedLink] = {}
    for tag in soup.find_all("link", href=True):
        rel = [token.lower() for token in tag.get_attribute_list("rel") if token]
        kind = str(tag.get("type") or "").split(";")[0].strip().lower()
        if "alternate" not in rel or kind not in FEED_TYPES:
            continue
        href = urljoin(base, str(tag.get("href", "")).strip())
        if urlsplit(href).scheme in _SCHEMES and href not in found:
            title = " ".join(str(tag.get("title") or "").split())
            found[href] = FeedLink(title, href, FEED_TYPES[kind])
    return tuple(found.values())


def discovery_entries(links: Sequence[FeedLink]) -> tuple[FeedEntry, ...]:
    """Config entries for discovered feeds, named after their titles, each name unique."""
    names = _named((link.title, link.url) for link in links)
    return tuple(FeedEntry(name, link.url) for name, link in zip(names, links, strict=True))


def _format_kind(version: str) -> str:
    """feedparser's version (``rss20``, ``atom10``, ``rdf``) or ours (``json1.1``) as a kind."""
    if version.startswith("atom"):
        return "Atom"
    if version.startswith("json"):
        return "JSON Feed"
    if version.startswith(("rss", "rdf")):
        return "RSS"
    return version


def _charset(headers: Mapping[str, str]) -> str | None:
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    found = re.search(r"charset=\"?([\w.:-]+)", content_type, re.I)
    return found.group(1) if found else None


def _nothing_found(body: bytes, headers: Mapping[str, str], reason: str) -> str:
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    head = body[:4096].lower()
    if "html" in content_type.lower() or b"<html" in head or b"<!doctype html" in head:
        return (
            'the page advertises no feed (no <link rel="alternate"> of type '
            + ", ".join(FEED_TYPES)
            + ")"
        )
    return f"neither a feed nor a web page: {reason}"


# --- config lines --------------------------------------------------------------------------


def yaml_entry(entry: FeedEntry) -> str:
    """One ready-to-paste flow-style line, ``- {name: x, url: "https://...", tags: [a]}``.

    The URL is masked (``mask_url``): a credential in it is shown as ``***``, never printed,
    and the operator puts it back, from the environment (``${FEED_TOKEN}``) or ``auth:``."""
    fields = [f"name: {yaml_scalar(entry.name)}", f"url: {_quoted(mask_url(entry.url))}"]
    if entry.tags:
        fields.append("tags: [" + ", ".join(yaml_scalar(tag) for tag in entry.tags) + "]")
    return "- {" + ", ".join(fields) + "}"


def yaml_scalar(text: str) -> str:
    """``text`` plain when any YAML reader reads it back as that same string (``kz``,
    ``bbc-world``), else double-quoted (``"null"``, ``"1.0"``, ``"yes"``, ``"a: b"``)."""
    if re.fullmatch(r"[a-z][a-z0-9_.-]*", text) and _reads_back(text):
        return text
    return _quoted(text)


def _reads_back(text: str) -> bool:
    return text.lower() not in ("null", "true", "false") and yaml.safe_load(text) == text


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar: JSON's escapes, which YAML shares, plus ``\\u`` escapes
    for the characters YAML does not allow unescaped (C1 controls, DEL, surrogates)."""
    escaped = json.dumps(text, ensure_ascii=False)
    return re.sub(r"[\x7f-\x9f\ud800-\udfff\ufffe\uffff]", _escape, escaped)


def _escape(found: re.Match[str]) -> str:
    return f"\\u{ord(found.group(0)):04x}"


# --- OPML ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpmlImport:
    """What an OPML document yields: config entries, and the ``xmlUrl`` values left out
    because the config cannot poll them (only http:// and https:// feeds)."""

    entries: tuple[FeedEntry, ...]
    skipped: tuple[str, ...] = ()


def opml_entries(document: bytes, path: str = "<opml>") -> OpmlImport:
    """Config entries for every outline with an http(s) ``xmlUrl``, in document order.

    A name is the slug of the outline's ``text`` (else ``title``, else its URL), made unique;
    tags are the slugs of its enclosing folders' titles, outermost first, then of its
    ``category`` attribute (comma-separated, ``/``-delimited paths, as OPML 2.0 writes them).
    A feed listed in several folders (readers export it once per folder) becomes one entry
    with all their tags.  ``OpmlError`` names ``path`` and the line when the XML is broken."""
    root = _opml_root(document, path)
    body = root.find("body")
    if body is None:
        raise OpmlError(Location(path), "not an OPML document: <opml> has no <body>")
    found: dict[str, tuple[str, list[str]]] = {}
    skipped: dict[str, None] = {}
    for outline, folders in _feed_outlines(body):
        url = _attribute(outline, "xmlUrl").strip()
        if _scheme(url) not in _SCHEMES:
            skipped[url] = None
            continue
        title = _attribute(outline, "text") or _attribute(outline, "title")
        tags = [*folders, *_category_tags(_attribute(outline, "category"))]
        _, known = found.setdefault(url, (title, []))
        known.extend(tag for tag in tags if tag not in known)
    names = _named((title, url) for url, (title, _) in found.items())
    entries = tuple(
        FeedEntry(name, url, tuple(tags))
        for name, (url, (_, tags)) in zip(names, found.items(), strict=True)
    )
    return OpmlImport(entries, tuple(skipped))


def _scheme(url: str) -> str:
    try:
        return urlsplit(url).scheme.lower()
    except ValueError:
        return ""


def entries_opml(
    entries: Iterable[FeedEntry], title: str = "monitor feeds", created: datetime | None = None
) -> str:
    """An OPML 2.0 document of ``entries``: one flat ``<outline type="rss">`` each, its
    ``text`` and ``title`` the name, its ``xmlUrl`` the URL without credentials
    (``without_credentials``: an export leaves the machine), its tags in ``category``."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    if created is not None:
        ET.SubElement(head, "dateCreated").text = format_datetime(created)
    body = ET.SubElement(root, "body")
    for entry in entries:
        outline = ET.SubElement(body, "outline", type="rss", text=entry.name, title=entry.name)
        outline.set("xmlUrl", without_credentials(entry.url))
        if entry.tags:
            outline.set("category", ",".join(slug(tag) or tag for tag in entry.tags))
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def without_credentials(url: str) -> str:
    """``url`` with what ``mask_url`` would mask taken out altogether: the user part
    (``user:pass@``), and query or fragment parameters named like secrets (``?apikey=``).
    A webhook-like path stays masked as ``/***``.  Other URLs come back unchanged."""
    masked = mask_url(url)
    if masked == url:
        return url
    parts = urlsplit(masked)
    netloc = parts.netloc.rpartition("@")[2]
    query = _without_masked(parts.query)
    fragment = _without_masked(parts.fragment) if "=" in parts.fragment else parts.fragment
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def _without_masked(params: str) -> str:
    kept = [piece for piece in re.split(r"[&;]", params) if piece.partition("=")[2] != REDACTED]
    return "&".join(kept)


def _opml_root(document: bytes, path: str) -> ET.Element:
    """The parsed ``<opml>`` element.  Entity declarations are refused before parsing: OPML
    has no use for them, and they are how XML is made to expand without bound."""
    if b"<!ENTITY" in document:
        raise OpmlError(Location(path), "the file declares XML entities; OPML has no use for them")
    try:
        root = ET.fromstring(document)  # noqa: S314 - entities refused above; no DTD fetching
    except ET.ParseError as exc:
        line, column = exc.position
        reason = re.sub(r": line \d+, column \d+$", "", str(exc))
        raise OpmlError(
            Location(path, line, column + 1), f"not well-formed XML: {reason}"
        ) from None
    if root.tag != "opml":
        raise OpmlError(Location(path), f"not an OPML document: the root element is <{root.tag}>")
    return root


def _feed_outlines(body: ET.Element) -> Iterator[tuple[ET.Element, tuple[str, ...]]]:
    """Every outline with an ``xmlUrl`` in document order, with its folders' tags; an
    outline without one is a folder (its title a tag for what it holds).  A loop over a
    stack, not recursion, so a file nested ten thousand deep is read, not a crash."""
    stack: list[tuple[Iterator[ET.Element], tuple[str, ...]]] = [(iter(body), ())]
    while stack:
        children, folders = stack[-1]
        outline = next(children, None)
        if outline is None:
            stack.pop()
        elif outline.tag != "outline":
            continue
        elif _attribute(outline, "xmlUrl").strip():
            yield outline, folders
        else:
            folder = slug(_attribute(outline, "text") or _attribute(outline, "title"))
            inner = folders if not folder or folder in folders else (*folders, folder)
            stack.append((iter(outline), inner))


def _attribute(outline: ET.Element, name: str) -> str:
    """An attribute by name, whatever its case: old exporters write ``xmlurl``, ``Text``."""
    value = outline.get(name)
    if value is not None:
        return value
    folded = name.lower()
    return next((v for k, v in outline.attrib.items() if k.lower() == folded), "")


def _category_tags(category: str) -> list[str]:
    """OPML 2.0's ``category="/Harvard/Berkman,/Politics"`` as tags: each path segment."""
    tags: list[str] = []
    for path in category.split(","):
        for segment in path.split("/"):
            tag = slug(segment)
            if tag and tag not in tags:
                tags.append(tag)
    return tags
