"""Slack Block Kit payloads: one alert, a burst of alerts in one post, and a digest.

Every text from a feed or a rule is escaped for mrkdwn (no ``<!channel>``, no spoofed
``<url|label>``, no bold, italics, strike-through or code it did not ask the renderer for) and
clipped to the limit Slack enforces for its place, so a post is never refused for its size.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

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
    PROVENANCE_SHOWN,
    TITLE_CHARS,
    also_text,
    clean_line,
    clip,
    format_time,
    safe_link,
    source_label,
    story_text,
)
from monitor.deliver.templates import Templates, safe, shipped
from monitor.model import Item, Match, Severity, SourceNote

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

ZERO_WIDTH_SPACE = "\u200b"
SOFT_HYPHEN = "\u00ad"

MRKDWN_LOOKALIKES = {
    "*": "\u2217",  # ASTERISK OPERATOR
    "_": "\u02cd",  # MODIFIER LETTER LOW MACRON
    "~": "\u223c",  # TILDE OPERATOR
    "`": "\u02cb",  # MODIFIER LETTER GRAVE ACCENT
    "\uff0a": "\ufe61",  # FULLWIDTH ASTERISK -> SMALL ASTERISK
    "\uff3f": "\u2e0f",  # FULLWIDTH LOW LINE -> PARAGRAPHOS
    "\uff40": "\u02cb",  # FULLWIDTH GRAVE ACCENT -> MODIFIER LETTER GRAVE ACCENT
}
"""Each character Slack reads as a formatting marker, and the look-alike shown instead.

Slack's mrkdwn has no escape for ``*``, ``_``, ``~`` or a backtick (a backslash is shown as
it is), so text that is not ours must not contain them at all.  Two ways are in use: insert
an invisible character next to the marker, or swap the marker for a character that looks like
it.  A zero-width character is unsound: Slack treats a zero-width space as a word boundary,
so it *enables* a marker next to it rather than stopping it (``_slack_bold`` relies on exactly
that to bold half a word).  A look-alike is a different code point, so no version of Slack's
parser can take it for a marker; it keeps the length (clipping stays exact); and the reader
sees the same text.  The price is that copying the text copies the look-alike; the alert links
to the article for the original.  The table is the one jsx-slack uses for the same purpose;
the fullwidth forms East Asian keyboards type are swapped too, which costs nothing.
"""

_MARKERS = re.compile("[" + re.escape("".join(MRKDWN_LOOKALIKES)) + "]")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""A rule id or rule set version as the rule files allow them: safe inside a code span."""
_KEYWORD = re.compile(r"[a-z]+(?:_[a-z]+)*")
"""A config keyword such as ``state_media``: each underscore sits between two letters."""


