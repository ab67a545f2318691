"""The compiled engine: all rules in one index, each item's text scanned once.

Every word of every term goes into an Aho-Corasick automaton (ahocorasick-rs; one for scripts
written with spaces, one for those without) and every regex into an RE2 set.  An item's fields
are folded and scanned once; each rule is indexed under a few of its keys and is evaluated only
when those keys occurred, which is what keeps the cost per item nearly flat from ten rules to
ten thousand (the presearcher idea of Lucene Monitor).

Necessary conditions, not guesses: for each rule the engine derives clauses (sets of keys) such
that the rule cannot match unless every clause has a key in the text.  Evaluation then runs the
reference logic (``match``), finding each term by trying its pattern only where its first word
occurs.  So the engine returns exactly what the reference evaluator returns; a property test
holds it to that.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import re2
from ahocorasick_rs import AhoCorasick

from monitor.model import Item, Match
from monitor.rules.expr import DEFAULT_FIELDS, AtLeast, Group, Near, Node, Rule, SetRef, Term
from monitor.rules.match import ItemText, leaves, match_rule
from monitor.rules.regex import Regex, options
from monitor.rules.terms import Word
from monitor.rules.text import UNSPACED_RANGES, Folded, fold, is_unspaced

_WORD = re.compile(r"[^\W_]+")

#: A set of keys of which at least one must occur in the text.
Clause = frozenset[int]
_FIRST = operator.itemgetter(0)
#: A quick test for text that may hold a script written without spaces.
_MAYBE_UNSPACED = re.compile(f"[{chr(UNSPACED_RANGES[0][0])}-\\U0010ffff]")
#: Which edges of a key must be word boundaries.
_ANYWHERE, _START, _WHOLE = 0, 1, 2
#: Bound on clauses made by spreading an ``any:`` over its entries' clauses; past it, one
#: looser clause (the union of each entry's narrowest) stands for them.
SPREAD_LIMIT = 16


@dataclass(frozen=True, slots=True)
class Counted:
    """At least ``count`` of ``groups`` must each have a key in the text (from ``at_least``)."""

    groups: tuple[Clause, ...]
    count: int

    def met(self, found: set[int]) -> bool:
        return sum(not group.isdisjoint(found) for group in self.groups) >= self.count


@dataclass(frozen=True, slots=True)
class Needs:
    """What the text must hold for a node to have any chance: every clause, every count."""

    clauses: tuple[Clause, ...] = ()
    counted: tuple[Counted, ...] = ()
    #: The keys of the one-key clauses, checked in one set operation.
    required: frozenset[int] = field(init=False, repr=False, compare=False)
    wider: tuple[Clause, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        required = frozenset(key for clause in self.clauses if len(clause) == 1 for key in clause)
        object.__setattr__(self, "required", required)
        object.__setattr__(self, "wider", tuple(c for c in self.clauses if len(c) > 1))

    def __add__(self, other: Needs) -> Needs:
        return Needs(self.clauses + other.clauses, self.counted + other.counted)

    def narrowest(self) -> Clause | None:
        """The clause with fewest keys (a count stands in as the union of its groups)."""
        options = [*self.clauses, *(frozenset().union(*c.groups) for c in self.counted)]
        return min(options, key=len) if options else None

    def met(self, found: set[int]) -> bool:
        """Plain loops: this runs for every rule a scan touches, and most fail at once."""
        if not self.required <= found:
            return False
        for clause in self.wider:
            if clause.isdisjoint(found):
                return False
        return not self.counted or all(counted.met(found) for counted in self.counted)


@dataclass(frozen=True, slots=True)
class _Indexed:
    """A rule with what its text must hold before it is worth evaluating."""

    number: int
    rule: Rule
    needs: Needs


class _RegexSet:
    """Regexes with one case setting, matched together by RE2 sets: one pass each.

    A set's automaton needs memory for all its patterns at once; a group that does not fit
    in ``SET_MEMORY`` is split in two until it does.  A pattern that fits in no set (it did
    compile alone) is reported as found in every text, so its rules are always evaluated:
    slower, never wrong."""

    SET_MEMORY = 64 << 20
    SET_SIZE = 256

    def __init__(self, *, case: bool) -> None:
        self.case = case
        self.keys: list[int] = []
        self._patterns: list[str] = []
        self._sets: list[tuple[Any, list[int]]] = []
        self._unfiltered: list[int] = []

    def add(self, regex: Regex, key: int) -> None:
        self._patterns.append(regex.written)
        self.keys.append(key)

    def compile(self) -> None:
        pairs = list(zip(self._patterns, self.keys, strict=True))
        for start in range(0, len(pairs), self.SET_SIZE):
            self._compile(pairs[start : start + self.SET_SIZE])

    def _compile(self, pairs: list[tuple[str, int]]) -> None:
        chosen = options(case=self.case)
        chosen.max_mem = self.SET_MEMORY
        compiled = re2.Set.SearchSet(chosen)
        for pattern, _key in pairs:
            compiled.Add(pattern)
        try:
            compiled.Compile()
        except re2.error:
            if len(pairs) == 1:
                self._unfiltered.append(pairs[0][1])
                return
            half = len(pairs) // 2
            self._compile(pairs[:half])
            self._compile(pairs[half:])
            return
        self._sets.append((compiled, [key for _pattern, key in pairs]))

    def found(self, text: str) -> list[int]:
        found = [
            keys[index] for compiled, keys in self._sets for index in compiled.Match(text) or ()
        ]
        return found + self._unfiltered


class Engine:
    """All enabled rules compiled into one index; ``match`` equals the reference evaluator."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self._strings: dict[str, int] = {}
        self.key_words: list[tuple[str, int]] = []
        #: Texts of spaced-script keys with every (key, edges) using them; unspaced texts.
        self._spaced_words: dict[str, list[tuple[int, int]]] = {}
        self._unspaced_words: dict[str, int] = {}
        self._regex_keys: dict[Regex, int] = {}
        self.term_keys: dict[Term, int | None] = {}
        self._word_keys: dict[Term, tuple[int, ...]] = {}
        self._regexes = {False: _RegexSet(case=False), True: _RegexSet(case=True)}
        self._index: dict[int, list[_Indexed]] = {}
        self._always: list[_Indexed] = []
        fields: set[str] = set()
        for number, rule in enumerate(rules):
            if rule.enabled:
                for leaf in _leaves_under(rule.match):
                    self._leaf_needs(leaf)
                self._add(_Indexed(number, rule, self._needs(rule.match)))
                fields.update(_fields_used(rule.match, DEFAULT_FIELDS))
        self.fields = tuple(sorted(fields))
        self._anchors = frozenset(self._index)
        self._spaced = _automaton(self._spaced_words)
        self._spaced_keys = [
            tuple(key for key, _edges in entries) for entries in self._spaced_words.values()
        ]
        self._prefix_keys = [
            tuple(key for key, edges in entries if edges == _START)
            for entries in self._spaced_words.values()
        ]
        self._unspaced = _automaton(self._unspaced_words)
        self._unspaced_keys = list(self._unspaced_words.values())
        for regexes in self._regexes.values():
            regexes.compile()

    @property
    def keys(self) -> int:
        """How many distinct keys (words of terms, and regexes) the index holds."""
        return len(self._strings) + len(self._regex_keys)

    def match(self, item: Item, version: str) -> list[Match]:
        """Every enabled rule that watches the item's feed and matches it, in rule order."""
        text = IndexedText(item, self)
        matches: list[Match] = []
        for indexed in self._candidates(text.found):
            if not indexed.rule.applies_to(item):
                continue
            result = match_rule(indexed.rule, text, version)
            if result is not None:
                matches.append(result)
        return matches

    def _candidates(self, found: set[int]) -> list[_Indexed]:
        """Rules indexed under a key that occurred whose needs the text meets, in rule order."""
        seen: set[int] = set()
        chosen = [indexed for indexed in self._always if indexed.needs.met(found)]
        for key in self._anchors.intersection(found):
            for indexed in self._index[key]:
                if indexed.number not in seen:
                    seen.add(indexed.number)
                    if indexed.needs.met(found):
                        chosen.append(indexed)
        chosen.sort(key=lambda indexed: indexed.number)
        return chosen

    def keys_in(self, folded: str) -> set[int]:
        """The keys that occur in one folded field.

        Words of scripts without spaces are plain substrings.  A word of a script written
        with spaces counts only where it starts a word and, for a whole word, ends one: the
        automaton finds substrings, this checks their edges.
        """
        found: set[int] = set()
        if not folded:
            return found
        if self._unspaced is not None and _MAYBE_UNSPACED.search(folded):
            matches = _all_matches(self._unspaced, folded)
            found.update(map(self._unspaced_keys.__getitem__, map(_FIRST, matches)))
        if self._spaced is None:
            return found
        size = len(folded)
        whole_or_prefix, prefix_only = self._spaced_keys, self._prefix_keys
        for index, start, end in _all_matches(self._spaced, folded):
            if start and folded[start - 1].isalnum():
                continue
            if end < size and folded[end].isalnum():
                found.update(prefix_only[index])
            else:
                found.update(whole_or_prefix[index])
        return found

    def regexes_found(self, text: ItemText, field: str) -> list[int]:
        """Keys of the regexes that match somewhere in the field."""
        found: list[int] = []
        for case, regexes in self._regexes.items():
            if regexes.keys:
                found.extend(regexes.found(text.folded(field, case=case).text))
        return found

    # -- building ----------------------------------------------------------------------------

    def _add(self, indexed: _Indexed) -> None:
        """Index a rule under its narrowest clause: the one with fewest keys."""
        anchor = indexed.needs.narrowest()
        if anchor is None:
            self._always.append(indexed)
            return
        for key in anchor:
            self._index.setdefault(key, []).append(indexed)

    def _needs(self, node: Node) -> Needs:
        """What the text must hold for ``node`` to match; nothing can be said for a ``none:``,
        which asks for absence, nor for a term whose words cannot be keys."""
        if isinstance(node, Term | Regex):
            return self._leaf_needs(node)
        if isinstance(node, SetRef):
            return self._either([self._leaf_needs(term) for term in node.terms])
        if isinstance(node, Group):
            needs = sum((self._needs(child) for child in node.all_of), Needs())
            if node.any_of:
                needs += self._either([self._needs(child) for child in node.any_of])
            return needs
        if isinstance(node, Near):
            return sum((self._needs(child) for child in node.of), Needs())
        return self._at_least(node)

    def _either(self, options: list[Needs]) -> Needs:
        """Needs met whenever any option's are: every way of picking one clause per option,
        joined, while there are at most ``SPREAD_LIMIT`` ways; else one looser clause."""
        spread: list[Clause] = [frozenset()]
        for option in options:
            clauses = [*option.clauses, *(frozenset().union(*c.groups) for c in option.counted)]
            if not clauses:
                return Needs()
            spread = [done | clause for done in spread for clause in clauses]
            if len(spread) > SPREAD_LIMIT:
                narrowest = (option.narrowest() for option in options)
                return Needs((frozenset().union(*(c for c in narrowest if c is not None)),))
        return Needs(tuple(dict.fromkeys(spread)))

    def _at_least(self, node: AtLeast) -> Needs:
        """At least ``count`` entries must match, so at least that many of their narrowest
        clauses must meet the text (entries with no clause may match anyway: they lower it)."""
        units: list[Clause] = []
        free = 0
        for child in node.of:
            parts = (
                [self._leaf_needs(term) for term in child.terms]
                if isinstance(child, SetRef)
                else [self._needs(child)]
            )
            for part in parts:
                narrowest = part.narrowest()
                if narrowest is None:
                    free += 1
                else:
                    units.append(narrowest)
        count = node.count - free
        if count <= 0:
            return Needs()
        if count == 1:
            return Needs((frozenset().union(*units),))
        return Needs(counted=(Counted(tuple(units), count),))

    def _leaf_needs(self, leaf: Term | Regex) -> Needs:
        if isinstance(leaf, Regex):
            return Needs((frozenset({self._regex_key(leaf)}),))
        if leaf not in self.term_keys:
            keys = [self._word_key(leaf, word) for word in leaf.words]
            self.term_keys[leaf] = keys[0]
            self._word_keys[leaf] = tuple(key for key in keys if key is not None)
        return Needs(tuple(frozenset({key}) for key in self._word_keys[leaf]))

    def _regex_key(self, regex: Regex) -> int:
        if regex not in self._regex_keys:
            key = -1 - len(self._regex_keys)
            self._regex_keys[regex] = key
            self._regexes[regex.case].add(regex, key)
        return self._regex_keys[regex]

    def _word_key(self, term: Term, word: Word) -> int | None:
        """The key of one word of a term: its folded text and which edges must be word
        boundaries (both for a whole word, the start for a prefix, none in Chinese and the
        like).  In a phrase every word is so bounded, since folding puts a space between
        scripts.  A case-sensitive term uses the case-folded word, a necessary condition;
        its hits are then found by the reference."""
        text = fold(word.text, case=False).text if term.case else word.text
        if not _WORD.fullmatch(text):
            return None
        edges = _ANYWHERE if is_unspaced(text[0]) else _START if word.prefix else _WHOLE
        string = f"{edges}{text}"
        if string not in self._strings:
            key = len(self._strings)
            self._strings[string] = key
            self.key_words.append((text, edges))
            if edges == _ANYWHERE:
                self._unspaced_words[text] = key
            else:
                self._spaced_words.setdefault(text, []).append((key, edges))
        return self._strings[string]


