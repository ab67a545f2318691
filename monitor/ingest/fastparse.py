"""A fast path for well-formed RSS 2.0, RSS 1.0 and Atom 1.0 bodies: lxml reads the XML, and a
port of the part of feedparser's reading that ``parse`` uses builds the same result.

Why: feedparser drives Python code for every SAX event (each start tag, each run of text) and
builds ``FeedParserDict``s for every element; it was 62 % of the parser processes' time on a
first poll (issue 19).  libxml2 builds the whole tree in C, and the port below runs a few Python
lines per element, for the values ``parse`` reads and nothing else.

How it stays equal: feedparser is the reference, and this module is a transcription of its
strict (SAX) path, ``feedparser.mixin`` and ``feedparser.namespaces._base``, limited to the
elements whose handling it reproduces line by line.  It reuses feedparser's own functions
wherever they decide a value: the encoding (``convert_to_utf8``, so the same bytes are read the
same way), dates (``_parse_date``), URL joins, the namespace table, the HTML guess for RSS
titles and the windows-1252 repair.  Anything else returns None and the caller asks feedparser:
a body that is not well-formed or that feedparser would flag (bozo), a DOCTYPE or entity,
UTF-16/32, a text element holding elements (XHTML content), base64 or non-text content types,
Atom 0.3, and every element for which feedparser has a handler that is not ported here.
``tests/ingest/test_fastparse.py`` holds the two equal over every feed of the shared corpus
and over generated feeds.

Security: lxml reads no DTD, resolves no entity and opens no network or file (``no_network``,
``resolve_entities=False``, ``load_dtd=False``); ``huge_tree`` stays off, so libxml2's limits
on depth and text size hold.  Pure: bytes in, values out.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

from feedparser.api import StrictFeedParser
from feedparser.datetimes import _parse_date
from feedparser.encodings import convert_to_utf8
from feedparser.html import _cp1252
from feedparser.mixin import _FeedParserMixin
from feedparser.urls import _urljoin, make_safe_absolute_uri
from feedparser.util import FeedParserDict
from lxml import etree

#: feedparser's namespace table (URI, lower-cased -> its canonical prefix).
_CANONICAL: dict[str, str] = {
    uri.lower(): prefix for uri, prefix in _FeedParserMixin.namespaces.items()
}
_USERLAND = "http://backend.userland.com/rss"

#: Versions this path reads; others (Atom 0.3, unknown roots) go to feedparser.
_VERSIONS = frozenset(
    {"rss090", "rss091u", "rss092", "rss093", "rss094", "rss20", "rss", "rss10", "atom10"}
)

#: feedparser leaves an image or a text input at any other element without a prefix.
_IN_TEXTINPUT = frozenset({"title", "link", "description", "name"})
_IN_IMAGE = frozenset({"title", "link", "description", "url", "href", "width", "height"})
_HTML_TYPES = frozenset({"application/xhtml+xml", "text/html"})
_CAN_BE_RELATIVE_URI = frozenset(_FeedParserMixin.can_be_relative_uri)
_C1 = re.compile("[\x80-\x9f]")
_ENTITY_LIKE = re.compile("&([A-Za-z0-9_]+);")
_PROLOG_DECLARATIONS = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_FIRST_ELEMENT = re.compile(rb"<\w")

#: Keys that ``parse`` reads from an entry or the feed; an element feedparser does not know
#: stores its text under its own name, so one so named must not pass unnoticed.
_RESERVED = frozenset(
    {
        "title_detail",
        "summary_detail",
        "published_parsed",
        "updated_parsed",
        "guidislink",
        "links",
        "content_detail",
    }
)


def _parser() -> etree.XMLParser:
    """A parser that reads no DTD, resolves no entity and never opens the network."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        strip_cdata=True,
        recover=False,
    )


class _Fallback(Exception):
    """Raised inside the walk: this body is for feedparser."""


