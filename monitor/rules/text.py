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
5b. Traditional Chinese characters become Simplified ones, character for character
   (``simplified_table``): "鎢" reads "钨", "哈薩克斯坦" reads "哈萨克斯坦".  One character
   always becomes one, so offsets stay exact and a Traditional term finds Simplified text
   as well as the other way round (both sides are folded);
6. a space is inserted where a letter or digit of a script written without spaces (Chinese,
   Japanese, Korean, Thai) touches one of another script: "美国DFC宣布" reads "美国 dfc 宣布".
   So a Latin word next to Chinese is still a word of its own, and patterns can express word
   boundaries with plain "letter or digit" classes, which compile fast; class ranges covering
   the CJK blocks cost milliseconds per pattern, too slow for ten thousand rules.

Why Traditional to Simplified character by character, not OpenCC's phrase conversion: phrase
conversion picks the right character for words like 乾隆 (kept) or 頭髮 (头发), but it can
change the length of the text, and hits must point into the original.  For matching, the
character table is enough: a term and the text go through the same table, so whatever
character it picks, both sides pick the same.  The price is a few merges a reader would not
make (後 "after" and 后 "queen" both read 后), which can only add matches, never lose one.

Kazakh written in Latin letters is not folded here: turning Latin words into Cyrillic would
make English words stop matching English terms ("Iraq", "quota").  Terms handle it instead:
a Kazakh term written in Cyrillic also looks for its Latin spellings (``terms``).
"""

from __future__ import annotations

import codecs
import itertools
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

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


@lru_cache(maxsize=8192)
def is_unspaced(char: str) -> bool:
    """True for characters of scripts written without spaces (Chinese, Japanese, Korean, Thai).
    Memoised: matching asks about the same few thousand characters over and over."""
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
    text = unicodedata.normalize("NFC", text)
    if _MAYBE_UNSPACED.search(text) is not None:
        text = text.translate(simplified_table())
    return text


# -- Traditional Chinese to Simplified (step 5b) ---------------------------------------------

#: OpenCC configurations whose character tables fold Traditional to Simplified: the standard
#: table first; then the Hong Kong and Taiwan tables, for variant glyphs those outlets print
#: (衞, 粧, 枱) that the standard one leaves alone.
SIMPLIFY_CONFIGS = ("t2s.json", "hk2s.json", "tw2s.json")
#: Where Traditional characters are: CJK unified ideographs, extension A and the supplementary
#: extensions.  Compatibility ideographs and radicals need no entry: NFKC turns them into
#: unified ideographs before the table is applied.
_IDEOGRAPHS = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0x20000, 0x323AF))


SIMPLIFIED_FILE = Path(__file__).with_name("simplified.tsv")
"""The Traditional -> Simplified character table, one ``traditional<TAB>simplified`` pair a
line, generated from OpenCC by ``opencc_simplified_table`` (``make simplified``) and shipped
with the package: building it at run time loaded OpenCC's dictionaries into every parser
process, some 30 MB each, for a table of 30 KB.  A test holds the file to OpenCC."""


@lru_cache(maxsize=1)
def simplified_table() -> dict[int, str]:
    """Each Traditional character and the one Simplified character it folds to, as a
    ``str.translate`` table, read from the shipped file on first use."""
    table: dict[int, str] = {}
    for line in SIMPLIFIED_FILE.read_text(encoding="utf-8").splitlines():
        traditional, simple = line.split("\t")
        table[ord(traditional)] = simple
    return table


def opencc_simplified_table() -> dict[int, str]:
    """The table as OpenCC's own converter gives it (OpenCC is a development dependency).

    Every ideograph goes through the converter on a line of its own, so no phrase can apply
    and each line shows what the character table gives.  Kept are the entries where one
    character becomes another single ideograph (all of them, in OpenCC 1.4).  A later
    configuration only adds characters the earlier ones leave alone and that are not
    themselves Simplified results (Taiwan's table turns 么, the Simplified form of 麼, into 幺,
    which would turn 什么 into 什幺).  Chains are followed to their end (薴 → 苧 → 苎), so that
    folding folded text changes nothing.
    """
    import opencc  # only here: to regenerate or check the shipped table

    chars = [chr(point) for low, high in _IDEOGRAPHS for point in range(low, high + 1)]
    joined = "\n".join(chars)
    table: dict[str, str] = {}
    for number, config in enumerate(SIMPLIFY_CONFIGS):
        results = set(table.values())
        converted = opencc.OpenCC(config).convert(joined).split("\n")
        for char, simple in zip(chars, converted, strict=True):
            if simple == char or char in table or not _simplifies(char, simple):
                continue
            if number == 0 or char not in results:
                table[char] = simple
    return {ord(char): _settled(char, table) for char in table}


def write_simplified_table(path: Path = SIMPLIFIED_FILE) -> int:
    """Regenerate the shipped table from OpenCC; returns its number of entries."""
    table = opencc_simplified_table()
    lines = [f"{chr(point)}\t{simple}\n" for point, simple in sorted(table.items())]
    path.write_text("".join(lines), encoding="utf-8")
    return len(table)


def _simplifies(char: str, simple: str) -> bool:
    """Whether a conversion is one ideograph to another, already in NFKC form: the only kind
    folding can apply without moving offsets or undoing an earlier step."""
    return (
        len(simple) == 1
        and _in_ranges(simple, _IDEOGRAPHS)
        and unicodedata.is_normalized("NFKC", char)
        and unicodedata.is_normalized("NFKC", simple)
    )


def _settled(char: str, table: dict[str, str]) -> str:
    """Where a chain of conversions ends (a cycle, never seen, ends where it closes)."""
    seen = {char}
    simple = table[char]
    while simple in table and simple not in seen:
        seen.add(simple)
        simple = table[simple]
    return simple


class Folded:
    """Folded text plus, for each folded character, the span of original text it came from.

    ``starts[i]``/``ends[i]`` is the original span of folded character ``i``.  A piece of the
    original that folds to several characters (``ß`` → ``ss``) gives them all the same span, so
    a hit that starts or ends inside such a piece widens to the whole piece.  A space inserted
    between scripts (step 6) has an empty span; hits never start or end on one.

    The spans are worked out on first use from what folding changed (``changed``: original
    index and folded length of each character that did not fold to exactly one; ``breaks``:
    where spaces went in), since most folded texts are matched and never asked for a span.

    ``spaced_words`` is False when folding saw that the text holds no letter or digit of a
    script written with spaces (Chinese with no Latin, Cyrillic or digits): its scan form
    would hold no word, so the engine need not make one (``scan_form_of``).
    """

    __slots__ = ("_breaks", "_changed", "_ends", "_starts", "original", "spaced_words", "text")

    def __init__(
        self,
        original: str,
        text: str,
        *,
        changed: Sequence[tuple[int, int]] = (),
        breaks: Sequence[int] = (),
        spans: tuple[Sequence[int], Sequence[int]] | None = None,
        spaced_words: bool = True,
    ) -> None:
        self.original = original
        self.text = text
        self.spaced_words = spaced_words
        self._changed = changed
        self._breaks = breaks
        self._starts: Sequence[int] | None = None
        self._ends: Sequence[int] = ()
        if spans is not None:
            self._starts, self._ends = spans

    @property
    def starts(self) -> Sequence[int]:
        if self._starts is None:
            self._spans()
        assert self._starts is not None
        return self._starts

    @property
    def ends(self) -> Sequence[int]:
        if self._starts is None:
            self._spans()
        return self._ends

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Map the folded span ``[start, end)`` (non-empty) back to the original text."""
        return self.starts[start], self.ends[end - 1]

    def __repr__(self) -> str:
        return f"Folded({self.original!r} -> {self.text!r})"

    def _spans(self) -> None:
        size = len(self.original)
        starts: Sequence[int] = range(size)
        ends: Sequence[int] = range(1, size + 1)
        if self._changed:
            starts, ends = _changed_offsets(size, self._changed)
        if self._breaks:
            starts, ends = _with_breaks(starts, ends, self._breaks)
        self._starts, self._ends = starts, ends


