"""The live trend counters in Redis and the backtest's replay raise the same alerts.

Volume trends (frequency, spike) and first mentions are counted twice: live, by the Lua
scripts of ``monitor.stories.volume`` that the pipeline's ``count_trends`` drives, and
offline, by the pure ``replay_trends`` behind ``monitor rules backtest``.  A backtest is only
worth reading if it predicts what the daemon would have raised, so these tests feed one
history through both and compare the alerts: table-driven bursts and bucket boundaries first,
then hypothesis over random histories.

The live side gets one item per call, at the item's publication time, because that is how
the replay counts (its docstring: the daemon counts a poll's items together, from when it saw
them).  Redis expires keys on its own wall clock while the test's clock is the items'
publication times, so ``SimulatedExpiry`` moves every TTL the scripts set onto the simulated
clock; without it a firing marker would never expire during a test run.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from monitor.app.embedded_redis import EmbeddedRedis
from monitor.ingest.dedup import ItemRecord
from monitor.model import Item, Severity
from monitor.redisio import Keys
from monitor.rules import RuleSet, load_rules
from monitor.rules.expr import Counted, FirstMention, Frequency, Spike, Trend
from monitor.stories.settle import count_trends
from monitor.stories.trends import Matched, replay_trends, volume_rule
from monitor.stories.volume import VolumeStore

T0 = datetime(2026, 3, 9, tzinfo=UTC)
"""Midnight UTC: a bucket boundary for every window used here (buckets count from the epoch)."""

RULES = """\
terms:
  watchlist: [Kazatomprom, Jiaxin, Lynas]
rules:
  - id: r-a
    title: Alpha
    severity: low
    tags: [metals]
    match: {any: [alpha]}
  - id: r-b
    title: Bravo
    severity: low
    tags: [metals]
    match: {any: [bravo]}
  - id: r-c
    title: Charlie
    severity: low
    tags: [energy]
    match: {any: [charlie]}
trends:
  - id: first
    title: A watched company in alpha news
    severity: high
    first_mention: {rule: r-a, entities: "@watchlist"}
"""
"""Three rules (two share the tag ``metals``) and a first-mention trend, whose terms only
``load_rules`` resolves; the volume trends under test are built per test and swapped in.
The rules' match expressions are never used: the histories say what each item matched."""

ENTITIES = ("Kazatomprom", "Jiaxin", "Lynas")
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


# -- the two paths ----------------------------------------------------------------------------


class SimulatedExpiry:
    """Redis's key expiry, run on the simulated clock instead of Redis's wall clock.

    After each call every key of the run that a script gave a TTL (a firing marker, a count
    hash, a first-mention marker) loses it (PERSIST) and gets the same TTL on the simulated
    clock; before the next call the keys past it are deleted.  Like Redis, a key expires only
    once the clock is *past* its expiry: at exactly its expiry it is still there (PTTL 0).
    """

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.pattern = f"{prefix}:*"
        self.deadlines: dict[str, datetime] = {}

    async def advance(self, now: datetime) -> None:
        """Delete what Redis would have expired by ``now``."""
        gone = [key for key, deadline in self.deadlines.items() if now > deadline]
        if gone:
            await self.client.delete(*gone)
        for key in gone:
            del self.deadlines[key]

    async def settle(self, now: datetime) -> None:
        """Move the TTLs the last call set (at ``now``) onto the simulated clock."""
        keys = [key async for key in self.client.scan_iter(match=self.pattern)]
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.pttl(key)
            left: list[int] = await pipe.execute()
        for key in set(self.deadlines) - set(keys):
            del self.deadlines[key]  # deleted by the call: a marker re-armed
        timed = [(key, ms) for key, ms in zip(keys, left, strict=True) if ms >= 0]
        for key, ms in timed:
            # whole seconds were set (EX); ceil undoes the milliseconds the call took
            self.deadlines[key] = now + timedelta(seconds=math.ceil(ms / 1000))
        if timed:
            async with self.client.pipeline(transaction=False) as pipe:
                for key, _ in timed:
                    pipe.persist(key)
                await pipe.execute()


