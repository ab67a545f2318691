"""Trends: volume (frequency, spike) and first-mention rules, from the rule file to the queue.

Schema errors are checked at their line with their hint; the end-to-end tests poll real feeds
from a local HTTP server into a private Redis and read what was queued for delivery.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from support.feed_server import FeedServer, rss

from monitor.deliver.queue import AlertQueue
from monitor.errors import RuleSetError
from monitor.ingest.fetch import Fetcher
from monitor.ingest.poll import PollContext, poll_once
from monitor.ingest.state import Store
from monitor.model import Item, Severity, Source
from monitor.redisio import Keys
from monitor.rules import RuleSet, lint_rules, load_rules
from monitor.rules.expr import Counted, Frequency, Spike, Trend
from monitor.stories.trends import (
    VolumeCounts,
    replay_trends,
    span,
    trend_match,
    volume_fires,
    volume_rule,
)

NOW = datetime(2026, 3, 2, 20, 0, tzinfo=UTC)
BASE = """\
terms:
  tungsten: [tungsten, вольфрам*]
  watchlist: [Kazatomprom, Tau-Ken Samruk]
rules:
  - id: kz-tungsten
    title: Tungsten in Kazakhstan
    severity: low
    tags: [tungsten]
    match: {all: ["@tungsten", Kazakhstan]}
"""
TRENDS = (
    BASE
    + """\
trends:
  - id: tungsten-spike
    title: Tungsten news is spiking
    severity: high
    spike: {of: {rule: kz-tungsten}, window: 1h, factor: 3, baseline: 1d, min_count: 5}
  - id: tungsten-busy
    title: Ten tungsten items in a day
    severity: medium
    frequency: {of: {tag: tungsten}, window: 1d, at_least: 10}
  - id: watchlist-first
    title: A watched company in tungsten news
    severity: high
    first_mention: {rule: kz-tungsten, entities: "@watchlist"}
