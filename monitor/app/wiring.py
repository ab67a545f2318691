"""The one composition root: Redis, the stores, the channels and the daemon's parts, built
once from the settings, for the daemon and for every one-off command alike.

Nothing else in ``monitor`` builds a Redis client or a store from the settings: a command
asks for ``command_stores(settings)``, the daemon for ``daemon_parts(...)``, so both read
and write the same keys in the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import redis.asyncio as aioredis
import structlog
from pydantic import SecretStr
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff

from monitor.app.embedded_redis import EmbeddedRedis, running_url
from monitor.deliver import build as delivery
from monitor.deliver.channels import Channel
from monitor.deliver.feedback_store import FeedbackStore
from monitor.deliver.history import SentLog
from monitor.deliver.ops_alerts import OpsWatch
from monitor.deliver.queue import AlertQueue
from monitor.deliver.silences import SilenceStore
from monitor.deliver.worker import DeliveryWorker
from monitor.errors import MonitorError
from monitor.ingest.fetch import Fetcher
from monitor.ingest.poll import PollContext, prepare_in_process
from monitor.ingest.pool.parsers import ParserPool, worker_count
from monitor.ingest.state import Store
from monitor.model import Source
from monitor.redisio import Keys
from monitor.rules import RuleSet
from monitor.settings import OpsSettings, Settings, split_host_port
from monitor.stories import source_metas
from monitor.stories.cluster import Extractor
from monitor.stories.store import StoryStore
from monitor.stories.story import FollowUpPolicy
from monitor.stories.volume import VolumeStore

if TYPE_CHECKING:
    from monitor.console.server import ConsoleServer
    from monitor.console.slack_actions import SlackActionsServer

log = structlog.get_logger("monitor.app.wiring")


# -- Redis ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedisLink:
    """A client, and the embedded server this process started for it (None: a URL)."""

    client: aioredis.Redis
    server: EmbeddedRedis | None


@contextlib.asynccontextmanager
async def daemon_redis(settings: Settings) -> AsyncIterator[RedisLink]:
    """The daemon's Redis: the embedded server started on the data directory (the daemon owns
    and supervises it) or the configured URL, with a client that retries brief outages."""
    url = settings.redis.url
    server: EmbeddedRedis | None = None
    if url == "embedded" and settings.redis.sentinel is None:
        server = EmbeddedRedis(
            settings.resolve_path(settings.redis.data_dir), binary=settings.redis.binary
        )
        await asyncio.to_thread(server.start)
        url = server.url
        log.info("embedded redis started", port=server.port)
    try:
        async with _client(
            settings,
            url,
            retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=3),
            health_check_interval=30,
        ) as client:
            yield RedisLink(client, server)
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)
            log.info("embedded redis stopped")


@contextlib.asynccontextmanager
async def redis_for_command(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """A Redis client for a one-off command (``alerts``, ``silence``, ``rules backtest``...).

    With a Redis URL it connects there.  With the embedded Redis it uses the server a running
    daemon owns in the data directory, or, when no daemon runs, starts the embedded server on
    that directory for the length of the command, so the same data is seen either way.
    """
    url = settings.redis.url
    embedded: EmbeddedRedis | None = None
    if url == "embedded" and settings.redis.sentinel is None:
        data_dir = settings.resolve_path(settings.redis.data_dir)
        url = running_url(data_dir) or ""
        if not url:
            embedded = EmbeddedRedis(data_dir, binary=settings.redis.binary)
            await asyncio.to_thread(embedded.start)
            url = embedded.url
    try:
        async with _client(settings, url) as client:
            yield client
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


@contextlib.asynccontextmanager
async def _client(settings: Settings, url: str, **options: Any) -> AsyncIterator[aioredis.Redis]:
    """A client on ``url``, or, with ``redis.sentinel``, on whichever server the sentinels
    name as master.

    The Sentinel client asks the sentinels again whenever its connection to the master
    fails or the old master answers READONLY (it was demoted), so after a failover the
    next retry lands on the promoted replica; scripts are reloaded there by redis-py's
    ``Script`` objects on NOSCRIPT.
    """
    sentinel = settings.redis.sentinel
    if sentinel is None:
        client = aioredis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=5, **options
        )
        try:
            yield client
        finally:
            await client.aclose()
        return
    timeout = sentinel.socket_timeout.total_seconds()
    connect = sentinel.connect_timeout.total_seconds()
    sentinels = Sentinel(
        [split_host_port(address) for address in sentinel.sentinels],
        sentinel_kwargs={
            "password": _secret(sentinel.sentinel_password),
            "socket_timeout": timeout,
            "socket_connect_timeout": connect,
        },
    )
    client = sentinels.master_for(
        sentinel.master,
        redis_class=aioredis.Redis,
        db=sentinel.db,
        password=_secret(sentinel.password),
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=connect,
        **options,
    )
    try:
        yield client
    finally:
        await client.aclose()
        for each in sentinels.sentinels:
            await each.aclose()


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


# -- stores -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stores:
    """Every Redis-backed store, built once on one client with the settings' key prefix.

    Building one touches no server: the daemon creates the consumer group itself
    (``queue.ensure_group``), commands only read or write what they name.
    """

    keys: Keys
    ingest: Store
    queue: AlertQueue
    stories: StoryStore
    volume: VolumeStore
    silences: SilenceStore
    feedback: FeedbackStore

    @classmethod
    def build(
        cls, client: aioredis.Redis, settings: Settings, extractor: Extractor | None = None
    ) -> Stores:
        """``extractor`` finds entities for stories (the daemon's comes from its rules'
        entity list); commands that only read stories need none."""
        keys = Keys(settings.redis.key_prefix)
        stories = settings.stories
        return cls(
            keys=keys,
            ingest=Store(
                client,
                keys,
                seen_ttl=settings.dedup.ttl,
                history_retention=settings.history.retention,
            ),
            queue=AlertQueue(
                client,
                keys,
                keep_dead=settings.delivery.keep_dead,
                keep_log=settings.delivery.keep_log,
            ),
            stories=StoryStore(
                client,
                keys,
                extractor,
                window=stories.window,
                retention=stories.retention,
                sources=source_metas(stories),
            ),
            volume=VolumeStore(client, keys),
            silences=SilenceStore(client, keys),
            feedback=FeedbackStore(client, keys),
        )


@contextlib.asynccontextmanager
async def command_stores(settings: Settings) -> AsyncIterator[Stores]:
    """The stores for a one-off command, on ``redis_for_command``'s client."""
    async with redis_for_command(settings) as client:
        yield Stores.build(client, settings)


