"""A loaded, validated set of rules: the unit that is swapped in whole and matched against items."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from monitor.model import Item, Match
from monitor.rules.engine import Engine
from monitor.rules.entities import Entity, Lexicon
from monitor.rules.expr import Rule, TermSet, Trend
from monitor.rules.gloss import glossed
from monitor.rules.match import ItemText, match_rule


@dataclass(frozen=True, slots=True, eq=False)
class RuleSet:
    """Rules plus the version that identifies their text.

    ``version`` is a short hash of the rule files' bytes, stamped on every ``Match`` so an alert
    can be traced to the exact rules that produced it.  Build one with ``load_rules``, which
    refuses the whole set if any file has any problem.
    """

    rules: tuple[Rule, ...]
    version: str
    term_sets: Mapping[str, TermSet] = field(default_factory=lambda: MappingProxyType({}))
    paths: tuple[str, ...] = ()
    trends: tuple[Trend, ...] = ()
    """Volume and first-mention rules over the matches of ``rules``."""
    entities: tuple[Entity, ...] = ()
    """The entity list that stories (and glosses) use: the entity files among the rule paths,
    or the shipped list when they hold none (``load_rules`` decides)."""
    entity_paths: tuple[str, ...] = ()
    """The files ``entities`` came from."""
    engine: Engine = field(init=False, repr=False)
    by_id: Mapping[str, Rule] = field(init=False, repr=False)
    """Rules by their exact id, for looking up the rule of a match."""

    lexicon: Lexicon = field(init=False, repr=False)
    """``entities`` compiled for finding them in text, swapped in with the rules."""

    def __post_init__(self) -> None:
        """Compile the index once, when the set is built: reloads swap in a ready set."""
        object.__setattr__(self, "engine", Engine(self.rules))
        object.__setattr__(self, "by_id", MappingProxyType({r.id: r for r in self.rules}))
        object.__setattr__(self, "lexicon", Lexicon(self.entities))

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def get(self, rule_id: str) -> Rule | None:
        """The rule with this id (ignoring case, as ids are unique ignoring case), or None."""
        wanted = rule_id.casefold()
        return next((rule for rule in self.rules if rule.id.casefold() == wanted), None)

    @property
    def needs_stories(self) -> tuple[Rule, ...]:
        """Enabled rules using keys that need stories (min_sources, official, escalate)."""
        return tuple(rule for rule in self.rules if rule.enabled and rule.story_keys)

    def match(self, item: Item) -> list[Match]:
        """Every enabled rule that watches the item's feed and matches it, in rule order.

        Pure: no clock, no I/O.  The compiled engine scans the item once and evaluates only
        the rules whose terms occurred; the result equals ``match_reference``.  Matches of
        a foreign-language item carry their English gloss (``gloss``).
        """
        return glossed(self.engine.match(item, self.version), self.lexicon)

    def match_reference(self, item: Item) -> list[Match]:
        """``match`` done the plain way: every rule evaluated on its own (tests and benchmarks
        compare the engine with it)."""
        text = ItemText(item)
        matches = (
            match_rule(rule, text, self.version)
            for rule in self.rules
            if rule.enabled and rule.applies_to(item)
        )
        return glossed([found for found in matches if found is not None], self.lexicon)
