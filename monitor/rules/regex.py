"""Regular expressions in rules: compiled with RE2, refused with a reason when they would mislead.

RE2 matches in time linear in the text whatever the pattern, so no analyst's regex can freeze
the daemon; the price is that it lacks backreferences and look-around.  A pattern that needs
them is refused with the feature named: there is no silent fallback to Python's ``re``.
Patterns run over the folded field text (see ``text``), ignoring case unless ``case: true``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import re2

from monitor.redact import clip
from monitor.rules.terms import TermSyntaxError
from monitor.rules.text import fold_piece

#: Largest compiled program accepted; counted repetitions such as ``\w{1,500}`` grow it fast,
#: and a large program makes RE2 fall back from its fast DFA to slower matching.
MAX_PROGRAM_SIZE = 20_000

#: Characters of a refused pattern quoted in its error: a rule file may hold a pattern of
#: megabytes (generated alternations), and the error is logged, printed and sent to ops.
SHOWN_CHARS = 200

#: Texts a pattern must not match with zero characters: such a pattern "matches" everything.
_EMPTY_PROBES = ("", " ", "a", "a b", "1", "Я", "钨", ".")

#: Features RE2 lacks, how analysts write them, and what to say.
_UNSUPPORTED: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\\[1-9]"), "backreferences (\\1)"),
    (re.compile(r"\(\?P="), "named backreferences ((?P=name))"),
    (re.compile(r"\(\?<?[=!]"), "look-ahead and look-behind ((?=...), (?!...), (?<=...))"),
    (re.compile(r"\(\?>"), "atomic groups ((?>...))"),
    (re.compile(r"\(\?\("), "conditionals ((?(1)...))"),
    (re.compile(r"(?<!\\)[*+?}][+]"), "possessive quantifiers (a++)"),
    (re.compile(r"\\[ZG]"), "\\Z and \\G (write \\z for the end of the text)"),
)
_FLAG_TYPO = re.compile(r"\((?P<flags>[imsxU]+)\?\)")
_ASCII_CLASSES = re.compile(r"\\[bBwW]")


@dataclass(frozen=True, slots=True)
class Regex:
    """A ``{regex: ...}`` entry: the pattern as written and its compiled RE2 form.
    ``set_name`` is the term set it came from, if any, so a hit can say "@set:/regex/"."""

    written: str
    compiled: Any = field(compare=False, repr=False)
    case: bool = False
    set_name: str | None = None

    @classmethod
    def parse(cls, written: str, *, case: bool = False, set_name: str | None = None) -> Regex:
        """Compile and check a pattern; raises ``TermSyntaxError`` saying what to change."""
        return cls(written, compile_regex(written, case=case), case, set_name)

    @property
    def label(self) -> str:
        """How hits name this regex: between slashes, as written, prefixed "@set:" when it
        came from a set."""
        if self.set_name is None:
            return f"/{self.written}/"
        return f"@{self.set_name}:/{self.written}/"


def options(*, case: bool) -> Any:
    """RE2 options for rule patterns: UTF-8, errors returned rather than logged."""
    chosen = re2.Options()
    chosen.log_errors = False
    chosen.case_sensitive = case
    return chosen


def compile_regex(written: str, *, case: bool) -> Any:
    """The RE2 pattern for ``written``, after the checks that catch analysts' slips."""
    _check_written(written, case)
    try:
        compiled = re2.compile(written, options(case=case))
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise TermSyntaxError(
            f"invalid regex '{_shown(written)}': {reason}",
            "see the RE2 syntax in rules/README.md; a plain term is often enough",
        ) from None
    _check_compiled(written, compiled)
    return compiled


def _shown(written: str) -> str:
    """The pattern as an error quotes it: clipped to ``SHOWN_CHARS``, saying its length."""
    return clip(written, SHOWN_CHARS)


def _check_written(written: str, case: bool) -> None:
    if not written.strip():
        raise TermSyntaxError("empty regex", "write a pattern, or remove the entry")
    typo = _FLAG_TYPO.search(written)
    if typo:
        flags = typo.group("flags")
        raise TermSyntaxError(
            f"'({flags}?)' in regex '{_shown(written)}' is an optional group, not a flag",
            f"did you mean '(?{flags})'? Patterns already ignore case unless 'case: true'",
        )
    for finder, feature in _UNSUPPORTED:
        if finder.search(written):
            raise TermSyntaxError(
                f"regex '{_shown(written)}' uses {feature}, "
                "which the linear-time regex engine lacks",
                "rewrite it without that feature, or split it into terms under all:/none:",
            )
    if _ASCII_CLASSES.search(written) and not written.isascii():
        raise TermSyntaxError(
            f"regex '{_shown(written)}' mixes \\b or \\w with non-ASCII letters",
            "in RE2 \\b and \\w only know ASCII letters; use \\pL for any letter, "
            "or a term (terms know word boundaries in every script)",
        )
    _check_folded_letters(written, case)


def _check_folded_letters(written: str, case: bool) -> None:
    """Refuse characters the pattern could never meet: text is folded before matching, so an
    'ё', an 'é' or a '№' in a pattern would look for what no folded text contains."""
    for char in dict.fromkeys(written):
        if char.isascii():
            continue
        folded = fold_piece(char, case)
        expected = char if case else char.lower()
        if folded != expected:
            raise TermSyntaxError(
                f"regex '{_shown(written)}' contains {char!r}, which never occurs in folded text",
                f"text is matched after folding, where {char!r} reads {folded!r}; write that",
            )


def _check_compiled(written: str, compiled: Any) -> None:
    size = int(compiled.programsize)
    if size > MAX_PROGRAM_SIZE:
        raise TermSyntaxError(
            f"regex '{_shown(written)}' is too large to match fast ({size} steps, "
            f"at most {MAX_PROGRAM_SIZE})",
            "shorten counted repetitions such as {1,500}, or use terms",
        )
    for probe in _EMPTY_PROBES:
        found = compiled.search(probe)
        if found is not None and found.end() == found.start():
            raise TermSyntaxError(
                f"regex '{_shown(written)}' matches the empty string",
                "it would match every item; make at least one character required "
                "(for example 'x+' rather than 'x*')",
            )
