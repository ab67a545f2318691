"""Fixtures shared by the whole suite: private Redis servers, local feed/Slack/SMTP servers.

Tests never touch the shared Redis on port 6379: each session starts its own redis-server on
a free port in a temporary directory, and tests that need to kill or restart Redis get one of
their own.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from support.feed_server import FeedServer

from monitor.app.embedded_redis import EmbeddedRedis

pytest_plugins = ["support.channel_fixtures"]

REPO = Path(__file__).resolve().parents[1]
SHARED_CORPUS = REPO.parent / "shared" / "corpus"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that read ../shared/corpus skip, with the reason, in a clone that lacks it."""
    if SHARED_CORPUS.is_dir():
        return
    skip = pytest.mark.skip(
        reason=f"needs the shared feed corpus at {SHARED_CORPUS} (present in CI, not in a clone)"
    )
    for item in items:
        if "corpus" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: apt-get install redis-server (.ci/run does)")
    return binary


@pytest.fixture(scope="session")
def session_redis(
    tmp_path_factory: pytest.TempPathFactory, redis_binary: str
) -> Iterator[EmbeddedRedis]:
    """One private redis-server for the whole session; tests isolate by key prefix or flush."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), binary=redis_binary)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis_client(session_redis: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    """A client on the private session server, emptied before each test."""
    client = aioredis.Redis.from_url(session_redis.url, decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
def own_redis(tmp_path: Path, redis_binary: str) -> Iterator[EmbeddedRedis]:
    """A redis-server of this test's own, which the test may kill and restart."""
    server = EmbeddedRedis(tmp_path / "redis", binary=redis_binary)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server