@dataclass
class Live:
    """The daemon's counting path on a private redis-server: ``count_trends`` (the code
    ``poll_once`` runs for newly recorded matched items) over ``VolumeStore``'s scripts.

    Each run uses keys of its own prefix, deleted afterwards, so runs (and hypothesis
    examples) share one server without seeing each other's counts.
    """

    runner: asyncio.Runner
    client: aioredis.Redis
    runs: int = 0

    def alerts(self, rules: RuleSet, history: Sequence[Matched]) -> list[dict[str, Any]]:
        """The matches the daemon queues for ``history``, fed one item at a time at its
        publication time, in publication order (as ``replay_trends`` orders them)."""
        return self.runner.run(self._alerts(rules, history))

    async def _alerts(self, rules: RuleSet, history: Sequence[Matched]) -> list[dict[str, Any]]:
        self.runs += 1
        keys = Keys(f"trend-replay-{self.runs}")
        volume = VolumeStore(self.client, keys)
        expiry = SimulatedExpiry(self.client, keys.prefix)
        try:
            for item, ids in sorted(history, key=lambda entry: entry[0].published):
                if not ids:
                    continue  # poll_once counts only items that matched a rule
                now = item.published
                await expiry.advance(now)
                await count_trends([record(item, ids)], rules, volume, now)
                await expiry.settle(now)
            queued = await self.client.xrange(keys.matches)
            return [json.loads(str(fields["match"])) for _, fields in queued or () if fields]
        finally:
            mine = [key async for key in self.client.scan_iter(match=f"{keys.prefix}:*")]
            if mine:
                await self.client.delete(*mine)


def record(item: Item, ids: frozenset[str]) -> ItemRecord:
    """An item recorded with a match of each rule in ``ids``, as the pipeline hands it to the
    trend counters (which read only the item and the rule ids)."""
    rule_ids = tuple(sorted(ids))
    return ItemRecord((), json.dumps(item.to_dict()), tuple("{}" for _ in rule_ids), rule_ids)


def replayed(rules: RuleSet, history: Sequence[Matched]) -> list[dict[str, Any]]:
    """What ``monitor rules backtest`` replays for ``history``, as the JSON the daemon
    queues, so the two sides compare field by field."""
    alerts = replay_trends(rules.trends, rules.rules, history, rules.version)
    return [json.loads(json.dumps(match.to_dict())) for match in alerts]


