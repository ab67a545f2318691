"""The ``monitor`` command: one module per group of subcommands, registered here.

Exit codes: 0 success; 1 a check failed (lint errors, unhealthy); 2 the command cannot run
as asked (bad config, unreadable input, Redis cannot start).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from monitor import __version__
from monitor.cli import alerts, feeds, health, rules, run, silence, status, stories


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monitor",
        description="Watch news feeds for the events analysts care about and alert them.",
    )
    parser.add_argument("--version", action="version", version=f"monitor {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (run, status, rules, feeds, health, alerts, silence, stories):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