# -- the byte form that the engine scans --------------------------------------------------

#: The characters of the scan form besides ASCII: lowercase Cyrillic (Russian, Kazakh and
#: neighbours), lowercase Greek and the punctuation of news text.  Folded text is lowercase,
#: so these cover nearly every Latin- or Cyrillic-script item in one byte per character.
_SCAN_CHARACTERS = (
    "".join(map(chr, range(0x0430, 0x0460)))  # а-я, ѐ-џ
    + "әғқңөұүһґҗҳ"
    + "".join(map(chr, range(0x03B1, 0x03CA)))  # α-ω
    + "«»—–―“”„‘’•·°€£¥§¶©®±×÷′″←→↑↓■●○★☆✓✔✗✘、。"
)
assert len(set(_SCAN_CHARACTERS)) == len(_SCAN_CHARACTERS) <= 128
_SCAN_TABLE = "".join(map(chr, range(128))) + _SCAN_CHARACTERS
_SCAN_MAP = codecs.charmap_build(_SCAN_TABLE.ljust(256, "\ufffe"))
#: Every byte of the scan form that stands for a letter or digit stays; others become spaces.
_SCAN_SEPARATORS = bytes(
    byte if char.isalnum() else 0x20 for byte, char in enumerate(_SCAN_TABLE.ljust(256, " "))
)


