"""Text folding for rule matching: one canonical form for terms and item text, with an offset map.

Terms and item fields go through the same ``fold`` so that "Kazakhstan", "KAZAKHSTAN" and
"Kazakh\u00adstan" meet in the middle.  Folding changes lengths (NFKC turns "ﬁ" into "fi",
casefolding turns "ß" into "ss"), so ``Folded`` remembers, for every folded character, which
span of the original text it came from; that is what lets a hit point back into ``Item.title``.

The folding, in order, applied to small pieces of text that cannot interact with each other:

1. compatibility decomposition (NFKD): full-width Latin, ligatures and the like become plain;
2. casefolding, unless the term asked for ``case: true``;
3. invisible formatting characters are dropped: soft hyphen, zero-width space and joiners,
   bidi marks, BOM (Unicode category Cf), variation selectors and the combining grapheme joiner;
4. diacritics are dropped after Latin letters (é→e, ş→s, ü→u) and ł ø đ ħ ı become l o d h i;
   after Cyrillic letters only stress accents are dropped and ё becomes е.  Letters that are
   letters in their own right stay: й, ї, and the Kazakh ә ғ қ ң ө ұ ү һ і have no
   decomposition, so they are never folded into other letters;
5. canonical composition (NFC), so the result is NFKC text;
6. a space is inserted where a letter or digit of a script written without spaces (Chinese,
   Japanese, Korean, Thai) touches one of another script: "美国DFC宣布" reads "美国 dfc 宣布".
   So a Latin word next to Chinese is still a word of its own, and patterns can express word
   boundaries with plain "letter or digit" classes, which compile fast; class ranges covering
   the CJK blocks cost milliseconds per pattern, too slow for ten thousand rules.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

# Scripts written without spaces between words.  A term in them matches as a substring,
# and a Latin or Cyrillic word right next to them still counts as a separate word.
UNSPACED_RANGES: tuple[tuple[int, int], ...] = (
    (0x0E00, 0x0E7F),  # Thai
    (0x1100, 0x11FF),  # Hangul jamo
    (0x2E80, 0x2FDF),  # CJK and Kangxi radicals
    (0x3005, 0x3007),  # 々 〆 〇
    (0x3021, 0x3029),  # Hangzhou numerals
    (0x3038, 0x303C),  # more CJK ideographic signs
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3130, 0x318F),  # Hangul compatibility jamo
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xA960, 0xA97F),  # Hangul jamo extended A
    (0xAC00, 0xD7FF),  # Hangul syllables, jamo extended B
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x3FFFF),  # CJK extensions B and later
)

#: Regex class for one letter or digit (``str.isalnum``): in folded text, a character that
#: glues onto an adjacent word, since scripts without spaces are already split off (step 6).
JOINING = r"[^\W_]"

#: Regex class for one separator: anything that is not a letter or digit.
SEPARATOR = r"[\W_]"

_LATIN_RANGES = (
    (0x0041, 0x005A),
    (0x0061, 0x007A),
    (0x00C0, 0x024F),
    (0x1E00, 0x1EFF),
    (0x2C60, 0x2C7F),
    (0xA720, 0xA7FF),
    (0xAB30, 0xAB6F),
)
_CYRILLIC_RANGES = ((0x0400, 0x052F), (0x1C80, 0x1C8F), (0xA640, 0xA69F))
_CYRILLIC_STRESS = frozenset({"\u0300", "\u0301"})
_DIAERESIS = "\u0308"
_LATIN_LETTERS = str.maketrans(
    {"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D", "ħ": "h", "Ħ": "H", "ı": "i"}
)


def _in_ranges(char: str, ranges: tuple[tuple[int, int], ...]) -> bool:
    point = ord(char)
    return any(low <= point <= high for low, high in ranges)


def is_unspaced(char: str) -> bool:
    """True for characters of scripts written without spaces (Chinese, Japanese, Korean, Thai)."""
    return ord(char) >= UNSPACED_RANGES[0][0] and _in_ranges(char, UNSPACED_RANGES)


def is_ignorable(char: str) -> bool:
    """True for invisible characters that folding drops (soft hyphen, zero-width, bidi marks)."""
    point = ord(char)
    return (
        unicodedata.category(char) == "Cf"
        or point == 0x034F
        or 0xFE00 <= point <= 0xFE0F
        or 0xE0100 <= point <= 0xE01EF
    )


def _is_mark(char: str) -> bool:
    return unicodedata.category(char).startswith("M")


def _drops_mark(base: str, mark: str) -> bool:
    """Whether a combining mark after ``base`` is a harmless diacritic to fold away."""
    if not base:
        return False
    if _in_ranges(base, _LATIN_RANGES):
        return True
    if _in_ranges(base, _CYRILLIC_RANGES):
        return mark in _CYRILLIC_STRESS or (mark == _DIAERESIS and base in "еЕ")
    return False


def _strip_diacritics(decomposed: str) -> str:
    kept: list[str] = []
    base = ""
    for char in decomposed:
        if _is_mark(char):
            if not _drops_mark(base, char):
                kept.append(char)
        else:
            base = char
            kept.append(char)
    return "".join(kept)


@lru_cache(maxsize=65536)
def fold_piece(piece: str, case: bool = False) -> str:
    """Fold a short piece of text as a whole (see the module docstring for the steps)."""
    text = unicodedata.normalize("NFKD", piece)
    if not case:
        text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(char for char in text if not is_ignorable(char))
    text = _strip_diacritics(text).translate(_LATIN_LETTERS)
    return unicodedata.normalize("NFC", text)


@dataclass(frozen=True, slots=True)
class Folded:
    """Folded text plus, for each folded character, the span of original text it came from.

    ``starts[i]``/``ends[i]`` is the original span of folded character ``i``.  A piece of the
    original that folds to several characters (``ß`` → ``ss``) gives them all the same span, so
    a hit that starts or ends inside such a piece widens to the whole piece.  A space inserted
    between scripts (step 6) has an empty span; hits never start or end on one.
    """

    original: str
    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Map the folded span ``[start, end)`` (non-empty) back to the original text."""
        return self.starts[start], self.ends[end - 1]


