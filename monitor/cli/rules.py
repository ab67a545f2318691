"""``monitor rules``: the analyst's tools: lint, test, dry-run and backtest rule files."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

import aiohttp

from monitor.app.wiring import command_stores
from monitor.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Subcommands,
    load_settings_or_exit,
)
from monitor.deliver.feedback import (
    RuleStats,
    Vote,
    candidates_yaml,
    format_precision,
    stats_by_rule,
)
from monitor.errors import FeedError, MonitorError, RuleSetError
from monitor.ingest.fetch import Fetcher
from monitor.ingest.normalize import normalize_entry
from monitor.ingest.parse import NotAFeedError, parse_feed
from monitor.model import Item, Match, Source
from monitor.rules import (
    RuleSet,
    explain,
    lint_rules,
    load_rules,
    run_examples,
    stories_problems,
)
from monitor.rules.backtest import Backtest, compare_rule_sets
from monitor.settings import Settings, parse_duration
from monitor.stories.trends import replay_trends


def register(commands: Subcommands) -> None:
    rules = commands.add_parser("rules", help="check and try rule files")
    rule_commands = rules.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    lint = rule_commands.add_parser(
        "lint", help="validate rule files and the entity list; exit 1 on any problem"
    )
    lint.add_argument(
        "paths",
        nargs="*",
        type=Path,
        help="rule files, entities.yaml or directories (default: rules/)",
    )
    lint.add_argument(
        "-c",
        "--config",
        help="also check the rules against this config (e.g. min_sources needs stories.enabled)",
    )
    lint.set_defaults(handler=cmd_rules_lint)
    test = rule_commands.add_parser(
        "test", help="run every rule's examples; report pass/fail per rule, exit 1 on a failure"
    )
    test.add_argument(
        "paths", nargs="*", type=Path, help="rule files or directories (default: rules/)"
    )
    test.set_defaults(handler=cmd_rules_test)
    _register_match(rule_commands)
    _register_backtest(rule_commands)
    _register_stats(rule_commands)


def _register_match(rule_commands: Subcommands) -> None:
    match = rule_commands.add_parser(
        "match", help="dry run: print the matches rules would raise on feeds or items"
    )
    match.add_argument(
        "--rules",
        type=Path,
        action="append",
        required=True,
        help="rule file or directory (repeatable)",
    )
    match.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="a feed file, a feed URL, or a JSON Lines file of items (.jsonl)",
    )
    match.add_argument(
        "--explain",
        action="store_true",
        help="print each match readably: the text with hits marked and why the rule matched",
    )
    match.set_defaults(handler=cmd_rules_match)


def _register_backtest(rule_commands: Subcommands) -> None:
    backtest = rule_commands.add_parser(
        "backtest",
        help="run draft rules over the item history in Redis; compare with the deployed rules",
    )
    backtest.add_argument(
        "--since",
        default="7d",
        help="how far back to look, e.g. 12h, 7d, 30d (default 7d; history.retention bounds it)",
    )
    backtest.add_argument(
        "--rules",
        type=Path,
        action="append",
        help="draft rule file or directory (repeatable; default: the deployed rules)",
    )
    backtest.add_argument(
        "-c", "--config", help="config file (default: $MONITOR_CONFIG, ./monitor.yaml)"
    )
    backtest.set_defaults(handler=cmd_rules_backtest)


def _register_stats(rule_commands: Subcommands) -> None:
    stats = rule_commands.add_parser(
        "stats",
        help="per rule: alerts sent, marked relevant / not relevant, precision over 7 and 30 days",
    )
    stats.add_argument(
        "--candidates",
        metavar="RULE",
        help="print the items marked not relevant for RULE as no_match examples (YAML)",
    )
    stats.add_argument(
        "-c", "--config", help="config file (default: $MONITOR_CONFIG, ./monitor.yaml)"
    )
    stats.set_defaults(handler=cmd_rules_stats)


# -- rules -----------------------------------------------------------------------------------


def cmd_rules_lint(args: argparse.Namespace) -> int:
    paths = list(args.paths) or [Path("rules")]
    missing = [path for path in paths if not path.exists()]
    if missing:
        for path in missing:
            print(f"{path}: no such file or directory", file=sys.stderr)
        return EXIT_USAGE
    problems = lint_rules(paths)
    if not problems and args.config is not None:
        settings = load_settings_or_exit(args.config)
        if not settings.stories.enabled:
            problems = stories_problems(load_rules(paths))
    for problem in problems:
        print(str(problem))
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_rules_test(args: argparse.Namespace) -> int:
    paths = list(args.paths) or [Path("rules")]
    missing = [path for path in paths if not path.exists()]
    for path in missing:
        print(f"{path}: no such file or directory", file=sys.stderr)
    if missing:
        return EXIT_USAGE
    try:
        results = run_examples(paths)
    except RuleSetError as exc:
        _print_problems(exc, "fix these first ('monitor rules lint' lists them)")
        return EXIT_USAGE
    for result in results:
        count = len(result.rule.examples)
        if result.passed:
            print(f"PASS  {result.rule.id}  ({count} examples)")
            continue
        passed = count - len(result.failures)
        print(f"FAIL  {result.rule.id}  ({passed} of {count} examples behave)")
        for failure in result.failures:
            print(f"      {failure}")
    failed = sum(not result.passed for result in results)
    untested = sum(not result.rule.examples for result in results)
    summary = f"{len(results)} rules: {len(results) - failed} passed, {failed} failed"
    print(summary + (f" ({untested} without examples)" if untested else ""))
    return EXIT_FAILED if failed else EXIT_OK


def _print_problems(exc: RuleSetError, hint: str | None = None) -> None:
    for problem in exc.problems:
        print(str(problem), file=sys.stderr)
    if hint:
        print(f"{len(exc.problems)} problem(s) in the rule files; {hint}", file=sys.stderr)


def cmd_rules_match(args: argparse.Namespace) -> int:
    try:
        rules = load_rules(args.rules)
    except RuleSetError as exc:
        _print_problems(exc)
        return EXIT_USAGE
    now = datetime.now(UTC)
    status = EXIT_OK
    for source in args.sources:
        try:
            items = list(read_items(source, now))
        except (OSError, ValueError, MonitorError) as exc:
            print(f"{source}: {exc}", file=sys.stderr)
            status = EXIT_USAGE
            continue
        for item in items:
            for found in rules.match(item):
                if args.explain:
                    write_explanation(rules, found, sys.stdout)
                else:
                    write_match(found, sys.stdout)
    return status


def write_explanation(rules: RuleSet, match: Match, out: TextIO) -> None:
    """The readable view of one match: rule, item, marked text and the rule's tree."""
    rule = rules.get(match.rule_id)
    if rule is None:
        return
    item = match.item
    out.write("\n".join(explain(rule, item)) + "\n")
    where = "  ".join(part for part in (item.source, item.link) if part)
    out.write(f"  item: {item.id}  {where}\n\n")


