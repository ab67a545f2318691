"""One message per article (``monitor.deliver.group``): pure grouping and merging."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st
from support.channel_fixtures import make_match

from monitor.deliver.group import by_article, merge_rule_messages
from monitor.deliver.policy import Route, rule_by_rule
from monitor.model import Match, RuleNote, Severity


def test_positions_group_by_key_in_first_seen_order_and_none_stands_alone() -> None:
    assert by_article(["a", None, "b", "a", None, "b", "c"]) == [[0, 3], [1], [2, 5], [4], [6]]


@settings(deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from("abc")), max_size=30))
def test_every_position_is_in_exactly_one_group_of_one_key(keys: list[str | None]) -> None:
    groups = by_article(keys)
    assert sorted(i for group in groups for i in group) == list(range(len(keys)))
    for group in groups:
        assert group == sorted(group)
        assert len({keys[i] for i in group}) == 1
        assert keys[group[0]] is not None or len(group) == 1
    firsts = [group[0] for group in groups]
    assert firsts == sorted(firsts)


def test_the_most_severe_rule_heads_the_message_and_the_others_are_listed() -> None:
    us = make_match("us-investment", severity=Severity.MEDIUM)
    tungsten = make_match("kz-tungsten", severity=Severity.HIGH)
    merged = merge_rule_messages([us, tungsten])
    assert merged.rule_id == "kz-tungsten"
    assert merged.severity is Severity.HIGH
    assert merged.also == (RuleNote("us-investment", "Rule us-investment", Severity.MEDIUM),)
    assert merged.also[0].label == "Rule us-investment (MEDIUM)"
    assert merged.key == tungsten.key  # the head's delivery record


def test_equal_severities_keep_queue_order_and_hits_and_tags_are_the_union() -> None:
    first = make_match("a", tags=("minerals",))
    second = dataclasses.replace(
        make_match("b", tags=("us", "minerals")), follow_up="new language", update=True
    )
    merged = merge_rule_messages([first, second])
    assert merged.rule_id == "a"
    assert merged.tags == ("minerals", "us")
    assert set(merged.hits) == set(first.hits) | set(second.hits)
    assert merged.also[0].label == "Rule b (HIGH, follow-up: new language, updated)"


def test_one_message_is_left_as_it_is() -> None:
    alone = make_match()
    assert merge_rule_messages([alone]) is alone


@settings(deadline=None)
@given(st.lists(st.sampled_from(list(Severity)), min_size=1, max_size=6))
def test_the_message_severity_is_the_highest_and_every_rule_is_told_once(
    severities: list[Severity],
) -> None:
    matches = [make_match(f"r{i}", severity=s) for i, s in enumerate(severities)]
    merged = merge_rule_messages(matches)
    assert merged.severity == max(severities)
    told = [merged.rule_id, *(note.rule_id for note in merged.also)]
    assert sorted(told) == sorted(m.rule_id for m in matches)
    assert [n.severity for n in merged.also] == sorted(
        (n.severity for n in merged.also), reverse=True
    )


def test_the_note_survives_the_queue_encoding() -> None:
    merged = merge_rule_messages([make_match("a"), make_match("b", severity=Severity.LOW)])
    assert Match.from_dict(merged.to_dict()) == merged


def test_a_route_grouping_by_rule_keeps_its_channels_one_message_per_rule() -> None:
    match = make_match("kz-tungsten", tags=("minerals",))
    routes = [
        Route(channels=("slack",), tags=("minerals",), group_by="rule"),
        Route(channels=("email",)),
    ]
    assert rule_by_rule(match, routes) == {"slack"}
    own = make_match("kz-tungsten", route=("slack",))
    assert rule_by_rule(own, routes) == frozenset()
    assert rule_by_rule(match, [Route(channels=("slack", "email"))]) == frozenset()