def scan_form(folded: str) -> tuple[bytes, bool]:
    """Folded text as the engine scans it for words: one byte per character, a space for
    every character that is not a letter or digit, and a space at each end.  So a word in it
    is exactly a word of the text, its edges marked by spaces, and whole words and prefixes
    are found by a byte automaton with no check in Python (``scan_word`` gives the keys).

    Characters outside the table (Chinese, rarer scripts and symbols) become separators too,
    and the flag says some were there: words containing them must then be looked for in the
    text itself.  The mapping runs in C (``codecs.charmap_encode``).
    """
    if folded.isascii():
        return b" " + folded.encode().translate(_SCAN_SEPARATORS) + b" ", False
    encoded = codecs.charmap_encode(folded, "replace", _SCAN_MAP)[0]
    lossy = encoded.count(b"?") != folded.count("?")
    return b" " + encoded.translate(_SCAN_SEPARATORS) + b" ", lossy


def scan_form_of(folded: Folded) -> tuple[bytes, bool]:
    """``scan_form`` of a folded text, not made when folding found that it would hold no word
    (``Folded.spaced_words``): some 15 of the 100 µs a Chinese item's text stage took at
    10,000 rules.  Then the form is empty and flagged lossy, which sends the engine to the
    text itself, as for any text with characters outside the table."""
    if not folded.spaced_words:
        return b" ", True
    return scan_form(folded.text)


def scan_word(word: str) -> bytes | None:
    """A word of letters and digits in the scan form, or None if it has a character outside
    the table (it can then only occur in text ``scan_form`` flags)."""
    try:
        return codecs.charmap_encode(word, "strict", _SCAN_MAP)[0]
    except UnicodeEncodeError:
        return None


def fold(text: str, *, case: bool = False) -> Folded:
    """Fold ``text`` for matching; ``case=True`` keeps letter case (for case-sensitive terms).

    ``fold_reference`` defines the result; this takes a faster road to it when it can, since
    folding is most of the cost of matching an item.  Four roads: ASCII text and text whose
    characters all fold to ``str.lower`` alone (most Latin and Cyrillic news: one regex
    scan); text whose characters all fold on their own and are known in advance (nearly all
    other news: a few regex scans in C); other text whose characters fold on their own (a
    translation table);
    anything else, such as combining marks, goes piece by piece.  A property test holds every
    road to ``fold_reference``.
    """
    if text.isascii():
        return Folded(text, text if case else text.lower())
    known = _known_characters(case)
    if known.unlowered.search(text) is None:
        return Folded(text, text if case else text.lower())
    unplain = set(known.unplain.findall(text))
    if unplain.issubset(known.replaced):
        return _fold_known(text, known, case, unplain)
    chars = text.translate(_TABLES[case])
    if _UNSAFE in chars:
        return fold_reference(text, case=case)
    lengths = text.translate(_LENGTHS[case])
    changed = [(found.start(), ord(found.group()) - 48) for found in _CHANGED.finditer(lengths)]
    return _finish(text, chars, changed)


