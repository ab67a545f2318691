"""Pure delivery decisions: backoff schedule, routing, stories, silences and digest windows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.channel_fixtures import make_match

from monitor.deliver.policy import (
    DigestSchedule,
    RetryPolicy,
    Route,
    Silence,
    backoff_delay,
    delivery_unit,
    digest_due,
    gives_up,
    group_by_topic,
    route_plan,
    silenced_by,
    story_key,
    throttled_as,
)
from monitor.model import Match, Severity

POLICY = RetryPolicy(base=timedelta(seconds=30), cap=timedelta(minutes=10), max_attempts=5)
NOW = datetime(2026, 3, 2, 2, 30, tzinfo=UTC)  # 07:30 in Almaty (UTC+5)


@pytest.mark.parametrize(
    ("attempt", "jitter", "retry_after", "expected"),
    [
        (1, 0.0, None, 15.0),  # the upper half of 30 s
        (1, 0.999999, None, 30.0),
        (2, 0.0, None, 30.0),  # the ceiling doubles: 60 s
        (3, 0.5, None, 90.0),  # 120 s ceiling, middle of its upper half
        (5, 0.0, None, 240.0),  # 480 s
        (6, 0.0, None, 300.0),  # capped at 600 s
        (60, 1.0, None, 600.0),
        (1, 0.0, 120.0, 120.0),  # Retry-After is a floor
        (6, 1.0, 2.0, 600.0),  # ... but never shortens the backoff
        (0, 0.0, None, 15.0),  # nonsense attempt numbers behave as the first
    ],
)
def test_backoff_schedule(
    attempt: int, jitter: float, retry_after: float | None, expected: float
) -> None:
    got = backoff_delay(attempt, POLICY, jitter=jitter, retry_after=retry_after)
    assert got == pytest.approx(expected, abs=1e-3)


@given(
    attempt=st.integers(min_value=1, max_value=200),
    jitter=st.floats(min_value=0, max_value=1),
    retry_after=st.none() | st.floats(min_value=0, max_value=3600),
)
def test_backoff_is_within_its_ceiling_half_and_honours_retry_after(
    attempt: int, jitter: float, retry_after: float | None
) -> None:
    ceiling = min(30 * 2 ** (attempt - 1), 600)
    got = backoff_delay(attempt, POLICY, jitter=jitter, retry_after=retry_after)
    assert got >= (retry_after or 0)
    assert got >= ceiling / 2 - 1e-9
    assert got <= max(ceiling, retry_after or 0) + 1e-9


@given(attempt=st.integers(min_value=1, max_value=100), jitter=st.floats(0, 1))
def test_backoff_never_shrinks_from_one_attempt_to_the_next_at_equal_jitter(
    attempt: int, jitter: float
) -> None:
    now = backoff_delay(attempt, POLICY, jitter=jitter)
    assert backoff_delay(attempt + 1, POLICY, jitter=jitter) >= now


@pytest.mark.parametrize(("attempt", "stop"), [(1, False), (4, False), (5, True), (9, True)])
def test_gives_up_after_max_attempts(attempt: int, stop: bool) -> None:
    assert gives_up(attempt, POLICY) is stop


def test_a_story_is_its_folded_headline_across_feeds() -> None:
    one = make_match(item="wire:1", title="Kazakhstan  opens TUNGSTEN tender")
    two = make_match(item="other:9", title="kazakhstan opens tungsten tender")
    assert story_key(one) == story_key(two)
    assert story_key(one) != story_key(make_match(title="Something else"))
    assert story_key(make_match(item="x:1", title="  ")) == "item:x:1"


def test_a_clustered_story_replaces_the_headline_and_each_follow_up_reason_counts_apart() -> None:
    first = replace(make_match(item="a:1", title="Kazakhstan tungsten auction"), story="s1")
    reprint = replace(make_match(item="b:1", title="Another headline entirely"), story="s1")
    follow_up = replace(reprint, follow_up="new language")
    assert story_key(first) == story_key(reprint) == "story:s1"
    assert throttled_as(first) == throttled_as(reprint) != throttled_as(follow_up)
    assert follow_up.headline == f"Follow-up (new language): {follow_up.rule_title}"
    assert first.headline == first.rule_title
    assert Match.from_dict(follow_up.to_dict()) == follow_up
    assert "story" not in make_match().to_dict()  # unclustered matches keep their old form


def test_delivery_unit_names_a_recipient_subset_stably() -> None:
    assert delivery_unit("email") == "email"
    a = delivery_unit("email", ["b@x.org", "A@x.org"])
    assert a == delivery_unit("email", ["a@x.org", "b@x.org"])
    assert a.startswith("email#")
    assert a != delivery_unit("email", ["a@x.org"])


ROUTES = (
    Route(channels=("slack",), rules=("kz-tungsten",)),
    Route(channels=("email",), tags=("sanctions",), to=("sanctions@x.org",)),
    Route(channels=("slack", "email"), min_severity=Severity.CRITICAL, to=("duty@x.org",)),
    Route(channels=("console",), fallback=True),
)
ACTIVE = ("slack", "email", "console")


@pytest.mark.parametrize(
    ("match", "plan"),
    [
        (make_match("kz-tungsten", severity=Severity.HIGH), {"slack": ()}),
        (make_match("ru-oil", tags=("sanctions",)), {"email": ("sanctions@x.org",)}),
        (
            make_match("ru-oil", tags=(), source_tags=("sanctions",)),
            {"email": ("sanctions@x.org",)},
        ),
        (
            make_match("ru-oil", tags=("sanctions",), severity=Severity.CRITICAL),
            {"email": ("sanctions@x.org", "duty@x.org"), "slack": ()},
        ),
        (make_match("other", tags=()), {"console": ()}),  # nothing specific: the fallback
        (make_match("other", route=("email",)), {"email": ()}),  # the rule's own route wins
        (make_match("kz-tungsten", route=("pager",)), {"slack": ()}),  # inactive: ignored
    ],
)
def test_route_plan(match: object, plan: dict[str, tuple[str, ...]]) -> None:
    assert route_plan(match, ROUTES, ACTIVE) == plan  # type: ignore[arg-type]


def test_route_plan_drops_inactive_channels_and_catch_all_routes_take_everything() -> None:
    routes = (Route(channels=("slack", "email")),)
    assert route_plan(make_match(), routes, ("email",)) == {"email": ()}
    assert route_plan(make_match(), (), ("email",)) == {}


def silence(**kwargs: object) -> Silence:
    defaults: dict[str, object] = {"id": "s1", "ends": NOW + timedelta(hours=1), "reason": "r"}
    return Silence(**{**defaults, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given_silence", "silenced"),
    [
        (silence(rule="kz-tungsten"), True),
        (silence(rule="other"), False),
        (silence(tag="minerals"), True),  # a rule tag
        (silence(tag="en"), True),  # a feed tag
        (silence(tag="zh"), False),
        (silence(rule="kz-tungsten", ends=NOW), False),  # ended
    ],
)
def test_silences(given_silence: Silence, silenced: bool) -> None:
    found = silenced_by(make_match(), [given_silence], NOW)
    assert (found is not None) is silenced


def test_a_silence_round_trips_through_its_dict() -> None:
    original = silence(tag="kz", author="ann", created=NOW)
    assert Silence.from_dict(original.to_dict()) == original


ASTANA_8 = DigestSchedule("0 8 * * *", "Asia/Almaty")
HOURLY = DigestSchedule("0 * * * *", "UTC")


@pytest.mark.parametrize(
    ("schedule", "last", "now", "due"),
    [
        # 08:00 in Almaty is 03:00 UTC.
        (ASTANA_8, NOW - timedelta(hours=1), NOW, None),
        (ASTANA_8, NOW, NOW.replace(hour=3), NOW.replace(hour=3, minute=0)),
        (ASTANA_8, NOW, NOW.replace(hour=2, minute=59), None),
        # three missed mornings collapse into the newest window
        (ASTANA_8, NOW - timedelta(days=3), NOW.replace(hour=4), NOW.replace(hour=3, minute=0)),
        (HOURLY, NOW, NOW + timedelta(minutes=29), None),
        (HOURLY, NOW, NOW + timedelta(minutes=30), NOW.replace(hour=3, minute=0)),
        (HOURLY, NOW.replace(hour=3, minute=0), NOW.replace(hour=3, minute=0), None),
        # a year-old "last" with a per-minute cron is still quick
        (DigestSchedule("* * * * *"), NOW - timedelta(days=365), NOW, NOW),
    ],
)
def test_digest_due(
    schedule: DigestSchedule, last: datetime, now: datetime, due: datetime | None
) -> None:
    assert digest_due(schedule, last, now) == due


@given(
    start=st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ),
    minutes=st.integers(min_value=0, max_value=60 * 24 * 3),
)
def test_a_due_digest_window_is_a_fire_time_within_the_span(start: datetime, minutes: int) -> None:
    now = start + timedelta(minutes=minutes)
    due = digest_due(HOURLY, start, now)
    if due is None:
        assert now - start < timedelta(hours=1) or now.minute == start.minute == 0
        return
    assert start < due <= now
    assert (due.minute, due.second) == (0, 0)
    assert now - due < timedelta(hours=1)


def test_digest_holds_below_the_bypass_severity() -> None:
    assert ASTANA_8.holds(make_match(severity=Severity.HIGH))
    assert not ASTANA_8.holds(make_match(severity=Severity.CRITICAL))


def test_group_by_topic_puts_the_most_severe_topic_first() -> None:
    low = make_match("a", item="1", severity=Severity.LOW)
    high = make_match("b", item="2", severity=Severity.HIGH)
    medium = make_match("a", item="3", severity=Severity.MEDIUM)
    groups = group_by_topic([low, high, medium])
    assert [(topic, [m.item.id for m in ms]) for topic, ms in groups] == [
        ("Rule b", ["2"]),
        ("Rule a", ["3", "1"]),
    ]
