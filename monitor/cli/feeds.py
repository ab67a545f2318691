"""``monitor feeds status``: one table showing which feeds are healthy, failing or stale."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from monitor.app.wiring import command_stores
from monitor.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    Subcommands,
    load_settings_or_exit,
)
from monitor.errors import StoreError
from monitor.ingest.schedule import is_stale
from monitor.ingest.state import FeedState
from monitor.model import Source
from monitor.redact import mask_text, mask_url


def register(commands: Subcommands) -> None:
    feeds = commands.add_parser("feeds", help="inspect the configured feeds")
    actions = feeds.add_subparsers(dest="feeds_command", required=True, metavar="ACTION")
    status = actions.add_parser("status", help="health of every feed: last success, errors")
    status.add_argument("-c", "--config", help="config file (default: $MONITOR_CONFIG)")
    status.add_argument("--json", action="store_true", help="one JSON object per feed")
    status.set_defaults(handler=cmd_feeds_status)


@dataclass(frozen=True, slots=True)
class FeedRow:
    """One line of the status table."""

    name: str
    health: str
    last_success: str
    failures: int
    next_poll: str
    items_seen: int
    note: str


def feed_row(source: Source, state: FeedState, now: datetime) -> FeedRow:
    """Pure: how a feed's stored state reads to an operator at ``now``."""
    if state.last_success is None and state.failures == 0:
        health = "never polled"
    elif state.failures:
        health = "failing"
    elif is_stale(state.last_success, source.interval, now, state.next_poll_at):
        health = "stale"
    else:
        health = "ok"
    # Masked again here: states stored before masking existed may still hold a password.
    note = mask_text(state.last_error or "") if state.failures else ""
    if state.moved_to:
        moved = mask_url(state.moved_to)
        note = f"moved permanently to {moved}; update the config. {note}".strip()
    return FeedRow(
        name=source.name,
        health=health,
        last_success=ago(state.last_success, now),
        failures=state.failures,
        next_poll=_ahead(state.next_poll_at, now),
        items_seen=state.items_seen,
        note=note,
    )


def feed_json(source: Source, state: FeedState, now: datetime) -> dict[str, object]:
    """Pure: a feed's row for ``--json``: the table's fields, times as ISO-8601 UTC (or
    null), so a script reads them without parsing "3m ago"."""
    row: dict[str, object] = asdict(feed_row(source, state, now))
    row["last_success"] = iso_utc(state.last_success)
    row["next_poll"] = iso_utc(state.next_poll_at)
    return row


def iso_utc(moment: datetime | None) -> str | None:
    """Every ``--json`` time: ISO-8601 in UTC, or None."""
    return None if moment is None else moment.astimezone(UTC).isoformat()


def ago(moment: datetime | None, now: datetime) -> str:
    return "-" if moment is None else f"{span(now - moment)} ago"


def _ahead(moment: datetime | None, now: datetime) -> str:
    if moment is None or moment <= now:
        return "due"
    return f"in {span(moment - now)}"


def span(delta: timedelta) -> str:
    """A duration as an operator reads it: 45s, 12m, 3h, 2d."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def render_table(rows: list[FeedRow]) -> str:
    header = ("FEED", "HEALTH", "LAST SUCCESS", "FAILS", "NEXT POLL", "ITEMS", "NOTE")
    cells = [header] + [
        (r.name, r.health, r.last_success, str(r.failures), r.next_poll, str(r.items_seen), r.note)
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header) - 1)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in cells
    ]
    return "\n".join(line.rstrip() for line in lines)


def cmd_feeds_status(args: argparse.Namespace) -> int:
    settings = load_settings_or_exit(args.config)
    sources = settings.sources()

    async def read() -> dict[str, FeedState]:
        async with command_stores(settings) as stores:
            return await stores.ingest.feed_states([source.name for source in sources])

    try:
        states = asyncio.run(read())
    except StoreError as exc:
        print(f"monitor: {mask_text(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    now = datetime.now(UTC)
    rows = [feed_row(source, states[source.name], now) for source in sources]
    if args.json:
        for source in sources:
            print(json.dumps(feed_json(source, states[source.name], now), ensure_ascii=False))
    else:
        print(render_table(rows))
    unhealthy = [row for row in rows if row.health in ("failing", "stale")]
    return EXIT_FAILED if unhealthy else EXIT_OK
