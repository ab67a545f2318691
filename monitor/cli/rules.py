"""``monitor rules``: the analyst's tools: lint rule files, dry-run them over feeds or items."""

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

from monitor.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Subcommands
from monitor.errors import FeedError, MonitorError, RuleSetError
from monitor.fetch import Fetcher
from monitor.model import Item, Match, Source
from monitor.normalize import normalize_entry
from monitor.parse import NotAFeedError, parse_feed
from monitor.rules import lint_rules, load_rules


def register(commands: Subcommands) -> None:
    rules = commands.add_parser("rules", help="check and try rule files")
    rule_commands = rules.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    lint = rule_commands.add_parser("lint", help="validate rule files; exit 1 on any problem")
    lint.add_argument(
        "paths", nargs="*", type=Path, help="rule files or directories (default: rules/)"
    )
    lint.set_defaults(handler=cmd_rules_lint)
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
    match.set_defaults(handler=cmd_rules_match)


# -- rules -----------------------------------------------------------------------------------


def cmd_rules_lint(args: argparse.Namespace) -> int:
    paths = list(args.paths) or [Path("rules")]
    missing = [path for path in paths if not path.exists()]
    if missing:
        for path in missing:
            print(f"{path}: no such file or directory", file=sys.stderr)
        return EXIT_USAGE
    problems = lint_rules(paths)
    for problem in problems:
        print(str(problem))
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_rules_match(args: argparse.Namespace) -> int:
    try:
        rules = load_rules(args.rules)
    except RuleSetError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
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
                write_match(found, sys.stdout)
    return status


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
