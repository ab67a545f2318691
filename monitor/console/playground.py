"""The rule playground's decisions: explain rules on pasted or stored text, read a pasted
draft rule file safely, show its backtest as ``+ = -`` rows, and write examples as YAML.

Pure: no Redis, no clock (time is passed in), no file is read or written.  The draft is
compiled by the rules' own loader (``load_rule_text``: the project's safe YAML loader, RE2
regexes, every lint problem at ``draft:line:col``); the backtest is the CLI's
(``monitor.rules.backtest``).  The server reads the history and keeps the time budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import yaml

from monitor.errors import RuleSetError
from monitor.model import Item, Match
from monitor.rules import ItemText, RuleSet, evaluate, explain
from monitor.rules.backtest import Backtest
from monitor.rules.load import load_rule_text

DRAFT_NAME = "draft"
"""The draft's name in lint messages: ``draft:line:col: ...``."""
MAX_DRAFT_BYTES = 256 * 1024
"""The largest draft read (UTF-8 bytes): a rule file of a few hundred rules is ~100 KB."""
MAX_TEXT = 20_000
"""The most characters of a pasted title or summary that are explained."""
BACKTEST_WINDOW = 3_000
"""Most history items one backtest reads (newest first): the same bound as Search."""
BACKTEST_SECONDS = 5.0
"""The backtest's time budget; it stops between items once spent and says so."""
MAX_PICKS = 50
"""Most items turned into examples at once."""
PASTED_SOURCE = "playground"


