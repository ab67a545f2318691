"""Turn a Match into what each channel sends: Slack Block Kit, an email message, console text.

Everything here is pure: no I/O and no clock (the email's Date is passed in).  Feed text is
untrusted, so every renderer escapes it for its own medium and strips control characters, and
links are only made from http(s) URLs.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any
from urllib.parse import quote as percent_quote
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from monitor.deliver.templates import Templates, safe, shipped
from monitor.model import Item, Match, Severity, SourceNote, TermHit

ELLIPSIS = "…"
QUOTE_CHARS = 300
"""Longest quote (before escaping) an alert shows: a sentence, not the article."""

# Limits Slack enforces on Block Kit; a payload over any of them is refused with 400.
SLACK_HEADER_CHARS = 150
SLACK_SECTION_CHARS = 3000
SLACK_CONTEXT_CHARS = 2000
SLACK_TEXT_CHARS = 3000
SLACK_MAX_BLOCKS = 50
SLACK_LINK_CHARS = 1500

TITLE_CHARS = 300
"""Longest headline shown; feeds occasionally put a whole article in the title."""
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

SEVERITY_EMOJI = {
    Severity.INFO: "\N{INFORMATION SOURCE}\N{VARIATION SELECTOR-16}",
    Severity.LOW: "\N{LARGE BLUE CIRCLE}",
    Severity.MEDIUM: "\N{LARGE YELLOW CIRCLE}",
    Severity.HIGH: "\N{LARGE ORANGE CIRCLE}",
    Severity.CRITICAL: "\N{LARGE RED CIRCLE}",
}

# C0/C1 controls (CR and LF included), line/paragraph separators and bidi overrides: none of
# them belongs in a one-line field, and each can forge headers or disguise text.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"\s+")
# Gaps between sentences: end punctuation (plus closing quotes) then space, CJK full stops,
# or a line break.
_BOUNDARY = re.compile(
    r"[.!?…]+[\"'”’»)\]]*\s+"
    r"|[。！？]+[”’」』）)]*\s*"
    r"|\s*\n\s*"
)
_SNAP = 20
"""How far a clipped quote may move its edge to avoid cutting a word in half."""


# --- text helpers -------------------------------------------------------------------------


def clean_line(text: str) -> str:
    """Make untrusted text safe for a one-line field: no controls, single spaces, trimmed."""
    return _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()


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


# --- the quote ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of quote text; ``hit`` runs are the matched terms, to be highlighted."""

    text: str
    hit: bool = False


@dataclass(frozen=True, slots=True)
class Quote:
    """The sentence around a hit, split into plain and highlighted runs, cleaned for display.

    ``clipped_start``/``clipped_end`` say whether text was cut there, so renderers can show "…".
    """

    field: str
    segments: tuple[Segment, ...]
    clipped_start: bool = False
    clipped_end: bool = False

    @property
    def text(self) -> str:
        return "".join(segment.text for segment in self.segments)


def find_sentence(text: str, start: int, end: int) -> tuple[int, int]:
    """Bounds of the sentence holding ``text[start:end]``, trailing spaces excluded.

    Boundaries that fall inside the hit are ignored, so a term such as "U.S. Navy" does not cut
    its own sentence in two.
    """
    begin, finish = 0, len(text)
    for gap in _BOUNDARY.finditer(text):
        if gap.end() <= start:
            begin = gap.end()
        elif gap.start() >= end:
            finish = gap.end()
            break
    while finish > max(begin, end) and text[finish - 1].isspace():
        finish -= 1
    return begin, finish


