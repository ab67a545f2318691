"""Folding: the one form terms and item text are compared in, and its map back to the original."""

from __future__ import annotations

import itertools
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.rules.text import (
    _IDENTITY_BLOCKS,
    _SCAN_CHARACTERS,
    Folded,
    fold,
    fold_reference,
    is_unspaced,
    maybe_unspaced,
    scan_form,
    scan_form_of,
    scan_word,
    simplified_table,
)

# Characters that stress folding: decompositions, expansions, marks, invisibles, kana voicing.
TRICKY = list(
    "eEаеЕёЁиІіїйAaIiİıßſﬁǅﾞﾟｶカ각가\u1100\u1161\u11a8"
    "\u0301\u0300\u0308\u0306\u0307\u0327\u0345\u00ad\u200b\u200d\ufe0f\u034f"
    " ㈜㎏①ΐάᾳҚқӘәңҢөүұһ钨稀土鎢礦薩後乾著薴苧⾨衞"
)
tricky_text = st.text(st.sampled_from(TRICKY) | st.characters(), max_size=24)


@pytest.mark.parametrize(
    ("original", "folded"),
    [
        ("Kazakhstan", "kazakhstan"),
        ("ҚАЗАҚСТАН", "қазақстан"),
        ("ӘҒҚҢӨҰҮҺІ", "әғқңөұүһі"),  # Kazakh letters keep their identity
        ("Ёлка", "елка"),  # ё is read as е (documented)
        ("ЙОД", "йод"),  # й is a letter, not и with a breve
        ("Їжак", "їжак"),  # so is ї
        ("за́мок", "замок"),  # Russian stress accents are dropped
        ("café", "cafe"),
        ("cafe\u0301", "cafe"),  # decomposed accent
        ("Şymkent Öskemen", "symkent oskemen"),
        ("Łódź", "lodz"),
        ("Straße", "strasse"),
        ("İstanbul", "istanbul"),
        ("ＫＺ １２３", "kz 123"),  # full width
        ("ﬁnance", "finance"),  # ligature
        ("Kazakh\u00adstan", "kazakhstan"),  # soft hyphen
        ("zero\u200bwidth\u200djoin", "zerowidthjoin"),
        ("\ufeffBOM", "bom"),
        ("ｶﾞ", "ガ"),  # half-width kana with a voicing mark
        ("稀土出口管制", "稀土出口管制"),
        ("", ""),
    ],
)
def test_fold(original: str, folded: str) -> None:
    assert fold(original).text == folded


@pytest.mark.parametrize(
    ("original", "folded"),
    [("KZ and Kz", "KZ and Kz"), ("Ёж", "Еж"), ("ＵＳ", "US"), ("Café", "Cafe"), ("ß", "ß")],
)
def test_fold_keeping_case(original: str, folded: str) -> None:
    assert fold(original, case=True).text == folded


@pytest.mark.parametrize(
    ("original", "index", "span"),
    [
        ("Straße", 4, (4, 5)),  # both s of "ss" come from ß
        ("Straße", 5, (4, 5)),
        ("Kazakh\u00adstan", 5, (5, 7)),  # the soft hyphen travels with the h before it
        ("Kazakh\u00adstan", 6, (7, 8)),
        ("cafe\u0301!", 3, (3, 5)),  # the accent belongs to its letter
        ("cafe\u0301!", 4, (5, 6)),
        ("ﬁx", 0, (0, 1)),
        ("ﬁx", 1, (0, 1)),
    ],
)
def test_each_folded_character_knows_its_original_span(
    original: str, index: int, span: tuple[int, int]
) -> None:
    folded = fold(original)
    assert (folded.starts[index], folded.ends[index]) == span


@pytest.mark.parametrize(
    ("char", "unspaced"),
    [
        ("钨", True),
        ("カ", True),
        ("한", True),
        ("ก", True),
        ("W", False),
        ("Қ", False),
        ("1", False),
    ],
)
def test_unspaced_scripts(char: str, unspaced: bool) -> None:
    assert is_unspaced(char) is unspaced


@settings(max_examples=500)
@given(tricky_text, st.booleans())
def test_folding_is_idempotent(text: str, case: bool) -> None:
    once = fold(text, case=case).text
    assert fold(once, case=case).text == once