# -- channels and the daemon's parts ----------------------------------------------------------


def build_channels(
    settings: Settings, session: aiohttp.ClientSession, feedback: FeedbackStore | None = None
) -> dict[str, Channel]:
    """One channel object per active channel in the config (``feedback``: the Slack app's
    threads and alert texts).

    Channels refuse unsafe combinations themselves (a password over plain SMTP to a remote
    host, say); that is a config problem, so it is raised as one.
    """
    try:
        return delivery.build_channels(settings, session, feedback)
    except ValueError as exc:
        raise MonitorError(f"channels: {exc}", hint="fix the channel settings") from None


def parser_pool(
    workers: int, rules: RuleSet, parse_budget: float | None = None
) -> ParserPool | None:
    """Worker processes for parsing and matching; none on a one-core machine or when
    switched off."""
    count = worker_count(workers)
    return ParserPool(count, rules, parse_budget=parse_budget) if count > 1 else None


@dataclass(frozen=True, slots=True)
class DaemonParts:
    """What the daemon runs with, built by ``daemon_parts`` and closed when it ends."""

    redis: RedisLink
    stores: Stores
    channels: Mapping[str, Channel]
    worker: DeliveryWorker
    ops: OpsWatch
    pool: ParserPool | None
    poll: PollContext


@contextlib.asynccontextmanager
async def daemon_parts(
    settings: Settings,
    rules: RuleSet,
    *,
    consumer: str,
    clock: Callable[[], datetime],
    ops_config: Callable[[], OpsSettings],
) -> AsyncIterator[DaemonParts]:
    """Build every part of the daemon once; close them all, in reverse, when it ends (or when
    building one fails half-way).  ``ops_config`` is read on every ops check, so a config
    reload reaches it."""
    async with contextlib.AsyncExitStack() as stack:
        link = await stack.enter_async_context(daemon_redis(settings))
        stores = Stores.build(link.client, settings, Extractor(rules.lexicon))
        await stores.queue.ensure_group()
        limit = settings.http.max_concurrency
        # The fetches' own pool.  ``HostGate`` keeps to ``http.per_host`` before a request
        # starts (so that the wait is not timed); the connector's equal limit is a backstop.
        fetching = await stack.enter_async_context(
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=limit, limit_per_host=settings.http.per_host),
                auto_decompress=True,
            )
        )
        # Alerts have connections of their own: a burst of slow feeds may hold every
        # connection the fetches may use, and an alert must not wait (or time out) behind it.
        delivering = await stack.enter_async_context(aiohttp.ClientSession())
        channels = build_channels(settings, delivering, stores.feedback)
        stack.push_async_callback(_close_channels, channels)
        worker = delivery.build_worker(
            settings,
            stores.queue,
            channels,
            consumer=consumer,
            clock=clock,
            translator=delivery.build_translator(settings, delivering, stores.queue),
        )
        worker.ops_channels = settings.ops.channels
        worker.feedback = stores.feedback
        actions = slack_actions_server(settings, stores, clock)
        if actions is not None and await actions.start():
            stack.push_async_callback(actions.stop)
        worker.history = SentLog(stores.queue.client, stores.keys, keep=settings.delivery.keep_sent)
        ops = OpsWatch(
            stores.queue,
            channels,
            worker.policy.route_list,
            replica=consumer,
            config=ops_config,
            secrets=settings.secrets(),
            clock=clock,
        )
        budget = settings.ingest.parse_budget.total_seconds()
        pool = parser_pool(settings.ingest.workers, rules, budget)
        if pool is not None:
            pool.start()
            stack.callback(close_parsers, pool)
        poll = PollContext(
            fetcher=Fetcher(
                fetching,
                user_agent=settings.http.user_agent,
                host_gap=settings.http.host_gap.total_seconds(),
                per_host=settings.http.per_host,
                file_readers=settings.ingest.file_readers,
            ),
            store=stores.ingest,
            clock=clock,
            backfill=settings.ingest.backfill,
            health_alert_after=settings.ingest.health_alert_after,
            prepare=pool.prepare if pool is not None else prepare_in_process,
            stories=stores.stories if settings.stories.enabled else None,
            follow_ups=FollowUpPolicy(corroboration=settings.stories.corroboration),
            volume=stores.volume,
        )
        yield DaemonParts(link, stores, channels, worker, ops, pool, poll)