def _window(bounds: tuple[int, int], hit: tuple[int, int], limit: int) -> tuple[int, int]:
    """Choose at most ``limit`` characters of a sentence around a hit, centred on it."""
    begin, finish = bounds
    start, end = hit
    if finish - begin <= limit:
        return begin, finish
    end = min(end, start + limit)
    room = limit - (end - start)
    before = min(start - begin, room // 2)
    after = min(finish - end, room - before)
    before = min(start - begin, room - after)
    return start - before, end + after


def _snap(
    text: str, window: tuple[int, int], bounds: tuple[int, int], hit: tuple[int, int]
) -> tuple[int, int]:
    """Move clipped edges to the nearest space so the quote does not start mid-word."""
    lo, hi = window
    if lo > bounds[0]:
        space = text.find(" ", lo, min(lo + _SNAP, hit[0]))
        lo = space + 1 if space >= 0 else lo
    if hi < bounds[1]:
        space = text.rfind(" ", max(hi - _SNAP, hit[1]), hi)
        hi = space if space >= 0 else hi
    return lo, hi


def locate_hit(item: Item, hit: TermHit) -> tuple[str, int, int] | None:
    """Find where a hit is in its item: trust its offsets when they check out, else search.

    A match read back from the queue may have been made by another version of the normalizer;
    a stale offset must not highlight the wrong words or crash the renderer.
    """
    if hit.field not in ("title", "summary"):
        return None
    text: str = getattr(item, hit.field)
    if 0 <= hit.start < hit.end <= len(text) and text[hit.start : hit.end] == hit.text:
        return hit.field, hit.start, hit.end
    if not hit.text:
        return None
    found = re.search(re.escape(hit.text), text, re.IGNORECASE)
    if found is None:
        return None
    return hit.field, found.start(), found.end()


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _segments(
    text: str, window: tuple[int, int], spans: list[tuple[int, int]]
) -> tuple[Segment, ...]:
    """Split ``text[window]`` into plain and hit runs, each cleaned to one line."""
    lo, hi = window
    runs: list[Segment] = []
    cursor = lo
    for start, end in _merge([(max(s, lo), min(e, hi)) for s, e in spans if s < hi and e > lo]):
        runs.append(Segment(text[cursor:start]))
        runs.append(Segment(text[start:end], hit=True))
        cursor = end
    runs.append(Segment(text[cursor:hi]))
    return _clean_segments(runs)


def _clean_segments(runs: list[Segment]) -> tuple[Segment, ...]:
    cleaned: list[Segment] = []
    for run in runs:
        body = _SPACES.sub(" ", _CONTROL.sub(" ", run.text))
        if cleaned and cleaned[-1].text.endswith(" ") and body.startswith(" "):
            body = body[1:]
        if body:
            cleaned.append(Segment(body, run.hit))
    if cleaned:
        cleaned[0] = Segment(cleaned[0].text.lstrip(), cleaned[0].hit)
        cleaned[-1] = Segment(cleaned[-1].text.rstrip(), cleaned[-1].hit)
    return tuple(run for run in cleaned if run.text)


def _chosen_hit(match: Match) -> tuple[str, int, int] | None:
    """The hit to quote: the first one in the summary, else the first one anywhere.

    The headline is already shown in full, so a quote from the summary adds context where
    a quote of the title would only repeat it.
    """
    located = [spot for spot in (locate_hit(match.item, hit) for hit in match.hits) if spot]
    for spot in located:
        if spot[0] == "summary":
            return spot
    return located[0] if located else None


def _spans(match: Match, field: str) -> list[tuple[int, int]]:
    spots = (locate_hit(match.item, hit) for hit in match.hits)
    return [(spot[1], spot[2]) for spot in spots if spot is not None and spot[0] == field]


def quote(match: Match, *, limit: int = QUOTE_CHARS) -> Quote | None:
    """The sentence around the match's hit with every hit in it marked, at most ``limit`` chars.

    Without a usable hit it falls back to the summary's first sentence; it is None when there
    is nothing to quote.
    """
    chosen = _chosen_hit(match)
    if chosen is None:
        summary = match.item.summary
        lead = len(summary) - len(summary.lstrip())
        chosen = ("summary", lead, lead)
    field, start, end = chosen
    text: str = getattr(match.item, field)
    bounds = find_sentence(text, start, end)
    window = _snap(text, _window(bounds, (start, end), limit), bounds, (start, end))
    segments = _segments(text, window, _spans(match, field))
    if not segments:
        return None
    return Quote(field, segments, window[0] > bounds[0], window[1] < bounds[1])


# --- Slack --------------------------------------------------------------------------------


def slack_escape(text: str) -> str:
    """Escape the three characters Slack treats as markup, so text cannot mention or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(raw: str, limit: int) -> str:
    """Clean, escape and clip untrusted text so the *escaped* result fits ``limit``.

    Clipping happens before escaping is complete, so a cut never splits an entity like
    ``&lt;`` or leaves half of one behind.
    """
    text = clean_line(raw)
    escaped = slack_escape(text)
    if len(escaped) <= limit:
        return escaped
    out: list[str] = []
    used = 0
    for char in text:
        piece = slack_escape(char)
        if used + len(piece) > limit - 1:
            break
        out.append(piece)
        used += len(piece)
    return "".join(out).rstrip() + ELLIPSIS


def _slack_headline(item: Item) -> str:
    title = slack_text(clip(clean_line(item.title), TITLE_CHARS) or "(untitled)", 4 * TITLE_CHARS)
    link = safe_link(item.link)
    target = slack_escape(link) if link is not None else ""
    if not target or len(target) > SLACK_LINK_CHARS:
        return f"*{title}*"
    return f"*<{target}|{title}>*"


def _slack_bold(text: str, before: str, after: str) -> str:
    """Bold a run of text in mrkdwn, even in the middle of a word.

    Slack only honours ``*`` next to a non-word character; a zero-width space supplies one
    when the hit touches letters (a term "sanction" inside "sanctions").
    """
    core = text.strip()
    if not core:
        return text
    lead = text[: len(text) - len(text.lstrip())] or ("\u200b" if before[-1:].isalnum() else "")
    tail = text[len(text.rstrip()) :] or ("\u200b" if after[:1].isalnum() else "")
    return f"{lead}*{core}*{tail}"


def _slack_quote(found: Quote) -> str:
    parts = [ELLIPSIS if found.clipped_start else ""]
    runs = found.segments
    for index, segment in enumerate(runs):
        escaped = slack_escape(segment.text)
        if segment.hit:
            before = runs[index - 1].text if index > 0 else ""
            after = runs[index + 1].text if index + 1 < len(runs) else ""
            escaped = _slack_bold(escaped, before, after)
        parts.append(escaped)
    parts.append(ELLIPSIS if found.clipped_end else "")
    return clip("> " + "".join(parts), SLACK_SECTION_CHARS)


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _slack_terms(match: Match) -> str:
    """The matched terms, as many as fit, then how many more there were."""
    text = "Matched:"
    terms = match.terms
    for shown, term in enumerate(terms):
        piece = f" *{slack_text(term, 200)}*" + ("," if shown + 1 < len(terms) else "")
        if len(text) + len(piece) > SLACK_CONTEXT_CHARS - 30:
            return f"{text} {ELLIPSIS} (+{len(terms) - shown} more)"
        text += piece
    return text if terms else "Matched: (none)"


def _slack_rule(match: Match) -> str:
    rule = slack_text(match.rule_id, 200)
    title = slack_text(match.headline, 300)
    version = slack_text(match.rule_version, 100) or "unknown"
    return clip(f"Rule {rule} ({title}) · rule set {version}", SLACK_CONTEXT_CHARS)


def _slack_origin(match: Match) -> str:
    source = slack_text(match.item.source, 300) or "unknown source"
    when = format_time(match.item.published)
    return f"*{source}* · {when} · severity *{match.severity.label}*"


def _slack_fallback(match: Match) -> str:
    """The notification text: what a phone or a screen reader shows instead of the blocks."""
    title = clip(clean_line(match.item.title), TITLE_CHARS) or "(untitled)"
    raw = f"[{match.severity.name}] {clean_line(match.headline)}: {title}"
    return slack_text(raw, SLACK_TEXT_CHARS)


def slack_header(match: Match) -> str:
    """The header line: plain text (Slack parses no markup there), so it is only cleaned."""
    rule = clean_line(match.headline) or clean_line(match.rule_id) or "alert"
    emoji = SEVERITY_EMOJI.get(match.severity, "")
    return clip(f"{emoji} {match.severity.name} · {rule}".strip(), SLACK_HEADER_CHARS)


def _slack_story(match: Match) -> str | None:
    """The story and its provenance, for a story's alert and follow-ups."""
    if not match.provenance:
        return None
    lines = []
    if match.follow_up and match.story_title:
        lines.append(f"Story: *{slack_text(story_text(match), 4 * TITLE_CHARS)}*")
    independent = len(match.provenance)
    lines.append(f"Sources ({independent}): {slack_text(provenance_text(match), 1500)}")
    new = new_sources_text(match)
    if match.follow_up and new:
        lines.append(f"New since the last message: *{slack_text(new, 800)}*")
    return clip("\n".join(lines), SLACK_SECTION_CHARS)


def slack_alert_context(match: Match) -> dict[str, Any]:
    """What ``slack_alert.j2`` sees: pieces already escaped for Slack are ``Markup``."""
    found = quote(match)
    story = _slack_story(match)
    return {
        "story": safe(story) if story is not None else None,
        "explanation": safe(slack_text(match.explanation, SLACK_SECTION_CHARS))
        if match.explanation
        else None,
        "header": safe(slack_header(match)),
        "headline": safe(_slack_headline(match.item)),
        "origin": safe(_slack_origin(match)),
        "quote": safe(_slack_quote(found)) if found is not None else None,
        "terms": safe(_slack_terms(match)),
        "rule": safe(_slack_rule(match)),
        "title": clean_line(match.item.title),
        "source": clean_line(match.item.source),
        "severity": match.severity.name,
        "rule_id": match.rule_id,
        "rule_title": clean_line(match.headline),
        "link": safe_link(match.item.link),
    }


def slack_blocks(text: str) -> list[dict[str, Any]]:
    """Blocks from a rendered Slack template: ``#header``, ``#section``, ``#context`` and
    ``#divider`` lines start blocks; every text is clipped to Slack's limit for its place,
    empty blocks are dropped and at most 50 are kept, so a template cannot break a post."""
    blocks: list[dict[str, Any]] = []
    kind, lines = "", []  # type: tuple[str, list[str]]
    for line in [*text.splitlines(), "#end"]:
        marker = line.strip()
        if marker in ("#header", "#section", "#context", "#divider", "#end"):
            blocks += _slack_block(kind, lines)
            kind, lines = marker[1:], []
        else:
            lines.append(line)
    return blocks[:SLACK_MAX_BLOCKS]


def _slack_block(kind: str, lines: list[str]) -> list[dict[str, Any]]:
    body = "\n".join(lines).strip()
    if kind == "divider":
        return [{"type": "divider"}]
    if kind == "header" and body:
        plain = clip(clean_line(body), SLACK_HEADER_CHARS)
        return [{"type": "header", "text": {"type": "plain_text", "text": plain}}]
    if kind == "section" and body:
        return [{"type": "section", "text": _mrkdwn(clip(body, SLACK_SECTION_CHARS))}]
    elements = [_mrkdwn(clip(ln.strip(), SLACK_CONTEXT_CHARS)) for ln in lines if ln.strip()]
    if kind == "context" and elements:
        return [{"type": "context", "elements": elements[:10]}]
    return []


def slack_payload(match: Match, templates: Templates | None = None) -> dict[str, Any]:
    """Block Kit payload for an incoming webhook, within every Slack limit.

    Item text is escaped (no ``<!channel>``, no spoofed ``<url|label>``), only http(s) links
    are linked, and long text is cut visibly with "…" rather than refused by Slack.  The
    blocks come from the ``slack_alert.j2`` template (a deployment may override it).
    """
    chosen = templates or shipped()
    rendered = chosen.render("slack_alert.j2", alert=slack_alert_context(match))
    return {
        "text": _slack_fallback(match),
        "blocks": slack_blocks(rendered) or [_fallback_block(match)],
        "unfurl_links": False,
        "unfurl_media": False,
    }


def _fallback_block(match: Match) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(_slack_headline(match.item))}


