"""Poll timing decisions: backoff, Retry-After, publishers' cache hints, staleness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.ingest.schedule import (
    BACKOFF_CAP,
    CACHE_HINT_CAP,
    PollOutcome,
    busy_hosts,
    cache_lifetime,
    failure_backoff,
    health_alert,
    health_match,
    is_due,
    is_stale,
    next_poll_at,
)
from monitor.model import Source

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TEN = timedelta(minutes=10)


@pytest.mark.parametrize(
    ("failures", "expected"),
    [(0, TEN), (1, TEN), (2, 2 * TEN), (3, 4 * TEN), (5, 16 * TEN), (30, BACKOFF_CAP)],
)
def test_failure_backoff_doubles_and_is_capped(failures: int, expected: timedelta) -> None:
    assert failure_backoff(failures, TEN) == expected


@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=10, max_value=86_400))
def test_backoff_is_monotonic_and_bounded(failures: int, seconds: int) -> None:
    interval = timedelta(seconds=seconds)
    wait = failure_backoff(failures, interval)
    assert interval <= wait <= max(BACKOFF_CAP, interval)
    assert failure_backoff(failures + 1, interval) >= wait


@pytest.mark.parametrize(
    ("outcome", "failures", "expected"),
    [
        (PollOutcome(ok=True), 0, TEN),
        (PollOutcome(ok=True, cache_seconds=3600), 0, timedelta(hours=1)),
        (PollOutcome(ok=True, cache_seconds=60), 0, TEN),
        (PollOutcome(ok=True, cache_seconds=10**9), 0, CACHE_HINT_CAP),
        (PollOutcome(ok=False), 3, 4 * TEN),
        (PollOutcome(ok=False, retry_after=7200), 1, timedelta(hours=2)),
        (PollOutcome(ok=False, retry_after=30), 1, TEN),
        (PollOutcome(ok=False, retry_after=10**9), 1, BACKOFF_CAP),
    ],
)
def test_next_poll_at(outcome: PollOutcome, failures: int, expected: timedelta) -> None:
    assert next_poll_at(outcome, failures, TEN, NOW) == NOW + expected


@pytest.mark.parametrize(
    ("headers", "ttl", "expected"),
    [
        ({}, None, None),
        ({"cache-control": "public, max-age=900"}, None, 900.0),
        ({"cache-control": "s-maxage=10, max-age=300"}, None, 300.0),
        ({"cache-control": "no-cache, max-age=900"}, None, None),
        ({}, "60", 3600.0),
        ({"cache-control": "max-age=120"}, "15", 900.0),
        ({}, "soon", None),
    ],
)
def test_cache_lifetime(headers: dict[str, str], ttl: str | None, expected: float | None) -> None:
    assert cache_lifetime(headers, ttl) == expected


def test_staleness_after_three_missed_intervals() -> None:
    assert not is_stale(None, TEN, NOW)
    assert not is_stale(NOW - 3 * TEN, TEN, NOW)
    assert is_stale(NOW - 3 * TEN - timedelta(seconds=1), TEN, NOW)


def test_a_feed_waiting_for_its_publishers_ttl_is_not_stale() -> None:
    """Issue 16: a 6-hour TTL set the next poll far ahead; three 10-minute intervals after
    the last success the feed is waiting as asked, not stale.  Once that poll is three
    intervals overdue, it is."""
    last = NOW - timedelta(hours=2)
    next_poll = last + timedelta(hours=6)
    assert not is_stale(last, TEN, NOW, next_poll)
    assert not is_stale(last, TEN, next_poll + 2 * TEN, next_poll)
    assert is_stale(last, TEN, next_poll + 2 * TEN + timedelta(seconds=1), next_poll)
    # a next poll earlier than one interval (a retry) does not make it stale sooner
    assert not is_stale(NOW - 3 * TEN, TEN, NOW, NOW - 3 * TEN + timedelta(minutes=1))


@pytest.mark.parametrize(
    ("planned", "expected"),
    [(None, True), (NOW, True), (NOW + TEN * 0.2, True), (NOW + TEN * 0.3, False)],
)
def test_a_jittered_tick_slightly_early_is_still_due(
    planned: datetime | None, expected: bool
) -> None:
    assert is_due(planned, TEN, NOW) is expected


HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("ok", "since", "alerted", "after", "expected"),
    [
        (False, NOW - 2 * HOUR, False, HOUR, "failing"),
        (False, NOW - 0.5 * HOUR, False, HOUR, None),
        (False, NOW - 2 * HOUR, True, HOUR, None),
        (False, NOW - 2 * HOUR, False, None, None),
        (True, NOW - 2 * HOUR, True, HOUR, "recovered"),
        (True, NOW - 0.5 * HOUR, False, HOUR, None),
    ],
)
def test_health_alert_once_per_incident_and_once_on_recovery(
    ok: bool, since: datetime, alerted: bool, after: timedelta | None, expected: str | None
) -> None:
    assert health_alert(ok, since, alerted, after, NOW) == expected


def feeds_on(host: str, count: int, every: timedelta) -> list[tuple[str, timedelta]]:
    return [(f"https://{host}/feed{number}.xml", every) for number in range(count)]


@pytest.mark.parametrize(
    ("feeds", "gap", "busy"),
    [
        # three feeds every 10 s need 18 turns a minute; a 5 s gap gives 12
        (feeds_on("a.example", 3, timedelta(seconds=10)), timedelta(seconds=5), [("a.example", 3)]),
        # 600 feeds every 10 min on a 1 s gap: exactly as many turns as the host gives
        (feeds_on("news.google.com", 600, timedelta(minutes=10)), timedelta(seconds=1), []),
        (
            feeds_on("news.google.com", 601, timedelta(minutes=10)),
            timedelta(seconds=1),
            [("news.google.com", 601)],
        ),
        # hosts are told apart by port, as the gate tells them apart
        (
            [
                *feeds_on("x.example:1", 2, timedelta(seconds=10)),
                *feeds_on("x.example:2", 2, timedelta(seconds=10)),
            ],
            timedelta(seconds=5),
            [],
        ),
        # no gap, or no host (a file: feed), no turns to run short of
        (feeds_on("a.example", 50, timedelta(seconds=10)), timedelta(0), []),
        ([("file:feeds/local.xml", timedelta(seconds=10))] * 50, timedelta(seconds=5), []),
    ],
)
def test_hosts_whose_feeds_need_more_turns_than_the_gap_gives(
    feeds: list[tuple[str, timedelta]], gap: timedelta, busy: list[tuple[str, int]]
) -> None:
    assert [(found.host, found.feeds) for found in busy_hosts(feeds, gap)] == busy


def test_a_busy_host_reports_turns_needed_and_allowed_per_minute() -> None:
    (found,) = busy_hosts(feeds_on("a.example", 3, timedelta(seconds=10)), timedelta(seconds=5))
    assert (found.needed_per_minute, found.allowed_per_minute) == (18.0, 12.0)


@pytest.mark.parametrize(
    ("failing_for", "said"),
    [
        (timedelta(minutes=4), "has been failing for 4.0 min"),  # was "0.1 h"
        (timedelta(seconds=30), "has been failing for 30 s"),
        (timedelta(hours=5), "has been failing for 5.0 h"),
    ],
)
def test_the_feed_health_alert_says_how_long_in_units_people_read(
    failing_for: timedelta, said: str
) -> None:
    source = Source(name="wire", url="https://wire.example/feed.xml")
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    match = health_match(source, "failing", now - failing_for, "HTTP 503", now)
    assert said in match.item.title
    recovered = health_match(source, "recovered", now - failing_for, None, now)
    assert said.replace("has been failing for", "recovered after") in recovered.item.title
