"""What was sent, and what was seen: the sent-alert log, its triage, and the item search.

The delivery worker appends every alert it records as sent to a capped stream (``P:inbox``,
``delivery.keep_sent`` entries): the match as it went out, and a small head with the channel,
when, and what the console's Inbox filters on, so that filtering never parses the match.
An analyst's acknowledgement and assignment of an alert live in a hash per alert
(``P:triage:<rule|item>``: every channel's copy of one alert shares it).  The item history
(``P:items``, written by ``ingest.state``) is searched with the rules' own folding and term
syntax.

Pure first: ``sent_fields`` (what one log entry holds), ``SentAlert`` (an entry read back),
``TimeRange`` and ``parse_moment`` (a time filter and its stream-id bounds, now given),
``InboxFilter`` (the Inbox's filters), ``SearchQuery`` (a search: terms as rules write them,
matched as rules match).  Then the I/O: ``SentLog`` and ``ItemHistory``, whose scans read
newest first, a bounded window of entries per request (``Scan``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, Generic, TypeVar, cast

import redis.asyncio as aioredis

from monitor.model import Item, Match, Severity, TermHit
from monitor.redact import mask_url
from monitor.redisio import Keys, guarded
from monitor.rules.terms import TermSyntaxError, parse_term, term_pattern
from monitor.rules.text import fold

T = TypeVar("T")

KEEP_SENT = 50_000
"""Alerts the log keeps by default (``delivery.keep_sent``); the oldest are trimmed."""
TRIAGE_TTL = timedelta(days=90)
"""How long an alert's ack and assignment are kept after their last change: longer than a
full log of alerts usually lasts, so a row never loses them while it is shown."""
SCAN_BATCH = 200
"""Most entries read per round trip while scanning (the first read is a page and one more,
then twice as many each time); between two reads the event loop runs others."""
MAX_NAME = 80
"""Longest assignee name kept."""
MAX_TERMS = 12
"""Most terms one search may hold: each costs a pass over every scanned item."""
SEARCH_FIELDS = ("title", "summary")
"""Where a search looks for its terms (source, language and time are filters)."""
_ENTRY_ID = re.compile(r"\d{1,20}-\d{1,20}")
_DURATION = re.compile(r"(\d{1,5})\s*([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_QUERY_PART = re.compile(r'"([^"]*)"?|(\S+)')


def is_entry_id(text: str) -> bool:
    """A stream entry id as Redis writes them (``<ms>-<seq>``): the only cursor accepted."""
    return _ENTRY_ID.fullmatch(text) is not None


def entry_time(entry_id: str) -> datetime:
    """When Redis stamped the entry (its id's milliseconds)."""
    head = entry_id.partition("-")[0]
    return datetime.fromtimestamp(int(head) / 1000 if head.isdigit() else 0, UTC)


# -- one log entry ------------------------------------------------------------------------------


def sent_fields(match: Match, channel: str, sent: datetime, via: str) -> dict[str, str]:
    """The log entry of one alert sent on ``channel`` at ``sent`` (``via`` "alert" or
    "digest"): ``head``, a JSON object of what the Inbox filters and shows first, and
    ``match``, the match as JSON.  Two fields, not one per value: reading an entry costs
    the client per value, and a page may read thousands.  The item's link is masked like
    any URL monitor writes: a feed may put a token in its links."""
    item = dataclasses.replace(match.item, link=mask_url(match.item.link))
    shown = dataclasses.replace(match, item=item)
    head = {
        "key": match.key,
        "rule": match.rule_id,
        "severity": match.severity.label,
        "channel": channel,
        "lang": item.lang or "",
        "source": item.source,
        "tags": list(match.tags),
        "story": match.story or "",
        "sent": sent.astimezone(UTC).isoformat(),
        "via": via,
    }
    return {
        "head": json.dumps(head, ensure_ascii=False),
        "match": json.dumps(shown.to_dict(), ensure_ascii=False),
    }


@dataclass(frozen=True, slots=True)
class SentAlert:
    """One entry of the sent-alert log; ``id`` is its stream id, ``key`` the alert's
    (``rule|item``), which its triage is kept under.  The match is parsed only when asked
    for (``match``): filtering reads the head alone."""

    id: str
    key: str
    rule: str
    severity: Severity
    channel: str
    lang: str
    source: str
    tags: tuple[str, ...]
    story: str
    sent: datetime
    via: str
    match_json: str

    @classmethod
    def from_fields(cls, entry_id: str, fields: Mapping[str, str]) -> SentAlert | None:
        """The entry read back; None for one that is not a readable log entry."""
        try:
            head = json.loads(fields["head"])
            return cls(
                id=entry_id,
                key=str(head["key"]),
                rule=str(head["rule"]),
                severity=Severity.parse(str(head.get("severity") or "info")),
                channel=str(head.get("channel", "")),
                lang=str(head.get("lang", "")),
                source=str(head.get("source", "")),
                tags=tuple(str(tag) for tag in head.get("tags") or ()),
                story=str(head.get("story", "")),
                sent=datetime.fromisoformat(head["sent"]),
                via=str(head.get("via", "alert")),
                match_json=fields["match"],
            )
        except (KeyError, ValueError, TypeError, AttributeError):
            return None

    def match(self) -> Match | None:
        """The match as it was sent; None if its JSON cannot be read."""
        try:
            return Match.from_dict(json.loads(self.match_json))
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True, slots=True)
class Triage:
    """Who acknowledged an alert and who has it, and when (empty: nobody)."""

    acked_by: str = ""
    acked_at: datetime | None = None
    assignee: str = ""
    assigned_by: str = ""
    assigned_at: datetime | None = None

    @classmethod
    def from_hash(cls, raw: Mapping[str, str]) -> Triage:
        return cls(
            acked_by=raw.get("acked_by", ""),
            acked_at=_moment(raw.get("acked_at")),
            assignee=raw.get("assignee", ""),
            assigned_by=raw.get("assigned_by", ""),
            assigned_at=_moment(raw.get("assigned_at")),
        )


