"""``monitor status``: one screen for an operator: daemons, Redis, rules, feeds, queue."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime

from monitor import __version__
from monitor.app.wiring import command_stores
from monitor.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    Subcommands,
    load_settings_or_exit,
)
from monitor.cli.feeds import feed_row
from monitor.deliver.ops_alerts import DEAD_LETTERS_INCIDENT
from monitor.errors import RuleSetError, StoreError
from monitor.model import ago
from monitor.model import short_span as span
from monitor.redact import clip, mask_text, mask_url
from monitor.rules import load_rules
from monitor.settings import Settings


def register(commands: Subcommands) -> None:
    status = commands.add_parser("status", help="daemons, Redis, rules, feeds and queue at once")
    status.add_argument("-c", "--config", help="config file (default: $MONITOR_CONFIG)")
    status.set_defaults(handler=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    settings = load_settings_or_exit(args.config)
    try:
        lines, healthy = asyncio.run(gather(settings, datetime.now(UTC)))
    except StoreError as exc:
        print(f"redis        unreachable: {mask_text(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    print("\n".join(lines))
    return EXIT_OK if healthy else EXIT_FAILED


async def gather(settings: Settings, now: datetime) -> tuple[list[str], bool]:
    """The status lines, and whether everything an operator should worry about is fine."""
    async with command_stores(settings) as stores:
        store, queue = stores.ingest, stores.queue
        beats = await store.heartbeats()
        sources = settings.sources()
        states = await store.feed_states([s.name for s in sources])
        counts = await queue.stream_counts()
        retrying = await queue.retrying()
        incident = await queue.ops_state(DEAD_LETTERS_INCIDENT)
    rows = [feed_row(source, states[source.name], now) for source in sources]
    failing = [r.name for r in rows if r.health in ("failing", "stale")]
    lines = [
        f"monitor      {__version__}",
        f"redis        {_redis_where(settings)} reachable",
    ]
    lines += _daemon_lines(beats, now)
    lines.append(_rules_line(settings))
    lines.append(
        f"feeds        {len(rows) - len(failing)} healthy, {len(failing)} failing or stale"
        + (f": {', '.join(failing)}" if failing else "")
    )
    lines.append(
        f"alerts       {counts['queued']} queued, {counts['pending']} pending, "
        f"{retrying} retrying, {counts['dead']} dead"
    )
    if incident is not None:
        since = _incident_since(incident)
        lines.append(
            f"ops          dead-letter alert sent {ago(since, now)}; "
            "'monitor alerts dead' lists them, 'monitor alerts retry' re-sends"
        )
    healthy = bool(beats) and not failing and counts["dead"] == 0
    return lines, healthy


def _daemon_lines(beats: dict[str, dict[str, str]], now: datetime) -> list[str]:
    if not beats:
        return ["daemons      none running (no heartbeat in the last 2 minutes)"]
    lines = []
    for name, beat in sorted(beats.items()):
        started = _parse(beat.get("started_at"))
        uptime = f"up {span(now - started)}" if started else "up ?"
        cycle = _parse(beat.get("last_cycle"))
        alert = _parse(beat.get("last_alert"))
        lines.append(
            f"daemon       {name}: {uptime}, version {beat.get('version', '?')}, "
            f"last cycle {ago(cycle, now)}, last alert sent {ago(alert, now)}"
        )
    return lines


def _rules_line(settings: Settings) -> str:
    try:
        rules = load_rules(settings.rule_paths())
    except RuleSetError as exc:
        return (
            f"rules        INVALID: {clip(mask_text(exc.message), 500)}; run 'monitor rules lint'"
        )
    return f"rules        {len(rules)} loaded, version {rules.version}"


def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _incident_since(state: str) -> datetime | None:
    """When the open dead-letter incident began (its state is JSON with ``since``)."""
    try:
        return _parse(str(json.loads(state)["since"]))
    except (ValueError, KeyError, TypeError):
        return None


def _redis_where(settings: Settings) -> str:
    """Which Redis the status speaks of: the master name and sentinels behind Sentinel, else
    the URL (masked: it may hold a password)."""
    sentinel = settings.redis.sentinel
    if sentinel is not None:
        return f"sentinel master {sentinel.master} via {', '.join(sentinel.sentinels)}"
    return mask_url(settings.redis.url)