# --- plain text (console and the email's text part) ---------------------------------------


def _plain_quote(found: Quote) -> str:
    body = "".join(f"*{s.text}*" if s.hit else s.text for s in found.segments)
    before = ELLIPSIS if found.clipped_start else ""
    after = ELLIPSIS if found.clipped_end else ""
    return f"“{before}{body}{after}”"


def _plain_lines(match: Match) -> list[str]:
    item = match.item
    link = safe_link(item.link)
    found = quote(match)
    lines = [
        f"[{match.severity.name}] {clean_line(match.headline) or match.rule_id}",
        f"  Title:   {clip(clean_line(item.title), TITLE_CHARS) or '(untitled)'}",
        f"  Link:    {link or '(no web link)'}",
        f"  Source:  {clean_line(item.source) or 'unknown'}",
        f"  Time:    {format_time(item.published)}",
        f"  Matched: {', '.join(clean_line(t) for t in match.terms) or '(none)'}",
    ]
    if found is not None:
        lines.append(f"  Quote:   {_plain_quote(found)}")
    if match.explanation:
        lines.append(f"  Why:     {clean_line(match.explanation)}")
    if match.provenance:
        if match.follow_up and match.story_title:
            lines.append(f"  Story:   {story_text(match)}")
        lines.append(f"  Sources: {provenance_text(match)}")
        if match.follow_up and new_sources_text(match):
            lines.append(f"  New:     {new_sources_text(match)}")
    version = clean_line(match.rule_version) or "unknown"
    lines.append(f"  Rule:    {clean_line(match.rule_id)} (rule set {version})")
    return lines


