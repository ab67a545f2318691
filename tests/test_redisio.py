"""``guarded``: one kind of outage whatever the Redis client raised, and a cancellation the
client lost raised again (Python 3.11's ``asyncio.wait_for``, which redis-py writes with,
returns normally when the write ends just as the task is cancelled)."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from monitor.errors import StoreError
from monitor.redisio import guarded


async def swallows_cancel(outcome: str, started: asyncio.Event | None = None) -> str:
    """What the client library did on 3.11: catch the task's cancellation and carry on.
    ``started`` is set once it waits (for a reply that never comes)."""
    try:
        if started is not None:
            started.set()
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        if outcome == "error":
            raise RedisConnectionError("Timeout reading from 127.0.0.1:1") from None
    return "carried on"


@pytest.mark.parametrize("outcome", ["value", "error"])
async def test_a_cancellation_the_client_swallowed_is_raised(outcome: str) -> None:
    started = asyncio.Event()
    task = asyncio.create_task(guarded(lambda: swallows_cancel(outcome, started)))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_retry_loop_around_guarded_ends_when_cancelled() -> None:
    """The loop that hung the suite: outages retried, the cancel lost inside the first
    command.  Without ``guarded`` raising it again, the loop runs out its 50 attempts."""
    attempts = 0

    started = asyncio.Event()

    async def command() -> str:
        if attempts == 1:
            return await swallows_cancel("error", started)
        raise RedisConnectionError("Timeout reading from 127.0.0.1:1")

    async def retrying() -> None:
        nonlocal attempts
        while attempts < 50:
            attempts += 1
            try:
                await guarded(command)
            except StoreError:
                await asyncio.sleep(0)  # a yield between retries, not a wait

    task = asyncio.create_task(retrying())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert attempts == 1


async def test_an_outage_is_a_store_error_and_a_value_passes_through() -> None:
    async def fails() -> None:
        raise RedisConnectionError("Connection refused")

    async def answers() -> int:
        return 7

    with pytest.raises(StoreError, match="ConnectionError: Connection refused"):
        await guarded(fails)
    assert await guarded(answers) == 7


async def test_a_timeout_around_guarded_still_reads_as_a_timeout() -> None:
    """``asyncio.timeout`` cancels the task itself; its expiry must stay a TimeoutError."""
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await guarded(lambda: swallows_cancel("value"))
