"""What each console page shows, as plain values: stories, a story's timeline, feeds, dead
letters, silences, and the silence form's checks; the Inbox's sent alerts, search results and
which rules match an item (``deliver.history`` reads them).

Pure: the stores' data classes in, frozen rows out, with ``now`` given.  Untrusted text
(titles from feeds, errors, reasons) is only cleaned here; the templates escape it.  Secrets
are masked here, before any template sees them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from monitor.console.feedback_views import story_criterion
from monitor.deliver.history import MAX_NAME, FoundItem, SentAlert, Triage, entry_time
from monitor.deliver.policy import Silence
from monitor.deliver.queue import DeadLetter, entry_ms
from monitor.deliver.render.quote import quote
from monitor.deliver.render.strings import clean_line, clip, collapse_spaces
from monitor.ingest.state import FeedState
from monitor.model import Item, Match, Severity, Source, ago, ahead
from monitor.model import short_span as span
from monitor.redact import mask_text, mask_url
from monitor.rules import RuleSet, explain
from monitor.rules.expr import Rule
from monitor.settings import parse_duration
from monitor.stories.story import RuleState, Story

PAGE_SIZE = 50
TITLE_WIDTH = 160
LONGEST_SILENCE = timedelta(days=90)
MAX_REASON = 500


# -- times ------------------------------------------------------------------------------------


def when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def safe_href(link: str) -> str:
    """A link from a feed, only if it is http(s): a ``javascript:`` or ``data:`` URL would
    run in the console's origin when clicked, and escaping does not stop that."""
    try:
        parts = urlsplit(link.strip())
    except ValueError:
        return ""
    return link.strip() if parts.scheme in ("http", "https") and parts.netloc else ""


# -- paging -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pager:
    """One page of a list of ``total`` rows, ``size`` a page; pages count from 1."""

    page: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.size))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size

    @property
    def previous(self) -> int | None:
        return self.page - 1 if self.page > 1 else None

    @property
    def next(self) -> int | None:
        return self.page + 1 if self.page < self.pages else None


def pager(requested: str | None, total: int, size: int = PAGE_SIZE) -> Pager:
    """The page asked for in ``?page=``, kept within 1..pages (junk reads as 1)."""
    try:
        page = int(requested or "1")
    except ValueError:
        page = 1
    bounds = Pager(1, size, total)
    return Pager(min(max(page, 1), bounds.pages), size, total)


# -- stories ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoryRow:
    id: str
    title: str
    items: int
    sources: int
    independent: int
    languages: str
    last_seen: str
    last_seen_ago: str


def story_row(story: Story, now: datetime) -> StoryRow:
    return StoryRow(
        id=story.id,
        title=clip(clean_line(story.title), TITLE_WIDTH) or "(untitled)",
        items=len(story.items),
        sources=len(story.sources),
        independent=len(story.owners),
        languages=", ".join(story.languages) or "-",
        last_seen=when(story.last_seen),
        last_seen_ago=ago(story.last_seen, now),
    )


@dataclass(frozen=True, slots=True)
class TimelineRow:
    item_id: str
    seen: str
    published: str
    source: str
    kind: str
    lang: str
    title: str
    href: str
    link: str


@dataclass(frozen=True, slots=True)
class RuleRow:
    rule: str
    state: str
    alerted: bool


@dataclass(frozen=True, slots=True)
class StoryView:
    id: str
    title: str
    first_seen: str
    first_seen_ago: str
    last_seen: str
    last_seen_ago: str
    items: int
    sources: int
    independent: int
    languages: tuple[str, ...]
    kinds: tuple[str, ...]
    provenance: tuple[str, ...]
    rules: tuple[RuleRow, ...]
    timeline: tuple[TimelineRow, ...]


_STORY_ID = re.compile(r"s[0-9a-f]{12}")


def story_id_of(text: str) -> str:
    """A story id from what an analyst pastes: the id, ``story:<id>``, or the story page's
    address; "" when it is none of them."""
    last = text.strip().rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    candidate = last.removeprefix("story:")
    return candidate if _STORY_ID.fullmatch(candidate) else ""


