"""``monitor run``: the daemon, or one pass with ``--once``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from monitor.app.logs import configure_logging
from monitor.cli.common import EXIT_OK, EXIT_USAGE, Subcommands
from monitor.errors import ConfigError, MonitorError, RuleSetError
from monitor.settings import find_config_path, load_settings


def register(commands: Subcommands) -> None:
    run = commands.add_parser("run", help="run the daemon (or one pass with --once)")
    run.add_argument(
        "-c", "--config", help="config file (default: $MONITOR_CONFIG, else ./monitor.yaml)"
    )
    run.add_argument(
        "--once", action="store_true", help="poll every feed once, deliver what is due, exit"
    )
    run.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.app.daemon import Monitor  # the daemon's dependencies load only for this command

    path = find_config_path(args.config)
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(level=settings.log.level, fmt=settings.log.format, secrets=settings.secrets())

    async def go() -> None:
        async with Monitor(settings, config_path=path) as daemon:
            if args.once:
                await daemon.run_once()
            else:
                await daemon.run_forever()

    try:
        asyncio.run(go())
    except RuleSetError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        print(f"monitor: {exc.message}; fix them or run 'monitor rules lint'", file=sys.stderr)
        return EXIT_USAGE
    except MonitorError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
