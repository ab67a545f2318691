"""Email: an alert or a digest as a multipart/alternative message within the mail RFCs.

The Date header is passed in (``now``); Message-IDs are derived from the alert or digest key,
so a retry carries the same id.

Every line stays within RFC 5322's 78 characters (998 is the hard limit): the text headers and
address headers this module sets are folded here (``fold_text``, ``fold_addresses``), in
encoded-words of at most 75 characters (RFC 2047), and the two body parts are
quoted-printable or base64 (``body_transfer_encoding``) with lines of at most 76 (RFC 2045).
The one kind of line that can be longer is a single unbreakable token from the channel's
configuration, an address or a Message-ID's domain (folding may only happen at whitespace);
``_domain`` keeps the latter within DNS's 253 characters.
"""

from __future__ import annotations

import base64
import hashlib
import re
import string
from collections.abc import Sequence
from datetime import UTC, datetime
from email.headerregistry import AddressHeader, BaseHeader
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, parseaddr
from typing import TYPE_CHECKING, Any, Literal

from monitor.deliver.render.digest import Digest
from monitor.deliver.render.english import (
    UNAVAILABLE,
    english_quote,
    english_title,
    gloss_text,
    machine_note,
)
from monitor.deliver.render.quote import quote
from monitor.deliver.render.strings import (
    PROVENANCE_SHOWN,
    TITLE_CHARS,
    clean_line,
    clip,
    clip_bytes,
    format_time,
    new_sources_text,
    rule_ids_text,
    safe_link,
    source_label,
    story_text,
)
from monitor.deliver.templates import Templates, shipped
from monitor.model import Match

SUBJECT_CHARS = 200
HEADER_BYTES = 500
"""Most UTF-8 bytes of text in one header: about a dozen folded lines once encoded."""
LINE_CHARS = 78
"""RFC 5322 2.1.1: a line SHOULD have at most 78 characters (and MUST have at most 998)."""
ENCODED_WORD_CHARS = 75
"""RFC 2047 2: an encoded-word ("=?utf-8?b?...?=") is at most 75 characters long."""
BODY_LINE_CHARS = 76
"""RFC 2045 6.7 and 6.8: quoted-printable and base64 lines have at most 76 characters."""
TEXT_HEADERS = frozenset({"subject", "x-monitor-rule", "x-monitor-rule-version"})
"""Unstructured headers whose text can come from a feed or a rule: folded by ``fold_text``."""
ADDRESS_HEADERS = frozenset({"from", "to", "cc", "reply-to"})
"""Address headers, from the configuration: folded by ``fold_addresses``."""

_EW_OVERHEAD = len("=?utf-8?q??=")
_EW_MIN_CHARS = 30
"""Less room than this left on a line: an encoded-word starts the next one instead (one
character takes at most 24: the "Q" form of a 4-byte character)."""
# RFC 2047 5(3): in a phrase a "Q" encoded-word may hold only these as themselves; they are
# safe in unstructured text too, so one set serves both.
_Q_LITERAL = frozenset(string.ascii_letters + string.digits + "!*+-/")
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_QP_LITERAL = (frozenset(range(0x20, 0x7F)) - {ord("=")}) | {ord("\t"), ord("\n")}

Encoding = Literal["q", "b"]


def _q_char(char: str) -> str:
    if char in _Q_LITERAL:
        return char
    if char == " ":
        return "_"
    return "".join(f"={octet:02X}" for octet in char.encode())


