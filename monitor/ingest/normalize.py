"""Raw feed entries -> clean ``Item``s: plain text, canonical links, UTC times.

Pure: the current time is an argument, so tests can freeze it and a far-future date can be
clamped deterministically.
"""

from __future__ import annotations

import re
import string
from datetime import datetime, timedelta
from urllib.parse import quote, unquote_plus, urljoin, urlsplit, urlunsplit

from monitor.ingest.dedup import item_identity
from monitor.ingest.markup import html_to_text, image_alts
from monitor.ingest.parse import RawEntry, TextType
from monitor.model import Item, Source

FUTURE_TOLERANCE = timedelta(days=1)
"""A publish date further ahead than this is a publisher's clock or timezone bug: use now."""

_TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "msclkid",
        "yclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "_hsenc",
        "_hsmi",
        "spm",
        "from",
        "ref_src",
        "cmpid",
    }
)
# Runs of whitespace other than a single space or a newline: only these need replacing, and
# matching each ordinary space separately would cost a regex match per word.
_SPACES = re.compile(r"[^\S\n]{2,}|[^\S \n]")
_INVISIBLE = re.compile("[\u00ad\u200b\u200c\u200d\u2060\ufeff]")
# Control and format characters that must not reach an alert: C0/C1 controls (but tab and
# newline), bidi overrides and isolates, other invisible formatting, private use, surrogates.
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u180e\u200e\u200f\u202a-\u202e"
    "\u2061-\u206f\ufff9-\ufffb\ue000-\uf8ff\ud800-\udfff]"
)


def normalize_entry(entry: RawEntry, source: Source, now: datetime) -> Item:
    """Build the ``Item`` the rest of the flow sees from one raw entry of ``source``.

    Text is decoded exactly once, as its declared type says (``as_text``): a rule for "AT&T"
    must find a title written ``AT&amp;T`` in an HTML title, and ``Vector<T>`` in a plain-text
    one must not lose ``<T>`` to an HTML parser.
    """
    title = clean_text(as_text(entry.title, entry.title_type))
    summary = clean_text(as_text(entry.summary_html, entry.summary_type))
    alt = ""
    if entry.summary_type == "html":
        alt = "\n".join(clean_text(text) for text in image_alts(entry.summary_html))
    link = canonical_url(entry.link, base=entry.base or source.url) if entry.link else ""
    published = clamp_published(entry.published, now)
    return Item(
        id=item_identity(source.name, entry.guid, link, title, summary),
        source=source.name,
        title=title.replace("\n", " "),
        summary=summary,
        link=link,
        published=published,
        lang=entry.lang or detect_script_language(f"{title} {summary}"),
        guid=entry.guid,
        tags=tuple(dict.fromkeys(tag for tag in map(clean_text, entry.tags) if tag)),
        source_tags=source.tags,
        alt=alt,
    )


def as_text(written: str, kind: TextType) -> str:
    """A title or summary as plain text: markup read once, plain text left as it is."""
    return html_to_text(written) if kind == "html" else written


def detect_script_language(text: str) -> str | None:
    """A language guess from the writing system, for items whose feed names none.

    Only what the script settles is guessed: Chinese from Han characters, Kazakh from the
    letters Kazakh adds to Cyrillic (ә, ғ, қ, ң, ө, ұ, ү, һ, і), Russian from other Cyrillic.
    Latin-script languages are left unknown rather than guessed wrong.
    """
    han, cyrillic, kazakh, latin = script_counts(text[:2000])
    if han and han * 2 >= cyrillic + latin // 4:
        return "zh"
    if cyrillic and cyrillic >= latin:
        return "kk" if kazakh * 50 >= cyrillic else "ru"
    return None


def script_counts(sample: str) -> tuple[int, int, int, int]:
    """How many Han (U+4E00-U+9FFF), Cyrillic (U+0400-U+04FF), Kazakh and ASCII Latin letters
    ``sample`` holds, counted by ``count`` and ``translate`` in C.  A loop over the characters
    in Python (300 µs for 2,000 characters) cost more than all the rest of normalizing an
    item, for the many feeds that name no language.  Han and Cyrillic are counted on the
    UTF-8 bytes, where each of their characters has a lead byte (or, for U+4E00-U+4FFF, a
    lead pair) that no other character's bytes contain."""
    data = sample.encode("utf-8", "ignore")
    latin = len(data) - len(data.translate(None, _ASCII_LETTERS))
    if data.isascii():
        return 0, 0, 0, latin
    han = sum(map(data.count, _HAN_LEADS))
    if b"\xe4" in data:
        han += sum(map(data.count, _HAN_E4_PAIRS))
    cyrillic = sum(map(data.count, _CYRILLIC_LEADS))
    kazakh = sum(map(sample.count, _KAZAKH_LETTERS)) if cyrillic else 0
    return han, cyrillic, kazakh, latin


