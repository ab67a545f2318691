"""The reference evaluator: terms, word boundaries, phrases, CJK, groups, sources and offsets."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from monitor.model import Item, Severity, TermHit
from monitor.rules import (
    Group,
    ItemText,
    Regex,
    Rule,
    RuleSet,
    SetRef,
    Term,
    TermSyntaxError,
    evaluate,
    load_rules,
)
from monitor.rules.expr import DEFAULT_FIELDS, FIELDS
from monitor.rules.match import _Words, node_hits, ordered_hits
from monitor.rules.text import fold, is_unspaced

REPO = Path(__file__).resolve().parents[2]
WHEN = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def item(
    title: str, summary: str = "", *, source: str = "feed", tags: tuple[str, ...] = ()
) -> Item:
    return Item(
        id="item-1",
        source=source,
        title=title,
        summary=summary,
        link="https://news.example/1",
        published=WHEN,
        source_tags=tags,
    )


def all_hits(text: ItemText, term: Term) -> tuple[TermHit, ...]:
    """A term's hits in the title, then the summary."""
    return node_hits(term, text, DEFAULT_FIELDS) or ()


def found(term: str, title: str, *, case: bool = False) -> list[str]:
    """The texts a single term finds in a title, checking every hit's offsets on the way."""
    text = ItemText(item(title))
    hits = all_hits(text, Term.parse(term, case=case))
    for hit in hits:
        assert title[hit.start : hit.end] == hit.text
    return [hit.text for hit in hits]


@pytest.mark.parametrize(
    ("term", "title", "expected"),
    [
        # word boundaries
        ("W", "W prices rise", ["W"]),
        ("W", "Wall Street and AWS", []),
        ("W", "a 5W lamp", []),
        ("W", "tungsten (W), molybdenum (Mo)", ["W"]),
        ("tungsten", "TUNGSTEN Tungsten tungsten", ["TUNGSTEN", "Tungsten", "tungsten"]),
        ("tungsten", "tungstenite", []),
        ("bid", "bidding war", []),
        ("Kazakhstan", "Kazakhstan's bid", ["Kazakhstan"]),
        # prefix wildcard
        ("Kazakh*", "Kazakhstani miners", ["Kazakhstani"]),
        ("Kazakh*", "Kazakh", ["Kazakh"]),
        ("Kazakh*", "Kazak steppe", []),
        ("казахстан*", "Казахстана и казахстанский", ["Казахстана", "казахстанский"]),
        ("казахстан*", "казахский", []),
        ("қазақстан*", "Қазақстанның", ["Қазақстанның"]),
        ("қазақстан*", "Казахстан", []),  # Kazakh қ is not folded into Russian к
        ("licen*", "licence, license, licensing", ["licence", "license", "licensing"]),
        # phrases
        ("Upper Kairakty", "upper-Kairakty", ["upper-Kairakty"]),
        ("Upper Kairakty", "Upper\n\t Kairakty", ["Upper\n\t Kairakty"]),
        ("Upper Kairakty", "Upper — Kairakty", ["Upper — Kairakty"]),
        ("Upper Kairakty", "UpperKairakty", []),
        ("Upper Kairakty", "Kairakty Upper", []),
        ("Upper Kairakty", "Upper new Kairakty", []),
        ("rare earth*", "Rare-Earths", ["Rare-Earths"]),
        ("rare-earth", "rare earth", ["rare earth"]),
        ("Верхн* Кайракт*", "Верхне-Кайрактинское", ["Верхне-Кайрактинское"]),
        ("U.S.", "U.S. bid", ["U.S"]),
        ("U.S.", "US bid", []),
        # Chinese, Japanese, Korean: substrings
        ("稀土", "中重稀土出口", ["稀土"]),
        ("哈国", "哈国政府宣布", ["哈国"]),
        ("稀土 出口管制", "稀土出口管制", ["稀土出口管制"]),
        ("稀土 出口管制", "稀土 出口管制", ["稀土 出口管制"]),
        ("DFC", "美国DFC宣布", ["DFC"]),
        ("DFC 贷款", "DFC贷款", ["DFC贷款"]),
        ("钨", "碳化钨", ["钨"]),
        ("한국", "한국의 광물", ["한국"]),
        # folding
        ("Kazakhstan", "Ｋａｚａｋｈｓｔａｎ", ["Ｋａｚａｋｈｓｔａｎ"]),
        ("Kazakhstan", "Kazakh\u00adstan", ["Kazakh\u00adstan"]),
        ("партнерство", "партнёрство", ["партнёрство"]),
        ("cafe", "Café", ["Café"]),
        ("café", "CAFE", ["CAFE"]),
        ("strasse", "Straße", ["Straße"]),
        ("finance", "ﬁnance", ["ﬁnance"]),
    ],
)
def test_term_finds(term: str, title: str, expected: list[str]) -> None:
    assert found(term, title) == expected


