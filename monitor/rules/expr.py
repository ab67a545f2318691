"""The rule language as frozen data: terms, term-set references, match groups, examples, rules.

These are what the loader produces and the evaluator reads; no YAML mapping travels past the
loader.  Term-set references are resolved at load time, so an expression tree is complete on
its own and any evaluator (this package's reference one, or a faster index) can run it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from monitor.errors import Location
from monitor.model import Item, Severity
from monitor.rules.terms import Word, parse_term, term_pattern

_NOWHERE = Location("<memory>")


@dataclass(frozen=True, slots=True)
class Term:
    """One term: the text as the analyst wrote it, its folded words and the pattern that finds
    them.  ``set_name`` is the term set it came from, if any, so a hit can say "@set:term"."""

    written: str
    words: tuple[Word, ...]
    pattern: re.Pattern[str] = field(compare=False, repr=False)
    case: bool = False
    set_name: str | None = None

    @classmethod
    def parse(cls, written: str, *, case: bool = False, set_name: str | None = None) -> Term:
        """Build a term; raises ``TermSyntaxError`` when it cannot be used as written."""
        words = parse_term(written, case=case)
        return cls(written.strip(), words, term_pattern(words), case, set_name)

    @property
    def label(self) -> str:
        """How hits name this term: as written, prefixed "@set:" when it came from a set."""
        if self.set_name is None:
            return self.written
        return f"@{self.set_name}:{self.written}"


@dataclass(frozen=True, slots=True)
class TermSet:
    """A named list of terms, shared by every rule file and referenced as ``@name``."""

    name: str
    terms: tuple[Term, ...]
    location: Location = field(default=_NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class SetRef:
    """A reference ``@name`` in a rule, resolved to the set's terms; matches if any term does."""

    name: str
    terms: tuple[Term, ...]

    @property
    def label(self) -> str:
        return f"@{self.name}"


@dataclass(frozen=True, slots=True)
class Group:
    """``all``: every child matches; ``any``: at least one does (when given); ``none``: no child
    does.  The loader guarantees ``all_of`` or ``any_of`` is non-empty."""

    all_of: tuple[Node, ...] = ()
    any_of: tuple[Node, ...] = ()
    none_of: tuple[Node, ...] = ()


Node = Term | SetRef | Group


@dataclass(frozen=True, slots=True)
class Example:
    """A text a rule must (or must not) match; checked by lint so rules carry their own tests."""

    title: str
    summary: str
    should_match: bool
    location: Location = field(default=_NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class Rule:
    """One alerting rule, validated and with its term sets resolved."""

    id: str
    title: str
    severity: Severity
    match: Group
    description: str = ""
    tags: tuple[str, ...] = ()
    owner: str | None = None
    enabled: bool = True
    sources: tuple[str, ...] = ()
    route: tuple[str, ...] = ()
    examples: tuple[Example, ...] = ()
    location: Location = field(default=_NOWHERE, compare=False)

    def applies_to(self, item: Item) -> bool:
        """Whether the rule watches the item's feed: no ``sources`` means every feed; otherwise
        the feed's name or one of its tags must be listed (ignoring case)."""
        if not self.sources:
            return True
        wanted = {source.casefold() for source in self.sources}
        feeds = (item.source, *item.source_tags)
        return any(feed.casefold() in wanted for feed in feeds)
