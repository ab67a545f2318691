"""Feedback's pure core: Slack's signature, the buttons and what a press means, precision
arithmetic, no_match candidates, and silences by story and source."""

from __future__ import annotations

import json
import string
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from support.channel_fixtures import make_match

from monitor.deliver.channels.slack_app import ApiReply, judge_api
from monitor.deliver.feedback import (
    MAX_AGE,
    Action,
    AlertRef,
    Press,
    Refusal,
    RuleStats,
    Vote,
    action_blocks,
    candidates_yaml,
    check_signature,
    format_precision,
    latest_votes,
    parse_press,
    rule_stats,
    silence_for,
    slack_signature,
    updated_blocks,
)
from monitor.deliver.policy import Silence, silenced_by, story_key
from monitor.errors import PermanentDeliveryError, TransientDeliveryError

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


# --- the signature ---------------------------------------------------------------------------


def test_signature_matches_slacks_documented_example() -> None:
    """The worked example in Slack's "Verifying requests from Slack" guide."""
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
        b"G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fweb"
        b"hook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J"
        b"%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0b"
        b"c887a14d10d2c447fce8b6703c"
    )
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert slack_signature(SECRET, "1531420618", body) == expected
    signed = datetime.fromtimestamp(1531420618, UTC)
    assert check_signature(SECRET, "1531420618", expected, body, signed) is None


@pytest.mark.parametrize(
    ("timestamp", "signature", "age", "refusal"),
    [
        (None, "v0=00", timedelta(0), Refusal.NO_SIGNATURE),
        ("1700000000", None, timedelta(0), Refusal.NO_SIGNATURE),
        ("17e8", "v0=00", timedelta(0), Refusal.BAD_TIMESTAMP),
        ("-5", "v0=00", timedelta(0), Refusal.BAD_TIMESTAMP),
        ("1700000000", "v0=00", timedelta(0), Refusal.BAD_SIGNATURE),
        ("1700000000", "good", timedelta(minutes=5, seconds=1), Refusal.STALE),
        ("1700000000", "good", -timedelta(minutes=5, seconds=1), Refusal.STALE),
        ("1700000000", "good", timedelta(minutes=5), None),
        ("1700000000", "good", timedelta(0), None),
    ],
)
def test_signature_checks(
    timestamp: str | None, signature: str | None, age: timedelta, refusal: Refusal | None
) -> None:
    body = b"payload=%7B%7D"
    if signature == "good":
        signature = slack_signature(SECRET, str(timestamp), body)
    now = datetime.fromtimestamp(1_700_000_000, UTC) + age
    assert check_signature(SECRET, timestamp, signature, body, now) == refusal


stamps = st.integers(min_value=1_000_000_000, max_value=4_000_000_000)


@given(secret=st.text(min_size=1), body=st.binary(), stamp=stamps, skew=st.integers(-300, 300))
def test_any_fresh_request_signed_with_the_secret_passes(
    secret: str, body: bytes, stamp: int, skew: int
) -> None:
    signature = slack_signature(secret, str(stamp), body)
    now = datetime.fromtimestamp(stamp + skew, UTC)
    assert check_signature(secret, str(stamp), signature, body, now) is None


@given(
    secret=st.text(min_size=1),
    body=st.binary(min_size=1),
    stamp=stamps,
    index=st.integers(min_value=0),
    flip=st.integers(min_value=1, max_value=255),
)
def test_a_changed_body_byte_fails(
    secret: str, body: bytes, stamp: int, index: int, flip: int
) -> None:
    signature = slack_signature(secret, str(stamp), body)
    changed = bytearray(body)
    changed[index % len(body)] ^= flip
    now = datetime.fromtimestamp(stamp, UTC)
    assert (
        check_signature(secret, str(stamp), signature, bytes(changed), now) is Refusal.BAD_SIGNATURE
    )


@given(secret=st.text(min_size=1), other=st.text(min_size=1), body=st.binary(), stamp=stamps)
def test_another_secret_fails(secret: str, other: str, body: bytes, stamp: int) -> None:
    if secret == other:
        return
    signature = slack_signature(other, str(stamp), body)
    now = datetime.fromtimestamp(stamp, UTC)
    assert check_signature(secret, str(stamp), signature, body, now) is Refusal.BAD_SIGNATURE


@given(stamp=stamps, late=st.integers(min_value=301, max_value=10**7), ahead=st.booleans())
def test_a_request_older_or_newer_than_five_minutes_is_stale(
    stamp: int, late: int, ahead: bool
) -> None:
    """Even with a correct signature: a replay of a captured request fails once it is old."""
    body = b"payload=x"
    signature = slack_signature(SECRET, str(stamp), body)
    now = datetime.fromtimestamp(stamp + (-late if ahead else late), UTC)
    assert timedelta(seconds=300) == MAX_AGE
    assert check_signature(SECRET, str(stamp), signature, body, now) is Refusal.STALE