@settings(max_examples=500)
@given(tricky_text, st.booleans())
def test_folded_text_is_nfkc(text: str, case: bool) -> None:
    folded = fold(text, case=case).text
    assert unicodedata.normalize("NFKC", folded) == folded


def spans_of(folded: Folded) -> list[tuple[int, int]]:
    return list(zip(folded.starts, folded.ends, strict=True))


def solid(folded: Folded) -> str:
    """The folded text without the spaces folding inserted between scripts (empty spans)."""
    kept = zip(folded.text, folded.starts, folded.ends, strict=True)
    return "".join(char for char, start, end in kept if start < end)


@settings(max_examples=500)
@given(tricky_text, st.booleans())
def test_offset_map_tiles_the_original_in_order(text: str, case: bool) -> None:
    """Spans are ordered, inside the text, and folding each span alone rebuilds the folded
    text: that is what makes a hit's original span exact."""
    folded = fold(text, case=case)
    assert len(folded.starts) == len(folded.ends) == len(folded.text)
    spans = list(dict.fromkeys(zip(folded.starts, folded.ends, strict=True)))
    pieces = [(start, end) for start, end in spans if start < end]
    assert all(0 <= start <= end <= len(text) for start, end in spans)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(pieces))
    inserted = (i for i, (start, end) in enumerate(spans_of(folded)) if start == end)
    assert all(folded.text[i] == " " for i in inserted)
    rebuilt = "".join(solid(fold(text[start:end], case=case)) for start, end in pieces)
    assert rebuilt == solid(folded)


@pytest.mark.parametrize(
    ("original", "folded"),
    [
        ("美国DFC宣布", "美国 dfc 宣布"),
        ("2024年", "2024 年"),
        ("Kazakhstan哈国", "kazakhstan 哈国"),
        ("稀土出口", "稀土出口"),
        ("Қазақстан", "қазақстан"),
    ],
)
def test_a_space_separates_unspaced_scripts_from_others(original: str, folded: str) -> None:
    result = fold(original)
    assert result.text == folded
    for index, char in enumerate(result.text):
        if char == " ":
            assert result.starts[index] == result.ends[index]


# Text as feeds carry it: words of each script, digits, punctuation, ellipses, soft hyphens.
NEWSY = list(
    "Kazakhstan tungsten Қазақстан вольфрам Ёлка 钨矿稀土 2025年 DFC美国 … — «» “” ，。！"
    "Straße ﬁnance ＫＺ１２ café\u00ad\u200b 🚀\ufe0f\u00a0№"
    "ΟΔΟΣ Σ ς İı ǅ ﬀ Ⅻ"  # capital sigma lowers by context; dotted I, titlecase, ligature
)
newsy_text = st.text(
    st.sampled_from(NEWSY) | st.sampled_from(TRICKY) | st.characters(), max_size=60
)


@settings(max_examples=1000)
@given(newsy_text, st.booleans())
def test_fast_folding_equals_the_reference_folding(text: str, case: bool) -> None:
    """``fold`` takes shortcuts for speed; ``fold_reference`` is the definition.  Same text,
    same spans, for every text."""
    fast = fold(text, case=case)
    slow = fold_reference(text, case=case)
    assert fast.text == slow.text
    assert list(fast.starts) == list(slow.starts)
    assert list(fast.ends) == list(slow.ends)


@pytest.mark.parametrize(
    "text",
    [
        "Казахстан… ё Ё и Kazakh\u00adstan",  # replacements that change length, soft hyphen
        "美国DFC宣布2025年投资，１０万吨",  # script breaks and full-width forms
        "Tungsten 🚀\ufe0f news",  # a character outside the known blocks
        "cafe\u0301 и за\u0301мок",  # combining marks: the piece-by-piece road
        "Казахстан и Қазақстан: «вольфрам» — 2025",  # lower() alone
        "ΟΔΟΣ ΣΟΦΙΑΣ",  # but not with a capital sigma
    ],
)
@pytest.mark.parametrize("case", [False, True])
def test_each_road_of_fold_matches_the_reference(text: str, case: bool) -> None:
    fast, slow = fold(text, case=case), fold_reference(text, case=case)
    assert (fast.text, list(fast.starts), list(fast.ends)) == (
        slow.text,
        list(slow.starts),
        list(slow.ends),
    )


