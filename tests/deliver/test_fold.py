"""Folding a pass's messages of one rule about one story into one (``monitor.deliver.fold``)."""

from __future__ import annotations

import dataclasses
import json

from hypothesis import given, settings
from hypothesis import strategies as st
from support.channel_fixtures import make_match

from monitor.deliver.fold import fold_story_updates, merge_provenance, merge_story_messages
from monitor.deliver.queue import QueuedMatch
from monitor.model import Match, Severity, SourceNote


def note(source: str, lang: str = "en", *, new: bool = False) -> SourceNote:
    return SourceNote(source=source, lang=lang, new=new)


def story_match(
    item: str,
    *,
    rule: str = "kz-tungsten",
    story: str | None = "story:s1",
    follow_up: str | None = None,
    sources: tuple[SourceNote, ...] = (),
    severity: Severity = Severity.HIGH,
) -> Match:
    return dataclasses.replace(
        make_match(rule, item, severity=severity),
        story=story,
        follow_up=follow_up,
        story_title="Kazakhstan opens tungsten tender" if story else "",
        provenance=sources,
    )


def entry(entry_id: str, match: Match, *, only: tuple[str, ...] = ()) -> QueuedMatch:
    raw = json.dumps(match.to_dict(), ensure_ascii=False)
    return QueuedMatch(entry_id, match, raw, only=only)


WIRE = note("reuters")
ZH = note("xinhua", "zh", new=True)
RU = note("interfax-kz", "ru", new=True)


def test_the_alert_and_its_follow_ups_read_together_are_one_message() -> None:
    alert = entry("1-0", story_match("reuters:1", sources=(WIRE,)))
    zh = entry("2-0", story_match("xinhua:1", follow_up="new language", sources=(WIRE, ZH)))
    ru = entry(
        "3-0",
        story_match(
            "interfax:1",
            follow_up="corroborated by 3 independent sources",
            sources=(WIRE, dataclasses.replace(ZH, new=False), RU),
        ),
    )
    folded = fold_story_updates([alert, zh, ru])
    assert [e.entry_id for e in folded.send] == ["1-0"]
    assert folded.folded == ((zh, "1-0"), (ru, "1-0"))
    carrier = folded.send[0].match
    assert carrier is not None
    assert carrier.follow_up is None  # still the story's alert
    assert carrier.item.id == "reuters:1"
    assert [n.source for n in carrier.provenance] == ["reuters", "xinhua", "interfax-kz"]
    assert not any(n.new for n in carrier.provenance)  # all of it is news to the desk
    assert json.loads(folded.send[0].raw)["provenance"][2]["source"] == "interfax-kz"


def test_follow_ups_read_together_are_one_follow_up_naming_each_reason_once() -> None:
    first = story_match("a:1", follow_up="new language", sources=(WIRE, ZH))
    second = story_match("b:1", follow_up="new language", sources=(WIRE, ZH, RU))
    third = story_match(
        "c:1", follow_up="escalated at 4 independent sources", severity=Severity.CRITICAL
    )
    merged = merge_story_messages([first, second, third])
    assert merged.follow_up == "new language; escalated at 4 independent sources"
    assert merged.severity == Severity.CRITICAL
    assert [(n.source, n.new) for n in merged.provenance] == [
        ("reuters", False),
        ("xinhua", True),
        ("interfax-kz", True),
    ]


def test_retries_other_rules_and_matches_without_a_story_are_not_folded() -> None:
    entries = [
        entry("1-0", story_match("a:1")),
        entry("2-0", story_match("b:1"), only=("slack",)),  # a retry
        entry("3-0", story_match("c:1", rule="rare-earths")),  # another rule
        entry("4-0", story_match("d:1", story=None)),
        entry("5-0", story_match("e:1", story=None)),
        entry("6-0", story_match("f:1", story="story:s2")),  # another story
    ]
    folded = fold_story_updates(entries)
    assert folded.send == tuple(entries)
    assert folded.folded == ()


def test_entries_taken_over_from_a_dead_worker_are_not_folded() -> None:
    """A dead worker may have sent its alert before it could acknowledge it: folding a new
    follow-up into it would lose the follow-up (the carrier's send is already done)."""
    alert = entry("1-0", story_match("a:1"))
    follow_up = entry("2-0", story_match("b:1", follow_up="new language"))
    folded = fold_story_updates([alert, follow_up], claimed={"1-0"})
    assert folded.send == (alert, follow_up)
    assert folded.folded == ()


def test_sources_keep_their_first_seen_order_and_appear_once() -> None:
    merged = merge_provenance([(WIRE, ZH), (RU, WIRE), (ZH,)], keep_new=True)
    assert [n.source for n in merged] == ["reuters", "xinhua", "interfax-kz"]


@st.composite
def pass_entries(draw: st.DrawFn) -> list[QueuedMatch]:
    count = draw(st.integers(0, 12))
    entries = []
    for number in range(count):
        story = draw(st.sampled_from([None, "story:a", "story:b"]))
        rule = draw(st.sampled_from(["r1", "r2"]))
        follow_up = draw(st.sampled_from([None, "new language"]))
        only = draw(st.sampled_from([(), ("slack",)]))
        match = story_match(f"i:{number}", rule=rule, story=story, follow_up=follow_up)
        entries.append(entry(f"{number}-0", match, only=only))
    return entries


@settings(deadline=None)
@given(pass_entries())
def test_every_entry_is_sent_or_folded_into_an_earlier_one_of_its_story_and_rule(
    entries: list[QueuedMatch],
) -> None:
    folded = fold_story_updates(entries)
    sent = [e.entry_id for e in folded.send]
    gone = [e.entry_id for e, _ in folded.folded]
    assert sorted(sent + gone) == sorted(e.entry_id for e in entries)
    assert sent == [e.entry_id for e in entries if e.entry_id not in gone]  # order kept
    by_id = {e.entry_id: e for e in entries}
    for folded_entry, carrier_id in folded.folded:
        carrier = by_id[carrier_id]
        assert carrier_id in sent
        assert entries.index(carrier) < entries.index(folded_entry)
        assert carrier.match is not None
        assert folded_entry.match is not None
        assert (carrier.match.story, carrier.match.rule_id) == (
            folded_entry.match.story,
            folded_entry.match.rule_id,
        )
        assert not folded_entry.only
        assert not carrier.only
    keys = [(e.match.story, e.match.rule_id) for e in folded.send if e.match and not e.only]
    stories = [key for key in keys if key[0]]
    assert len(stories) == len(set(stories))  # one message per story and rule