def _b_chars(octets: int) -> int:
    return -(-octets // 3) * 4


def encoded_word(text: str, encoding: Encoding) -> str:
    """``text`` as one RFC 2047 encoded-word in UTF-8 (the caller keeps it within 75)."""
    if encoding == "q":
        payload = "".join(_q_char(char) for char in text)
    else:
        payload = base64.b64encode(text.encode()).decode("ascii")
    return f"=?utf-8?{encoding}?{payload}?="


def word_encoding(text: str) -> Encoding:
    """The "Q" or the "B" encoding, whichever spells ``text`` shorter.

    "Q" keeps ASCII letters and digits as they are, so a mostly-Latin title stays readable in
    the raw message; "B" is shorter for Cyrillic and CJK (4 characters per 3 bytes, where "Q"
    spends 3 per byte).
    """
    quoted = sum(len(_q_char(char)) for char in text)
    return "b" if _b_chars(len(text.encode())) < quoted else "q"


def _chars_that_fit(text: str, encoding: Encoding, room: int) -> int:
    """How many characters from the start of ``text`` one encoded-word of at most ``room``
    characters holds.  Whole characters only: RFC 2047 forbids splitting a character's bytes
    between encoded-words."""
    used, octets = _EW_OVERHEAD, 0
    for count, char in enumerate(text):
        if encoding == "q":
            used += len(_q_char(char))
        else:
            octets += len(char.encode())
            used = _EW_OVERHEAD + _b_chars(octets)
        if used > room:
            return count
    return len(text)


class _HeaderLines:
    """One header's value laid out in pieces, one space before each, on lines of at most
    ``LINE_CHARS``; the first line also holds "Name:".

    The spaces are where the header may be folded.  Two encoded-words are always separated by
    one, and a decoder drops it (RFC 2047 6.2); a space between an encoded-word and plain text
    is kept, so a space the text needs is either such a one or inside an encoded-word.
    """

    def __init__(self, name: str) -> None:
        self._lines: list[list[str]] = [[]]
        self._used = len(name) + 1

    def room(self) -> int:
        """The longest piece that fits on the current line after its space."""
        return LINE_CHARS - self._used - 1

    def add(self, piece: str) -> None:
        """Place ``piece`` on this line, or on a new one if it does not fit here.

        A line is never left empty: a piece too long for this line that holds nothing yet (an
        unbreakable address after "To:") stays on it and makes it longer than 78.
        """
        if len(piece) > self.room() and self._lines[-1]:
            self._newline()
        self._lines[-1].append(piece)
        self._used += 1 + len(piece)

    def add_encoded(self, text: str) -> None:
        """``text`` as encoded-words of at most 75 characters, split only where lines end."""
        encoding = word_encoding(text)
        while text:
            if self._lines[-1] and self._better_on_a_new_line(text, encoding):
                self._newline()
            room = min(ENCODED_WORD_CHARS, self.room())
            # At least one character: a new line has room for any; only a first line after
            # a header name of about 45 characters might not, and then it runs over 78.
            count = max(_chars_that_fit(text, encoding, room), 1)
            self.add(encoded_word(text[:count], encoding))
            text = text[count:]

    def _better_on_a_new_line(self, text: str, encoding: Encoding) -> bool:
        """True when the rest of this line is too short for a useful encoded-word, or when
        ``text`` would need two here but fits one on a new line.

        Keeping short texts whole matters for display names: Python 3.11's address parser
        shows the space between two encoded-words of a phrase, which RFC 2047 6.2 says to
        drop, so a name in one encoded-word reads the same everywhere.
        """
        room = min(ENCODED_WORD_CHARS, self.room())
        if room < _EW_MIN_CHARS:
            return True
        fits_here = _chars_that_fit(text, encoding, room) == len(text)
        return not fits_here and _chars_that_fit(text, encoding, ENCODED_WORD_CHARS) == len(text)

    def _newline(self) -> None:
        self._lines.append([])
        self._used = 0

    def value(self) -> str:
        """The folded value, as it follows "Name: " (lines joined by a newline and a space)."""
        return "\n ".join(" ".join(line) for line in self._lines)


def _plain_word(word: str, limit: int) -> bool:
    """A word a decoder shows as written: printable ASCII, no "=?" (which starts an
    encoded-word, so a title could otherwise spell a different subject) and short enough for
    the first line (only encoded text can be split across lines)."""
    return bool(_PRINTABLE_ASCII.fullmatch(word)) and "=?" not in word and len(word) <= limit


def fold_text(name: str, text: str) -> str:
    """An unstructured header value (RFC 5322 3.2.5) folded to lines of at most 78.

    Plain ASCII words stay as they are; each run of other words becomes encoded-words that
    carry the run's inner spaces.  Text with leading, trailing or doubled spaces is encoded
    whole, since only an encoded-word keeps such spaces.

    Why not the standard library: Python 3.11's folder drops the space between two words
    when it folds between encoded-words ("Казахстан и вольфрамовое" arrives as "Казахстан
    ивольфрамовое"; cpython gh-144156, fixed upstream in 2026, while 3.11 takes security
    fixes only), it writes encoded-words of 76 characters, and it decodes text that looks
    like an encoded-word instead of encoding it.
    """
    lines = _HeaderLines(name)
    words = text.split(" ")
    if not all(words):
        lines.add_encoded(text)
        return lines.value()
    limit = lines.room()
    run: list[str] = []
    for word in words:
        if not _plain_word(word, limit):
            run.append(word)
            continue
        if run:
            lines.add_encoded(" ".join(run))
            run = []
        lines.add(word)
    if run:
        lines.add_encoded(" ".join(run))
    return lines.value()


def _add_display_name(lines: _HeaderLines, display_name: str, limit: int) -> None:
    """A display name as atoms, else one quoted-string, else encoded-words (RFC 5322 3.2.5,
    RFC 2047 5(3)); a quoted-string may be folded at its spaces."""
    words = display_name.split(" ")
    if all(words) and all(_ATOM.fullmatch(w) and _plain_word(w, limit) for w in words):
        for word in words:
            lines.add(word)
        return
    quoted = '"' + display_name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    pieces = quoted.split(" ")
    if all(words) and all(_plain_word(piece, limit) for piece in pieces):
        for piece in pieces:
            lines.add(piece)
        return
    lines.add_encoded(display_name)


def fold_addresses(name: str, header: AddressHeader) -> str | None:
    """An address list folded to lines of at most 78, display names encoded as needed.

    ``None`` for what this does not write (groups, no address, an address with non-ASCII
    parts): the standard library folds those, and lists it could not parse.  Why not always
    the standard library: see ``fold_text``; in address lists Python 3.11 also writes empty
    encoded-words ("=?utf-8?q??=").
    """
    addresses = header.addresses
    plain = all(a.addr_spec.isascii() and a.addr_spec for a in addresses)
    grouped = any(group.display_name is not None for group in header.groups)
    if not addresses or not plain or grouped:
        return None
    lines = _HeaderLines(name)
    limit = lines.room()
    for index, address in enumerate(addresses):
        comma = "," if index < len(addresses) - 1 else ""
        if address.display_name:
            _add_display_name(lines, address.display_name, limit)
            lines.add(f"<{address.addr_spec}>{comma}")
        else:
            lines.add(f"{address.addr_spec}{comma}")
    return lines.value()


if TYPE_CHECKING:
    _EmailPolicy = EmailPolicy[EmailMessage]  # generic only in the type stubs
else:
    _EmailPolicy = EmailPolicy


class FoldingPolicy(_EmailPolicy):
    """``email.policy.default`` with 78-character lines that folds the text and address
    headers itself (``fold_text``, ``fold_addresses``); other headers fold as usual.

    A header set through the policy is stored already folded, as if parsed from a message:
    the generator writes such a value line by line when every line fits, and reading the
    header back (``message["Subject"]``) unfolds and decodes it.
    """

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        if isinstance(value, str) and len(value.splitlines()) <= 1:
            key = name.lower()
            if key in TEXT_HEADERS:
                return (name, fold_text(name, value))
            if key in ADDRESS_HEADERS:
                folded = self._fold_addresses(name, value)
                if folded is not None:
                    return (name, folded)
        return super().header_store_parse(name, value)

    def _fold_addresses(self, name: str, value: str) -> str | None:
        header = self.header_factory(name, value)
        if isinstance(header, AddressHeader) and isinstance(header, BaseHeader):
            return None if header.defects else fold_addresses(name, header)
        return None


EMAIL_POLICY = FoldingPolicy(max_line_length=LINE_CHARS)
"""Lines of at most 78 characters (RFC 5322); see ``FoldingPolicy`` for the headers."""
BODY_POLICY = EMAIL_POLICY.clone(max_line_length=BODY_LINE_CHARS)
"""What encodes the body parts: RFC 2045 allows 76 characters per encoded line."""


def body_transfer_encoding(text: str) -> Literal["quoted-printable", "base64"]:
    """Quoted-printable or base64 for a text part: whichever is shorter for this text.

    Both wrap lines at 76 characters, so no body line comes near RFC 5322's limits however
    long a title, summary or link is.  Quoted-printable keeps printable ASCII as it is and
    spells every other byte in three characters ("=D0"), so English alerts and the HTML
    markup stay readable (and greppable) in mail logs; base64 spends four characters on
    every three bytes, so it is the shorter one for Cyrillic (two bytes a letter: 6
    characters against 2.7) and CJK (three bytes: 9 against 4).  Python's own heuristic
    picks the same way from a message's first ten lines; choosing here, from the whole
    text, makes the choice explicit and testable.
    """
    octets = text.encode()
    quoted = sum(1 if octet in _QP_LITERAL else 3 for octet in octets)
    return "quoted-printable" if quoted <= _b_chars(len(octets)) else "base64"


def _body_part(text: str, subtype: str) -> EmailMessage:
    part = EmailMessage(policy=BODY_POLICY)
    # The content manager directly: EmailMessage.set_content would add a MIME-Version, which
    # belongs on the message, not on its parts.
    BODY_POLICY.content_manager.set_content(
        part, text, subtype=subtype, cte=body_transfer_encoding(text)
    )
    return part


def _set_bodies(message: EmailMessage, text: str, html: str) -> None:
    """The plain text and HTML alternatives, each in its own transfer encoding."""
    message["MIME-Version"] = "1.0"
    message.make_alternative()
    message.attach(_body_part(text, "plain"))
    message.attach(_body_part(html, "html"))


LIST_ID = "Monitor alerts <alerts.monitor.local>"
DOMAIN_CHARS = 253
"""The longest domain name DNS allows; a longer "domain" is not one (and would make the
Message-ID a line no folding can shorten)."""


def alert_context(match: Match) -> dict[str, Any]:
    """What the email templates see: cleaned one-line texts and the quote's runs."""
    found = quote(match)
    return {
        "severity": match.severity.name,
        "rule_id": clean_line(match.rule_id),
        "rule_title": clean_line(match.headline) or clean_line(match.rule_id),
        "rule_version": clean_line(match.rule_version) or "unknown",
        "also": [clean_line(note.label) for note in match.also],
        "rule_ids": rule_ids_text(match),
        "title": clip(clean_line(match.item.title), TITLE_CHARS) or "(untitled)",
        "link": safe_link(match.item.link),
        "source": clean_line(match.item.source) or "unknown source",
        "time": format_time(match.item.published),
        "terms": [clean_line(t) for t in match.terms],
        "explanation": clean_line(match.explanation),
        "story": story_text(match) if match.follow_up else "",
        "sources": [
            {"label": source_label(note), "new": note.new and bool(match.follow_up)}
            for note in match.provenance[:PROVENANCE_SHOWN]
        ],
        "more_sources": max(0, len(match.provenance) - PROVENANCE_SHOWN),
        "new_sources": new_sources_text(match) if match.follow_up else "",
        "english": _english(match),
        "gloss": gloss_text(match),
        "quote": None
        if found is None
        else {
            "segments": [{"text": seg.text, "hit": seg.hit} for seg in found.segments],
            "clipped_start": found.clipped_start,
            "clipped_end": found.clipped_end,
        },
    }


def _english(match: Match) -> dict[str, Any] | None:
    """What the templates show beside the original: the headline and quote in English,
    whether the translation was unavailable, and who translated; None: nothing to show."""
    title = english_title(match)
    if not title:
        return None
    unavailable = title == UNAVAILABLE
    return {
        "title": title,
        "quote": english_quote(match),
        "unavailable": unavailable,
        "note": machine_note(match),
    }


def email_html(match: Match, templates: Templates | None = None) -> str:
    """The HTML part: every piece of text escaped (autoescaping), hits marked."""
    return (templates or shipped()).render("email_alert.html.j2", alert=alert_context(match))


def email_text(match: Match, templates: Templates | None = None) -> str:
    return (templates or shipped()).render("email_alert.txt.j2", alert=alert_context(match))


def email_subject(match: Match) -> str:
    """One header-safe line: severity, rule title, item title."""
    title = clean_line(match.item.title) or "(untitled)"
    rule = clean_line(match.headline) or clean_line(match.rule_id)
    if match.also:
        rule += f" (+{len(match.also)} rule{'s' if len(match.also) > 1 else ''})"
    return clip_bytes(clip(f"[{match.severity.name}] {rule}: {title}", SUBJECT_CHARS), HEADER_BYTES)


def _domain(sender: str) -> str:
    domain = parseaddr(clean_line(sender))[1].rpartition("@")[2]
    domain = re.sub(r"[^A-Za-z0-9.-]", "", domain).strip(".")
    if not domain or len(domain) > DOMAIN_CHARS:
        return "monitor.local"
    return domain


def message_id(match: Match, *, channel: str, sender: str) -> str:
    """A Message-ID that is the same every time this match goes to this channel.

    A retry after a lost reply then carries the same id, so mail clients and archives can
    recognise the duplicate.
    """
    digest = hashlib.sha256(f"{match.key}\x00{channel}".encode()).hexdigest()[:32]
    return f"<{digest}@{_domain(sender)}>"


def thread_id(thread: str, *, sender: str) -> str:
    """The Message-ID-shaped root that every email of one story refers to."""
    digest = hashlib.sha256(f"thread\x00{thread}".encode()).hexdigest()[:32]
    return f"<thread-{digest}@{_domain(sender)}>"


def email_message(
    match: Match,
    *,
    sender: str,
    recipients: Sequence[str],
    now: datetime,
    channel: str = "email",
    thread: str | None = None,
    templates: Templates | None = None,
) -> EmailMessage:
    """A multipart/alternative alert (text and HTML) with header-safe, stable headers.

    ``now`` becomes the Date header (pure: the caller owns the clock); ``channel`` feeds the
    Message-ID so two email channels sending the same match produce distinct ids.  Alerts
    with the same ``thread`` (their story) name one thread root in In-Reply-To and
    References, so mail clients show a story's follow-ups together.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    message = EmailMessage(policy=EMAIL_POLICY)
    message["Subject"] = email_subject(match)
    message["From"] = clean_line(sender)
    message["To"] = ", ".join(clean_line(r) for r in recipients)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id(match, channel=channel, sender=sender)
    message["List-Id"] = LIST_ID
    message["Auto-Submitted"] = "auto-generated"
    if thread:
        root = thread_id(thread, sender=sender)
        message["In-Reply-To"] = root
        message["References"] = root
    message["X-Monitor-Rule"] = clip_bytes(clean_line(match.rule_id), HEADER_BYTES)
    message["X-Monitor-Severity"] = match.severity.label
    version = clip_bytes(clean_line(match.rule_version), HEADER_BYTES) or "unknown"
    message["X-Monitor-Rule-Version"] = version
    _set_bodies(message, email_text(match, templates), email_html(match, templates))
    return message


def digest_context(digest: Digest) -> dict[str, Any]:
    """What the digest templates see: the window and, per topic, each alert's summary."""
    return {
        "count": digest.count,
        "closes": digest.local_close(),
        "channel": digest.channel,
        "groups": [
            {"topic": clean_line(topic), "alerts": [alert_context(m) for m in matches]}
            for topic, matches in digest.groups
        ],
    }


def digest_html(digest: Digest, templates: Templates | None = None) -> str:
    """A digest's HTML part: a heading and a list per topic, every text escaped."""
    return (templates or shipped()).render("email_digest.html.j2", digest=digest_context(digest))


def digest_email(
    digest: Digest,
    *,
    sender: str,
    recipients: Sequence[str],
    now: datetime,
    templates: Templates | None = None,
) -> EmailMessage:
    """A digest as one multipart email; its Message-ID is stable per channel and window."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    message = EmailMessage(policy=EMAIL_POLICY)
    subject = f"[digest] {digest.count} alerts · {digest.local_close()}"
    message["Subject"] = clip_bytes(clean_line(subject), HEADER_BYTES)
    message["From"] = clean_line(sender)
    message["To"] = ", ".join(clean_line(r) for r in recipients)
    message["Date"] = format_datetime(now)
    key = hashlib.sha256(digest.key.encode()).hexdigest()[:32]
    message["Message-ID"] = f"<{key}@{_domain(sender)}>"
    message["List-Id"] = LIST_ID
    message["Auto-Submitted"] = "auto-generated"
    chosen = templates or shipped()
    text = chosen.render("email_digest.txt.j2", digest=digest_context(digest))
    _set_bodies(message, text, digest_html(digest, chosen))
    return message
