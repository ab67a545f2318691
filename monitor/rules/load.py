"""Find, read, validate and link rule files into a RuleSet, all or nothing.

The only I/O in the rules package is here: reading the files.  Every problem in every file is
collected (lint shows them all at once); ``load_rules`` refuses the whole set if there is even
one, so a bad edit never replaces a good running rule set.  The entity list (``entities.yaml``
beside the rules, see ``entity_file``) is read, checked and swapped in with the rules: the
``RuleSet`` carries it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from types import MappingProxyType

from monitor.errors import Location, RuleFileError, RuleSetError
from monitor.rules.engine import Engine, IndexedText
from monitor.rules.entities import Entity
from monitor.rules.entity_file import EntityDraft, is_entity_file, link_entities, read_entity_file
from monitor.rules.expr import (
    AtLeast,
    Counted,
    FirstMention,
    Group,
    Near,
    Node,
    Rule,
    SetRef,
    TermSet,
    Trend,
    Watch,
)
from monitor.rules.match import check_example, evaluate, example_item
from monitor.rules.ruleset import RuleSet
from monitor.rules.schema import (
    AtLeastDraft,
    FileDraft,
    FirstMentionDraft,
    GroupDraft,
    NearDraft,
    NodeDraft,
    RefDraft,
    RuleDraft,
    TermSetDraft,
    TrendDraft,
    did_you_mean,
    read_rule_file,
)
from monitor.yamlsrc import YamlSourceError, load_yaml_bytes

RULE_SUFFIXES = (".yaml", ".yml")

#: How many hex digits of the content hash make up ``RuleSet.version``.
VERSION_LENGTH = 12
#: The entity list shipped with the project: what stories use when the rule paths hold none.
SHIPPED_ENTITY_FILE = Path(__file__).resolve().parents[2] / "rules" / "entities.yaml"


def find_rule_files(paths: Sequence[Path]) -> list[Path]:
    """Rule files under ``paths``: directories give their *.yaml/*.yml files, recursively and
    sorted, skipping hidden ones; files are taken as given.  Each file appears once.  Entity
    files (``entities.yaml``, ``*.entities.yaml``) are not rule files: see
    ``find_entity_files``."""
    return [path for path in _source_files(paths) if not is_entity_file(path)]


def find_entity_files(paths: Sequence[Path]) -> list[Path]:
    """The entity files under ``paths``, found as ``find_rule_files`` finds rule files."""
    return [path for path in _source_files(paths) if is_entity_file(path)]


def _source_files(paths: Sequence[Path]) -> list[Path]:
    found: dict[Path, None] = {}
    for path in paths:
        if path.is_dir():
            found.update(dict.fromkeys(_directory_files(path)))
        else:
            found[path] = None
    return list(found)


def _directory_files(directory: Path) -> list[Path]:
    files = (
        path
        for path in directory.rglob("*")
        if path.suffix.lower() in RULE_SUFFIXES
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    )
    return sorted(files)


def lint_rules(paths: Sequence[Path]) -> list[RuleFileError]:
    """Every problem in the rule and entity files under ``paths``, sorted by location; []
    when clean.  Paths holding only an entity file lint that file alone."""
    return _compile(paths, rules_required=False).problems


def load_rule_text(raw: bytes, name: str) -> RuleSet:
    """The rule set of one rule file given as bytes (a draft pasted in the console); raises
    ``RuleSetError`` holding every problem ``lint_rules`` would report, at ``name:line:col``.
    Nothing is read from disk but the shipped entity list."""
    result = _compile([], texts=[(name, raw)])
    if result.problems or result.ruleset is None:
        raise RuleSetError(result.problems)
    return result.ruleset


def load_rules(paths: Sequence[Path]) -> RuleSet:
    """The rule set under ``paths``; raises ``RuleSetError`` holding every problem if there is
    any, and then returns nothing: never a partial set."""
    result = _compile(paths)
    if result.problems or result.ruleset is None:
        raise RuleSetError(result.problems)
    return result.ruleset


@dataclass
class _Result:
    ruleset: RuleSet | None = None
    problems: list[RuleFileError] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RuleTest:
    """What ``monitor rules test`` reports for one rule: how many examples it has and the
    ones that did not behave, each as a problem at the example's line."""

    rule: Rule
    failures: tuple[RuleFileError, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


def run_examples(paths: Sequence[Path]) -> list[RuleTest]:
    """Run every rule's examples, reporting each rule whether it passes or not.

    Raises ``RuleSetError`` when the files have problems other than failing examples: rules
    that cannot be loaded cannot be tested.
    """
    result = _compile(paths, examples=False)
    if result.problems or result.ruleset is None:
        raise RuleSetError(result.problems)
    return [RuleTest(rule, tuple(example_problems(rule))) for rule in result.ruleset]


def examples_failing(rules: Sequence[Rule], incomplete: set[str]) -> list[RuleFileError]:
    """A problem for each example of ``rules`` that does not behave as declared (rules
    using a term set that could not be read are not tried).

    Every start and every reload runs the examples, a few hundred of them: evaluated on
    text scanned once through the compiled engine (``IndexedText``), which finds exactly
    what the reference evaluator finds, they cost a fraction of what the reference costs
    (it folds and searches every term of a rule again for each example).  An example that
    fails is then explained by the reference, in its words (``check_example``).
    """
    tried = tuple(rule for rule in rules if not set_names(rule.match) & incomplete)
    if not tried:
        return []
    engine = Engine(tried)
    found: list[RuleFileError] = []
    for rule in tried:
        for example in rule.examples:
            hits = evaluate(rule.match, IndexedText(example_item(example), engine))
            if (hits is not None) == example.should_match:
                continue
            failure = check_example(rule, example)
            if failure is not None:
                message, hint = failure
                found.append(RuleFileError(example.location, message, hint=hint))
    return found


def example_problems(rule: Rule) -> list[RuleFileError]:
    """A problem for each of the rule's examples that does not behave as declared."""
    found: list[RuleFileError] = []
    for example in rule.examples:
        failure = check_example(rule, example)
        if failure is not None:
            message, hint = failure
            found.append(RuleFileError(example.location, message, hint=hint))
    return found


def _compile(
    paths: Sequence[Path],
    *,
    examples: bool = True,
    rules_required: bool = True,
    texts: Sequence[tuple[str, bytes]] = (),
) -> _Result:
    """``texts``: rule files given as (name, bytes) besides the files under ``paths``."""
    files = find_rule_files(paths)
    names = [str(path) for path in files] + [name for name, _raw in texts]
    problems: list[RuleFileError] = []
    written_entity_files = find_entity_files(paths)
    entities, entity_files = _entities_or_shipped(written_entity_files, problems)
    if not names and (rules_required or not written_entity_files):
        where = ", ".join(str(path) for path in paths) or "."
        problems.append(
            RuleFileError(
                Location(where),
                "no rule files found",
                hint="rule files end in .yaml or .yml; check the rules path in the config",
            )
        )
    drafts: list[FileDraft] = []
    digests: list[str] = []
    read = [_read(path, problems) for path in files]
    read += [(_parse(raw, name, problems), raw) for name, raw in texts]
    for draft, raw in read:
        if raw is not None:
            digests.append(hashlib.sha256(raw).hexdigest())
        if draft is not None:
            drafts.append(draft)
    linker = _Linker(drafts, complete=len(drafts) == len(names))
    problems.extend(linker.problems)
    if examples:
        problems.extend(examples_failing(linker.rules, linker.incomplete))
    if drafts and len(drafts) == len(names) and all(file.written_rules == 0 for file in drafts):
        problems.append(
            RuleFileError(
                Location(names[0]),
                "the rule files define no rules",
                hint="a rule set with only term sets would never alert; add a rule under "
                "'rules:' or check the rules path in the config",
            )
        )
    problems.sort(key=_sort_key)
    if problems or not names:
        return _Result(None, problems)
    ruleset = RuleSet(
        rules=linker.rules,
        version=rules_version(digests),
        term_sets=MappingProxyType(dict(linker.term_sets)),
        paths=tuple(names),
        trends=linker.trends,
        entities=entities,
        entity_paths=tuple(str(path) for path in entity_files),
    )
    return _Result(ruleset, [])


def _entities_or_shipped(
    files: Sequence[Path], problems: list[RuleFileError]
) -> tuple[tuple[Entity, ...], list[Path]]:
    """The entities of ``files``, or the shipped list (and its file) when there is none."""
    entities = _entities(files, problems)
    if entities is not None:
        return entities, list(files)
    try:
        shipped = shipped_entities()
    except RuleSetError as exc:
        problems.extend(exc.problems)
        return (), []
    return shipped, [SHIPPED_ENTITY_FILE] if shipped else []


def _entities(files: Sequence[Path], problems: list[RuleFileError]) -> tuple[Entity, ...] | None:
    """The entities of every entity file, linked; None when there is no entity file (stories
    then use the shipped list, ``shipped_entities``)."""
    if not files:
        return None
    drafts: list[EntityDraft] = []
    for path in files:
        drafts.extend(_read_entities(path, problems))
    entities, link_problems = link_entities(drafts)
    problems.extend(link_problems)
    return entities


def _read_entities(path: Path, problems: list[RuleFileError]) -> tuple[EntityDraft, ...]:
    name = str(path)
    try:
        doc = load_yaml_bytes(path.read_bytes(), name)
    except OSError as exc:
        problems.append(RuleFileError(Location(name), f"cannot read entity file: {exc.strerror}"))
        return ()
    except YamlSourceError as exc:
        problems.append(RuleFileError(exc.location, exc.message, hint=exc.hint))
        return ()
    drafts, file_problems = read_entity_file(doc)
    problems.extend(file_problems)
    return drafts


def load_entities(paths: Sequence[Path]) -> tuple[Entity, ...]:
    """The entities of the entity files under ``paths`` (() when there is none); raises
    ``RuleSetError`` holding every problem if there is any."""
    problems: list[RuleFileError] = []
    entities = _entities(find_entity_files(paths), problems)
    if problems:
        raise RuleSetError(sorted(problems, key=_sort_key))
    return entities or ()


@cache
def shipped_entities() -> tuple[Entity, ...]:
    """The entity list shipped in ``rules/entities.yaml``, read once; () where the package is
    installed without it (a daemon then reads the one among its rule paths)."""
    if not SHIPPED_ENTITY_FILE.is_file():
        return ()
    return load_entities([SHIPPED_ENTITY_FILE])


def rules_version(digests: Iterable[str]) -> str:
    """A short hash of the rule files' contents that ignores their names and order, so the same
    rule text always has the same version wherever it is checked out."""
    joined = "\n".join(sorted(digests)).encode("ascii")
    return hashlib.sha256(joined).hexdigest()[:VERSION_LENGTH]


def _read(path: Path, problems: list[RuleFileError]) -> tuple[FileDraft | None, bytes | None]:
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        problems.append(RuleFileError(Location(name), f"cannot read rule file: {exc.strerror}"))
        return None, None
    return _parse(raw, name, problems), raw


def _parse(raw: bytes, name: str, problems: list[RuleFileError]) -> FileDraft | None:
    try:
        doc = load_yaml_bytes(raw, name)
    except YamlSourceError as exc:
        problems.append(RuleFileError(exc.location, exc.message, hint=exc.hint))
        return None
    draft, file_problems = read_rule_file(doc)
    problems.extend(_entity_hint(problem) for problem in file_problems)
    return draft


_ENTITIES_IN_RULE_FILE = "unknown key 'entities' in a rule file"


def _entity_hint(problem: RuleFileError) -> RuleFileError:
    """An entity list written into a rule file gets told where it belongs."""
    if problem.message != _ENTITIES_IN_RULE_FILE:
        return problem
    return RuleFileError(
        problem.location,
        problem.message,
        hint="the entity list goes in a file of its own named entities.yaml (or "
        "<name>.entities.yaml) under the rule paths",
    )


def _sort_key(problem: RuleFileError) -> tuple[str, int, int, str]:
    where = problem.location
    return where.path, where.line, where.column, problem.message


class _Linker:
    """Links the files' drafts: term sets are global, rule ids unique, references resolved,
    and every rule's examples are run."""

    def __init__(self, drafts: Sequence[FileDraft], *, complete: bool) -> None:
        """``complete`` is False when some file could not be read as YAML at all: its
        references are unknown, so no term set is reported unused."""
        self.problems: list[RuleFileError] = []
        self.incomplete: set[str] = set()
        self.term_sets = self._term_sets(draft for file in drafts for draft in file.term_sets)
        if complete:
            self._unused(frozenset().union(*(file.referenced for file in drafts)))
        rule_drafts = [draft for file in drafts for draft in file.rules]
        clashing = self._clashing_ids([entry for file in drafts for entry in file.rule_ids])
        self.rules = self._rules(draft for draft in rule_drafts if draft.location not in clashing)
        self.trends = self._trends([draft for file in drafts for draft in file.trends], rule_drafts)
        for file in drafts:
            for orphan in file.orphans:
                self._group(orphan)

    def _term_sets(self, drafts: Iterable[TermSetDraft]) -> dict[str, TermSet]:
        sets: dict[str, TermSet] = {}
        for draft in drafts:
            first = sets.get(draft.name)
            if first is not None:
                self.problems.append(
                    RuleFileError(
                        draft.location,
                        f"term set '{draft.name}' is defined twice",
                        hint=f"first defined at {first.location}; names are shared by all files",
                    )
                )
                continue
            sets[draft.name] = TermSet(draft.name, draft.terms, draft.location)
            if not draft.complete:
                self.incomplete.add(draft.name)
        return sets

    def _unused(self, referenced: frozenset[str]) -> None:
        for term_set in self.term_sets.values():
            if term_set.name not in referenced:
                self.problems.append(
                    RuleFileError(
                        term_set.location,
                        f"term set '{term_set.name}' is not used by any rule",
                        hint=f"use it as '@{term_set.name}' in a rule's match, or delete it",
                    )
                )

    def _clashing_ids(self, ids: Iterable[tuple[str, Location]]) -> set[Location]:
        """The places of rule ids already used (ignoring case) by an earlier rule, broken
        rules included, each reported."""
        seen: dict[str, tuple[str, Location]] = {}
        clashing: set[Location] = set()
        for rule_id, where in ids:
            first = seen.setdefault(rule_id.casefold(), (rule_id, where))
            if first[1] != where:
                self.problems.append(_duplicate_id((rule_id, where), first))
                clashing.add(where)
        return clashing

    def _rules(self, drafts: Iterable[RuleDraft]) -> tuple[Rule, ...]:
        rules: list[Rule] = []
        for draft in drafts:
            rule = self._rule(draft)
            if rule is None:
                continue
            rules.append(rule)
        return tuple(rules)

    def _rule(self, draft: RuleDraft) -> Rule | None:
        match = self._group(draft.match)
        if match is None:
            return None
        return Rule(
            id=draft.id,
            title=draft.title,
            severity=draft.severity,
            match=match,
            description=draft.description,
            tags=draft.tags,
            owner=draft.owner,
            enabled=draft.enabled,
            sources=draft.sources,
            route=draft.route,
            examples=draft.examples,
            location=draft.location,
            min_sources=draft.min_sources,
            official=draft.official,
            escalate=draft.escalate,
        )

    def _trends(
        self, drafts: Sequence[TrendDraft], rules: Sequence[RuleDraft]
    ) -> tuple[Trend, ...]:
        """Trends whose rule, tag and term set exist; ids are unique among rules and trends,
        since alerts, routes and silences name both the same way."""
        seen = {rule.id.casefold(): rule for rule in rules}
        taken: dict[str, TrendDraft] = {}
        trends: list[Trend] = []
        for draft in drafts:
            clash = seen.get(draft.id.casefold()) or taken.get(draft.id.casefold())
            if clash is not None:
                where = clash.location
                self.problems.append(
                    RuleFileError(
                        draft.location,
                        f"duplicate id '{draft.id}'",
                        hint=f"it is already used at {where}; rule and trend ids must be "
                        "unique across all rule files",
                    )
                )
                continue
            taken[draft.id.casefold()] = draft
            trend = self._trend(draft, rules)
            if trend is not None:
                trends.append(trend)
        return tuple(trends)

    def _trend(self, draft: TrendDraft, rules: Sequence[RuleDraft]) -> Trend | None:
        watch = draft.watch
        ids = [rule.id for rule in rules]
        if isinstance(watch, FirstMentionDraft):
            rule_ok = self._known_rule(watch.rule, ids, draft.of_location, "first_mention.rule")
            term_set = self.term_sets.get(watch.entities)
            if term_set is None:
                guess = did_you_mean(watch.entities, list(self.term_sets))
                self.problems.append(
                    RuleFileError(
                        watch.location,
                        f"unknown term set '@{watch.entities}' in 'first_mention.entities'",
                        hint=f"did you mean '@{guess}'?"
                        if guess
                        else "define the watched entities under 'terms:' in any rule file",
                    )
                )
            if not rule_ok or term_set is None:
                return None
            watch_done: Watch = FirstMention(
                _canonical(watch.rule, ids), watch.entities, term_set.terms
            )
        else:
            counted = watch.of
            if counted.rule is not None:
                if not self._known_rule(counted.rule, ids, draft.of_location, "of.rule"):
                    return None
                watch = replace(watch, of=Counted(rule=_canonical(counted.rule, ids)))
            elif counted.tag is not None:
                tags = sorted({tag for rule in rules for tag in rule.tags})
                if counted.tag not in tags:
                    guess = did_you_mean(counted.tag, tags)
                    hint = (
                        f"did you mean '{guess}'?"
                        if guess
                        else f"tags in use: {', '.join(tags) or 'none'}"
                    )
                    self.problems.append(
                        RuleFileError(
                            draft.of_location,
                            f"no rule has the tag '{counted.tag}', so the trend would never count",
                            hint=hint,
                        )
                    )
                    return None
            watch_done = watch
        return Trend(
            id=draft.id,
            title=draft.title,
            severity=draft.severity,
            watch=watch_done,
            description=draft.description,
            tags=draft.tags,
            owner=draft.owner,
            enabled=draft.enabled,
            route=draft.route,
            location=draft.location,
        )

    def _known_rule(self, rule_id: str, ids: Sequence[str], where: Location, key: str) -> bool:
        if rule_id.casefold() in {known.casefold() for known in ids}:
            return True
        guess = did_you_mean(rule_id, ids)
        self.problems.append(
            RuleFileError(
                where,
                f"unknown rule '{rule_id}' in '{key}'",
                hint=f"did you mean '{guess}'?"
                if guess
                else "name the id of a rule under 'rules:'",
            )
        )
        return False

    def _group(self, draft: GroupDraft) -> Group | None:
        parts = [self._nodes(nodes) for nodes in (draft.all_of, draft.any_of, draft.none_of)]
        all_of, any_of, none_of = parts
        if all_of is None or any_of is None or none_of is None:
            return None
        return Group(all_of, any_of, none_of, draft.fields)

    def _near(self, draft: NearDraft) -> Near | None:
        of = self._nodes(draft.of)
        if of is None:
            return None
        entries = tuple(entry for entry in of if not isinstance(entry, Group | Near | AtLeast))
        return Near(entries, draft.within, draft.sentence, draft.fields)

    def _at_least(self, draft: AtLeastDraft) -> AtLeast | None:
        of = self._nodes(draft.of)
        if of is None:
            return None
        reachable = sum(len(node.terms) if isinstance(node, SetRef) else 1 for node in of)
        if draft.count > reachable:
            self.problems.append(
                RuleFileError(
                    draft.location,
                    f"'at_least: {draft.count}' can never be reached: "
                    f"its entries can count at most {reachable}",
                    hint="lower the number or add entries under 'of:'",
                )
            )
            return None
        return AtLeast(draft.count, of, draft.fields)

    def _nodes(self, drafts: tuple[NodeDraft, ...]) -> tuple[Node, ...] | None:
        nodes = [self._node(draft) for draft in drafts]
        if None in nodes:
            return None
        return tuple(node for node in nodes if node is not None)

    def _node(self, draft: NodeDraft) -> Node | None:
        if isinstance(draft, GroupDraft):
            return self._group(draft)
        if isinstance(draft, NearDraft):
            return self._near(draft)
        if isinstance(draft, AtLeastDraft):
            return self._at_least(draft)
        if isinstance(draft, RefDraft):
            return self._reference(draft)
        return draft

    def _reference(self, draft: RefDraft) -> SetRef | None:
        term_set = self.term_sets.get(draft.name)
        if term_set is not None:
            return SetRef(draft.name, term_set.terms)
        guess = did_you_mean(draft.name, list(self.term_sets))
        hint = (
            f"did you mean '@{guess}'?"
            if guess
            else "define it under 'terms:' in any rule file; names are shared by all files"
        )
        self.problems.append(
            RuleFileError(draft.location, f"unknown term set '@{draft.name}'", hint=hint)
        )
        return None


def stories_problems(ruleset: RuleSet) -> list[RuleFileError]:
    """A problem for each enabled rule using keys that need stories, for a config with
    ``stories.enabled: false``: without stories there is nothing to count sources in, so such
    a rule would either never alert or alert on every reprint; refusing is the honest answer."""
    return [
        RuleFileError(
            rule.location,
            f"rule '{rule.id}' uses {', '.join(rule.story_keys)}, which "
            f"{'needs' if len(rule.story_keys) == 1 else 'need'} stories",
            hint="set 'stories: {enabled: true}' in the config, or remove the key",
        )
        for rule in ruleset.needs_stories
    ]


def _canonical(rule_id: str, ids: Sequence[str]) -> str:
    """The id as its rule writes it (trends may name a rule in another case)."""
    return next((known for known in ids if known.casefold() == rule_id.casefold()), rule_id)


def set_names(node: Node) -> set[str]:
    """The names of every term set a node uses, at any depth."""
    if isinstance(node, SetRef):
        return {node.name}
    if isinstance(node, Group):
        children: tuple[Node, ...] = (*node.all_of, *node.any_of, *node.none_of)
    elif isinstance(node, Near | AtLeast):
        children = node.of
    else:
        return set()
    return set().union(*(set_names(child) for child in children))


def _duplicate_id(rule: tuple[str, Location], first: tuple[str, Location]) -> RuleFileError:
    """Ids are compared ignoring case, since alerts and files are looked up by them and
    'KZ-Tungsten' next to 'kz-tungsten' is a mistake waiting to happen."""
    (rule_id, where), (first_id, first_where) = rule, first
    if rule_id == first_id:
        return RuleFileError(
            where,
            f"duplicate rule id '{rule_id}'",
            hint=f"it is already defined at {first_where}; "
            "ids must be unique across all rule files",
        )
    return RuleFileError(
        where,
        f"rule id '{rule_id}' differs from '{first_id}' only in case",
        hint=f"'{first_id}' is defined at {first_where}; ids are compared ignoring case, "
        "so rename one of them",
    )
