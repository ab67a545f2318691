"""What every subcommand module shares: exit codes and the type of the subcommand registry."""

from __future__ import annotations

import argparse
from typing import TypeAlias

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
