"""What subcommand modules share: exit codes, the subcommand registry type, config and Redis."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import TypeAlias

import redis.asyncio as aioredis

from monitor.app.embedded_redis import EmbeddedRedis, running_url
from monitor.errors import ConfigError
from monitor.settings import Settings, find_config_path, load_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


@contextlib.asynccontextmanager
async def redis_for_command(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """A Redis client for a one-off command (``alerts``, ``silence``, ``rules backtest``...).

    With a Redis URL it connects there.  With the embedded Redis it uses the server a running
    daemon owns in the data directory, or, when no daemon runs, starts the embedded server on
    that directory for the length of the command, so the same data is seen either way.
    """
    url = settings.redis.url
    embedded: EmbeddedRedis | None = None
    if url == "embedded":
        data_dir = settings.resolve_path(settings.redis.data_dir)
        url = running_url(data_dir) or ""
        if not url:
            embedded = EmbeddedRedis(data_dir, binary=settings.redis.binary)
            await asyncio.to_thread(embedded.start)
            url = embedded.url
    client = aioredis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5)
    try:
        yield client
    finally:
        await client.aclose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def load_settings_or_exit(config: str | None) -> Settings:
    """The settings named by ``-c`` / $MONITOR_CONFIG / ./monitor.yaml, or exit 2 saying why."""
    try:
        return load_settings(find_config_path(config))
    except ConfigError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
