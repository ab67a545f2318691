"""HTML to readable text, for feed titles and summaries.

BeautifulSoup (with the standard library's parser) is the reference: it copes with whatever a
publisher sends.  It is also, at about 0.4 ms a summary, most of the cost of cleaning an item,
and most summaries are plain paragraphs, links and emphasis.  So markup made only of such
well-formed tags takes a fast path (one regular-expression pass with a stack, as the tree
builder would do it), and anything else (comments, scripts, unknown tags, a stray ``<``)
goes to BeautifulSoup.  A property test holds the fast path equal to BeautifulSoup's result on
every input it accepts.
"""

from __future__ import annotations

import html
import re
from html.entities import name2codepoint

from bs4 import BeautifulSoup
from bs4.element import NavigableString, Tag

BLOCK_TAGS = frozenset(
    {
        "p",
        "div",
        "br",
        "li",
        "ul",
        "ol",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "pre",
        "table",
        "tr",
        "section",
        "article",
        "header",
        "footer",
        "figure",
        "figcaption",
        "hr",
    }
)
"""Tags that break the text: their content becomes its own paragraph (``br``: a new line)."""

DROP_TAGS = ("script", "style", "noscript", "template", "iframe", "object", "svg")
"""Tags whose content is never text a reader sees."""

SIMPLE_TAGS = BLOCK_TAGS | {
    "a",
    "abbr",
    "b",
    "big",
    "caption",
    "center",
    "cite",
    "code",
    "dd",
    "dl",
    "dt",
    "em",
    "font",
    "i",
    "img",
    "mark",
    "q",
    "s",
    "small",
    "span",
    "strike",
    "strong",
    "sub",
    "sup",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "time",
    "u",
}
"""Tags the fast path handles: text-level and layout tags whose content is plain text."""

VOID_TAGS = frozenset({"br", "hr", "img"})
"""Tags that never have content or an end tag."""

# One tag, strictly: a known-shape name, attributes with quoted or plain values, optional "/".
# Anything else starting with "<" (comments, doctypes, "a < b") makes the markup non-simple.
_TAG = re.compile(
    r"<(/?)([a-zA-Z][a-zA-Z0-9]*)"
    r"((?:\s+[a-zA-Z_:][-a-zA-Z0-9_:.]*(?:\s*=\s*(?:\"[^\"<>]*\"|'[^'<>]*'|[^\s\"'=<>`]+))?)*)"
    r"\s*(/?)>"
)
# A character reference spelt in full; any other "&" leaves the markup to BeautifulSoup, whose
# reading of "&copy" or "&unknown;" follows rules of its own.
_REF = re.compile(r"&(?:#([0-9]{1,7});|#[xX]([0-9a-fA-F]{1,6});|([a-zA-Z][a-zA-Z0-9]*);)")


class _NotSimple(Exception):
    """Markup the fast path does not handle."""


def html_to_text(markup: str) -> str:
    """HTML to readable text, keeping paragraph breaks and dropping scripts and styles."""
    if "<" not in markup and "&" not in markup:
        return markup
    fast = simple_html_to_text(markup)
    return fast if fast is not None else soup_to_text(markup)


def simple_html_to_text(markup: str) -> str | None:
    """``soup_to_text`` for markup made only of ``SIMPLE_TAGS`` in plain syntax; None for
    anything else, which the caller gives to BeautifulSoup.

    Mirrors the tree builder: an end tag closes the innermost open tag of its name and every
    tag opened inside it, an end tag with no open tag of its name is ignored, tags still open
    at the end are closed there.
    """
    pieces: list[str] = []
    open_tags: list[str] = []
    position = 0
    try:
        for tag in _TAG.finditer(markup):
            pieces.append(_text(markup[position : tag.start()], open_tags))
            position = tag.end()
            closing, name, self_closing = tag.group(1), tag.group(2).lower(), tag.group(4)
            if name not in SIMPLE_TAGS or (closing and (self_closing or name in VOID_TAGS)):
                return None
            if closing:
                _close(name, open_tags, pieces)
            else:
                _open(name, bool(self_closing), open_tags, pieces)
        pieces.append(_text(markup[position:], open_tags))
    except _NotSimple:
        return None
    while open_tags:
        _close(open_tags[-1], open_tags, pieces)
    return "".join(pieces)


def _text(raw: str, open_tags: list[str]) -> str:
    """A text run between tags as the tree builder keeps it: character references resolved,
    and a run of only ASCII whitespace (outside ``pre``) squeezed to one space or newline."""
    if "<" in raw:
        raise _NotSimple
    text = raw
    if "&" in raw:
        if raw.count("&") != len(_REF.findall(raw)):
            raise _NotSimple
        text = _REF.sub(_character, raw)
    if text and not text.strip(_ASCII_SPACES) and "pre" not in open_tags:
        return "\n" if "\n" in text else " "
    return text


_ASCII_SPACES = " \n\t\f\r"


def _character(ref: re.Match[str]) -> str:
    decimal, hexadecimal, name = ref.groups()
    if name is not None:
        if name not in name2codepoint:
            raise _NotSimple
        return chr(name2codepoint[name])
    code = int(decimal) if decimal is not None else int(hexadecimal, 16)
    if code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
        raise _NotSimple  # control, windows-1252 remapping, surrogate: left to BeautifulSoup
    return chr(code)