def _moment(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


# -- time ranges --------------------------------------------------------------------------------


def parse_moment(text: str, now: datetime, *, end: bool = False) -> datetime | None:
    """A time a filter names: empty (none), a span back from ``now`` ("24h", "7d", "30m",
    "2w"), a date ("2026-03-01", UTC; with ``end`` the end of that day), or a date and time
    ("2026-03-01T06:30", UTC unless it names an offset).  ValueError says what to write."""
    text = text.strip()
    if not text:
        return None
    span = _DURATION.fullmatch(text.lower())
    if span is not None:
        return now - timedelta(**{_UNITS[span[2]]: int(span[1])})
    try:
        if len(text) == 10:
            day = datetime.fromisoformat(text).date()
            moment = datetime.combine(day, time(), UTC)
            return moment + timedelta(days=1) - timedelta(milliseconds=1) if end else moment
        moment = datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        raise ValueError(
            f"read {text[:40]!r} as a time: write 24h, 7d, 2026-03-01 or 2026-03-01T06:30"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class TimeRange:
    """From ``since`` to ``until`` (either open); scans read it as stream-id bounds."""

    since: datetime | None = None
    until: datetime | None = None

    def holds(self, moment: datetime) -> bool:
        return (self.since is None or moment >= self.since) and (
            self.until is None or moment <= self.until
        )

    def bounds(self, before: str | None = None) -> tuple[str, str]:
        """(min, max) for XREVRANGE: the range, and only entries older than ``before`` (a
        page's cursor, exclusive) when it is given."""
        low = "-" if self.since is None else f"{_ms(self.since)}-0"
        high = "+" if self.until is None else f"{_ms(self.until)}-{2**64 - 1}"
        if before is not None and (self.until is None or entry_time(before) <= self.until):
            high = f"({before}"
        return low, high


def _ms(moment: datetime) -> int:
    return max(0, int(moment.timestamp() * 1000))


def time_range(since: str, until: str, now: datetime) -> TimeRange:
    """The range two form fields name (see ``parse_moment``); ValueError when either is
    unreadable or the range is empty."""
    start = parse_moment(since, now)
    stop = parse_moment(until, now, end=True)
    if start is not None and stop is not None and stop < start:
        raise ValueError("the range ends before it starts: swap 'from' and 'to'")
    return TimeRange(start, stop)


# -- the Inbox's filters ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboxFilter:
    """Which sent alerts a page shows: each set field must hold (text compared ignoring
    case); ``severity`` is the lowest shown.  Time is the scan's ``TimeRange``."""

    rule: str = ""
    tag: str = ""
    severity: Severity | None = None
    channel: str = ""
    lang: str = ""
    source: str = ""

    @classmethod
    def parse(cls, form: Mapping[str, str]) -> InboxFilter:
        """From the Inbox's query string; an unknown severity is ValueError."""
        severity = form.get("severity", "").strip()
        return cls(
            rule=_field(form, "rule"),
            tag=_field(form, "tag"),
            severity=Severity.parse(severity) if severity else None,
            channel=_field(form, "channel"),
            lang=_field(form, "lang"),
            source=_field(form, "source"),
        )

    def accepts(self, alert: SentAlert) -> bool:
        if self.severity is not None and alert.severity < self.severity:
            return False
        for wanted, have in (
            (self.rule, alert.rule),
            (self.channel, alert.channel),
            (self.lang, alert.lang),
            (self.source, alert.source),
        ):
            if wanted and wanted.casefold() != have.casefold():
                return False
        return not self.tag or self.tag.casefold() in {tag.casefold() for tag in alert.tags}


def _field(form: Mapping[str, str], name: str) -> str:
    return " ".join(form.get(name, "").split())[:200]


# -- search -------------------------------------------------------------------------------------


def query_terms(text: str) -> list[str]:
    """The terms of a search: "quoted phrases" and single words; an unclosed quote runs to
    the end."""
    terms = []
    for found in _QUERY_PART.finditer(text):
        term = found[1] if found[1] is not None else found[2]
        if term.strip():
            terms.append(term.strip())
    return terms


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A search over items: every term must occur in the title or the summary, found as a
    rule's term is (folded alike: case, accents, Traditional Chinese as Simplified, word
    edges, ``word*`` prefixes); ``source`` and ``lang`` must equal the item's (ignoring
    case) when set.  No term: every item the filters let through."""

    terms: tuple[tuple[str, re.Pattern[str]], ...] = ()
    source: str = ""
    lang: str = ""

    def hits(self, item: Item) -> tuple[TermHit, ...] | None:
        """Where each term occurs (every occurrence, for marking), or None if the item is
        not a result."""
        if self.source and self.source.casefold() != item.source.casefold():
            return None
        if self.lang and self.lang.casefold() != (item.lang or "").casefold():
            return None
        found: list[TermHit] = []
        folded = {name: fold(getattr(item, name)) for name in SEARCH_FIELDS}
        for label, pattern in self.terms:
            here = [
                TermHit(label, name, first, last, text.original[first:last])
                for name, text in folded.items()
                for first, last in (
                    text.original_span(*spot.span())
                    for spot in pattern.finditer(text.text)
                    if spot.end() > spot.start()
                )
            ]
            if not here:
                return None
            found.extend(here)
        return tuple(found)


def search_query(text: str, source: str = "", lang: str = "") -> SearchQuery:
    """The search a form asks for; ValueError (with what to fix) for a term rules would
    refuse too (a lone ``*``, a prefix shorter than three letters)."""
    written = query_terms(text)
    if len(written) > MAX_TERMS:
        raise ValueError(f"at most {MAX_TERMS} terms in one search")
    terms = []
    for term in written:
        try:
            terms.append((term, term_pattern(parse_term(term))))
        except TermSyntaxError as exc:
            raise ValueError(f"{exc.message}: {exc.hint}" if exc.hint else exc.message) from None
    return SearchQuery(tuple(terms), " ".join(source.split()), " ".join(lang.split()))


@dataclass(frozen=True, slots=True)
class FoundItem:
    """A search result: the history entry's id, the item, where the terms are."""

    id: str
    item: Item
    hits: tuple[TermHit, ...]