def _automaton(words: dict[str, Any]) -> AhoCorasick | None:
    return AhoCorasick(list(words)) if words else None


def _all_matches(automaton: AhoCorasick, text: str) -> list[tuple[int, int, int]]:
    """Every occurrence of every word, overlapping ones too: (word index, start, end)."""
    return automaton.find_matches_as_indexes(text, overlapping=True)


def _children(node: Group | Near | AtLeast) -> tuple[Node, ...]:
    if isinstance(node, Group):
        return (*node.all_of, *node.any_of, *node.none_of)
    return node.of


def _leaves_under(node: Node) -> Iterable[Term | Regex]:
    if isinstance(node, Term | Regex | SetRef):
        yield from leaves(node)
        return
    for child in _children(node):
        yield from _leaves_under(child)


def _fields_used(node: Node, fields: Sequence[str]) -> set[str]:
    """The item fields any term under ``node`` looks at."""
    if isinstance(node, Term | Regex | SetRef):
        return set(fields)
    fields = node.fields or fields
    return set().union(*(_fields_used(child, fields) for child in _children(node)))


class IndexedText(ItemText):
    """An item's text scanned through the engine's index: which keys occurred, and where."""

    def __init__(self, item: Item, engine: Engine) -> None:
        super().__init__(item)
        self._engine = engine
        self._starts: dict[tuple[str, int], list[int]] = {}
        self.found: set[int] = set()
        for name in engine.fields:
            self.found |= engine.keys_in(self.folded(name, case=False).text)
            self.found.update(engine.regexes_found(self, name))

    def _find_term(self, term: Term, field: str, folded: Folded) -> Iterable[tuple[int, int]]:
        """Try the term's pattern only where its first word occurs (case-sensitive terms:
        everywhere, as the reference does, since the scan saw their words case-folded)."""
        key = self._engine.term_keys.get(term)
        if term.case or key is None:
            return super()._find_term(term, field, folded)
        if key not in self.found:
            return ()
        return self._at_starts(term, folded.text, self._word_starts(field, key, folded.text))

    def _word_starts(self, field: str, key: int, text: str) -> list[int]:
        """Where a key's word occurs in the folded field, starting a word if its script
        writes spaces; found on demand, for the few terms of the rules being evaluated."""
        memo = (field, key)
        if memo not in self._starts:
            word, edges = self._engine.key_words[key]
            starts: list[int] = []
            start = text.find(word)
            while start >= 0:
                if not edges or not start or not text[start - 1].isalnum():
                    starts.append(start)
                start = text.find(word, start + 1)
            self._starts[memo] = starts
        return self._starts[memo]

    @staticmethod
    def _at_starts(term: Term, text: str, starts: Iterable[int]) -> Iterable[tuple[int, int]]:
        """Leftmost, non-overlapping matches, as ``finditer`` gives them."""
        done = 0
        for start in starts:
            if start < done:
                continue
            found = term.pattern.match(text, start)
            if found is not None:
                done = found.end()
                yield found.span()
