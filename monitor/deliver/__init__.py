"""Alert channels: each delivers one Match and says, by returning or raising, if it was accepted."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from monitor.deliver.console import ConsoleChannel
from monitor.deliver.email import EmailChannel
from monitor.deliver.slack import SlackChannel
from monitor.model import Match

__all__ = ["Channel", "ConsoleChannel", "EmailChannel", "SlackChannel"]


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
