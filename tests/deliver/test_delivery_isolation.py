"""One bad channel never stops the alerting: lanes per channel, total send deadlines, leases
that outlast them, a thread pool of email's own, and pacing shared by every replica.

The servers are real: a tarpit SMTP server (an asyncio server on 127.0.0.1 that accepts and
never answers, or relays to aiosmtpd answering every line late), the Slack look-alike, and
private redis-server processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st
from support.channel_fixtures import enqueue, make_match
from support.servers import SlackServer, SmtpServer

from monitor.app.embedded_redis import EmbeddedRedis
from monitor.deliver.channels import Channel, EmailChannel, SlackChannel
from monitor.deliver.policy import LEASE_MARGIN, RetryPolicy, Route, send_budget, send_lease_for
from monitor.deliver.queue import AlertQueue
from monitor.deliver.worker import DeliveryPolicy, DeliveryWorker
from monitor.errors import StoreError
from monitor.redisio import Keys

PREFIX = "iso"
S = timedelta(seconds=1)


# --- a tarpit SMTP server ---------------------------------------------------------------------


class Tarpit:
    """An SMTP look-alike on 127.0.0.1 for stuck and slow mail servers.

    Without ``upstream`` it accepts connections and never says a word.  With one, it relays
    to that server, holding each of the server's answers back ``delay`` seconds on the first
    ``slow`` connections (later ones are relayed at once).  ``closed`` counts connections
    that ended, ``slow_closed`` those of them that were slow.
    """

    def __init__(
        self, upstream: tuple[str, int] | None = None, *, delay: float = 0.0, slow: int = 0
    ) -> None:
        self.upstream, self.delay, self.slow = upstream, delay, slow
        self.connections = 0
        self.closed = 0
        self.slow_closed = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __enter__(self) -> Tarpit:
        self._thread.start()
        assert self._ready.wait(5), "tarpit did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Close the server and every connection (a stuck client then sees the end)."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop)
            self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(asyncio.sleep(0))
        self._loop.close()

    def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        self._loop.call_later(0.2, self._loop.stop)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        slow = self.connections <= self.slow
        try:
            if self.upstream is None:
                await reader.read()  # never answer; wait for the client to give up
            else:
                await self._relay(reader, writer, slow)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self.closed += 1
            self.slow_closed += slow
            writer.close()

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slow: bool
    ) -> None:
        assert self.upstream is not None
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, late: bool) -> None:
            while data := await src.read(65536):
                if late:
                    await asyncio.sleep(self.delay)
                dst.write(data)
                await dst.drain()

        pumps = [
            asyncio.ensure_future(pump(reader, up_writer, False)),
            asyncio.ensure_future(pump(up_reader, writer, slow)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            up_writer.close()


# --- helpers ----------------------------------------------------------------------------------


def worker_for(
    client: aioredis.Redis,
    channels: dict[str, Channel],
    *,
    consumer: str = "w1",
    lease: timedelta = timedelta(minutes=2),
    claim_idle: timedelta = timedelta(minutes=1),
) -> DeliveryWorker:
    return DeliveryWorker(
        AlertQueue(client, Keys(PREFIX)),
        channels,
        DeliveryPolicy(
            routes=(Route(channels=tuple(channels)),),
            send_lease=lease,
            claim_idle=claim_idle,
            retry=RetryPolicy(base=timedelta(milliseconds=100), cap=timedelta(milliseconds=200)),
            throttle=timedelta(0),
        ),
        consumer=consumer,
    )


@contextlib.asynccontextmanager
async def running(workers: Sequence[DeliveryWorker]) -> AsyncIterator[None]:
    """Each worker in the daemon's loop (passes with ``block_ms``; Redis errors retried)."""

    async def loop(worker: DeliveryWorker) -> None:
        while True:
            try:
                await worker.queue.ensure_group()
                await worker.run_once(block_ms=100)
            except StoreError:
                await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(loop(w)) for w in workers]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for worker in workers:
            await worker.settle(10)