"""
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# -- schema and linking --------------------------------------------------------------------


def trend_file(body: str) -> str:
    return BASE + "trends:\n" + textwrap.indent(textwrap.dedent(body), "  ")


@pytest.mark.parametrize(
    ("text", "line", "message", "hint"),
    [
        pytest.param(
            BASE.replace("severity: low", "severity: low\n    min_sources: 0"),
            8,
            "'min_sources' must be a whole number from 1 to 100, not '0'",
            "write it plainly, e.g. 5",
            id="min-sources-below-one",
        ),
        pytest.param(
            BASE.replace("severity: low", "severity: low\n    min_sources: three"),
            8,
            "'min_sources' must be a whole number",
            "write it plainly, e.g. 5",
            id="min-sources-not-a-number",
        ),
        pytest.param(
            BASE.replace("severity: low", "severity: low\n    min_sourcse: 3"),
            8,
            "unknown key 'min_sourcse' in a rule",
            "did you mean 'min_sources'?",
            id="min-sources-misspelt",
        ),
        pytest.param(
            BASE.replace("severity: low", "severity: low\n    official: maybe"),
            8,
            "'official' must be true or false, not 'maybe'",
            None,
            id="official-not-a-flag",
        ),
        pytest.param(
            BASE.replace(
                "severity: low", "severity: low\n    escalate: {sources: 5, severty: high}"
            ),
            8,
            "unknown key 'severty' in 'escalate'",
            "did you mean 'severity'?",
            id="escalate-misspelt",
        ),
        pytest.param(
            BASE.replace(
                "severity: low", "severity: low\n    escalate: {sources: 5, severity: low}"
            ),
            8,
            "'escalate.severity: low' is not above the rule's severity 'low'",
            "escalating must raise the severity, e.g. 'severity: critical'",
            id="escalate-not-higher",
        ),
        pytest.param(
            BASE.replace(
                "severity: low",
                "severity: low\n    min_sources: 3\n    escalate: {sources: 3, severity: high}",
            ),
            9,
            "'escalate.sources: 3' is not above 'min_sources: 3'",
            "the alert would start escalated; raise 'sources' or the rule's severity instead",
            id="escalate-not-beyond-min-sources",
        ),
        pytest.param(
            trend_file(
                """\
                - id: t
                  title: T
                  severity: high
                  frequency: {of: {rule: kz-tungstem}, at_least: 3}
                """
            ),
            14,
            "unknown rule 'kz-tungstem' in 'of.rule'",
            "did you mean 'kz-tungsten'?",
            id="trend-unknown-rule",
        ),
        pytest.param(
            trend_file(
                """\
                - id: t
                  title: T
                  severity: high
                  frequency: {of: {tag: tungstn}, at_least: 3}
                """
            ),
            14,
            "no rule has the tag 'tungstn', so the trend would never count",
            "did you mean 'tungsten'?",
            id="trend-unknown-tag",
        ),
        pytest.param(
            trend_file(
                """\
                - id: t
                  title: T
                  severity: high
                  first_mention: {rule: kz-tungsten, entities: "@watchlst"}
                """
            ),
            14,
            "unknown term set '@watchlst' in 'first_mention.entities'",
            "did you mean '@watchlist'?",
            id="trend-unknown-term-set",
        ),
        pytest.param(
            trend_file(
                """\
                - id: t
                  title: T
                  severity: high
                  spike: {of: {rule: kz-tungsten}, factor: 1}
                """
            ),
            14,
            "'factor' must be a number above 1, not '1'",
            "how many times the usual volume counts as a spike, e.g. 3",
            id="spike-factor-one",
        ),
        pytest.param(
            trend_file(
                """\
                - id: t
                  title: T
                  severity: high
                  spike: {of: {rule: kz-tungsten}, factor: 3, window: 1d, baseline: 1d}
                """
            ),
            14,
            "the baseline (1d) must be at least twice the window (1d)",
            "the baseline is the trailing period the window is compared with, e.g. "
            "'window: 1h, baseline: 7d'",
            id="spike-baseline-too-short",
        ),
        pytest.param(
            trend_file(
                """\
                - id: t
                  title: T
                  severity: high
                  frequency: {of: {rule: kz-tungsten}, at_least: 3, window: soon}
                """
            ),
            14,
            "'window' must be a duration from 1m to 30d, not 'soon'",
            "write a whole number and a unit: 30m, 1h, 6h, 7d",
            id="window-not-a-duration",
        ),
        pytest.param(
            trend_file(
                """\
                - id: t
                  title: T
                  severity: high
                  frequency: {of: {rule: kz-tungsten}, at_least: 3}
                  spike: {of: {rule: kz-tungsten}, factor: 3}
                """
            ),
            11,
            "a trend needs exactly one of 'frequency', 'spike' or 'first_mention'",
            "split it into one trend per kind",
            id="two-kinds",
        ),
        pytest.param(
            trend_file(
                """\
                - id: KZ-tungsten
                  title: T
                  severity: high
                  frequency: {of: {rule: kz-tungsten}, at_least: 3}
                """
            ),
            11,
            "duplicate id 'KZ-tungsten'",
            None,
            id="trend-id-taken-by-a-rule",
        ),
    ],
)
def test_each_problem_is_reported_at_its_line_with_a_hint(
    tmp_path: Path, text: str, line: int, message: str, hint: str | None
) -> None:
    path = write(tmp_path, text)
    problems = [p for p in lint_rules([path]) if "'watchlist' is not used" not in p.message]
    found = [p for p in problems if p.message.startswith(message)]
    assert len(found) == 1, [str(p) for p in problems]
    (problem,) = found
    assert problem.location.line == line, str(problem)
    if hint is not None:
        assert problem.hint == hint


def test_trends_load_with_their_rule_and_term_set_resolved(tmp_path: Path) -> None:
    rules = load_rules([write(tmp_path, TRENDS)])
    spike, busy, first = rules.trends
    assert spike.watch == Spike(
        Counted(rule="kz-tungsten"), 3.0, timedelta(hours=1), timedelta(days=1), 5
    )
    assert busy.watch == Frequency(Counted(tag="tungsten"), 10, timedelta(days=1))
    assert [term.written for term in first.watch.terms] == ["Kazatomprom", "Tau-Ken Samruk"]  # type: ignore[union-attr]


def test_a_term_set_used_only_by_a_first_mention_is_not_unused(tmp_path: Path) -> None:
    assert lint_rules([write(tmp_path, TRENDS)]) == []
    without = TRENDS[: TRENDS.index("  - id: watchlist-first")]
    (problem,) = lint_rules([write(tmp_path, without)])
    assert problem.message == "term set 'watchlist' is not used by any rule"


def test_a_broken_trend_refuses_the_whole_rule_set(tmp_path: Path) -> None:
    with pytest.raises(RuleSetError):
        load_rules([write(tmp_path, TRENDS.replace("at_least: 10", "at_least: 0"))])


# -- end to end -------------------------------------------------------------------------------


@pytest.fixture
async def context(redis_client: aioredis.Redis) -> AsyncIterator[PollContext]:
    keys = Keys("t")
    await AlertQueue(redis_client, keys).ensure_group()
    async with aiohttp.ClientSession() as session:
        yield PollContext(Fetcher(session), Store(redis_client, keys), lambda: NOW, backfill=None)


async def poll(
    feed_server: FeedServer, ctx: PollContext, rules: RuleSet, name: str, titles: list[str]
) -> None:
    entries = [
        {
            "title": title,
            "description": "",
            "guid": f"{name}-{number}",
            "link": f"https://{name}.example/{number}",
            "date": (NOW - timedelta(minutes=5)).strftime("%a, %d %b %Y %H:%M:%S GMT"),
        }
        for number, title in enumerate(titles)
    ]
    feed_server.put(f"/{name}.xml", rss(entries))
    result = await poll_once(Source(name, feed_server.url(f"/{name}.xml")), rules, ctx)
    assert (result.status, result.new_items) == ("ok", len(titles)), result


async def trend_alerts(client: aioredis.Redis, rule: str) -> list[dict[str, Any]]:
    entries = await client.xrange("t:matches")
    found: list[dict[str, Any]] = []
    for _, fields in entries or ():
        assert fields is not None
        found.append(json.loads(str(fields["match"])))
    return [match for match in found if match["rule"] == rule]


def tungsten(count: int, start: int = 0) -> list[str]:
    return [f"Kazakhstan tungsten report number {n}" for n in range(start, start + count)]


async def test_a_spike_rule_fires_once_on_a_burst(
    feed_server: FeedServer, context: PollContext, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    rules = load_rules([write(tmp_path, TRENDS)])
    await poll(feed_server, context, rules, "a", tungsten(4))
    assert await trend_alerts(redis_client, "tungsten-spike") == [], "below min_count"
    await poll(feed_server, context, rules, "b", tungsten(3, 10))
    await poll(feed_server, context, rules, "c", tungsten(5, 20))
    (spike,) = await trend_alerts(redis_client, "tungsten-spike")
    assert spike["severity"] == "high"
    assert spike["explanation"] == (
        "7 items matched rule kz-tungsten in the last 1h, where the trailing 1d had none "
        "(spike at 3x, at least 5)"
    )
    assert spike["item"]["link"] == "https://b.example/2"
    assert await trend_alerts(redis_client, "tungsten-busy") != []  # 12 in a day, tag


async def test_a_first_mention_fires_once_per_entity_and_only_with_the_topic(
    feed_server: FeedServer, context: PollContext, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    rules = load_rules([write(tmp_path, TRENDS)])
    await poll(
        feed_server,
        context,
        rules,
        "a",
        [
            "Kazatomprom annual report",  # the entity without the topic: nothing
            "Kazatomprom eyes tungsten in Kazakhstan",
            "Kazatomprom again: Kazakhstan tungsten plans",
        ],
    )
    (first,) = await trend_alerts(redis_client, "watchlist-first")
    assert first["item"]["title"] == "Kazatomprom eyes tungsten in Kazakhstan"
    assert first["explanation"] == (
        "first mention of Kazatomprom (@watchlist) in an item rule kz-tungsten matched"
    )
    assert [hit["text"] for hit in first["hits"]] == ["Kazatomprom"]
    await poll(feed_server, context, rules, "b", ["Tau-Ken Samruk to bid for Kazakhstan tungsten"])
    assert len(await trend_alerts(redis_client, "watchlist-first")) == 2


# -- pure decisions -------------------------------------------------------------------------------


@given(
    st.integers(min_value=0, max_value=500),
    st.integers(min_value=0, max_value=5000),
    st.integers(min_value=0, max_value=50),
)
def test_a_spike_never_fires_below_its_minimum_and_more_never_silences_it(
    current: int, baseline: int, more: int
) -> None:
    rule = volume_rule(Trend("s", "S", Severity.HIGH, Spike(Counted(rule="r"), 3.0, min_count=5)))
    fired = volume_fires(rule, VolumeCounts(current, baseline))
    if current < 5:
        assert fired is None
    if fired:
        assert volume_fires(rule, VolumeCounts(current + more, baseline)) == "spike"


def test_a_changed_window_counts_afresh() -> None:
    one = Trend("s", "S", Severity.HIGH, Frequency(Counted(rule="r"), 3, timedelta(hours=1)))
    two = Trend("s", "S", Severity.HIGH, Frequency(Counted(rule="r"), 3, timedelta(hours=2)))
    assert volume_rule(one).series != volume_rule(two).series


@pytest.mark.parametrize(
    ("length", "written"),
    [(timedelta(hours=1), "1h"), (timedelta(days=7), "1w"), (timedelta(minutes=90), "90m")],
)
def test_spans_read_as_analysts_write_them(length: timedelta, written: str) -> None:
    assert span(length) == written


def test_a_spike_explains_its_baseline() -> None:
    trend = Trend(
        "s", "S", Severity.HIGH, Spike(Counted(rule="r"), 3.0, baseline=timedelta(days=7))
    )
    latest = Item("i", "feed", "Latest", "", "", NOW)
    match = trend_match(trend, "spike", VolumeCounts(14, 350), latest, "v", NOW)
    assert match.explanation == (
        "14 items matched rule r in the last 1h: 6.7 times the 2.1 the trailing 1w predicts "
        "(350 items then; spike at 3x, at least 5)"
    )


def test_a_trend_alert_names_its_burst() -> None:
    trend = Trend("f", "Busy", Severity.LOW, Frequency(Counted(tag="x"), 3))
    latest = Item("i", "feed", "Latest", "", "https://x.example/", NOW)
    match = trend_match(trend, "frequency", VolumeCounts(4, 0), latest, "v", NOW)
    assert match.item.id == f"trend:f:{int(NOW.timestamp())}"
    assert match.explanation == "4 items matched tag x in the last 1h (threshold 3)"
    assert match.item.title == "Frequency: Busy"


# -- replaying history (rules backtest) -------------------------------------------------------


def history_item(number: int, title: str, at: datetime) -> Item:
    return Item(f"h-{number}", "wire", title, "", f"https://wire.example/{number}", at)


def replayed(rules: RuleSet, items: list[Item]) -> list[tuple[str, str]]:
    history = [(item, frozenset(m.rule_id for m in rules.match(item))) for item in items]
    alerts = replay_trends(rules.trends, rules.rules, history, rules.version)
    return [(alert.rule_id, alert.item.title) for alert in alerts]


def test_replay_fires_a_spike_once_per_burst_and_again_for_the_next(tmp_path: Path) -> None:
    """Quiet days, then six tungsten items in an hour (one spike alert, not six), then a
    quiet day, then another burst: a second alert."""
    rules = load_rules([write(tmp_path, TRENDS)])
    quiet = [
        history_item(n, f"Kazakhstan tungsten note {n}", NOW - timedelta(hours=30 - 6 * n))
        for n in range(4)
    ]
    burst = [
        history_item(
            10 + n, f"Kazakhstan tungsten auction update {n}", NOW + timedelta(minutes=5 * n)
        )
        for n in range(6)
    ]
    later = [
        history_item(
            20 + n, f"Kazakhstan tungsten bids {n}", NOW + timedelta(days=2, minutes=5 * n)
        )
        for n in range(6)
    ]
    spikes = [
        title for rule, title in replayed(rules, quiet + burst + later) if rule == "tungsten-spike"
    ]
    assert len(spikes) == 2
    assert spikes[0].startswith("Spike: Tungsten news is spiking")


def test_replay_counts_items_in_time_order_and_first_mentions_once(tmp_path: Path) -> None:
    rules = load_rules([write(tmp_path, TRENDS)])
    items = [
        history_item(n, f"Kazakhstan tungsten: Kazatomprom bid {n}", NOW + timedelta(hours=n))
        for n in range(10)
    ]
    alerts = replayed(rules, list(reversed(items)))  # stored order need not be time order
    busy = [title for rule, title in alerts if rule == "tungsten-busy"]
    first = [title for rule, title in alerts if rule == "watchlist-first"]
    assert len(busy) == 1  # the tenth item of the day, counted from the earliest
    assert first == ["Kazakhstan tungsten: Kazatomprom bid 0"]
