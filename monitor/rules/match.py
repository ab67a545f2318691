"""The reference evaluator: whether a rule's expression matches an item, where, and why not.

It is deliberately plain (every term is a regular expression run over the folded fields) so that
a faster engine can be checked against it: same item, same rules, same matches and hits.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from monitor.model import Item, Match, TermHit
from monitor.rules.expr import Example, Group, Node, Rule, SetRef, Term
from monitor.rules.text import Folded, fold

#: The item fields rules look at, in the order hits are reported.
FIELDS: tuple[str, ...] = ("title", "summary")

_EXAMPLE_TIME = datetime(2000, 1, 1, tzinfo=UTC)


class ItemText:
    """An item's matchable fields, folded once and shared by every rule checked against it.

    Term results are memoised too: a term set used by fifty rules is searched once per item.
    """

    def __init__(self, item: Item) -> None:
        self.item = item
        self._folded: dict[tuple[str, bool], Folded] = {}
        self._hits: dict[Term, tuple[TermHit, ...]] = {}

    def folded(self, field: str, *, case: bool) -> Folded:
        key = (field, case)
        if key not in self._folded:
            self._folded[key] = fold(getattr(self.item, field), case=case)
        return self._folded[key]

    def hits(self, term: Term) -> tuple[TermHit, ...]:
        """Every non-overlapping occurrence of ``term`` in the title, then the summary."""
        if term not in self._hits:
            self._hits[term] = tuple(hit for field in FIELDS for hit in self._find(term, field))
        return self._hits[term]

    def _find(self, term: Term, field: str) -> Iterable[TermHit]:
        folded = self.folded(field, case=term.case)
        for found in term.pattern.finditer(folded.text):
            start, end = folded.original_span(found.start(), found.end())
            yield TermHit(term.label, field, start, end, folded.original[start:end])


def evaluate(group: Group, text: ItemText) -> tuple[TermHit, ...] | None:
    """The hits that make ``group`` match, or None when it does not match.

    Only children that contributed give hits: every ``all`` child and each ``any`` child that
    matched; ``none`` children never do, since they matched nothing.
    """
    hits: list[TermHit] = []
    for child in group.all_of:
        found = _node(child, text)
        if found is None:
            return None
        hits.extend(found)
    if group.any_of:
        matched = [found for found in (_node(child, text) for child in group.any_of) if found]
        if not matched:
            return None
        hits.extend(hit for found in matched for hit in found)
    if any(_node(child, text) is not None for child in group.none_of):
        return None
    return tuple(hits)


def _node(node: Node, text: ItemText) -> tuple[TermHit, ...] | None:
    if isinstance(node, Group):
        return evaluate(node, text)
    terms = node.terms if isinstance(node, SetRef) else (node,)
    hits = tuple(hit for term in terms for hit in text.hits(term))
    return hits or None


def ordered_hits(hits: Iterable[TermHit]) -> tuple[TermHit, ...]:
    """Distinct hits in reading order: title before summary, then by position and term."""
    return tuple(
        sorted(set(hits), key=lambda hit: (FIELDS.index(hit.field), hit.start, hit.end, hit.term))
    )


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
            f"it matched {found}; add an exclusion under 'none:' or narrow the terms",
        )
    return None


def why_not(group: Group, text: ItemText) -> str:
    """A short reason ``group`` does not match the item, naming the innermost failing part."""
    for child in group.all_of:
        if _node(child, text) is None:
            if isinstance(child, Group):
                return why_not(child, text)
            return f"nothing found for {describe(child)} (under 'all:')"
    if group.any_of and not any(_node(child, text) for child in group.any_of):
        listed = ", ".join(describe(child) for child in group.any_of)
        return f"none of the 'any:' entries was found: {listed}"
    for child in group.none_of:
        found = _node(child, text)
        if found:
            return f"excluded by 'none:' entry {describe(child)}, found {found[0].text!r}"
    return "it matches"


def describe(node: Node) -> str:
    """A node as an analyst would recognise it in the rule file."""
    if isinstance(node, Term | SetRef):
        return repr(node.label if isinstance(node, SetRef) else node.written)
    keys = [
        f"{key}: [{', '.join(describe(child) for child in children)}]"
        for key, children in (("all", node.all_of), ("any", node.any_of), ("none", node.none_of))
        if children
    ]
    return "{" + "; ".join(keys) + "}"


def _shorten(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
