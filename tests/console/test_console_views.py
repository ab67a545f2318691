"""What the console's pages show, decided purely: paging, masking, ordering, the silence
form's checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.console.views import (
    LONGEST_SILENCE,
    SilenceRequest,
    feed_row,
    feed_rows,
    pager,
    safe_href,
    silence_request,
    story_view,
)
from monitor.ingest.state import FeedState
from monitor.model import Source
from monitor.model import short_span as span
from monitor.stories.story import Gate, RuleState, Story, StoryItem

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)


@given(st.integers(min_value=0, max_value=10_000), st.text(max_size=6))
def test_the_page_asked_for_is_always_within_the_list(total: int, asked: str) -> None:
    page = pager(asked, total, size=50)
    assert 1 <= page.page <= page.pages
    assert page.offset == (page.page - 1) * 50
    assert page.offset <= max(total - 1, 0)
    assert (page.next is None) == (page.page == page.pages)
    assert (page.previous is None) == (page.page == 1)


@pytest.mark.parametrize(
    ("asked", "total", "page"),
    [("2", 120, 2), ("9", 120, 3), ("0", 120, 1), ("-3", 120, 1), ("x", 120, 1), (None, 0, 1)],
)
def test_pager(asked: str | None, total: int, page: int) -> None:
    assert pager(asked, total, size=50).page == page


@pytest.mark.parametrize(
    ("link", "href"),
    [
        ("https://wire.example/1", "https://wire.example/1"),
        ("http://wire.example/1", "http://wire.example/1"),
        ("javascript:alert(1)", ""),
        (" JavaScript:alert(1)", ""),
        ("data:text/html,<script>1</script>", ""),
        ("//wire.example/1", ""),
        ("/relative", ""),
        ("", ""),
        ("http://[::1", ""),
    ],
)
def test_only_http_links_become_links(link: str, href: str) -> None:
    assert safe_href(link) == href


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (60, "1m"), (7200, "2h"), (90000, "1d"), (-5, "0s")],
)
def test_span(seconds: int, text: str) -> None:
    assert span(timedelta(seconds=seconds)) == text


def _feed(name: str) -> Source:
    return Source(name, f"https://u:pw-{name}@feeds.example/{name}?token=tok-{name}")


def test_a_feed_row_masks_the_url_the_error_and_the_move() -> None:
    state = FeedState(
        failures=2,
        last_error="timeout fetching https://u:pw-x@feeds.example/x?token=tok-x",
        last_error_at=NOW - timedelta(minutes=1),
        moved_to="https://new.example/x?apikey=k-moved",
        next_poll_at=NOW + timedelta(minutes=5),
        items_seen=40,
    )
    row = feed_row(_feed("x"), state, NOW)
    shown = repr(row)
    for secret in ("pw-x", "tok-x", "k-moved"):
        assert secret not in shown
    assert (row.health, row.failures, row.next_poll, row.items_seen) == ("failing", 2, "in 5m", 40)
    assert row.url.startswith("https://u:***@feeds.example/x")


@pytest.mark.parametrize(
    ("state", "health"),
    [
        (FeedState(), "never polled"),
        (FeedState(last_success=NOW - timedelta(minutes=5)), "ok"),
        (FeedState(last_success=NOW - timedelta(hours=5)), "stale"),
        (FeedState(failures=1, last_success=NOW - timedelta(minutes=5)), "failing"),
    ],
)
def test_feed_health_reads_as_feeds_status_reads_it(state: FeedState, health: str) -> None:
    assert feed_row(_feed("x"), state, NOW).health == health


def test_feeds_needing_a_look_come_first() -> None:
    sources = [_feed(n) for n in ("a-ok", "b-failing", "c-new", "d-stale")]
    states = {
        "a-ok": FeedState(last_success=NOW),
        "b-failing": FeedState(failures=3),
        "d-stale": FeedState(last_success=NOW - timedelta(days=1)),
    }
    names = [row.name for row in feed_rows(sources, states, NOW)]
    assert names == ["b-failing", "d-stale", "c-new", "a-ok"]


def _item(item_id: str, seen: int, lang: str, source: str) -> StoryItem:
    moment = NOW + timedelta(minutes=seen)
    return StoryItem(
        item_id,
        source,
        lang,
        f"title {item_id}",
        f"https://{source}.example/{item_id}",
        moment,
        moment,
    )


def test_the_story_timeline_is_in_the_order_items_were_seen() -> None:
    items = (
        _item("c", 30, "zh", "kuangchan"),
        _item("a", 0, "en", "wire"),
        _item("b", 10, "ru", "nedra"),
    )
    story = Story("s1", NOW, NOW + timedelta(minutes=30), items)
    rules = [RuleState("r-alert", alerted_by="a"), RuleState("r-held", gate=Gate(min_sources=4))]
    view = story_view(story, rules, NOW + timedelta(hours=1))
    assert [row.lang for row in view.timeline] == ["en", "ru", "zh"]
    assert view.independent == 3
    assert view.languages == ("zh", "en", "ru")
    assert [(r.rule, r.alerted) for r in view.rules] == [("r-alert", True), ("r-held", False)]
    assert view.rules[1].state == "held: waiting for 4 independent sources (has 3)"
    assert view.last_seen_ago == "30m ago"


def _form(**changes: str) -> dict[str, str]:
    return {
        "target": "rule",
        "value": "kz-tungsten",
        "duration": "4h",
        "reason": "noisy",
        **changes,
    }


@pytest.mark.parametrize(
    ("form", "problem"),
    [
        (_form(target="term"), "choose whether"),
        (_form(value="  "), "name the rule"),
        (_form(target="tag", value=""), "name the tag"),
        (_form(duration="soon"), "write the duration"),
        (_form(duration="0s"), "more than 0"),
        (_form(duration="91d"), "at most 90d"),
        (_form(reason=" \t "), "say why"),
    ],
)
def test_a_bad_silence_form_says_what_to_fix(form: dict[str, str], problem: str) -> None:
    result = silence_request(form)
    assert isinstance(result, str)
    assert problem in result


def test_a_good_silence_form() -> None:
    assert silence_request(_form(target="tag", value=" ru ", duration="2d")) == SilenceRequest(
        rule=None, tag="ru", duration=timedelta(days=2), reason="noisy"
    )


@given(st.dictionaries(st.sampled_from(["target", "value", "duration", "reason"]), st.text()))
def test_any_silence_form_is_a_valid_request_or_a_message(form: dict[str, str]) -> None:
    result = silence_request(form)
    if isinstance(result, SilenceRequest):
        assert (result.rule is None) != (result.tag is None)
        assert timedelta(0) < result.duration <= LONGEST_SILENCE
        assert result.reason.strip()
