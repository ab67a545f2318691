"""Console channel: print each alert as a readable block, for a terminal or `docker logs`."""

from __future__ import annotations

import contextlib
import sys
from datetime import timedelta
from typing import TextIO

from monitor.deliver.render.digest import Digest
from monitor.deliver.render.plain import console_text, digest_text
from monitor.errors import PermanentDeliveryError, TransientDeliveryError
from monitor.model import Match


def encodable(text: str, stream: TextIO) -> str:
    """Replace what the stream's encoding cannot hold, so an ASCII terminal gets "?" not a crash."""
    encoding = getattr(stream, "encoding", None)
    if not encoding:
        return text
    try:
        return text.encode(encoding, "replace").decode(encoding)
    except LookupError:
        return text


class ConsoleChannel:
    """Writes alerts to a text stream; ``None`` means whatever ``sys.stdout`` is at send time.

    Looking up stdout late lets pytest's capture and a redirected stdout work without
    rebuilding the channel.
    """

    def __init__(self, stream: TextIO | None = None, name: str = "console") -> None:
        self.name = name
        self.min_interval = timedelta(0)
        self._stream = stream

    def __repr__(self) -> str:
        target = "stdout" if self._stream is None else type(self._stream).__name__
        return f"ConsoleChannel(name={self.name!r}, stream={target})"

    async def send(self, match: Match) -> None:
        """Write one alert block followed by a blank line, and flush so it shows at once."""
        self._write(console_text(match))

    async def send_digest(self, digest: Digest) -> None:
        self._write(digest_text(digest))

    def _write(self, text: str) -> None:
        stream = self._stream if self._stream is not None else sys.stdout
        try:
            stream.write(encodable(text, stream) + "\n\n")
            stream.flush()
        except (BrokenPipeError, ValueError) as exc:
            # A closed pipe or file will not reopen by itself.
            reason = type(exc).__name__
            raise PermanentDeliveryError(
                self.name,
                f"cannot write to the console: {reason}",
                hint="is stdout closed or piped to a process that exited?",
            ) from None
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise TransientDeliveryError(
                self.name,
                f"cannot write to the console: {reason}",
            ) from None

    async def close(self) -> None:
        """Flush, but never close: the stream (often stdout) belongs to the process."""
        stream = self._stream if self._stream is not None else sys.stdout
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
