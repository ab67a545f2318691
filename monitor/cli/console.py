"""``monitor console``: the web console's helpers; ``hash-password`` makes the Argon2 hash
that ``console.users.<name>.password_hash`` holds, so no password is ever written down."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TextIO

from monitor.cli.common import EXIT_OK, EXIT_USAGE, Subcommands
from monitor.console.passwords import hash_password

MIN_LENGTH = 12


def register(commands: Subcommands) -> None:
    console = commands.add_parser("console", help="the web console: make password hashes")
    actions = console.add_subparsers(dest="console_command", required=True, metavar="ACTION")
    hashing = actions.add_parser(
        "hash-password",
        help="print an Argon2 hash for console.users.<name>.password_hash",
        description="Prompts for the password twice on a terminal; otherwise reads it from "
        "the first line of standard input.  Prints only the hash.",
    )
    hashing.set_defaults(handler=cmd_hash_password)


def read_password(stream: TextIO) -> str:
    """The password: prompted twice (not echoed) on a terminal, else the stream's first line."""
    if stream.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Again: "):
            raise ValueError("the two passwords differ")
        return first
    return stream.readline().rstrip("\r\n")


def cmd_hash_password(_args: argparse.Namespace) -> int:
    try:
        password = read_password(sys.stdin)
    except (ValueError, EOFError) as exc:
        print(f"monitor: {exc or 'no password given'}", file=sys.stderr)
        return EXIT_USAGE
    if len(password) < MIN_LENGTH:
        print(f"monitor: use a password of at least {MIN_LENGTH} characters", file=sys.stderr)
        return EXIT_USAGE
    print(hash_password(password))
    return EXIT_OK
