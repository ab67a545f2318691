"""``monitor silence``: stop alerts of a rule or tag for a while; they are recorded, not sent."""

from __future__ import annotations

import argparse
import asyncio
import getpass
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
from monitor.deliver.policy import Silence
from monitor.deliver.render.strings import clean_line
from monitor.errors import StoreError
from monitor.settings import parse_duration

DEFAULT_FOR = "24h"


def register(commands: Subcommands) -> None:
    silence = commands.add_parser("silence", help="silence alerts of a rule or tag for a while")
    actions = silence.add_subparsers(dest="silence_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="silence a rule or a tag")
    which = add.add_mutually_exclusive_group(required=True)
    which.add_argument("--rule", help="rule id")
    which.add_argument("--tag", help="rule or feed tag")
    add.add_argument("--for", dest="duration", default=DEFAULT_FOR, help="e.g. 30m, 4h, 2d")
    add.add_argument("--reason", required=True, help="why, for whoever reads 'silence list'")
    listing = actions.add_parser("list", help="silences in force")
    remove = actions.add_parser("remove", help="end a silence now")
    remove.add_argument("id", help="silence id from 'silence list'")
    for action in (add, listing, remove):
        action.add_argument("-c", "--config", help="config file (default: $MONITOR_CONFIG)")
    add.set_defaults(handler=cmd_silence_add)
    listing.set_defaults(handler=cmd_silence_list)
    remove.set_defaults(handler=cmd_silence_remove)


def describe(silence: Silence, now: datetime) -> str:
    target = silence.target
    left = int((silence.ends - now).total_seconds() // 60)
    ends = silence.ends.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    by = f" by {silence.author}" if silence.author else ""
    return (
        f"{silence.id}  {target}  until {ends} ({left} min left){by}: {clean_line(silence.reason)}"
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def cmd_silence_add(args: argparse.Namespace) -> int:
    try:
        duration = parse_duration(args.duration)
    except ValueError as exc:
        print(f"monitor: --for: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.reason.strip():
        print("monitor: --reason must say why", file=sys.stderr)
        return EXIT_USAGE
    settings = load_settings_or_exit(args.config)
    now = datetime.now(UTC)

    async def add() -> Silence:
        async with command_stores(settings) as stores:
            return await stores.silences.add(
                rule=args.rule,
                tag=args.tag,
                duration=duration,
                reason=args.reason.strip(),
                now=now,
                author=_user(),
            )

    try:
        silence = asyncio.run(add())
    except ValueError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(describe(silence, now))
    return EXIT_OK


def cmd_silence_list(args: argparse.Namespace) -> int:
    settings = load_settings_or_exit(args.config)
    now = datetime.now(UTC)

    async def read() -> list[Silence]:
        async with command_stores(settings) as stores:
            return await stores.silences.active(now)

    try:
        silences = asyncio.run(read())
    except StoreError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for silence in silences:
        print(describe(silence, now))
    print(f"{len(silences)} silence(s) in force", file=sys.stderr)
    return EXIT_OK


def cmd_silence_remove(args: argparse.Namespace) -> int:
    settings = load_settings_or_exit(args.config)

    async def remove() -> bool:
        async with command_stores(settings) as stores:
            return await stores.silences.remove(args.id)

    try:
        removed = asyncio.run(remove())
    except StoreError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if not removed:
        print(f"monitor: no silence {args.id}", file=sys.stderr)
        return EXIT_FAILED
    print(f"silence {args.id} removed")
    return EXIT_OK
