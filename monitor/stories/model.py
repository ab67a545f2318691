"""The frozen data of stories: sources' provenance, a story, and what one item changed in it.

Pure (standard library only), like ``monitor.model``; the follow-up and corroboration
decisions that read these classes live here too, so delivery can ask them without I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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


def alert_now(update: StoryUpdate, min_sources: int = 1, official: bool = False) -> bool:
    """Pure: is this the item that makes a story alert, for a rule asking for ``min_sources``
    independent sources (or, with ``official``, an official source as enough on its own)?

    True for exactly one item of a story: the one that first satisfies the rule.  With the
    default (one source) that is the story's first item; later reprints never alert again.
    """
    if update.duplicate:
        return False
    before = update.independent - (1 if update.new_owner else 0)
    satisfied_before = before >= min_sources or (official and update.had_official)
    if satisfied_before:
        return False
    reached = update.independent >= min_sources
    official_arrived = official and update.kind == "official"
    return reached or official_arrived


def corroborated(story: Story, min_sources: int, official: bool = False) -> bool:
    """Pure: does the story satisfy a rule's ``min_sources: N`` (independent owner groups)
    or, with ``official``, have an official source?  Either condition suffices when both are
    asked, since an official statement confirms an event on its own."""
    if official and "official" in story.kinds:
        return True
    return len(story.owners) >= min_sources
