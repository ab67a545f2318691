"""``monitor health``: probe a running daemon's /healthz, for the container's HEALTHCHECK."""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request

from monitor.cli.common import EXIT_FAILED, EXIT_OK, Subcommands

DEFAULT_HEALTH_URL = "http://127.0.0.1:8080/healthz"


def register(commands: Subcommands) -> None:
    health = commands.add_parser(
        "health", help="probe a running daemon's /healthz (for HEALTHCHECK)"
    )
    health.add_argument("--url", default=DEFAULT_HEALTH_URL, help=f"default: {DEFAULT_HEALTH_URL}")
    health.add_argument("--timeout", type=float, default=5.0)
    health.set_defaults(handler=cmd_health)


def cmd_health(args: argparse.Namespace) -> int:
    try:
        with urllib.request.urlopen(args.url, timeout=args.timeout) as response:  # noqa: S310
            ok = response.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print("healthy" if ok else "unhealthy")
    return EXIT_OK if ok else EXIT_FAILED
