"""The ``monitor`` command: one module per group of subcommands, registered here.

Exit codes: 0 success; 1 a check failed (lint errors, unhealthy); 2 the command cannot run
as asked (bad config, unreadable input, Redis cannot start).

This module is also the console script's entry point, so it imports the command modules only
when ``main`` runs.  A parser process started through multiprocessing's fork server first
imports its parent's main script again, as ``__mp_main__``, and a console script imports its
entry point's module at its top: were the commands imported here, every parser process would
load the daemon's HTTP client, Redis, settings and delivery modules, some 30 MB each that
parsing never uses.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from monitor import __version__


def build_parser() -> argparse.ArgumentParser:
    from monitor.cli import alerts, console, feeds, health, rules, run, silence, status, stories

    parser = argparse.ArgumentParser(
        prog="monitor",
        description="Watch news feeds for the events analysts care about and alert them.",
    )
    parser.add_argument("--version", action="version", version=f"monitor {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (run, status, rules, feeds, health, alerts, silence, stories, console):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``monitor rules match ... | head``): what it wanted it has.
        # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a process ended by SIGPIPE
