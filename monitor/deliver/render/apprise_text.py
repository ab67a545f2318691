"""Apprise messages: a title and a body, as plain text or as CommonMark, for one alert, a burst
of alerts, or a digest.

Apprise turns the body into each service's own format (HTML for Matrix, escaped Markdown for
Telegram, plain text for SMS), so the plain-text form is right everywhere; the Markdown form
reads better in chat apps that render it (Teams, Matrix, Discord, ntfy with ``markdown=yes``).
Every piece of feed or rule text is cleaned of control characters and, in Markdown, escaped,
so a headline cannot forge emphasis, links or headings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from monitor.deliver.render.digest import Digest
from monitor.deliver.render.english import (
    english_quote,
    english_summary,
    english_title,
    gloss_text,
    machine_note,
)
from monitor.deliver.render.quote import Quote, quote
from monitor.deliver.render.strings import (
    ELLIPSIS,
    also_text,
    clean_line,
    clip,
    format_time,
    new_sources_text,
    provenance_text,
    rule_ids_text,
    safe_link,
    story_text,
)
from monitor.model import Match, Severity

BodyFormat = Literal["text", "markdown"]

TITLE_CHARS = 250
"""Longest title: Apprise services cap titles (ntfy and Teams near 250), longer ones are cut."""

# Every ASCII punctuation CommonMark lets a backslash escape and that can start markup.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>=&])")


@dataclass(frozen=True, slots=True)
class AppriseMessage:
    """What one Apprise notification carries: ``severity`` picks its type (colour, icon)."""

    title: str
    body: str
    severity: Severity
    markdown: bool = False


def escape_markdown(text: str) -> str:
    """``text`` as literal CommonMark: every character that could start markup escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


class _Writer:
    """Formats the parts of a message in one of the two body formats."""

    def __init__(self, body_format: BodyFormat) -> None:
        self.markdown = body_format == "markdown"

    def text(self, value: str) -> str:
        line = clean_line(value)
        return escape_markdown(line) if self.markdown else line

    def label(self, name: str, value: str) -> str:
        return f"**{name}:** {value}" if self.markdown else f"{name}: {value}"

    def link(self, title: str, url: str | None) -> str:
        if url is None:
            return self.text(title) if self.markdown else "(no web link)"
        return f"[{self.text(title)}](<{url}>)" if self.markdown else url

    def quote(self, found: Quote) -> str:
        # Segments come cleaned, edge spaces kept (clean_line would trim them).
        mark = "**" if self.markdown else "*"
        runs = [escape_markdown(s.text) if self.markdown else s.text for s in found.segments]
        body = "".join(
            f"{mark}{run}{mark}" if s.hit else run
            for s, run in zip(found.segments, runs, strict=True)
        )
        before = ELLIPSIS if found.clipped_start else ""
        after = ELLIPSIS if found.clipped_end else ""
        shown = f"“{before}{body}{after}”"
        # In Markdown a blank line ends the quote, or the next line would join it.
        return f"> {shown}\n" if self.markdown else shown


def _title(match: Match) -> str:
    """The headline first: the desk triages by what happened, then by which rule saw it."""
    headline = clean_line(match.item.title) or clean_line(match.headline) or match.rule_id
    return clip(f"[{match.severity.name}] {headline}", TITLE_CHARS)


def apprise_message(match: Match, body_format: BodyFormat = "text") -> AppriseMessage:
    """One alert: the headline as the title; the rule, source, quote, link and trace below."""
    w = _Writer(body_format)
    item = match.item
    lines = []
    if english_title(match):  # a foreign headline: the desk reads the English first
        note = f" ({machine_note(match)})" if machine_note(match) else ""
        lines.append(w.label("English", w.text(english_title(match)) + note))
    lines += [
        w.label("Rule", f"{w.text(match.headline)} ({match.severity.label})"),
        *([w.label("Also", w.text(also_text(match)))] if match.also else []),
        w.label("Source", f"{w.text(item.source) or 'unknown'} · {format_time(item.published)}"),
    ]
    found = quote(match)
    if found is not None:
        lines.append(w.quote(found))
        if english_quote(match):
            lines.append(w.label("English", f"“{w.text(english_quote(match))}”"))
    if gloss_text(match):
        lines.append(w.label("Gloss", w.text(gloss_text(match))))
    lines.append(w.link(item.title or "(untitled)", safe_link(item.link)))
    if match.terms:
        lines.append(w.label("Matched", ", ".join(w.text(t) for t in match.terms)))
    if match.explanation:
        lines.append(w.label("Why", w.text(match.explanation)))
    if match.provenance:
        if match.follow_up and match.story_title:
            lines.append(w.label("Story", w.text(story_text(match))))
        lines.append(w.label("Sources", w.text(provenance_text(match))))
        if match.follow_up and new_sources_text(match):
            lines.append(w.label("New", w.text(new_sources_text(match))))
    version = clean_line(match.rule_version) or "unknown"
    ids = w.text(rule_ids_text(match))
    lines.append(w.label("Rule id", f"{ids} (rule set {w.text(version)})"))
    return AppriseMessage(_title(match), _join(lines), match.severity, w.markdown)


def _entry(match: Match, w: _Writer, *, rule: bool = False) -> list[str]:
    """One alert of a list (a burst or a digest): severity, headline, link and source, and
    with ``rule`` the rule that fired."""
    title = clip(clean_line(match.item.title), TITLE_CHARS) or "(untitled)"
    link = safe_link(match.item.link)
    where = w.text(match.item.source) or "unknown"
    by = f" · rule: {w.text(match.headline)}" if rule else ""
    english = english_summary(match)
    if w.markdown:
        lines = [f"- **{match.severity.name}** {w.link(title, link)} · {where}{by}"]
        return lines + ([f"  {w.label('English', w.text(english))}"] if english else [])
    lines = [f"- [{match.severity.name}] {w.text(title)}"]
    lines += [f"  English: {w.text(english)}"] if english else []
    return [*lines, f"  {link or '(no web link)'} · {where}{by}"]


def apprise_group_message(
    matches: Sequence[Match], body_format: BodyFormat = "text"
) -> AppriseMessage:
    """A burst of alerts as one message, listed most severe first."""
    w = _Writer(body_format)
    ordered = sorted(matches, key=lambda m: -m.severity)
    top = ordered[0].severity if ordered else Severity.INFO
    lines = [line for match in ordered for line in _entry(match, w, rule=True)]
    title = f"[{top.name}] {len(ordered)} alerts"
    return AppriseMessage(title, _join(lines), top, w.markdown)


def apprise_digest_message(digest: Digest, body_format: BodyFormat = "text") -> AppriseMessage:
    """A digest: every match of the window, grouped by topic."""
    w = _Writer(body_format)
    lines: list[str] = []
    top = Severity.INFO
    for topic, matches in digest.groups:
        heading = f"{w.text(topic)} ({len(matches)})"
        lines += ["", f"**{heading}**" if w.markdown else f"== {heading} =="]
        for match in matches:
            top = max(top, match.severity)
            lines += _entry(match, w)
    title = f"Digest: {digest.count} alerts, window closing {digest.local_close()}"
    return AppriseMessage(title, _join(lines).strip("\n"), top, w.markdown)


def _join(lines: list[str]) -> str:
    return "\n".join(lines)
