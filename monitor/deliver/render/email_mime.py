"""Email: an alert or a digest as a multipart/alternative message with header-safe lines.

The Date header is passed in (``now``); Message-IDs are derived from the alert or digest key,
so a retry carries the same id.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

from monitor.deliver.render.digest import Digest
from monitor.deliver.render.quote import quote
from monitor.deliver.render.strings import (
    PROVENANCE_SHOWN,
    TITLE_CHARS,
    clean_line,
    clip,
    clip_bytes,
    format_time,
    new_sources_text,
    safe_link,
    source_label,
    story_text,
)
from monitor.deliver.templates import Templates, shipped
from monitor.model import Match

SUBJECT_CHARS = 200
HEADER_BYTES = 500
"""Most UTF-8 bytes of text in one header: encoded, it stays on one line (see EMAIL_POLICY)."""
EMAIL_POLICY = policy.default.clone(max_line_length=998)
"""Fold headers only past RFC 5322's hard limit of 998.

Python's folder (3.11) can drop the space between two encoded words when it folds a
non-ASCII header at 78 columns ("Казахстан и вольфрамовое" arrives as "Казахстан
ивольфрамовое"); headers kept under ``HEADER_BYTES`` never need folding at all.
"""
LIST_ID = "Monitor alerts <alerts.monitor.local>"


def alert_context(match: Match) -> dict[str, Any]:
    """What the email templates see: cleaned one-line texts and the quote's runs."""
    found = quote(match)
    return {
        "severity": match.severity.name,
        "rule_id": clean_line(match.rule_id),
        "rule_title": clean_line(match.headline) or clean_line(match.rule_id),
        "rule_version": clean_line(match.rule_version) or "unknown",
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
        "quote": None
        if found is None
        else {
            "segments": [{"text": seg.text, "hit": seg.hit} for seg in found.segments],
            "clipped_start": found.clipped_start,
            "clipped_end": found.clipped_end,
        },
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
    return clip_bytes(clip(f"[{match.severity.name}] {rule}: {title}", SUBJECT_CHARS), HEADER_BYTES)


def _domain(sender: str) -> str:
    domain = parseaddr(clean_line(sender))[1].rpartition("@")[2]
    domain = re.sub(r"[^A-Za-z0-9.-]", "", domain).strip(".")
    return domain or "monitor.local"


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
    # Quoted-printable keeps the raw message readable (and greppable) in mail logs.
    message.set_content(email_text(match, templates), cte="quoted-printable")
    message.add_alternative(email_html(match, templates), subtype="html", cte="quoted-printable")
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
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(digest_html(digest, chosen), subtype="html", cte="quoted-printable")
    return message