@given(stamp=stamps, signature=st.text(max_size=80))
def test_a_guessed_signature_fails(stamp: int, signature: str) -> None:
    now = datetime.fromtimestamp(stamp, UTC)
    assert check_signature(SECRET, str(stamp), signature or "x", b"b", now) in (
        Refusal.BAD_SIGNATURE,
        Refusal.NO_SIGNATURE,
    )


# --- the buttons and a press -----------------------------------------------------------------

ids = st.text(alphabet=string.ascii_letters + string.digits + "._-:|/", min_size=1, max_size=60)


@given(rule=ids, item=ids, story=st.text(max_size=60), source=st.text(max_size=60))
def test_alert_ref_round_trips_through_a_button_value(
    rule: str, item: str, story: str, source: str
) -> None:
    ref = AlertRef(rule, item, story, source)
    assert AlertRef.parse(ref.value()) == ref
    assert ref.alert == f"{rule}|{item}"


@pytest.mark.parametrize(
    "value", ["", "x", "[]", '{"r": "a"}', '{"r": 1, "i": "b", "s": "", "o": ""}']
)
def test_a_value_we_did_not_write_is_no_ref(value: str) -> None:
    assert AlertRef.parse(value) is None


def test_action_block_has_five_buttons_carrying_the_alert() -> None:
    match = replace(make_match(), story="s42")
    block = action_blocks(match, "monitor_actions_0")
    labels = [e["text"]["text"] for e in block["elements"]]
    assert labels == [
        "Relevant",
        "Not relevant",
        "Mute story",
        "Mute this source for this rule",
        "Snooze rule 24 h",
    ]
    assert {e["action_id"] for e in block["elements"]} == {a.action_id for a in Action}
    ref = AlertRef.parse(block["elements"][0]["value"])
    assert ref == AlertRef("kz-tungsten", "wire:1", "story:s42", "wire")
    assert [("confirm" in e) for e in block["elements"]] == [False, False, True, True, True]


def _payload(action: str = "monitor_relevant", value: str | None = None) -> dict[str, Any]:
    ref = AlertRef("r1", "item1", "story:s1", "wire")
    return {
        "type": "block_actions",
        "user": {"id": "U0ANALYST", "username": "dana"},
        "container": {"type": "message", "message_ts": "1.2", "channel_id": "C1"},
        "message": {"ts": "1.2", "text": "alert", "blocks": [{"type": "divider"}]},
        "response_url": "https://hooks.slack.com/actions/x",
        "actions": [
            {"action_id": action, "block_id": "monitor_actions_0", "value": value or ref.value()}
        ],
    }


def test_a_press_is_read_from_slacks_payload() -> None:
    press = parse_press(_payload("monitor_mute_source"))
    assert press is not None
    assert press.action is Action.MUTE_SOURCE
    assert press.ref == AlertRef("r1", "item1", "story:s1", "wire")
    assert (press.channel_id, press.message_ts, press.block_id) == (
        "C1",
        "1.2",
        "monitor_actions_0",
    )
    assert press.who == "dana (U0ANALYST)"
    assert press.mention == "<@U0ANALYST>"


@pytest.mark.parametrize(
    "payload",
    [
        {**_payload(), "type": "view_submission"},
        _payload("relevant"),  # not our prefix
        _payload("other_app_button"),
        _payload(value="not json"),
        {**_payload(), "actions": []},
        {**_payload(), "actions": "x"},
    ],
)
def test_what_is_not_a_press_of_ours_is_ignored(payload: dict[str, Any]) -> None:
    assert parse_press(payload) is None


def _press(action: Action, **changes: Any) -> Press:
    press = parse_press(_payload(action.action_id))
    assert press is not None
    return replace(press, **changes)


def test_each_button_asks_for_its_silence() -> None:
    assert silence_for(_press(Action.RELEVANT)) is None
    assert silence_for(_press(Action.NOT_RELEVANT)) is None
    story = silence_for(_press(Action.MUTE_STORY))
    assert story is not None
    assert (story.rule, story.story, story.source) == (None, "story:s1", None)
    assert story.duration == timedelta(days=7)
    source = silence_for(_press(Action.MUTE_SOURCE))
    assert source is not None
    assert (source.rule, source.story, source.source) == ("r1", None, "wire")
    snooze = silence_for(_press(Action.SNOOZE_RULE))
    assert snooze is not None
    assert (snooze.rule, snooze.story, snooze.source) == ("r1", None, None)
    assert snooze.duration == timedelta(hours=24)
    assert "dana (U0ANALYST)" in snooze.reason


