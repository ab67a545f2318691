"""The Digest record: one digest window's matches for one channel, grouped by topic.

Each medium renders it next to its single-alert form (``slack_blocks``, ``email_mime``,
``webhook_json``, ``plain``); this module holds only the record they share.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from monitor.model import Match


@dataclass(frozen=True, slots=True)
class Digest:
    """One digest window's matches, grouped by topic, for one channel.

    ``closes`` is the end of the window; ``zone`` the schedule's time zone name, so readers
    see the brief's time as they scheduled it.
    """

    channel: str
    closes: datetime
    zone: str
    groups: tuple[tuple[str, tuple[Match, ...]], ...]

    @property
    def count(self) -> int:
        return sum(len(matches) for _, matches in self.groups)

    @property
    def key(self) -> str:
        """Identity for idempotent sending: one channel, one window."""
        return f"digest|{self.channel}|{int(self.closes.timestamp())}"

    def local_close(self) -> str:
        return self.closes.astimezone(ZoneInfo(self.zone)).strftime(f"%Y-%m-%d %H:%M {self.zone}")
