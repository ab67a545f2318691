"""Alert channels: each delivers one Match and says, by returning or raising, if it was accepted."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Protocol, runtime_checkable

from monitor.deliver.channels.apprise import AppriseChannel
from monitor.deliver.channels.console import ConsoleChannel
from monitor.deliver.channels.email import EmailChannel, RecipientsRefused
from monitor.deliver.channels.slack import SlackChannel
from monitor.deliver.channels.webhook import WebhookChannel
from monitor.deliver.render.digest import Digest
from monitor.model import Match

__all__ = [
    "AppriseChannel",
    "Channel",
    "ConsoleChannel",
    "DigestChannel",
    "EmailChannel",
    "GroupChannel",
    "RecipientsRefused",
    "SlackChannel",
    "WebhookChannel",
]


@runtime_checkable
class Channel(Protocol):
    """What the alert worker needs from a channel, and nothing more.

    ``send`` returns only once the far end accepted the alert.  Otherwise it raises
    ``TransientDeliveryError`` (retry later, after ``retry_after`` seconds when the far end
    said) or ``PermanentDeliveryError`` (an operator must fix the channel).  It raises nothing
    else for delivery problems, and no error it raises contains the channel's secrets.
    """

    name: str

    async def send(self, match: Match) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class GroupChannel(Protocol):
    """A channel that can coalesce a burst of alerts into one message (Slack)."""

    async def send_group(self, matches: Sequence[Match]) -> None: ...


@runtime_checkable
class DigestChannel(Protocol):
    """A channel that can send a digest: many matches of a window in one message."""

    async def send_digest(self, digest: Digest) -> None: ...


def min_interval(channel: Channel) -> timedelta:
    """The least time between two posts to this channel (its rate limit); 0 for none."""
    value = getattr(channel, "min_interval", timedelta(0))
    return value if isinstance(value, timedelta) else timedelta(0)


def send_deadline(channel: Channel) -> timedelta | None:
    """The total deadline of one send to this channel, when it has one."""
    value = getattr(channel, "deadline", None)
    return value if isinstance(value, timedelta) else None
