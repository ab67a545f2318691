"""The compiled engine: all rules in one index, each item's text scanned once.

An item's fields are folded once and turned into their scan form (``text.scan_form``: one byte
a character, a space for every character that is not a letter or digit), in which one
Aho-Corasick automaton (ahocorasick-rs) finds every whole word ``" word "`` and prefix
``" stem"`` of every rule, word boundaries included, with no work in Python per occurrence.
Words of scripts without spaces (Chinese and the like) match as substrings, so a second
automaton scans the text for them when it holds such a script.  Each rule is indexed under a
few of its keys and is considered only when one of those occurred, which is what keeps the
cost per item nearly flat from ten rules to ten thousand (the presearcher idea of Lucene
Monitor).

Necessary conditions, not guesses: for each rule the engine derives clauses (sets of keys) such
that the rule cannot match unless every clause has a key in the text; a rule is evaluated only
when they all do, mostly decided by one set operation in C.  Regexes are keys too: those a rule
is indexed under run together in RE2 sets on every item, the others only when a rule that
needs them has met all its word keys.  Evaluation then runs the reference logic (``match``),
finding each term only where its first word occurs.  So the engine returns exactly what the
reference evaluator returns; property tests hold it to that.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any

import re2
from ahocorasick_rs import AhoCorasick, BytesAhoCorasick

from monitor.model import Item, Match
from monitor.rules.expr import (
    DEFAULT_FIELDS,
    AtLeast,
    Group,
    Leaf,
    Near,
    Node,
    Rule,
    SetRef,
    Term,
)
from monitor.rules.match import Hits, ItemText, leaves, match_rule
from monitor.rules.regex import Regex, options
from monitor.rules.terms import Word
from monitor.rules.text import (
    Folded,
    fold,
    is_unspaced,
    maybe_unspaced,
    scan_form,
    scan_form_of,
    scan_word,
)

_WORD = re.compile(r"[^\W_]+")
#: The first of a tuple (an automaton's pattern number), for ``map`` in C.
_FIRST = itemgetter(0)

#: A set of keys of which at least one must occur in the text.  Word keys count from 0,
#: regex keys from -1 down.
Clause = frozenset[int]
#: Which edges of a key must be word boundaries.
_ANYWHERE, _START, _WHOLE = 0, 1, 2
#: Bound on clauses made by spreading an ``any:`` over its entries' clauses; past it, one
#: looser clause (the union of each entry's narrowest) stands for them.
SPREAD_LIMIT = 16


def _has_regex(clause: Clause) -> bool:
    """Whether a clause holds a regex key (they count down from -1)."""
    return bool(clause) and min(clause) < 0


@dataclass(frozen=True, slots=True)
class Counted:
    """At least ``count`` of ``groups`` must each have a key in the text (from ``at_least``)."""

    groups: tuple[Clause, ...]
    count: int

    def clause(self) -> Clause:
        """One clause the count implies: if ``count`` of the n groups have a key in the text,
        any n - count + 1 of them hold one (so "2 of a, b, c, d" needs one of a, b, c)."""
        smallest = sorted(self.groups, key=len)[: len(self.groups) - self.count + 1]
        return frozenset().union(*smallest)


@dataclass(frozen=True, slots=True)
class Needs:
    """What the text must hold for a node to have any chance: every clause, every count."""

    clauses: tuple[Clause, ...] = ()
    counted: tuple[Counted, ...] = ()

    def __add__(self, other: Needs) -> Needs:
        return Needs(self.clauses + other.clauses, self.counted + other.counted)

    def options(self) -> list[Clause]:
        """Every clause, and a clause for each count (``Counted.clause``)."""
        return [*self.clauses, *(c.clause() for c in self.counted)]

    def narrowest(self) -> Clause | None:
        """The clause with fewest keys (a count stands in as the clause it implies)."""
        options = self.options()
        return min(options, key=len) if options else None

    def anchor(self, rarity: Callable[[int], int]) -> Clause | None:
        """The clause to index a rule under: one of words only if there is one, since words
        cost nothing more to look up while regexes must be run; then the fewest keys; then
        the rarest, by ``rarity`` of its commonest key (longer words are rarer, as Lucene
        Monitor's term weighting assumes), so that the rule is looked at on fewer items."""
        options = self.options()
        if not options:
            return None
        return min(options, key=lambda c: (_has_regex(c), len(c), -min(map(rarity, c), default=0)))


@dataclass(frozen=True, slots=True)
class _Either:
    """One clause as checked against an item: a key of ``keys`` occurs, or one of its
    ``regexes`` (the regex keys among them) matches when asked."""

    keys: Clause
    regexes: tuple[int, ...]

    @classmethod
    def of(cls, clause: Clause) -> _Either:
        return cls(clause, tuple(sorted((key for key in clause if key < 0), reverse=True)))

    def met(self, text: IndexedText) -> bool:
        return not self.keys.isdisjoint(text.found) or any(map(text.has_regex, self.regexes))


@dataclass(frozen=True, slots=True)
class _Rest:
    """Needs that may involve running a regex: required regexes, clauses holding regexes,
    and counts of groups that are not single words; checked last."""

    regexes: tuple[int, ...] = ()
    wider: tuple[_Either, ...] = ()
    counted: tuple[tuple[tuple[_Either, ...], int], ...] = ()

    def met(self, text: IndexedText) -> bool:
        if not all(map(text.has_regex, self.regexes)):
            return False
        for clause in self.wider:
            if not clause.met(text):
                return False
        return all(sum(group.met(text) for group in groups) >= n for groups, n in self.counted)


@dataclass(frozen=True, slots=True)
class _Indexed:
    """A rule with what its text must hold before it is worth evaluating, in the order it is
    checked, cheapest first: ``words`` that must all occur (one subset test rejects most
    rules), ``wider`` clauses of words (one of each must occur), ``counts`` of distinct
    words (at least so many must occur), and the ``rest``, which may run regexes."""

    number: int
    rule: Rule
    words: frozenset[int]
    wider: tuple[Clause, ...]
    counts: tuple[tuple[Clause, int], ...]
    rest: _Rest | None

    @classmethod
    def of(cls, number: int, rule: Rule, needs: Needs) -> _Indexed:
        single = {key for clause in needs.clauses if len(clause) == 1 for key in clause}
        clauses = [c for c in dict.fromkeys(needs.clauses) if len(c) > 1]
        wider = tuple(c for c in clauses if not _has_regex(c))
        counts: list[tuple[Clause, int]] = []
        counted: list[tuple[tuple[_Either, ...], int]] = []
        for count in needs.counted:
            keys = frozenset().union(*count.groups)
            distinct_words = len(keys) == len(count.groups) and not _has_regex(keys)
            if distinct_words and all(len(group) == 1 for group in count.groups):
                counts.append((keys, count.count))
                continue
            counted.append((tuple(_Either.of(group) for group in count.groups), count.count))
        rest = _Rest(
            tuple(sorted((key for key in single if key < 0), reverse=True)),
            tuple(_Either.of(c) for c in clauses if _has_regex(c)),
            tuple(counted),
        )
        words = frozenset(key for key in single if key >= 0)
        return cls(number, rule, words, wider, tuple(counts), rest if rest != _Rest() else None)

    def met(self, text: IndexedText) -> bool:
        """Whether the item meets every need (``Engine._candidates`` inlines this)."""
        found = text.found
        return (
            self.words <= found
            and all(not clause.isdisjoint(found) for clause in self.wider)
            and all(len(keys & found) >= count for keys, count in self.counts)
            and (self.rest is None or self.rest.met(text))
        )


#: An index entry: a rule's words, wider clauses and counts (see ``_Indexed``), and the rule.
_Entry = tuple[frozenset[int], tuple[Clause, ...], tuple[tuple[Clause, int], ...], _Indexed]
#: The rules filed under one key, as ``_Filed.frozen`` gives them.
_Lookup = tuple[
    tuple[int, ...],
    Clause | None,
    tuple[tuple[int, int], ...],
    tuple[tuple[Clause, int, int], ...],
    tuple[_Entry, ...],
]


@dataclass(slots=True)
class _Filed:
    """The rules filed under one key, apart by what else they need, so that a key that
    occurred leads only to the checks its rules need: nothing more (their numbers); one more
    word (its key, the rule's number); so many of a few words (the words, how many, the
    number); anything else (``_Entry``).

    The ``gate``: keys of which at least one must occur for any rule here but the sure ones
    to have a chance (each rule gives a word it needs besides this key).  An item's key
    nearly always occurs alone among its rules' words, so one ``isdisjoint`` in C usually
    settles all of them.  ``ungated`` when some rule offers no such word (it needs only
    regexes besides this key, say): then every rule here is checked."""

    sure: list[int] = field(default_factory=list)
    pairs: list[tuple[int, int]] = field(default_factory=list)
    counts: list[tuple[Clause, int, int]] = field(default_factory=list)
    general: list[_Entry] = field(default_factory=list)
    gate: set[int] = field(default_factory=set)
    ungated: bool = False

    def frozen(self) -> _Lookup:
        gate = None if self.ungated else frozenset(self.gate)
        return (
            tuple(self.sure),
            gate,
            tuple(self.pairs),
            tuple(self.counts),
            tuple(self.general),
        )

    def guard(self, key: int, indexed: _Indexed) -> None:
        """Add to the gate a clause the rule needs that ``key`` does not meet: one more of
        its words, else a wider clause without ``key``, else the other words of a count
        (every count is of two or more), of single words or of groups of spellings."""
        others = indexed.words - {key}
        if others:
            self.gate.add(min(others))
            return
        for clause in indexed.wider:
            if key not in clause:
                self.gate.update(clause)
                return
        if indexed.counts:
            keys, _count = indexed.counts[0]
            self.gate.update(keys - {key})
            return
        for groups, count in indexed.rest.counted if indexed.rest else ():
            # ``count`` groups must meet the text; when fewer hold ``key``, one without it
            # must too: a key of it is needed, if every group is words only (a group with
            # a regex may meet the text with no key).
            without = [group.keys for group in groups if key not in group.keys]
            if len(groups) - len(without) < count and not any(g.regexes for g in groups):
                self.gate.update(chain.from_iterable(without))
                return
        self.ungated = True


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
        enabled = [(number, rule) for number, rule in enumerate(rules) if rule.enabled]
        self._strings: dict[tuple[int, str], int] = {}
        self.key_words: list[tuple[str, int]] = []
        self._number_words(leaf for _number, rule in enabled for leaf in _leaves_under(rule.match))
        #: Regex keys by pattern and case: the same pattern in two sets is one key.
        self._regex_keys: dict[tuple[str, bool], int] = {}
        self._regex_of: dict[int, Regex] = {}
        self.term_keys: dict[Term, int | None] = {}
        #: The clauses each term's words give: one key, or one per spelling of a word that
        #: has several (a Kazakh word and its Latin forms: any one of them will do).
        self._word_keys: dict[Term, tuple[Clause, ...]] = {}
        self._rules: dict[int, _Indexed] = {}
        self._always: list[_Indexed] = []
        filing: dict[int, _Filed] = {}
        fields: set[str] = set()
        scanned: set[int] = set()
        for number, rule in enabled:
            for leaf in _leaves_under(rule.match):
                self._leaf_needs(leaf)
            scanned.update(self._add(number, rule, self._needs(rule.match), filing))
            fields.update(_fields_used(rule.match, DEFAULT_FIELDS))
        self.fields = tuple(sorted(fields))
        #: The rules filed under each anchor key (``_Filed``): one table, so that a key of
        #: the item costs one lookup, not one in each of four tables (at 10,000 rules they
        #: are large, and each lookup is a likely cache miss).
        self._filed: dict[int, _Lookup] = {key: filed.frozen() for key, filed in filing.items()}
        #: Every key some rule is indexed under.
        self.anchors = frozenset(self._filed)
        #: Each leaf object of the rules, by identity, with its first word's key or its
        #: regex key: evaluation asks about leaves by the thousand, and hashing a term by
        #: value is Python code.
        self.leaf_keys: dict[int, tuple[Leaf, int]] = {}
        #: Likewise, terms ignoring case whose first word has several spellings (a Kazakh
        #: word and its Latin forms), with the key of each spelling.
        self.spelled_keys: dict[int, tuple[Term, Clause]] = {}
        for _number, rule in enabled:
            for leaf in _leaves_under(rule.match):
                key = self._regex_key(leaf) if isinstance(leaf, Regex) else self.term_keys[leaf]
                if key is not None:
                    self.leaf_keys[id(leaf)] = (leaf, key)
                elif isinstance(leaf, Term) and not leaf.case and leaf.words[0].alternatives:
                    first = self._word_clause(leaf, leaf.words[0])
                    if first is not None:
                        self.spelled_keys[id(leaf)] = (leaf, first)
        #: Regexes some rule is indexed under: run on every item, in RE2 sets.  The others
        #: are run only when a rule that needs them is considered.
        self.scanned_regexes = frozenset(scanned)
        self._regexes = {False: _RegexSet(case=False), True: _RegexSet(case=True)}
        for key in sorted(scanned, reverse=True):
            regex = self._regex_of[key]
            self._regexes[regex.case].add(regex, key)
        for regexes in self._regexes.values():
            regexes.compile()

    def _number_words(self, leaves: Iterable[Term | Regex]) -> None:
        """Give every distinct word of every term its key, and build the automata.

        Keys are numbered so that scanning needs no lookup: first the words the byte
        automaton finds (whole words ``" word "`` and prefixes ``" stem"`` in the scan form,
        its pattern number being the key), then words of scripts without spaces (a substring
        automaton over the folded text), then words with characters outside the scan form,
        looked for in the folded text with their edges checked (rare)."""
        words: dict[tuple[int, str], None] = {}
        for leaf in dict.fromkeys(leaves):
            if isinstance(leaf, Term):
                found = (
                    _key_word(spelled, case=leaf.case)
                    for word in leaf.words
                    for spelled in word.spellings()
                )
                words.update(dict.fromkeys(word for word in found if word is not None))
        forms = {word: scan_word(word[1]) for word in words if word[0] != _ANYWHERE}
        scan = {word: form for word, form in forms.items() if form is not None}
        scanned = list(scan)
        unspaced = [word for word in words if word[0] == _ANYWHERE]
        others = [word for word, form in forms.items() if form is None]
        for key, (edges, text) in enumerate([*scanned, *unspaced, *others]):
            self._strings[edges, text] = key
            self.key_words.append((text, edges))
        self._scanned = _bytes_automaton(
            [b" " + form + (b" " if edges == _WHOLE else b"") for (edges, _), form in scan.items()]
        )
        self._first_unspaced = len(scanned)
        self._unspaced = _bytes_automaton([_utf16(text) for _edges, text in unspaced])
        self._others = _automaton(list(dict.fromkeys(text for _edges, text in others)))
        other_keys: dict[str, list[tuple[int, int]]] = {}
        for edges, text in others:
            other_keys.setdefault(text, []).append((self._strings[edges, text], edges))
        self._other_keys = list(other_keys.values())

    @property
    def keys(self) -> int:
        """How many distinct keys (words of terms, and regexes) the index holds."""
        return len(self._strings) + len(self._regex_keys)

    def match(self, item: Item, version: str) -> list[Match]:
        """Every enabled rule that watches the item's feed and matches it, in rule order."""
        text = IndexedText(item, self)
        matches: list[Match] = []
        for indexed in self._candidates(text):
            if not indexed.rule.applies_to(item):
                continue
            result = match_rule(indexed.rule, text, version)
            if result is not None:
                matches.append(result)
        return matches

    def _candidates(self, text: IndexedText) -> list[_Indexed]:
        """Rules indexed under a key that occurred whose needs the text meets, in rule order.

        The hot loop: tens of rules per item are looked at here and nearly all fail, so the
        checks of ``_Indexed.met`` are written out over plain tuples, each a set operation
        done in C, and rules that need nothing but words (most) are kept apart."""
        found = text.found
        isdisjoint = found.isdisjoint
        chosen = {indexed.number for indexed in self._always if indexed.met(text)}
        filed = self._filed
        # A snapshot: checking a rule's regexes adds their keys to ``found``.  Keys added so
        # are never anchors (a regex in an anchor clause is run on every item, up front).
        for key in tuple(found):
            lookup = filed.get(key)
            if lookup is None:
                continue
            sure, gate, pairs, counted, general = lookup
            chosen.update(sure)
            if gate is not None and isdisjoint(gate):
                continue
            for other, number in pairs:
                if other in found:
                    chosen.add(number)
            for keys, count, number in counted:
                if len(keys & found) >= count:
                    chosen.add(number)
            for words, wider, counts, indexed in general:
                if not words <= found or any(map(isdisjoint, wider)):
                    continue
                for keys, count in counts:
                    if len(keys & found) < count:
                        break
                else:
                    if indexed.rest is None or indexed.rest.met(text):
                        chosen.add(indexed.number)
        return [self._rules[number] for number in sorted(chosen)]

    def keys_in(self, folded: str) -> set[int]:
        """The word keys that occur in one folded field: one pass of the byte automaton over
        its scan form finds whole words and prefixes, boundaries included.  Only when the
        text holds characters outside the scan form (Chinese, say) is more needed."""
        form, lossy = scan_form(folded)
        return self.keys_in_form(folded, form, lossy=lossy)

    def keys_in_form(self, folded: str, form: bytes, *, lossy: bool) -> set[int]:
        """``keys_in`` for a field whose scan form is already made."""
        found: set[int] = set()
        if self._scanned is not None:
            found = set(map(_FIRST, self._scanned.find_matches_as_indexes(form, True)))
        if lossy:
            if self._unspaced is not None and maybe_unspaced(folded):
                matches = self._unspaced.find_matches_as_indexes(_utf16(folded), True)
                found.update(map(self._first_unspaced.__add__, map(_FIRST, matches)))
            if self._others is not None:
                found |= self._other_keys_in(folded)
        return found

    def _other_keys_in(self, folded: str) -> set[int]:
        """Keys of words outside the scan form: the automaton finds substrings, this checks
        that they start a word and, for a whole word, end one."""
        assert self._others is not None
        found: set[int] = set()
        size = len(folded)
        for index, start, end in _all_matches(self._others, folded):
            if start and folded[start - 1].isalnum():
                continue
            ends_word = end == size or not folded[end].isalnum()
            found.update(
                key for key, edges in self._other_keys[index] if ends_word or edges == _START
            )
        return found

    def regexes_found(self, text: ItemText, field: str) -> list[int]:
        """Keys of the scanned regexes that match somewhere in the field."""
        found: list[int] = []
        for case, regexes in self._regexes.items():
            if regexes.keys:
                found.extend(regexes.found(text.folded(field, case=case).text))
        return found

    def regex_occurs(self, text: ItemText, key: int) -> bool:
        """Whether the regex of ``key`` matches somewhere in the fields the index scans."""
        regex = self._regex_of[key]
        return any(
            regex.compiled.search(text.folded(name, case=regex.case).text) is not None
            for name in self.fields
        )

    # -- building ----------------------------------------------------------------------------

    def _add(self, number: int, rule: Rule, needs: Needs, filing: dict[int, _Filed]) -> Clause:
        """File a rule under each key of its anchor clause, in the list that says what else
        it needs; returns the regexes of that clause, which must then run on every item."""
        indexed = _Indexed.of(number, rule, needs)
        anchor = needs.anchor(self._rarity)
        self._rules[number] = indexed
        if anchor is None:
            self._always.append(indexed)
            return frozenset()
        others = indexed.words - anchor
        words_only = not (indexed.counts or indexed.rest)
        simple = words_only and not indexed.wider
        for key in anchor:
            filed = filing.setdefault(key, _Filed())
            if words_only and indexed.words <= {key} and all(key in c for c in indexed.wider):
                filed.sure.append(number)  # ``key`` alone meets every need
                continue
            filed.guard(key, indexed)
            if simple and len(others) == 1 and key in indexed.words:
                filed.pairs.append((min(others), number))
            elif not (indexed.words or indexed.wider or indexed.rest) and len(indexed.counts) == 1:
                keys, count = indexed.counts[0]
                filed.counts.append((keys, count, number))
            else:
                filed.general.append((indexed.words, indexed.wider, indexed.counts, indexed))
        return frozenset(key for key in anchor if key < 0)

    def _rarity(self, key: int) -> int:
        """How rare a key's word is likely to be: its length (regexes: 0)."""
        return len(self.key_words[key][0]) if key >= 0 else 0

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
            clauses = option.options()
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
            clauses = [self._word_clause(leaf, word) for word in leaf.words]
            first = clauses[0]
            self.term_keys[leaf] = min(first) if first is not None and len(first) == 1 else None
            self._word_keys[leaf] = tuple(clause for clause in clauses if clause is not None)
        return Needs(self._word_keys[leaf])

    def _regex_key(self, regex: Regex) -> int:
        pattern = (regex.written, regex.case)
        if pattern not in self._regex_keys:
            key = -1 - len(self._regex_keys)
            self._regex_keys[pattern] = key
            self._regex_of[key] = regex
        return self._regex_keys[pattern]

    def _word_clause(self, term: Term, word: Word) -> Clause | None:
        """The keys of one word of a term, one per spelling (numbered by ``_number_words``):
        the term needs one of them.  None when a spelling cannot be a key, since the word
        could then be found with none of them.

        A term whose first word has several spellings has no key in ``term_keys``; it is
        looked for where any of them occurs (``spelled_keys``, ``IndexedText._spelled_hits``)."""
        keys: set[int] = set()
        for spelled in word.spellings():
            found = _key_word(spelled, case=term.case)
            if found is None:
                return None
            keys.add(self._strings[found])
        return frozenset(keys)


def _key_word(word: Word, *, case: bool) -> tuple[int, str] | None:
    """What the index looks for to find one word of a term: which edges must be word
    boundaries (both for a whole word, the start for a prefix, none in Chinese and the like)
    and its case-folded text; None for a word that cannot be a key.  In a phrase every word
    is so bounded, since folding puts a space between scripts.  A case-sensitive term is
    looked for case-folded, a necessary condition; its hits are then found by the reference."""
    text = fold(word.text, case=False).text if case else word.text
    if not _WORD.fullmatch(text):
        return None
    return (_ANYWHERE if is_unspaced(text[0]) else _START if word.prefix else _WHOLE), text


def _utf16(text: str) -> bytes:
    """Text for the substring automaton of Chinese and the like: two bytes a character there
    rather than UTF-8's three, so a third fewer steps.  A match could in theory start at an
    odd byte, between characters: a key found that is not there, which costs a look at its
    rules, never a missed one."""
    return text.encode("utf-16-le", "surrogatepass")


def _joins(text: str, end: int) -> bool:
    """Whether a letter or digit at ``end`` continues the word before it."""
    return end < len(text) and text[end].isalnum()


def _automaton(words: list[str]) -> AhoCorasick | None:
    return AhoCorasick(words) if words else None


def _bytes_automaton(words: list[bytes]) -> BytesAhoCorasick | None:
    return BytesAhoCorasick(words) if words else None


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
        #: Keys found in the item: words in any scanned field, regexes found so far.
        self.found: set[int] = set()
        self._in_field: dict[str, set[int]] = {}
        #: Scan forms of fields whose every character has one (see ``_word_numbers``).
        self._forms: dict[str, bytes] = {}
        self._absent: set[int] = set()
        for name in engine.fields:
            folded = self.folded(name, case=False)
            form, lossy = scan_form_of(folded)
            keys = engine.keys_in_form(folded.text, form, lossy=lossy)
            self._in_field[name] = keys
            self.found |= keys
            if not lossy:
                self._forms[name] = form
            if engine.scanned_regexes:
                self.found.update(engine.regexes_found(self, name))

    def has_regex(self, key: int) -> bool:
        """Whether a regex key occurs: scanned ones are known, others are run once, now."""
        if key in self.found:
            return True
        if key in self._engine.scanned_regexes or key in self._absent:
            return False
        if self._engine.regex_occurs(self, key):
            self.found.add(key)
            return True
        self._absent.add(key)
        return False

    def hits(self, leaf: Leaf, field: str) -> Hits:
        """No hits, at once, for a term whose first word the scan did not see in the field,
        or a regex known to match nowhere (most leaves of the rules evaluated); else as the
        reference finds them."""
        known = self._engine.leaf_keys.get(id(leaf))
        in_field = self._in_field.get(field)
        if known is None or known[0] is not leaf or in_field is None:
            spelled = self._engine.spelled_keys.get(id(leaf))
            if spelled is not None and spelled[0] is leaf and in_field is not None:
                return self._spelled_hits(spelled[0], spelled[1], field, in_field)
            return super().hits(leaf, field)
        key = known[1]
        if key < 0:
            if key not in self.found and self._known_absent(key):
                return ()
            return super().hits(leaf, field)
        if key not in in_field:
            return ()
        if isinstance(leaf, Regex) or leaf.case:
            return super().hits(leaf, field)
        return self._term_hits_at(leaf, key, field)

    def _term_hits_at(self, term: Term, key: int, field: str) -> Hits:
        """``hits`` for a term ignoring case whose first word occurs in the field: the
        reference's memo and result, by a shorter road (``_find_term``)."""
        memo_key = (id(term), field)
        memo = self._hits.get(memo_key)
        if memo is not None and memo[0] is term:
            return memo[1]
        folded = self.folded(field, case=False)
        label = term.label
        found = tuple(
            self._hit(label, field, folded, False, start, end)
            for start, end in self._spans(term, key, field, folded.text)
        )
        self._hits[memo_key] = (term, found)
        return found

    def _spelled_hits(self, term: Term, keys: Clause, field: str, in_field: set[int]) -> Hits:
        """``hits`` for a term ignoring case whose first word has several spellings: none
        unless one of them occurs in the field, else the pattern tried where each occurring
        spelling starts a word (the pattern itself says which spelling goes on how)."""
        memo_key = (id(term), field)
        memo = self._hits.get(memo_key)
        if memo is not None and memo[0] is term:
            return memo[1]
        found: Hits = ()
        present = [key for key in keys if key in in_field]
        if present:
            folded = self.folded(field, case=False)
            text = folded.text
            starts = sorted({at for key in present for at in self._word_starts(field, key, text)})
            found = tuple(
                self._hit(term.label, field, folded, False, start, end)
                for start, end in self._at_starts(term, text, starts)
            )
        self._hits[memo_key] = (term, found)
        return found

    def _known_absent(self, key: int) -> bool:
        return key in self._engine.scanned_regexes or key in self._absent

    def _find_term(self, term: Term, field: str, folded: Folded) -> Iterable[tuple[int, int]]:
        """Try the term's pattern only where its first word occurs (case-sensitive terms:
        everywhere, as the reference does, since the scan saw their words case-folded)."""
        known = self._engine.leaf_keys.get(id(term))
        in_field = self._in_field.get(field)
        if term.case or known is None or known[0] is not term or in_field is None:
            return super()._find_term(term, field, folded)
        key = known[1]
        if key not in in_field:
            return ()
        return self._spans(term, key, field, folded.text)

    def _spans(self, term: Term, key: int, field: str, text: str) -> Iterable[tuple[int, int]]:
        """Folded spans of a term ignoring case whose first word has ``key``."""
        starts = self._word_starts(field, key, text)
        if len(term.words) == 1 and not term.words[0].prefix:
            return self._whole_word_at(text, len(term.words[0].text), starts, key)
        return self._at_starts(term, text, starts)

    def _whole_word_at(
        self, text: str, size: int, starts: list[int], key: int
    ) -> Iterable[tuple[int, int]]:
        """A one-word term without ``*`` needs no pattern: in Chinese and the like each
        occurrence is a hit (leftmost, not overlapping); elsewhere one that also ends a
        word (its start was checked by ``_word_starts``)."""
        if self._engine.key_words[key][1] != _ANYWHERE:
            return [(start, start + size) for start in starts if not _joins(text, start + size)]
        spans: list[tuple[int, int]] = []
        done = 0
        for start in starts:
            if start >= done:
                done = start + size
                spans.append((start, done))
        return spans

    def _word_numbers(self, field: str, case: bool, start: int, end: int) -> tuple[int, int]:
        """Word numbers counted in the field's scan form, where every word is a run of
        non-spaces at the same offset plus one: no word list to build for one ``near:``.
        (Only for fields with no character outside the form, hence no Chinese, in which
        every character counts as a word.)"""
        form = self._forms.get(field)
        if case or form is None:
            return super()._word_numbers(field, case, start, end)
        first = len(form[: start + 2].split()) - 1
        return max(first, 0), max(len(form[: end + 1].split()) - 1, 0)

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
