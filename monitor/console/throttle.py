"""Failed logins, rate limited per user and per address: the decision, with time given.

Pure: the failures are kept in memory by the caller's ``LoginThrottle`` and every method
takes ``now``; nothing here reads a clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

#: Keys kept at most; past it the keys whose failures are oldest are dropped first (a flood
#: of made-up user names must not grow memory without bound).
MAX_KEYS = 50_000


def user_key(user: str) -> str:
    return "user:" + user.casefold()


def address_key(address: str) -> str:
    return "addr:" + address


def retry_after(
    failures: Iterable[datetime], now: datetime, limit: int, window: timedelta
) -> timedelta:
    """Pure: how long until one more attempt is allowed (zero: now).

    ``failures`` are the times of earlier failed attempts of one key.  Once ``limit`` of
    them fall within ``window`` before ``now``, the key waits until the oldest of those
    leaves the window: a sliding window, so a steady guesser gets ``limit`` tries per window.
    """
    recent = sorted(t for t in failures if now - window < t <= now)
    if len(recent) < limit:
        return timedelta(0)
    return recent[-limit] + window - now


@dataclass(slots=True)
class LoginThrottle:
    """Failed-login times per key (``user_key``, ``address_key``), pruned as they age."""

    limit: int
    window: timedelta
    _failures: dict[str, deque[datetime]] = field(default_factory=dict)

    def wait(self, keys: Iterable[str], now: datetime) -> timedelta:
        """The longest wait any of ``keys`` must still sit out (zero: try now)."""
        return max(
            (
                retry_after(self._failures.get(key, ()), now, self.limit, self.window)
                for key in keys
            ),
            default=timedelta(0),
        )

    def failed(self, keys: Iterable[str], now: datetime) -> None:
        """Count a failed attempt against each key."""
        for key in keys:
            times = self._failures.setdefault(key, deque())
            times.append(now)
            while times and times[0] <= now - self.window:
                times.popleft()
            while len(times) > self.limit:
                times.popleft()
        self._prune(now)

    def succeeded(self, user: str) -> None:
        """A right password clears that user's count (not the address's: one good account
        must not reset a guesser's count for others)."""
        self._failures.pop(user_key(user), None)

    def _prune(self, now: datetime) -> None:
        if len(self._failures) <= MAX_KEYS:
            return
        for key in [k for k, t in self._failures.items() if not t or t[-1] <= now - self.window]:
            del self._failures[key]
        while len(self._failures) > MAX_KEYS:
            oldest = min(self._failures, key=lambda k: self._failures[k][-1])
            del self._failures[oldest]
