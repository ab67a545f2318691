"""Operational-alert decisions (pure): when the dead-letter and Redis incidents open and close."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.channel_fixtures import make_match

from monitor.deliver.ops_alerts import (
    dead_letter_change,
    dead_letter_match,
    direct_plan,
    ops_routed,
    redis_change,
    redis_match,
    scrub,
)
from monitor.deliver.policy import Route
from monitor.model import Severity, span_text

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("count", "threshold", "is_open", "change"),
    [
        (0, 1, False, None),
        (1, 1, False, "accumulating"),  # any dead letter, with the default threshold
        (4, 5, False, None),
        (5, 5, False, "accumulating"),
        (9, 5, True, None),  # still open: told once, not again as it grows
        (5, 5, True, None),
        (4, 5, True, "cleared"),  # the operator retried some: below the threshold
        (0, 1, True, "cleared"),
        (7, 0, False, None),  # 0 switches the alert off
        (7, 0, True, "cleared"),  # ... and closes an incident left open
    ],
)
def test_dead_letter_incident_table(
    count: int, threshold: int, is_open: bool, change: str | None
) -> None:
    assert dead_letter_change(count, threshold, is_open) == change


@pytest.mark.parametrize(
    ("down_for", "alerted", "after", "change"),
    [
        (None, False, 2 * MIN, None),  # reachable, nothing told
        (None, True, 2 * MIN, "recovered"),  # back after an alert
        (timedelta(seconds=30), False, 2 * MIN, None),  # a restart or failover: quiet
        (2 * MIN, False, 2 * MIN, "unreachable"),
        (10 * MIN, True, 2 * MIN, None),  # once per outage
        (10 * MIN, False, None, None),  # switched off
        (timedelta(0), False, timedelta(0), "unreachable"),
    ],
)
def test_redis_incident_table(
    down_for: timedelta | None, alerted: bool, after: timedelta | None, change: str | None
) -> None:
    down_since = None if down_for is None else T0 - down_for
    assert redis_change(down_since, alerted, after, T0) == change


@given(
    counts=st.lists(st.integers(min_value=0, max_value=20), max_size=60),
    threshold=st.integers(min_value=0, max_value=10),
)
def test_dead_letter_alerts_alternate_and_follow_the_threshold(
    counts: list[int], threshold: int
) -> None:
    """Whatever the counts observed, alerts alternate open/close, open only at or above the
    threshold, close only below it, and never repeat while the state holds."""
    is_open, told = False, []
    for count in counts:
        change = dead_letter_change(count, threshold, is_open)
        if change == "accumulating":
            assert not is_open
            assert threshold > 0
            assert count >= threshold
            is_open = True
        elif change == "cleared":
            assert is_open
            assert threshold == 0 or count < threshold
            is_open = False
        if change:
            told.append(change)
    assert all(a != b for a, b in itertools.pairwise(told))
    assert not told or told[0] == "accumulating"


@given(
    steps=st.lists(st.tuples(st.booleans(), st.integers(min_value=1, max_value=120)), max_size=80),
    after=st.integers(min_value=0, max_value=300),
)
def test_one_redis_alert_per_long_outage_and_one_recovery(
    steps: list[tuple[bool, int]], after: int
) -> None:
    """Driving the decision as OpsWatch does: each outage at least ``after`` long is told
    exactly once, a shorter one never, and every told outage gets exactly one recovery."""
    now, down_since, alerted = T0, None, False
    outages: list[tuple[float, list[str]]] = []
    for reachable, seconds in steps:
        now += timedelta(seconds=seconds)
        if not reachable and down_since is None:
            down_since = now
            outages.append((0.0, []))
        if reachable and down_since is None:
            continue
        change = redis_change(
            None if reachable else down_since, alerted, timedelta(seconds=after), now
        )
        assert down_since is not None
        outages[-1] = ((now - down_since).total_seconds(), outages[-1][1])
        if change:
            outages[-1][1].append(change)
        if change == "unreachable":
            alerted = True
        if reachable:
            down_since, alerted = None, False
    for index, (lasted, told) in enumerate(outages):
        finished = index < len(outages) - 1 or down_since is None
        if "unreachable" in told:
            assert lasted >= after
            assert told[0] == "unreachable"
            assert told.count("unreachable") == 1
            assert told[1:] == (["recovered"] if finished else [])
        else:
            assert told == []


def test_alerts_name_their_incident_so_each_is_delivered_once() -> None:
    opened = dead_letter_match("accumulating", 3, 1, T0, T0)
    same = dead_letter_match("accumulating", 4, 1, T0, T0 + MIN)  # another replica's copy
    closed = dead_letter_match("cleared", 0, 1, T0, T0 + 60 * MIN)
    assert opened.key == same.key != closed.key
    assert (opened.severity, closed.severity) == (Severity.HIGH, Severity.INFO)
    assert opened.tags == ("ops", "accumulating")
    assert closed.item.title == "Dead letters handled: 0 left after 60.0 min"
    down = redis_match("unreachable", "host-1", T0, T0 + 3 * MIN, "Connection refused")
    other = redis_match("unreachable", "host-2", T0, T0 + 3 * MIN, "Connection refused")
    assert down.key != other.key  # one per replica, each naming itself
    assert down.item.title == "Redis unreachable for 3.0 min from host-1 (Connection refused)"
    assert down.rule_id == "redis-unreachable"
    assert "Connection refused" in down.item.summary


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (45, "45 s"),
        (119, "119 s"),
        (192, "3.2 min"),
        (5400, "90.0 min"),
        (9000, "2.5 h"),
    ],
)
def test_span_text(seconds: float, text: str) -> None:
    assert span_text(timedelta(seconds=seconds)) == text


def test_secrets_are_scrubbed_from_errors() -> None:
    error = "Error connecting to redis://:hunter2@redis:6379/0"
    assert scrub(error, ["hunter2", ""]) == "Error connecting to redis://:***@redis:6379/0"


def test_only_ops_alerts_without_their_own_route_are_bound_to_the_ops_channels() -> None:
    ops = make_match("feed-health", tags=("ops", "failing"))
    assert ops_routed(ops, ("email",)).route == ("email",)
    assert ops_routed(ops, ()).route == ()  # no ops channels: the routes decide
    analyst = make_match(tags=("minerals",))
    assert ops_routed(analyst, ("email",)) is analyst
    own = make_match("feed-health", tags=("ops",), route=("console",))
    assert ops_routed(own, ("email",)).route == ("console",)


def test_direct_sends_go_where_the_worker_would_send() -> None:
    down = redis_match("unreachable", "host-1", T0, T0 + 3 * MIN, None)
    routes = (
        Route(channels=("slack",), tags=("ops",)),
        Route(channels=("email",), tags=("minerals",), to=("desk@example.org",)),
        Route(channels=("console",), fallback=True),
    )
    active = ["console", "slack", "email"]
    assert direct_plan(down, (), routes, active) == {"slack": ()}
    assert direct_plan(down, ("email", "console"), routes, active) == {"email": (), "console": ()}
    assert direct_plan(down, (), routes[1:], active) == {"console": ()}  # only the fallback