def test_the_message_update_says_who_did_what_under_the_buttons() -> None:
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "alert"}},
        action_blocks(make_match(), "monitor_actions_0"),
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "rule"}]},
    ]
    press = _press(Action.RELEVANT, blocks=tuple(blocks))
    once = updated_blocks(press.blocks, press, NOW)
    assert [b["type"] for b in once] == ["section", "actions", "context", "context"]
    assert once[2]["block_id"] == "monitor_actions_0.feedback"
    assert (
        once[2]["elements"][0]["text"] == "<@U0ANALYST> marked it relevant · 2026-03-10 12:00 UTC"
    )
    again = _press(Action.SNOOZE_RULE, blocks=tuple(once), user_id="U0OTHER")
    twice = updated_blocks(again.blocks, again, NOW)
    assert len(twice) == 4
    assert [e["text"].split(" ")[0] for e in twice[2]["elements"]] == ["<@U0ANALYST>", "<@U0OTHER>"]


def test_a_user_name_that_is_not_an_id_is_escaped() -> None:
    press = _press(Action.RELEVANT, user_id="", user_name="<!channel> & co")
    assert press.mention == "&lt;!channel&gt; &amp; co"


def test_feedback_lines_stop_at_ten() -> None:
    blocks: tuple[dict[str, Any], ...] = (action_blocks(make_match(), "monitor_actions_0"),)
    for n in range(12):
        press = _press(Action.RELEVANT, blocks=blocks, user_id=f"U{n:04d}")
        blocks = tuple(updated_blocks(press.blocks, press, NOW))
    elements = blocks[1]["elements"]
    assert len(elements) == 10
    assert elements[-1]["text"].startswith("<@U0011>")


# --- precision -------------------------------------------------------------------------------


def _vote(alert: str, relevant: bool, at: datetime, sent: datetime | None = None) -> Vote:
    return Vote(alert, "r1", relevant, "dana", at, sent or at, title=f"title {alert}")


def test_precision_over_seven_and_thirty_days() -> None:
    sent = [NOW - timedelta(days=d) for d in (1, 2, 3, 10, 20, 40)]
    votes = [
        _vote("a", True, NOW, NOW - timedelta(days=1)),
        _vote("b", False, NOW, NOW - timedelta(days=2)),
        _vote("c", True, NOW, NOW - timedelta(days=3)),
        _vote("d", False, NOW, NOW - timedelta(days=10)),
        _vote("e", False, NOW, NOW - timedelta(days=40)),
    ]
    week = rule_stats("r1", sent, votes, NOW, timedelta(days=7))
    month = rule_stats("r1", sent, votes, NOW, timedelta(days=30))
    assert (week.sent, week.relevant, week.not_relevant) == (3, 2, 1)
    assert week.precision == pytest.approx(2 / 3)
    assert (month.sent, month.relevant, month.not_relevant) == (5, 2, 2)
    assert month.precision == 0.5
    assert (week.window_label, month.window_label) == ("7d", "30d")
    assert format_precision(week.precision) == "67%"
    assert format_precision(RuleStats("r", timedelta(days=7), 4, 0, 0).precision) == "-"


moments = st.integers(min_value=0, max_value=60 * 24 * 60).map(
    lambda minutes: NOW - timedelta(minutes=minutes)
)


@given(
    sent=st.lists(moments, max_size=30),
    votes=st.lists(st.tuples(st.integers(0, 9), st.booleans(), moments, moments), max_size=30),
)
def test_precision_arithmetic_holds_for_any_history(
    sent: list[datetime], votes: list[tuple[int, bool, datetime, datetime]]
) -> None:
    chosen = latest_votes(
        _vote(f"a{n}", relevant, at, sent_at) for n, relevant, at, sent_at in votes
    )
    assert len({v.alert for v in chosen}) == len(chosen)
    week = rule_stats("r1", sent, chosen, NOW, timedelta(days=7))
    month = rule_stats("r1", sent, chosen, NOW, timedelta(days=30))
    for stats in (week, month):
        assert stats.judged == stats.relevant + stats.not_relevant
        if stats.judged:
            assert stats.precision is not None
            assert 0.0 <= stats.precision <= 1.0
            assert stats.precision == stats.relevant / stats.judged
        else:
            assert stats.precision is None
    assert week.sent <= month.sent
    assert week.relevant <= month.relevant
    assert week.not_relevant <= month.not_relevant


@given(st.lists(st.tuples(st.integers(0, 3), st.booleans(), moments), min_size=1, max_size=20))
def test_the_latest_vote_on_an_alert_wins(votes: list[tuple[int, bool, datetime]]) -> None:
    chosen = {v.alert: v for v in latest_votes(_vote(f"a{n}", r, at) for n, r, at in votes)}
    for alert, vote in chosen.items():
        times = [at for n, _, at in votes if f"a{n}" == alert]
        assert vote.at == max(times)


