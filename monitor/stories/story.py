"""The frozen data of stories: sources' provenance, a story, and what one item changed in it.

Pure (standard library only), like ``monitor.model``; the follow-up and corroboration
decisions that read these classes live here too, so delivery can ask them without I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from monitor.model import SourceNote

SOURCE_KINDS = ("wire", "state_media", "trade_press", "official", "blog", "news")


@dataclass(frozen=True, slots=True)
class SourceMeta:
    """Provenance of a feed: who publishes it.

    ``owner`` groups sister outlets (a Xinhua wire and its Chinese-language site, Sohu
    reprinting Xinhua is *not* an owner group: Sohu is a portal): two items from one owner
    are one independent source.  Unset, a feed is its own owner.
    """

    name: str
    kind: str = "news"
    country: str = ""
    owner: str = ""

    @property
    def group(self) -> str:
        return self.owner or self.name


@dataclass(frozen=True, slots=True)
class StoryItem:
    """One member of a story, as the story remembers it (not the whole item)."""

    item_id: str
    source: str
    lang: str
    title: str
    link: str
    published: datetime
    seen_at: datetime
    kind: str = "news"
    owner: str = ""
    country: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.item_id,
            "source": self.source,
            "lang": self.lang,
            "title": self.title,
            "link": self.link,
            "published": self.published.astimezone(UTC).isoformat(),
            "seen_at": self.seen_at.astimezone(UTC).isoformat(),
            "kind": self.kind,
            "owner": self.owner,
            "country": self.country,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoryItem:
        return cls(
            item_id=str(data["id"]),
            source=str(data.get("source") or ""),
            lang=str(data.get("lang") or ""),
            title=str(data.get("title") or ""),
            link=str(data.get("link") or ""),
            published=datetime.fromisoformat(str(data["published"])),
            seen_at=datetime.fromisoformat(str(data["seen_at"])),
            kind=str(data.get("kind") or "news"),
            owner=str(data.get("owner") or ""),
            country=str(data.get("country") or ""),
        )


@dataclass(frozen=True, slots=True)
class Story:
    """Items reporting one event, with where they came from.

    ``owners`` are the independent sources (owner groups); ``kinds`` the source kinds seen.
    """

    id: str
    first_seen: datetime
    last_seen: datetime
    items: tuple[StoryItem, ...]

    @property
    def title(self) -> str:
        """The headline of the first item: what the story was first known as."""
        return self.items[0].title if self.items else ""

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i.source for i in self.items))

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i.lang for i in self.items if i.lang))

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i.kind for i in self.items))

    @property
    def owners(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i.owner or i.source for i in self.items))

    def provenance(self) -> list[str]:
        """One line per source, first seen first: what an alert shows under the headline."""
        lines: dict[str, str] = {}
        for item in sorted(self.items, key=lambda i: i.seen_at):
            if item.source not in lines:
                where = f", {item.country}" if item.country else ""
                lines[item.source] = f"{item.source} ({item.kind}{where}, {item.lang or '?'})"
        return list(lines.values())


@dataclass(frozen=True, slots=True)
class StoryUpdate:
    """What adding one item did to its story, decided atomically in the store.

    Each ``new_*`` flag is True for exactly one item of a story even with several replicas
    (the store sets it with HSETNX in one script), so a follow-up is sent once.
    ``independent`` is the number of owner groups after this item.
    """

    story_id: str
    item_id: str
    created: bool
    new_language: bool = False
    new_source: bool = False
    new_kind: bool = False
    new_owner: bool = False
    independent: int = 1
    duplicate: bool = False
    """The item was already in the story (a retry, or another replica's poll of it)."""
    kind: str = "news"
    """The kind of this item's source."""
    had_official: bool = False
    """The story had an item from an official source before this one."""


@dataclass(frozen=True, slots=True)
class FollowUpPolicy:
    """When a later item of an alerted story is worth telling analysts about."""

    on_new_language: bool = True
    on_new_kind: bool = True
    corroboration: int = 3
    """Tell when this many independent sources report the story (0: never)."""


def follow_up_reason(update: StoryUpdate, policy: FollowUpPolicy) -> str | None:
    """Pure: why this item deserves a follow-up message, or None to update silently.

    The first item of a story is its alert, not a follow-up.  Corroboration is told the one
    time the threshold is crossed (the owner count is exact, so only one item crosses it).
    """
    if update.created or update.duplicate:
        return None
    if policy.corroboration and update.new_owner and update.independent == policy.corroboration:
        return f"corroborated by {update.independent} independent sources"
    if policy.on_new_language and update.new_language:
        return "new language"
    if policy.on_new_kind and update.new_kind:
        return "new source kind"
    return None


@dataclass(frozen=True, slots=True)
class Gate:
    """What a rule asks of its story, as the store's settling script reads it.

    ``min_sources`` independent sources (0: not asked, for a rule that waits only for an
    official source), or with ``official`` an official source, before the rule alerts;
    ``escalate_at`` independent sources (0: never) before its alert is raised in severity.
    A rule without either alerts on its story's first item it matches.
    """

    min_sources: int = 1
    official: bool = False
    escalate_at: int = 0

    @property
    def keeps_match(self) -> bool:
        """Must the store keep the rule's first match in the story?  A held alert, or an
        escalation, may be told when an item the rule did not match arrives."""
        return self.min_sources != 1 or self.official or self.escalate_at > 0


def gate_for(min_sources: int, official: bool, escalate_at: int = 0) -> Gate:
    """The gate of a rule's keys: ``official: true`` alone waits for an official source;
    with ``min_sources`` too, either suffices (an official statement confirms an event on
    its own)."""
    wanted = 0 if official and min_sources <= 1 else max(min_sources, 1)
    return Gate(wanted, official, escalate_at)


def satisfied(gate: Gate, owners: int, has_official: bool) -> bool:
    """Pure: does a story with ``owners`` independent sources (and an official one, or not)
    meet the gate?  ``monitor.stories.store._SETTLE`` makes the same test in Lua."""
    enough = gate.min_sources > 0 and owners >= gate.min_sources
    return enough or (gate.official and has_official)


def escalates(gate: Gate, owners: int, has_official: bool) -> bool:
    """Pure: has a story reached the gate's escalation threshold (once it alerts)?"""
    return (
        gate.escalate_at > 0
        and owners >= gate.escalate_at
        and satisfied(gate, owners, has_official)
    )


def provenance(items: Sequence[StoryItem], told: int = -1) -> tuple[SourceNote, ...]:
    """Pure: a story's sources, first seen first, for an alert to list.

    ``told`` is how many items the story had at the rule's previous message (-1: none);
    a source whose first item came after those is marked ``new``, so a follow-up names what
    changed since the analysts last heard of the story.
    """
    notes: dict[str, SourceNote] = {}
    for position, item in enumerate(items):
        if item.source not in notes:
            notes[item.source] = SourceNote(
                source=item.source,
                kind=item.kind,
                country=item.country,
                lang=item.lang,
                new=0 <= told <= position,
            )
    return tuple(notes.values())


def corroborated(story: Story, min_sources: int, official: bool = False) -> bool:
    """Pure: does the story satisfy a rule's ``min_sources: N`` (independent owner groups)
    and ``official`` keys, read as ``gate_for`` reads them?"""
    return satisfied(gate_for(min_sources, official), len(story.owners), "official" in story.kinds)


@dataclass(frozen=True, slots=True)
class RuleState:
    """What one rule has done in a story, for ``monitor stories show``: the item that made it
    alert and the one that escalated it, or, while it holds its alert, what it waits for."""

    rule_id: str
    alerted_by: str | None = None
    escalated_by: str | None = None
    gate: Gate | None = None
    """The rule's gate as kept with its held (or escalating) match; None when not kept."""

    def describe(self, owners: int) -> str:
        """One line: alerted and escalated by which items, or held waiting for what."""
        if self.alerted_by is not None:
            said = f"alerted on {self.alerted_by}"
            if self.escalated_by is not None:
                said += f", escalated on {self.escalated_by}"
            return said
        wants = []
        if self.gate is not None and self.gate.min_sources > 0:
            wants.append(f"{self.gate.min_sources} independent sources (has {owners})")
        if self.gate is not None and self.gate.official:
            wants.append("an official source")
        return "held: waiting for " + (" or ".join(wants) or "corroboration")