def found_item(query: SearchQuery, entry_id: str, fields: Mapping[str, str]) -> FoundItem | None:
    """A history entry as a result of ``query``, or None (not a result, or unreadable)."""
    item = history_item(fields)
    if item is None:
        return None
    hits = query.hits(item)
    return None if hits is None else FoundItem(entry_id, item, hits)


def history_item(fields: Mapping[str, str]) -> Item | None:
    try:
        return Item.from_dict(json.loads(fields["item"]))
    except (KeyError, ValueError, TypeError):
        return None


# -- scanning -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scan(Generic[T]):
    """One page of a newest-first scan.

    ``resume`` is the cursor of the next page (older entries remain in the range), None at
    the range's start.  ``cut``: the scan stopped at its window (``scanned`` entries) before
    filling the page, so older entries were not looked at in this request.
    """

    rows: tuple[T, ...]
    resume: str | None
    scanned: int
    cut: bool


async def scan_newest(
    client: aioredis.Redis,
    key: str,
    bounds: tuple[str, str],
    convert: Callable[[str, Mapping[str, str]], T | None],
    *,
    take: int,
    window: int,
) -> Scan[T]:
    """Read ``key`` newest first within ``bounds`` until ``take`` entries convert (a row)
    and one more is seen, or ``window`` entries were read: the bound on a request's work,
    whatever the filters.  Reads ``SCAN_BATCH`` at a time, so the event loop is free
    between batches."""
    low, high = bounds
    rows: list[tuple[str, T]] = []
    scanned = 0
    last = ""
    size = take + 1  # a page without filters needs one read; a sparse filter reads more
    while scanned < window:
        count = min(size, window - scanned)
        size = min(size * 2, SCAN_BATCH)
        read = functools.partial(client.xrevrange, key, high, low, count)
        batch = cast(list[tuple[str, dict[str, str]]], await guarded(read))
        for entry_id, fields in batch:
            scanned += 1
            last = entry_id
            row = convert(entry_id, fields)
            if row is None:
                continue
            if len(rows) == take:
                return Scan(tuple(r for _, r in rows), rows[-1][0], scanned, False)
            rows.append((entry_id, row))
        if len(batch) < count:
            return Scan(tuple(r for _, r in rows), None, scanned, False)
        high = f"({last}"
    resume = rows[-1][0] if len(rows) == take else last or None
    return Scan(tuple(r for _, r in rows), resume, scanned, len(rows) < take)


