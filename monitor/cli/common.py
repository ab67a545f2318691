"""What subcommand modules share: exit codes, the subcommand registry type, the config.

Redis and the stores come from the composition root, ``monitor.app.wiring.command_stores``."""

from __future__ import annotations

import argparse
import sys
from typing import TypeAlias

from monitor.errors import ConfigError
from monitor.settings import Settings, find_config_path, load_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def load_settings_or_exit(config: str | None) -> Settings:
    """The settings named by ``-c`` / $MONITOR_CONFIG / ./monitor.yaml, or exit 2 saying why."""
    try:
        return load_settings(find_config_path(config))
    except ConfigError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