def slack_escape(text: str) -> str:
    """Escape the three characters Slack treats as control characters (``&``, ``<``, ``>``).

    Enough for a link target, which must keep its ``_`` and ``~``; any text a reader sees goes
    through ``mrkdwn_escape`` instead.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn_escape(text: str) -> str:
    """Make text literal in mrkdwn: entities for ``&<>``, look-alikes for the formatting markers.

    Neither can start a mention, a link, bold, italics, strike-through or code, so the only
    formatting in a message is the formatting the renderer wraps around escaped text.  See
    ``MRKDWN_LOOKALIKES`` for why look-alikes rather than zero-width characters.
    """
    swapped = _MARKERS.sub(lambda found: MRKDWN_LOOKALIKES[found.group()], text)
    return "".join(_ENTITIES.get(char, char) for char in swapped)


def slack_text(raw: str, limit: int) -> str:
    """Clean, escape and clip untrusted text so the *escaped* result fits ``limit``.

    Clipping happens before escaping is complete, so a cut never splits an entity like
    ``&lt;`` or leaves half of one behind.  Text starting with ``>`` gets an invisible soft
    hyphen first: at the start of a line Slack would show even ``&gt;`` as a block quote.
    """
    text = clean_line(raw)
    lead = SOFT_HYPHEN if text.startswith((">", "\uff1e")) else ""
    escaped = lead + mrkdwn_escape(text)
    if len(escaped) <= limit:
        return escaped
    out: list[str] = [lead]
    used = len(lead)
    for char in text:
        piece = mrkdwn_escape(char)
        if used + len(piece) > limit - 1:
            break
        out.append(piece)
        used += len(piece)
    return "".join(out).rstrip() + ELLIPSIS


def _slack_identifier(raw: str, limit: int) -> str:
    """A rule id or version in a code span, so it reads and copies exactly as written.

    The rule files allow ``_`` in ids; a look-alike would make an id that ``monitor`` commands
    do not know.  Inside a code span Slack formats nothing, and an identifier holds no
    backtick to end it early.  Anything else is escaped as text.
    """
    text = clean_line(raw)
    if _IDENTIFIER.fullmatch(text) and len(text) + 2 <= limit:
        return f"`{text}`"
    return slack_text(text, limit)


def _slack_headline(item: Item) -> str:
    title = slack_text(clip(clean_line(item.title), TITLE_CHARS) or "(untitled)", 4 * TITLE_CHARS)
    link = safe_link(item.link)
    target = slack_escape(link) if link is not None else ""
    if not target or len(target) > SLACK_LINK_CHARS:
        return f"*{title}*"
    return f"*<{target}|{title}>*"


def _is_boundary(char: str) -> bool:
    """Whether Slack sees a word boundary here: nothing, a space, or a zero-width space."""
    return not char or char.isspace() or char == ZERO_WIDTH_SPACE


def _slack_bold(text: str, before: str, after: str) -> str:
    """Bold a run of escaped text in mrkdwn, even in the middle of a word.

    Slack only honours ``*`` at a word boundary; a zero-width space supplies one whenever the
    hit touches anything but a space (a term "sanction" inside "sanctions", a hit after an
    escaped ``&amp;`` or a look-alike).  ``before`` is the text already written and ``after``
    the escaped text that follows, so the check sees what Slack will see.
    """
    core = text.strip()
    if not core:
        return text
    lead = text[: len(text) - len(text.lstrip())]
    tail = text[len(text.rstrip()) :]
    lead = lead or ("" if _is_boundary(before[-1:]) else ZERO_WIDTH_SPACE)
    tail = tail or ("" if _is_boundary(after[:1]) else ZERO_WIDTH_SPACE)
    return f"{lead}*{core}*{tail}"


def _slack_quote(found: Quote) -> str:
    """The quote as a mrkdwn block quote, every hit bold and every other character literal."""
    runs = found.segments
    escaped = [mrkdwn_escape(segment.text) for segment in runs]
    end = ELLIPSIS if found.clipped_end else ""
    out = "> " + (ELLIPSIS if found.clipped_start else "")
    for index, segment in enumerate(runs):
        if segment.hit:
            after = escaped[index + 1] if index + 1 < len(runs) else end
            out += _slack_bold(escaped[index], out, after)
        else:
            out += escaped[index]
    return clip(out + end, SLACK_SECTION_CHARS)


def _slack_english(match: Match) -> str | None:
    """The headline in English (or "translation unavailable"), for under the original."""
    title = english_title(match)
    if not title:
        return None
    note = machine_note(match)
    line = f"English: {slack_text(title, 4 * TITLE_CHARS)}"
    return clip(line + (f" ({slack_text(note, 200)})" if note else ""), SLACK_SECTION_CHARS)


def _slack_english_quote(match: Match) -> str | None:
    """The quoted sentence in English, as a block quote under the original one."""
    text = english_quote(match)
    return clip(f"> English: {slack_text(text, 2000)}", SLACK_SECTION_CHARS) if text else None


def _slack_gloss(match: Match) -> str | None:
    gloss = gloss_text(match)
    return f"Gloss: {slack_text(gloss, SLACK_CONTEXT_CHARS - 10)}" if gloss else None


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _slack_terms(match: Match) -> str:
    """The matched terms, as many as fit, then how many more there were.

    Terms are escaped like feed text: a term such as ``@kazakhstan:Kazakh*`` is shown with its
    asterisk, not as the start of bold.
    """
    text = "Matched:"
    terms = match.terms
    for shown, term in enumerate(terms):
        label = slack_text(term, 200) or "(blank)"
        piece = f" *{label}*" + ("," if shown + 1 < len(terms) else "")
        if len(text) + len(piece) > SLACK_CONTEXT_CHARS - 30:
            return f"{text} {ELLIPSIS} (+{len(terms) - shown} more)"
        text += piece
    return text if terms else "Matched: (none)"


def _slack_rule(match: Match) -> str:
    """Which rule and rule set made the alert: ids as code, the rule's own title as text.

    The title is the rule's, not the headline: a follow-up says why on its own line.
    """
    rule = _slack_identifier(match.rule_id, 200)
    title = slack_text(match.rule_title, 300) or rule
    version = _slack_identifier(match.rule_version, 100) or "unknown"
    also = "".join(
        f" · also {_slack_identifier(note.rule_id, 200)} ({slack_text(note.label, 300)})"
        for note in match.also
    )
    return clip(f"Rule {rule} ({title}){also} · rule set {version}", SLACK_CONTEXT_CHARS)


def _slack_origin(match: Match) -> str:
    source = slack_text(match.item.source, 300) or "unknown source"
    when = format_time(match.item.published)
    return f"*{source}* · {when} · severity *{match.severity.label}*"


def _slack_fallback(match: Match) -> str:
    """The notification text: what a phone or a screen reader shows instead of the blocks.

    The article's title comes first, then severity and rule: a notification shows only its
    first words, and the title is what tells a reader whether to open it.
    """
    title = clip(clean_line(match.item.title), TITLE_CHARS) or "(untitled)"
    english = english_summary(match)
    if english:  # a foreign headline: its English (or gloss) right after it
        title = f"{title} ({clip(english, TITLE_CHARS)})"
    rule = clean_line(match.headline) or clean_line(match.rule_id) or "alert"
    if match.also:
        rule = f"{rule}; also {also_text(match)}"
    return slack_text(f"{title} — [{match.severity.name}] {rule}", SLACK_TEXT_CHARS)


def slack_header(match: Match) -> str:
    """The header line: plain text (Slack parses no markup there), so it is only cleaned.

    It names the rule and marks a follow-up or an update; why a story is followed up is the
    first line of the story section, so it is said once.
    """
    rule = clean_line(match.rule_title) or clean_line(match.rule_id) or "alert"
    marker = ("Updated: " if match.update else "") + ("Follow-up: " if match.follow_up else "")
    emoji = SEVERITY_EMOJI.get(match.severity, "")
    return clip(f"{emoji} {match.severity.name} · {marker}{rule}".strip(), SLACK_HEADER_CHARS)


def _slack_keyword(word: str) -> str:
    """A source kind as the config spells it (``state_media``), else escaped as text.

    An underscore between two letters is inside a word, where Slack never starts or ends
    italics, so a keyword is shown as typed; anything else is escaped like feed text.
    """
    cleaned = clean_line(word)
    return cleaned if _KEYWORD.fullmatch(cleaned) else mrkdwn_escape(cleaned)


def _escaped_note(note: SourceNote) -> SourceNote:
    return replace(
        note,
        source=mrkdwn_escape(clean_line(note.source)),
        kind=_slack_keyword(note.kind),
        country=mrkdwn_escape(clean_line(note.country)),
        lang=mrkdwn_escape(clean_line(note.lang)),
    )


def _clip_escaped(text: str, limit: int) -> str:
    """Clip escaped text visibly without leaving half an entity (``&am…``) behind."""
    if len(text) <= limit:
        return text
    cut = re.sub(r"&[a-z]*$", "", text[: max(limit - 1, 0)])
    return cut.rstrip() + ELLIPSIS


def _slack_sources(notes: Sequence[SourceNote], limit: int) -> str:
    """Sources in one line as ``source_label`` writes them, escaped, cut visibly after 20."""
    shown = [source_label(_escaped_note(note)) for note in notes[:PROVENANCE_SHOWN]]
    more = f" (+{len(notes) - PROVENANCE_SHOWN} more)" if len(notes) > PROVENANCE_SHOWN else ""
    return _clip_escaped("; ".join(shown) + more, limit)


def _slack_follow_up(match: Match) -> str:
    """One line for a follow-up: why it was sent, then which story it follows."""
    line = f"Follow-up ({slack_text(match.follow_up or '', 300)})"
    story = slack_text(story_text(match), 4 * TITLE_CHARS)
    return f"{line} · Story: *{story}*" if story else line


def _slack_story(match: Match) -> str | None:
    """The follow-up line and the story's provenance, for a story's alert and follow-ups."""
    lines = [_slack_follow_up(match)] if match.follow_up else []
    if match.provenance:
        lines.append(f"Sources ({len(match.provenance)}): {_slack_sources(match.provenance, 1500)}")
        new = [note for note in match.provenance if note.new]
        if match.follow_up and new:
            lines.append(f"New since the last message: *{_slack_sources(new, 800)}*")
    return clip("\n".join(lines), SLACK_SECTION_CHARS) if lines else None


def slack_alert_context(match: Match) -> dict[str, Any]:
    """What ``slack_alert.j2`` sees: pieces already escaped for mrkdwn are ``Markup``.

    The template's own escaping (``finalize``) only knows ``&<>``, so the feed's text handed
    to a template (``title``, ``source``, and ``rule_title``) is escaped here, markers included:
    an edited template cannot let a feed bold or strike text either.  ``severity``,
    ``rule_id`` and ``link`` stay plain values for ``finalize`` (a link must keep its ``_``).
    """
    found = quote(match)
    story = _slack_story(match)
    english, english_quoted, gloss = (
        _slack_english(match),
        _slack_english_quote(match),
        _slack_gloss(match),
    )
    return {
        "english": safe(english) if english is not None else None,
        "english_quote": safe(english_quoted) if english_quoted is not None else None,
        "gloss": safe(gloss) if gloss is not None else None,
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
        "title": safe(slack_text(clip(clean_line(match.item.title), TITLE_CHARS), 4 * TITLE_CHARS)),
        "source": safe(slack_text(match.item.source, 300)),
        "severity": match.severity.name,
        "rule_id": match.rule_id,
        "rule_title": safe(slack_text(match.headline, 300)),
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


def _slack_line(match: Match) -> str:
    """One alert as one mrkdwn line: severity, linked headline, source."""
    emoji = SEVERITY_EMOJI.get(match.severity, "")
    source = slack_text(match.item.source, 100) or "unknown source"
    english = english_summary(match)
    tail = f" · {slack_text(english, 300)}" if english else ""
    return f"{emoji} {_slack_headline(match.item)} · {source}{tail}"


def slack_group_payload(
    matches: Sequence[Match],
    after_each: Callable[[int, Match], list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Several alerts in one message: a burst coalesced so Slack sees one post, not many.
    ``after_each(number, match)`` gives blocks to follow each alert, ``number`` unique in
    the message (the Slack app's buttons; at 4 blocks an alert, ``GROUP_MAX`` alerts still
    fit in 50)."""
    shown = list(matches[:GROUP_MAX])
    top = max(m.severity for m in shown)
    header = clip(f"{SEVERITY_EMOJI.get(top, '')} {len(shown)} alerts".strip(), SLACK_HEADER_CHARS)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header}}
    ]
    for match in shown:
        found = quote(match)
        english = _slack_english(match)
        body = (
            _slack_headline(match.item)
            + (f"\n{english}" if english else "")
            + (f"\n{_slack_quote(found)}" if found else "")
        )
        blocks += [
            {"type": "divider"},
            {"type": "section", "text": _mrkdwn(clip(body, SLACK_SECTION_CHARS))},
            {
                "type": "context",
                "elements": [_mrkdwn(_slack_origin(match)), _mrkdwn(_slack_rule(match))],
            },
        ]
        if after_each is not None:
            blocks += after_each(len(blocks), match)
    fallback = "; ".join(_slack_fallback(m) for m in shown)
    return {
        "text": clip(fallback, SLACK_TEXT_CHARS),
        "blocks": blocks[:SLACK_MAX_BLOCKS],
        "unfurl_links": False,
        "unfurl_media": False,
    }


