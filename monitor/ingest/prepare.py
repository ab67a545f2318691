"""Preparing a fetched body: parse, clean, fingerprint, match and serialise its new entries.

The CPU-heavy stage of a poll, pure (bytes and settings in, strings out), so that it can run in
a parser process on every core (``ingest.pool``).  It lives
apart from ``poll`` so that those processes import only what parsing needs: not the HTTP
client, Redis or the delivery side, which would cost every parser tens of megabytes it never
uses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from monitor.ingest.dedup import (
    ItemRecord,
    entry_fingerprint,
    entry_identity,
    identity_fragment,
)
from monitor.ingest.normalize import normalize_entry
from monitor.ingest.parse import NotAFeedError, RawEntry, parse_feed
from monitor.ingest.scrape import scrape_page
from monitor.model import Item, Source
from monitor.rules import RuleSet


@dataclass(frozen=True, slots=True)
class PreparedItem:
    """A clean item ready to record: when it was published (a new feed's archive is recorded
    without alerting) and what goes to Redis."""

    published: datetime
    record: ItemRecord


@dataclass(frozen=True, slots=True)
class PreparedFeed:
    """A fetched body turned into items ready to record; small and picklable (strings, not
    objects), so it can be built in a worker process and sent back cheaply.

    ``items`` holds only entries not in the feed's previous body; ``fingerprints`` names every
    entry of this body, for the next poll.  ``rules_version`` is the rule set the matches were
    computed with (None: not matched).
    """

    entries: int
    items: tuple[PreparedItem, ...]
    fingerprints: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    ttl: str | None = None
    error: str | None = None
    """Why the body is not a feed; returned, not raised, so it crosses process boundaries."""
    rules_version: str | None = None
    cut: bool = False
    """Entries were left unread or unbuilt (``max_items``); ``fingerprints`` then names only
    the entries handled, so the next poll starts where this one stopped."""
    budget_exceeded: bool = False
    """``error`` is the parse budget running out, not a body that is not a feed."""


def prepare_feed(
    source: Source,
    body: bytes,
    headers: dict[str, str],
    url: str,
    now: datetime,
    rules: RuleSet | None = None,
    known: frozenset[str] = frozenset(),
    quiet_before: datetime | None = None,
) -> PreparedFeed:
    """Parse a body, then clean, fingerprint, serialise and match its entries: the CPU-heavy
    part of a poll, pure so it can run in a process pool on every core.

    Items published before ``quiet_before`` (a new feed's archive, older than the backfill
    window) are recorded without alerting, so they are not matched at all: on a first poll
    with the shipped rules, matching and serialising matches was half of the parser's work
    for items that were then recorded as seen.

    Entries whose fingerprint is in ``known`` (they were in the feed's previous body) are
    skipped before any cleaning: a changed feed usually has a handful of new entries among
    fifty, and their cleaning and matching is most of the cost.

    At most ``source.max_items`` entries not in ``known`` are built, and the parser reads at
    most ``entry_limit`` entries (``max_items`` plus those already known, so that enough new
    ones are among them): a body of 190,000 tiny items costs what 500 do, and the next poll
    goes on from where this one stopped (``PreparedFeed.cut``).
    """
    limit = entry_limit(source.max_items, len(known))
    try:
        if source.kind == "page" and source.page is not None:
            feed = scrape_page(body, headers, url, source.page)
        else:
            feed = parse_feed(body, headers, url, max_entries=limit)
    except NotAFeedError as exc:
        return PreparedFeed(0, (), error=str(exc))
    fingerprints: list[str] = []
    items: list[PreparedItem] = []
    cut = feed.cut
    for entry in feed.entries:
        fingerprint = entry_fingerprint(entry.guid, entry.link, entry.title, entry.summary_html)
        if fingerprint not in known:
            if len(items) >= source.max_items:
                cut = True
                break
            items.append(prepare_entry(entry, source, now, rules, quiet_before))
        fingerprints.append(fingerprint)
    version = rules.version if rules is not None else None
    return PreparedFeed(
        len(feed.entries),
        tuple(items),
        tuple(fingerprints),
        feed.warnings,
        feed.ttl,
        rules_version=version,
        cut=cut,
    )


def entry_limit(max_items: int, known: int) -> int:
    """How many entries of a body the parser reads: ``max_items`` new ones plus the ``known``
    ones that may come first, but never more than ``ENTRY_FACTOR`` times ``max_items``
    (entries past that many in one body are never read).  Pure."""
    return min(max_items + known, ENTRY_FACTOR * max_items)


ENTRY_FACTOR = 10


def prepare_entry(
    entry: RawEntry,
    source: Source,
    now: datetime,
    rules: RuleSet | None,
    quiet_before: datetime | None = None,
) -> PreparedItem:
    """Clean, identify and match one raw entry.

    The id is computed here, not taken from ``normalize_entry``: the identity needs the
    link's fragment (``identity_fragment``: a live blog's ``#u1`` and ``#u2`` are two
    entries), which canonical links drop.  ``normalize_entry``'s id (the GUID alone) is
    kept among the item's legacy keys, so items recorded before stay seen.
    """
    cleaned = normalize_entry(entry, source, now)
    fragment = identity_fragment(entry.link) if cleaned.link else ""
    item_id = entry_identity(
        source.name, entry.guid, cleaned.link, fragment, cleaned.title, cleaned.summary
    )
    item = replace(cleaned, id=item_id) if item_id != cleaned.id else cleaned
    if not can_alert(item.published, quiet_before):
        rules = None
    return prepare_item(item, rules, fragment=fragment, old_id=cleaned.id)


def can_alert(published: datetime, quiet_before: datetime | None) -> bool:
    """Whether an item may alert: not when it was published before ``quiet_before`` (the
    backfill window of a feed's first poll).  Pure."""
    return quiet_before is None or published >= quiet_before


def prepare_item(
    item: Item, rules: RuleSet | None, *, fragment: str = "", old_id: str = ""
) -> PreparedItem:
    matches = rules.match(item) if rules is not None else ()
    record = ItemRecord.of(item, matches, fragment=fragment, old_id=old_id)
    return PreparedItem(item.published, record)
