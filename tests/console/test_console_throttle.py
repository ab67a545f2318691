"""Failed-login rate limits and sessions: pure, with the time given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from monitor.console.sessions import SessionBook
from monitor.console.throttle import LoginThrottle, address_key, retry_after, user_key

T0 = datetime(2026, 5, 1, 9, tzinfo=UTC)
WINDOW = timedelta(minutes=15)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_limit_th_failure_blocks_until_the_oldest_leaves_the_window() -> None:
    failures = [at(0), at(60), at(120)]
    assert retry_after(failures[:2], at(130), 3, WINDOW) == timedelta(0)
    assert retry_after(failures, at(130), 3, WINDOW) == WINDOW - timedelta(seconds=130)
    assert retry_after(failures, at(900), 3, WINDOW) == timedelta(0)  # at(0) has left


def test_failures_outside_the_window_do_not_count() -> None:
    assert retry_after([at(-1000), at(-950), at(10)], at(20), 3, WINDOW) == timedelta(0)


@given(
    st.lists(st.integers(min_value=-3600, max_value=3600), max_size=30),
    st.integers(min_value=1, max_value=10),
)
def test_the_wait_is_never_negative_nor_longer_than_the_window(
    offsets: list[int], limit: int
) -> None:
    wait = retry_after([at(s) for s in offsets], at(0), limit, WINDOW)
    assert timedelta(0) <= wait <= WINDOW


@given(st.integers(min_value=1, max_value=8), st.integers(min_value=0, max_value=20))
def test_a_steady_guesser_gets_at_most_limit_tries_per_window(limit: int, extra: int) -> None:
    """Whatever the pace, no more than ``limit`` failures are let through in any window."""
    throttle = LoginThrottle(limit, WINDOW)
    keys = [user_key("ana"), address_key("203.0.113.9")]
    tried: list[datetime] = []
    now = T0
    for _ in range(limit + extra):
        now += throttle.wait(keys, now)
        tried.append(now)
        throttle.failed(keys, now)
        now += timedelta(seconds=1)
    for start in tried:
        assert sum(1 for t in tried if start <= t < start + WINDOW) <= limit


def test_a_right_password_clears_the_user_but_not_the_address() -> None:
    throttle = LoginThrottle(2, WINDOW)
    user, address = user_key("Ana"), address_key("198.51.100.7")
    throttle.failed([user, address], at(0))
    throttle.failed([user, address], at(1))
    assert throttle.wait([user], at(2)) > timedelta(0)
    throttle.succeeded("ana")  # user names are compared case-folded
    assert throttle.wait([user], at(2)) == timedelta(0)
    assert throttle.wait([address], at(2)) > timedelta(0)


def test_a_session_lives_until_its_ttl_or_its_close() -> None:
    book = SessionBook(timedelta(hours=1))
    token = book.open("ana", "login", at(0))
    session = book.lookup(token, at(10))
    assert session is not None
    assert session.user == "ana"
    assert book.lookup(token + "x", at(10)) is None
    assert book.lookup(None, at(10)) is None
    assert book.lookup(token, at(3600)) is None  # expired
    again = book.open("ana", "login", at(0))
    assert book.close(again)
    assert not book.close(again)
    assert book.lookup(again, at(1)) is None


def test_tokens_are_long_random_and_distinct() -> None:
    book = SessionBook(timedelta(hours=1))
    tokens = {book.open("ana", "login", T0) for _ in range(200)}
    assert len(tokens) == 200
    assert all(len(t) >= 43 for t in tokens)
