"""The rule language as frozen data: terms, regexes, set references, groups, examples, rules.

These are what the loader produces and the evaluator reads; no YAML mapping travels past the
loader.  Term-set references are resolved at load time, so an expression tree is complete on
its own and any evaluator (this package's reference one, or the compiled engine) can run it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from monitor.errors import Location
from monitor.model import Item, Severity
from monitor.rules.regex import Regex
from monitor.rules.terms import Word, parse_term, term_pattern

_NOWHERE = Location("<memory>")

#: The item fields a rule can look at (``in:``), in the order hits are reported.
FIELDS: tuple[str, ...] = ("title", "summary", "tags", "link", "source", "lang")
#: Where terms are looked for when no ``in:`` says otherwise.
DEFAULT_FIELDS: tuple[str, ...] = ("title", "summary")


@dataclass(frozen=True, slots=True)
class Term:
    """One term: the text as the analyst wrote it, its folded words and the pattern that finds
    them.  ``set_name`` is the term set it came from, if any, so a hit can say "@set:term"."""

    written: str
    words: tuple[Word, ...]
    pattern: re.Pattern[str] = field(compare=False, repr=False)
    case: bool = False
    set_name: str | None = None
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Hash once: terms key the per-item hit memo, looked up thousands of times."""
        identity = (self.written, self.words, self.case, self.set_name)
        object.__setattr__(self, "_hash", hash(identity))

    def __hash__(self) -> int:
        return self._hash

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
    """A named list of terms (and regexes), shared by every rule file, used as ``@name``."""

    name: str
    terms: tuple[Term | Regex, ...]
    location: Location = field(default=_NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class SetRef:
    """A reference ``@name`` in a rule, resolved to the set's terms (and regexes); matches if
    any of them does."""

    name: str
    terms: tuple[Term | Regex, ...]

    @property
    def label(self) -> str:
        return f"@{self.name}"


@dataclass(frozen=True, slots=True)
class Group:
    """``all``: every child matches; ``any``: at least one does (when given); ``none``: no child
    does.  The loader guarantees ``all_of`` or ``any_of`` is non-empty.  ``fields`` (``in:``)
    says which item fields the terms inside look at; None keeps the enclosing choice."""

    all_of: tuple[Node, ...] = ()
    any_of: tuple[Node, ...] = ()
    none_of: tuple[Node, ...] = ()
    fields: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Near:
    """Proximity: every entry is found in one field, in a stretch of text holding at most
    ``within`` words besides theirs (None: no limit) and, with ``sentence``, in one sentence."""

    of: tuple[Leaf | SetRef, ...]
    within: int | None = None
    sentence: bool = False
    fields: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class AtLeast:
    """Weighted evidence: at least ``count`` of the entries are found.  An ``@set`` entry counts
    each of its terms that is found; any other entry counts once."""

    count: int
    of: tuple[Node, ...]
    fields: tuple[str, ...] | None = None


Leaf = Term | Regex
Node = Term | Regex | SetRef | Group | Near | AtLeast


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
