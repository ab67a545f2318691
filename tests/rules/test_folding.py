"""Every spelling finds the term: Traditional Chinese folds to Simplified, and Kazakh terms
written in Cyrillic find their Latin spellings, with hits quoting the original text."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.model import Item
from monitor.rules import RuleSet, Term, load_rules
from monitor.rules.match import ItemText, match_rule
from monitor.rules.terms import KAZAKH_LETTERS, Word, latin_spellings, parse_term
from monitor.rules.text import fold, fold_reference, opencc_simplified_table, simplified_table

WHEN = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
TABLE = simplified_table()
TRADITIONAL = sorted(map(chr, TABLE))


def item(title: str, summary: str = "") -> Item:
    return Item(
        id="i",
        source="feed",
        title=title,
        summary=summary,
        link="https://news.example/a",
        published=WHEN,
    )


def hits(term: str, text: str) -> list[str]:
    """The original text of each hit of one term in a title, by the reference evaluator."""
    parsed = Term.parse(term)
    return [hit.text for hit in ItemText(item(text)).hits(parsed, "title")]


# -- Traditional to Simplified ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("original", "folded"),
    [
        ("鎢", "钨"),
        ("哈薩克斯坦", "哈萨克斯坦"),
        ("鎢礦出口許可證", "钨矿出口许可证"),
        ("稀土", "稀土"),  # the same in both scripts
        ("頭髮 發展", "头发 发展"),  # two Traditional characters, one Simplified one
        ("衞生", "卫生"),  # a Hong Kong variant the standard table leaves alone
        ("什麼", "什么"),  # 么 stays: Taiwan's table would make it 幺
        ("薴", "苎"),  # a chain (薴 → 苧 → 苎) is followed to its end
        ("⾨", "门"),  # a Kangxi radical: NFKC gives 門, the table 门
        ("美國DFC宣佈", "美国 dfc 宣布"),  # scripts still split, case still folded
    ],
)
def test_traditional_chinese_folds_to_simplified(original: str, folded: str) -> None:
    assert fold(original).text == folded
    assert fold_reference(original).text == folded


def test_folding_traditional_chinese_keeps_each_character_at_its_offset() -> None:
    """Character for character: each folded character comes from the one at its index."""
    original = "據報道，哈薩克斯坦鎢礦"
    folded = fold(original)
    assert len(folded.text) == len(original)
    start = folded.text.index("钨矿")
    assert folded.original_span(start, start + 2) == (9, 11)
    assert original[9:11] == "鎢礦"


def test_the_simplified_table_is_settled_and_one_character_each() -> None:
    """No entry leads to another entry (else folding folded text would change it again),
    and every entry is one ideograph to another, so offsets never move."""
    assert len(TABLE) > 4000
    assert not set(map(ord, TABLE.values())) & set(TABLE)
    assert all(len(simple) == 1 and simple != chr(point) for point, simple in TABLE.items())


@pytest.mark.parametrize(
    ("term", "text", "found"),
    [
        ("钨", "哈薩克斯坦鎢礦", ["鎢"]),
        ("哈萨克斯坦", "哈薩克斯坦擴大鎢出口", ["哈薩克斯坦"]),
        ("鎢礦", "哈萨克斯坦钨矿", ["钨矿"]),  # a Traditional term finds Simplified text
        ("出口许可", "稀土出口許可證", ["出口許可"]),
        ("钨", "稀土", []),
    ],
)
def test_a_term_finds_either_script_and_quotes_the_original(
    term: str, text: str, found: list[str]
) -> None:
    assert hits(term, text) == found


# Characters for generated text: Traditional ones (some of the table's), their Simplified
# forms, others, Latin, Cyrillic, punctuation and marks, so every road of ``fold`` is taken.
_SOME_TRADITIONAL = TRADITIONAL[::40]
#: Those in the main ideograph block: text of them alone takes the known-character road.
_COMMON_TRADITIONAL = [char for char in TRADITIONAL if "\u4e00" <= char <= "\u9fff"][::30]
_MIXED = [
    *_SOME_TRADITIONAL,
    *(TABLE[ord(char)] for char in _SOME_TRADITIONAL),
    *"稀土哈国年美",
    *"Qazaqstan QAZAQ Қазақстан ı İ ß ﬁ ，。「」 !\n\u00ad\u0301",
]
mixed_text = st.text(st.sampled_from(_MIXED) | st.characters(), max_size=300)
#: Text that surely takes the translate road: more distinct Traditional characters than
#: ``_fold_known`` replaces one by one, with capitals for the case-keeping table.
traditional_text = st.tuples(
    st.lists(st.sampled_from(_COMMON_TRADITIONAL), min_size=30, max_size=60, unique=True),
    st.text(st.sampled_from("QAZAQ qazaq ҚАЗАҚ Қазақстан，。「」!\n稀土"), max_size=100),
).map(lambda parts: "".join(parts[0]) + parts[1])
#: No combining marks or invisible characters, which join the hit before them.
plain_text = st.text(
    st.sampled_from(_MIXED[:-2]) | st.characters(exclude_categories=("Mn", "Mc", "Me", "Cf")),
    max_size=100,
)


@settings(max_examples=300, deadline=None)
@given(mixed_text | traditional_text, st.booleans())
def test_fold_equals_the_reference_on_traditional_chinese(text: str, case: bool) -> None:
    """Long Traditional text takes the translate road (many distinct characters to replace);
    it must give what the reference gives, spans included."""
    fast, slow = fold(text, case=case), fold_reference(text, case=case)
    assert fast.text == slow.text
    assert (list(fast.starts), list(fast.ends)) == (list(slow.starts), list(slow.ends))


@settings(max_examples=300, deadline=None)
@given(mixed_text | traditional_text, st.booleans())
def test_folding_is_idempotent_and_offsets_fall_in_the_original(text: str, case: bool) -> None:
    folded = fold(text, case=case)
    assert fold(folded.text, case=case).text == folded.text
    assert len(folded.starts) == len(folded.ends) == len(folded.text)
    for start, end in zip(folded.starts, folded.ends, strict=True):
        assert 0 <= start <= end <= len(text)
    assert list(folded.starts) == sorted(folded.starts)


@settings(max_examples=200, deadline=None)
@given(st.text(st.sampled_from(_SOME_TRADITIONAL), min_size=1, max_size=8), plain_text)
def test_a_traditional_term_hit_quotes_text_that_folds_to_it(term: str, text: str) -> None:
    """Whatever a term finds, the quoted original folds back to the term's own folding
    (text without combining marks, which widen a hit over themselves, as documented)."""
    placed = f"{text}{term}{text}"
    for found in hits(term, placed):
        assert fold(found).text == fold(term).text


# -- Kazakh in Latin letters ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "spellings"),
    [
        ("қазақстан", ("qazaqstan", "kazakstan")),
        ("жезқазған", ("jezqazgan", "zhezkazgan")),
        ("мұнай", ("munai", "munay")),
        ("өскемен", ("oskemen",)),
        ("республикасы", ("respublikasy", "respyblikasy")),  # у is ý in 2018
        ("қатпар2", ()),  # not all Cyrillic letters: left alone
    ],
)
def test_latin_spellings_of_kazakh_words(word: str, spellings: tuple[str, ...]) -> None:
    assert latin_spellings(word) == spellings


@pytest.mark.parametrize(
    ("term", "alternatives"),
    [
        ("қазақстан*", [("qazaqstan", "kazakstan")]),
        ("Қазақстан кен орны", [("qazaqstan", "kazakstan"), ("ken",), ("orny",)]),
        ("вольфрам", [()]),  # Russian: no Kazakh letter, no Latin spellings
        ("Казахстан", [()]),
        ("Qazaqstan", [()]),  # Latin terms are left as written
        ("Iraq quota", [(), ()]),
    ],
)
def test_only_kazakh_terms_get_latin_spellings(
    term: str, alternatives: list[tuple[str, ...]]
) -> None:
    assert [word.alternatives for word in parse_term(term)] == alternatives


def test_a_case_sensitive_kazakh_term_gets_no_latin_spellings() -> None:
    """Latin spellings are folded (lower case); a term that keeps case could not use them."""
    assert parse_term("Қазақстан", case=True) == (Word("Қазақстан"),)


def test_the_kazakh_letters_are_cyrillic_letters_russian_lacks() -> None:
    assert all("\u0400" <= letter <= "\u04ff" for letter in KAZAKH_LETTERS)
    assert not KAZAKH_LETTERS & set("абвгдеёжзийклмнопрстуфхцчшщъыьэюя")


@pytest.mark.parametrize(
    ("term", "text", "found"),
    [
        ("қазақстан*", "Qazaqstan wolfram exports", ["Qazaqstan"]),
        ("қазақстан*", "QAZAQSTANNYÑ volfram eksporty", ["QAZAQSTANNYÑ"]),
        ("қазақстан*", "Kazakstan tungsten", ["Kazakstan"]),
        ("қазақстан*", "Қазақстанда вольфрам", ["Қазақстанда"]),
        ("Қазақстан Республикасы", "Qazaqstan Respublikasy Ükimeti", ["Qazaqstan Respublikasy"]),
        ("Жезқазған", "Jezqazğan and Zhezkazgan", ["Jezqazğan", "Zhezkazgan"]),
        ("мұнай", "Mūnai öndıru", ["Mūnai"]),
        ("Өскемен", "Óskemen qalasy", ["Óskemen"]),
        # Mixed alphabets within a word are not spellings the term knows.
        ("қазақстан", "Qazakstan", []),
        # A Kazakh term does not make English words Cyrillic, nor the other way round.
        ("қазақстан", "Kazakhstan", []),
    ],
)
def test_a_kazakh_term_finds_latin_spellings_and_quotes_them(
    term: str, text: str, found: list[str]
) -> None:
    assert hits(term, text) == found


@pytest.mark.parametrize(
    ("term", "text"),
    [
        ("Iraq", "Iraq and Qatar"),
        ("quota", "a tungsten quota"),
        ("Qazaq*", "Qazaqstan"),
    ],
)
def test_latin_terms_still_find_latin_text(term: str, text: str) -> None:
    """The text is never transliterated: English words with q stay English words."""
    assert hits(term, text)


# -- rules over items, engine and reference ---------------------------------------------------

RULES = """\
rules:
  - id: kz-tungsten
    title: Kazakhstan tungsten
    severity: high
    match:
      all:
        - any: [қазақстан*, Жезқазған, 哈萨克斯坦]
        - any: [вольфрам*, volfram, 钨]
  - id: zh-permits
    title: Rare earth export permits
    severity: medium
    match:
      all: [稀土, 出口许可]