def console_text(match: Match) -> str:
    """A readable block for a terminal; control characters (ANSI escapes too) are removed."""
    return "\n".join(_plain_lines(match))


# --- email --------------------------------------------------------------------------------


def _html_quote(found: Quote) -> str:
    parts = [ELLIPSIS if found.clipped_start else ""]
    for segment in found.segments:
        escaped = html.escape(segment.text)
        parts.append(f"<mark><strong>{escaped}</strong></mark>" if segment.hit else escaped)
    parts.append(ELLIPSIS if found.clipped_end else "")
    return "".join(parts)


def _html_headline(item: Item) -> str:
    title = html.escape(clip(clean_line(item.title), TITLE_CHARS) or "(untitled)")
    link = safe_link(item.link)
    if link is None:
        return title
    return f'<a href="{html.escape(link, quote=True)}">{title}</a>'


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


# --- several alerts at once: Slack bursts and digests -------------------------------------

GROUP_MAX = 10
"""Most alerts in one grouped Slack message (3 blocks each keeps it well under 50)."""
DIGEST_LINES = 15
"""Most alerts listed per topic in a Slack digest; the rest are counted."""


@dataclass(frozen=True, slots=True)
class Digest:
    """One digest window's matches, grouped by topic, for one channel.

    ``closes`` is the end of the window; ``zone`` the schedule's time zone name, so readers
    see the brief's time as they scheduled it.
    """

    channel: str
    closes: datetime
    zone: str
    groups: tuple[tuple[str, tuple[Match, ...]], ...]

    @property
    def count(self) -> int:
        return sum(len(matches) for _, matches in self.groups)

    @property
    def key(self) -> str:
        """Identity for idempotent sending: one channel, one window."""
        return f"digest|{self.channel}|{int(self.closes.timestamp())}"

    def local_close(self) -> str:
        return self.closes.astimezone(ZoneInfo(self.zone)).strftime(f"%Y-%m-%d %H:%M {self.zone}")