def story_view(story: Story, rules: Sequence[RuleState], now: datetime) -> StoryView:
    """A story as its page shows it: spread, provenance, what each rule did, and the
    timeline of its items in the order they were seen, across languages and sources."""
    owners = len(story.owners)
    items = sorted(story.items, key=lambda i: (i.seen_at, i.item_id))
    return StoryView(
        id=story.id,
        title=clean_line(story.title) or "(untitled)",
        first_seen=when(story.first_seen),
        first_seen_ago=ago(story.first_seen, now),
        last_seen=when(story.last_seen),
        last_seen_ago=ago(story.last_seen, now),
        items=len(story.items),
        sources=len(story.sources),
        independent=owners,
        languages=story.languages,
        kinds=story.kinds,
        provenance=tuple(clean_line(line) for line in story.provenance()),
        rules=tuple(
            RuleRow(s.rule_id, s.describe(owners), s.alerted_by is not None) for s in rules
        ),
        timeline=tuple(
            TimelineRow(
                item_id=item.item_id,
                seen=when(item.seen_at),
                published=when(item.published),
                source=item.source,
                kind=item.kind,
                lang=item.lang or "?",
                title=clean_line(item.title) or "(untitled)",
                href=safe_href(item.link),
                link=clip(clean_line(item.link), TITLE_WIDTH),
            )
            for item in items
        ),
    )


# -- feeds ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedRow:
    name: str
    url: str
    tags: str
    health: str
    last_success: str
    last_success_ago: str
    failures: int
    last_error: str
    last_error_at: str
    next_poll: str
    items_seen: int
    moved_to: str


def feed_health(source: Source, state: FeedState, now: datetime) -> str:
    """never polled, failing, stale or ok, decided as ``monitor feeds status`` decides."""
    return state.health(source.interval, now)


def feed_row(source: Source, state: FeedState, now: datetime) -> FeedRow:
    """A feed's stored state as the feeds page shows it; the URL, a permanent move's target
    and the last error are masked (a feed URL may carry a password or a token)."""
    failing = state.failures > 0
    return FeedRow(
        name=source.name,
        url=mask_url(source.url),
        tags=", ".join(source.tags),
        health=feed_health(source, state, now),
        last_success=when(state.last_success),
        last_success_ago=ago(state.last_success, now),
        failures=state.failures,
        last_error=clean_line(mask_text(state.last_error or "")) if failing else "",
        last_error_at=when(state.last_error_at) if failing else "",
        next_poll=ahead(state.next_poll_at, now),
        items_seen=state.items_seen,
        moved_to=mask_url(state.moved_to) if state.moved_to else "",
    )


def feed_rows(
    sources: Sequence[Source], states: Mapping[str, FeedState], now: datetime
) -> list[FeedRow]:
    """Failing and stale feeds first (what needs a look), then by name."""
    order = {"failing": 0, "stale": 1, "never polled": 2, "ok": 3}
    rows = [feed_row(s, states.get(s.name, FeedState()), now) for s in sources]
    return sorted(rows, key=lambda r: (order.get(r.health, 9), r.name))


# -- dead letters -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadRow:
    id: str
    at: str
    channel: str
    recipients: str
    rule: str
    title: str
    attempts: int
    reason: str


def dead_row(letter: DeadLetter) -> DeadRow:
    """A dead letter as ``monitor alerts dead`` lists it, reason masked once more (letters
    written before masking existed may still hold a secret)."""
    match = letter.match
    return DeadRow(
        id=letter.id,
        at=when(datetime.fromtimestamp(entry_ms(letter.id) / 1000, UTC)),
        channel=letter.channel,
        recipients=", ".join(letter.recipients),
        rule=match.rule_id if match else "-",
        title=clip(clean_line(match.item.title), TITLE_WIDTH) if match else "(unreadable)",
        attempts=letter.attempts,
        reason=clean_line(mask_text(letter.reason)),
    )


# -- silences ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SilenceRow:
    id: str
    target: str
    ends: str
    left: str
    author: str
    reason: str
    created: str


def silence_row(silence: Silence, now: datetime) -> SilenceRow:
    return SilenceRow(
        id=silence.id,
        target=silence.target,
        ends=when(silence.ends),
        left=span(silence.ends - now),
        author=silence.author or "-",
        reason=clean_line(silence.reason),
        created=when(silence.created),
    )


