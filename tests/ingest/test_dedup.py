"""Item identity and "material change", pure: which entries are distinct, which edits count."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.ingest.dedup import (
    ItemRecord,
    as_update,
    entry_fingerprint,
    entry_identity,
    identity_fragment,
    item_identity,
    link_field,
    link_seen,
    material_digest,
    materially_changed,
    seen_keys,
)
from monitor.model import Item, Match, Severity

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw_link", "fragment"),
    [
        ("https://news.example/live#u1", "u1"),
        ("https://news.example/live#post-42", "post-42"),
        ("/live#u2", "u2"),
        ("https://news.example/a", ""),
        ("https://news.example/a#", ""),
        ("https://news.example/a#xtor=RSS-3", ""),  # tracking, not a place on the page
        ("https://news.example/a#utm_source=rss&utm_medium=feed", ""),
        ("https://news.example/a#:~:text=tungsten", ""),  # a text fragment
        ("http://[::1#u1", ""),  # unreadable: no identity from it
        ("", ""),
    ],
)
def test_the_fragment_counts_only_when_it_names_a_place(raw_link: str, fragment: str) -> None:
    assert identity_fragment(raw_link) == fragment


LIVE = "https://news.example/live"


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        # a live blog: different GUIDs, links differing only by fragment
        (("g1", LIVE, "u1"), ("g2", LIVE, "u2"), False),
        # one GUID reused for entries with different links, or different anchors
        (("same", "https://a.example/1", ""), ("same", "https://a.example/2", ""), False),
        (("same", LIVE, "u1"), ("same", LIVE, "u2"), False),
        # the same entry on the next poll, whatever its text says now
        (("g1", LIVE, "u1"), ("g1", LIVE, "u1"), True),
        # no GUID: the anchored link decides
        ((None, LIVE, "u1"), (None, LIVE, "u2"), False),
        ((None, LIVE, "u1"), ("  ", LIVE, "u1"), True),
    ],
)
def test_entry_identity_keeps_distinct_entries_apart(
    first: tuple[str | None, str, str], second: tuple[str | None, str, str], same: bool
) -> None:
    a = entry_identity("live", *first, "Title one", "Body one")
    b = entry_identity("live", *second, "Title two", "Body two")
    assert (a == b) is same


def test_entry_identity_is_the_old_identity_where_link_and_fragment_add_nothing() -> None:
    """Items recorded before the link joined the GUID keep their ids: no upgrade re-alert."""
    assert entry_identity("f", "g", "", "", "t", "s") == item_identity("f", "g", "", "t", "s")
    link = "https://a.example/1"
    assert entry_identity("f", None, link, "", "t", "s") == item_identity("f", None, link, "t", "s")
    assert entry_identity("f", None, "", "", "t", "s") == item_identity("f", None, "", "t", "s")
    # The one change: a GUID with a link is no longer the GUID alone.
    assert entry_identity("f", "g", link, "", "t", "s") != item_identity("f", "g", link, "t", "s")


NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)


@settings(deadline=None)
@given(guid=st.one_of(st.none(), NAMES), frag_a=NAMES, frag_b=NAMES, path=NAMES)
def test_two_anchors_of_one_page_are_two_entries(
    guid: str | None, frag_a: str, frag_b: str, path: str
) -> None:
    link = f"https://news.example/{path}"
    a = entry_identity("live", guid, link, frag_a, "t", "s")
    b = entry_identity("live", guid, link, frag_b, "t", "s")
    assert (a == b) is (frag_a == frag_b)


def test_the_entry_fingerprint_changes_with_an_edit_so_the_edit_is_looked_at() -> None:
    base = entry_fingerprint("g", LIVE + "#u1", "Title", "<p>Body</p>")
    assert base == entry_fingerprint("g", LIVE + "#u1", "Title", "<p>Body</p>")
    assert base != entry_fingerprint("g", LIVE + "#u2", "Title", "<p>Body</p>")
    assert base != entry_fingerprint("g", LIVE + "#u1", "Title, updated", "<p>Body</p>")
    assert base != entry_fingerprint("g", LIVE + "#u1", "Title", "<p>Body, more</p>")


T, B = "Kazakhstan opens tungsten tender", "Bids due."


@pytest.mark.parametrize(
    ("before", "after", "material"),
    [
        ((T, B), ("KAZAKHSTAN OPENS TUNGSTEN TENDER", "bids due"), False),
        ((T, B), ("Kazakhstan  opens\ttungsten tender ", "Bids due"), False),
        ((T, B), ("Kazakhstan opens tungsten tender!", "«Bids» — due…"), False),
        (("Вольфрам: тендер", "Заявки до 1 мая."), ("вольфрам — тендер", "заявки до 1 мая"), False),
        (("稀土出口许可", "商务部公告。"), ("稀土出口许可", "商务部公告"), False),
        (("Ｔｕｎｇｓｔｅｎ tender", ""), ("Tungsten tender", ""), False),  # NFKC width only
        # words added, removed or changed
        ((T, B), (T, "Bids due. Export permits required."), True),
        ((T, B), ("Kazakhstan opens tender", B), True),
        (("Stake of 40%", ""), ("Stake of 45%", ""), True),
        (("Tungstn tender", ""), ("Tungsten tender", ""), True),  # a typo fix may make a rule match
        (("Tungsten tender", "opens"), ("Tungsten tender opens", ""), True),  # title vs summary
    ],
)  # fmt: skip
def test_material_change_table(
    before: tuple[str, str], after: tuple[str, str], material: bool
) -> None:
    assert materially_changed(before, after) is material


LETTERS = st.sampled_from(
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    + list("абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ")
    + list("әғқңөұүһіӘҒҚҢӨҰҮҺІ")
    + list("钨稀土许可哈萨克斯坦")
)
WORDS = st.lists(st.text(alphabet=LETTERS, min_size=1, max_size=10), min_size=1, max_size=12)
SEPARATORS = st.text(alphabet=" \t\n\u00a0.,;:!?-—–«»\"'()[]/…%&*", min_size=1, max_size=4)


def _join(words: list[str], separators: list[str]) -> str:
    return "".join(word + separators[i % len(separators)] for i, word in enumerate(words))


@settings(deadline=None)
@given(
    title=WORDS,
    summary=WORDS,
    seps_a=st.lists(SEPARATORS, min_size=1, max_size=5),
    seps_b=st.lists(SEPARATORS, min_size=1, max_size=5),
    upper=st.booleans(),
)
def test_case_spacing_and_punctuation_edits_are_never_material(
    title: list[str], summary: list[str], seps_a: list[str], seps_b: list[str], upper: bool
) -> None:
    before = (_join(title, seps_a), _join(summary, seps_a))
    recased = [word.upper() if upper else word.lower() for word in title]
    after = (_join(recased, seps_b), _join(summary, seps_b))
    assert not materially_changed(before, after)


@settings(deadline=None)
@given(words=WORDS, position=st.integers(min_value=0), extra=st.text(alphabet=LETTERS, min_size=1))
def test_a_word_added_or_changed_is_always_material(
    words: list[str], position: int, extra: str
) -> None:
    at = position % len(words)
    added = [*words[:at], extra, *words[at:]]
    assert materially_changed((" ".join(words), ""), (" ".join(added), ""))
    changed = [*words[:at], words[at] + extra, *words[at + 1 :]]
    assert materially_changed((" ".join(words), ""), (" ".join(changed), ""))
    assert material_digest(" ".join(words), "") == material_digest(" ".join(words), "")


@pytest.mark.parametrize(
    ("carriers", "source", "fragment", "seen"),
    [
        ([], "live", "u1", False),
        ([link_field("live", "u1")], "live", "u1", True),  # the same entry again
        ([link_field("live", "u1")], "live", "u2", False),  # a live blog's next update
        ([link_field("live", "")], "live", "", True),  # one feed, a new GUID, the same link
        ([link_field("live", "")], "live", "u1", False),  # one feed: page and anchor differ
        ([link_field("wire", "")], "reprint", "", True),  # another feed's copy
        ([link_field("wire", "")], "reprint", "comments", True),  # /news/1 and /news/1#comments
        ([link_field("wire", "comments")], "reprint", "", True),
        ([link_field("wire", "u1")], "reprint", "u1", True),
        ([link_field("wire", "u1")], "reprint", "u2", False),  # two anchors across feeds
        ([link_field("live", "u1"), link_field("wire", "")], "live", "u2", True),
    ],
)
def test_link_dedup_merges_feeds_never_one_feeds_anchors(
    carriers: list[str], source: str, fragment: str, seen: bool
) -> None:
    assert link_seen(carriers, source, fragment) is seen


def an_item(item_id: str = "wire:1", title: str = "Kazakhstan tungsten tender") -> Item:
    return Item(item_id, "wire", title, "Bids due.", "https://w.example/live", NOW)


def a_match(rule: str, item: Item) -> Match:
    return Match(rule, rule.title(), Severity.HIGH, "v1", item)


def test_a_record_keys_its_link_by_feed_and_fragment_and_remembers_every_rule() -> None:
    item = an_item()
    record = ItemRecord.of(item, [a_match("a", item), a_match("b", item)], fragment="u1")
    assert record.seen_keys == seen_keys(item)
    assert record.seen_keys[0] == "id:wire:1"
    assert record.seen_keys[1].startswith("link:")
    assert record.link_field == link_field("wire", "u1")
    assert (record.rules, record.matched) == (("a", "b"), ("a", "b"))
    assert record.material == material_digest(item.title, item.summary)
    assert not record.update


def test_an_update_keeps_only_newly_matched_rules_marked_as_update() -> None:
    item = an_item(title="Kazakhstan tungsten tender, export permits")
    record = ItemRecord.of(item, [a_match("a", item), a_match("b", item), a_match("c", item)])
    update = as_update(record, ["a", "c", "gone"])
    assert update.rules == ("b",)
    assert update.matched == ("a", "b", "c")  # still every rule it matches now
    assert (update.update, update.prior) == (True, ("a", "c", "gone"))
    (match,) = [Match.from_dict(json.loads(text)) for text in update.match_json]
    assert (match.rule_id, match.update) == ("b", True)
    assert as_update(record, ["a", "b", "c"]).match_json == ()


def test_the_update_mark_survives_the_queue_and_is_absent_otherwise() -> None:
    match = a_match("a", an_item())
    assert "update" not in match.to_dict()
    marked = Match.from_dict({**match.to_dict(), "update": True})
    assert marked.update
    assert Match.from_dict(marked.to_dict()) == marked