def fold_reference(text: str, *, case: bool = False) -> Folded:
    """Fold ``text`` piece by piece, exactly as the module docstring describes.

    The definition of folding; ``fold`` takes a faster road to the same result when it can.
    """
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
    return Folded(text, "".join(chars), spans=(tuple(starts), tuple(ends)))


# -- the fast roads --------------------------------------------------------------------------

#: What the translation tables give for a character that cannot be folded on its own.
_UNSAFE = "\x00"
#: Hangul vowel and final jamo: the only characters that are not combining marks and yet
#: compose with the character before them under NFC.
_COMPOSING_JAMO = ((0x1161, 0x1175), (0x11A8, 0x11C2))
#: Blocks checked character by character for the known-character road: Latin, Greek,
#: Cyrillic, punctuation, symbols, kana, CJK punctuation, full- and half-width forms.
_CHECKED_BLOCKS = (
    (0x0080, 0x052F),
    (0x1E00, 0x1FFF),
    (0x2000, 0x2BFF),
    (0x3000, 0x30FF),
    (0xFE30, 0xFE4F),
    (0xFF00, 0xFFEF),
)
#: Blocks whose every character folds to itself but the Traditional Chinese characters of
#: ``simplified_table`` (a test checks each one): Chinese ideographs and Hangul syllables,
#: too large to check at start-up.
_IDENTITY_BLOCKS = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3))


def _folds_alone(char: str, case: bool) -> str:
    """How ``char`` folds on its own, or ``_UNSAFE`` when its neighbours could change that:
    combining marks, composing jamo, and characters whose folding starts with either."""
    if char == _UNSAFE:
        return _UNSAFE
    if is_ignorable(char):
        return ""
    folded = fold_piece(char, case)
    risky = (char, folded[:1], unicodedata.normalize("NFKD", char)[:1])
    if not folded or any(_composes_backwards(first) for first in risky if first):
        return _UNSAFE
    return folded


def _composes_backwards(char: str) -> bool:
    return _is_mark(char) or unicodedata.combining(char) != 0 or _in_ranges(char, _COMPOSING_JAMO)


@dataclass(frozen=True, slots=True)
class _Known:
    """The characters the known-character road handles: ``unplain`` finds every character
    that does not fold like ``str.casefold`` (or, keeping case, to itself), those the road
    replaces and any it does not know; ``replace`` splits text around the replaced ones,
    ``replacements`` says what they become and ``resize`` finds those among them that fold
    to more or fewer than one character."""

    unplain: re.Pattern[str]
    replace: re.Pattern[str]
    replacements: dict[str, str]
    #: The keys of ``replacements``, as a set: ``issubset`` would copy a dict into one.
    replaced: frozenset[str]
    resized: frozenset[str]
    #: Finds a letter or digit of a script with spaces, in text folded on this road: where
    #: there is none (Chinese without Latin or digits), no space goes in between scripts.
    spaced_alnum: re.Pattern[str]
    #: Finds any character other than those that fold to ``str.lower()`` (keeping case: to
    #: themselves) on their own and belong to scripts with spaces: text without one is
    #: folded by ``lower`` alone, which is most Latin and Cyrillic news.
    unlowered: re.Pattern[str]


@lru_cache(maxsize=2)
def _known_characters(case: bool) -> _Known:
    """Built on first use (some 40 ms), not at import."""
    plain: list[int] = list(range(0x80))
    replacements: dict[str, str] = {}
    for low, high in _CHECKED_BLOCKS:
        for point in range(low, high + 1):
            char = chr(point)
            folded = _folds_alone(char, case)
            same = char if case else char.casefold()
            if folded == same and len(folded) == 1:
                plain.append(point)
            elif folded != _UNSAFE and (case or folded.casefold() == folded):
                replacements[char] = folded
    simplified = simplified_table()
    for point, simple in simplified.items():
        if _in_ranges(chr(point), _IDENTITY_BLOCKS):
            replacements[chr(point)] = simple
    resized = frozenset(char for char, folded in replacements.items() if len(folded) != 1)
    lowered = [point for point in plain if _folds_as_lower(chr(point), case)]
    produced = {*map(chr, plain), *"".join(replacements.values())}
    produced |= {char.casefold() for char in produced if len(char.casefold()) == 1}
    spaced = sorted(ord(c) for c in produced if c.isalnum() and not is_unspaced(c))
    assert not any(c in replacements for out in replacements.values() for c in out)
    identity = [
        point
        for low, high in _IDENTITY_BLOCKS
        for point in range(low, high + 1)
        if point not in simplified
    ]
    plain_spans = [*_spans(sorted(plain)), *_spans(identity)]
    return _Known(
        unplain=re.compile(
            "[^" + "".join(_class_range(low, high) for low, high in plain_spans) + "]"
        ),
        replace=re.compile("([" + "".join(map(re.escape, replacements)) + "])"),
        replacements=replacements,
        replaced=frozenset(replacements),
        resized=resized,
        spaced_alnum=re.compile(
            "[" + "".join(_class_range(low, high) for low, high in _spans(spaced)) + "]"
        ),
        unlowered=re.compile(
            "[^" + "".join(_class_range(low, high) for low, high in _spans(lowered)) + "]"
        ),
    )