def _slack_line(match: Match) -> str:
    """One alert as one mrkdwn line: severity, linked headline, source."""
    emoji = SEVERITY_EMOJI.get(match.severity, "")
    source = slack_text(match.item.source, 100) or "unknown source"
    return f"{emoji} {_slack_headline(match.item)} · {source}"


def slack_group_payload(matches: Sequence[Match]) -> dict[str, Any]:
    """Several alerts in one message: a burst coalesced so Slack sees one post, not many."""
    shown = list(matches[:GROUP_MAX])
    top = max(m.severity for m in shown)
    header = clip(f"{SEVERITY_EMOJI.get(top, '')} {len(shown)} alerts".strip(), SLACK_HEADER_CHARS)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header}}
    ]
    for match in shown:
        found = quote(match)
        body = _slack_headline(match.item) + (f"\n{_slack_quote(found)}" if found else "")
        blocks += [
            {"type": "divider"},
            {"type": "section", "text": _mrkdwn(clip(body, SLACK_SECTION_CHARS))},
            {
                "type": "context",
                "elements": [_mrkdwn(_slack_origin(match)), _mrkdwn(_slack_rule(match))],
            },
        ]
    fallback = "; ".join(_slack_fallback(m) for m in shown)
    return {
        "text": clip(fallback, SLACK_TEXT_CHARS),
        "blocks": blocks[:SLACK_MAX_BLOCKS],
        "unfurl_links": False,
        "unfurl_media": False,
    }


