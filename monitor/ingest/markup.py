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


def soup_to_text(markup: str) -> str:
    """The reference conversion, for any markup at all: BeautifulSoup's tree, walked."""
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
