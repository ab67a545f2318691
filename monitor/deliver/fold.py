"""One message per rule and story for the matches a delivery pass reads together.

When several reports of one event are queued at once (a first poll, a catch-up after an
outage, one event in three feeds polled together), stories make the first report the rule's
alert and each later one a follow-up ("new language", "corroborated by 3 independent
sources").  Sent one by one, the desk gets three messages about one event within a second.
Read in one pass, they are folded: the earliest entry of each (story, rule) carries the
message, with the sources of every folded entry and the highest severity among them; the
others are recorded as suppressed and acknowledged, as a throttled reprint is.

Pure: entries in, entries out.  Retries (entries limited to some channels), entries a dead
worker left behind (``claimed``: it may have sent them already, so they can carry nothing
new) and matches without a story are never folded.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from monitor.deliver.queue import QueuedMatch
from monitor.model import Match, SourceNote


@dataclass(frozen=True, slots=True)
class Folded:
    """A pass's entries after folding: ``send`` to deliver (carriers hold the merged match),
    and each folded entry with the entry id of the message that carries it."""

    send: tuple[QueuedMatch, ...]
    folded: tuple[tuple[QueuedMatch, str], ...] = ()


def fold_story_updates(entries: Sequence[QueuedMatch], claimed: Collection[str] = ()) -> Folded:
    """Fold the entries of one (story, rule) into the earliest of them, keeping order;
    entries whose id is in ``claimed`` are sent as they are."""
    groups: dict[tuple[str, str], list[QueuedMatch]] = {}
    for entry in entries:
        key = None if entry.entry_id in claimed else _fold_key(entry)
        if key is not None:
            groups.setdefault(key, []).append(entry)
    carriers: dict[str, QueuedMatch] = {}
    folded: list[tuple[QueuedMatch, str]] = []
    for group in groups.values():
        if len(group) < 2:
            continue
        first, rest = group[0], group[1:]
        carriers[first.entry_id] = _carrier(first, rest)
        folded.extend((entry, first.entry_id) for entry in rest)
    gone = {entry.entry_id for entry, _ in folded}
    send = tuple(
        carriers.get(entry.entry_id, entry) for entry in entries if entry.entry_id not in gone
    )
    return Folded(send, tuple(folded))


def _fold_key(entry: QueuedMatch) -> tuple[str, str] | None:
    match = entry.match
    if entry.only or match is None or not match.story:
        return None
    return match.story, match.rule_id


def _carrier(first: QueuedMatch, rest: Sequence[QueuedMatch]) -> QueuedMatch:
    """The first entry, its match telling what the whole group tells; ``raw`` follows, so
    a retry or a dead letter of the carrier keeps the merged message."""
    assert first.match is not None
    matches = [first.match, *(entry.match for entry in rest if entry.match is not None)]
    merged = merge_story_messages(matches)
    raw = json.dumps(merged.to_dict(), ensure_ascii=False)
    return dataclasses.replace(first, match=merged, raw=raw)


def merge_story_messages(matches: Sequence[Match]) -> Match:
    """One message for several messages of a rule about one story, earliest first.

    The story's alert stays an alert (the follow-ups it absorbs were news only against it);
    a run of follow-ups becomes one follow-up naming each reason once.  Sources: every one
    listed by any message, first seen first, ``new`` when any message marked it new.
    Severity: the highest (an escalation folded in raises the message).
    """
    first = matches[0]
    follow_up = None
    if first.follow_up:
        reasons = [m.follow_up for m in matches if m.follow_up]
        follow_up = "; ".join(dict.fromkeys(reasons))
    return dataclasses.replace(
        first,
        severity=max(m.severity for m in matches),
        follow_up=follow_up,
        provenance=merge_provenance([m.provenance for m in matches], keep_new=bool(follow_up)),
        story_title=next((m.story_title for m in matches if m.story_title), ""),
    )


def merge_provenance(
    lists: Sequence[Sequence[SourceNote]], *, keep_new: bool
) -> tuple[SourceNote, ...]:
    """Every source of ``lists`` once, in first-seen order; ``new`` kept only for a
    follow-up (an alert's sources are all news to the desk)."""
    notes: dict[str, SourceNote] = {}
    for provenance in lists:
        for note in provenance:
            known = notes.get(note.source)
            new = keep_new and (note.new or (known is not None and known.new))
            notes[note.source] = dataclasses.replace(known or note, new=new)
    return tuple(notes.values())
