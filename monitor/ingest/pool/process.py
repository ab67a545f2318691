"""What each parser process of ``monitor.ingest.pool.parsers`` runs.

A parser process must also die with the daemon.  multiprocessing gives each of them both ends
of the pool's queues and a handle that keeps the fork server alive, so after a SIGKILL of the
daemon (an out-of-memory kill, ``kill -9`` outside a container) nothing would ever wake them:
they and the fork server would stay, orphaned, for good.  So each watches the daemon itself.
"""

from __future__ import annotations

import functools
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from monitor.ingest.prepare import PreparedFeed, prepare_feed
from monitor.model import Source
from monitor.rules import RuleSet

#: How often a parser looks for its daemon where the kernel cannot tell it (no pidfd).
DAEMON_CHECK_SECONDS = 2.0

_process_rules: RuleSet | None = None
"""The rule set of this parser process (None in the daemon's own process)."""


def start_parser(payload: dict[str, Any], daemon: int) -> None:
    """A parser process's initializer: exit when ``daemon`` does, and compile its own copy of
    the daemon's rules (``payload``: ``parsers.rules_payload``).

    Ctrl-C on a terminal sends SIGINT to the whole process group: the daemon then finishes
    its polls and closes the pool, so a parser ignores it rather than die with a traceback
    (and drop the feed it was preparing)."""
    global _process_rules
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch_daemon(daemon)
    _process_rules = RuleSet(**payload)


def watch_daemon(daemon: int) -> None:
    """Exit this process as soon as ``daemon`` has exited, from a watching thread."""
    target: Callable[[], None]
    try:
        handle = os.pidfd_open(daemon)
    except ProcessLookupError:
        os._exit(0)
    except (AttributeError, OSError):  # not Linux 5.3+: look now and then instead
        target = functools.partial(_exit_when_gone, daemon)
    else:
        target = functools.partial(_exit_when_readable, handle)
    threading.Thread(target=target, name="watch-daemon", daemon=True).start()


def _exit_when_readable(pidfd: int) -> None:
    """A pidfd becomes readable when its process exits."""
    select.select([pidfd], [], [])
    os._exit(0)


def _exit_when_gone(daemon: int) -> None:
    while _alive(daemon):
        time.sleep(DAEMON_CHECK_SECONDS)
    os._exit(0)


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists (signal 0 checks without sending; a pid we may not signal
    exists too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def process_id() -> int:
    """Answered by a parser process once it has started (the pool waits for every one)."""
    return os.getpid()


def prepare_with_installed_rules(
    source: Source,
    body: bytes,
    headers: dict[str, str],
    url: str,
    now: datetime,
    known: frozenset[str],
    cpu_budget: float | None = None,
    quiet_before: datetime | None = None,
) -> PreparedFeed:
    """``prepare_feed`` with this process's rules, within ``cpu_budget`` seconds of CPU.

    The budget is a profiling timer (``ITIMER_PROF``, the process's CPU time): when it runs
    out, SIGPROF interrupts the parse between two Python steps and the feed's poll fails
    with a budget error, while this process stays healthy for the next feed.  A parse stuck
    inside one C call never reaches such a step; the pool's wall deadline covers that."""
    if not cpu_budget or cpu_budget <= 0:
        return prepare_feed(source, body, headers, url, now, _process_rules, known, quiet_before)
    previous = signal.signal(signal.SIGPROF, _over_budget)
    signal.setitimer(signal.ITIMER_PROF, cpu_budget)
    try:
        return prepare_feed(source, body, headers, url, now, _process_rules, known, quiet_before)
    except ParseBudgetExceeded:
        return PreparedFeed(0, (), error=budget_message(source, cpu_budget, "CPU"))
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


class ParseBudgetExceeded(Exception):
    """Raised inside a parse by SIGPROF when its CPU budget has run out."""


def _over_budget(signum: int, frame: object) -> None:
    raise ParseBudgetExceeded


def budget_message(source: Source, seconds: float, kind: str) -> str:
    """The error of a poll whose parse ran out of its budget: which budget, which feed."""
    return (
        f"parsing feed {source.name!r} took more than its {seconds:g}s {kind} budget "
        f"(ingest.parse_budget); the poll failed and the feed backs off"
    )