def _open(name: str, self_closing: bool, open_tags: list[str], pieces: list[str]) -> None:
    if name == "br":
        pieces.append("\n")
    elif name in BLOCK_TAGS:
        pieces.append("\n\n")
    if name in VOID_TAGS:
        if name == "hr":
            pieces.append("\n\n")
        return
    open_tags.append(name)
    if self_closing:
        _close(name, open_tags, pieces)


def _close(name: str, open_tags: list[str], pieces: list[str]) -> None:
    if name not in open_tags:
        return
    while open_tags:
        closed = open_tags.pop()
        if closed in BLOCK_TAGS:
            pieces.append("\n\n")
        if closed == name:
            return


def image_alts(markup: str) -> tuple[str, ...]:
    """The alt texts of the images in ``markup``, in order, each once, entities resolved.

    Publishers often say in an image's alt text what the caption or the headline does not
    ("Workers at the Boguty tungsten deposit"); the text conversion drops images, so their
    alt texts are read here, for the rules' ``alt`` field.  A regular expression, not a
    parser: most summaries have no ``<img`` at all, and an attribute value is plain text with
    character references, which ``html.unescape`` resolves as BeautifulSoup's parser does (a
    property test holds the two equal).  Anything else (an ``<img`` the expression cannot
    read, comments, scripts, whose images no reader sees) goes to BeautifulSoup.
    """
    if _IMAGE_START.search(markup) is None:
        return ()
    images = list(_IMAGE.finditer(markup))
    if (
        len(images) != len(_IMAGE_START.findall(markup))
        or "<!--" in markup
        or _HIDDEN.search(markup)
        or _IMAGE_IN_VALUE.search(markup)
        or _BROKEN_NUMERIC_REFERENCE.search(markup)
        or any(_inside_a_tag(markup, image.start()) for image in images)
    ):
        return _soup_alts(markup)  # an image tag the expression cannot read, or hidden ones
    found: dict[str, None] = {}
    for image in images:
        alt = None
        for name, value in _ATTRIBUTE.findall(image.group(1)):
            if name.lower() == "alt":
                alt = value  # the last one wins, as in BeautifulSoup
        text = " ".join(html.unescape(_unquote(alt)).split()) if alt else ""
        if text:
            found[text] = None
    return tuple(found)


def _inside_a_tag(markup: str, start: int) -> bool:
    """Whether a "<" before ``start`` is still open: "<a<img ...>" is one tag, not an image."""
    return markup.rfind("<", 0, start) > markup.rfind(">", 0, start)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] in "\"'" and value[-1] == value[0]:
        return value[1:-1]
    return value


def _soup_alts(markup: str) -> tuple[str, ...]:
    """``image_alts`` by BeautifulSoup's tree, for markup with comments or scripts."""
    soup = BeautifulSoup(markup, "html.parser")
    for tag in soup.find_all(DROP_TAGS):
        tag.decompose()
    found: dict[str, None] = {}
    for image in soup.find_all("img"):
        text = " ".join(str(image.get("alt") or "").split())
        if text:
            found[text] = None
    return tuple(found)


_TRAILING_REFERENCE = re.compile(r"&#?[0-9A-Za-z]+\Z")

# An <img> start tag and its attributes, as the tree builder reads them: names, then values in
# double or single quotes or unquoted.
_IMAGE_START = re.compile(r"<img", re.IGNORECASE)
# "&#" with no number after it: the standard library's parser then reads the rest as text.
_BROKEN_NUMERIC_REFERENCE = re.compile(r"&#(?![0-9]|[xX][0-9a-fA-F])")
_IMAGE_IN_VALUE = re.compile(r"""=\s*(?:"[^"]*<img|'[^']*<img)""", re.IGNORECASE)
_HIDDEN = re.compile("|".join(f"<{name}" for name in DROP_TAGS), re.IGNORECASE)
_IMAGE = re.compile(
    r"<img((?:\s+[^\s\"'>/=]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s\"'=<>`]+))?)*)\s*/?>",
    re.IGNORECASE,
)
_ATTRIBUTE = re.compile(r"([^\s\"'>/=]+)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s\"'=<>`]+))?")


def soup_to_text(markup: str) -> str:
    """The reference conversion, for any markup at all: BeautifulSoup's tree, walked.

    Markup ending in a reference without its ";" gets a space to end on, then loses it:
    at the very end, and only there, the standard library's parser drops the "&" of a word
    that is no entity ("AT&T" became "ATT", "P&G" "PG") and leaves one that is unread
    ("&copy").  Mid-text it keeps the first and reads the second, as browsers do.
    """
    if _TRAILING_REFERENCE.search(markup):
        text = soup_to_text(markup + " ")
        return text[:-1] if text.endswith(" ") else text
    soup = BeautifulSoup(markup, "html.parser")
    lowered = markup.lower()
    if any(f"<{name}" in lowered for name in DROP_TAGS):  # a tree search costs more than this
        for tag in soup.find_all(DROP_TAGS):
            tag.decompose()
    pieces: list[str] = []
    _collect_text(soup, pieces)
    return "".join(pieces)


def _collect_text(node: Tag, pieces: list[str]) -> None:
    for child in node.children:
        if isinstance(child, NavigableString):
            if type(child) is NavigableString:  # skips comments, CDATA markers, doctypes
                pieces.append(str(child))
        elif isinstance(child, Tag):
            block = child.name in BLOCK_TAGS
            if block:
                pieces.append("\n" if child.name == "br" else "\n\n")
            _collect_text(child, pieces)
            if block and child.name != "br":
                pieces.append("\n\n")