def _folds_as_lower(char: str, case: bool) -> bool:
    """Whether a character that folds alone to ``str.casefold`` (or, keeping case, to itself)
    also folds to what ``str.lower`` gives in any context, and needs no space next to its
    neighbours.  Capital sigma is out: ``lower`` makes it ς at the end of a word."""
    if is_unspaced(char) or char == "\u03a3":
        return False
    return case or char.lower() == char.casefold()


def _spans(points: list[int]) -> Iterator[tuple[int, int]]:
    """Sorted code points as (first, last) runs."""
    start = previous = points[0]
    for point in points[1:]:
        if point != previous + 1:
            yield start, previous
            start = point
        previous = point
    yield start, previous


def _class_range(low: int, high: int) -> str:
    return f"\\U{low:08x}-\\U{high:08x}"


def _fold_known(text: str, known: _Known, case: bool, replaced: set[str]) -> Folded:
    """The known-character road, for text whose characters that do not fold on their own are
    all ``replaced`` ones (one scan found them).  When none of them changes length (Chinese
    punctuation, say), each distinct one is replaced with ``str.replace``, which is cheaper
    than splitting the text around every one of them; when there are many (Traditional
    Chinese holds hundreds of distinct ones), one ``str.translate`` folds the whole text."""
    chars = text
    changed: list[tuple[int, int]] = []
    if len(replaced) > _REPLACE_LIMIT and known.resized.isdisjoint(replaced):
        chars = text.translate(_TABLES[case])
    elif replaced and known.resized.isdisjoint(replaced):
        for char in replaced:
            chars = chars.replace(char, known.replacements[char])
        chars = chars if case else chars.casefold()
    elif replaced:
        parts = known.replace.split(text)
        parts[1::2] = [known.replacements[char] for char in parts[1::2]]
        chars = "".join(parts)
        changed = _resized(parts)
        chars = chars if case else chars.casefold()
    else:
        chars = chars if case else chars.casefold()
    if known.spaced_alnum.search(chars) is None:
        return Folded(text, chars, changed=changed, spaced_words=False)
    return _finish(text, chars, changed)


def _resized(parts: list[str]) -> list[tuple[int, int]]:
    """(index in the original, folded length) of each replaced character that changed size,
    from ``split`` parts: kept text at even places, one replaced character's folding at odd."""
    changed: list[tuple[int, int]] = []
    index = 0
    for number, part in enumerate(parts):
        if number % 2 == 0:
            index += len(part)
            continue
        if len(part) != 1:
            changed.append((index, len(part)))
        index += 1
    return changed


def _finish(text: str, chars: str, changed: list[tuple[int, int]]) -> Folded:
    """``chars``, folded from ``text`` character by character, where ``changed`` lists the
    characters that did not fold to exactly one (index, length); then step 6."""
    breaks = _script_breaks(chars)
    if breaks:
        edges = [0, *breaks, len(chars)]
        chars = " ".join(chars[start:end] for start, end in itertools.pairwise(edges))
    return Folded(text, chars, changed=changed, breaks=breaks)


class _FoldTable(dict[int, str]):
    """``str.translate`` table filled on first sight of each character."""

    def __init__(self, case: bool) -> None:
        super().__init__()
        self.case = case

    def __missing__(self, point: int) -> str:
        folded = _folds_alone(chr(point), self.case)
        self[point] = folded
        return folded