def test_identity_blocks_fold_to_themselves_but_traditional_characters() -> None:
    """The known-character road trusts Chinese ideographs and Hangul syllables to fold to
    themselves without looking, and Traditional characters to fold to their table entry;
    this looks, once, at every one of them."""
    table = simplified_table()
    for low, high in _IDENTITY_BLOCKS:
        for point in range(low, high + 1):
            char = chr(point)
            expected = table.get(point, char)
            assert fold_reference(char).text == expected, hex(point)
            assert fold_reference(char, case=True).text == expected, hex(point)


# -- the scan form the engine searches -------------------------------------------------------

_WORDS = re.compile(r"[^\W_]+")
SCANNABLE = set(map(chr, range(128))) | set(_SCAN_CHARACTERS)


@settings(max_examples=1000)
@given(newsy_text | st.text(st.sampled_from(sorted(SCANNABLE)), max_size=40))
def test_the_scan_form_keeps_each_word_and_marks_every_boundary(text: str) -> None:
    """One byte per folded character, a space at each end and for every character that is
    not a letter or digit, or is outside the table; so its words are the text's words, and
    the flag says when a character was outside."""
    folded = fold(text).text
    form, lossy = scan_form(folded)
    assert len(form) == len(folded) + 2
    assert form[:1] == form[-1:] == b" "
    outside = [char for char in folded if char not in SCANNABLE]
    assert lossy is bool(outside)
    for char, byte in zip(folded, form[1:-1], strict=True):
        assert (byte == 0x20) is (not char.isalnum() or char in outside) or char == " "
    if not lossy:
        assert form.split() == [scan_word(word) for word in _WORDS.findall(folded)]


# Mostly Chinese, as a Chinese feed's text is, with now and then a letter, a digit or a
# character of another script, so that both answers of ``spaced_words`` come up often.
chinese_text = st.text(
    st.sampled_from(list("钨矿稀土出口管制许可哈萨克斯坦，。、：；！？（）“”《》 \n"))
    | st.sampled_from(NEWSY)
    | st.sampled_from(TRICKY),
    max_size=40,
)


@settings(max_examples=1000)
@given(chinese_text | newsy_text)
def test_a_scan_form_is_skipped_only_when_it_would_hold_no_word(text: str) -> None:
    """``scan_form_of`` trusts folding's word that the text has no letter or digit of a
    script with spaces, and then makes no scan form; this checks the word against the form
    it skips.  The skipped form is reported lossy, so the engine looks in the text itself."""
    folded = fold(text)
    form, lossy = scan_form_of(folded)
    if folded.spaced_words:
        assert (form, lossy) == scan_form(folded.text)
    else:
        assert scan_form(folded.text)[0].split() == []
        assert (form, lossy) == (b" ", True)


def test_pure_chinese_text_needs_no_scan_form() -> None:
    assert not fold("美国与中国争夺哈萨克斯坦的钨矿，稀土出口许可。").spaced_words
    assert fold("美国DFC宣布2025年投资").spaced_words
    assert fold("钨矿 «вольфрам»").spaced_words


@pytest.mark.parametrize(
    ("word", "form"),
    [("kazakhstan", b"kazakhstan"), ("2025", b"2025"), ("钨", None), ("բառ", None)],
)
def test_scan_word_gives_the_byte_form_of_words_in_the_table(word: str, form: bytes | None) -> None:
    assert scan_word(word) == form


def test_scan_word_and_scan_form_agree_on_cyrillic_and_greek() -> None:
    for word in ["қазақстан", "вольфрам", "ўзбек", "αλφα"]:
        encoded = scan_word(word)
        assert encoded is not None
        assert scan_form(f"«{word}»—x") == (b"  " + encoded + b"  x ", False)


@settings(max_examples=500)
@given(newsy_text)
def test_maybe_unspaced_is_never_wrong_when_it_says_no(text: str) -> None:
    if not maybe_unspaced(text):
        assert not any(is_unspaced(char) for char in text)
