"""The reference evaluator: whether a rule's expression matches an item, where, and why not.

It is deliberately plain (every term is a regular expression run over the folded fields) so that
the compiled engine (``engine``) can be checked against it: same item, same rules, same matches
and hits.  The engine reuses the boolean logic here and replaces only how terms are found.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from monitor.model import Item, Match, TermHit
from monitor.rules.expr import (
    DEFAULT_FIELDS,
    FIELDS,
    AtLeast,
    Example,
    Group,
    Leaf,
    Near,
    Node,
    Rule,
    SetRef,
    Term,
)
from monitor.rules.regex import Regex
from monitor.rules.text import Folded, fold, is_unspaced, maybe_unspaced

_EXAMPLE_TIME = datetime(2000, 1, 1, tzinfo=UTC)
_WORD = re.compile(r"[^\W_]+")
_WORD_SPLIT = re.compile(r"([^\W_]+)")
#: Ends of sentences: CJK and exclamation/question marks anywhere, line breaks, and full stops
#: or ellipses before a space (unless after a single letter, as in "U.S. bid").
_SENTENCE_END = re.compile(r"[。！？!?]+|\n|(?P<stop>[.…]+)(?=\s)")

Hits = tuple[TermHit, ...]
_FIELD_ORDER = {name: number for number, name in enumerate(FIELDS)}
_LEAVES = (Term, Regex)


def field_text(item: Item, name: str) -> str:
    """The text of one matchable field; tags are one text, a tag per line."""
    if name == "tags":
        return "\n".join(item.tags)
    if name == "lang":
        return item.lang or ""
    text: str = getattr(item, name)
    return text


class ItemText:
    """An item's matchable fields, folded once and shared by every rule checked against it.

    Hits are memoised per term and field: a term set used by fifty rules is searched once per
    item.  Subclasses change how a term is found (``_find_term``), never what is found.
    """

    def __init__(self, item: Item) -> None:
        self.item = item
        self._folded: dict[tuple[str, bool], Folded] = {}
        #: Memos keyed by object identity (the hash of a term or a hit is Python code, and
        #: these are looked up thousands of times per item); each entry keeps its object,
        #: so an identity is never mistaken for another's.
        self._hits: dict[tuple[int, str], tuple[Leaf, Hits]] = {}
        self._words: dict[tuple[str, bool], _Words] = {}
        self._sentences: dict[str, list[int]] = {}
        self._spots: dict[int, tuple[TermHit, bool, int, int]] = {}

    def folded(self, field: str, *, case: bool) -> Folded:
        key = (field, case)
        if key not in self._folded:
            self._folded[key] = fold(field_text(self.item, field), case=case)
        return self._folded[key]

    def hits(self, leaf: Leaf, field: str) -> Hits:
        """Every non-overlapping occurrence of ``leaf`` in one field, in reading order."""
        key = (id(leaf), field)
        memo = self._hits.get(key)
        if memo is not None and memo[0] is leaf:
            return memo[1]
        if isinstance(leaf, Term):
            found = tuple(self._term_hits(leaf, field))
        else:
            found = tuple(self._regex_hits(leaf, field))
        self._hits[key] = (leaf, found)
        return found

    def _term_hits(self, term: Term, field: str) -> Iterable[TermHit]:
        folded = self.folded(field, case=term.case)
        for start, end in self._find_term(term, field, folded):
            yield self._hit(term.label, field, folded, term.case, start, end)

    def _hit(
        self, label: str, field: str, folded: Folded, case: bool, start: int, end: int
    ) -> TermHit:
        """A hit at folded ``[start, end)``; where it lies in the folded text is kept, for
        counting words between hits."""
        first, last = folded.original_span(start, end)
        hit = TermHit(label, field, first, last, folded.original[first:last])
        self._spots[id(hit)] = (hit, case, start, end)
        return hit

    def _find_term(self, term: Term, field: str, folded: Folded) -> Iterable[tuple[int, int]]:
        """Folded spans of the term: the reference runs its pattern over the whole field."""
        del field
        return (found.span() for found in term.pattern.finditer(folded.text))

    def _regex_hits(self, regex: Regex, field: str) -> Iterable[TermHit]:
        folded = self.folded(field, case=regex.case)
        for found in regex.compiled.finditer(folded.text):
            start, end = shown_span(found, folded.text)
            if start != end:
                yield self._hit(regex.label, field, folded, regex.case, start, end)

    def words_of(self, hit: TermHit) -> tuple[int, int]:
        """The numbers of a hit's first and last words in its field, counting from 0.
        Chinese, Japanese, Korean and Thai characters count as a word each, having no spaces."""
        spot = self._spots.get(id(hit))
        if spot is None or spot[0] is not hit:
            raise KeyError(hit)
        _hit, case, start, end = spot
        return self._word_numbers(hit.field, case, start, end)

    def _word_numbers(self, field: str, case: bool, start: int, end: int) -> tuple[int, int]:
        """The numbers of the words at folded offsets ``start`` and ``end - 1``."""
        key = (field, case)
        if key not in self._words:
            self._words[key] = _Words(self.folded(field, case=case).text)
        words = self._words[key]
        return words.number(start), words.number(end - 1)

    def sentence_number(self, field: str, offset: int) -> int:
        """Which sentence of the field an original offset is in, counting from 0."""
        if field not in self._sentences:
            self._sentences[field] = _sentence_ends(field_text(self.item, field))
        return bisect.bisect_right(self._sentences[field], offset)


class _Words:
    """Word numbers in a folded text: runs of letters and digits are words, except that in
    scripts without spaces every character is one.

    Built with C-level passes (a split, running sums), not a loop over match objects: a
    ``near:`` on a long summary needs it once per item, and that loop cost more than the
    rest of the evaluation."""

    def __init__(self, folded: str) -> None:
        parts = _WORD_SPLIT.split(folded)  # separator, word, separator, ..., separator
        words = parts[1::2]
        ends = list(itertools.accumulate(map(len, parts)))
        self.starts: list[int] = ends[0 : 2 * len(words) : 2]
        if not maybe_unspaced(folded):
            self.unspaced: list[bool] = [False] * len(words)
            self.numbers: Sequence[int] = range(len(words))
            return
        self.unspaced = [is_unspaced(word[0]) for word in words]
        sizes = [
            len(word) if unspaced else 1
            for word, unspaced in zip(words, self.unspaced, strict=True)
        ]
        self.numbers = [0, *itertools.accumulate(sizes)][: len(words)]

    def number(self, position: int) -> int:
        index = bisect.bisect_right(self.starts, position) - 1
        if index < 0:
            return 0
        if self.unspaced[index]:
            return self.numbers[index] + position - self.starts[index]
        return self.numbers[index]


def _sentence_ends(text: str) -> list[int]:
    """Original offsets where a new sentence starts (just after each sentence end)."""
    ends: list[int] = []
    for found in _SENTENCE_END.finditer(text):
        if found.group("stop") and _after_initial(text, found.start()):
            continue
        ends.append(found.end())
    return ends


def _after_initial(text: str, stop: int) -> bool:
    """Whether the full stop at ``stop`` ends a single letter, as in "U.S." or "J. Smith"."""
    before = text[max(stop - 2, 0) : stop]
    return (
        len(before) >= 1 and before[-1].isalpha() and (len(before) == 1 or not before[0].isalnum())
    )


# -- evaluation ------------------------------------------------------------------------------


def evaluate(group: Group, text: ItemText, fields: Sequence[str] = DEFAULT_FIELDS) -> Hits | None:
    """The hits that make ``group`` match, or None when it does not match.

    Only children that contributed give hits: every ``all`` child and each ``any`` child that
    matched; ``none`` children never do, since they matched nothing.
    """
    fields = group.fields or fields
    hits: list[TermHit] = []
    for child in group.all_of:
        found = node_hits(child, text, fields)
        if found is None:
            return None
        hits.extend(found)
    if group.any_of:
        matched = [found for child in group.any_of if (found := node_hits(child, text, fields))]
        if not matched:
            return None
        hits.extend(hit for found in matched for hit in found)
    if any(node_hits(child, text, fields) is not None for child in group.none_of):
        return None
    return tuple(hits)


def node_hits(node: Node, text: ItemText, fields: Sequence[str]) -> Hits | None:
    """The hits of any node looking at ``fields`` (unless it names its own), None if none.
    Terms and regexes, the commonest nodes, are tried first and without a generator."""
    if isinstance(node, _LEAVES):
        hits: Hits = ()
        for field in fields:
            hits += text.hits(node, field)
        return hits or None
    if isinstance(node, Group):
        return evaluate(node, text, fields)
    if isinstance(node, Near):
        return near_hits(node, text, node.fields or fields)
    if isinstance(node, AtLeast):
        return at_least_hits(node, text, node.fields or fields)
    hits = tuple(hit for leaf in leaves(node) for field in fields for hit in text.hits(leaf, field))
    return hits or None


def leaves(node: Term | Regex | SetRef) -> tuple[Leaf, ...]:
    return node.terms if isinstance(node, SetRef) else (node,)


def at_least_hits(node: AtLeast, text: ItemText, fields: Sequence[str]) -> Hits | None:
    """Hits of every entry found, if they count up to ``node.count``."""
    count = 0
    hits: list[TermHit] = []
    for child in node.of:
        found = node_hits(child, text, fields)
        if found is None:
            continue
        count += len({hit.term for hit in found}) if isinstance(child, SetRef) else 1
        hits.extend(found)
    return tuple(hits) if count >= node.count else None


def near_hits(node: Near, text: ItemText, fields: Sequence[str]) -> Hits | None:
    """The hits of the first stretch of one field where every entry is found near the others."""
    for field in fields:
        per_entry = [
            [hit for leaf in leaves(child) for hit in text.hits(leaf, field)] for child in node.of
        ]
        if not all(per_entry):
            continue
        found = _closest(node, text, field, per_entry)
        if found is not None:
            return found
    return None


def _closest(node: Near, text: ItemText, field: str, per_entry: list[list[TermHit]]) -> Hits | None:
    """The first stretch, in reading order, that holds a hit of every entry with at most
    ``node.within`` other words in it (and, if asked, lies in one sentence)."""
    placed = sorted(
        (
            _Placed(
                text.sentence_number(field, hit.start) if node.sentence else 0,
                *text.words_of(hit),
                entry,
                hit,
            )
            for entry, hits in enumerate(per_entry)
            for hit in hits
        ),
        key=lambda placed: (
            placed.sentence,
            placed.first,
            placed.last,
            placed.entry,
            placed.hit.start,
            placed.hit.term,
        ),
    )
    limit = node.within if node.within is not None else len(placed) + 10**9
    for low in range(len(placed)):
        found = _stretch(placed, low, len(per_entry), limit)
        if found is not None:
            return found
    return None


@dataclass(frozen=True, slots=True)
class _Placed:
    """A hit with its sentence and the numbers of its first and last words."""

    sentence: int
    first: int
    last: int
    entry: int
    hit: TermHit


def _stretch(placed: list[_Placed], low: int, entries: int, limit: int) -> Hits | None:
    """The shortest stretch starting at ``placed[low]`` holding every entry, if it has at most
    ``limit`` words that are in none of its hits.  Hits are in order of first word, so adding
    one never fills an earlier gap: once over the limit, longer stretches are too."""
    seen: set[int] = set()
    covered = 0
    reach = placed[low].first - 1
    for high in range(low, len(placed)):
        current = placed[high]
        if current.sentence != placed[low].sentence:
            return None
        covered += max(current.last - max(current.first - 1, reach), 0)
        reach = max(reach, current.last)
        if (reach - placed[low].first + 1) - covered > limit:
            return None
        seen.add(current.entry)
        if len(seen) == entries:
            return tuple(item.hit for item in placed[low : high + 1])
    return None


def ordered_hits(hits: Iterable[TermHit]) -> Hits:
    """Distinct hits in reading order: field order, then by position and term.  Keyed by
    plain tuples (every field of a hit, so equal hits are one), which hash and sort in C."""
    keyed = {(_FIELD_ORDER[hit.field], hit.start, hit.end, hit.term, hit.text): hit for hit in hits}
    return tuple(keyed[key] for key in sorted(keyed))


def match_rule(rule: Rule, text: ItemText, version: str) -> Match | None:
    """The match of ``rule`` against the item, ignoring ``enabled`` and ``sources``."""
    hits = evaluate(rule.match, text)
    if hits is None:
        return None
    return Match(
        rule_id=rule.id,
        rule_title=rule.title,
        severity=rule.severity,
        rule_version=version,
        item=text.item,
        hits=ordered_hits(hits),
        route=rule.route,
        tags=rule.tags,
    )


def example_item(example: Example) -> Item:
    """A synthetic item carrying an example's text; sources do not apply to examples."""
    return Item(
        id="example",
        source="example",
        title=example.title,
        summary=example.summary,
        link="",
        published=_EXAMPLE_TIME,
    )


