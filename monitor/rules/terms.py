"""Term syntax: turn what an analyst wrote ("Kazakh*", "Upper Kairakty", "稀土") into a pattern.

A term is folded like item text, then split into words: runs of letters and digits, each with an
optional trailing ``*`` (prefix wildcard).  Everything else in a term (spaces, hyphens, dots)
only separates words.  The pattern runs over folded text and encodes the boundary rules:

* a word of a spaced script (Latin, Cyrillic, ...) must not touch another letter or digit on
  its outer side, so ``W`` does not match inside "Wall"; it does match in "美国W", because
  folding puts a space between Chinese and Latin letters;
* consecutive words must be separated by at least one non-letter (space, hyphen, dot, ...), any
  run of them, unless one side is Chinese/Japanese/Korean/Thai, where no separator is needed;
* Chinese, Japanese, Korean and Thai text matches as a substring: no boundary at all.

Kazakh is written in two scripts: Cyrillic, and Latin in several alphabets (the 2021 one, the
2018 one with acute accents, and informal plain-ASCII spellings).  A Kazakh term written in
Cyrillic also finds its Latin spellings: each of its Cyrillic words carries ``alternatives``,
its folded Latin forms (``latin_spellings``), and the pattern accepts any of them, so
``қазақстан*`` finds "Qazaqstan", "Qazaqstannyñ" and "Kazakstan".  The item text is left alone,
which is the point: folding Latin text into Cyrillic would turn English words into Cyrillic
("Iraq", "quota") and English terms would stop finding them.  See ``latin_spellings`` for
which terms count as Kazakh and which spellings are covered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from monitor.rules.text import JOINING, SEPARATOR, fold, is_unspaced

#: The shortest stem a prefix wildcard may have; "ka*" would match far too much.
MIN_PREFIX = 3

_WORD = re.compile(r"([^\W_]+)(\*?)")


class TermSyntaxError(ValueError):
    """A term that cannot be used as written; carries a hint for the analyst."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True, slots=True)
class Word:
    """One folded word of a term; ``prefix`` when it ended in ``*``.  ``alternatives`` are
    other folded spellings that count as the same word (the Latin forms of a Kazakh word)."""

    text: str
    prefix: bool = False
    alternatives: tuple[str, ...] = ()

    def spellings(self) -> tuple[Word, ...]:
        """The word and each alternative spelling, as words of their own."""
        return (self, *(Word(text, self.prefix) for text in self.alternatives))


def parse_term(written: str, *, case: bool = False) -> tuple[Word, ...]:
    """Split a term into folded words, refusing wildcards that would not do what they look like."""
    folded = fold(written.strip(), case=case).text
    if not folded.strip():
        raise TermSyntaxError("empty term", "remove the empty entry or write the words to match")
    if not folded.replace("*", "").strip():
        raise TermSyntaxError(
            f"term {written!r} is only a wildcard",
            "'*' goes at the end of a word, as in Kazakh*",
        )
    words: list[Word] = []
    rest: list[str] = []
    position = 0
    for found in _WORD.finditer(folded):
        rest.append(folded[position : found.start()])
        position = found.end()
        word = Word(found[1], bool(found[2]))
        _check_word(written, folded, found.end(), word)
        words.append(word)
    rest.append(folded[position:])
    if "*" in "".join(rest):
        raise TermSyntaxError(
            f"misplaced '*' in {written!r}",
            "'*' is only allowed right after a word (Kazakh*); there is no leading wildcard",
        )
    if not words:
        raise TermSyntaxError(
            f"term {written!r} has no letters or digits",
            "punctuation only separates words; write the words to match",
        )
    if not case and any(KAZAKH_LETTERS.intersection(word.text) for word in words):
        words = [_with_latin(word) for word in words]
    return tuple(words)


def _with_latin(word: Word) -> Word:
    """A Kazakh term's word with its Latin spellings; a prefix keeps only those long enough
    to be one (a dropped ъ or ь could make one shorter than ``MIN_PREFIX``)."""
    spellings = latin_spellings(word.text)
    if word.prefix:
        spellings = tuple(text for text in spellings if len(text) >= MIN_PREFIX)
    return Word(word.text, word.prefix, spellings)


def _check_word(written: str, folded: str, end: int, word: Word) -> None:
    if not word.prefix:
        return
    if end < len(folded) and folded[end].isalnum():
        raise TermSyntaxError(
            f"'*' inside a word in {written!r}",
            "'*' is only allowed at the end of a word (Kazakh*)",
        )
    if is_unspaced(word.text[-1]):
        raise TermSyntaxError(
            f"'*' has no effect in {written!r}",
            "Chinese, Japanese, Korean and Thai terms already match inside longer words; "
            "remove the '*'",
        )
    if len(word.text) < MIN_PREFIX:
        raise TermSyntaxError(
            f"prefix {word.text + '*'!r} is too short",
            f"write at least {MIN_PREFIX} letters before '*', or list the words in full",
        )


