"""``monitor alerts``: inspect delivery, list dead letters and send them again."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime

from monitor.app.wiring import command_stores
from monitor.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Subcommands,
    load_settings_or_exit,
)
from monitor.deliver.queue import DeadLetter, entry_ms
from monitor.deliver.render.strings import clean_line, clip
from monitor.errors import StoreError


def register(commands: Subcommands) -> None:
    alerts = commands.add_parser("alerts", help="inspect delivery: queue, dead letters, retries")
    actions = alerts.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    status = actions.add_parser("status", help="how many alerts are queued, retrying or dead")
    dead = actions.add_parser("dead", help="list alerts a channel refused for good, with why")
    dead.add_argument("--json", action="store_true", help="one JSON object per dead letter")
    retry = actions.add_parser("retry", help="send dead letters again (to the refusing channel)")
    retry.add_argument("ids", nargs="*", metavar="ID", help="dead-letter ids from 'alerts dead'")
    retry.add_argument("--all", action="store_true", help="every dead letter")
    for action in (status, dead, retry):
        action.add_argument("-c", "--config", help="config file (default: $MONITOR_CONFIG)")
    status.set_defaults(handler=cmd_alerts_status)
    dead.set_defaults(handler=cmd_alerts_dead)
    retry.set_defaults(handler=cmd_alerts_retry)


def cmd_alerts_status(args: argparse.Namespace) -> int:
    settings = load_settings_or_exit(args.config)

    async def read() -> dict[str, int]:
        async with command_stores(settings) as stores:
            queue = stores.queue
            counts = await queue.stream_counts()
            return {**counts, "retrying": await queue.retrying()}

    try:
        counts = asyncio.run(read())
    except StoreError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for name, value in counts.items():
        print(f"{name:10} {value}")
    return EXIT_OK


def dead_row(letter: DeadLetter) -> dict[str, object]:
    """What an operator needs to decide about a dead letter; text cleaned for a terminal."""
    match = letter.match
    when = datetime.fromtimestamp(entry_ms(letter.id) / 1000, UTC)
    return {
        "id": letter.id,
        "at": when.isoformat(),
        "channel": letter.channel,
        "recipients": list(letter.recipients),
        "rule": match.rule_id if match else "-",
        "title": clip(clean_line(match.item.title), 80) if match else "(unreadable)",
        "attempts": letter.attempts,
        "reason": clean_line(letter.reason),
    }


def letter_recipients(row: dict[str, object]) -> list[str]:
    found = row.get("recipients")
    return [str(r) for r in found] if isinstance(found, list) else []


def cmd_alerts_dead(args: argparse.Namespace) -> int:
    settings = load_settings_or_exit(args.config)

    async def read() -> list[DeadLetter]:
        async with command_stores(settings) as stores:
            return await stores.queue.dead_letters()

    try:
        letters = asyncio.run(read())
    except StoreError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_FAILED
    rows = [dead_row(letter) for letter in letters]
    for row in rows:
        if args.json:
            print(json.dumps(row, ensure_ascii=False))
            continue
        recipients = ", ".join(letter_recipients(row))
        to = f" → {recipients}" if recipients else ""
        at = datetime.fromisoformat(str(row["at"])).strftime("%Y-%m-%d %H:%M:%S UTC")
        print(f"{row['id']}  {at}  {row['channel']}{to}  {row['rule']}  {row['title']}")
        print(f"    {row['attempts']} attempt(s): {row['reason']}")
    if not args.json:
        print(f"{len(rows)} dead letter(s)", file=sys.stderr)
    return EXIT_OK


def cmd_alerts_retry(args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.all):
        print("monitor: name dead-letter ids or --all (not both)", file=sys.stderr)
        return EXIT_USAGE
    settings = load_settings_or_exit(args.config)

    async def requeue() -> tuple[int, list[str]]:
        async with command_stores(settings) as stores:
            queue = stores.queue
            letters = {letter.id: letter for letter in await queue.dead_letters(count=1_000_000)}
            wanted = list(letters) if args.all else list(args.ids)
            missing = [i for i in wanted if i not in letters]
            done = 0
            for letter_id in (i for i in wanted if i in letters):
                done += await queue.requeue_dead(letters[letter_id])
            return done, missing

    try:
        done, missing = asyncio.run(requeue())
    except StoreError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for letter_id in missing:
        print(f"monitor: no dead letter {letter_id}", file=sys.stderr)
    print(f"re-queued {done} alert(s); a running daemon sends them within seconds")
    return EXIT_FAILED if missing else EXIT_OK
