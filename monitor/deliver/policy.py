"""Pure delivery decisions: backoff, routing, stories, silences, digest windows (time given)."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from monitor.model import Match, Severity

# --- retries ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failed sends are retried: exponential backoff from ``base`` up to ``cap``."""

    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)
    max_attempts: int = 10


def backoff_delay(
    attempt: int, policy: RetryPolicy, *, jitter: float, retry_after: float | None = None
) -> float:
    """Seconds to wait before attempt ``attempt + 1``, after ``attempt`` failures.

    The ceiling doubles each time (``base``, ``2 base``, ``4 base``… up to ``cap``) and the
    wait is drawn from its upper half with ``jitter`` in [0, 1): replicas that failed together
    spread out instead of hammering a recovering server in step.  A server's own Retry-After
    is a floor, because sending sooner only earns another 429.
    """
    exponent = min(max(attempt - 1, 0), 60)
    ceiling: float = min(policy.base.total_seconds() * 2.0**exponent, policy.cap.total_seconds())
    wait = ceiling / 2 + min(max(jitter, 0.0), 1.0) * ceiling / 2
    return max(wait, retry_after or 0.0)


def gives_up(attempt: int, policy: RetryPolicy) -> bool:
    """After ``attempt`` failed attempts, stop retrying and dead-letter the alert?"""
    return attempt >= policy.max_attempts


LEASE_MARGIN = timedelta(seconds=2)
"""What a send lease keeps beyond the send's own worst case: Redis round trips, a loaded
event loop and the SMTP watchdog closing a socket all fit in it."""


def send_lease_for(
    configured: timedelta, deadlines: Iterable[timedelta], pace_wait: timedelta
) -> timedelta:
    """The send lease to use: the configured one, raised so that it always outlasts the
    worst send: waiting up to ``pace_wait`` for a rate-limited slot, then the longest
    channel deadline, plus ``LEASE_MARGIN``.  A lease shorter than that would let a second
    worker (or replica) send an alert again while the first is still sending it.
    """
    worst = max(deadlines, default=timedelta(0)) + pace_wait + LEASE_MARGIN
    return max(configured, worst)


def send_budget(lease: timedelta) -> float:
    """Seconds a send may take from the moment its lease was taken: the lease less
    ``LEASE_MARGIN`` (at least one second), so the lease always ends after the send."""
    return max(1.0, (lease - LEASE_MARGIN).total_seconds())


# --- stories and units --------------------------------------------------------------------


def story_key(match: Match) -> str:
    """The story a match belongs to, for throttling and email threading.

    The story the item was clustered into, when stories are on; otherwise the folded
    headline: the same wire story reaching us through two feeds (with two links) is one
    story.  Items without a title are their own story.
    """
    if match.story:
        return f"story:{match.story}"
    title = " ".join(unicodedata.normalize("NFKC", match.item.title).casefold().split())
    if not title:
        return f"item:{match.item.id}"
    return "title:" + hashlib.blake2b(title.encode(), digest_size=12).hexdigest()


def throttled_as(match: Match) -> str:
    """What the per-rule throttle counts: the story, or for a story's follow-up the story and
    the reason, so each reason is told once while the story's other items stay quiet."""
    story = story_key(match)
    return f"{story}#{match.follow_up}" if match.follow_up else story


def delivery_unit(channel: str, recipients: Sequence[str] = ()) -> str:
    """What a send marker is kept for: a channel, or a channel and a subset of its recipients.

    Splitting by recipients lets an email that reached some addresses be retried (or
    dead-lettered) for the others without resending to those it reached.
    """
    if not recipients:
        return channel
    joined = "\x00".join(sorted({r.strip().lower() for r in recipients}))
    return f"{channel}#{hashlib.blake2b(joined.encode(), digest_size=6).hexdigest()}"