@pytest.mark.parametrize(
    ("term", "title", "expected"),
    [
        ("KZ", "KZ kz Kz", ["KZ"]),
        ("US", "let us know; US bid", ["US"]),
        ("РК", "в РК и рк", ["РК"]),
        ("Ёж", "Еж ЕЖ", ["Еж"]),  # ё→е still applies with case kept
    ],
)
def test_case_sensitive_term(term: str, title: str, expected: list[str]) -> None:
    assert found(term, title, case=True) == expected


@pytest.mark.parametrize(
    ("title", "start", "end"),
    [
        ("ﬁ Kazakh\u00adstan", 2, 13),
        ("Die Straße Kazakhstan", 11, 21),
        ("ＫＺ: Kazakhstan", 4, 14),
        ("e\u0301 Kazakhstan", 3, 13),
    ],
)
def test_offsets_index_the_original_text(title: str, start: int, end: int) -> None:
    (hit,) = all_hits(ItemText(item(title)), Term.parse("Kazakhstan"))
    assert (hit.start, hit.end) == (start, end)
    assert title[hit.start : hit.end] == hit.text


def test_hits_cover_title_then_summary_with_their_field() -> None:
    text = ItemText(item("Tungsten prices", "Kazakhstan tungsten tender"))
    hits = all_hits(text, Term.parse("tungsten"))
    assert [(hit.field, hit.start, hit.end) for hit in hits] == [
        ("title", 0, 8),
        ("summary", 11, 19),
    ]


def test_a_term_from_a_set_is_named_set_and_term() -> None:
    term = Term.parse("Kazakh*", set_name="kazakhstan")
    (hit,) = all_hits(ItemText(item("Kazakhstani")), term)
    assert hit.term == "@kazakhstan:Kazakh*"


# -- groups ------------------------------------------------------------------------------


def t(written: str) -> Term:
    return Term.parse(written)


def labels(group: Group, title: str, summary: str = "") -> list[str] | None:
    hits = evaluate(group, ItemText(item(title, summary)))
    return None if hits is None else sorted({hit.term for hit in hits})


KZ_SET = SetRef(
    "kz", (Term.parse("Kazakh*", set_name="kz"), Term.parse("казахстан*", set_name="kz"))
)


@pytest.mark.parametrize(
    ("group", "title", "expected"),
    [
        (Group(all_of=(t("tungsten"), t("tender"))), "tungsten tender", ["tender", "tungsten"]),
        (Group(all_of=(t("tungsten"), t("tender"))), "tungsten prices", None),
        (Group(any_of=(t("tungsten"), t("wolfram"))), "wolfram price", ["wolfram"]),
        (Group(any_of=(t("tungsten"), t("wolfram"))), "tungsten, wolfram", ["tungsten", "wolfram"]),
        (Group(any_of=(t("tungsten"), t("wolfram"))), "copper", None),
        (Group(all_of=(t("tungsten"),), none_of=(t("bulb*"),)), "tungsten bulbs", None),
        (Group(all_of=(t("tungsten"),), none_of=(t("bulb*"),)), "tungsten mine", ["tungsten"]),
        (Group(all_of=(t("tungsten"),), any_of=(t("bid"), t("tender"))), "tungsten", None),
        (
            Group(all_of=(t("tungsten"),), any_of=(t("bid"), t("tender"))),
            "tungsten bid",
            ["bid", "tungsten"],
        ),
        (
            Group(all_of=(KZ_SET, t("tungsten"))),
            "Казахстана tungsten",
            ["@kz:казахстан*", "tungsten"],
        ),
        (Group(all_of=(KZ_SET,)), "Kazakh and Казахстан", ["@kz:Kazakh*", "@kz:казахстан*"]),
    ],
)
def test_group_semantics(group: Group, title: str, expected: list[str] | None) -> None:
    assert labels(group, title) == expected


NESTED = Group(
    any_of=(Group(all_of=(t("Kazakhstan"), t("tungsten"))), t("Kairakty")),
    none_of=(Group(all_of=(t("light"), t("bulb*"))),),
)


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Kazakhstan tungsten", ["Kazakhstan", "tungsten"]),
        ("Kazakhstan only", None),
        ("Kairakty tender", ["Kairakty"]),
        ("Kairakty and Kazakhstan", ["Kairakty"]),  # the half-matched group gives no hits
        ("Kairakty light", ["Kairakty"]),  # 'light' alone does not exclude; its hit is not kept
        ("Kairakty light bulbs", None),
    ],
)
def test_nested_groups_and_only_contributing_hits(title: str, expected: list[str] | None) -> None:
    assert labels(NESTED, title) == expected