def slack_digest_payload(digest: Digest) -> dict[str, Any]:
    """A digest as one message: a section per topic listing its alerts, cut visibly."""
    header = clip(f"Digest · {digest.count} alerts · {digest.local_close()}", SLACK_HEADER_CHARS)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header}}
    ]
    room = SLACK_MAX_BLOCKS - 2
    for index, (topic, matches) in enumerate(digest.groups):
        if index >= room:
            left = len(digest.groups) - index
            blocks.append({"type": "context", "elements": [_mrkdwn(f"… and {left} more topics")]})
            break
        lines = [f"*{slack_text(topic, 200)}* ({len(matches)})"]
        lines += [_slack_line(m) for m in matches[:DIGEST_LINES]]
        if len(matches) > DIGEST_LINES:
            lines.append(f"… and {len(matches) - DIGEST_LINES} more")
        blocks.append({"type": "section", "text": _mrkdwn(clip("\n".join(lines), 3000))})
    return {
        "text": slack_text(f"Digest: {digest.count} alerts until {digest.local_close()}", 3000),
        "blocks": blocks[:SLACK_MAX_BLOCKS],
        "unfurl_links": False,
        "unfurl_media": False,
    }


def digest_text(digest: Digest) -> str:
    """A digest as plain text: for the console and the email's text part."""
    lines = [f"Digest: {digest.count} alerts, window closing {digest.local_close()}"]
    for topic, matches in digest.groups:
        lines += ["", f"== {clean_line(topic)} ({len(matches)}) =="]
        for match in matches:
            title = clip(clean_line(match.item.title), TITLE_CHARS) or "(untitled)"
            link = safe_link(match.item.link) or "(no web link)"
            lines.append(f"- [{match.severity.name}] {title}")
            lines.append(f"  {link} · {clean_line(match.item.source)}")
    return "\n".join(lines)


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


# --- the generic webhook's JSON -----------------------------------------------------------

WEBHOOK_ALERT_SCHEMA = "monitor.alert.v1"
WEBHOOK_DIGEST_SCHEMA = "monitor.digest.v1"


def alert_id(key: str) -> str:
    """A stable, opaque id for an alert or digest: receivers deduplicate on it."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def webhook_alert(match: Match, *, story: str) -> dict[str, Any]:
    """One alert as the webhook's JSON (see the README's schema); text is data, not markup,
    so it is only cleaned of control characters, and ``link`` is null unless http(s)."""
    item = match.item
    found = quote(match)
    return {
        "id": alert_id(match.key),
        "story": story,
        "follow_up": match.follow_up,
        "rule": {
            "id": match.rule_id,
            "title": clean_line(match.rule_title),
            "severity": match.severity.label,
            "version": match.rule_version,
            "tags": list(match.tags),
        },
        "item": {
            "id": item.id,
            "title": clean_line(item.title),
            "summary": clip(clean_line(item.summary), 2000),
            "link": safe_link(item.link),
            "source": clean_line(item.source),
            "source_tags": list(item.source_tags),
            "published": item.published.astimezone(UTC).isoformat(),
            "lang": item.lang,
        },
        "terms": list(match.terms),
        "hits": [
            {"term": h.term, "field": h.field, "start": h.start, "end": h.end, "text": h.text}
            for h in match.hits
        ],
        "quote": found.text if found is not None else None,
        "story_title": clean_line(match.story_title) or None,
        "provenance": [
            {
                "source": clean_line(note.source),
                "kind": note.kind,
                "country": note.country,
                "lang": note.lang,
                "new": note.new,
            }
            for note in match.provenance
        ],
        "explanation": clean_line(match.explanation) or None,
    }


def webhook_alert_body(match: Match, *, story: str, now: datetime) -> dict[str, Any]:
    return {
        "schema": WEBHOOK_ALERT_SCHEMA,
        "kind": "alert",
        "sent_at": now.astimezone(UTC).isoformat(),
        **webhook_alert(match, story=story),
    }


def webhook_digest_body(
    digest: Digest, *, stories: dict[str, str], now: datetime
) -> dict[str, Any]:
    """A digest as the webhook's JSON: the window and its alerts grouped by topic."""
    return {
        "schema": WEBHOOK_DIGEST_SCHEMA,
        "kind": "digest",
        "id": alert_id(digest.key),
        "sent_at": now.astimezone(UTC).isoformat(),
        "channel": digest.channel,
        "window_end": digest.closes.astimezone(UTC).isoformat(),
        "timezone": digest.zone,
        "count": digest.count,
        "groups": [
            {
                "topic": clean_line(topic),
                "alerts": [webhook_alert(m, story=stories.get(m.key, "")) for m in matches],
            }
            for topic, matches in digest.groups
        ],
    }