def term_pattern(words: tuple[Word, ...]) -> re.Pattern[str]:
    """The regular expression, over folded text, that finds the words as one term.  A word
    with alternative spellings is any of them (they are all of scripts with spaces, like
    the word, so the boundaries are the same)."""
    parts: list[str] = []
    if not is_unspaced(words[0].text[0]):
        parts.append(f"(?<!{JOINING})")
    for index, word in enumerate(words):
        if word.alternatives:
            spelled = (word.text, *word.alternatives)
            parts.append("(?:" + "|".join(map(re.escape, spelled)) + ")")
        else:
            parts.append(re.escape(word.text))
        if word.prefix:
            parts.append(f"{JOINING}*")
        if index + 1 < len(words):
            following = words[index + 1].text[0]
            glued = is_unspaced(word.text[-1]) or is_unspaced(following)
            parts.append(f"{SEPARATOR}{'*' if glued else '+'}")
    if not is_unspaced(words[-1].text[-1]):
        parts.append(f"(?!{JOINING})")
    return re.compile("".join(parts))


# -- Kazakh in Latin letters ------------------------------------------------------------------

#: Letters that only Kazakh, of the languages watched, writes in Cyrillic: a term holding one
#: is Kazakh, and its Cyrillic words get their Latin spellings.  A Russian term ("вольфрам")
#: never does: its Latin forms would be English-looking words it was not written to find.
KAZAKH_LETTERS = frozenset("әғқңөұүһі")

_CYRILLIC_WORD = re.compile(r"[а-яёәғқңөұүһі]+")

#: How each Cyrillic letter is written in each Latin spelling of Kazakh, in the letters of
#: that alphabet (folded when used, so "ş" counts as the "s" folded text holds):
#:
#: * the 2021 alphabet: Ä ä, Ğ ğ, I ı (і), İ i (и, й), Ñ ñ, Ö ö, Q q, Ş ş, Ū ū, Ü ü, Y y (ы);
#: * the 2018 alphabet (acute accents and two digraphs): Á á, Ǵ ǵ, Í í (и, й), Ń ń, Ó ó,
#:   Q q, Sh sh, Ch ch, Ú ú (ү), Ý ý (у), Y y (ы);
#: * plain ASCII as the press and informal writing romanize Kazakh names, the way Russian
#:   is romanized: Kazakstan, Zhezkazgan, Shymkent, Oskemen (қ k, ж zh, х kh, й y, ю yu).
#:
#: After folding, the 2017 apostrophe alphabet is the ASCII one where it has no apostrophe
#: (Qazaqstan).  Its apostrophe letters (a', g', n', s', i') are not covered: an apostrophe
#: separates words in folded text, as it must for "Kazakhstan's" to hold "Kazakhstan".
_SPELLINGS: dict[str, tuple[str, str, str]] = {
    "а": ("a", "a", "a"),
    "ә": ("ä", "á", "a"),
    "б": ("b", "b", "b"),
    "в": ("v", "v", "v"),
    "г": ("g", "g", "g"),
    "ғ": ("ğ", "ǵ", "g"),
    "д": ("d", "d", "d"),
    "е": ("e", "e", "e"),
    "ё": ("io", "io", "yo"),
    "ж": ("j", "j", "zh"),
    "з": ("z", "z", "z"),
    "и": ("i", "í", "i"),
    "й": ("i", "í", "y"),
    "к": ("k", "k", "k"),
    "қ": ("q", "q", "k"),
    "л": ("l", "l", "l"),
    "м": ("m", "m", "m"),
    "н": ("n", "n", "n"),
    "ң": ("ñ", "ń", "n"),
    "о": ("o", "o", "o"),
    "ө": ("ö", "ó", "o"),
    "п": ("p", "p", "p"),
    "р": ("r", "r", "r"),
    "с": ("s", "s", "s"),
    "т": ("t", "t", "t"),
    "у": ("u", "ý", "u"),
    "ұ": ("ū", "u", "u"),
    "ү": ("ü", "ú", "u"),
    "ф": ("f", "f", "f"),
    "х": ("h", "h", "kh"),
    "һ": ("h", "h", "h"),
    "ц": ("ts", "ts", "ts"),
    "ч": ("ch", "ch", "ch"),
    "ш": ("ş", "sh", "sh"),
    "щ": ("şş", "sh", "shch"),
    "ъ": ("", "", ""),
    "ы": ("y", "y", "y"),
    "і": ("ı", "i", "i"),
    "ь": ("", "", ""),
    "э": ("e", "e", "e"),
    "ю": ("iu", "iý", "yu"),
    "я": ("ia", "ia", "ya"),
}


@lru_cache(maxsize=4096)
def latin_spellings(word: str) -> tuple[str, ...]:
    """The folded Latin spellings of one folded Cyrillic Kazakh word, in the 2021, 2018 and
    plain-ASCII alphabets (``_SPELLINGS``), without repeats; none for a word that is not all
    Cyrillic letters (digits, Latin or Chinese in it: it is no Kazakh word to respell).

    Each spelling is one alphabet throughout: "Qazaqstan" and "Kazakstan" are found, a
    mixture such as "Qazakstan" is not (listing every mixture would multiply the keys the
    engine indexes).  Folding removes the accents, so "Qazaqstanğa" and "Qazaqstanga" are
    one spelling.
    """
    if not _CYRILLIC_WORD.fullmatch(word):
        return ()
    found: dict[str, None] = {}
    for alphabet in range(3):
        latin = fold("".join(_SPELLINGS[letter][alphabet] for letter in word)).text
        if latin and latin != word:
            found[latin] = None
    return tuple(found)
