"""Parser processes: every core parses, cleans and matches feeds while the event loop does I/O.

feedparser and BeautifulSoup are pure Python and cost tens of milliseconds a feed, so a first
poll of a thousand feeds is CPU-bound; run on the event loop it would also stall every other
feed's I/O.  Each worker process holds its own copy of the rule set, installed when the pool
starts, so matching happens next to parsing and only strings come back.  A rule reload starts
a fresh pool with the new rules; polls already handed to the old pool finish there, and the
event loop re-matches their items if the rules changed meanwhile (``poll._record``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import structlog

from monitor.errors import FeedError
from monitor.ingest.fetch import clock_paused, made_progress
from monitor.ingest.pool.process import (
    budget_message,
    prepare_with_installed_rules,
    process_id,
    start_parser,
)
from monitor.ingest.prepare import PreparedFeed
from monitor.model import Source
from monitor.rules import RuleSet

if TYPE_CHECKING:
    from monitor.ingest.fetch import FetchResult

log = structlog.get_logger("monitor.ingest.pool.parsers")


def worker_count(setting: int) -> int:
    """How many parser processes ``ingest.workers`` asks for: -1 means one per core."""
    return (os.cpu_count() or 1) if setting < 0 else setting


def rules_payload(rules: RuleSet) -> dict[str, Any]:
    """What rebuilds ``rules`` in another process: its constructor's fields, picklable.

    The compiled index is not picklable (and not sent): each worker compiles its own.
    """
    payload = {}
    for field in dataclasses.fields(rules):
        if field.init:
            value = getattr(rules, field.name)
            payload[field.name] = dict(value) if isinstance(value, MappingProxyType) else value
    return payload


def wall_deadline(cpu_budget: float) -> float:
    """Seconds of wall-clock time a preparation with ``cpu_budget`` CPU seconds may take: a
    worker on a loaded machine gets less than a core, and waits its turn in the pool."""
    return 3 * cpu_budget + 10


class ParserPool:
    """A process pool that prepares feeds with the daemon's current rules.

    ``parse_budget`` is the CPU seconds one feed's preparation may take in a worker (the
    worker stops it itself, ``process.prepare_with_installed_rules``); as a backstop for a
    parse the worker cannot stop (stuck in one C call), a preparation not back within
    ``wall_deadline(parse_budget)`` has its processes killed and replaced."""

    def __init__(self, workers: int, rules: RuleSet, *, parse_budget: float | None = None) -> None:
        self.workers = workers
        self.parse_budget = parse_budget
        self._turns: asyncio.Semaphore | None = None
        self._pool = self._start(rules)
        self._started: asyncio.Future[None] | None = None

    def _start(self, rules: RuleSet) -> ProcessPoolExecutor:
        # A fork server, not fork: forking the daemon itself would copy its event loop,
        # threads and sockets into the child.  The server imports the parsing modules once,
        # so every worker forked from it shares those pages instead of importing its own; only
        # the parsing modules (``forkserver``), not the daemon's HTTP, Redis, delivery.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["monitor.ingest.pool.forkserver"])
        return ProcessPoolExecutor(
            self.workers,
            mp_context=context,
            initializer=start_parser,
            initargs=(rules_payload(rules), os.getpid()),
        )

    def start(self) -> None:
        """Start every worker process now, in a thread, and return at once.

        Starting a process through the fork server blocks until the server has imported the
        parsing modules (seconds on a busy machine).  Left to the first poll's ``submit``,
        that would freeze the event loop, and with it delivery, signals and health checks, for
        as long; so the processes start in a thread and polls wait for them without blocking.
        """
        self._started = asyncio.ensure_future(asyncio.to_thread(self._spawn_all, self._pool))
        # A pool shut down while it was starting fails here; polls awaiting it see the error,
        # and it must not also be logged as "never retrieved".
        self._started.add_done_callback(lambda done: done.cancelled() or done.exception())

    def _spawn_all(self, pool: ProcessPoolExecutor) -> None:
        pending = [pool.submit(process_id) for _ in range(self.workers)]
        for future in pending:
            future.result()

    async def use_rules(self, rules: RuleSet) -> None:
        """Send new rules to the workers by replacing them; queued work finishes in the old
        pool, whose processes then exit."""
        fresh = self._start(rules)
        await asyncio.to_thread(self._spawn_all, fresh)
        old, self._pool = self._pool, fresh
        old.shutdown(wait=False)
        log.info("parser processes restarted with new rules", rules_version=rules.version)

    async def prepare(
        self,
        source: Source,
        response: FetchResult,
        now: datetime,
        rules: RuleSet,
        known: frozenset[str],
        quiet_before: datetime | None = None,
    ) -> PreparedFeed:
        """The ``poll.Preparer`` that runs in a worker.  ``rules`` is what the poll was
        given; the worker matches with the pool's copy and says which version it used (the
        pipeline checks it), and a pool started anew after a breakage gets ``rules``.

        A parser process that dies (the kernel's out-of-memory killer, a crash in a C
        library, a stray ``kill``) breaks the whole pool: left so, every later poll would
        fail until a restart.  The pool is replaced at once, and the polls it was preparing
        fail this pass as feed errors, to be polled again on their next tick."""
        if self._started is None:
            self.start()
        assert self._started is not None
        async with clock_paused():  # the processes starting is no fault of the poll's either
            await asyncio.shield(self._started)
        url = response.url or source.url
        loop = asyncio.get_running_loop()
        pool = self._pool
        budget = self.parse_budget
        deadline = wall_deadline(budget) if budget else None
        if self._turns is None:
            self._turns = asyncio.Semaphore(self.workers)
        async with clock_paused():  # waiting for a parser is no fault of the poll's
            await self._turns.acquire()
        made_progress()
        try:
            # A turn first, so that the deadline counts the parse, not the wait in the queue.
            async with asyncio.timeout(deadline):
                return await loop.run_in_executor(
                    pool,
                    prepare_with_installed_rules,
                    source,
                    response.body,
                    response.headers,
                    url,
                    now,
                    known,
                    budget,
                    quiet_before,
                )
        except TimeoutError:
            assert deadline is not None
            self._replace_broken(pool, rules, kill=True)
            return PreparedFeed(0, (), error=budget_message(source, deadline, "wall-clock"))
        except BrokenProcessPool:
            self._replace_broken(pool, rules)
            raise FeedError(
                source.name,
                source.url,
                "the parser process preparing this feed died; parser processes restarted",
                hint="if this feed fails so on every poll, it is what kills them (out of "
                "memory?): lower its 'max_bytes' or remove it",
            ) from None
        finally:
            self._turns.release()

    def _replace_broken(
        self, broken: ProcessPoolExecutor, rules: RuleSet, *, kill: bool = False
    ) -> None:
        """Swap a fresh pool in for ``broken``, once however many polls saw it break; with
        ``kill``, its processes are killed first (one of them is stuck past its deadline, and
        which one the executor does not say).  Polls it was preparing fail this pass."""
        if self._pool is not broken:
            return
        if kill:
            log.error("a parse ran past its deadline; parser processes replaced")
            for process in list((broken._processes or {}).values()):
                process.kill()
        else:
            log.error("a parser process died; starting new ones", workers=self.workers)
        self._pool = self._start(rules)
        self._started = None
        broken.shutdown(wait=False, cancel_futures=True)

    def pids(self) -> list[int]:
        """The worker processes' ids (for benchmarks and footprint reports)."""
        processes = self._pool._processes or {}
        return list(processes)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
