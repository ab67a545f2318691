"""The exceptions monitor raises, all under one root so callers can catch what they can handle.

The tree::

    MonitorError                      anything monitor raises on purpose
    ├── SourceFileError               a YAML file (config or rules) that cannot be used
    │   ├── ConfigError               the config file: unknown key, bad value, missing ${VAR}
    │   └── RuleFileError             a rule file: schema error, duplicate id, bad term
    ├── RuleSetError                  a rule set was refused; holds every RuleFileError found
    ├── FeedError                     one feed failed to poll; never fatal to the daemon
    │   ├── FetchError                transport: DNS, refused, timeout, HTTP status, too large
    │   └── FeedParseError            the body is not a feed we can read
    ├── StoreError                    Redis cannot be reached or answered unexpectedly
    │   └── EmbeddedRedisError        the embedded redis-server could not start
    ├── DeliveryError                 a channel did not accept an alert
    │   ├── TransientDeliveryError    worth retrying later (timeouts, 5xx, 429, SMTP 4xx)
    │   ├── PermanentDeliveryError    retrying will not help (bad webhook, SMTP 5xx)
    │   └── RecipientsRefused         (deliver.email) some recipients refused, others accepted
    ├── TemplateError                 (templates) a template does not compile or render
    └── OnboardError                  (ingest.onboard) a page advertises no feed
        └── OpmlError                 an OPML file that is unreadable or not OPML


Every error carries the context an operator needs (file and line, feed and URL, channel) and,
where one exists, a hint saying what to fix.  Messages never contain secrets: URLs that are
themselves secrets (Slack webhooks) are redacted before they reach an error.
"""

from __future__ import annotations

from dataclasses import dataclass


class MonitorError(Exception):
    """Root of every error monitor raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


@dataclass(frozen=True, slots=True)
class Location:
    """A place in a text file, 1-based like editors and compilers count."""

    path: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.path
        return f"{self.path}:{self.line}:{max(self.column, 1)}"


class SourceFileError(MonitorError):
    """A problem at a known place in a YAML file; str() reads ``path:line:col: message``."""

    def __init__(self, location: Location, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.location = location

    def __str__(self) -> str:
        return f"{self.location}: {super().__str__()}"


class ConfigError(SourceFileError):
    """The config file cannot be used as written."""


class RuleFileError(SourceFileError):
    """A rule file cannot be used as written."""


class RuleSetError(MonitorError):
    """A rule set was refused as a whole: a bad edit never replaces a good running set."""

    def __init__(self, problems: list[RuleFileError] | tuple[RuleFileError, ...]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        first = f": {self.problems[0]}" if self.problems else ""
        more = f" (and {count - 1} more)" if count > 1 else ""
        super().__init__(f"{count} problem(s) in the rule files{first}{more}")


class FeedError(MonitorError):
    """One feed failed; the daemon records it on the feed's health and carries on."""

    def __init__(self, feed: str, url: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.feed = feed
        self.url = url


class FetchError(FeedError):
    """The feed could not be fetched (network, HTTP status, size or time limit)."""

    def __init__(
        self,
        feed: str,
        url: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(feed, url, message, hint=hint)
        self.status = status
        self.retry_after = retry_after


class FeedParseError(FeedError):
    """The body was fetched but holds nothing we can read as a feed."""


class StoreError(MonitorError):
    """Redis could not be reached or answered unexpectedly."""


class EmbeddedRedisError(StoreError):
    """The embedded redis-server child process could not be started or kept alive."""


class DeliveryError(MonitorError):
    """A channel did not accept an alert."""

    def __init__(self, channel: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.channel = channel

    def __str__(self) -> str:
        return f"{self.channel}: {super().__str__()}"


class TransientDeliveryError(DeliveryError):
    """Worth retrying: the channel may accept the same alert later."""

    def __init__(
        self,
        channel: str,
        message: str,
        *,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(channel, message, hint=hint)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """Retrying the same alert will not help; an operator must fix the channel."""
