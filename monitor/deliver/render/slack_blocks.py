"""Slack Block Kit payloads: one alert, a burst of alerts in one post, and a digest.

Every text is escaped for mrkdwn (no ``<!channel>``, no spoofed ``<url|label>``) and clipped
to the limit Slack enforces for its place, so a post is never refused for its size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monitor.deliver.render.digest import Digest
from monitor.deliver.render.quote import Quote, quote
from monitor.deliver.render.strings import (
    ELLIPSIS,
    TITLE_CHARS,
    clean_line,
    clip,
    format_time,
    new_sources_text,
    provenance_text,
    safe_link,
    story_text,
)
from monitor.deliver.templates import Templates, safe, shipped
from monitor.model import Item, Match, Severity

# Limits Slack enforces on Block Kit; a payload over any of them is refused with 400.
SLACK_HEADER_CHARS = 150
SLACK_SECTION_CHARS = 3000
SLACK_CONTEXT_CHARS = 2000
SLACK_TEXT_CHARS = 3000
SLACK_MAX_BLOCKS = 50
SLACK_LINK_CHARS = 1500

SEVERITY_EMOJI = {
    Severity.INFO: "\N{INFORMATION SOURCE}\N{VARIATION SELECTOR-16}",
    Severity.LOW: "\N{LARGE BLUE CIRCLE}",
    Severity.MEDIUM: "\N{LARGE YELLOW CIRCLE}",
    Severity.HIGH: "\N{LARGE ORANGE CIRCLE}",
    Severity.CRITICAL: "\N{LARGE RED CIRCLE}",
}


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


GROUP_MAX = 10
"""Most alerts in one grouped Slack message (3 blocks each keeps it well under 50)."""
DIGEST_LINES = 15
"""Most alerts listed per topic in a Slack digest; the rest are counted."""


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