def check_example(rule: Rule, example: Example) -> tuple[str, str] | None:
    """None when the example behaves as declared, else (message, hint) saying what happened."""
    text = ItemText(example_item(example))
    hits = evaluate(rule.match, text)
    shown = _shorten(example.title or example.summary)
    if example.should_match and hits is None:
        return f"example should match but does not: {shown!r}", why_not(rule.match, text)
    if not example.should_match and hits is not None:
        found = ", ".join(f"{hit.term} ({hit.text!r})" for hit in ordered_hits(hits)[:5])
        return (
            f"example should not match but does: {shown!r}",
            f"it matched {found}; {NARROW_HINT}",
        )
    return None


NARROW_HINT = (
    "narrow the terms (a phrase, or near: with the words that give the sense), or exclude "
    "only a phrase that never occurs in a true item (see 'The exclusion trap' in rules/README.md)"
)
"""Not "add an exclusion": a word with a second meaning under ``none:`` silently drops the true
items that use it in the other sense, which no example of the false item reveals."""


def why_not(group: Group, text: ItemText, fields: Sequence[str] = DEFAULT_FIELDS) -> str:
    """A short reason ``group`` does not match the item, naming the innermost failing part."""
    fields = group.fields or fields
    for child in group.all_of:
        if node_hits(child, text, fields) is None:
            if isinstance(child, Group):
                return why_not(child, text, fields)
            return f"nothing found for {describe(child)} (under 'all:')"
    if group.any_of and not any(node_hits(child, text, fields) for child in group.any_of):
        listed = ", ".join(describe(child) for child in group.any_of)
        return f"none of the 'any:' entries was found: {listed}"
    for child in group.none_of:
        found = node_hits(child, text, fields)
        if found:
            return f"excluded by 'none:' entry {describe(child)}, found {found[0].text!r}"
    return "it matches"