DIGEST_POST_CHARS = 30_000
"""Most characters of sections in one digest post: Slack truncates a message past 40,000."""
DIGEST_LINE_CHARS = 2_000
"""Most characters of one digest line (a headline's link can be long), so a line always fits
a section with its topic's heading."""


def slack_digest_payload(digest: Digest) -> dict[str, Any]:
    """A digest's first post (the only one, unless it is too long for one message)."""
    return slack_digest_payloads(digest)[0]


def slack_digest_payloads(digest: Digest) -> list[dict[str, Any]]:
    """A digest as Slack posts: every alert listed, by topic, in as few posts as Slack's
    limits allow (sections of 3,000 characters, 50 blocks a message), each post marked
    "part 2 of 3" when there are several.  The email digest of the same window lists all of
    them too; nothing is cut to "… and 285 more"."""
    posts = _pack_posts(_digest_sections(digest))
    return [
        _digest_post(digest, sections, part, len(posts))
        for part, sections in enumerate(posts, start=1)
    ]


def _digest_sections(digest: Digest) -> list[str]:
    """Each topic's heading and alert lines, cut into sections of at most 3,000 characters;
    a topic that goes on in another section says so ("(cont.)")."""
    sections: list[str] = []
    for topic, matches in digest.groups:
        name = slack_text(topic, 200)
        current = f"*{name}* ({len(matches)})"
        for match in matches:
            line = clip(_slack_line(match), DIGEST_LINE_CHARS)
            if len(current) + 1 + len(line) > SLACK_SECTION_CHARS:
                sections.append(current)
                current = f"*{name}* (cont.)"
            current += "\n" + line
        sections.append(current)
    return sections


def _pack_posts(sections: list[str]) -> list[list[str]]:
    """Sections into posts: at most 49 (a header takes one block) and ``DIGEST_POST_CHARS``
    characters each, in order."""
    posts: list[list[str]] = [[]]
    size = 0
    for section in sections:
        full = len(posts[-1]) >= SLACK_MAX_BLOCKS - 1 or size + len(section) > DIGEST_POST_CHARS
        if posts[-1] and full:
            posts.append([])
            size = 0
        posts[-1].append(section)
        size += len(section)
    return posts


def _digest_post(digest: Digest, sections: list[str], part: int, parts: int) -> dict[str, Any]:
    of = f" · part {part} of {parts}" if parts > 1 else ""
    header = clip(
        f"Digest · {digest.count} alerts · {digest.local_close()}{of}", SLACK_HEADER_CHARS
    )
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header}}
    ]
    blocks += [{"type": "section", "text": _mrkdwn(section)} for section in sections]
    text = f"Digest: {digest.count} alerts until {digest.local_close()}"
    if parts > 1:
        text += f" (part {part} of {parts})"
    return {
        "text": slack_text(text, SLACK_TEXT_CHARS),
        "blocks": blocks,
        "unfurl_links": False,
        "unfurl_media": False,
    }