async def wait_for(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.fixture
async def client(redis_client: aioredis.Redis) -> aioredis.Redis:
    return redis_client


# --- item 1: each channel delivers on its own -------------------------------------------------


async def test_a_mail_server_that_never_answers_does_not_delay_slack(
    client: aioredis.Redis, slack_server: SlackServer
) -> None:
    """With email stuck on a tarpit (30 s timeout), a later alert still reaches Slack within
    its usual second: the stuck send runs in email's lane, not in the pass."""
    with Tarpit() as tarpit:
        slack = SlackChannel(slack_server.url, timeout=5, min_interval=timedelta(0))
        mail = EmailChannel(
            host="127.0.0.1", port=tarpit.port, sender="m@example.org", recipients=["a@b.c"]
        )
        worker = worker_for(client, {"slack": slack, "email": mail})
        await enqueue(client, PREFIX, make_match(item="w:1", title="First alert"))
        try:
            async with running([worker]):
                await slack_server.wait_for_async(1, within=5)
                await wait_for(lambda: tarpit.connections >= 1, 5, "the stuck SMTP connection")
                await enqueue(client, PREFIX, make_match(item="w:2", title="Second alert"))
                started = time.monotonic()
                await slack_server.wait_for_async(2, within=3)
                assert time.monotonic() - started < 3
                assert tarpit.closed == 0  # email is still stuck meanwhile
                tarpit.stop()  # the stuck lane ends now, for the teardown
        finally:
            await slack.close()
            await mail.close()


async def test_email_has_threads_of_its_own_so_a_busy_default_executor_cannot_starve_it(
    smtp_server: SmtpServer,
) -> None:
    """Every thread of the event loop's default executor is busy (file reads, DNS...); an
    email still goes out at once, from the channel's own pool."""
    release = threading.Event()
    loop = asyncio.get_running_loop()
    hogs = [loop.run_in_executor(None, release.wait, 30) for _ in range(64)]
    mail = EmailChannel(
        host=smtp_server.host, port=smtp_server.port, sender="m@example.org", recipients=["a@b.c"]
    )
    try:
        await asyncio.wait_for(mail.send(make_match()), 5)
        assert len(smtp_server.messages) == 1
    finally:
        release.set()
        await asyncio.gather(*hogs)
        await mail.close()


# --- item 3: total deadlines and leases that outlast them -------------------------------------


async def test_smtp_deadline_is_for_the_whole_exchange_not_each_read(
    smtp_server: SmtpServer,
) -> None:
    """A server answering every line 1 s late (each read well inside 3 s) still fails the
    send at the 3 s total deadline, and the connection is closed, not left running."""
    with Tarpit((smtp_server.host, smtp_server.port), delay=1.0, slow=1) as tarpit:
        mail = EmailChannel(
            host="127.0.0.1",
            port=tarpit.port,
            sender="m@example.org",
            recipients=["a@b.c"],
            timeout=3,
        )
        started = time.monotonic()
        try:
            with pytest.raises(Exception, match="within 3s"):
                await mail.send(make_match())
            assert time.monotonic() - started < 3 + 1.5
            await wait_for(lambda: tarpit.closed == 1, 3, "the slow connection to close")
            assert smtp_server.messages == []
        finally:
            await mail.close()


async def test_a_slow_mail_server_and_two_workers_send_the_alert_exactly_once(
    client: aioredis.Redis, smtp_server: SmtpServer
) -> None:
    """A tarpit answering each line 4 s late (each read inside the 6 s timeout; the whole
    exchange about 28 s) and two workers on one Redis with a 10 s lease: the first send
    ends at its 6 s deadline, before the lease, so the other worker never sends it twice;
    the retry goes out once through the (now fast) server."""
    upstream = (smtp_server.host, smtp_server.port)
    with Tarpit(upstream, delay=4.0, slow=1) as tarpit:
        mails = [
            EmailChannel(
                host="127.0.0.1",
                port=tarpit.port,
                sender="m@example.org",
                recipients=["a@b.c"],
                timeout=6,
            )
            for _ in range(2)
        ]
        workers = [
            worker_for(
                client,
                {"email": mail},
                consumer=f"w{n}",
                lease=timedelta(seconds=10),
                claim_idle=timedelta(milliseconds=300),
            )
            for n, mail in enumerate(mails)
        ]
        await enqueue(client, PREFIX, make_match())
        try:
            async with running(workers):
                await smtp_server.wait_for_async(1, within=30)
                await wait_for(lambda: tarpit.slow_closed == 1, 45, "the slow conversation to end")
                queue = workers[0].queue
                await wait_for_async_counts(queue)
            assert len(smtp_server.messages) == 1
        finally:
            for mail in mails:
                await mail.close()


async def wait_for_async_counts(queue: AlertQueue) -> None:
    deadline = time.monotonic() + 10
    while await queue.stream_counts() != {"queued": 0, "pending": 0, "dead": 0}:
        assert time.monotonic() < deadline, await queue.stream_counts()
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("configured", "deadlines", "pace", "expected"),
    [
        (120, [10, 30], 5, 120),  # the default two minutes already outlast every send
        (3, [6], 0, 6 + LEASE_MARGIN.total_seconds()),  # raised: 6 s deadline + margin
        (3, [2], 5, 2 + 5 + LEASE_MARGIN.total_seconds()),  # Slack: a slot wait, then post
        (3, [], 0, max(3, LEASE_MARGIN.total_seconds())),
    ],
)
def test_send_lease_for(configured: int, deadlines: list[int], pace: int, expected: float) -> None:
    lease = send_lease_for(
        timedelta(seconds=configured), [timedelta(seconds=d) for d in deadlines], pace * S
    )
    assert lease.total_seconds() == expected


