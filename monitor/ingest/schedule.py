"""When to poll a feed next, and whether it is healthy: pure decisions, time passed in.

A feed that fails is retried later and later (exponential, capped), a server's Retry-After is
honoured, and a publisher's own cache lifetime (Cache-Control max-age, RSS <ttl>) is a lower
bound on how often we ask.  Keeping these rules here, free of I/O, lets them be tested as
tables and properties.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from monitor.model import Item, Match, Severity, Source, span_text
from monitor.redact import mask_text, url_host

BACKOFF_CAP = timedelta(hours=6)
"""A broken feed is still tried at least this often, so a fixed feed recovers the same day."""

CACHE_HINT_CAP = timedelta(hours=24)
"""Publishers' cache lifetimes beyond this are ignored: we never poll less than daily."""

DUE_TOLERANCE = 0.25
"""A tick up to this fraction of the interval early still counts as on time."""

STALE_AFTER_INTERVALS = 3
"""A feed with no successful poll for this many intervals is shown as stale."""

_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-)?max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one poll told us that bears on the next one."""

    ok: bool
    retry_after: float | None = None
    cache_seconds: float | None = None


def failure_backoff(failures: int, interval: timedelta) -> timedelta:
    """How long to wait after ``failures`` consecutive failures: the interval, then doubling,
    capped.  The first failure waits only the normal interval; outages are usually short."""
    if failures <= 1:
        return interval
    grown: timedelta = interval * (2 ** min(failures - 1, 20))
    return min(grown, max(BACKOFF_CAP, interval))


def next_poll_at(
    outcome: PollOutcome, failures: int, interval: timedelta, now: datetime
) -> datetime:
    """The earliest time the feed should be polled again after this outcome.

    ``failures`` counts consecutive failures including this poll's (0 after a success).
    """
    wait = interval if outcome.ok else failure_backoff(failures, interval)
    if outcome.retry_after is not None:
        wait = max(wait, timedelta(seconds=min(outcome.retry_after, BACKOFF_CAP.total_seconds())))
    if outcome.ok and outcome.cache_seconds:
        hint = min(timedelta(seconds=outcome.cache_seconds), CACHE_HINT_CAP)
        wait = max(wait, hint)
    return now + wait


def cache_lifetime(headers: Mapping[str, str], feed_ttl_minutes: str | None) -> float | None:
    """Seconds the publisher says the feed stays fresh: Cache-Control max-age or RSS <ttl>."""
    candidates: list[float] = []
    control = headers.get("cache-control", "")
    if "no-cache" not in control.lower() and "no-store" not in control.lower():
        found = _MAX_AGE.search(control)
        if found:
            candidates.append(float(found.group(1)))
    if feed_ttl_minutes and feed_ttl_minutes.strip().isdigit():
        candidates.append(float(feed_ttl_minutes.strip()) * 60)
    return max(candidates) if candidates else None


def is_due(next_poll: datetime | None, interval: timedelta, now: datetime) -> bool:
    """Whether a scheduled tick should poll.  Ticks carry jitter, so a tick a little before
    the planned time still polls; only backoff and cache hints push a poll to later ticks."""
    return next_poll is None or now >= next_poll - interval * DUE_TOLERANCE


def health_alert(
    ok: bool,
    failing_since: datetime | None,
    alerted: bool,
    alert_after: timedelta | None,
    now: datetime,
) -> str | None:
    """Whether this poll opens or closes a feed-health incident: "failing" once a feed has
    failed for ``alert_after``, "recovered" on the first success after that, else None.

    One alert per incident and one on recovery: a feed that flaps every poll must not page
    anyone, and one that stays broken must not page again every interval.
    """
    if ok:
        return "recovered" if alerted else None
    if alerted or alert_after is None or failing_since is None:
        return None
    return "failing" if now - failing_since >= alert_after else None


def health_match(
    source: Source, change: str, failing_since: datetime, error: str | None, now: datetime
) -> Match:
    """The operational alert for a feed incident (``health_alert``'s change), delivered
    through the normal channels.

    Pure.  Its item id names the incident (feed and start time), so each incident alerts
    once and a later one alerts again.  It names the feed and its host, never the full URL:
    a feed URL may carry ``user:pass@`` or an ``?apikey=``, and an alert is read (and kept)
    by many more people than the config; the link goes to the host's front page.
    """
    lasted = span_text(now - failing_since)
    host = url_host(source.url)
    where = f" ({host})" if host else ""
    if change == "failing":
        title = f"Feed {source.name} has been failing for {lasted}{where}"
        summary = f"Last error: {mask_text(error)}" if error else ""
    else:
        title = f"Feed {source.name} recovered after {lasted}{where}"
        summary = "Polls succeed again; items missed while it failed arrive now."
    incident = f"ops:{source.name}:{failing_since.isoformat()}:{change}"
    item = Item(
        id=incident,
        source=source.name,
        title=title,
        summary=summary,
        link=f"{source.url.partition(':')[0]}://{host}/" if host else "",
        published=now,
        source_tags=source.tags,
    )
    severity = Severity.HIGH if change == "failing" else Severity.INFO
    return Match("feed-health", "Feed health", severity, "ops", item, tags=("ops", change))


def is_stale(
    last_success: datetime | None,
    interval: timedelta,
    now: datetime,
    next_poll: datetime | None = None,
) -> bool:
    """No complete poll for several intervals: the feed is silently broken or hanging.

    Measured from when the next poll was due (``next_poll``, which a publisher's TTL or
    ``max-age`` may set hours after the last success), so a feed that waits as its
    publisher asked is not stale; without it, from the last success plus one interval.
    """
    if last_success is None:
        return False
    due = max(next_poll or last_success + interval, last_success + interval)
    return now - due > interval * (STALE_AFTER_INTERVALS - 1)


@dataclass(frozen=True, slots=True)
class BusyHost:
    """A host whose feeds ask for turns more often than ``http.host_gap`` lets it give them."""

    host: str
    feeds: int
    needed_per_minute: float
    allowed_per_minute: float


def busy_hosts(feeds: Iterable[tuple[str, timedelta]], gap: timedelta) -> list[BusyHost]:
    """Hosts whose feeds (URL, interval), each polled once an interval, would need a turn
    more often than once a ``gap``: their polls can only fall further and further behind,
    so the operator is told at start rather than left to wonder why they are late."""
    if gap <= timedelta(0):
        return []
    demand: dict[str, list[float]] = {}
    for url, interval in feeds:
        host = urlsplit(url).netloc
        if host:
            demand.setdefault(host, []).append(60 / interval.total_seconds())
    allowed = 60 / gap.total_seconds()
    return [
        BusyHost(host, len(rates), sum(rates), allowed)
        for host, rates in sorted(demand.items())
        if sum(rates) > allowed * (1 + 1e-9)  # not for a sum's rounding error
    ]
