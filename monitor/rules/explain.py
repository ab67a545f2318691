"""Why a rule matches an item or not, as lines an analyst can read (``rules match --explain``).

The expression tree is walked with the reference evaluator: each part is marked found (✓) or
not (✗), with the text and place of its hits, so a surprising alert or a missed one can be
traced to the term responsible.
"""

from __future__ import annotations

from collections.abc import Sequence

from monitor.model import Item, TermHit
from monitor.rules.expr import DEFAULT_FIELDS, AtLeast, Group, Near, Node, Rule, SetRef
from monitor.rules.match import ItemText, evaluate, field_text, node_hits, ordered_hits
from monitor.rules.regex import Regex

_INDENT = "  "
_SHOWN_HITS = 3


def explain(rule: Rule, item: Item) -> list[str]:
    """The rule's verdict on the item, its fields with hits in [brackets], and the tree."""
    text = ItemText(item)
    hits = evaluate(rule.match, text)
    verdict = "matches" if hits is not None else "does not match"
    lines = [f"{rule.id} ({rule.severity.label}) {verdict}: {rule.title}"]
    for name in ("title", "summary"):
        shown = field_text(item, name)
        if shown:
            marked = highlight(shown, [h for h in ordered_hits(hits or ()) if h.field == name])
            lines.append(f"{_INDENT}{name}: {marked}")
    lines.append(f"{_INDENT}why:")
    lines.extend(_group(rule.match, text, DEFAULT_FIELDS, 2))
    return lines


def highlight(shown: str, hits: Sequence[TermHit]) -> str:
    """The text with each hit in [brackets], on one line."""
    pieces: list[str] = []
    done = 0
    for hit in hits:
        if hit.start < done:
            continue
        pieces += [shown[done : hit.start], "[", shown[hit.start : hit.end], "]"]
        done = hit.end
    pieces.append(shown[done:])
    return " ".join("".join(pieces).split())


def _group(group: Group, text: ItemText, fields: Sequence[str], depth: int) -> list[str]:
    fields = group.fields or fields
    lines: list[str] = []
    pad = _INDENT * depth
    if group.fields:
        lines.append(f"{pad}(looking in {', '.join(group.fields)})")
    for key, children, wanted in (
        ("all", group.all_of, "every entry must be found"),
        ("any", group.any_of, "at least one must be found"),
        ("none", group.none_of, "none may be found"),
    ):
        if children:
            lines.append(f"{pad}{key}: ({wanted})")
            for child in children:
                lines.extend(_node(child, text, fields, depth + 1, negated=key == "none"))
    return lines


def _node(
    node: Node, text: ItemText, fields: Sequence[str], depth: int, *, negated: bool
) -> list[str]:
    """One entry: ✓ when it is as the rule wants it (found, or absent under ``none:``)."""
    hits = node_hits(node, text, fields)
    good = (hits is None) if negated else (hits is not None)
    mark = "✓" if good else "✗"
    pad = _INDENT * depth
    head = f"{pad}{mark} {_name(node)}"
    if hits is None:
        head += " — not found"
    else:
        head += " — " + _quote(hits)
    lines = [head]
    if isinstance(node, Group):
        lines.extend(_group(node, text, fields, depth + 1))
    return lines


def _name(node: Node) -> str:
    if isinstance(node, Regex | SetRef):
        return node.label
    if isinstance(node, Group):
        return "group"
    if isinstance(node, Near):
        how = [f"within {node.within} words"] if node.within is not None else []
        how += ["in one sentence"] if node.sentence else []
        entries = ", ".join(_name(child) for child in node.of)
        return f"near ({' and '.join(how)}): {entries}"
    if isinstance(node, AtLeast):
        entries = ", ".join(_name(child) for child in node.of)
        return f"at least {node.count} of: {entries}"
    return node.written


def _quote(hits: Sequence[TermHit]) -> str:
    shown = ordered_hits(hits)
    quoted = ", ".join(
        f"{hit.text!r} ({hit.field} {hit.start}-{hit.end})" for hit in shown[:_SHOWN_HITS]
    )
    more = len(shown) - _SHOWN_HITS
    return quoted + (f" and {more} more" if more > 0 else "")