@dataclass(frozen=True, slots=True)
class SilenceRequest:
    """A checked "add a silence" form: a rule, a tag, a story (as ``story_key`` names it) or
    a source; or a rule only from one source."""

    rule: str | None
    tag: str | None
    duration: timedelta
    reason: str
    story: str | None = None
    source: str | None = None


def silence_request(form: Mapping[str, str]) -> SilenceRequest | str:
    """The silence form's fields checked: a request, or what to fix (shown on the page).

    ``target`` is ``rule``, ``tag``, ``story`` or ``source``, ``value`` what it names;
    ``only_source`` (with a rule) narrows it to one source; ``duration`` like ``4h`` (up to
    90 days), ``reason`` required (it is what the next analyst reads).
    """
    target = form.get("target", "")
    value = clean_line(form.get("value", ""))
    only_source = clean_line(form.get("only_source", ""))
    reason = clean_line(form.get("reason", ""))
    if target not in SILENCE_TARGETS:
        return "choose whether to silence a rule, a tag, a story or a source"
    if not value or len(value) > 200:
        return f"name the {target} to silence"
    if only_source and (target != "rule" or len(only_source) > 200):
        return "only a rule can be narrowed to one source"
    try:
        duration = parse_duration(form.get("duration", ""))
    except ValueError:
        return "write the duration like 30m, 4h or 2d"
    if not timedelta(0) < duration <= LONGEST_SILENCE:
        return "a silence lasts more than 0 and at most 90d"
    if not reason:
        return "say why: the reason is what the next analyst reads"
    return SilenceRequest(
        rule=value if target == "rule" else None,
        tag=value if target == "tag" else None,
        duration=duration,
        reason=clip(reason, MAX_REASON),
        story=story_criterion(value) if target == "story" else None,
        source=value if target == "source" else (only_source or None),
    )


SILENCE_TARGETS = ("rule", "tag", "story", "source")


# -- inbox, search, explain -------------------------------------------------------------------

INBOX_PAGE = 25
"""Alerts a page of the Inbox shows: small pages for a slow link."""
INBOX_WINDOW = 3_000
"""Most log entries one Inbox request reads (newest first, within its time range) to fill
its page; a sparse filter shows what it found and links on to older entries.  Reading
3,000 costs about 200 ms (the client parses every value in Python)."""
SEARCH_PAGE = 25
SEARCH_WINDOW = 3_000
"""Most history items one search request reads (newest first, within its time range):
each is folded as rules fold, some 60 µs for an item in Chinese, so 3,000 cost about 200 ms
when nothing matches."""
SEVERITIES = tuple(severity.label for severity in Severity)


@dataclass(frozen=True, slots=True)
class Run:
    """A run of shown text; ``hit`` runs are what a rule or a search found (marked)."""

    text: str
    hit: bool = False


def marked(
    text: str, spans: Sequence[tuple[int, int]], limit: int = TITLE_WIDTH
) -> tuple[Run, ...]:
    """``text`` cut to ``limit`` characters, in runs with ``spans`` marked (overlaps merged)."""
    text = text[:limit]
    runs: list[Run] = []
    done = 0
    for start, end in sorted(spans):
        start, end = max(start, done), min(end, len(text))
        if end <= start:
            continue
        runs += [Run(text[done:start]), Run(text[start:end], True)]
        done = end
    runs.append(Run(text[done:]))
    return tuple(Run(collapse_spaces(r.text), r.hit) for r in runs if r.text)


def quote_runs(match: Match) -> tuple[Run, ...]:
    """The sentence an alert quotes around its hit (``render.quote``), marked."""
    found = quote(match)
    if found is None:
        return ()
    runs = [Run(segment.text, segment.hit) for segment in found.segments]
    if found.clipped_start:
        runs.insert(0, Run("… "))
    if found.clipped_end:
        runs.append(Run(" …"))
    return tuple(runs)


@dataclass(frozen=True, slots=True)
class InboxRow:
    id: str
    rule: str
    headline: str
    severity: str
    channel: str
    via: str
    sent: str
    sent_ago: str
    title: str
    href: str
    source: str
    lang: str
    story: str
    quote: tuple[Run, ...]
    terms: str
    acked: str
    assignee: str
    assigned: str


