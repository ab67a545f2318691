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
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
    """One folded word of a term; ``prefix`` when it ended in ``*``."""

    text: str
    prefix: bool = False


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
    return tuple(words)


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
    """The regular expression, over folded text, that finds the words as one term."""
    parts: list[str] = []
    if not is_unspaced(words[0].text[0]):
        parts.append(f"(?<!{JOINING})")
    for index, word in enumerate(words):
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
