"""Logging setup: structlog JSON in containers, readable lines on a terminal, secrets masked.

Called once by the command line; nothing configures logging at import time.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

from monitor.redact import REDACTED, mask_text

__all__ = ["REDACTED", "SecretMasker", "configure_logging"]


class SecretMasker:
    """A structlog processor that replaces every known secret in every logged value.

    Channels already avoid logging secrets; this is the second line of defence, because
    HTTP and SMTP libraries put full URLs and protocol transcripts into exception text, and a
    Slack webhook URL is itself the secret.  Besides the configured secrets (masked by value)
    it masks credentials by shape (``redact.mask_text``): passwords and tokens in any URL and
    the values of auth headers, which nobody needs to have listed.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = tuple(sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True))

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return mask_text(text)

    def __call__(
        self, _logger: Any, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in event.items():
            if isinstance(value, str):
                event[key] = self.mask(value)
            elif not isinstance(value, int | float | bool | type(None)):
                text = str(value)
                masked = self.mask(text)
                if masked != text:
                    event[key] = masked
        return event


def no_color() -> bool:
    """The user asked for no colours (https://no-color.org: ``NO_COLOR`` set and not empty)."""
    return bool(os.environ.get("NO_COLOR"))


def configure_logging(
    *,
    level: str = "info",
    fmt: str = "auto",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Route structlog to ``stream`` (stderr by default), JSON unless it is a terminal."""
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty() and not no_color())
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    last: list[structlog.typing.Processor] = [
        structlog.processors.format_exc_info,
        SecretMasker(secrets),
        renderer,
    ]
    threshold = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, *last],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    _route_library_logs(out, max(threshold, LIBRARY_LEVEL), shared, last)


#: Libraries log through the standard ``logging`` module, and at ``info`` some of them log
#: every routine step (APScheduler: every job run); their warnings and errors are enough.
LIBRARY_LEVEL = logging.WARNING


class _LibraryHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``configure_logging`` puts on the root logger (so a second call replaces
    it rather than adding another)."""


def _route_library_logs(
    out: TextIO,
    threshold: int,
    shared: list[structlog.typing.Processor],
    last: list[structlog.typing.Processor],
) -> None:
    """Send the standard library's log records (APScheduler, aiohttp, asyncio, redis) through
    the same processors as the daemon's own: one format on the stream, and the same secret
    masking, since a library's exception text may hold a webhook URL."""
    handler = _LibraryHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *last],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _LibraryHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