def describe(node: Node) -> str:
    """A node as an analyst would recognise it in the rule file."""
    if isinstance(node, Term):
        return repr(node.written)
    if isinstance(node, Regex | SetRef):
        return repr(node.label)
    scope = f"in: {', '.join(node.fields)}; " if node.fields else ""
    if isinstance(node, Near):
        how = [f"within: {node.within}"] if node.within is not None else []
        how += ["sentence: true"] if node.sentence else []
        listed = ", ".join(describe(child) for child in node.of)
        return "{" + scope + f"near: [{listed}]; " + "; ".join(how) + "}"
    if isinstance(node, AtLeast):
        listed = ", ".join(describe(child) for child in node.of)
        return "{" + scope + f"at_least: {node.count}; of: [{listed}]" + "}"
    keys = [
        f"{key}: [{', '.join(describe(child) for child in children)}]"
        for key, children in (("all", node.all_of), ("any", node.any_of), ("none", node.none_of))
        if children
    ]
    return "{" + scope + "; ".join(keys) + "}"


def _shorten(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown_span(found: Any, text: str) -> tuple[int, int]:
    """The part of a regex match that is the word found, without its boundary groups.

    RE2 has no lookaround, so a rule writes a word boundary as a group around the word
    (``(^|[^\\pL\\pN])US([^\\pL\\pN$]|$)``), and the match takes the space and hyphen
    around "US".  A first group at the match's start and a last group at its end that
    hold no letter or digit are left out, so the quote marks "US", not " US-".
    """
    start, end = found.span()
    groups = found.re.groups
    if not groups:
        return start, end
    first_start, first_end = found.span(1)
    if first_start == start and first_end >= 0 and not _has_word_char(text[start:first_end]):
        start = first_end
    last_start, last_end = found.span(groups)
    if last_end == end and last_start >= start and not _has_word_char(text[last_start:end]):
        end = last_start
    return (start, end) if start < end else found.span()


def _has_word_char(text: str) -> bool:
    return any(char.isalnum() for char in text)