def pasted_item(title: str, summary: str, now: datetime) -> Item:
    """An item carrying pasted text, published ``now``; rules see it like any item (a rule
    limited to some ``sources:`` does not apply to it, as to an example)."""
    return Item(
        id="pasted",
        source=PASTED_SOURCE,
        title=" ".join(title.split())[:MAX_TEXT],
        summary=summary.replace("\r\n", "\n")[:MAX_TEXT],
        link="",
        published=now,
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """One rule's explain tree for an item (``rules match --explain``)."""

    rule: str
    title: str
    severity: str
    matches: bool
    lines: tuple[str, ...]


def explain_rules(rules: RuleSet, item: Item, only: str = "") -> tuple[Verdict, ...]:
    """Every rule's verdict on the item, the matching ones first, or only the rule ``only``
    (by id, ignoring case; () when there is none).  The verdict is the match expression's,
    as for examples: ``sources:`` and ``enabled:`` are not applied."""
    if only:
        chosen = rules.get(only)
        picked = [chosen] if chosen is not None else []
    else:
        picked = list(rules)
    text = ItemText(item)
    verdicts = [
        Verdict(
            rule=rule.id,
            title=" ".join(rule.title.split()),
            severity=rule.severity.label,
            matches=evaluate(rule.match, text) is not None,
            lines=tuple(explain(rule, item)),
        )
        for rule in picked
    ]
    return tuple(sorted(verdicts, key=lambda verdict: not verdict.matches))


def draft_text(posted: str) -> str:
    """The draft as a file would hold it: browsers send textareas with CRLF line ends."""
    return posted.replace("\r\n", "\n")


def read_draft(text: str) -> RuleSet | list[str]:
    """The draft's rule set, or every problem in it as ``monitor rules lint`` words it (at
    ``draft:line:col``).  Larger than ``MAX_DRAFT_BYTES``: refused before it is parsed."""
    raw = text.encode("utf-8")
    if len(raw) > MAX_DRAFT_BYTES:
        return [
            f"{DRAFT_NAME}: the draft is {len(raw):,} bytes; the playground reads at most "
            f"{MAX_DRAFT_BYTES:,} (split it, or use `monitor rules backtest`)"
        ]
    if not raw.strip():
        return [f"{DRAFT_NAME}: the draft is empty; paste a rule file"]
    try:
        return load_rule_text(raw, DRAFT_NAME)
    except RuleSetError as exc:
        return [str(problem) for problem in exc.problems]


def draft_ids(draft: RuleSet) -> frozenset[str]:
    """The rule and trend ids the draft defines, case-folded."""
    ids = [rule.id for rule in draft.rules] + [trend.id for trend in draft.trends]
    return frozenset(rule_id.casefold() for rule_id in ids)


def deployed_like(deployed: RuleSet, draft: RuleSet) -> RuleSet:
    """The deployed rules (and trends) that the draft defines too: what the default scope
    compares a draft with.  Matching only these, rather than every deployed rule and then
    dropping the others' alerts, is what keeps a backtest of one rule within a second over
    the window (1.5 s of 1.7 s went to rules the page then left out)."""
    ids = draft_ids(draft)
    return dataclasses.replace(
        deployed,
        rules=tuple(rule for rule in deployed.rules if rule.id.casefold() in ids),
        trends=tuple(trend for trend in deployed.trends if trend.id.casefold() in ids),
    )


def same_ids_only(report: Backtest, draft: RuleSet) -> Backtest:
    """The report without the deployed alerts of rules the draft does not define: a draft
    of one rule is compared with that rule, not with every deployed one."""
    ids = draft_ids(draft)
    kept = tuple(match for match in report.gone if match.rule_id.casefold() in ids)
    return Backtest(report.items, report.alerts, report.new, kept, report.stopped)


@dataclass(frozen=True, slots=True)
class BacktestRow:
    """One line of the diff: ``+`` draft only, ``=`` both, ``-`` deployed only."""

    mark: str
    rule: str
    published: str
    source: str
    title: str
    entry: str
    """The item's history entry id (for its explain page and as an example), or ""."""


def backtest_rows(report: Backtest, entries: Mapping[str, str]) -> list[BacktestRow]:
    """The rows ``monitor rules backtest`` prints, in its order: the draft's alerts (``+``
    new, ``=`` also deployed), then the deployed alerts it no longer raises (``-``).
    ``entries`` maps item ids to history entry ids."""
    marked = [("+" if m.key in report.new else "=", m) for m in report.alerts]
    marked += [("-", m) for m in report.gone]
    return [_row(mark, match, entries) for mark, match in marked]


def _row(mark: str, match: Match, entries: Mapping[str, str]) -> BacktestRow:
    item = match.item
    return BacktestRow(
        mark=mark,
        rule=match.rule_id,
        published=f"{item.published:%Y-%m-%d %H:%M}",
        source=item.source,
        title=" ".join(item.title.split()) or "(untitled)",
        entry=entries.get(item.id, ""),
    )


def diff_counts(report: Backtest) -> dict[str, int]:
    """How many rows of each mark."""
    new = sum(1 for match in report.alerts if match.key in report.new)
    return {"+": new, "=": len(report.alerts) - new, "-": len(report.gone)}


def examples_yaml(rule: str, matching: Iterable[Item], not_matching: Iterable[Item]) -> str:
    """Picked items as a rule's ``examples:`` block to paste under it (then ``monitor rules
    test``): a title alone, or title and summary; duplicates once."""
    block: dict[str, list[str | dict[str, str]]] = {}
    for key, items in (("match", matching), ("no_match", not_matching)):
        texts = _example_texts(items)
        if texts:
            block[key] = texts
    head = (
        f"# examples for {' '.join(rule.split()) or 'your rule'}: paste under the rule "
        "(indent to fit), then run `monitor rules test`.\n"
    )
    if not block:
        return head + "examples: {}\n"
    body = yaml.safe_dump(
        {"examples": block},
        allow_unicode=True,
        sort_keys=False,
        width=100,
        default_flow_style=False,
    )
    return head + body


def _example_texts(items: Iterable[Item]) -> list[str | dict[str, str]]:
    seen: set[tuple[str, str]] = set()
    texts: list[str | dict[str, str]] = []
    for item in items:
        title = " ".join(item.title.split())
        summary = " ".join(item.summary.split())
        if not title or (title, summary) in seen:
            continue
        seen.add((title, summary))
        texts.append({"title": title, "summary": summary} if summary else title)
    return texts


def picked_ids(values: Sequence[str], known: Iterable[str]) -> list[str]:
    """The picked entry ids that are among ``known``, in order, once, at most
    ``MAX_PICKS``: a form can only pick items it was shown."""
    allowed = set(known)
    picked = list(dict.fromkeys(value for value in values if value in allowed))
    return picked[:MAX_PICKS]
