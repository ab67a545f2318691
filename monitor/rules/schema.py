"""The rule file schema: read one file's YAML into typed drafts, reporting every problem found.

Validation is written by hand rather than with pydantic because the audience is analysts: each
problem names the key as they wrote it, points at its line, and suggests the fix, and the
recursive term-or-group lists would otherwise surface as union-validation noise.  Drafts still
hold unresolved ``@set`` references; ``load`` links them across files.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TypeVar

from monitor.errors import Location, RuleFileError
from monitor.model import Severity
from monitor.redact import clip
from monitor.rules.expr import (
    FIELDS,
    Counted,
    Escalation,
    Example,
    Frequency,
    Spike,
    Term,
)
from monitor.rules.regex import Regex
from monitor.rules.terms import TermSyntaxError
from monitor.yamlsrc import YamlDocument, YamlPath

FILE_KEYS = ("terms", "rules", "trends")
RULE_KEYS = (
    "id",
    "title",
    "description",
    "severity",
    "tags",
    "owner",
    "enabled",
    "sources",
    "route",
    "match",
    "examples",
    "min_sources",
    "official",
    "escalate",
)
RULE_REQUIRED = ("id", "title", "severity", "match")
GROUP_KEYS = ("all", "any", "none", "in")
TERM_KEYS = ("term", "case", "in")
SET_TERM_KEYS = ("term", "case")
REGEX_KEYS = ("regex", "case", "in")
SET_REGEX_KEYS = ("regex", "case")
NEAR_KEYS = ("near", "within", "sentence", "in")
AT_LEAST_KEYS = ("at_least", "of", "in")
#: Every key a mapping in a match can have, for did-you-mean on a misspelt one.
NODE_KEYS = (
    "all",
    "any",
    "none",
    "in",
    "term",
    "case",
    "regex",
    "near",
    "within",
    "sentence",
    "at_least",
    "of",
)
#: ``in:`` names: the item fields, with the other names analysts use for them.
FIELD_ALIASES = {
    "title": "title",
    "summary": "summary",
    "content": "summary",
    "description": "summary",
    "alt": "alt",
    "alt_text": "alt",
    "tags": "tags",
    "categories": "tags",
    "link": "link",
    "url": "link",
    "source": "source",
    "feed": "source",
    "lang": "lang",
    "language": "lang",
}
#: Largest ``within:`` distance, in words.
MAX_WITHIN = 1000
ESCALATE_KEYS = ("sources", "severity")
#: Most independent sources a rule can ask for (``min_sources``, ``escalate.sources``).
MAX_SOURCES = 100
TREND_KEYS = (
    "id",
    "title",
    "description",
    "severity",
    "tags",
    "owner",
    "enabled",
    "route",
    "frequency",
    "spike",
    "first_mention",
)
TREND_KINDS = ("frequency", "spike", "first_mention")
TREND_REQUIRED = ("id", "title", "severity")
FREQUENCY_KEYS = ("of", "window", "at_least")
SPIKE_KEYS = ("of", "window", "factor", "baseline", "min_count")
FIRST_MENTION_KEYS = ("rule", "entities")
OF_KEYS = ("rule", "tag")
#: Shortest and longest volume window: 12 counting buckets of at least 5 s each, and a
#: baseline short enough to keep in one Redis hash.
MIN_WINDOW = timedelta(minutes=1)
MAX_WINDOW = timedelta(days=30)
MAX_BASELINE = timedelta(days=90)
EXAMPLES_KEYS = ("match", "no_match")
EXAMPLE_KEYS = ("title", "summary")

_RULE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_SET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_COUNT = re.compile(r"[1-9][0-9]{0,3}")
_NUMBER = re.compile(r"[0-9]{1,4}(\.[0-9]{1,3})?")
_DURATION = re.compile(r"([1-9][0-9]{0,4})\s*(s|m|h|d|w)")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TRUE = frozenset({"true", "yes", "on"})
_FALSE = frozenset({"false", "no", "off"})

T = TypeVar("T")
D = TypeVar("D")


@dataclass(frozen=True, slots=True)
class RefDraft:
    """An ``@name`` reference, not yet resolved to a term set."""

    name: str
    location: Location


@dataclass(frozen=True, slots=True)
class GroupDraft:
    """A match group whose ``@set`` references are not yet resolved."""

    all_of: tuple[NodeDraft, ...]
    any_of: tuple[NodeDraft, ...]
    none_of: tuple[NodeDraft, ...]
    fields: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class NearDraft:
    """A ``near:`` entry whose ``@set`` references are not yet resolved."""

    of: tuple[Term | Regex | RefDraft, ...]
    within: int | None
    sentence: bool
    fields: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class AtLeastDraft:
    """An ``at_least:`` entry; ``location`` is its count, blamed if it can never be reached."""

    count: int
    of: tuple[NodeDraft, ...]
    fields: tuple[str, ...] | None
    location: Location


NodeDraft = Term | Regex | RefDraft | GroupDraft | NearDraft | AtLeastDraft


@dataclass(frozen=True, slots=True)
class TermSetDraft:
    """A term set as defined in one file; ``location`` is its name's key.

    A set with problems is still defined (``complete`` is False, ``terms`` holds the good
    ones), so rules using it do not also report it as unknown; their examples are not run.
    """

    name: str
    terms: tuple[Term | Regex, ...]
    location: Location
    complete: bool = True


@dataclass(frozen=True, slots=True)
class RuleDraft:
    """A rule whose own fields are valid; ``location`` points at its ``id`` value."""

    id: str
    title: str
    severity: Severity
    match: GroupDraft
    description: str
    tags: tuple[str, ...]
    owner: str | None
    enabled: bool
    sources: tuple[str, ...]
    route: tuple[str, ...]
    examples: tuple[Example, ...]
    location: Location
    min_sources: int = 1
    official: bool = False
    escalate: Escalation | None = None


@dataclass(frozen=True, slots=True)
class FirstMentionDraft:
    """A ``first_mention:`` whose rule id and term set are not yet linked; ``location`` is
    the mapping, blamed when either is unknown."""

    rule: str
    entities: str
    location: Location


@dataclass(frozen=True, slots=True)
class TrendDraft:
    """A trend whose own fields are valid; the rule, tag or term set it names is checked
    when the files are linked.  ``location`` points at its ``id`` value; ``of_location`` at
    what it counts."""

    id: str
    title: str
    severity: Severity
    watch: Frequency | Spike | FirstMentionDraft
    description: str
    tags: tuple[str, ...]
    owner: str | None
    enabled: bool
    route: tuple[str, ...]
    location: Location
    of_location: Location


@dataclass(frozen=True, slots=True)
class FileDraft:
    """What one file defines.

    ``referenced`` holds every ``@name`` seen, even in broken rules, so that a typo in one rule
    does not also make its term sets look unused; ``orphans`` are the valid match groups of
    rules dropped for other problems, still linked so their unknown ``@sets`` are reported too.
    ``written_rules`` counts the entries under ``rules:`` (0 when a file holds only term sets;
    None when the file has no usable top level at all).  ``rule_ids`` holds the id and place
    of every rule entry whose id could be read, broken rules included, so that one lint
    reports a clashing id along with the rule's other problems.
    """

    path: str
    term_sets: tuple[TermSetDraft, ...]
    rules: tuple[RuleDraft, ...]
    referenced: frozenset[str]
    orphans: tuple[GroupDraft, ...] = ()
    written_rules: int | None = None
    trends: tuple[TrendDraft, ...] = ()
    rule_ids: tuple[tuple[str, Location], ...] = ()


def read_rule_file(doc: YamlDocument) -> tuple[FileDraft, list[RuleFileError]]:
    """Validate one loaded rule file; returns what was valid plus every problem found."""
    reader = _Reader(doc)
    draft = reader.file()
    return draft, reader.problems


def did_you_mean(word: str, choices: Sequence[str]) -> str | None:
    """The closest choice to a misspelt word, if any is close enough to suggest."""
    by_folded = {choice.casefold(): choice for choice in choices}
    close = difflib.get_close_matches(word.casefold(), list(by_folded), n=1, cutoff=0.6)
    return by_folded[close[0]] if close else None


def _written(length: timedelta) -> str:
    """A duration as a rule file would write it: 90m, 7d."""
    seconds = int(length.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNIT[unit] == 0:
            return f"{seconds // _UNIT[unit]}{unit}"
    return f"{seconds}s"


def value_kind(value: object) -> str:
    """How a problem names what it found instead: "empty", "a mapping", "a list" or "text"."""
    if value is None or value == [] or value == {}:
        return "empty"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "text"


class _Reader:
    """Walks one document, collecting drafts and problems; every problem gets the document's
    location for the YAML path it concerns."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.problems: list[RuleFileError] = []
        self.referenced: set[str] = set()
        self.orphans: list[GroupDraft] = []
        self.rule_ids: list[tuple[str, Location]] = []

    # -- helpers -------------------------------------------------------------------------

    def problem(
        self, path: YamlPath, message: str, hint: str | None = None, *, key: bool = False
    ) -> None:
        self.problems.append(RuleFileError(self.doc.locate(path, key=key), message, hint=hint))

    def mapping(
        self,
        value: object,
        path: YamlPath,
        what: str,
        allowed: Sequence[str],
        required: Sequence[str] = (),
        suggest: Sequence[str] = (),
    ) -> dict[str, object] | None:
        """The known keys of a mapping; unknown keys and missing required keys are problems.
        A misspelt key is matched against ``allowed`` and then ``suggest`` for a hint."""
        if not isinstance(value, dict):
            self.problem(
                path, f"{what} must be a mapping of 'key: value' lines, not {value_kind(value)}"
            )
            return None
        for key in value:
            if key not in allowed:
                self._unknown_key(path, key, what, allowed, suggest)
        for key in required:
            if key not in value:
                self.problem(path, f"{what} is missing '{key}'", f"add a '{key}:' line")
        return {key: item for key, item in value.items() if key in allowed}

    def _unknown_key(
        self, path: YamlPath, key: str, what: str, allowed: Sequence[str], suggest: Sequence[str]
    ) -> None:
        guess = did_you_mean(key, allowed) or did_you_mean(key, suggest)
        hint = f"did you mean '{guess}'?" if guess else f"known keys: {', '.join(allowed)}"
        self.problem((*path, key), f"unknown key '{key}' in {what}", hint, key=True)

    def text(self, value: object, path: YamlPath, what: str) -> str | None:
        """A non-empty, stripped string."""
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, str) or value is None:
            self.problem(path, f"{what} is empty")
        else:
            self.problem(path, f"{what} must be text, not {value_kind(value)}")
        return None

    def texts(self, value: object, path: YamlPath, what: str) -> tuple[str, ...] | None:
        """A non-empty list of non-empty strings."""
        if not isinstance(value, list) or not value:
            hint = f"write [{value}]" if isinstance(value, str) else "write [a, b] or '- a' lines"
            self.problem(
                path, f"{what} must be a list with at least one item, not {value_kind(value)}", hint
            )
            return None
        items = [
            self.text(item, (*path, index), f"each of {what}") for index, item in enumerate(value)
        ]
        return tuple(item for item in items if item is not None) if None not in items else None

    def flag(self, value: object, path: YamlPath, what: str) -> bool | None:
        """true/false, also yes/no and on/off, in any case."""
        word = value.strip().lower() if isinstance(value, str) else None
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        self.problem(path, f"{what} must be true or false, not {value!r}")
        return None

    # -- the file ------------------------------------------------------------------------

    def file(self) -> FileDraft:
        if self.doc.data is None:
            self.problem((), "the file is empty", "add 'terms:' and/or 'rules:'")
            return FileDraft(self.doc.path, (), (), frozenset())
        fields = self.mapping(self.doc.data, (), "a rule file", FILE_KEYS)
        if fields is not None and not fields and not self.problems:
            self.problem((), "the file defines no 'terms:' and no 'rules:'")
        fields = fields or {}
        sets = self.term_sets(fields["terms"], ("terms",)) if "terms" in fields else ()
        rules = self.rules(fields["rules"], ("rules",)) if "rules" in fields else ()
        trends = self.trends(fields["trends"], ("trends",)) if "trends" in fields else ()
        written = fields.get("rules", [] if fields else None)
        return FileDraft(
            self.doc.path,
            sets,
            rules,
            frozenset(self.referenced),
            tuple(self.orphans),
            len(written) if isinstance(written, list) else None,
            trends,
            tuple(self.rule_ids),
        )

    def term_sets(self, value: object, path: YamlPath) -> tuple[TermSetDraft, ...]:
        if not isinstance(value, dict) or not value:
            self.problem(
                path,
                "'terms' must be a mapping of set names to lists of terms, "
                f"not {value_kind(value)}",
            )
            return ()
        return tuple(self.term_set(name, items, (*path, name)) for name, items in value.items())

    def term_set(self, name: str, value: object, path: YamlPath) -> TermSetDraft:
        before = len(self.problems)
        self._set_name(name, path)
        found: tuple[Term | Regex, ...] = ()
        if isinstance(value, list) and value:
            terms = (self.set_term(item, (*path, index), name) for index, item in enumerate(value))
            found = tuple(term for term in terms if term is not None)
            self._duplicates(found, path)
        else:
            self.problem(path, f"term set '{name}' must be a non-empty list of terms")
        complete = len(self.problems) == before
        return TermSetDraft(name, found, self.doc.locate(path, key=True), complete)

    def _set_name(self, name: str, path: YamlPath) -> None:
        if _SET_NAME.fullmatch(name):
            return
        self.problem(
            path,
            f"bad term set name {name!r}",
            "use lowercase letters, digits, '-' and '_', e.g. 'kazakhstan' or 'rare-earths'",
            key=True,
        )

    def set_term(self, value: object, path: YamlPath, set_name: str) -> Term | Regex | None:
        if isinstance(value, str) and value.strip().startswith("@"):
            self.problem(
                path,
                f"term set '{set_name}' refers to another set ({value.strip()})",
                "term sets hold terms only; list both sets in the rule instead",
            )
            return None
        if isinstance(value, dict) and "regex" in value and "term" not in value:
            return self._regex(value, path, set_name)
        if isinstance(value, dict) and "term" not in value:
            self.problem(
                path,
                f"term set '{set_name}' holds something other than a term or a regex",
                "term sets hold words, phrases and regexes; put groups, near: and at_least: "
                "in a rule's match",
            )
            return None
        return self.term(value, path, set_name)

    def _duplicates(self, terms: tuple[Term | Regex, ...], path: YamlPath) -> None:
        seen: dict[tuple[object, ...], int] = {}
        for index, term in enumerate(terms):
            pattern: object = term.written if isinstance(term, Regex) else term.words
            key = (pattern, term.case)
            if key in seen:
                first = terms[seen[key]].written
                if isinstance(term, Regex):
                    message = f"duplicate regex '{clip(term.written)}' in the set"
                else:
                    message = (
                        f"duplicate term {term.written!r}: it matches exactly what {first!r} "
                        "matches"
                    )
                self.problem((*path, index), message, "remove one of them")
            else:
                seen[key] = index

    # -- terms ---------------------------------------------------------------------------

    def term(self, value: object, path: YamlPath, set_name: str | None = None) -> Term | None:
        """A term written as text, or as ``{term: ..., case: true}``."""
        if isinstance(value, dict):
            allowed = SET_TERM_KEYS if set_name is not None else TERM_KEYS
            spec = self._term_mapping(value, path, allowed)
        else:
            written = self.text(value, path, "a term")
            spec = None if written is None else (written, False)
        if spec is None:
            return None
        written, case = spec
        try:
            return Term.parse(written, case=case, set_name=set_name)
        except TermSyntaxError as exc:
            self.problem(path, exc.message, exc.hint)
            return None

    def _term_mapping(
        self, value: dict[str, object], path: YamlPath, allowed: Sequence[str]
    ) -> tuple[str, bool] | None:
        """The text and case flag of ``{term: ..., case: ...}``; never a set reference, since
        '@' in it would otherwise silently match the bare word."""
        fields = self.mapping(value, path, "a term", allowed, ("term",))
        if fields is None or "term" not in fields:
            return None
        written = self.text(fields["term"], (*path, "term"), "'term'")
        case = self.flag(fields["case"], (*path, "case"), "'case'") if "case" in fields else False
        if written is None or case is None:
            return None
        if written.startswith("@"):
            self.problem(
                (*path, "term"),
                f"{written!r} in 'term:' is not a term set reference",
                "write @name as a plain list item to use a term set; "
                "'@' is punctuation and cannot be matched",
            )
            return None
        return written, case

    # -- rules ---------------------------------------------------------------------------

    def rules(self, value: object, path: YamlPath) -> tuple[RuleDraft, ...]:
        return self.entries(value, path, "rules", self.rule)

    def entries(
        self,
        value: object,
        path: YamlPath,
        key: str,
        read: Callable[[object, YamlPath], D | None],
    ) -> tuple[D, ...]:
        """A file's ``rules:`` or ``trends:``: a non-empty list, each entry read on its own so
        one broken entry does not hide the problems of the others."""
        if not isinstance(value, list) or not value:
            self.problem(path, f"'{key}' must be a list of {key}, not {value_kind(value)}")
            return ()
        drafts = (read(item, (*path, index)) for index, item in enumerate(value))
        return tuple(draft for draft in drafts if draft is not None)

    def rule(self, value: object, path: YamlPath) -> RuleDraft | None:
        before = len(self.problems)
        fields = self.mapping(value, path, "a rule", RULE_KEYS, RULE_REQUIRED)
        if fields is None:
            return None
        match = self._field(fields, path, "match", self._match, None)
        draft = RuleDraft(
            id=self._field(fields, path, "id", self._rule_id, ""),
            title=self._field(fields, path, "title", self.text, ""),
            severity=self._field(fields, path, "severity", self._severity, Severity.INFO),
            match=match or GroupDraft((), (), ()),
            description=self._field(fields, path, "description", self.text, ""),
            tags=self._field(fields, path, "tags", self.texts, ()),
            owner=self._field(fields, path, "owner", self.text, None),
            enabled=self._field(fields, path, "enabled", self.flag, True),
            sources=self._field(fields, path, "sources", self.texts, ()),
            route=self._field(fields, path, "route", self.texts, ()),
            examples=self._field(fields, path, "examples", self._examples, ()),
            location=self.doc.locate((*path, "id")),
            min_sources=self._field(fields, path, "min_sources", self._sources, 1),
            official=self._field(fields, path, "official", self.flag, False),
        )
        if "escalate" in fields:
            escalate = self._escalate(fields["escalate"], (*path, "escalate"), draft)
            draft = replace(draft, escalate=escalate)
        if draft.id:
            self.rule_ids.append((draft.id, draft.location))
        if len(self.problems) == before:
            return draft
        if match is not None:
            self.orphans.append(match)
        return None

    def _field(
        self,
        fields: dict[str, object],
        path: YamlPath,
        key: str,
        read: Callable[[object, YamlPath, str], T | None],
        default: D,
    ) -> T | D:
        """A rule field read with ``read``, or ``default`` when absent or invalid.  Both are
        safe: a missing required key or an invalid value is already a problem, and a rule with
        problems is thrown away."""
        if key not in fields:
            return default
        value = read(fields[key], (*path, key), f"'{key}'")
        return default if value is None else value

    def _rule_id(self, value: object, path: YamlPath, what: str) -> str | None:
        rule_id = self.text(value, path, what)
        if rule_id is not None and not _RULE_ID.fullmatch(rule_id):
            self.problem(
                path,
                f"bad rule id {rule_id!r}",
                "use letters, digits, '-', '_' and '.', at most 100, e.g. kz-tungsten-deposits",
            )
            return None
        return rule_id

    def _severity(self, value: object, path: YamlPath, what: str) -> Severity | None:
        word = self.text(value, path, what)
        if word is None:
            return None
        try:
            return Severity.parse(word)
        except ValueError as exc:
            self.problem(path, str(exc))
            return None

    def _sources(self, value: object, path: YamlPath, what: str) -> int | None:
        return self._count(value, path, what, MAX_SOURCES)

    def _escalate(self, value: object, path: YamlPath, rule: RuleDraft) -> Escalation | None:
        """``escalate: {sources: N, severity: S}``: N above what the rule already waits
        for and S above its severity, or the escalation could never be told apart."""
        fields = self.mapping(value, path, "'escalate'", ESCALATE_KEYS, ESCALATE_KEYS)
        if fields is None or not {"sources", "severity"} <= set(fields):
            return None
        sources = self._sources(fields["sources"], (*path, "sources"), "'escalate.sources'")
        severity = self._severity(fields["severity"], (*path, "severity"), "'escalate.severity'")
        if sources is None or severity is None:
            return None
        if sources <= rule.min_sources:
            self.problem(
                (*path, "sources"),
                f"'escalate.sources: {sources}' is not above 'min_sources: {rule.min_sources}'",
                "the alert would start escalated; raise 'sources' or the rule's severity instead",
            )
            return None
        if severity <= rule.severity:
            self.problem(
                (*path, "severity"),
                f"'escalate.severity: {severity.label}' is not above the rule's severity "
                f"'{rule.severity.label}'",
                "escalating must raise the severity, e.g. 'severity: critical'",
            )
            return None
        return Escalation(sources, severity)

    # -- trends --------------------------------------------------------------------------

    def trends(self, value: object, path: YamlPath) -> tuple[TrendDraft, ...]:
        return self.entries(value, path, "trends", self.trend)

    def trend(self, value: object, path: YamlPath) -> TrendDraft | None:
        """One trend: a rule's identity fields plus exactly one of frequency, spike or
        first_mention."""
        before = len(self.problems)
        fields = self.mapping(value, path, "a trend", TREND_KEYS, TREND_REQUIRED, RULE_KEYS)
        if fields is None:
            return None
        kinds = [kind for kind in TREND_KINDS if kind in fields]
        if len(kinds) != 1:
            said = "none of" if not kinds else "more than one of"
            self.problem(
                path,
                f"a trend needs exactly one of 'frequency', 'spike' or 'first_mention' "
                f"({said} them given)",
                "split it into one trend per kind"
                if kinds
                else "add e.g. 'frequency: {of: {rule: RULE-ID}, window: 1h, at_least: 10}'",
            )
            return None
        kind = kinds[0]
        where = (*path, kind)
        readers = {
            "frequency": self._frequency,
            "spike": self._spike,
            "first_mention": self._first_mention,
        }
        watch = readers[kind](fields[kind], where)
        draft = TrendDraft(
            id=self._field(fields, path, "id", self._rule_id, ""),
            title=self._field(fields, path, "title", self.text, ""),
            severity=self._field(fields, path, "severity", self._severity, Severity.INFO),
            watch=watch or FirstMentionDraft("", "", self.doc.locate(where)),
            description=self._field(fields, path, "description", self.text, ""),
            tags=self._field(fields, path, "tags", self.texts, ()),
            owner=self._field(fields, path, "owner", self.text, None),
            enabled=self._field(fields, path, "enabled", self.flag, True),
            route=self._field(fields, path, "route", self.texts, ()),
            location=self.doc.locate((*path, "id")),
            of_location=self.doc.locate(where),
        )
        return draft if len(self.problems) == before and watch is not None else None

    def _of(self, value: object, path: YamlPath) -> Counted | None:
        """``of: {rule: ID}`` or ``of: {tag: TAG}``: what a volume trend counts."""
        fields = self.mapping(value, path, "'of'", OF_KEYS)
        if fields is None:
            return None
        if len(fields) != 1:
            self.problem(
                path,
                "'of' names exactly one of 'rule' or 'tag'",
                "write 'of: {rule: kz-tungsten}' or 'of: {tag: sanctions}'; use two trends "
                "for both",
            )
            return None
        key, written = next(iter(fields.items()))
        name = self.text(written, (*path, key), f"'of.{key}'")
        if name is None:
            return None
        return Counted(rule=name) if key == "rule" else Counted(tag=name)

    def _frequency(self, value: object, path: YamlPath) -> Frequency | None:
        before = len(self.problems)
        fields = self.mapping(value, path, "'frequency'", FREQUENCY_KEYS, ("of", "at_least"))
        if fields is None or len(self.problems) > before:
            return None
        of = self._of(fields["of"], (*path, "of"))
        at_least = self._count(fields["at_least"], (*path, "at_least"), "'at_least'", 10_000)
        window = self._window(fields, path, "window", timedelta(hours=1), MAX_WINDOW)
        if of is None or at_least is None or window is None:
            return None
        return Frequency(of, at_least, window)

    def _spike(self, value: object, path: YamlPath) -> Spike | None:
        before = len(self.problems)
        fields = self.mapping(value, path, "'spike'", SPIKE_KEYS, ("of", "factor"))
        if fields is None or len(self.problems) > before:
            return None
        of = self._of(fields["of"], (*path, "of"))
        factor = self._factor(fields["factor"], (*path, "factor"))
        window = self._window(fields, path, "window", timedelta(hours=1), MAX_WINDOW)
        baseline = self._window(fields, path, "baseline", timedelta(days=7), MAX_BASELINE)
        min_count = 5
        if "min_count" in fields:
            min_count = (
                self._count(fields["min_count"], (*path, "min_count"), "'min_count'", 10_000) or 0
            )
        if of is None or factor is None or window is None or baseline is None or not min_count:
            return None
        if baseline < 2 * window:
            where = (*path, "baseline") if "baseline" in fields else (*path, "window")
            self.problem(
                where,
                f"the baseline ({_written(baseline)}) must be at least twice the window "
                f"({_written(window)})",
                "the baseline is the trailing period the window is compared with, e.g. "
                "'window: 1h, baseline: 7d'",
            )
            return None
        return Spike(of, factor, window, baseline, min_count)

    def _first_mention(self, value: object, path: YamlPath) -> FirstMentionDraft | None:
        before = len(self.problems)
        fields = self.mapping(
            value, path, "'first_mention'", FIRST_MENTION_KEYS, FIRST_MENTION_KEYS
        )
        if fields is None or len(self.problems) > before:
            return None
        rule = self.text(fields["rule"], (*path, "rule"), "'first_mention.rule'")
        written = self.text(fields["entities"], (*path, "entities"), "'first_mention.entities'")
        if rule is None or written is None:
            return None
        name = written.removeprefix("@").strip()
        self.referenced.add(name)
        return FirstMentionDraft(rule, name, self.doc.locate((*path, "entities")))

    def _factor(self, value: object, path: YamlPath) -> float | None:
        """A spike factor: a plain number above 1 (2, 3.5)."""
        written = value.strip() if isinstance(value, str) else None
        if written is None or not _NUMBER.fullmatch(written) or float(written) <= 1:
            self.problem(
                path,
                f"'factor' must be a number above 1, not {value!r}",
                "how many times the usual volume counts as a spike, e.g. 3",
            )
            return None
        return float(written)

    def _window(
        self,
        fields: dict[str, object],
        path: YamlPath,
        key: str,
        default: timedelta,
        largest: timedelta,
    ) -> timedelta | None:
        """A duration such as ``30m``, ``1h``, ``7d`` between a minute and ``largest``."""
        if key not in fields:
            return default
        value = fields[key]
        written = value.strip() if isinstance(value, str) else ""
        found = _DURATION.fullmatch(written)
        length = timedelta(seconds=int(found[1]) * _UNIT[found[2]]) if found else None
        if length is None or not MIN_WINDOW <= length <= largest:
            self.problem(
                (*path, key),
                f"'{key}' must be a duration from 1m to {_written(largest)}, not {value!r}",
                "write a whole number and a unit: 30m, 1h, 6h, 7d",
            )
            return None
        return length

    # -- match groups --------------------------------------------------------------------

    def _match(self, value: object, path: YamlPath, what: str) -> GroupDraft | None:
        """A rule's ``match``: a group, and a mapping at that (a bare list is a common slip)."""
        if isinstance(value, list):
            self.problem(
                path,
                f"{what} must be a group, not a list",
                "write 'any: [...]' or 'all: [...]' under 'match:'",
            )
            return None
        return self.group(value, path)

    def group(self, value: object, path: YamlPath) -> GroupDraft | None:
        """A mapping with ``all``, ``any`` and/or ``none`` lists, and optionally ``in:``."""
        before = len(self.problems)
        fields = self.mapping(value, path, "a match group", GROUP_KEYS, suggest=NODE_KEYS)
        if fields is None:
            return None
        if not set(fields) - {"in"}:
            if len(self.problems) == before:
                self.problem(path, "empty match group", "give it 'all:', 'any:' and/or 'none:'")
            return None
        if "all" not in fields and "any" not in fields:
            self.problem(
                path,
                "a group with only 'none:' would match almost every item",
                "add 'all:' or 'any:' next to 'none:' in the same group",
            )
        scope = self.fields(fields["in"], (*path, "in")) if "in" in fields else None
        parts = {
            key: self.children(fields[key], (*path, key), key) for key in fields if key != "in"
        }
        if len(self.problems) > before:
            return None
        return GroupDraft(parts.get("all", ()), parts.get("any", ()), parts.get("none", ()), scope)

    def children(self, value: object, path: YamlPath, key: str) -> tuple[NodeDraft, ...]:
        if not isinstance(value, list) or not value:
            hint = f'write ["{value}"]' if isinstance(value, str) else "write [a, b] or '- a' lines"
            self.problem(
                path,
                f"'{key}' must be a list with at least one item, not {value_kind(value)}",
                hint,
            )
            return ()
        nodes = (self.node(item, (*path, index)) for index, item in enumerate(value))
        return tuple(node for node in nodes if node is not None)

    def node(self, value: object, path: YamlPath) -> NodeDraft | None:
        """A term, an ``@set`` reference, a regex, ``near:``, ``at_least:`` or a nested group."""
        if isinstance(value, str) and value.strip().startswith("@"):
            return self._reference(value.strip(), path)
        if isinstance(value, list):
            self.problem(path, "a list inside a list", "nest a group instead: - any: [a, b]")
            return None
        if not isinstance(value, dict):
            return self.term(value, path)
        if "term" in value:
            return self._scoped(value, path, self.term(value, path))
        if "regex" in value:
            return self._scoped(value, path, self._regex(value, path))
        if "near" in value:
            return self._near(value, path)
        if "at_least" in value:
            return self._at_least(value, path)
        return self.group(value, path)

    def _scoped(
        self, value: dict[str, object], path: YamlPath, leaf: Term | Regex | None
    ) -> NodeDraft | None:
        """A term or regex with its own ``in:`` becomes a one-entry group over those fields."""
        if leaf is None or "in" not in value:
            return leaf
        fields = self.fields(value["in"], (*path, "in"))
        return None if fields is None else GroupDraft((), (leaf,), (), fields)

    def _regex(
        self, value: dict[str, object], path: YamlPath, set_name: str | None = None
    ) -> Regex | None:
        """A ``{regex: ...}`` entry, in a rule or (without ``in:``) in a term set."""
        allowed = SET_REGEX_KEYS if set_name is not None else REGEX_KEYS
        fields = self.mapping(value, path, "a regex", allowed, ("regex",))
        if fields is None or "regex" not in fields:
            return None
        written = fields["regex"]
        if not isinstance(written, str) or not written:
            self.problem((*path, "regex"), f"'regex' must be a pattern, not {value_kind(written)}")
            return None
        case = self.flag(fields["case"], (*path, "case"), "'case'") if "case" in fields else False
        if case is None:
            return None
        try:
            return Regex.parse(written, case=case, set_name=set_name)
        except TermSyntaxError as exc:
            self.problem((*path, "regex"), exc.message, exc.hint)
            return None

    def fields(self, value: object, path: YamlPath) -> tuple[str, ...] | None:
        """An ``in:`` value: one field name or a list of them."""
        names = [value] if isinstance(value, str) else value
        listed = self.texts(names, path, "'in'")
        if listed is None:
            return None
        found: list[str] = []
        for index, name in enumerate(listed):
            field = FIELD_ALIASES.get(name.lower())
            if field is None:
                guess = did_you_mean(name, list(FIELD_ALIASES))
                hint = f"did you mean '{guess}'?" if guess else f"use {', '.join(FIELDS)}"
                where = path if isinstance(value, str) else (*path, index)
                self.problem(where, f"unknown field {name!r} in 'in'", hint)
                return None
            found.append(field)
        return tuple(dict.fromkeys(found))

    def _near(self, value: dict[str, object], path: YamlPath) -> NearDraft | None:
        before = len(self.problems)
        fields = self.mapping(value, path, "a near: entry", NEAR_KEYS, suggest=NODE_KEYS)
        if fields is None:
            return None
        entries = self.children(fields["near"], (*path, "near"), "near")
        of = tuple(
            entry
            for entry in entries
            if not isinstance(entry, GroupDraft | NearDraft | AtLeastDraft)
        )
        if len(of) != len(entries):
            self.problem(
                (*path, "near"),
                "'near' takes terms, @sets and regexes, not groups",
                "list the words that must be close together; put groups next to 'near:'",
            )
        elif len(of) < 2 and entries:
            self.problem((*path, "near"), "'near' needs at least two entries to be near each other")
        within = (
            self._count(fields["within"], (*path, "within"), "'within'", MAX_WITHIN)
            if "within" in fields
            else None
        )
        sentence = (
            self.flag(fields["sentence"], (*path, "sentence"), "'sentence'")
            if "sentence" in fields
            else False
        )
        if "within" not in fields and "sentence" not in fields:
            self.problem(
                path,
                "'near' does not say how near",
                "add 'within: 5' (words apart) and/or 'sentence: true' (in one sentence)",
            )
        scope = self.fields(fields["in"], (*path, "in")) if "in" in fields else None
        if len(self.problems) > before or sentence is None:
            return None
        refs = (entry for entry in of if isinstance(entry, Term | Regex | RefDraft))
        return NearDraft(tuple(refs), within, sentence, scope)

    def _at_least(self, value: dict[str, object], path: YamlPath) -> AtLeastDraft | None:
        before = len(self.problems)
        fields = self.mapping(
            value, path, "an at_least: entry", AT_LEAST_KEYS, ("of",), suggest=NODE_KEYS
        )
        if fields is None:
            return None
        count = self._count(fields["at_least"], (*path, "at_least"), "'at_least'", 10_000)
        of = self.children(fields["of"], (*path, "of"), "of") if "of" in fields else ()
        scope = self.fields(fields["in"], (*path, "in")) if "in" in fields else None
        if len(self.problems) > before or count is None:
            return None
        return AtLeastDraft(count, of, scope, self.doc.locate((*path, "at_least")))

    def _count(self, value: object, path: YamlPath, what: str, largest: int) -> int | None:
        """A whole number from 1 to ``largest``, written plainly (``010`` is refused: YAML 1.1
        would have read it as 8, so its meaning is unclear)."""
        written = value.strip() if isinstance(value, str) else None
        if written is None or not _COUNT.fullmatch(written) or int(written) > largest:
            self.problem(
                path,
                f"{what} must be a whole number from 1 to {largest}, not {value!r}",
                "write it plainly, e.g. 5",
            )
            return None
        return int(written)

    def _reference(self, written: str, path: YamlPath) -> RefDraft | None:
        name = written[1:].strip()
        if not name:
            self.problem(path, "'@' without a term set name", "write @name, e.g. @kazakhstan")
            return None
        self.referenced.add(name)
        return RefDraft(name, self.doc.locate(path))

    # -- examples ------------------------------------------------------------------------

    def _examples(self, value: object, path: YamlPath, what: str) -> tuple[Example, ...]:
        before = len(self.problems)
        fields = self.mapping(value, path, what, EXAMPLES_KEYS)
        if not fields:
            if len(self.problems) == before:
                self.problem(path, "'examples' is empty", "add 'match:' and/or 'no_match:' lists")
            return ()
        found: list[Example] = []
        for key, should_match in (("match", True), ("no_match", False)):
            if key in fields:
                found.extend(self._example_list(fields[key], (*path, key), should_match))
        return tuple(found)

    def _example_list(self, value: object, path: YamlPath, should_match: bool) -> list[Example]:
        if not isinstance(value, list) or not value:
            self.problem(path, f"'{path[-1]}' must be a non-empty list of example texts")
            return []
        examples = (
            self._example(item, (*path, index), should_match) for index, item in enumerate(value)
        )
        return [example for example in examples if example is not None]

    def _example(self, value: object, path: YamlPath, should_match: bool) -> Example | None:
        """An example written as a title, or as ``{title: ..., summary: ...}``."""
        location = self.doc.locate(path)
        if not isinstance(value, dict):
            title = self.text(value, path, "an example")
            return None if title is None else Example(title, "", should_match, location)
        before = len(self.problems)
        fields = self.mapping(value, path, "an example", EXAMPLE_KEYS)
        if not fields:
            if len(self.problems) == before:
                self.problem(path, "empty example", "give it 'title:' and/or 'summary:'")
            return None
        title = self.text(fields["title"], (*path, "title"), "'title'") if "title" in fields else ""
        summary = (
            self.text(fields["summary"], (*path, "summary"), "'summary'")
            if "summary" in fields
            else ""
        )
        if title is None or summary is None:
            return None
        return Example(title, summary, should_match, location)