# --- routing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    """Which matches go to which channels; empty criteria match everything.

    A match goes to every route whose criteria all hold (rule id in ``rules``, one of
    ``tags`` among the rule's or the feed's tags, severity at least ``min_severity``);
    ``fallback`` routes take only the matches no other route took.  ``to`` adds email
    recipients for matches on this route.
    """

    channels: tuple[str, ...]
    rules: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    min_severity: Severity | None = None
    fallback: bool = False
    to: tuple[str, ...] = ()
    group_by: str = "item"
    """"item": one message per article on this route's channels, listing every rule that
    matched it; "rule": one message per rule (``monitor.deliver.group``)."""

    def takes(self, match: Match) -> bool:
        if self.rules and match.rule_id not in self.rules:
            return False
        if self.tags and not set(self.tags) & set(match_tags(match)):
            return False
        return self.min_severity is None or match.severity >= self.min_severity


def match_tags(match: Match) -> tuple[str, ...]:
    """Tags a route or a silence can name: the rule's and the feed's."""
    return (*match.tags, *match.item.source_tags)


Plan = dict[str, tuple[str, ...]]
"""Channel name to extra recipients (empty: the channel's own)."""


def route_plan(
    match: Match,
    routes: Sequence[Route],
    active: Iterable[str],
    addressable: Iterable[str] = ("email",),
) -> Plan:
    """The channels a match goes to, each with the recipients its routes add (only for
    ``addressable`` channels: the others have no recipients to add to).

    A rule's own ``route:`` wins when it names an active channel.  Channels that are not
    active (switched off, no secret) are dropped, so no alert is sent nowhere by accident:
    settings refuse a route left without any active channel.
    """
    live = set(active)
    own = [name for name in match.route if name in live]
    if own:
        return dict.fromkeys(own, ())
    chosen = routes_taking(match, routes)
    plan: dict[str, list[str]] = {}
    takes_recipients = set(addressable)
    for route in chosen:
        for name in route.channels:
            if name in live:
                extra = plan.setdefault(name, [])
                if name in takes_recipients:
                    extra.extend(r for r in route.to if r not in extra)
    return {name: tuple(extra) for name, extra in plan.items()}


def routes_taking(match: Match, routes: Sequence[Route]) -> list[Route]:
    """The routes a match goes by: every route that takes it, or the fallbacks that do
    when no other route does."""
    chosen = [route for route in routes if not route.fallback and route.takes(match)]
    return chosen or [route for route in routes if route.fallback and route.takes(match)]


def rule_by_rule(match: Match, routes: Sequence[Route]) -> frozenset[str]:
    """Channels on which this match keeps a message of its own (a route taking it there
    says ``group_by: rule``); on the others it shares one message per article.  A rule's
    own ``route:`` groups."""
    if match.route:
        return frozenset()
    return frozenset(
        name
        for route in routes_taking(match, routes)
        if route.group_by == "rule"
        for name in route.channels
    )


# --- silences -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Silence:
    """Matches are recorded but not sent until ``ends`` when every criterion given holds:
    the rule, a tag, the story (as ``story_key`` names it), the item's source (feed name).
    Silences written before ``story`` and ``source`` existed read as having neither."""

    id: str
    ends: datetime
    reason: str
    rule: str | None = None
    tag: str | None = None
    created: datetime = field(default_factory=lambda: datetime.fromtimestamp(0, UTC))
    author: str = ""
    story: str | None = None
    source: str | None = None

    def covers(self, match: Match, now: datetime) -> bool:
        if now >= self.ends:
            return False
        if self.rule is not None and match.rule_id != self.rule:
            return False
        if self.story is not None and story_key(match) != self.story:
            return False
        if self.source is not None and match.item.source != self.source:
            return False
        return self.tag is None or self.tag in match_tags(match)

    @property
    def target(self) -> str:
        """What it silences, in words: ``rule r · source s``, ``story story:abc``."""
        parts = [
            f"{name} {value}"
            for name, value in (
                ("rule", self.rule),
                ("tag", self.tag),
                ("story", self.story),
                ("source", self.source),
            )
            if value is not None
        ]
        return " · ".join(parts) or "everything"

    def to_dict(self) -> dict[str, str | None]:
        return {
            "id": self.id,
            "ends": self.ends.isoformat(),
            "reason": self.reason,
            "rule": self.rule,
            "tag": self.tag,
            "created": self.created.isoformat(),
            "author": self.author,
            **({"story": self.story} if self.story is not None else {}),
            **({"source": self.source} if self.source is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, str | None]) -> Silence:
        return cls(
            id=str(data["id"]),
            ends=datetime.fromisoformat(str(data["ends"])),
            reason=str(data.get("reason") or ""),
            rule=data.get("rule") or None,
            tag=data.get("tag") or None,
            created=datetime.fromisoformat(str(data.get("created") or "1970-01-01T00:00:00+00:00")),
            author=str(data.get("author") or ""),
            story=data.get("story") or None,
            source=data.get("source") or None,
        )


def silenced_by(match: Match, silences: Iterable[Silence], now: datetime) -> Silence | None:
    """The first silence covering this match at ``now``, if any."""
    return next((s for s in silences if s.covers(match, now)), None)


# --- digests ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DigestSchedule:
    """A channel in digest mode: matches below ``bypass`` severity go out on a cron schedule."""

    cron: str
    timezone: str = "UTC"
    bypass: Severity = Severity.CRITICAL

    def trigger(self) -> CronTrigger:
        return CronTrigger.from_crontab(self.cron, timezone=ZoneInfo(self.timezone))

    def holds(self, match: Match) -> bool:
        """Does this match wait for the digest (True) or go out at once (False)?"""
        return match.severity < self.bypass


def digest_due(schedule: DigestSchedule, last: datetime, now: datetime) -> datetime | None:
    """The end of the newest digest window that closed in (``last``, ``now``], if one did.

    Windows close at the schedule's fire times, in its time zone.  Several missed windows
    (the daemon was down) collapse into one digest, so nobody gets a burst of old briefs.
    """
    trigger = schedule.trigger()
    after = last + timedelta(seconds=1)
    first = trigger.get_next_fire_time(None, after)
    if first is None or first > now:
        return None
    # Look back from now in growing steps for a fire time, then walk forward to the newest:
    # a few trigger evaluations even when ``last`` is months old and the cron is per-minute.
    span = timedelta(minutes=1)
    while True:
        fire = trigger.get_next_fire_time(None, max(now - span, after))
        if fire is not None and fire <= now:
            break
        span *= 2
    while (later := trigger.get_next_fire_time(None, fire + timedelta(seconds=1))) is not None:
        if later > now:
            break
        fire = later
    closed: datetime = fire.astimezone(UTC)
    return closed


def topic_of(match: Match) -> str:
    """What a digest groups a match under: the rule's title (its topic), else its id."""
    return match.rule_title.strip() or match.rule_id


def group_by_topic(matches: Iterable[Match]) -> list[tuple[str, list[Match]]]:
    """Matches grouped by topic, most severe topic first, then alphabetically; each group
    keeps arrival order, most severe first."""
    groups: dict[str, list[Match]] = {}
    for match in matches:
        groups.setdefault(topic_of(match), []).append(match)
    ordered = sorted(groups.items(), key=lambda kv: (-max(m.severity for m in kv[1]), kv[0]))
    return [(topic, sorted(ms, key=lambda m: -m.severity)) for topic, ms in ordered]
