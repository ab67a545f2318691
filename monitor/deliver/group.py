"""One message per article: the alerts of several rules about one item share a message.

An article that matches two rules (the tungsten rule and the US-investment rule) used to
arrive as two messages a second apart, each with the same headline, link and quote.  Like
Alertmanager's grouping, the delivery worker now sends one message per article and channel,
headed by the most severe rule and listing the others with their severities.  Everything
decided per rule stays per rule, before grouping: routes, silences, throttling, digests,
``min_sources`` (a rule still held for corroboration has no alert to share), and the
delivery record (each rule's alert is sent, retried or dead-lettered on its own account).
A route can ask for one message per rule instead (``group_by: rule``).

Pure: keys and matches in, groups and a message out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence

from monitor.model import Match, RuleNote, TermHit


def by_article(keys: Sequence[Hashable | None]) -> list[list[int]]:
    """Positions grouped by key, in the order each key first appears; a None key stands
    alone.  The worker's key is (channel unit, item id) for an alert that may share its
    message, so only alerts to the same channel and recipients, about one item, group."""
    groups: dict[Hashable, list[int]] = {}
    alone: list[list[int]] = []
    order: list[list[int]] = []
    for position, key in enumerate(keys):
        if key is None:
            alone.append([position])
            order.append(alone[-1])
            continue
        if key not in groups:
            groups[key] = []
            order.append(groups[key])
        groups[key].append(position)
    return order


def merge_rule_messages(matches: Sequence[Match]) -> Match:
    """One message for several rules' alerts about one article.

    The most severe rule heads it (the first of equals: queue order), so the message's
    severity is the highest; every other rule is listed in ``also`` with its own severity,
    most severe first.  Hits and tags are the union, so the quote highlights what any rule
    found.  The head's story, follow-up and provenance stand for the message.
    """
    if len(matches) == 1:
        return matches[0]
    ranked = sorted(range(len(matches)), key=lambda i: (-int(matches[i].severity), i))
    head, rest = matches[ranked[0]], [matches[i] for i in ranked[1:]]
    return dataclasses.replace(
        head,
        hits=_union_hits([head, *rest]),
        tags=tuple(dict.fromkeys(tag for m in (head, *rest) for tag in m.tags)),
        also=tuple(
            RuleNote(m.rule_id, m.rule_title, m.severity, m.follow_up, m.update) for m in rest
        ),
    )


def _union_hits(matches: Sequence[Match]) -> tuple[TermHit, ...]:
    seen: dict[TermHit, None] = {}
    for match in matches:
        for hit in match.hits:
            seen.setdefault(hit, None)
    return tuple(seen)