def fast_parse(body: bytes, headers: Mapping[str, str]) -> FeedParserDict | None:
    """What ``feedparser.parse`` would return for ``body`` (the keys ``parse`` reads), or None
    when the body is anything but a plain well-formed RSS or Atom 1.0 document.

    ``headers`` are the response headers, lower-cased, as ``parse_feed`` hands them to
    feedparser: its Content-Type decides the encoding exactly as there."""
    if b"\x00" in body[:4] or body[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return None  # UTF-16 and UTF-32: rare, and feedparser's sniffing has its own rules
    first = _FIRST_ELEMENT.search(body)
    if first is None or _PROLOG_DECLARATIONS.search(body, 0, first.start()):
        return None
    result: dict[str, Any] = {}
    data = convert_to_utf8(dict(headers), body, result)
    if result.get("bozo") or not result.get("encoding"):
        return None
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError:
        return None
    info: Any = root.getroottree().docinfo  # lxml-stubs lack DocInfo.doctype
    if info.doctype or info.xml_version != "1.0":
        return None
    location = headers.get("content-location", "")
    base = _safe_join("", location) or _safe_join(location) or ""
    walk = _Walk(headers.get("content-language") or None, base)
    try:
        walk.run(root)
    except _Fallback:
        return None
    if walk.version not in _VERSIONS:
        return None
    return FeedParserDict(
        bozo=False,
        entries=walk.entries,
        feed=walk.feed,
        version=walk.version,
        encoding=result["encoding"],
    )


@functools.lru_cache(maxsize=256)
def _safe_join(base: str, relative: str | None = None) -> str:
    """feedparser's ``make_safe_absolute_uri``, remembered: feedparser calls it for every
    element once a base URI is set, mostly with the same two values."""
    return str(make_safe_absolute_uri(base, relative))


def _map_content_type(content_type: str) -> str:
    """feedparser's ``map_content_type``."""
    content_type = content_type.lower()
    if content_type in ("text", "plain"):
        return "text/plain"
    if content_type == "html":
        return "text/html"
    if content_type == "xhtml":
        return "application/xhtml+xml"
    return content_type


def _repair(output: str) -> str:
    """feedparser's last steps for every text: UTF-8 read as Latin-1 is read again, and
    C1 controls become the windows-1252 characters they stand for.  ASCII text, which both
    leave as it is, skips them; so does text without C1 controls the (slow, per-character)
    translation."""
    if output.isascii():
        return output
    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
        output = output.encode("iso-8859-1").decode("utf-8")
    return output.translate(_cp1252) if _C1.search(output) else output


Handler = Callable[["_Walk", etree._Element, dict[str, str]], None]


class _Walk:
    """feedparser's parser state, for the elements ported here; one per body."""

    def __init__(self, baselang: str | None, baseuri: str = "") -> None:
        self.feed: dict[str, Any] = {}
        self.entries: list[dict[str, Any]] = []
        self.version = ""
        self.lang = baselang
        if baselang:
            self.feed["language"] = baselang.replace("_", "-")
        self.langstack: list[str | None] = []
        self.baseuri = baseuri
        self.basestack: list[str] = []
        self.tags: dict[str, str] = {}  # tag -> feedparser's name, while namespaces stay
        self.namespaces_in_use: dict[str, str] = {}
        self.namespacemap: dict[str | None, str] = {}
        self.depth = 0
        self.title_depth = -1
        self.infeed = self.inentry = self.inimage = self.intextinput = self.insource = False
        self.incontent = 0
        self.has_content = False
        self.summary_key: str | None = None
        self.guidislink = False
        self.contentparams: dict[str, Any] = {}
        self.sourcedata: dict[str, Any] = {}
        self.depth_map: dict[str, int] = {}
        self.ends: list[Callable[[etree._Element], None]] = []

    # -- the SAX side: element names, attributes, namespaces -------------------------------

    def run(self, root: etree._Element) -> None:
        for event, node in etree.iterwalk(root, events=("start-ns", "start", "end")):
            if event == "start-ns":
                prefix, uri = node
                self._track_namespace(prefix or None, uri)
            elif event == "start":
                self._start(node)
            else:
                self.ends.pop()(node)
                if self.basestack:
                    self.basestack.pop()
                    if self.basestack and self.basestack[-1]:
                        self.baseuri = self.basestack[-1]
                if self.langstack:
                    self.langstack.pop()
                    if self.langstack:
                        self.lang = self.langstack[-1]
                self.depth -= 1

    def _track_namespace(self, prefix: str | None, uri: str) -> None:
        """feedparser's ``startPrefixMapping`` and ``track_namespace``."""
        if not uri:
            return
        self.tags.clear()
        lower = uri.lower()
        if not self.version:
            if (prefix, lower) == (None, "http://my.netscape.com/rdf/simple/0.9/"):
                self.version = "rss090"
            elif lower == "http://purl.org/rss/1.0/":
                self.version = "rss10"
            elif lower == "http://www.w3.org/2005/atom":
                self.version = "atom10"
        if "backend.userland.com/rss" in lower:
            uri = lower = _USERLAND
        if lower in _CANONICAL:
            self.namespacemap[prefix] = _CANONICAL[lower]
            self.namespaces_in_use[_CANONICAL[lower]] = uri
        else:
            self.namespaces_in_use[prefix or ""] = uri

    def _tag(self, node: etree._Element) -> str:
        """The tag as feedparser's ``startElementNS`` names it ("dc:title", "item")."""
        tag = node.tag
        if not isinstance(tag, str):
            raise _Fallback
        known = self.tags.get(tag)
        if known is None:
            known = self.tags[tag] = self._name(tag)
        return known

    def _name(self, tag: str) -> str:
        if tag[0] == "{":
            namespace, local = tag[1:].split("}", 1)
        else:
            namespace, local = "", tag
        lower = namespace.lower()
        if "backend.userland.com/rss" in lower:
            namespace = lower = _USERLAND
        prefix = _CANONICAL.get(lower)
        local = local.lower()
        if prefix:
            return prefix.lower() + ":" + local
        if namespace:  # expat reports no qualified names: the first prefix declared for it
            for name, value in self.namespaces_in_use.items():
                if name and value == namespace:
                    return (name + ":" + local).lower()
        return local

    @staticmethod
    def _attributes(node: etree._Element) -> dict[str, str]:
        """The attributes as feedparser's ``startElementNS`` and ``_normalize_attributes``
        give them: known namespaces' ones also as "prefix:name", every one by its local name."""
        attrs: dict[str, str] = {}
        if not len(node.attrib):
            return attrs
        qnames: list[tuple[str, str]] = []
        for key, text in node.attrib.items():
            name, value = str(key), str(text)  # lxml gives str for str input; stubs allow bytes
            if name[0] == "{":
                namespace, local = name[1:].split("}", 1)
                prefix = _CANONICAL.get(namespace.lower(), "")
                attrs[(prefix + ":" + local if prefix else local).lower()] = value
            else:
                local = name
                attrs[local.lower()] = value
            qnames.append((local.lower(), value))
        for local, value in qnames:
            attrs[local] = value
        for key in ("rel", "type"):
            if key in attrs:
                attrs[key] = attrs[key].lower()
        return attrs

    def _start(self, node: etree._Element) -> None:
        """feedparser's ``unknown_starttag``: language, then the element's handler."""
        self.depth += 1
        tag = self._tag(node)
        attrs = self._attributes(node)
        base = attrs.get("xml:base", attrs.get("base")) or self.baseuri
        if self.baseuri:
            self.baseuri = _safe_join(self.baseuri, base) or self.baseuri
        elif base:  # feedparser joins "" and "" too, which gives ""
            self.baseuri = _urljoin(self.baseuri, base)
        lang = attrs.get("xml:lang", attrs.get("lang"))
        if lang == "":
            lang = None
        elif lang is None:
            lang = self.lang
        if lang and tag in ("feed", "rss", "rdf:RDF"):
            self.feed["language"] = lang.replace("_", "-")
        self.lang = lang
        self.basestack.append(self.baseuri)
        self.langstack.append(lang)
        prefix, suffix = tag.split(":", 1) if ":" in tag else ("", tag)
        mapped = self.namespacemap.get(prefix, prefix)
        key = f"{mapped}_{suffix}" if mapped else suffix
        if not mapped and tag not in _IN_TEXTINPUT:
            self.intextinput = False
        if not mapped and tag not in _IN_IMAGE:
            self.inimage = False
        handler = _HANDLERS.get(key)
        if handler is None:
            if key in _HANDLED_BY_FEEDPARSER or key in _RESERVED:
                raise _Fallback
            self._unknown(node, key, attrs)
        else:
            handler(self, node, attrs)

    # -- feedparser's element stack, for elements whose text is read ------------------------

    def _text(self, node: etree._Element) -> str:
        """An element's text; one holding elements is not ported (feedparser would read
        them as inline XHTML)."""
        if len(node):
            raise _Fallback
        return node.text or ""

    def _context(self) -> dict[str, Any]:
        if self.insource:
            return self.sourcedata
        if self.inimage and "image" in self.feed:
            image: dict[str, Any] = self.feed["image"]
            return image
        if self.intextinput:
            textinput: dict[str, Any] = self.feed["textinput"]
            return textinput
        if self.inentry:
            return self.entries[-1]
        return self.feed

    def _save(self, key: str, value: Any, *, overwrite: bool = False) -> None:
        context = self._context()
        if overwrite:
            context[key] = value
        else:
            context.setdefault(key, value)

    def _push_content(self, attrs: dict[str, str], default_type: str) -> None:
        """feedparser's ``push_content``: the text's declared type, language and base."""
        self.incontent += 1
        if self.lang:
            self.lang = self.lang.replace("_", "-")
        kind = _map_content_type(attrs.get("type", default_type))
        if "mode" in attrs or not kind.startswith("text/"):
            raise _Fallback  # base64, XML and other content: not ported
        self.contentparams = {"type": kind, "language": self.lang, "base": self.baseuri}

    def _pop(self, element: str, text: str, expecting_text: bool) -> str:
        """feedparser's ``pop`` for an element holding only text: the value as feedparser
        makes it, stored where feedparser stores it."""
        output = text.strip()
        if not expecting_text:
            return output
        if element in _CAN_BE_RELATIVE_URI and output and (element != "id" or self.guidislink):
            output = _urljoin(self.baseuri, output)
        guessing = not self.version.startswith("atom")  # RSS: markup or not is guessed
        plain = self.contentparams.get("type") == "text/plain"
        if guessing and plain and _FeedParserMixin.looks_like_html(output):
            self.contentparams["type"] = "text/html"
        output = _repair(output)
        if element == "category":
            return output
        if element == "title" and -1 < self.title_depth <= self.depth:
            return output
        if self.inentry and not self.insource:
            self._store_in_entry(element, output)
        elif self.infeed or self.insource:
            context = self._context()
            if element == "description":
                element = "subtitle"
            context[element] = output
            if element == "link":
                context[element] = _ENTITY_LIKE.sub(r"&\g<1>", output)
            elif self.incontent:
                context[element + "_detail"] = {**self.contentparams, "value": output}
        return output

    def _store_in_entry(self, element: str, output: str) -> None:
        entry = self.entries[-1]
        if element == "content":
            entry.setdefault("content", []).append({**self.contentparams, "value": output})
        elif element == "link":
            if not self.inimage:
                output = _ENTITY_LIKE.sub(r"&\g<1>", output.replace("&amp;", "&"))
                entry["link"] = output
        else:
            if element == "description":
                element = "summary"
            old = self.depth_map.get(element)
            if old is None or self.depth <= old:
                self.depth_map[element] = self.depth
                entry[element] = output
            if self.incontent:
                entry[element + "_detail"] = {**self.contentparams, "value": output}

    def _pop_content(self, element: str, text: str, expecting_text: bool) -> str:
        value = self._pop(element, text, expecting_text)
        self.incontent -= 1
        self.contentparams = {}
        return value

    def _expecting(self) -> bool:
        return self.infeed or self.inentry or self.insource

    def _ignore_end(self, node: etree._Element) -> None:
        pass

    def _unknown(self, node: etree._Element, key: str, attrs: dict[str, str]) -> None:
        """An element feedparser has no handler for: it keeps its text under its name.  Of
        those only ``ttl`` is read (the feed's); the rest change nothing ``parse`` reads."""
        if key == "ttl" and not attrs:
            self.ends.append(lambda node: self._end_text(node, "ttl", True))
            return
        if key == "ttl":
            raise _Fallback
        self.ends.append(self._ignore_end)

    def _end_text(self, node: etree._Element, element: str, expecting_text: bool) -> None:
        self._pop(element, self._text(node), expecting_text)


# -- the handlers, each after feedparser's of the same name ---------------------------------


def _start_rss(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    if not walk.version or not walk.version.startswith("rss"):
        version = attrs.get("version", "")
        mapped = {"0.91": "rss091u", "0.92": "rss092", "0.93": "rss093", "0.94": "rss094"}
        if version in mapped:
            walk.version = mapped[version]
        elif version.startswith("2."):
            walk.version = "rss20"
        else:
            walk.version = "rss"
    walk.ends.append(walk._ignore_end)


def _refuse_cdf(attrs: dict[str, str]) -> None:
    if "lastmod" in attrs or "href" in attrs:
        raise _Fallback  # feedparser's CDF attributes: not ported


def _start_channel(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    walk.infeed = True
    _refuse_cdf(attrs)

    def end(node: etree._Element) -> None:
        walk.infeed = False

    walk.ends.append(end)


def _start_feed(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    walk.infeed = True
    if not walk.version:
        walk.version = {"0.1": "atom01", "0.2": "atom02", "0.3": "atom03"}.get(
            attrs.get("version", ""), "atom"
        )

    def end(node: etree._Element) -> None:
        walk.infeed = False

    walk.ends.append(end)


def _start_item(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    if walk.inentry:
        raise _Fallback
    walk.entries.append({})
    walk.depth_map = {}
    walk.inentry = True
    walk.guidislink = False
    walk.title_depth = -1
    # feedparser's ``_get_attribute(attrs, "rdf:about")``: the prefix as the feed maps it
    about = attrs.get(walk.namespacemap.get("rdf", "rdf") + ":about")
    if about:
        walk._context()["id"] = about
    _refuse_cdf(attrs)

    def end(node: etree._Element) -> None:
        walk.inentry = False
        walk.has_content = False

    walk.ends.append(end)


def _start_image(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    if walk.inimage or walk.intextinput or walk.insource or (walk.inentry and len(node)):
        raise _Fallback
    if not walk.inentry:
        walk._context().setdefault("image", {})
    walk.inimage = True
    walk.title_depth = -1

    def end(node: etree._Element) -> None:
        walk.inimage = False

    walk.ends.append(end)


def _start_textinput(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    if walk.inentry or walk.inimage or walk.intextinput or walk.insource:
        raise _Fallback
    walk._context().setdefault("textinput", {})
    walk.intextinput = True
    walk.title_depth = -1

    def end(node: etree._Element) -> None:
        walk.intextinput = False

    walk.ends.append(end)


def _start_source(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    """RSS 2.0's ``<source url="...">name</source>``; Atom's, holding a feed's elements, is
    not ported."""
    if len(node) or walk.insource:
        raise _Fallback
    walk.insource = True
    walk.title_depth = -1

    def end(node: etree._Element) -> None:
        walk.insource = False
        walk._context()["source"] = {}

    walk.ends.append(end)


def _start_title(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    walk._push_content(attrs, "text/plain")
    expecting = walk._expecting()

    def end(node: etree._Element) -> None:
        value = walk._pop_content("title", walk._text(node), expecting)
        if value:
            walk.title_depth = walk.depth

    walk.ends.append(end)


def _start_media_title(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    walk._push_content(attrs, "text/plain")
    expecting = walk._expecting()

    def end(node: etree._Element) -> None:
        walk._pop_content("title", walk._text(node), expecting)

    walk.ends.append(end)


def _start_content(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    walk.has_content = True
    walk._push_content(attrs, "text/plain")
    walk.ends.append(_end_content(walk))


def _start_content_encoded(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    walk.has_content = True
    walk._push_content(attrs, "text/html")
    walk.ends.append(_end_content(walk))


def _end_content(walk: _Walk) -> Callable[[etree._Element], None]:
    def end(node: etree._Element) -> None:
        kind = _map_content_type(str(walk.contentparams.get("type")))
        copy_to_summary = kind == "text/plain" or kind in _HTML_TYPES
        value = walk._pop_content("content", walk._text(node), expecting_text=True)
        if copy_to_summary:
            walk._save("summary", value)

    return end


def _start_description(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    if "summary" in walk._context() and not walk.has_content:
        walk.summary_key = "content"
        _start_content(walk, node, attrs)
        walk.ends[-1] = _end_summary_key(walk, walk.ends[-1])
        return
    walk._push_content(attrs, "text/html")
    expecting = walk._expecting()

    def end(node: etree._Element) -> None:
        walk._pop_content("description", walk._text(node), expecting)
        walk.summary_key = None

    walk.ends.append(end)


def _end_summary_key(
    walk: _Walk, end: Callable[[etree._Element], None]
) -> Callable[[etree._Element], None]:
    def ending(node: etree._Element) -> None:
        end(node)
        walk.summary_key = None

    return ending


def _start_summary(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    if "summary" in walk._context() and not walk.has_content:
        walk.summary_key = "content"
        _start_content(walk, node, attrs)
        walk.ends[-1] = _end_summary_key(walk, walk.ends[-1])
        return
    walk.summary_key = "summary"
    walk._push_content(attrs, "text/plain")

    def end(node: etree._Element) -> None:
        walk._pop_content(walk.summary_key or "summary", walk._text(node), expecting_text=True)
        walk.summary_key = None

    walk.ends.append(end)


def _start_link(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    if len(node) or "url" in attrs or "uri" in attrs:
        raise _Fallback
    if walk.inentry and walk.inimage:
        raise _Fallback
    rel = attrs.setdefault("rel", "alternate")
    attrs.setdefault("type", "application/atom+xml" if rel == "self" else "text/html")
    context = walk._context()
    if "href" in attrs:
        if rel == "alternate" and _map_content_type(attrs["type"]) in _HTML_TYPES:
            context["link"] = _urljoin(walk.baseuri, attrs["href"])
        walk.ends.append(walk._ignore_end)
        return
    expecting = walk._expecting()
    walk.ends.append(lambda node: walk._end_text(node, "link", expecting))


def _start_guid(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    walk.guidislink = attrs.get("ispermalink", "true") == "true"

    def end(node: etree._Element) -> None:
        value = walk._pop("id", walk._text(node), expecting_text=True)
        walk._save("guidislink", walk.guidislink and "link" not in walk._context())
        if walk.guidislink:
            walk._save("link", value)

    walk.ends.append(end)


def _start_language(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    walk.ends.append(lambda node: walk._end_text(node, "language", True))


def _date_start(element: str) -> Handler:
    def start(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
        def end(node: etree._Element) -> None:
            value = walk._pop(element, walk._text(node), expecting_text=True)
            context = walk._context()
            if context is walk.feed:
                return  # the feed's own dates are not read; feedparser's parse is the cost
            context[element + "_parsed"] = _parse_date(value)

        walk.ends.append(end)

    return start


def _start_category(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    scheme = attrs.get("scheme", attrs.get("domain"))
    _add_tag(walk, attrs.get("term"), scheme, attrs.get("label"))

    def end(node: etree._Element) -> None:
        _end_category(walk, walk._text(node))

    walk.ends.append(end)


def _end_category(walk: _Walk, text: str) -> None:
    """A category's text: the term of the tag its start made when that has none (RSS
    ``<category>term</category>``), else a tag of its own, as feedparser does."""
    value = walk._pop("category", text, expecting_text=True)
    if not value:
        return
    tags = walk._context()["tags"]
    if tags and not tags[-1]["term"]:
        tags[-1]["term"] = value
    else:
        _add_tag(walk, value, None, None)


def _start_itunes_category(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    """iTunes categories, nested one in another: tags, each from its ``text``."""
    _add_tag(walk, attrs.get("text"), "http://www.itunes.com/", None)

    def end(node: etree._Element) -> None:
        text = node.text or ""
        if len(node):  # feedparser reads the text around the inner categories: none, here
            if any((part or "").strip() for part in [text, *(child.tail for child in node)]):
                raise _Fallback
            text = ""
        _end_category(walk, text)

    walk.ends.append(end)


def _start_media_category(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    attrs.setdefault("scheme", "http://search.yahoo.com/mrss/category_schema")
    _start_category(walk, node, attrs)


def _add_tag(walk: _Walk, term: str | None, scheme: str | None, label: str | None) -> None:
    tags = walk._context().setdefault("tags", [])
    if not term and not scheme and not label:
        return
    value = {"term": term, "scheme": scheme, "label": label}
    if value not in tags:
        tags.append(value)


def _start_inert_content(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    """Subtitle, rights, info: typed text that ``parse`` does not read; only its type is
    checked, since a base64 or XML one would change how feedparser reads what follows."""
    if len(node):
        raise _Fallback
    walk._push_content(attrs, "text/plain")

    def end(node: etree._Element) -> None:
        walk.incontent -= 1
        walk.contentparams = {}

    walk.ends.append(end)


def _start_author(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    """Authors, contributors, publishers: read by feedparser into keys that ``parse`` does
    not read; their parts (name, email, uri) are elements of their own, handled as such."""
    walk.ends.append(walk._ignore_end)


def _start_leaf(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    """An element feedparser keeps in keys ``parse`` does not read, holding no element."""
    if len(node):
        raise _Fallback
    walk.ends.append(walk._ignore_end)


def _start_media_container(walk: _Walk, node: etree._Element, attrs: dict[str, str]) -> None:
    """``media:group`` and ``media:content``: they only hold other elements, each read by
    its own handler."""
    walk.ends.append(walk._ignore_end)


_HANDLERS: dict[str, Handler] = {
    "rss": _start_rss,
    "channel": _start_channel,
    "feed": _start_feed,
    "item": _start_item,
    "entry": _start_item,
    "image": _start_image,
    "textinput": _start_textinput,
    "source": _start_source,
    "title": _start_title,
    "dc_title": _start_title,
    "media_title": _start_media_title,
    "content": _start_content,
    "content_encoded": _start_content_encoded,
    "description": _start_description,
    "dc_description": _start_description,
    "media_description": _start_description,
    "summary": _start_summary,
    "itunes_summary": _start_summary,
    "link": _start_link,
    "guid": _start_guid,
    "id": _start_guid,
    "language": _start_language,
    "dc_language": _start_language,
    "pubdate": _date_start("published"),
    "published": _date_start("published"),
    "issued": _date_start("published"),
    "dcterms_issued": _date_start("published"),
    "updated": _date_start("updated"),
    "modified": _date_start("updated"),
    "lastbuilddate": _date_start("updated"),
    "dc_date": _date_start("updated"),
    "dcterms_modified": _date_start("updated"),
    "category": _start_category,
    "keywords": _start_category,
    "dc_subject": _start_category,
    "media_category": _start_media_category,
    "itunes_category": _start_itunes_category,
    "subtitle": _start_inert_content,
    "tagline": _start_inert_content,
    "itunes_subtitle": _start_inert_content,
    "rights": _start_inert_content,
    "copyright": _start_inert_content,
    "dc_rights": _start_inert_content,
    "info": _start_inert_content,
    "author": _start_author,
    "managingeditor": _start_author,
    "dc_author": _start_author,
    "dc_creator": _start_author,
    "itunes_author": _start_author,
    "contributor": _start_author,
    "dc_contributor": _start_author,
    "webmaster": _start_author,
    "dc_publisher": _start_author,
    "itunes_owner": _start_author,
    "generator": _start_leaf,
    "enclosure": _start_leaf,
    "cloud": _start_leaf,
    "width": _start_leaf,
    "height": _start_leaf,
    "url": _start_leaf,
    "uri": _start_leaf,
    "homepage": _start_leaf,
    "name": _start_leaf,
    "email": _start_leaf,
    "created": _start_leaf,
    "dcterms_created": _start_leaf,
    "expirationdate": _start_leaf,
    "itunes_image": _start_leaf,
    "itunes_explicit": _start_leaf,
    "itunes_block": _start_leaf,
    "itunes_name": _start_leaf,
    "itunes_email": _start_leaf,
    "georss_point": _start_leaf,
    "georss_line": _start_leaf,
    "georss_polygon": _start_leaf,
    "georss_box": _start_leaf,
    "media_thumbnail": _start_leaf,
    "media_credit": _start_leaf,
    "media_rating": _start_leaf,
    "media_restriction": _start_leaf,
    "media_license": _start_leaf,
    "media_player": _start_leaf,
    "media_group": _start_media_container,
    "media_content": _start_media_container,
}

#: Every element name feedparser has a handler for; one not in ``_HANDLERS`` is refused.
_HANDLED_BY_FEEDPARSER = frozenset(
    name.split("_", 2)[2]  # "_start_dc_title" -> "dc_title"
    for name in dir(StrictFeedParser)
    if name.startswith(("_start_", "_end_"))
)
