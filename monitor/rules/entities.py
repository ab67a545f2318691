"""Named entities that identify an event across languages, compiled into a ``Lexicon``.

Rule term sets list the spellings of a *kind* of thing (every tungsten deposit in one set),
while clustering needs to know which spellings name the *same* thing ("Upper Kairakty",
"Верхнее Кайракты", "上凯拉克特"), so each entity is one real-world object with its names in
every language we read, plus the English name an English-reading desk sees.  Names use the
rule term syntax (``Kazakh*``), compiled by ``monitor.rules.terms`` so that matching folds
text exactly as rules do.

The entities themselves are data that analysts edit: ``rules/entities.yaml``, read by
``monitor.rules.entity_file``.  This module is pure: no files, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from monitor.rules.terms import parse_term, term_pattern
from monitor.rules.text import fold

#: How much sharing an entity of each kind says about two items reporting the same event.
#: A deposit or a company is specific; a ministry or a region speaks about many events; a
#: country or a commodity is the topic every watched story shares, so it is barely evidence.
KIND_WEIGHT: Mapping[str, float] = MappingProxyType(
    {
        "deposit": 1.5,
        "company": 1.5,
        "project": 1.5,
        "ministry": 1.0,
        "agency": 1.0,
        "place": 1.0,
        "country": 0.25,
        "commodity": 0.25,
    }
)
KINDS: tuple[str, ...] = tuple(KIND_WEIGHT)
"""The kinds an entity file may name; each has its weight above."""
GENERIC_KINDS = frozenset({"country", "commodity"})
"""Kinds too broad to find candidate stories by (every story about Kazakhstan would be one)."""


@dataclass(frozen=True, slots=True)
class Entity:
    """One real-world object and every spelling of it we expect in the news.

    ``names`` are the aliases in every script, in term syntax; ``english`` is the name shown
    to an English-reading desk (the gloss beside a foreign alert), never matched itself.
    """

    id: str
    kind: str
    names: tuple[str, ...]
    english: str = ""

    @property
    def weight(self) -> float:
        return KIND_WEIGHT.get(self.kind, 1.0)

    @property
    def generic(self) -> bool:
        return self.kind in GENERIC_KINDS

    @property
    def display(self) -> str:
        """The English name, or the first alias for an entity built without one."""
        return self.english or (self.names[0] if self.names else self.id)


class Lexicon:
    """Entities compiled for matching over folded text; finds the entity ids in a text.

    Each entity's names are one pattern, tried only when one of its names' anchor (the
    longest literal word of the name) occurs in the text: a substring test is a hundred times
    cheaper than a regex with word-boundary look-arounds, and most entities are absent from
    any one item.
    """

    def __init__(self, entities: Iterable[Entity]) -> None:
        self.entities: Mapping[str, Entity] = MappingProxyType({e.id: e for e in entities})
        self._patterns: dict[str, re.Pattern[str]] = {}
        self._anchors: list[tuple[str, str]] = []
        for entity in self.entities.values():
            alternatives: list[str] = []
            for name in sorted(entity.names, key=len, reverse=True):
                words = parse_term(name)
                alternatives.append(term_pattern(words).pattern)
                anchor = max((word.text for word in words), key=len)
                self._anchors.append((anchor, entity.id))
            if alternatives:
                self._patterns[entity.id] = re.compile("|".join(alternatives))

    def find(self, folded_text: str) -> frozenset[str]:
        """The ids of every entity named in ``folded_text`` (text already folded).

        A name found only inside a longer name of another entity does not count: "美国商务部"
        (the US Commerce Department) names the US department, not China's "商务部" it
        contains."""
        present = {entity for anchor, entity in self._anchors if anchor in folded_text}
        spans = {e: [m.span() for m in self._patterns[e].finditer(folded_text)] for e in present}
        found = {e: places for e, places in spans.items() if places}
        if len(found) < 2:
            return frozenset(found)
        kept: set[str] = set()
        for entity, places in found.items():
            others = [span for other, spans in found.items() if other != entity for span in spans]
            if not all(_within(place, others) for place in places):
                kept.add(entity)
        return frozenset(kept)

    def find_in(self, text: str) -> frozenset[str]:
        """``find`` for raw text."""
        return self.find(fold(text).text)

    def weight(self, entity_id: str) -> float:
        entity = self.entities.get(entity_id)
        return entity.weight if entity else 1.0

    def generic(self, entity_id: str) -> bool:
        entity = self.entities.get(entity_id)
        return entity.generic if entity else False

    def english(self, entity_id: str) -> str:
        """The English name of an entity, for glosses; the id itself for an unknown one (an
        id stored with an older item whose entity has since been removed from the file)."""
        entity = self.entities.get(entity_id)
        return entity.display if entity else entity_id


def _within(place: tuple[int, int], others: list[tuple[int, int]]) -> bool:
    """Pure: does a longer span of ``others`` hold ``place``?"""
    start, end = place
    return any(s <= start and end <= e and (e - s) > (end - start) for s, e in others)
