"""The rule language as frozen data: terms, regexes, set references, groups, examples, rules.

These are what the loader produces and the evaluator reads; no YAML mapping travels past the
loader.  Term-set references are resolved at load time, so an expression tree is complete on
its own and any evaluator (this package's reference one, or the compiled engine) can run it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

from monitor.errors import Location
from monitor.model import Item, Severity
from monitor.rules.regex import Regex
from monitor.rules.terms import Word, parse_term, term_pattern

_NOWHERE = Location("<memory>")

#: The item fields a rule can look at (``in:``), in the order hits are reported.
FIELDS: tuple[str, ...] = ("title", "summary", "alt", "tags", "link", "source", "lang")
#: Where terms are looked for when no ``in:`` says otherwise: what a reader sees of the item.
#: Image alt text is there because publishers often name the place or company only in it.
DEFAULT_FIELDS: tuple[str, ...] = ("title", "summary", "alt")


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
class Escalation:
    """Raise a rule's alert to ``severity`` once its story has ``sources`` independent
    sources (sister outlets sharing an owner count once)."""

    sources: int
    severity: Severity


@dataclass(frozen=True, slots=True)
class Rule:
    """One alerting rule, validated and with its term sets resolved.

    ``min_sources`` and ``official`` hold the rule's alert until its story is corroborated
    by that many independent sources, or (``official``) an official source reports it;
    either suffices when both are given.  They, and ``escalate``, need stories.
    """

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
    min_sources: int = 1
    official: bool = False
    escalate: Escalation | None = None

    @property
    def gated(self) -> bool:
        """Does the rule wait for corroboration before alerting?"""
        return self.min_sources > 1 or self.official

    @property
    def story_keys(self) -> tuple[str, ...]:
        """The keys this rule uses that only work with stories on (for the config check)."""
        used = (
            ("min_sources", self.min_sources > 1),
            ("official", self.official),
            ("escalate", self.escalate is not None),
        )
        return tuple(key for key, on in used if on)

    def applies_to(self, item: Item) -> bool:
        """Whether the rule watches the item's feed: no ``sources`` means every feed; otherwise
        the feed's name or one of its tags must be listed (ignoring case)."""
        if not self.sources:
            return True
        wanted = {source.casefold() for source in self.sources}
        feeds = (item.source, *item.source_tags)
        return any(feed.casefold() in wanted for feed in feeds)


# -- trends: rules about how often something is reported ------------------------------------


@dataclass(frozen=True, slots=True)
class Counted:
    """What a volume trend counts: the items a rule matches, or the items any rule with a
    tag matches (an item counts once however many of those rules match it)."""

    rule: str | None = None
    tag: str | None = None

    @property
    def label(self) -> str:
        return f"rule {self.rule}" if self.rule is not None else f"tag {self.tag}"


@dataclass(frozen=True, slots=True)
class Frequency:
    """Fire when ``window`` holds at least ``at_least`` counted items."""

    of: Counted
    at_least: int
    window: timedelta = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Spike:
    """Fire when ``window`` holds ``factor`` times what the trailing ``baseline`` predicts
    for one window, and at least ``min_count`` items."""

    of: Counted
    factor: float
    window: timedelta = timedelta(hours=1)
    baseline: timedelta = timedelta(days=7)
    min_count: int = 5


@dataclass(frozen=True, slots=True)
class FirstMention:
    """Fire the first time a term of the set ``entities`` occurs in an item ``rule`` matches.

    ``terms`` are the set's terms, resolved at load time; each term is one entity.
    """

    rule: str
    entities: str
    terms: tuple[Term | Regex, ...] = ()


Watch = Frequency | Spike | FirstMention


@dataclass(frozen=True, slots=True)
class Trend:
    """A rule about the flow of matches rather than one item: frequency, spike or first
    mention.  It alerts like a rule (``id`` is its rule id in alerts, routes and silences)."""

    id: str
    title: str
    severity: Severity
    watch: Watch
    description: str = ""
    tags: tuple[str, ...] = ()
    owner: str | None = None
    enabled: bool = True
    route: tuple[str, ...] = ()
    location: Location = field(default=_NOWHERE, compare=False)

    @property
    def rules(self) -> tuple[str, ...]:
        """The rule ids whose matches this trend watches directly (none for a tag)."""
        if isinstance(self.watch, FirstMention):
            return (self.watch.rule,)
        return (self.watch.of.rule,) if self.watch.of.rule is not None else ()
