"""The English gloss of a foreign-language match: built offline from its hits and the entity
list, deduplicated, names first; nothing for an English item."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.model import Item, Match, Severity, TermHit
from monitor.rules import load_rules
from monitor.rules.entities import Entity, Lexicon
from monitor.rules.gloss import (
    GLOSS_NAMES,
    SEPARATOR,
    distinct,
    gloss,
    glossed,
    hit_category,
    hit_names,
    is_english,
    is_foreign,
    is_latin,
)

REPO = Path(__file__).resolve().parents[2]
WHEN = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)

LEXICON = Lexicon(
    (
        Entity("upper-kairakty", "deposit", ("Upper Kairakty", "Верхн* Кайракт*", "上凯拉克特"),
               "Upper Kairakty"),
        Entity("kazakhstan", "country", ("Kazakhstan", "Казахстан*", "哈萨克斯坦"), "Kazakhstan"),
        Entity("tungsten", "commodity", ("tungsten", "вольфрам*", "钨"), "tungsten"),
        Entity("us-commerce", "ministry", ("Министерств* торговли США", "美国商务部"),
               "US Commerce Department"),
    )
)  # fmt: skip


def item(title: str, summary: str = "", lang: str | None = "ru") -> Item:
    return Item("i1", "wire", title, summary, "https://wire.example/1", WHEN, lang=lang)


def hit(term: str, text: str, where: Item, field: str = "title") -> TermHit:
    start = getattr(where, field).index(text)
    return TermHit(term, field, start, start + len(text), text)


RU = item(
    "Казахстан объявил тендер на вольфрам Верхнего Кайракты",
    "Министерство торговли США приветствовало тендер.",
)


def test_a_russian_alert_names_its_hits_and_entities_in_english() -> None:
    hits = (
        hit("@kazakhstan:казахстан*", "Казахстан", RU),
        hit("@commitments:тендер*", "тендер", RU),
        hit("@tungsten:вольфрам*", "вольфрам", RU),
        hit("@deposits:Верхн* Кайракт*", "Верхнего Кайракты", RU),
    )
    assert gloss(hits, RU, LEXICON) == SEPARATOR.join(
        ["Kazakhstan", "tungsten", "Upper Kairakty", "US Commerce Department", "commitments"]
    )


def test_an_english_item_has_no_gloss() -> None:
    english = item("Kazakhstan tender for Upper Kairakty tungsten", lang="en-GB")
    hits = (hit("Kazakh*", "Kazakhstan", english),)
    assert gloss(hits, english, LEXICON) == ""


@pytest.mark.parametrize(
    ("lang", "title", "foreign"),
    [
        ("ru", "Kazakhstan", True),  # the feed's language decides
        ("en", "Казахстан", False),
        ("EN_us", "Казахстан", False),
        ("zh-CN", "", True),
        (None, "Казахстан объявил тендер", True),  # unknown: the title's letters decide
        (None, "哈萨克斯坦钨矿", True),
        (None, "Kazakhstan tender (Казахстан)", False),
        (None, "", False),
        ("", "2026 — 42", False),
    ],
)
def test_foreign_is_the_feed_language_or_else_the_script(
    lang: str | None, title: str, foreign: bool
) -> None:
    assert is_foreign(item(title, lang=lang)) is foreign


def test_a_latin_term_is_shown_as_written_without_set_and_wildcard() -> None:
    zh = item("哈萨克斯坦 KZ 钨矿", lang="zh")
    found = hit_names(hit("@kazakhstan:KZ", "KZ", zh), LEXICON)
    assert found == ("KZ",)
    assert hit_names(TermHit("@s:Tau-Ken*", "title", 0, 7, "Tau-Кen"), LEXICON) == ("Tau-Ken",)


def test_a_foreign_term_without_an_entity_is_named_by_its_set_or_left_out() -> None:
    zh = item("哈萨克斯坦招标钨矿", lang="zh")
    tender = hit("@deal-words:招标", "招标", zh)
    assert hit_names(tender, LEXICON) == ()
    assert hit_category(tender) == "deal words"
    own = hit("招标", "招标", zh)  # a rule's own term: no English a machine can vouch for
    assert hit_names(own, LEXICON) == ()
    assert hit_category(own) == ""
    assert gloss((tender, own), zh, LEXICON) == "Kazakhstan · tungsten · deal words"


def test_a_regex_is_never_shown_but_its_set_is() -> None:
    zh = item("美国宣布", lang="zh")
    regex = hit("@us-actors:/美国/", "美国", zh)
    assert hit_names(regex, LEXICON) == ()
    assert gloss((regex,), zh, LEXICON) == "us actors"
    assert gloss((hit("/美国/", "美国", zh),), zh, LEXICON) == ""


def test_names_are_listed_once_ignoring_case() -> None:
    ru = item("Вольфрам и tungsten: Казахстан, Kazakhstan", lang="ru")
    hits = (
        hit("@tungsten:вольфрам*", "Вольфрам", ru),
        hit("@tungsten:Tungsten", "tungsten", ru),
        hit("@kazakhstan:Kazakh*", "Kazakhstan", ru),
    )
    assert gloss(hits, ru, LEXICON) == "tungsten · Kazakhstan"


def test_glossed_sets_the_field_only_on_foreign_matches() -> None:
    english = item("Kazakhstan tungsten", lang="en")
    matches = [
        Match("r1", "R1", Severity.HIGH, "v", RU, (hit("@t:вольфрам*", "вольфрам", RU),)),
        Match("r2", "R2", Severity.LOW, "v", english, (hit("Kazakh*", "Kazakhstan", english),)),
    ]
    done = glossed(matches, LEXICON)
    # the hit's name first, then the item's other entities in the entity list's order
    assert done[0].gloss == "tungsten · Upper Kairakty · Kazakhstan · US Commerce Department"
    assert done[1] is matches[1]


def test_the_gloss_survives_the_queue_and_old_entries_still_read() -> None:
    match = Match("r", "R", Severity.HIGH, "v", RU, gloss="Kazakhstan · tungsten")
    again = Match.from_dict(json.loads(json.dumps(match.to_dict(), ensure_ascii=False)))
    assert again == match
    old = match.to_dict()
    del old["gloss"]
    assert Match.from_dict(old).gloss == ""
    assert "gloss" not in Match("r", "R", Severity.HIGH, "v", RU).to_dict()


def test_the_shipped_rules_gloss_a_chinese_alert() -> None:
    """The shipped entity list and rules: a Chinese tungsten tender alert reads in English,
    and the compiled engine and the reference evaluator give the same gloss."""
    rules = load_rules([REPO / "rules"])
    zh = item(
        "哈萨克斯坦上凯拉克特钨矿项目招标",
        "哈萨克斯坦将为上凯拉克特钨矿寻求投资。",
        lang="zh",
    )
    matches = rules.match(zh)
    assert matches, "the shipped rules should match a Kazakh tungsten tender"
    assert matches == rules.match_reference(zh)
    for match in matches:
        names = match.gloss.split(SEPARATOR)
        assert names[:2] == ["Kazakhstan", "tungsten"]
        assert "Upper Kairakty" in names


# -- properties ---------------------------------------------------------------------------------

_NAMES = st.text(alphabet=st.sampled_from("abcAB C·-é"), max_size=8)


@given(st.lists(_NAMES, max_size=30))
def test_distinct_keeps_first_spellings_once_each_in_order(names: list[str]) -> None:
    kept = distinct(names)
    folded = [name.casefold() for name in kept]
    assert len(folded) == len(set(folded)) <= GLOSS_NAMES
    assert all(name and name == " ".join(name.split()) for name in kept)
    assert distinct(kept) == kept
    cleaned = [" ".join(name.split()) for name in names]
    assert [cleaned.index(name) for name in kept] == sorted(cleaned.index(name) for name in kept)


_WORDS = ["Казахстан", "вольфрам", "тендер", "KZ", "Kazakhstan", "钨", "招标", "美国商务部", "и"]
_TERMS = [
    "@kazakhstan:казахстан*",
    "@tungsten:вольфрам*",
    "@deal-words:тендер*",
    "@kazakhstan:KZ",
    "Kazakh*",
    "@tungsten:钨",
    "招标",
    "/美国/",
]


@given(
    st.lists(st.sampled_from(_WORDS), min_size=1, max_size=12),
    st.lists(st.tuples(st.sampled_from(_TERMS), st.integers(0, 11)), max_size=12),
    st.sampled_from(["ru", "zh", "kk", None, "en"]),
)
def test_a_gloss_lists_only_english_it_can_vouch_for(
    words: list[str], picks: list[tuple[str, int]], lang: str | None
) -> None:
    """Every name in a gloss is an entity's English name, a Latin term or a set's label;
    none repeats; an English item never has one."""
    title = " ".join(words)
    where = item(title, lang=lang)
    hits = tuple(hit(term, words[index % len(words)], where) for term, index in picks)
    line = gloss(hits, where, LEXICON)
    if not is_foreign(where):
        assert line == ""
        return
    names = line.split(SEPARATOR) if line else []
    allowed = {entity.english for entity in LEXICON.entities.values()}
    allowed |= {"KZ", "Kazakh", "kazakhstan", "tungsten", "deal words"}
    assert set(names) <= allowed
    assert len({name.casefold() for name in names}) == len(names) <= GLOSS_NAMES
    assert all(is_latin(name) or name == "US Commerce Department" for name in names)


@pytest.mark.parametrize(
    ("lang", "english"),
    [("en", True), ("en-US", True), ("eng", False), ("ru", False), (None, False)],
)
def test_english_language_tags(lang: str | None, english: bool) -> None:
    assert is_english(lang) is english
