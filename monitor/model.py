"""The frozen data that flows through monitor: sources, items, rules, matches.

Only the standard library is used here, so every stage can depend on this module and nothing
in it can reach the network or the clock.  Raw feedparser dictionaries and YAML mappings never
travel past the module that parsed them; these classes do.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any


class Severity(enum.IntEnum):
    """How urgent a match is; ordered so that routes and escalation can compare levels."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r}; use one of {names}") from None


@dataclass(frozen=True, slots=True)
class PageSelectors:
    """CSS selectors that find news items on a section page of an outlet without a feed."""

    item: str
    title: str
    link: str = "a"
    date: str | None = None
    summary: str | None = None


@dataclass(frozen=True, slots=True)
class Source:
    """A feed (or page) the daemon polls, as the config describes it.

    ``allow_private`` lets redirects lead to loopback or private addresses; without it only a
    feed whose own URL is private may reach such addresses.  ``auth`` is (user, password) for
    HTTP basic auth and is kept out of ``repr`` so it cannot reach a log line.
    """

    name: str
    url: str
    interval: timedelta = timedelta(minutes=10)
    tags: tuple[str, ...] = ()
    timeout: timedelta = timedelta(seconds=30)
    max_bytes: int = 10 * 1024 * 1024
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    kind: str = "feed"
    page: PageSelectors | None = None
    auth: tuple[str, str] | None = field(default=None, repr=False)
    allow_private: bool = False
    max_items: int = 500


@dataclass(frozen=True, slots=True)
class Item:
    """One news item, cleaned: plain text, canonical link, UTC time.

    ``id`` is the item's identity across polls (see ``dedup.item_identity``); ``source`` is the
    name of the feed it came from and ``source_tags`` that feed's tags from the config, so that
    rules can be scoped to feeds or tags.  ``tags`` are the item's categories from the feed;
    ``alt`` is the alt text of its images, a line each, which rules search like the summary.
    """

    id: str
    source: str
    title: str
    summary: str
    link: str
    published: datetime
    lang: str | None = None
    guid: str | None = None
    tags: tuple[str, ...] = ()
    source_tags: tuple[str, ...] = ()
    alt: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "title": self.title,
            "summary": self.summary,
            "link": self.link,
            "published": self.published.astimezone(UTC).isoformat(),
            "lang": self.lang,
            "guid": self.guid,
            "tags": list(self.tags),
            "source_tags": list(self.source_tags),
            "alt": self.alt,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Item:
        return cls(
            id=str(data["id"]),
            source=str(data.get("source") or ""),
            title=str(data.get("title") or ""),
            summary=str(data.get("summary") or ""),
            link=str(data.get("link") or ""),
            published=parse_timestamp(data.get("published")),
            lang=data.get("lang") or None,
            guid=data.get("guid") or None,
            tags=tuple(data.get("tags") or ()),
            source_tags=tuple(data.get("source_tags") or ()),
            alt=str(data.get("alt") or ""),
        )