def console_server(
    settings: Callable[[], Settings],
    stores: Stores,
    sources: Callable[[], Sequence[Source]],
    clock: Callable[[], datetime],
    rules: Callable[[], RuleSet] | None = None,
) -> ConsoleServer | None:
    """The web console over the daemon's stores, when ``console.enabled``; ``settings``,
    ``sources`` and ``rules`` (the running rule set, for "which rules match") are read on
    each request, so a reload's users, roles, feeds and rules apply."""
    if not settings().console.enabled:
        return None
    # Imported here: the console's templates and views cost every start 0.2 s, spent only
    # by a daemon that serves it.
    from monitor.console.server import ConsoleServer, ConsoleStores

    return ConsoleServer(
        lambda: settings().console,
        stores=ConsoleStores(stores.stories, stores.ingest, stores.queue, stores.silences),
        sources=sources,
        clock=clock,
        rules=rules,
    )


def slack_actions_server(
    settings: Settings, stores: Stores, clock: Callable[[], datetime]
) -> SlackActionsServer | None:
    """The endpoint for the Slack app's buttons, when they are on (app mode with a signing
    secret, ``channels.slack.interactivity.port`` not 0).  It lives as long as the daemon's
    parts, on a port of its own: see ``console.slack_actions`` for why."""
    slack = settings.channels.slack
    if slack is None or not slack.active or not slack.buttons or not slack.interactivity.port:
        return None
    from monitor.console.slack_actions import SlackActionsServer  # see console_server

    where = slack.interactivity
    return SlackActionsServer(
        slack.signing_secret.get_secret_value(),
        feedback=stores.feedback,
        silences=stores.silences,
        api=delivery.slack_api(settings, None),
        clock=clock,
        host=where.host,
        port=where.port,
        path=where.path,
    )


def close_parsers(pool: ParserPool) -> None:
    """Terminate the parser processes, then close the pool.  A parse may run for minutes
    and nothing in one is worth waiting for when the daemon stops: the feed is polled again
    at the next start.  (Closing the pool alone would wait for every parse to finish.)"""
    for pid in pool.pids():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    pool.close()


async def _close_channels(channels: Mapping[str, Channel]) -> None:
    for channel in channels.values():
        with contextlib.suppress(Exception):
            await channel.close()
