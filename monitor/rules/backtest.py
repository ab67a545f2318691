"""A backtest: what a draft rule set would have raised over stored items, against the deployed
set.  Shared by ``monitor rules backtest`` and the console's playground, so both tell the
same ``+ = -`` story.

Pure: items and rule sets in, a report out.  Trends are replayed by the function passed in
(``monitor.stories.trends.replay_trends``: stories sit above rules, so it cannot be imported
here), and ``stop`` lets a caller with a time budget cut the run short between items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from monitor.model import Item, Match
from monitor.rules.expr import Rule, Trend
from monitor.rules.ruleset import RuleSet

Replay = Callable[
    [Sequence[Trend], Sequence[Rule], Sequence[tuple[Item, frozenset[str]]], str], list[Match]
]
"""``replay_trends(trends, rules, history, version)``: the alerts trends raise over items."""


@dataclass(frozen=True, slots=True)
class Backtest:
    """What a draft rule set would have raised over stored items, against the deployed set:
    ``alerts`` are the draft's matches; ``new`` the ones the deployed rules did not raise;
    ``gone`` the deployed rules' matches the draft no longer raises.  ``stopped``: the run
    was cut short, and ``items`` counts only the items tried (the oldest ones)."""

    items: int
    alerts: tuple[Match, ...]
    new: frozenset[str]
    gone: tuple[Match, ...]
    stopped: bool = False


def compare_rule_sets(
    items: Sequence[Item],
    deployed: RuleSet,
    draft: RuleSet,
    *,
    replay: Replay | None = None,
    stop: Callable[[], bool] | None = None,
) -> Backtest:
    """Match every item with both rule sets, and replay each set's trends over what it
    matched (when ``replay`` is given); alerts are told apart by rule (or trend) id and item
    id.  ``stop`` is asked before each item: True ends the run there."""
    same = draft is deployed
    before: list[tuple[Item, list[Match]]] = []
    after: list[tuple[Item, list[Match]]] = []
    stopped = False
    for item in items:
        if stop is not None and stop():
            stopped = True
            break
        matched = deployed.match(item)
        before.append((item, matched))
        after.append((item, matched if same else draft.match(item)))
    raised_before = _with_trends(before, deployed, replay)
    raised_after = raised_before if same else _with_trends(after, draft, replay)
    keys_before = {match.key.casefold() for match in raised_before}
    keys_after = {match.key.casefold() for match in raised_after}
    new = frozenset(m.key for m in raised_after if m.key.casefold() not in keys_before)
    gone = tuple(m for m in raised_before if m.key.casefold() not in keys_after)
    return Backtest(len(before), tuple(raised_after), new, gone, stopped)


def _with_trends(
    matched: Sequence[tuple[Item, list[Match]]], rules: RuleSet, replay: Replay | None
) -> list[Match]:
    alerts = [match for _item, matches in matched for match in matches]
    if rules.trends and replay is not None:
        history = [(item, frozenset(m.rule_id for m in matches)) for item, matches in matched]
        alerts += replay(rules.trends, rules.rules, history, rules.version)
    return alerts
