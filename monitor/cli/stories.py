"""``monitor stories``: the stories items were clustered into, and one story's timeline."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from monitor.app.wiring import command_stores
from monitor.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Subcommands,
    load_settings_or_exit,
)
from monitor.cli.feeds import iso_utc
from monitor.deliver.render.strings import clean_line, clip
from monitor.errors import StoreError
from monitor.model import ago
from monitor.settings import parse_duration
from monitor.stories.store import StoryStore
from monitor.stories.story import RuleState, Story

T = TypeVar("T")
TITLE_WIDTH = 70
LIST_LIMIT = 200
PAGE = 200
"""Stories read from Redis at a time by ``stories list --all``."""


def register(commands: Subcommands) -> None:
    stories = commands.add_parser("stories", help="stories: items about one event, clustered")
    actions = stories.add_subparsers(dest="stories_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="stories with items seen recently")
    listing.add_argument("--since", default="24h", help="e.g. 30m, 24h, 3d (default 24h)")
    shown = listing.add_mutually_exclusive_group()
    shown.add_argument(
        "--limit", type=int, default=LIST_LIMIT, help=f"at most N stories (default {LIST_LIMIT})"
    )
    shown.add_argument("--all", action="store_true", help="every story in the window")
    show = actions.add_parser("show", help="one story: items, sources, languages, timeline")
    show.add_argument("id", help="story id from 'stories list'")
    for action in (listing, show):
        action.add_argument("-c", "--config", help="config file (default: $MONITOR_CONFIG)")
        action.add_argument("--json", action="store_true", help="JSON instead of text")
    listing.set_defaults(handler=cmd_stories_list)
    show.set_defaults(handler=cmd_stories_show)


# --- pure rendering ------------------------------------------------------------------------


def story_summary(story: Story) -> dict[str, Any]:
    """A story as JSON for ``--json``: what it is known as, its spread and its provenance."""
    return {
        "id": story.id,
        "title": story.title,
        "first_seen": iso_utc(story.first_seen),
        "last_seen": iso_utc(story.last_seen),
        "items": len(story.items),
        "sources": list(story.sources),
        "independent_sources": len(story.owners),
        "languages": list(story.languages),
        "kinds": list(story.kinds),
    }


def render_list(stories: list[Story], now: datetime) -> str:
    """One line per story, most recently active first; an empty window says so."""
    if not stories:
        return "no stories in this window"
    header = ("STORY", "ITEMS", "SOURCES", "LANGS", "LAST SEEN", "TITLE")
    rows = [header] + [
        (
            s.id,
            str(len(s.items)),
            str(len(s.owners)),
            ",".join(s.languages) or "-",
            ago(s.last_seen, now),
            clip(clean_line(s.title), TITLE_WIDTH),
        )
        for s in stories
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + "  "
        + row[-1]
        for row in rows
    )


def render_story(story: Story, now: datetime, rules: Sequence[RuleState] = ()) -> str:
    """The story as an analyst reads it: headline, spread, provenance, what each rule did
    (alerted, escalated, or held waiting for corroboration), then the timeline."""
    lines = [
        f"story {story.id}: {clean_line(story.title)}",
        f"first seen {_when(story.first_seen)} ({ago(story.first_seen, now)}), "
        f"last seen {_when(story.last_seen)} ({ago(story.last_seen, now)})",
        f"{len(story.items)} items from {len(story.sources)} sources "
        f"({len(story.owners)} independent), languages: {', '.join(story.languages) or '-'}",
        "",
        "sources:",
        *(f"  {line}" for line in story.provenance()),
        "",
    ]
    if rules:
        width = max(len(state.rule_id) for state in rules)
        lines.append("rules:")
        lines += [f"  {s.rule_id.ljust(width)}  {s.describe(len(story.owners))}" for s in rules]
        lines.append("")
    lines.append("timeline:")
    for item in sorted(story.items, key=lambda i: (i.seen_at, i.item_id)):
        lines.append(
            f"  {_when(item.seen_at)}  {item.source} [{item.lang or '?'}]  "
            f"{clip(clean_line(item.title), TITLE_WIDTH)}"
        )
        if item.link:
            lines.append(f"      {item.link}")
    return "\n".join(lines)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# --- commands --------------------------------------------------------------------------------


def _with_store(args: argparse.Namespace, use: Callable[[StoryStore], Awaitable[T]]) -> T:
    settings = load_settings_or_exit(args.config)

    async def run() -> T:
        async with command_stores(settings) as stores:
            return await use(stores.stories)

    return asyncio.run(run())


def cmd_stories_list(args: argparse.Namespace) -> int:
    try:
        since = parse_duration(args.since)
    except ValueError as exc:
        print(f"monitor: --since: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.limit < 1:
        print("monitor: --limit: at least 1", file=sys.stderr)
        return EXIT_USAGE
    now = datetime.now(UTC)
    limit = None if args.all else args.limit
    try:
        stories, total = _with_store(args, lambda store: _listed(store, now - since, limit))
    except StoreError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        for story in stories:
            print(json.dumps(story_summary(story), ensure_ascii=False))
    else:
        print(render_list(stories, now))
    if total > len(stories):  # never cut the list silently
        print(
            f"{len(stories)} of {total} stories shown; --limit N or --all for more",
            file=sys.stderr,
        )
    return EXIT_OK


async def _listed(store: StoryStore, since: datetime, limit: int | None) -> tuple[list[Story], int]:
    """Up to ``limit`` recent stories (None: all, read a page at a time), and how many the
    window holds."""
    total = await store.count_recent(since)
    wanted = total if limit is None else min(limit, total)
    stories: list[Story] = []
    for offset in range(0, wanted, PAGE):  # a story that expired meanwhile is left out
        stories.extend(await store.recent(since, min(PAGE, wanted - offset), offset=offset))
    return stories, total


async def _story_and_rules(
    store: StoryStore, story_id: str
) -> tuple[Story | None, list[RuleState]]:
    return await store.story(story_id), await store.rule_states(story_id)


def cmd_stories_show(args: argparse.Namespace) -> int:
    try:
        story, rules = _with_store(args, lambda store: _story_and_rules(store, args.id))
    except StoreError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if story is None:
        print(
            f"monitor: no story {args.id} (stories expire after stories.retention)", file=sys.stderr
        )
        return EXIT_FAILED
    if args.json:
        data = story_summary(story)
        data["items"] = [item.to_dict() for item in story.items]
        data["provenance"] = story.provenance()
        data["rules"] = [
            {
                "rule": state.rule_id,
                "alerted_by": state.alerted_by,
                "escalated_by": state.escalated_by,
                "state": state.describe(len(story.owners)),
            }
            for state in rules
        ]
        print(json.dumps(data, ensure_ascii=False))
    else:
        print(render_story(story, datetime.now(UTC), rules))
    return EXIT_OK