"""


@pytest.fixture(name="rules", scope="module")
def rules_fixture(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(textwrap.dedent(RULES), encoding="utf-8")
    return load_rules([path])


@pytest.mark.parametrize(
    ("title", "summary", "expected"),
    [
        ("Qazaqstan volfram eksportyn arttyrady", "", {"kz-tungsten": ["Qazaqstan", "volfram"]}),
        ("Jezqazğan: volfram", "", {"kz-tungsten": ["Jezqazğan", "volfram"]}),
        ("哈薩克斯坦擴大鎢出口", "", {"kz-tungsten": ["哈薩克斯坦", "鎢"]}),
        ("中國收緊稀土出口許可證", "", {"zh-permits": ["稀土", "出口許可"]}),
        ("Qatar quota for tungsten", "Iraq", {}),
    ],
)
def test_rules_match_traditional_chinese_and_kazakh_latin_items(
    rules: RuleSet, title: str, summary: str, expected: dict[str, list[str]]
) -> None:
    """Through ``RuleSet.match`` (the engine) and ``match_rule`` (the reference), with the
    hits quoting the item's own spelling."""
    subject = item(title, summary)
    found = rules.match(subject)
    assert found == rules.match_reference(subject)
    assert {match.rule_id: [hit.text for hit in match.hits] for match in found} == expected
    text = ItemText(subject)
    for rule in rules:
        reference = match_rule(rule, text, rules.version)
        assert (reference is not None) == (rule.id in expected)


_KAZAKH_WORDS = [
    "Qazaqstan",
    "Qazaqstannyñ",
    "Kazakstan",
    "Kazakhstan",
    "Қазақстан",
    "Қазақстанда",
    "Jezqazğan",
    "Zhezkazgan",
    "volfram",
    "вольфрам",
    "Iraq",
    "quota",
    "鎢",
    "钨",
    "哈薩克斯坦",
]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(_KAZAKH_WORDS), max_size=8).map(" ".join),
    st.lists(st.sampled_from(_KAZAKH_WORDS), max_size=8).map("、".join),
)
def test_the_engine_equals_the_reference_on_kazakh_and_chinese_spellings(
    rules: RuleSet, title: str, summary: str
) -> None:
    subject = item(title, summary)
    assert rules.match(subject) == rules.match_reference(subject)


def test_the_shipped_table_is_what_opencc_gives() -> None:
    """monitor/rules/simplified.tsv is generated from OpenCC (``make simplified``), so parser
    processes need not load OpenCC's dictionaries; this holds the file to OpenCC."""
    assert simplified_table() == opencc_simplified_table()