# -- backtest --------------------------------------------------------------------------------


def cmd_rules_backtest(args: argparse.Namespace) -> int:
    settings = load_settings_or_exit(args.config)
    try:
        since = parse_duration(args.since)
    except ValueError as exc:
        print(f"monitor: --since: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        deployed = load_rules(settings.rule_paths())
        draft = load_rules(args.rules) if args.rules else deployed
    except RuleSetError as exc:
        _print_problems(exc, "a backtest needs rules that load")
        return EXIT_USAGE
    now = datetime.now(UTC)
    try:
        items = asyncio.run(_history(settings, now - since))
    except MonitorError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    report = compare(items, deployed, draft)
    print_backtest(report, deployed, draft, now - since, sys.stdout)
    return EXIT_OK


async def _history(settings: Settings, since: datetime) -> list[Item]:
    async with command_stores(settings) as stores:
        return await stores.ingest.history(since)


def compare(items: list[Item], deployed: RuleSet, draft: RuleSet) -> Backtest:
    """Match every item with both rule sets, and replay each set's trends over what it
    matched (``monitor.rules.backtest``, shared with the console's playground)."""
    return compare_rule_sets(items, deployed, draft, replay=replay_trends)


def print_backtest(
    report: Backtest, deployed: RuleSet, draft: RuleSet, since: datetime, out: TextIO
) -> None:
    """A summary line, then every alert the draft would raise (+ new, = also deployed) and
    every deployed alert it would no longer raise (-)."""
    out.write(
        f"backtest over {report.items} items since {since:%Y-%m-%d %H:%M} UTC\n"
        f"deployed rules: {len(deployed)} rules, version {deployed.version}\n"
        f"draft rules:    {len(draft)} rules, version {draft.version}\n"
        f"draft alerts: {len(report.alerts)} ({len(report.new)} new, "
        f"{len(report.alerts) - len(report.new)} also deployed); "
        f"{len(report.gone)} deployed alerts no longer raised\n"
    )
    if report.alerts:
        out.write("\nwould alert on (+ new, = also raised by the deployed rules):\n")
        for match in report.alerts:
            out.write(_alert_line("+" if match.key in report.new else "=", match))
    if report.gone:
        out.write("\nno longer raised (- deployed only):\n")
        for match in report.gone:
            out.write(_alert_line("-", match))


def _alert_line(mark: str, match: Match) -> str:
    item = match.item
    title = " ".join(item.title.split())
    return f"  {mark} {match.rule_id}  {item.published:%Y-%m-%d %H:%M}  {item.source}  {title}\n"


def write_match(match: Match, out: TextIO) -> None:
    record = {
        "rule": match.rule_id,
        "severity": match.severity.label,
        "item": match.item.id,
        "title": match.item.title,
        "link": match.item.link,
        "source": match.item.source,
        "terms": list(match.terms),
        "hits": [
            {"term": h.term, "field": h.field, "start": h.start, "end": h.end, "text": h.text}
            for h in match.hits
        ],
    }
    out.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_items(source: str, now: datetime) -> Iterator[Item]:
    """Items from a JSON Lines file, a feed file or a feed URL, for the dry run."""
    if source.startswith(("http://", "https://")):
        body, headers = asyncio.run(_download(source))
        yield from _feed_items(body, headers, source, source, now)
        return
    path = Path(source)
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        yield from _jsonl_items(path)
        return
    yield from _feed_items(path.read_bytes(), {}, path.resolve().as_uri(), path.stem, now)


def _feed_items(
    body: bytes, headers: dict[str, str], url: str, name: str, now: datetime
) -> Iterator[Item]:
    try:
        feed = parse_feed(body, headers, url)
    except NotAFeedError as exc:
        raise ValueError(str(exc)) from None
    origin = Source(name=name, url=url)
    for entry in feed.entries:
        yield normalize_entry(entry, origin, now)


def _jsonl_items(path: Path) -> Iterator[Item]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                yield Item.from_dict(
                    {"source": path.stem, **data, "id": str(data.get("id") or number)}
                )
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ValueError(f"line {number}: not an item: {exc}") from None


async def _download(url: str) -> tuple[bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as session:
        source = Source(name="cli", url=url, timeout=timedelta(seconds=30))
        try:
            result = await Fetcher(session).fetch(source)
        except FeedError as exc:
            raise ValueError(str(exc)) from None
        return result.body, result.headers


# -- feedback ----------------------------------------------------------------------------------


def cmd_rules_stats(args: argparse.Namespace) -> int:
    settings = load_settings_or_exit(args.config)
    try:
        if args.candidates:
            votes = asyncio.run(_votes(settings, args.candidates))
            sys.stdout.write(candidates_yaml(args.candidates, votes))
            return EXIT_OK
        stats = asyncio.run(_stats(settings, datetime.now(UTC)))
    except MonitorError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print_stats(stats, sys.stdout)
    return EXIT_OK


async def _votes(settings: Settings, rule: str) -> list[Vote]:
    async with command_stores(settings) as stores:
        return await stores.feedback.votes(rule)


async def _stats(settings: Settings, now: datetime) -> list[RuleStats]:
    async with command_stores(settings) as stores:
        return await stores.feedback.stats(now)


def print_stats(stats: list[RuleStats], out: TextIO) -> None:
    """One line per rule: sent, relevant, not relevant and precision for 7 and 30 days."""
    if not stats:
        print("no alerts sent and no feedback yet", file=out)
        return
    by_rule = stats_by_rule(stats)
    width = max(len("RULE"), *(len(rule) for rule in by_rule))
    head = "   ".join(f"{'SENT':>5} {'REL':>4} {'NOT':>4} {'PREC ' + w:>8}" for w in ("7d", "30d"))
    print(f"{'RULE':<{width}}   {head}", file=out)
    for rule, windows in by_rule.items():
        cells = "   ".join(
            f"{s.sent:>5} {s.relevant:>4} {s.not_relevant:>4} {format_precision(s.precision):>8}"
            for s in (windows["7d"], windows["30d"])
        )
        print(f"{rule:<{width}}   {cells}", file=out)