class _LengthTable(dict[int, str]):
    """``str.translate`` table giving one character per input character: ``.`` when it folds
    to exactly one character, else ``chr(48 + n)`` for ``n`` characters (``0`` = dropped)."""

    def __init__(self, folds: _FoldTable) -> None:
        super().__init__()
        self.folds = folds

    def __missing__(self, point: int) -> str:
        size = len(self.folds[point])
        marker = "." if size == 1 else chr(48 + size)
        self[point] = marker
        return marker


_TABLES = {False: _FoldTable(case=False), True: _FoldTable(case=True)}
#: Past this many distinct characters to replace, ``_fold_known`` translates the whole text.
#: Both roads cost in proportion to the text's length; one ``str.replace`` a character is the
#: cheaper up to about 250 of them (a 1,000-character text with 50 distinct Traditional
#: characters: 23 µs against 120 µs translating; with 237: 103 against 121), and a Chinese
#: text rarely holds more distinct characters to replace than that.
_REPLACE_LIMIT = 240
_LENGTHS = {case: _LengthTable(table) for case, table in _TABLES.items()}
_CHANGED = re.compile(r"[^.]")
_UNSPACED_CLASS = "".join(_class_range(low, high) for low, high in UNSPACED_RANGES)
_UNSPACED = re.compile(f"[{_UNSPACED_CLASS}]")
#: A cheap first test: one range is much faster to scan for than the fifteen above.
_MAYBE_UNSPACED = re.compile(f"[{_class_range(UNSPACED_RANGES[0][0], 0x10FFFF)}]")
#: Letters and digits of scripts written with spaces: word characters, not ``_``, not unspaced.
_SPACED_WORD = re.compile(f"[^\\W_{_UNSPACED_CLASS}]+")


def maybe_unspaced(text: str) -> bool:
    """A quick test: False when ``text`` certainly holds no character of a script written
    without spaces (one search for a character at or above the first such block)."""
    return _MAYBE_UNSPACED.search(text) is not None


def _changed_offsets(size: int, changed: Sequence[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Offsets when some characters fold to several characters or to none.

    A character that folds to nothing (soft hyphen) joins the piece before it, as in
    ``fold_reference``: that piece's span grows over it.
    """
    starts: list[int] = []
    ends: list[int] = []
    done = 0
    last = 0  # how many folded characters the latest piece gave
    for index, length in changed:
        if index > done:
            starts.extend(range(done, index))
            ends.extend(range(done + 1, index + 1))
            last = 1
        if length:
            starts.extend([index] * length)
            ends.extend([index + 1] * length)
            last = length
        elif last:
            ends[-last:] = [index + 1] * last
        done = index + 1
    starts.extend(range(done, size))
    ends.extend(range(done + 1, size + 1))
    return starts, ends


def _script_breaks(chars: str) -> list[int]:
    """Positions in ``chars`` where step 6 puts a space: the edges of runs of letters and
    digits of spaced scripts that touch a letter or digit of an unspaced one."""
    if _MAYBE_UNSPACED.search(chars) is None or _UNSPACED.search(chars) is None:
        return []
    breaks: list[int] = []
    for run in _SPACED_WORD.finditer(chars):
        start, end = run.span()
        if start > 0 and chars[start - 1].isalnum():
            breaks.append(start)
        if end < len(chars) and chars[end].isalnum():
            breaks.append(end)
    return breaks


def _with_breaks(
    starts: Sequence[int], ends: Sequence[int], breaks: Sequence[int]
) -> tuple[list[int], list[int]]:
    """Spans with the inserted spaces of step 6: each gets the empty span where the character
    after it starts; ``breaks`` are positions in the text before the spaces went in."""
    new_starts: list[int] = []
    new_ends: list[int] = []
    done = 0
    for index in breaks:
        new_starts.extend(starts[done:index])
        new_ends.extend(ends[done:index])
        new_starts.append(starts[index])
        new_ends.append(starts[index])
        done = index
    new_starts.extend(starts[done:])
    new_ends.extend(ends[done:])
    return new_starts, new_ends


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