# --- no_match candidates ---------------------------------------------------------------------


def test_candidates_are_the_not_relevant_items_newest_first_as_yaml() -> None:
    votes = [
        replace(_vote("a", False, NOW - timedelta(hours=2)), title='Tungsten darts: 2 "pros"'),
        replace(_vote("b", False, NOW - timedelta(hours=1)), title="钨 rings", summary="x: y"),
        _vote("c", True, NOW),
        replace(_vote("d", False, NOW - timedelta(hours=3)), title='Tungsten darts: 2 "pros"'),
        replace(_vote("e", False, NOW), rule="other"),
    ]
    text = candidates_yaml("r1", votes)
    assert text.startswith("# r1: 2 item(s) marked not relevant")
    assert yaml.safe_load(text) == {
        "no_match": [{"title": "钨 rings", "summary": "x: y"}, 'Tungsten darts: 2 "pros"']
    }
    assert "钨" in text  # readable, not \u escapes


def test_a_vote_changed_to_relevant_is_no_candidate() -> None:
    votes = [_vote("a", False, NOW - timedelta(hours=1)), _vote("a", True, NOW)]
    assert yaml.safe_load(candidates_yaml("r1", votes)) == {"no_match": []}


# --- silences by story and source ------------------------------------------------------------


def _silence(
    *, rule: str | None = None, story: str | None = None, source: str | None = None
) -> Silence:
    return Silence(
        id="s", ends=NOW + timedelta(hours=1), reason="", rule=rule, story=story, source=source
    )


def test_silences_by_story_and_by_a_rules_source() -> None:
    match = replace(make_match(), story="s1")
    other_story = replace(match, story="s2")
    other_source = replace(match, item=replace(match.item, source="tass"))
    other_rule = replace(match, rule_id="r2")
    story = _silence(story=story_key(match))
    assert story.covers(match, NOW)
    assert story.covers(other_rule, NOW)
    assert not story.covers(other_story, NOW)
    source = _silence(rule="kz-tungsten", source="wire")
    assert source.covers(match, NOW)
    assert source.covers(other_story, NOW)
    assert not source.covers(other_source, NOW)
    assert not source.covers(other_rule, NOW)
    assert silenced_by(other_source, [story, source], NOW) is story
    assert not story.covers(match, NOW + timedelta(hours=2))
    assert source.target == "rule kz-tungsten · source wire"


def test_old_silences_stay_readable_and_new_fields_round_trip() -> None:
    old = {
        "id": "ab12",
        "ends": NOW.isoformat(),
        "reason": "noisy",
        "rule": "r1",
        "tag": None,
        "created": NOW.isoformat(),
        "author": "cli",
    }
    read = Silence.from_dict(old)
    assert (read.rule, read.story, read.source) == ("r1", None, None)
    assert read.to_dict() == old  # written back exactly as before
    new = _silence(story="story:s1", source="wire")
    assert Silence.from_dict(json.loads(json.dumps(new.to_dict()))) == new


# --- the Web API's answers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "kind", "said"),
    [
        (ApiReply(200, {"ok": True, "ts": "1.1"}), None, ""),
        (
            ApiReply(200, {"ok": False, "error": "invalid_auth"}),
            PermanentDeliveryError,
            "invalid_auth",
        ),
        (
            ApiReply(200, {"ok": False, "error": "channel_not_found"}),
            PermanentDeliveryError,
            "channel_not_found",
        ),
        (
            ApiReply(200, {"ok": False, "error": "internal_error"}),
            TransientDeliveryError,
            "internal_error",
        ),
        (ApiReply(200, {"ok": False, "error": "<b>evil</b>"}), PermanentDeliveryError, "unknown"),
        (ApiReply(200, {"ok": False}), PermanentDeliveryError, "unknown"),
        (ApiReply(200, None), TransientDeliveryError, "not Slack's JSON"),
        (ApiReply(429, {"ok": False, "error": "ratelimited"}, "7"), TransientDeliveryError, "429"),
        (ApiReply(503, None), TransientDeliveryError, "503"),
        (ApiReply(404, None), PermanentDeliveryError, "404"),
    ],
)
def test_web_api_answers_are_judged_as_slack_documents_them(
    reply: ApiReply, kind: type[Exception] | None, said: str
) -> None:
    failure = judge_api("slack", "chat.postMessage", reply, now=NOW)
    if kind is None:
        assert failure is None
        return
    assert isinstance(failure, kind)
    assert said in str(failure)
    assert "<b>" not in str(failure)
    if reply.status == 429:
        assert isinstance(failure, TransientDeliveryError)
        assert failure.retry_after == 7.0