def test_terms_may_be_split_between_title_and_summary() -> None:
    group = Group(all_of=(t("Kazakhstan"), t("tungsten")))
    hits = evaluate(group, ItemText(item("Kazakhstan tender", "for a tungsten deposit")))
    assert hits is not None
    assert {(hit.term, hit.field) for hit in hits} == {
        ("Kazakhstan", "title"),
        ("tungsten", "summary"),
    }


# -- rule sets -----------------------------------------------------------------------------


def rule(rule_id: str, **overrides: object) -> Rule:
    fields: dict[str, object] = {
        "id": rule_id,
        "title": f"Rule {rule_id}",
        "severity": Severity.HIGH,
        "match": Group(all_of=(t("tungsten"),)),
    }
    fields.update(overrides)
    return Rule(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sources", "source", "tags", "matches"),
    [
        ((), "anything", (), True),
        (("tengrinews", "kz"), "tengrinews", (), True),
        (("tengrinews", "kz"), "other", ("ru", "KZ"), True),  # feed tags count, ignoring case
        (("Tengrinews",), "tengrinews", (), True),
        (("tengrinews", "kz"), "other", ("cn",), False),
    ],
)
def test_sources_scope_a_rule_to_feeds_or_feed_tags(
    sources: tuple[str, ...], source: str, tags: tuple[str, ...], matches: bool
) -> None:
    ruleset = RuleSet((rule("w", sources=sources),), "v1")
    result = ruleset.match(item("tungsten", source=source, tags=tags))
    assert bool(result) is matches


def test_match_carries_rule_fields_and_version() -> None:
    ruleset = RuleSet(
        (rule("w", route=("slack",), tags=("kz", "w")), rule("off", enabled=False)), "abc123"
    )
    subject = item("Tungsten tender")
    (found_match,) = ruleset.match(subject)
    assert found_match.rule_id == "w"
    assert found_match.rule_title == "Rule w"
    assert found_match.severity is Severity.HIGH
    assert found_match.rule_version == "abc123"
    assert found_match.route == ("slack",)
    assert found_match.tags == ("kz", "w")
    assert found_match.item is subject
    assert found_match.terms == ("tungsten",)


def test_disabled_rules_never_match() -> None:
    ruleset = RuleSet((rule("off", enabled=False),), "v")
    assert ruleset.match(item("tungsten")) == []
    assert len(ruleset) == 1


def test_hits_are_distinct_and_in_reading_order() -> None:
    both = Group(all_of=(t("tungsten"), t("tungsten"), t("tender")))
    ruleset = RuleSet((rule("w", match=both),), "v")
    (found_match,) = ruleset.match(item("tender for tungsten", "tungsten"))
    assert [(h.field, h.start, h.term) for h in found_match.hits] == [
        ("title", 0, "tender"),
        ("title", 11, "tungsten"),
        ("summary", 0, "tungsten"),
    ]


def test_loaded_rules_match_with_the_files_version() -> None:
    ruleset = load_rules([REPO / "tests/data/rules/shared"])
    matches = ruleset.match(item("Kazakhstan tungsten tender", source="tengrinews"))
    assert [m.rule_id for m in matches] == ["kz-tungsten"]  # the other rule is disabled
    assert matches[0].rule_version == ruleset.version
    assert matches[0].route == ("slack",)


# -- properties ----------------------------------------------------------------------------

LETTERS = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "абвгдеёжзийклмнопрстуфхцчшщыэюяәғқңөұүһіÉéçş"
)
words = st.text(st.sampled_from(LETTERS), min_size=1, max_size=10)
cjk_words = st.text(st.sampled_from("稀土出口管制钨哈萨克斯坦关键矿产"), min_size=1, max_size=4)
written_terms = st.lists(words | cjk_words, min_size=1, max_size=3).map(" ".join)


@settings(max_examples=300)
@given(st.text(max_size=40), written_terms, st.text(max_size=40))
def test_a_term_between_spaces_is_found_where_it_was_put(
    before: str, written: str, after: str
) -> None:
    title = f"{before} {written} {after}"
    start = len(before) + 1
    hits = all_hits(ItemText(item(title)), Term.parse(written))
    assert any(hit.start < start + len(written) and start < hit.end for hit in hits)
    for hit in hits:
        assert title[hit.start : hit.end] == hit.text


