"""Plain text for a terminal: an alert as a readable block, a digest as a list per topic.

Control characters (ANSI escapes and bidi overrides too) are removed from every line.
"""

from __future__ import annotations

from monitor.deliver.render.digest import Digest
from monitor.deliver.render.english import (
    english_quote,
    english_title,
    gloss_text,
    machine_note,
)
from monitor.deliver.render.quote import Quote, quote
from monitor.deliver.render.strings import (
    ELLIPSIS,
    TITLE_CHARS,
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
from monitor.model import Match


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
        *([f"  Also:    {also_text(match)}"] if match.also else []),
        f"  Title:   {clip(clean_line(item.title), TITLE_CHARS) or '(untitled)'}",
        *_english_lines(match),
        f"  Link:    {link or '(no web link)'}",
        f"  Source:  {clean_line(item.source) or 'unknown'}",
        f"  Time:    {format_time(item.published)}",
        f"  Matched: {', '.join(clean_line(t) for t in match.terms) or '(none)'}",
    ]
    if found is not None:
        lines.append(f"  Quote:   {_plain_quote(found)}")
        if english_quote(match):
            lines.append(f"  English: “{english_quote(match)}”")
    if match.gloss:
        lines.append(f"  Gloss:   {gloss_text(match)}")
    if match.explanation:
        lines.append(f"  Why:     {clean_line(match.explanation)}")
    if match.provenance:
        if match.follow_up and match.story_title:
            lines.append(f"  Story:   {story_text(match)}")
        lines.append(f"  Sources: {provenance_text(match)}")
        if match.follow_up and new_sources_text(match):
            lines.append(f"  New:     {new_sources_text(match)}")
    version = clean_line(match.rule_version) or "unknown"
    label = "Rules:  " if match.also else "Rule:   "
    lines.append(f"  {label} {rule_ids_text(match)} (rule set {version})")
    return lines


def _english_lines(match: Match) -> list[str]:
    """The headline in English (or "translation unavailable") under the original one."""
    title = english_title(match)
    if not title:
        return []
    note = machine_note(match)
    return [f"  English: {title}" + (f" [{note}]" if note else "")]


def console_text(match: Match) -> str:
    """A readable block for a terminal; control characters (ANSI escapes too) are removed."""
    return "\n".join(_plain_lines(match))


def digest_text(digest: Digest) -> str:
    """A digest as plain text: for the console and the email's text part."""
    lines = [f"Digest: {digest.count} alerts, window closing {digest.local_close()}"]
    for topic, matches in digest.groups:
        lines += ["", f"== {clean_line(topic)} ({len(matches)}) =="]
        for match in matches:
            title = clip(clean_line(match.item.title), TITLE_CHARS) or "(untitled)"
            link = safe_link(match.item.link) or "(no web link)"
            lines.append(f"- [{match.severity.name}] {title}")
            if english_title(match):
                lines.append(f"  English: {english_title(match)}")
            if match.gloss:
                lines.append(f"  Gloss:   {gloss_text(match)}")
            lines.append(f"  {link} · {clean_line(match.item.source)}")
    return "\n".join(lines)
