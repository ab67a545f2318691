"""Trends as alerts: what a volume or first-mention rule counts, when it fires, and the match
it raises.

Pure (no Redis, no clock: time is an argument).  The pipeline counts with
``monitor.stories.volume.VolumeStore`` and queues the matches built here, which then take
the normal route, throttle and channels like any rule's match.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.model import Item, Match, TermHit
from monitor.rules.expr import DEFAULT_FIELDS, Counted, FirstMention, Frequency, Rule, Spike, Trend
from monitor.rules.match import ItemText, ordered_hits

BUCKETS_PER_WINDOW = 12
"""Counting resolution: the current window is read as its last 12 buckets."""
FIRST_MENTION_TTL = timedelta(days=365)
"""How long an entity stays "seen" after its first mention: a year later it is new again."""


@dataclass(frozen=True, slots=True)
class VolumeRule:
    """What a volume rule counts and when it fires.

    ``series`` names what is counted ("rule:kz-tungsten", "tag:sanctions").  ``at_least``
    (frequency) and ``factor`` (spike) may be used alone or together; 0 switches one off.
    ``min_count`` keeps a spike from being three items against a quiet baseline.
    """

    series: str
    window: timedelta = timedelta(hours=1)
    at_least: int = 0
    factor: float = 0.0
    baseline: timedelta = timedelta(days=7)
    min_count: int = 5

    @property
    def bucket(self) -> timedelta:
        return self.window / BUCKETS_PER_WINDOW


@dataclass(frozen=True, slots=True)
class VolumeCounts:
    """Matches in the current window and in the baseline period just before it."""

    current: int
    baseline: int


def expected(rule: VolumeRule, baseline_total: int) -> float:
    """Pure: how many matches the baseline predicts for one window (its average rate)."""
    return baseline_total * (rule.window / rule.baseline)


def volume_fires(rule: VolumeRule, counts: VolumeCounts) -> str | None:
    """Pure: "frequency" or "spike" when the counts meet the rule, else None."""
    if rule.at_least and counts.current >= rule.at_least:
        return "frequency"
    if (
        rule.factor
        and counts.current >= rule.min_count
        and counts.current >= rule.factor * expected(rule, counts.baseline)
    ):
        return "spike"
    return None


TREND_SOURCE = "monitor"
"""The source named on a volume trend's alert: it reports on many items, not one feed's."""


def watched_rules(of: Counted, rules: Iterable[Rule]) -> frozenset[str]:
    """The ids of the rules whose matches a volume trend counts: the rule it names, or every
    rule with its tag."""
    if of.rule is not None:
        return frozenset({of.rule})
    return frozenset(rule.id for rule in rules if of.tag in rule.tags)


def volume_rule(trend: Trend) -> VolumeRule:
    """The counter of a frequency or spike trend.

    The series names the trend and its bucket size, so editing the window starts a fresh
    count instead of reading old buckets at the wrong size.
    """
    watch = trend.watch
    if isinstance(watch, FirstMention):
        raise ValueError(f"trend {trend.id} counts no volume")
    bucket = int((watch.window / BUCKETS_PER_WINDOW).total_seconds())
    series = f"{trend.id}:{bucket}s"
    if isinstance(watch, Frequency):
        return VolumeRule(series, window=watch.window, at_least=watch.at_least)
    return VolumeRule(
        series,
        window=watch.window,
        factor=watch.factor,
        baseline=watch.baseline,
        min_count=watch.min_count,
    )


def span(length: timedelta) -> str:
    """A duration as analysts write it: 90m, 1h, 7d."""
    seconds = int(length.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def explain_volume(trend: Trend, reason: str, counts: VolumeCounts) -> str:
    """What a volume trend counted, in one sentence an analyst can check."""
    watch = trend.watch
    assert not isinstance(watch, FirstMention)
    counted = f"{counts.current} items matched {watch.of.label} in the last {span(watch.window)}"
    if isinstance(watch, Spike):
        usual = expected(volume_rule(trend), counts.baseline)
        rule = f"spike at {watch.factor:g}x, at least {watch.min_count}"
        baseline = f"the trailing {span(watch.baseline)}"
        if usual <= 0:
            return f"{counted}, where {baseline} had none ({rule})"
        return (
            f"{counted}: {counts.current / usual:.1f} times the {usual:.1f} {baseline} "
            f"predicts ({counts.baseline} items then; {rule})"
        )
    return f"{counted} (threshold {watch.at_least})"


def trend_match(
    trend: Trend,
    reason: str,
    counts: VolumeCounts,
    latest: Item,
    version: str,
    now: datetime,
) -> Match:
    """The alert of a frequency or spike trend: its explanation, and the latest counted item
    for a link to start from.

    The item id names the trend and the moment it fired, so each burst is its own alert
    (and its own story for the throttle).
    """
    explanation = explain_volume(trend, reason, counts)
    item = Item(
        id=f"trend:{trend.id}:{int(now.timestamp())}",
        source=TREND_SOURCE,
        title=f"{reason.capitalize()}: {trend.title}",
        summary=f"{explanation}. Latest: {latest.title} ({latest.source})",
        link=latest.link,
        published=now,
    )
    return _trend_alert(trend, version, item, explanation)


def _trend_alert(
    trend: Trend, version: str, item: Item, explanation: str, hits: tuple[TermHit, ...] = ()
) -> Match:
    """A trend's alert is a match like a rule's, so routes, throttles, silences and digests
    treat it alike; its explanation says why it fired."""
    return Match(
        rule_id=trend.id,
        rule_title=trend.title,
        severity=trend.severity,
        rule_version=version,
        item=item,
        hits=hits,
        route=trend.route,
        tags=trend.tags,
        explanation=explanation,
    )


def mentioned(watch: FirstMention, item: Item) -> list[tuple[str, tuple[TermHit, ...]]]:
    """The watched entities (terms of the set) an item mentions, each with its hits, in the
    order of the set.  An entity is named by its term as written in the set."""
    text = ItemText(item)
    found: list[tuple[str, tuple[TermHit, ...]]] = []
    for term in watch.terms:
        hits = [hit for field in DEFAULT_FIELDS for hit in text.hits(term, field)]
        if hits:
            found.append((term.written, ordered_hits(hits)))
    return found


def first_mention_match(
    trend: Trend,
    watch: FirstMention,
    item: Item,
    entity: str,
    hits: tuple[TermHit, ...],
    version: str,
) -> Match:
    """The alert of a first mention: the item itself, its entity hits highlighted."""
    explanation = (
        f"first mention of {entity} (@{watch.entities}) in an item rule {watch.rule} matched"
    )
    return _trend_alert(trend, version, item, explanation, hits)


# -- replaying history (``monitor rules backtest``) -------------------------------------------

#: An item and the ids of the rules that matched it.
Matched = tuple[Item, frozenset[str]]


def replay_trends(
    trends: Iterable[Trend], rules: Iterable[Rule], history: Sequence[Matched], version: str
) -> list[Match]:
    """The alerts ``trends`` would have raised over ``history``, item by item in the order
    the items were published, as the daemon counts them: the same buckets, the same "once
    per burst" (a firing trend stays quiet until a count no longer meets it, or a window
    passes without one), first mentions once per entity and ``FIRST_MENTION_TTL``.

    Pure.  The daemon counts a poll's new items together and from when it saw them; this
    counts one item at a time from its publication time, so a burst can cross the threshold
    an item earlier or later here.
    """
    ordered = sorted(history, key=lambda entry: entry[0].published)
    rule_list = list(rules)
    alerts: list[Match] = []
    for trend in trends:
        if not trend.enabled:
            continue
        if isinstance(trend.watch, FirstMention):
            alerts += _replay_first_mentions(trend, trend.watch, ordered, version)
        else:
            watched = watched_rules(trend.watch.of, rule_list)
            counted = [item for item, ids in ordered if ids & watched]
            alerts += _replay_volume(trend, counted, version)
    return sorted(alerts, key=lambda match: match.item.published)


def _replay_volume(trend: Trend, counted: Sequence[Item], version: str) -> list[Match]:
    rule = volume_rule(trend)
    bucket_s = rule.bucket.total_seconds()
    per_baseline = int(rule.baseline.total_seconds() // bucket_s)
    buckets: dict[int, int] = {}
    quiet_until: datetime | None = None
    alerts: list[Match] = []
    for item in counted:
        now = item.published
        bucket = int(now.timestamp() // bucket_s)
        buckets[bucket] = buckets.get(bucket, 0) + 1
        counts = _window_counts(buckets, bucket, BUCKETS_PER_WINDOW, per_baseline)
        reason = volume_fires(rule, counts)
        if reason is None:
            quiet_until = None
            continue
        # Redis keeps the burst's marker until strictly after it expires, so an item
        # exactly one window after the last firing one still belongs to the burst.
        burst_goes_on = quiet_until is not None and now <= quiet_until
        quiet_until = now + rule.window
        if not burst_goes_on:
            alerts.append(trend_match(trend, reason, counts, item, version, now))
    return alerts


def _window_counts(
    buckets: dict[int, int], now: int, per_window: int, per_baseline: int
) -> VolumeCounts:
    """As the counting script reads its hash: the current window's buckets and the
    baseline's before them; older buckets are dropped."""
    current = baseline = 0
    for bucket in list(buckets):
        age = now - bucket
        if age < per_window:
            current += buckets[bucket]
        elif age < per_window + per_baseline:
            baseline += buckets[bucket]
        else:
            del buckets[bucket]
    return VolumeCounts(current, baseline)


def _replay_first_mentions(
    trend: Trend, watch: FirstMention, ordered: Sequence[Matched], version: str
) -> list[Match]:
    marked: dict[str, datetime] = {}
    alerts: list[Match] = []
    for item, ids in ordered:
        if watch.rule not in ids:
            continue
        now = item.published
        for entity, hits in mentioned(watch, item):
            # As the daemon's marker: set at the first mention, never renewed, and kept
            # until strictly after ``FIRST_MENTION_TTL``.
            if entity not in marked or now > marked[entity] + FIRST_MENTION_TTL:
                marked[entity] = now
                alerts.append(first_mention_match(trend, watch, item, entity, hits, version))
    return alerts
