"""One-line text every medium shares: cleaning, clipping, times, links and provenance lines.

Everything in ``render`` is pure: no I/O and no clock.  Feed text is untrusted, so every line
is stripped of control characters here before a medium escapes it, and links are only made
from http(s) URLs.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import quote as percent_quote
from urllib.parse import urlsplit

from monitor.model import Match, SourceNote

ELLIPSIS = "…"

TITLE_CHARS = 300
"""Longest headline shown; feeds occasionally put a whole article in the title."""

# C0/C1 controls (CR and LF included), line/paragraph separators and bidi overrides: none of
# them belongs in a one-line field, and each can forge headers or disguise text.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"\s+")


def collapse_spaces(text: str) -> str:
    """Controls become spaces and every run of spaces one space; the ends are kept.

    A quote's runs are cleaned one by one and joined, so their edges must survive.
    """
    return _SPACES.sub(" ", _CONTROL.sub(" ", text))


def clean_line(text: str) -> str:
    """Make untrusted text safe for a one-line field: no controls, single spaces, trimmed."""
    return collapse_spaces(text).strip()


def clip(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters, ending in "…" when it was cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)].rstrip() + ELLIPSIS


def clip_bytes(text: str, limit: int) -> str:
    """Cut ``text`` so its UTF-8 form is at most ``limit`` bytes, ending in "…" when cut."""
    if len(text.encode()) <= limit:
        return text
    room = limit - len(ELLIPSIS.encode())
    kept = text.encode()[: max(room, 0)].decode("utf-8", "ignore")
    return kept.rstrip() + ELLIPSIS


def format_time(moment: datetime) -> str:
    """Render a timestamp the same way in every channel: UTC, minutes, labelled."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


PROVENANCE_SHOWN = 20
"""Most sources an alert lists; the rest are counted."""


def source_label(note: SourceNote) -> str:
    """One source of a story as alerts show it: ``xinhua (state_media, cn, zh)``."""
    details = ", ".join(part for part in (note.kind, note.country, note.lang or "?") if part)
    return clean_line(f"{note.source} ({details})")


def provenance_text(match: Match) -> str:
    """The story's sources in one line, first seen first, cut visibly after 20."""
    notes = match.provenance
    shown = [source_label(note) for note in notes[:PROVENANCE_SHOWN]]
    more = f" (+{len(notes) - PROVENANCE_SHOWN} more)" if len(notes) > PROVENANCE_SHOWN else ""
    return "; ".join(shown) + more


def new_sources_text(match: Match) -> str:
    """The sources new since the rule's previous message about the story (follow-ups)."""
    return "; ".join(source_label(note) for note in match.provenance if note.new)


def story_text(match: Match) -> str:
    """Which story a message is about: its first headline."""
    return clip(clean_line(match.story_title), TITLE_CHARS)


def also_text(match: Match) -> str:
    """The other rules sharing this article's message, most severe first: "US bids in
    Central Asia (MEDIUM); Tungsten (LOW, follow-up: new language)"."""
    return "; ".join(clean_line(note.label) for note in match.also)


def rule_ids_text(match: Match) -> str:
    """Every rule a message tells, its head first: what to grep the rule files for."""
    return ", ".join(clean_line(i) for i in (match.rule_id, *(n.rule_id for n in match.also)))


def safe_link(url: str) -> str | None:
    """Return ``url`` if it is an absolute http(s) URL, percent-encoding unsafe characters.

    Anything else (javascript:, mailto:, relative, malformed) is not linked: a feed must not be
    able to make an alert link somewhere other than a web page.  Characters that would end a
    Slack link or an HTML attribute (``<>|"`` and spaces) are percent-encoded.
    """
    candidate = _CONTROL.sub("", url).strip()
    try:
        parts = urlsplit(candidate)
        hostname = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not hostname:
        return None
    netloc = _ascii_netloc(parts.netloc)
    if netloc is None:
        return None
    rest = parts.path + (f"?{parts.query}" if parts.query else "")
    rest += f"#{parts.fragment}" if parts.fragment else ""
    encoded = percent_quote(rest, safe="/?#[]@!$&'()*+,;=:%~-._")
    return f"{parts.scheme.lower()}://{netloc}{encoded}"


def _ascii_netloc(netloc: str) -> str | None:
    """The host part in ASCII (IDNA for international names), or None if it cannot be."""
    if not netloc.isascii():
        try:
            netloc = netloc.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if any(char in netloc for char in "<>|\"' \\`{}^"):
        return None
    return netloc