def parse_timestamp(value: object) -> datetime:
    """Read an ISO-8601 timestamp as an aware UTC datetime; naive times are taken as UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    else:
        raise ValueError(f"expected an ISO-8601 timestamp, got {value!r}")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class TermHit:
    """Where one rule term occurred: enough for an alert to quote and highlight it.

    ``start``/``end`` index into the item's field as stored on ``Item`` (``title``,
    ``summary``, ``alt``), so ``getattr(item, field)[start:end] == text``; for ``tags`` they
    index into the tags joined a line each.
    """

    term: str
    field: str
    start: int
    end: int
    text: str


def span_text(delta: timedelta) -> str:
    """A duration as people read it in an alert title: 45 s, 3.2 min, 1.5 h (never "0.0 h"
    for four minutes)."""
    seconds = max(0.0, delta.total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def short_span(delta: timedelta) -> str:
    """A duration as an operator reads it in a table: 45s, 12m, 3h, 2d (the CLI and the
    console; alert titles use ``span_text``)."""
    seconds = max(int(delta.total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def ago(moment: datetime | None, now: datetime) -> str:
    """'3m ago', or '-' for never."""
    return "-" if moment is None else f"{short_span(now - moment)} ago"


def ahead(moment: datetime | None, now: datetime) -> str:
    """'in 3m', or 'due' when the moment has come (or was never set)."""
    if moment is None or moment <= now:
        return "due"
    return f"in {short_span(moment - now)}"


@dataclass(frozen=True, slots=True)
class SourceNote:
    """One source of a story as an alert lists it (its provenance).

    ``new`` marks a source that joined the story since the rule's previous message about it,
    so a follow-up can say what changed.
    """

    source: str
    kind: str = "news"
    country: str = ""
    lang: str = ""
    new: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "country": self.country,
            "lang": self.lang,
            "new": self.new,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SourceNote:
        return cls(
            source=str(data.get("source") or ""),
            kind=str(data.get("kind") or "news"),
            country=str(data.get("country") or ""),
            lang=str(data.get("lang") or ""),
            new=bool(data.get("new")),
        )


@dataclass(frozen=True, slots=True)
class Translation:
    """A foreign alert's headline and quoted sentence in English, by a translation service.

    ``unavailable``: the service was asked but failed or missed its deadline, so the alert
    says "translation unavailable" and its gloss is the English it has.  A text that was
    not asked for (no quote) stays empty.  ``provider`` names the service, so a reader
    knows it is a machine's English.
    """

    title: str = ""
    quote: str = ""
    provider: str = ""
    unavailable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "quote": self.quote,
            "provider": self.provider,
            "unavailable": self.unavailable,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Translation:
        return cls(
            title=str(data.get("title") or ""),
            quote=str(data.get("quote") or ""),
            provider=str(data.get("provider") or ""),
            unavailable=data.get("unavailable") is True,
        )


@dataclass(frozen=True, slots=True)
class RuleNote:
    """Another rule that matched the same article, told in the same message (a message per
    article, see ``monitor.deliver.group``): what it is called, how severe, and whether its
    part of the message is a follow-up or an update."""

    rule_id: str
    title: str
    severity: Severity
    follow_up: str | None = None
    update: bool = False

    @property
    def label(self) -> str:
        """'Title (MEDIUM)', 'Title (LOW, follow-up: new language)'."""
        notes = [self.severity.name]
        if self.follow_up:
            notes.append(f"follow-up: {self.follow_up}")
        if self.update:
            notes.append("updated")
        return f"{self.title or self.rule_id} ({', '.join(notes)})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.rule_id,
            "title": self.title,
            "severity": self.severity.label,
            **({"follow_up": self.follow_up} if self.follow_up else {}),
            **({"update": True} if self.update else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuleNote:
        return cls(
            rule_id=str(data["id"]),
            title=str(data.get("title") or ""),
            severity=Severity.parse(str(data.get("severity") or "medium")),
            follow_up=str(data["follow_up"]) if data.get("follow_up") else None,
            update=data.get("update") is True,
        )


@dataclass(frozen=True, slots=True)
class Match:
    """A rule matched an item: the unit that is queued and delivered.

    ``rule_version`` identifies the rule set that produced it, so an alert can be traced back
    to the exact rule text.  ``route`` is the rule's own channel list, when it names one.
    ``story`` is the story the item joined (items reporting one event, across feeds and
    languages), when stories are on; ``follow_up`` says why a later item of an alerted story
    is worth telling (a new language, a new kind of source, corroboration reached).
    ``story_title`` and ``provenance`` (the story's sources, first seen first) are set on the
    messages of a story: its alert and its follow-ups.  ``explanation`` says why a trend
    (volume or first-mention rule) fired: what was counted, or which entity was first seen.
    """

    rule_id: str
    rule_title: str
    severity: Severity
    rule_version: str
    item: Item
    hits: tuple[TermHit, ...] = ()
    route: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    story: str | None = None
    follow_up: str | None = None
    story_title: str = ""
    provenance: tuple[SourceNote, ...] = ()
    explanation: str = ""
    update: bool = False
    """The item was republished with other words, and this rule matches only its new
    version: the alert says "Updated:" (see ``dedup.materially_changed``)."""
    gloss: str = ""
    """For an item not in English: what matched and what it names, in English
    ("Kazakhstan · tungsten · Upper Kairakty"), built offline at matching
    (``rules.gloss``)."""
    translation: Translation | None = None
    """The machine translation of the headline and quote, set by the delivery worker just
    before sending (``deliver.translate``); None when none was asked for."""
    also: tuple[RuleNote, ...] = ()
    """The other rules that matched this article and whose alerts share this message (one
    message per article, set by the delivery worker just before sending): each channel
    lists them under the headline."""

    @property
    def headline(self) -> str:
        """What an alert is called: the rule's title, marked when it follows up a story, and
        "Updated:" when it is about an edited item's new version."""
        headline = self.rule_title
        if self.follow_up:
            headline = f"Follow-up ({self.follow_up}): {self.rule_title}"
        return f"Updated: {headline}" if self.update else headline

    @property
    def terms(self) -> tuple[str, ...]:
        """The distinct terms that matched, in the order they first occurred."""
        return tuple(dict.fromkeys(hit.term for hit in self.hits))

    @property
    def key(self) -> str:
        """Identity of this match for idempotent delivery: one rule, one item."""
        return f"{self.rule_id}|{self.item.id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule_id,
            "rule_title": self.rule_title,
            "severity": self.severity.label,
            "rule_version": self.rule_version,
            "item": self.item.to_dict(),
            "hits": [
                {"term": h.term, "field": h.field, "start": h.start, "end": h.end, "text": h.text}
                for h in self.hits
            ],
            "route": list(self.route),
            "tags": list(self.tags),
            **({"story": self.story} if self.story else {}),
            **({"follow_up": self.follow_up} if self.follow_up else {}),
            **({"story_title": self.story_title} if self.story_title else {}),
            **(
                {"provenance": [note.to_dict() for note in self.provenance]}
                if self.provenance
                else {}
            ),
            **({"explanation": self.explanation} if self.explanation else {}),
            **({"update": True} if self.update else {}),
            **({"gloss": self.gloss} if self.gloss else {}),
            **({"translation": self.translation.to_dict()} if self.translation else {}),
            **({"also": [note.to_dict() for note in self.also]} if self.also else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Match:
        return cls(
            rule_id=str(data["rule"]),
            rule_title=str(data.get("rule_title") or data["rule"]),
            severity=Severity.parse(str(data.get("severity") or "info")),
            rule_version=str(data.get("rule_version") or ""),
            item=Item.from_dict(data["item"]),
            hits=tuple(
                TermHit(
                    term=str(h["term"]),
                    field=str(h["field"]),
                    start=int(h["start"]),
                    end=int(h["end"]),
                    text=str(h["text"]),
                )
                for h in data.get("hits") or ()
            ),
            route=tuple(data.get("route") or ()),
            tags=tuple(data.get("tags") or ()),
            story=str(data["story"]) if data.get("story") else None,
            follow_up=str(data["follow_up"]) if data.get("follow_up") else None,
            story_title=str(data.get("story_title") or ""),
            provenance=tuple(SourceNote.from_dict(n) for n in data.get("provenance") or ()),
            explanation=str(data.get("explanation") or ""),
            update=data.get("update") is True,
            gloss=str(data.get("gloss") or ""),
            translation=Translation.from_dict(data["translation"])
            if isinstance(data.get("translation"), Mapping)
            else None,
            also=tuple(RuleNote.from_dict(n) for n in data.get("also") or ()),
        )


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll of one feed did, for logs, the --once summary and feed health."""

    source: str
    status: str  # "ok", "not-modified", "skipped" (not due yet) or "error"
    http_status: int | None = None
    entries: int = 0
    new_items: int = 0
    matches: int = 0
    duration: float = 0.0
    error: str | None = None
    warnings: tuple[str, ...] = field(default=())
    matched_rules: tuple[str, ...] = field(default=())
    """The rule of each match queued (``matches`` of them), for per-rule counts."""
    host_wait: float = 0.0
    """Seconds the poll stood aside for its host's turn (``http.per_host``, ``http.host_gap``);
    not part of ``duration``, which is the poll's own work."""