def fold(text: str, *, case: bool = False) -> Folded:
    """Fold ``text`` for matching; ``case=True`` keeps letter case (for case-sensitive terms)."""
    if text.isascii():
        folded = text if case else text.lower()
        return Folded(text, folded, tuple(range(len(text))), tuple(range(1, len(text) + 1)))
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for start, end in _pieces(text, case):
        for char in fold_piece(text[start:end], case):
            if chars and _script_break(chars[-1], char):
                chars.append(" ")
                starts.append(start)
                ends.append(start)
            chars.append(char)
            starts.append(start)
            ends.append(end)
    return Folded(text, "".join(chars), tuple(starts), tuple(ends))


def _script_break(before: str, after: str) -> bool:
    """Whether two adjacent letters/digits belong to different kinds of script (step 6)."""
    return before.isalnum() and after.isalnum() and is_unspaced(before) != is_unspaced(after)


def _pieces(text: str, case: bool) -> Iterator[tuple[int, int]]:
    """Split ``text`` into pieces that fold independently: folding the whole equals joining the
    folded pieces.  Marks and invisible characters stay with the character before them."""
    start = 0
    for index in range(1, len(text)):
        if _independent(text[start:index], text[index], case):
            yield start, index
            start = index
    if text:
        yield start, len(text)


@lru_cache(maxsize=65536)
def _independent(piece: str, char: str, case: bool) -> bool:
    """Whether ``char`` starts a new piece after ``piece``; memoised, since natural text
    repeats the same few letter pairs and this is the costly part of folding."""
    if _is_mark(char) or is_ignorable(char):
        return False
    if piece.isascii() and char.isascii():
        return True
    return fold_piece(piece + char, case) == fold_piece(piece, case) + fold_piece(char, case)
