"""``monitor feeds``: ``status`` (one table showing which feeds are healthy, failing or
stale), ``discover`` (the feeds a page advertises), ``import`` and ``export`` (OPML)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from monitor.app.wiring import command_stores
from monitor.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Subcommands,
    load_settings_or_exit,
)
from monitor.errors import FeedError, StoreError
from monitor.ingest.fetch import Fetcher, FetchResult
from monitor.ingest.onboard import (
    Discovery,
    FeedEntry,
    OnboardError,
    OpmlError,
    discover,
    discovery_entries,
    entries_opml,
    opml_entries,
    without_credentials,
    yaml_entry,
)
from monitor.ingest.state import FeedState
from monitor.model import Source, ago, ahead
from monitor.redact import mask_text, mask_url


def register(commands: Subcommands) -> None:
    feeds = commands.add_parser("feeds", help="inspect the configured feeds")
    actions = feeds.add_subparsers(dest="feeds_command", required=True, metavar="ACTION")
    status = actions.add_parser("status", help="health of every feed: last success, errors")
    status.add_argument("-c", "--config", help="config file (default: $MONITOR_CONFIG)")
    status.add_argument("--json", action="store_true", help="one JSON object per feed")
    status.set_defaults(handler=cmd_feeds_status)
    register_onboarding(actions)


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
    health = state.health(source.interval, now)
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
        next_poll=ahead(state.next_poll_at, now),
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


# --- onboarding: feeds discover | import | export ------------------------------------------

#: How long ``feeds discover`` waits for the whole page, redirects included.
DISCOVER_TIMEOUT = timedelta(seconds=30)
#: The most of a page ``feeds discover`` reads: the feed links are in its head.
DISCOVER_MAX_BYTES = 5 * 1024 * 1024


def register_onboarding(actions: Subcommands) -> None:
    """``feeds discover``, ``feeds import`` and ``feeds export``: getting feeds into the
    config (from a web page or another reader's OPML) and out of it (as OPML)."""
    found = actions.add_parser(
        "discover", help="list the feeds a web page advertises, as config entries"
    )
    found.add_argument("url", metavar="URL", help="a web page (or a feed) to look at")
    found.add_argument("--json", action="store_true", help="one JSON object per feed")
    found.set_defaults(handler=cmd_feeds_discover)
    opml_in = actions.add_parser("import", help="an OPML file's feeds as config entries")
    opml_in.add_argument("opml_file", metavar="OPML_FILE", help="exported by a feed reader")
    opml_in.set_defaults(handler=cmd_feeds_import)
    opml_out = actions.add_parser("export", help="the configured feeds as an OPML document")
    opml_out.add_argument("-c", "--config", help="config file (default: $MONITOR_CONFIG)")
    opml_out.set_defaults(handler=cmd_feeds_export)


def cmd_feeds_discover(args: argparse.Namespace) -> int:
    url: str = args.url
    shown = mask_url(url)
    problem = http_url_problem(url)
    if problem:
        print(f"monitor: cannot discover feeds at {shown}: {problem}", file=sys.stderr)
        return EXIT_FAILED
    try:
        result = asyncio.run(fetch_page(url))
        found = feed_address(discover(result.body, result.headers, result.url), url, result)
    except (FeedError, OnboardError) as exc:
        print(f"monitor: cannot discover feeds at {shown}: {mask_text(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        for line in discovery_json(found):
            print(line)
    else:
        print("\n".join(discovery_lines(found, result.url)))
    return EXIT_OK


def http_url_problem(url: str) -> str | None:
    """Pure: why ``url`` cannot be fetched for discovery, or None; only http(s) pages are
    looked at (a ``file:`` URL would read local files)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http(s) URL"
    return None


async def fetch_page(url: str) -> FetchResult:
    """The page at ``url`` through the daemon's own ``Fetcher``: one deadline for the whole
    exchange, a size cap, checked redirects (never from a public address to a private one)."""
    source = Source(
        name="discover", url=url, timeout=DISCOVER_TIMEOUT, max_bytes=DISCOVER_MAX_BYTES
    )
    async with aiohttp.ClientSession() as session:
        return await Fetcher(session).fetch(source)


def feed_address(found: Discovery, url: str, result: FetchResult) -> Discovery:
    """Pure: a URL that is itself a feed is configured as given, even when it redirected, as
    the daemon will follow the same redirect; only a permanent move (301/308) all the way
    gives the feed a new address.  Links a page advertises stay resolved against the page's
    final URL, where the browser would resolve them."""
    if not found.is_feed:
        return found
    address = result.permanent_url or url
    return replace(found, links=tuple(replace(link, url=address) for link in found.links))


def discovery_lines(found: Discovery, page_url: str) -> list[str]:
    """Pure: what ``feeds discover`` prints: a comment saying what was found, then one
    config line per feed with its title and kind as a trailing comment."""
    entries = discovery_entries(found.links)
    if found.is_feed:
        link = found.links[0]
        head = f"# {mask_url(link.url)} is itself a feed ({link.kind})"
    else:
        head = f"# {len(entries)} feed(s) advertised by {mask_url(page_url)}"
    lines = [head]
    for entry, link in zip(entries, found.links, strict=True):
        about = " ".join(part for part in (link.title, f"({link.kind})") if part)
        lines.append(f"{yaml_entry(entry)}  # {about}")
    return lines


def discovery_json(found: Discovery) -> list[str]:
    """Pure: ``feeds discover --json``, one object per feed: ``name``, ``title``, ``url``
    (masked), ``kind`` (RSS, Atom, JSON Feed) and ``is_feed`` (the URL itself is the feed)."""
    entries = discovery_entries(found.links)
    return [
        json.dumps(
            {
                "name": entry.name,
                "title": link.title,
                "url": mask_url(link.url),
                "kind": link.kind,
                "is_feed": found.is_feed,
            },
            ensure_ascii=False,
        )
        for entry, link in zip(entries, found.links, strict=True)
    ]


def cmd_feeds_import(args: argparse.Namespace) -> int:
    path = Path(args.opml_file)
    try:
        imported = opml_entries(path.read_bytes(), str(path))
    except OSError as exc:
        print(f"monitor: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except OpmlError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not imported.entries:
        print(f"monitor: {path}: no outline with an http(s) xmlUrl", file=sys.stderr)
        return EXIT_FAILED
    print("feeds:")
    for entry in imported.entries:
        print(f"  {yaml_entry(entry)}")
    for url in imported.skipped:
        print(
            f"monitor: skipped {mask_url(url)}: only http(s) feeds can be polled", file=sys.stderr
        )
    _say_masked(imported.entries, "shown as ***; put them back before use", mask_url)
    return EXIT_OK


def cmd_feeds_export(args: argparse.Namespace) -> int:
    settings = load_settings_or_exit(args.config)
    sources = settings.sources()
    entries = [
        FeedEntry(source.name, source.url, source.tags)
        for source in sources
        if source.kind == "feed"
    ]
    print(entries_opml(entries, created=datetime.now(UTC)), end="")
    pages = [source.name for source in sources if source.kind != "feed"]
    if pages:
        print(f"monitor: left out 'kind: page' sources: {', '.join(pages)}", file=sys.stderr)
    _say_masked(entries, "removed from the export", without_credentials)
    return EXIT_OK


def _say_masked(entries: Sequence[FeedEntry], what: str, change: Callable[[str], str]) -> None:
    """Tell the operator (on stderr, naming the feeds, never the secrets) which URLs held
    credentials that the output does not show."""
    names = [entry.name for entry in entries if change(entry.url) != entry.url]
    if names:
        print(f"monitor: credentials in the URLs of {', '.join(names)} {what}", file=sys.stderr)
