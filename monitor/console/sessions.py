"""Signed-in sessions, held in the console's process: opened at login, ended at logout or
after ``console.session_ttl``.

Pure: time is an argument.  A session's token is the cookie's value; the book keys sessions
by the token's SHA-256, so the tokens themselves are kept nowhere but in the browsers.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

#: Sessions kept at most; opening one more first drops expired ones, then the oldest.
MAX_SESSIONS = 10_000


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    via: Literal["login", "proxy"]
    opened: datetime
    expires: datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(slots=True)
class SessionBook:
    ttl: timedelta
    _sessions: dict[str, Session] = field(default_factory=dict)

    def open(self, user: str, via: Literal["login", "proxy"], now: datetime) -> str:
        """A new session for ``user``; returns its token (random, 256 bits)."""
        self._prune(now)
        token = secrets.token_urlsafe(32)
        self._sessions[_digest(token)] = Session(user, via, now, now + self.ttl)
        return token

    def lookup(self, token: str | None, now: datetime) -> Session | None:
        """The live session of a cookie's token, or None (unknown, ended or expired)."""
        if not token:
            return None
        session = self._sessions.get(_digest(token))
        if session is None:
            return None
        if session.expires <= now:
            del self._sessions[_digest(token)]
            return None
        return session

    def close(self, token: str | None) -> bool:
        """End a session (logout); False when there was none."""
        return bool(token) and self._sessions.pop(_digest(token or ""), None) is not None

    def __len__(self) -> int:
        return len(self._sessions)

    def _prune(self, now: datetime) -> None:
        if len(self._sessions) < MAX_SESSIONS:
            return
        for key in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[key]
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[min(self._sessions, key=lambda k: self._sessions[k].opened)]