def per_trend(alerts: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Alerts grouped by trend, each in firing order.  Across trends the two sides order
    alerts of one instant differently (live: item by item; replay: trend by trend), which
    says nothing about what fired."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts:
        grouped.setdefault(alert["rule"], []).append(alert)
    return grouped


def fired(alerts: Sequence[dict[str, Any]]) -> list[tuple[str, int]]:
    """Each alert as (trend id, number of the item it links to): the latest counted item of
    a volume trend, the item itself for a first mention."""
    return [(alert["rule"], int(alert["item"]["link"].rsplit("/", 1)[1])) for alert in alerts]


def both(live: Live, rules: RuleSet, history: Sequence[Matched]) -> list[dict[str, Any]]:
    """Run both paths, assert they raise the same alerts per trend (every field: item,
    explanation with its counts, severity), and return them."""
    daemon = live.alerts(rules, history)
    backtest = replayed(rules, history)
    assert {rule: fired(alerts) for rule, alerts in per_trend(daemon).items()} == {
        rule: fired(alerts) for rule, alerts in per_trend(backtest).items()
    }, "live and replay fired on different items"
    assert per_trend(daemon) == per_trend(backtest), "same items, different alerts"
    return backtest


# -- fixtures and builders --------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    return load_rules([path])


@pytest.fixture(scope="module")
def live(session_redis: EmbeddedRedis) -> Iterator[Live]:
    """One client on the suite's private redis-server (never the shared one on 6379) and one
    event loop for the whole module, so hypothesis examples need no fixture per example."""
    runner = asyncio.Runner()

    client = aioredis.Redis.from_url(session_redis.url, decode_responses=True)
    try:
        yield Live(runner, client)
    finally:
        runner.run(client.aclose())
        runner.close()


def with_trends(rules: RuleSet, *trends: Trend, first_mention: bool = False) -> RuleSet:
    """``rules`` counting ``trends`` (and the file's first-mention trend if asked)."""
    kept = tuple(t for t in rules.trends if first_mention and isinstance(t.watch, FirstMention))
    return replace(rules, trends=(*trends, *kept))


def frequency(trend_id: str, of: Counted, at_least: int, window: timedelta = HOUR) -> Trend:
    return Trend(trend_id, trend_id.title(), Severity.MEDIUM, Frequency(of, at_least, window))


def spike(
    trend_id: str,
    of: Counted,
    factor: float,
    min_count: int,
    window: timedelta = HOUR,
    baseline: timedelta = DAY,
) -> Trend:
    watch = Spike(of, factor, window, baseline, min_count)
    return Trend(trend_id, trend_id.title(), Severity.HIGH, watch)


def history(*entries: tuple[timedelta, str, *tuple[str, ...]]) -> list[Matched]:
    """Items numbered 0, 1, ... at ``T0 + offset``, matched by the space-separated rule ids
    (``a`` for r-a), titled with any entities given."""
    built: list[Matched] = []
    for number, (offset, matched, *named) in enumerate(entries):
        title = " ".join([f"report {number}", *named])
        item = Item(f"i{number}", "wire", title, "", f"https://wire.example/{number}", T0 + offset)
        built.append((item, frozenset(f"r-{rule}" for rule in matched.split())))
    return built


def minutes(count: float) -> timedelta:
    return timedelta(minutes=count)


# -- table-driven scenarios -------------------------------------------------------------------

BY_RULE = Counted(rule="r-a")
BY_TAG = Counted(tag="metals")


def _baseline(first: int, last: int, every: int) -> list[tuple[timedelta, str]]:
    """An item of r-a every ``every`` hours, from ``first`` to ``last`` hours before T0."""
    return [(-timedelta(hours=h), "a") for h in range(first, last - 1, -every)]


SCENARIOS = [
    pytest.param(
        [frequency("busy", BY_RULE, 3)],
        history(
            (minutes(0), "a"),
            (minutes(10), "a"),
            (minutes(20), "a"),  # 2: crosses the threshold
            (minutes(30), "a"),  # stays above: quiet
            (minutes(40), "a b"),
            (minutes(45), "b"),  # not counted
            (minutes(130), "a"),  # the window holds only this: below, re-armed
            (minutes(140), "a"),
            (minutes(150), "a"),  # 8: crosses again
        ),
        [("busy", 2), ("busy", 8)],
        id="frequency-crosses-stays-falls-crosses-again",
    ),
    pytest.param(
        [frequency("busy", BY_TAG, 3)],
        history(
            (minutes(0), "a"),
            (minutes(5), "a b"),  # two tagged rules, one item: counted once
            (minutes(6), "c"),  # another tag
            (minutes(7), "b"),  # 3: the third item
            (minutes(8), "b"),
        ),
        [("busy", 3)],
        id="frequency-per-tag-counts-an-item-once",
    ),
    pytest.param(
        [frequency("any", BY_RULE, 1)],
        history(
            (minutes(0), "a"),  # fires at once
            (minutes(30), "a"),  # the burst goes on
            (minutes(89), "a"),  # 59 minutes on: still the burst
            (minutes(149) + timedelta(seconds=1), "a"),  # a window and a second with none
        ),
        [("any", 0), ("any", 3)],
        id="a-quiet-window-ends-a-burst-that-never-fell-below",
    ),
    pytest.param(
        [frequency("pair", BY_RULE, 2)],
        history(
            (timedelta(seconds=299), "a"),  # the last second of bucket 0
            (timedelta(seconds=3300), "a"),  # bucket 11: the oldest bucket in the window
        ),
        [("pair", 1)],
        id="bucket-eleven-back-is-in-the-window",
    ),
    pytest.param(
        [frequency("pair", BY_RULE, 2)],
        history(
            (timedelta(seconds=299), "a"),
            (timedelta(seconds=3600), "a"),  # 55 minutes later, but bucket 12: out
            (timedelta(seconds=3601), "a"),  # 2: with the one before
        ),
        [("pair", 2)],
        id="bucket-twelve-back-is-out-however-near",
    ),
    pytest.param(
        [spike("surge", BY_RULE, 3.0, 3)],
        history(
            *_baseline(24, 2, 2),  # 12 in the day before: 0.5 an hour, a spike is 1.5 and 3
            (minutes(0), "a"),
            (minutes(5), "a"),
            (minutes(10), "a"),  # 14: three in the hour
            (minutes(15), "a"),  # the burst goes on
            (minutes(20), "a"),
            (minutes(200), "a"),  # a quiet window: below min_count, re-armed
            (minutes(205), "a"),
            (minutes(210), "a"),  # 19: 3 against the 15 of the day before (0.6 an hour)
        ),
        [("surge", 14), ("surge", 19)],
        id="spike-per-rule-fires-once-per-burst",
    ),
    pytest.param(
        [spike("surge", BY_RULE, 3.0, 2)],
        history(
            *_baseline(24, 2, 1),  # 23 in the day before: 0.96 an hour, a spike is 2.9
            (minutes(0), "a"),
            (minutes(5), "a"),  # two: min_count, but not a spike
            (minutes(10), "a"),  # 25: three
        ),
        [("surge", 25)],
        id="spike-against-a-busy-baseline",
    ),
    pytest.param(
        [spike("surge", BY_TAG, 2.0, 4, baseline=3 * HOUR)],
        history(
            (-minutes(170), "a"),  # the baseline: 2 in 3h, two thirds of one an hour
            (-minutes(100), "b"),
            (minutes(0), "a b"),  # counted once
            (minutes(1), "c"),  # another tag: not counted
            (minutes(2), "b"),
            (minutes(3), "a"),
            (minutes(4), "b"),  # 6: four in the hour
            (minutes(5), "a"),
        ),
        [("surge", 6)],
        id="spike-per-tag",
    ),
    pytest.param(
        [frequency("busy", BY_RULE, 2), spike("surge", BY_TAG, 2.0, 3, baseline=2 * HOUR)],
        history(
            (minutes(0), "b", "Kazatomprom"),  # the entity, without r-a: not a mention
            (minutes(1), "a", "Kazatomprom"),  # 1: first mention
            (minutes(2), "a", "Kazatomprom", "Jiaxin"),  # 2: Jiaxin is new; busy, surge fire
            (minutes(3), "a b", "Jiaxin"),  # nothing new
            (minutes(300), "a", "Lynas", "Kazatomprom"),  # 4: Lynas is new
        ),
        [("first", 1), ("first", 2), ("busy", 2), ("surge", 2), ("first", 4)],
        id="first-mentions-once-per-entity-beside-volume-trends",
    ),
]


@pytest.mark.parametrize(("trends", "entries", "expected"), SCENARIOS)
def test_live_counting_and_replay_raise_the_same_alerts(
    live: Live,
    base_rules: RuleSet,
    trends: list[Trend],
    entries: list[Matched],
    expected: list[tuple[str, int]],
) -> None:
    """Each scenario fires where its comments say, and the daemon's Redis counters and the
    backtest's replay agree on every alert (item, counts in the explanation, severity)."""
    rules = with_trends(base_rules, *trends, first_mention=True)
    alerts = both(live, rules, entries)
    assert sorted(fired(alerts)) == sorted(expected)


# -- boundaries where the two once differed ---------------------------------------------------


def test_an_item_exactly_one_window_after_a_firing_one_is_the_same_burst(
    live: Live, base_rules: RuleSet
) -> None:
    """A trend that fires on one item (at_least 1), counting two items exactly one window
    apart: Redis keeps the firing marker until strictly after it expires, so the second item
    is still the first one's burst, and only the first fires.  (Replay used to re-arm at
    exactly one window and fire on both.)"""
    rules = with_trends(base_rules, frequency("any", BY_RULE, 1))
    alerts = both(live, rules, history((minutes(0), "a"), (minutes(60), "a")))
    assert fired(alerts) == [("any", 0)]


def test_a_first_mention_more_than_a_year_later_is_new_again(
    live: Live, base_rules: RuleSet
) -> None:
    """The first-mention marker is kept ``FIRST_MENTION_TTL`` (a year), so an entity named
    again 366 days later is new again, for the daemon and for replay alike.  (Replay used to
    remember every entity for the whole history.)"""
    rules = with_trends(base_rules, first_mention=True)
    entries = history((minutes(0), "a", "Lynas"), (timedelta(days=366), "a", "Lynas"))
    alerts = both(live, rules, entries)
    assert [number for _trend, number in fired(alerts)] == [0, 1]


# -- random histories -------------------------------------------------------------------------

WINDOWS = (timedelta(minutes=1), timedelta(minutes=5), HOUR)
SUBSETS = st.frozensets(st.sampled_from(("r-a", "r-b", "r-c")))


@st.composite
def volume_trends(draw: st.DrawFn) -> tuple[Trend, ...]:
    """A frequency and a spike trend by rule and by tag, with small thresholds (1 included,
    where only the firing marker's expiry ends a burst) and windows of 1m, 5m or 1h."""
    trends: list[Trend] = []
    for name, of in (("rule", BY_RULE), ("tag", BY_TAG)):
        trends.append(
            frequency(f"freq-{name}", of, draw(st.integers(1, 4)), draw(st.sampled_from(WINDOWS)))
        )
        window = draw(st.sampled_from(WINDOWS))
        trends.append(
            spike(
                f"spike-{name}",
                of,
                draw(st.sampled_from((1.5, 2.0, 3.0))),
                draw(st.integers(1, 4)),
                window,
                window * draw(st.sampled_from((2, 3, 12))),
            )
        )
    return tuple(trends)


def gaps(windows: Sequence[timedelta]) -> st.SearchStrategy[int]:
    """Seconds between items: often none or a few, often at a bucket or window edge (one
    second either side), sometimes longer than any window and baseline."""
    edges = {0, 1}
    for window in windows:
        seconds = int(window.total_seconds())
        for edge in (seconds // 12, seconds, 2 * seconds, 13 * seconds):
            edges |= {edge - 1, edge, edge + 1}
    return st.one_of(
        st.integers(0, 30),
        st.sampled_from(sorted(edges)),
        st.integers(0, 2 * 3600),
        st.integers(0, 2 * 86400),
    )


@st.composite
def histories(draw: st.DrawFn, windows: Sequence[timedelta]) -> list[Matched]:
    """Up to 30 items in publication order, each matched by a random set of rules and
    naming random watched entities."""
    at = T0 + timedelta(seconds=draw(st.integers(0, 3600)))
    built: list[Matched] = []
    for number in range(draw(st.integers(1, 30))):
        at += timedelta(seconds=draw(gaps(windows)))
        named = draw(st.lists(st.sampled_from(ENTITIES), max_size=2, unique=True))
        title = " ".join([f"report {number}", *named])
        item = Item(f"i{number}", "wire", title, "", f"https://wire.example/{number}", at)
        built.append((item, draw(SUBSETS)))
    return built


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_histories_raise_the_same_alerts(
    live: Live, base_rules: RuleSet, data: st.DataObject
) -> None:
    """Whatever the history, thresholds and windows, the daemon's counters and the replay
    fire the same trends on the same items."""
    trends = data.draw(volume_trends(), label="trends")
    windows = [volume_rule(trend).window for trend in trends]
    entries = data.draw(histories(windows), label="history")
    rules = with_trends(base_rules, *trends, first_mention=True)
    alerts = both(live, rules, entries)
    target(float(len(alerts)))  # steer towards histories where trends fire