@settings(max_examples=300)
@given(st.text(max_size=30), st.booleans())
def test_any_accepted_term_finds_itself_between_spaces(written: str, case: bool) -> None:
    try:
        term = Term.parse(written, case=case)
    except TermSyntaxError:
        reject()
    title = f" {written} "
    assert all_hits(ItemText(item(title)), term), term.words


@pytest.fixture(scope="module")
def shipped() -> RuleSet:
    return load_rules([REPO / "rules"])


VOCABULARY = [
    "Kazakhstan",
    "tungsten",
    "tender",
    "Верхнее Кайракты",
    "вольфрам",
    "Қазақстан",
    "钨",
    "稀土",
    "出口管制",
    "US",
    "DFC",
    "Uzbekistan",
    "critical minerals",
    "light bulb",
    " ",
    "-",
    "\u00ad",
    "\u0301",
    "ß",
    "ﬁ",
    "Ё",
]
newsy_text = st.lists(st.sampled_from(VOCABULARY) | st.text(max_size=4), max_size=12).map("".join)


@settings(max_examples=300)
@given(newsy_text | st.text(), newsy_text, st.lists(st.text(max_size=8), max_size=3))
def test_matching_never_raises_and_offsets_always_slice(
    shipped: RuleSet, title: str, summary: str, tags: list[str]
) -> None:
    subject = item(title, summary, tags=tuple(tags))
    for found_match in shipped.match(subject):
        for hit in found_match.hits:
            assert getattr(subject, hit.field)[hit.start : hit.end] == hit.text


# -- the building blocks' fast forms equal their plain definitions ----------------------------


def plain_word_numbers(folded: str, position: int) -> int:
    """Word numbers as the evaluator has always counted them: each run of letters and digits
    is a word, except that in Chinese, Japanese, Korean and Thai every character is one
    (a position just past such a run counts on from its last character)."""
    starts: list[int] = []
    numbers: list[int] = []
    unspaced: list[bool] = []
    count = 0
    for found in re.finditer(r"[^\W_]+", folded):
        starts.append(found.start())
        numbers.append(count)
        unspaced.append(is_unspaced(found.group()[0]))
        count += len(found.group()) if unspaced[-1] else 1
    index = max(i for i, start in enumerate([-1, *starts]) if start <= position) - 1
    if index < 0:
        return 0
    if unspaced[index]:
        return numbers[index] + position - starts[index]
    return numbers[index]


newsy = st.text(st.sampled_from(list("ab кз钨矿 2 ,.-_—«»\n年")), max_size=30)


@settings(max_examples=500)
@given(newsy, st.data())
def test_word_numbers_follow_their_definition(text: str, data: st.DataObject) -> None:
    folded = fold(text).text
    if not folded:
        return
    position = data.draw(st.integers(0, len(folded) - 1))
    assert _Words(folded).number(position) == plain_word_numbers(folded, position)


hits = st.builds(
    TermHit,
    st.sampled_from(["a", "b", "@s:a"]),
    st.sampled_from(["title", "summary", "tags"]),
    st.integers(0, 5),
    st.integers(0, 5),
    st.sampled_from(["x", "y"]),
)


@given(st.lists(hits, max_size=8))
def test_ordered_hits_are_the_distinct_hits_sorted(found: list[TermHit]) -> None:
    def order(hit: TermHit) -> tuple[int, int, int, str]:
        return (FIELDS.index(hit.field), hit.start, hit.end, hit.term)

    expected = sorted(set(found), key=order)
    assert [order(hit) for hit in ordered_hits(found)] == [order(hit) for hit in expected]
    assert set(ordered_hits(found)) == set(found)


@pytest.mark.parametrize(
    ("pattern", "text", "shown"),
    [
        (r"(^|[^\pL\pN])US([^\pL\pN$]|$)", "offers from a US-backed consortium", "US"),
        (r"(^|[^\pL\pN])US([^\pL\pN$]|$)", "US", "US"),
        (r"(^|[^\pL\pN])US([^\pL\pN$]|$)", "the US", "US"),
        (r"(Tau).?(Ken)", "Tau-Ken Samruk", "Tau-Ken"),  # word groups stay in
        (r"\$\d+", "a $110 million loan", "$110"),  # no groups: the whole match
        (r"( )", "a b", " "),  # nothing else to show: the match as it is
    ],
)
def test_a_regex_hit_leaves_out_its_boundary_groups(pattern: str, text: str, shown: str) -> None:
    """RE2 has no lookaround, so rules write word boundaries as groups; the quote marks the
    word, not the space and hyphen around it ("a* US-*backed" before)."""
    (hit,) = node_hits(Regex.parse(pattern, case=True), ItemText(item(text)), DEFAULT_FIELDS) or ()
    assert hit.text == shown
    assert text[hit.start : hit.end] == shown