async def entry(client: aioredis.Redis, key: str, entry_id: str) -> Mapping[str, str] | None:
    """One stream entry's fields by id, or None."""
    if not is_entry_id(entry_id):
        return None

    async def read() -> Any:
        return await client.xrange(key, min=entry_id, max=entry_id, count=1)

    found = await guarded(read)
    return found[0][1] if found else None


# -- the stores ---------------------------------------------------------------------------------


class SentLog:
    """The sent-alert log and its triage (see the module doc)."""

    def __init__(self, client: aioredis.Redis, keys: Keys, *, keep: int = KEEP_SENT) -> None:
        self.client = client
        self.keys = keys
        self.keep = keep

    async def record(
        self, matches: Sequence[Match], channel: str, sent: datetime, *, via: str = "alert"
    ) -> None:
        """Log alerts sent together (one send, or one digest's alerts) in one round trip."""
        if not matches:
            return
        entries = [sent_fields(match, channel, sent, via) for match in matches]

        async def write() -> None:
            async with self.client.pipeline(transaction=False) as pipe:
                for fields in entries:
                    pipe.xadd(
                        self.keys.inbox,
                        fields,  # type: ignore[arg-type]
                        maxlen=self.keep,
                        approximate=True,
                    )
                await pipe.execute()

        await guarded(write)

    async def newest(
        self,
        wanted: InboxFilter,
        span: TimeRange,
        *,
        before: str | None = None,
        take: int,
        window: int,
    ) -> Scan[SentAlert]:
        """A page of the log, newest first, as ``scan_newest`` reads it."""

        def convert(entry_id: str, fields: Mapping[str, str]) -> SentAlert | None:
            alert = SentAlert.from_fields(entry_id, fields)
            return alert if alert is not None and wanted.accepts(alert) else None

        bounds = span.bounds(before)
        return await scan_newest(
            self.client, self.keys.inbox, bounds, convert, take=take, window=window
        )

    async def get(self, entry_id: str) -> SentAlert | None:
        fields = await entry(self.client, self.keys.inbox, entry_id)
        return None if fields is None else SentAlert.from_fields(entry_id, fields)

    async def triage(self, alert_keys: Sequence[str]) -> dict[str, Triage]:
        """Each alert's triage, in one round trip."""
        wanted = list(dict.fromkeys(alert_keys))
        if not wanted:
            return {}

        async def read() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for key in wanted:
                    pipe.hgetall(self.keys.triage(key))
                return await pipe.execute()

        found = await guarded(read)
        return {key: Triage.from_hash(raw) for key, raw in zip(wanted, found, strict=True)}

    async def ack(self, alert_key: str, user: str, now: datetime) -> None:
        await self._set(alert_key, {"acked_by": user, "acked_at": now.isoformat()})

    async def assign(self, alert_key: str, assignee: str, user: str, now: datetime) -> None:
        """Give the alert to ``assignee`` (empty: to nobody), saying who did and when."""
        await self._set(
            alert_key,
            {"assignee": assignee, "assigned_by": user, "assigned_at": now.isoformat()},
        )

    async def _set(self, alert_key: str, mapping: Mapping[str, str]) -> None:
        key = self.keys.triage(alert_key)

        async def write() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                fields: dict[Any, Any] = dict(mapping)
                pipe.hset(key, mapping=fields)
                pipe.expire(key, int(TRIAGE_TTL.total_seconds()))
                await pipe.execute()

        await guarded(write)


class ItemHistory:
    """The item history (``P:items``, written by ``ingest.state``) as the console's search
    reads it: newest first, a bounded window per request."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    async def search(
        self,
        query: SearchQuery,
        span: TimeRange,
        *,
        before: str | None = None,
        take: int,
        window: int,
    ) -> Scan[FoundItem]:
        def convert(entry_id: str, fields: Mapping[str, str]) -> FoundItem | None:
            return found_item(query, entry_id, fields)

        bounds = span.bounds(before)
        return await scan_newest(
            self.client, self.keys.items, bounds, convert, take=take, window=window
        )

    async def get(self, entry_id: str) -> Item | None:
        fields = await entry(self.client, self.keys.items, entry_id)
        return None if fields is None else history_item(fields)