def inbox_row(alert: SentAlert, triage: Triage, now: datetime) -> InboxRow:
    """One sent alert as the Inbox lists it: what went where and when, its story, the quote
    with its hits, and who acknowledged it or has it."""
    match = alert.match()
    item = match.item if match is not None else None
    acked = ""
    if triage.acked_by:
        acked = f"{triage.acked_by}, {ago(triage.acked_at, now)}"
    assigned = ""
    if triage.assignee or triage.assigned_by:
        assigned = f"by {triage.assigned_by or '-'}, {ago(triage.assigned_at, now)}"
    return InboxRow(
        id=alert.id,
        rule=alert.rule,
        headline=clip(clean_line(match.headline), TITLE_WIDTH) if match else alert.rule,
        severity=alert.severity.label,
        channel=alert.channel,
        via=alert.via,
        sent=when(alert.sent),
        sent_ago=ago(alert.sent, now),
        title=clip(clean_line(item.title), TITLE_WIDTH) or "(untitled)" if item else "(unreadable)",
        href=safe_href(item.link) if item else "",
        source=alert.source,
        lang=alert.lang or "?",
        story=alert.story,
        quote=quote_runs(match) if match else (),
        terms=", ".join(match.terms) if match else "",
        acked=acked,
        assignee=triage.assignee,
        assigned=assigned,
    )


def assignee_name(text: str) -> str:
    """An assignee as typed: one line, at most ``MAX_NAME`` characters (empty: nobody)."""
    return clip(clean_line(text), MAX_NAME)


@dataclass(frozen=True, slots=True)
class SearchRow:
    id: str
    title: tuple[Run, ...]
    href: str
    source: str
    lang: str
    published: str
    seen: str
    quote: tuple[Run, ...]
    story: str


def search_row(found: FoundItem, story: str | None) -> SearchRow:
    """A search result: its title with the terms marked, the sentence of the summary around
    the first term found there (quoted as an alert quotes), where and when it was seen."""
    item = found.item
    in_title = [(h.start, h.end) for h in found.hits if h.field == "title"]
    in_summary = tuple(h for h in found.hits if h.field == "summary")
    lead = Match("", "", Severity.INFO, "", item, hits=in_summary)
    return SearchRow(
        id=found.id,
        title=marked(item.title, in_title) or (Run("(untitled)"),),
        href=safe_href(item.link),
        source=item.source,
        lang=item.lang or "?",
        published=when(item.published),
        seen=when(entry_time(found.id)),
        quote=quote_runs(lead) if item.summary.strip() else (),
        story=story or "",
    )


@dataclass(frozen=True, slots=True)
class Explained:
    rule: str
    title: str
    severity: str
    matches: bool
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ExplainView:
    title: str
    href: str
    link: str
    source: str
    lang: str
    published: str
    version: str
    rules: int
    matched: tuple[Explained, ...]
    asked: Explained | None


def explain_view(rules: RuleSet, item: Item, asked: str = "") -> ExplainView:
    """Which of the loaded rules match the item, and why (``rules match --explain``), plus
    any one rule ``asked`` for by id, matching or not."""
    matched = []
    for found in rules.match(item):
        rule = rules.get(found.rule_id)
        if rule is not None:
            matched.append(_explained(rule, item, True))
    wanted = rules.get(asked) if asked else None
    return ExplainView(
        title=clean_line(item.title) or "(untitled)",
        href=safe_href(item.link),
        link=clip(clean_line(mask_url(item.link)), TITLE_WIDTH),
        source=item.source,
        lang=item.lang or "?",
        published=when(item.published),
        version=rules.version,
        rules=len(rules),
        matched=tuple(matched),
        asked=_explained(wanted, item, any(e.rule == wanted.id for e in matched))
        if wanted is not None
        else None,
    )


def _explained(rule: Rule, item: Item, matches: bool) -> Explained:
    return Explained(
        rule=rule.id,
        title=clean_line(rule.title),
        severity=rule.severity.label,
        matches=matches,
        lines=tuple(explain(rule, item)),
    )