_HAN_LEADS = tuple(bytes([lead]) for lead in range(0xE5, 0xEA))  # U+5000-U+9FFF
_HAN_E4_PAIRS = tuple(bytes([0xE4, second]) for second in range(0xB8, 0xC0))  # U+4E00-U+4FFF
_CYRILLIC_LEADS = (b"\xd0", b"\xd1", b"\xd2", b"\xd3")
_KAZAKH_LETTERS = tuple("әғқңөұүһіӘҒҚҢӨҰҮҺІ")
_ASCII_LETTERS = string.ascii_letters.encode()


def clamp_published(published: datetime | None, now: datetime) -> datetime:
    """A missing date becomes ``now`` (first seen); a far-future one is clamped to ``now``."""
    if published is None or published > now + FUTURE_TOLERANCE:
        return now
    return published


def clean_text(text: str) -> str:
    """Invisible characters removed, spaces collapsed, at most one blank line in a row.

    No Unicode normalisation: an alert shows the publisher's words as written (``商务部：``
    keeps its full-width colon, ``ｔｏｎｎｅｓ`` its width).  Matching, dedup and stories
    fold their own copy (NFKC, case, scripts), with offsets back into this text.
    """
    text = _INVISIBLE.sub("", text)
    text = _SPACES.sub(" ", _CONTROL.sub(" ", text))
    return _paragraphs(text) if "\n" in text else text.strip(" ")


def _paragraphs(text: str) -> str:
    """Lines trimmed, runs of blank lines turned into one; ``text`` holds no whitespace but
    single spaces and newlines."""
    pieces: list[str] = []
    blank = False
    for line in text.split("\n"):
        line = line.strip(" ")
        if not line:
            blank = True
            continue
        if pieces:
            pieces.append("\n\n" if blank else "\n")
        pieces.append(line)
        blank = False
    return "".join(pieces)


def canonical_url(url: str, base: str | None = None) -> str:
    """One spelling per article: absolute, lowercase host, no fragment, no tracking parameters.

    Only http(s) links survive; anything else (``javascript:``, ``data:``), and a link that
    cannot be read (a port out of range, a broken IPv6 address), becomes ``""``, so it can
    never reach an alert as a link, nor fail its feed's poll.  The query keeps every other
    parameter exactly as written (see ``clean_query``): the alert must open the same page.
    """
    url = url.strip()
    try:
        # Joining changes nothing that splitting below does not redo for a link that is
        # already absolute with a host, which most are; it costs a third of the function.
        # (Joining does drop an empty ";" parameter, so links with one still go through it.)
        if base and (";" in url or not _ABSOLUTE.match(url)):
            url = urljoin(base, url)
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        return ""
    host = parts.hostname.lower().rstrip(".")
    default_port = {"http": 80, "https": 443}[parts.scheme.lower()]
    netloc = host if port in (None, default_port) else f"{host}:{port}"
    query = clean_query(parts.query)
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", query, ""))


def clean_query(query: str) -> str:
    """``query`` without its tracking parameters, every other byte as the publisher wrote it.

    Decoding and re-encoding the query (``parse_qsl`` then ``urlencode``) turned ``?r123``
    into ``?r123=``, ``%2F`` into ``/`` and back into ``%2F`` only sometimes, and ``+`` into
    ``%2B``: links to pages that then did not open.  Only whitespace, which no link may hold,
    is percent-encoded.
    """
    if not query:
        return ""
    kept = [part for part in query.split("&") if not _tracking(unquote_plus(part.split("=")[0]))]
    joined = "&".join(kept)
    return (
        _WHITESPACE.sub(lambda found: quote(found.group()), joined)
        if _WHITESPACE.search(joined)
        else joined
    )


_WHITESPACE = re.compile(r"\s")


_ABSOLUTE = re.compile(r"https?://[^/?#]", re.IGNORECASE)


def _tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered.startswith("utm_") or lowered in _TRACKING_PARAMS