@settings(deadline=None)
@given(
    configured=st.integers(1, 600),
    deadline=st.integers(0, 600),
    pace=st.integers(0, 10),
)
def test_a_send_always_ends_before_its_lease(configured: int, deadline: int, pace: int) -> None:
    """The budget a worker gives a send covers the deadline and the slot wait, and ends at
    least ``LEASE_MARGIN`` before the lease (so no second worker can start meanwhile)."""
    lease = send_lease_for(configured * S, [deadline * S], pace * S)
    budget = send_budget(lease)
    assert budget >= deadline + pace
    assert lease.total_seconds() - budget >= min(
        LEASE_MARGIN.total_seconds(), lease.total_seconds() - 1
    )


# --- item 8: pacing shared by every replica, through a Redis restart -------------------------


async def test_three_workers_pace_slack_together_even_across_a_redis_restart(
    tmp_path: Path, own_redis: EmbeddedRedis, slack_server: SlackServer
) -> None:
    """Three workers, one Slack webhook limited to one post per second: every post arrives
    at least a second after the one before, also right after Redis came back empty (a
    restart that lost its data must not make the channel look free)."""
    interval = 1.0
    clients = [aioredis.Redis.from_url(own_redis.url, decode_responses=True) for _ in range(3)]
    slacks = [SlackChannel(slack_server.url, timeout=5, min_interval=S) for _ in range(3)]
    workers = [
        worker_for(c, {"slack": s}, consumer=f"w{n}")
        for n, (c, s) in enumerate(zip(clients, slacks, strict=True))
    ]
    fresh: EmbeddedRedis | None = None
    try:
        async with running(workers):
            await enqueue(
                clients[0], PREFIX, *(make_match(item=f"a:{n}", title=f"A{n}") for n in range(3))
            )
            await slack_server.wait_for_async(3, within=15)
            own_redis.kill()  # and it comes back empty (no persistence survived)
            fresh = EmbeddedRedis(tmp_path / "fresh", port=own_redis.port)
            await asyncio.to_thread(fresh.start)
            await asyncio.sleep(0)
            for _ in range(50):
                with contextlib.suppress(Exception):
                    await enqueue(
                        clients[0],
                        PREFIX,
                        *(make_match(item=f"b:{n}", title=f"B{n}") for n in range(3)),
                    )
                    break
                await asyncio.sleep(0.05)
            await slack_server.wait_for_async(6, within=20)
        arrivals = [r.received_at for r in slack_server.requests]
        gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
        assert len(arrivals) == 6
        assert min(gaps) >= interval - 0.005, gaps
    finally:
        for slack in slacks:
            await slack.close()
        for c in clients:
            await c.aclose()
        if fresh is not None:
            fresh.stop()
