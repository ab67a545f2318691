"""Finding, loading and linting rule files: every problem reported at its path:line:col."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from monitor.errors import RuleFileError, RuleSetError
from monitor.model import Severity
from monitor.rules import RuleSet, SetRef, find_rule_files, lint_rules, load_rules
from monitor.rules.match import NARROW_HINT

DATA = Path(__file__).resolve().parents[1] / "data" / "rules"

GOOD = """\
terms:
  kazakhstan: [Kazakh*, казахстан*]
rules:
  - id: kz-tungsten
    title: Kazakhstan tungsten
    severity: high
    match:
      all: ["@kazakhstan", tungsten]
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def one_problem(path: Path) -> RuleFileError:
    problems = lint_rules([path])
    assert len(problems) == 1, [str(problem) for problem in problems]
    return problems[0]


# -- finding files -------------------------------------------------------------------------


def test_find_rule_files_walks_directories_sorted_and_skips_the_rest(tmp_path: Path) -> None:
    for name in ["b.yaml", "a.yml", "sub/c.YAML", "README.md", "notes.txt", ".hidden/d.yaml"]:
        write(tmp_path, name, GOOD)
    explicit = write(tmp_path / "elsewhere", "single.txt", GOOD)
    found = find_rule_files([tmp_path / "sub", tmp_path, explicit])
    assert found == [
        tmp_path / "sub/c.YAML",
        tmp_path / "a.yml",
        tmp_path / "b.yaml",
        explicit,
    ]


def test_no_rule_files_is_a_problem(tmp_path: Path) -> None:
    write(tmp_path, "README.md", "# nothing here\n")
    problem = one_problem(tmp_path)
    assert problem.message == "no rule files found"
    assert str(problem.location) == str(tmp_path)


def test_a_missing_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    problem = one_problem(tmp_path / "gone.yaml")
    assert str(problem).startswith(f"{tmp_path / 'gone.yaml'}: cannot read rule file")


# -- one problem at a time, at its exact place ---------------------------------------------

CASES = [
    pytest.param(
        """\
        rules:
          - id: r
            titel: T
            title: T
            severity: low
            match: {any: [x]}
        """,
        3,
        5,
        "unknown key 'titel' in a rule",
        "did you mean 'title'?",
        id="unknown-rule-key",
    ),
    pytest.param(
        """\
        rules:
          - id: r
            title: T
            severity: low
            match:
              alll: [x]
        """,
        6,
        7,
        "unknown key 'alll' in a match group",
        "did you mean 'all'?",
        id="unknown-group-key",
    ),
    pytest.param(
        """\
        rules:
          - id: r
            title: T
            severity: low
            zzzzzz: 1
            match: {any: [x]}
        """,
        5,
        5,
        "unknown key 'zzzzzz' in a rule",
        "known keys: id, title, description, severity, tags, owner, enabled, sources, route, "
        "match, examples, min_sources, official, escalate",
        id="unknown-key-no-close-match",
    ),
    pytest.param(
        """\
        terms:
          tungsten: [tungsten]
        rules:
          - id: r
            title: T
            severity: low
            match:
              all:
                - "@tungstn"
                - "@tungsten"
        """,
        9,
        11,
        "unknown term set '@tungstn'",
        "did you mean '@tungsten'?",
        id="unknown-term-set",
    ),
    pytest.param(
        """\
        terms:
          used: [a1]
          darts: [dart]
        rules:
          - id: r
            title: T
            severity: low
            match: {any: ["@used"]}
        """,
        3,
        3,
        "term set 'darts' is not used by any rule",
        "use it as '@darts' in a rule's match, or delete it",
        id="unused-term-set",
    ),
    pytest.param(
        """\
        rules:
          - id: r
            title: T
            severity: low
            match:
              any:
                - tungsten
                - ""
        """,
        8,
        11,
        "a term is empty",
        None,
        id="empty-term",
    ),
    pytest.param(
        """\
        rules:
          - id: r
            title: T
            severity: low
            match:
              any: [tungsten, "*"]
        """,
        6,
        23,
        "term '*' is only a wildcard",
        "'*' goes at the end of a word, as in Kazakh*",
        id="star-only-term",
    ),
    pytest.param(
        """\
        rules:
          - id: r
            title: T
            severity: low
            match:
              any: ["*stan"]
        """,
        6,
        13,
        "misplaced '*' in '*stan'",
        "'*' is only allowed right after a word (Kazakh*); there is no leading wildcard",
        id="leading-star",
    ),
    pytest.param(
        """\
        rules:
          - id: r
            title: T
            severity: low
            match:
              any: [ka*]
        """,
        6,
        13,
        "prefix 'ka*' is too short",
        "write at least 3 letters before '*', or list the words in full",
        id="short-prefix",
    ),
    pytest.param(
        """\
        rules:
          - id: r
            title: T
            severity: low
            match: {}
        """,
        5,
        12,
        "empty match group",
        "give it 'all:', 'any:' and/or 'none:'",
        id="empty-group",
    ),
    pytest.param(
        """\
        rules:
          - id: r
            title: T
            severity: low
            match:
              all: [tungsten]
              any: []
        """,
        7,
        12,
        "'any' must be a list with at least one item, not empty",
        "write [a, b] or '- a' lines",
        id="empty-any-list",
    ),
    pytest.param(
        """\
        rules:
          - id: r
            title: T
            severity: low
            match:
              none: [bulb]
        """,
        6,
        7,
        "a group with only 'none:' would match almost every item",
        "add 'all:' or 'any:' next to 'none:' in the same group",
        id="only-none",
    ),
    pytest.param(
        """\
        rules:
          - id: r
            title: T
            severity: low
            match: [tungsten]
        """,
        5,
        12,
        "'match' must be a group, not a list",
        "write 'any: [...]' or 'all: [...]' under 'match:'",
        id="match-is-a-list",
    ),
    pytest.param(
        """\
        rules:
          - id: r
            title: T
            severity: urgent
            match: {any: [x]}
        """,
        4,
        15,
        "unknown severity 'urgent'; use one of info, low, medium, high, critical",
        None,
        id="bad-severity",
    ),
    pytest.param(
        """\
        rules:
          - id: r
            severity: low
            match: {any: [x]}
        """,
        2,
        5,
        "a rule is missing 'title'",
        "add a 'title:' line",
        id="missing-title",
    ),
    pytest.param(
        """\
        rules:
          - id: r
            title: T
            severity: low
            enabled: maybe
            match: {any: [x]}
        """,
        5,
        14,
        "'enabled' must be true or false, not 'maybe'",
        None,
        id="bad-enabled",
    ),
    pytest.param(
        """\
        rules:
          - id: r
            title: T
            severity: low
            tags: kz
            match: {any: [x]}
        """,
        5,
        11,
        "'tags' must be a list with at least one item, not text",
        "write [kz]",
        id="tags-not-a-list",
    ),
    pytest.param(
        """\
        rules:
          - id: kz tungsten
            title: T
            severity: low
            match: {any: [x]}
        """,
        2,
        9,
        "bad rule id 'kz tungsten'",
        "use letters, digits, '-', '_' and '.', at most 100, e.g. kz-tungsten-deposits",
        id="bad-id",
    ),
    pytest.param(
        """\
        terms:
          kz: [Kazakhstan]
          both:
            - tungsten
            - "@kz"
        rules:
          - id: r
            title: T
            severity: low
            match: {any: ["@kz", "@both"]}
        """,
        5,
        7,
        "term set 'both' refers to another set (@kz)",
        "term sets hold terms only; list both sets in the rule instead",
        id="set-in-set",
    ),
    pytest.param(
        """\
        rules:
          - id: r
            title: T
            severity: low
            match:
              any: [{term: "@kz"}]
        """,
        6,
        20,
        "'@kz' in 'term:' is not a term set reference",
        "write @name as a plain list item to use a term set; '@' is punctuation and cannot be "
        "matched",
        id="at-in-term-mapping",
    ),
    pytest.param(
        """\
        rules:
          - id: r
            title: T
            severity: low
            match:
              any: [{term: KZ, cse: true}]
        """,
        6,
        24,
        "unknown key 'cse' in a term",
        "did you mean 'case'?",
        id="unknown-term-key",
    ),
    pytest.param(
        """\
        terms:
          kz:
            - Kazakhstan
            - KAZAKHSTAN
        rules:
          - id: r
            title: T
            severity: low
            match: {any: ["@kz"]}
        """,
        4,
        7,
        "duplicate term 'KAZAKHSTAN': it matches exactly what 'Kazakhstan' matches",
        "remove one of them",
        id="duplicate-term",
    ),
    pytest.param(
        """\
        terms:
          Kazakhstan: [Kazakhstan]
        rules:
          - id: r
            title: T
            severity: low
            match: {any: ["@Kazakhstan"]}
        """,
        2,
        3,
        "bad term set name 'Kazakhstan'",
        "use lowercase letters, digits, '-' and '_', e.g. 'kazakhstan' or 'rare-earths'",
        id="bad-set-name",
    ),
    pytest.param(
        """\
        rules:
          - id: r
            title: T
            severity: low
            match: {any: [tungsten]}
            examples:
              match:
                - Tungsten tender
                - Copper tender
        """,
        9,
        11,
        "example should match but does not: 'Copper tender'",
        "none of the 'any:' entries was found: 'tungsten'",
        id="failing-match-example",
    ),
    pytest.param(
        """\
        rules:
          - id: r
            title: T
            severity: low
            match:
              all: [tungsten]
              none: [bulb*]
            examples:
              no_match:
                - {title: Tungsten bulbs, summary: for a lamp}
                - title: Tungsten prices
                  summary: Kazakhstan
        """,
        11,
        11,
        "example should not match but does: 'Tungsten prices'",
        f"it matched tungsten ('Tungsten'); {NARROW_HINT}",
        id="failing-no-match-example",
    ),
    pytest.param(
        """\
        rules:
          - id: r
            title: T
            severity: low
            match:
              all: [tungsten]
              none: [bulb*]
            examples:
              match: ["tungsten light bulbs"]
        """,
        9,
        15,
        "example should match but does not: 'tungsten light bulbs'",
        "excluded by 'none:' entry 'bulb*', found 'bulbs'",
        id="example-excluded-by-none",
    ),
    pytest.param(
        """\
        rules:
          - id: r
            title: T
            severity: low
            match: {any: [tungsten]}
            examples:
              mach: [Tungsten]
        """,
        7,
        7,
        "unknown key 'mach' in 'examples'",
        "did you mean 'match'?",
        id="examples-key-typo",
    ),
    pytest.param(
        """\
        rules:
          - id: r
            title: T
            severity: low
            match: {any: [x]}
        rules: []
        """,
        6,
        1,
        "duplicate key 'rules' (first defined on line 1)",
        "YAML keeps only one of them; remove or rename one",
        id="duplicate-yaml-key",
    ),
    pytest.param(
        """\
        terms:
          kz: &kz [Kazakhstan]
        rules:
          - id: r
            title: T
            severity: low
            match: {any: [*kz]}
        """,
        2,
        7,
        "anchors and aliases (&name / *name) are not allowed",
        "write the value out again where it is needed",
        id="yaml-alias",
    ),
    pytest.param(
        """\
        rules:
          - id: r
            title: [T
        """,
        4,
        1,
        "invalid YAML: ",
        None,
        id="yaml-syntax",
    ),
    pytest.param("", 1, 1, "the file is empty", "add 'terms:' and/or 'rules:'", id="empty-file"),
    pytest.param(
        "- id: r\n",
        1,
        1,
        "a rule file must be a mapping of 'key: value' lines, not a list",
        None,
        id="file-is-a-list",
    ),
]


@pytest.mark.parametrize(("text", "line", "column", "message", "hint"), CASES)
def test_each_problem_is_reported_at_its_place(
    tmp_path: Path, text: str, line: int, column: int, message: str, hint: str | None
) -> None:
    path = write(tmp_path, "rules.yaml", text)
    problem = one_problem(tmp_path)
    assert (problem.location.path, problem.location.line, problem.location.column) == (
        str(path),
        line,
        column,
    )
    assert problem.message.startswith(message)
    assert problem.hint == hint
    assert str(problem).startswith(f"{path}:{line}:{column}: {message}")


def test_non_utf8_file_is_reported_at_the_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "cp1251.yaml"
    path.write_bytes("rules:\n  - id: r\n    title: Казахстан\n".encode("cp1251"))
    problem = one_problem(path)
    assert str(problem).startswith(f"{path}:3:12: file is not UTF-8")
    assert problem.hint == "save the file as UTF-8"


# -- across files --------------------------------------------------------------------------


def test_duplicate_ids_across_files_ignoring_case(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", GOOD)
    second = write(
        tmp_path,
        "b.yaml",
        """\
        # another desk's file
        rules:
          - id: KZ-Tungsten
            title: Same id in capitals
            severity: low
            match: {any: [tungsten]}
        """,
    )
    problem = one_problem(tmp_path)
    assert str(problem.location) == f"{second}:3:9"
    assert problem.message == "rule id 'KZ-Tungsten' differs from 'kz-tungsten' only in case"
    assert problem.hint is not None
    assert f"defined at {first}:4:9" in problem.hint


def test_term_sets_are_shared_across_files_and_defined_once(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    second = write(tmp_path, "b.yaml", "terms:\n  kazakhstan: [Qazaqstan]\n")
    problem = one_problem(tmp_path)
    assert str(problem.location) == f"{second}:2:3"
    assert problem.message == "term set 'kazakhstan' is defined twice"


def test_a_set_defined_in_one_file_is_used_in_another() -> None:
    ruleset = load_rules([DATA / "shared"])
    rule = ruleset.get("kz-tungsten")
    assert rule is not None
    reference, tungsten = rule.match.all_of
    assert isinstance(reference, SetRef)
    assert isinstance(tungsten, SetRef)
    assert tungsten.name == "tungsten"
    assert [term.written for term in reference.terms] == [
        "Kazakh*",
        "казахстан*",
        "қазақстан*",
        "哈萨克斯坦",
        "KZ",
    ]
    assert reference.terms[-1].case is True
    assert set(ruleset.term_sets) == {"kazakhstan", "tungsten"}


def test_load_rules_refuses_the_whole_set_and_lists_every_problem(tmp_path: Path) -> None:
    write(tmp_path, "good.yaml", GOOD)
    write(
        tmp_path,
        "bad.yaml",
        """\
        rules:
          - id: one
            title: T
            severity: sometimes
            match: {any: [x]}
          - id: two
            title: T
            severity: low
            match: {any: ["@nope"]}
        """,
    )
    with pytest.raises(RuleSetError) as caught:
        load_rules([tmp_path])
    problems = caught.value.problems
    assert [(p.location.line, p.message.split(";")[0]) for p in problems] == [
        (4, "unknown severity 'sometimes'"),
        (9, "unknown term set '@nope'"),
    ]
    assert str(caught.value).startswith("2 problem(s) in the rule files: ")


def test_lint_sorts_problems_by_file_then_line(tmp_path: Path) -> None:
    broken = "rules:\n  - id: r\n    title: T\n    severity: low\n    match: {any: [ka*]}\n"
    write(tmp_path, "b.yaml", broken + "    owner: []\n")
    write(tmp_path, "a.yaml", broken)
    problems = lint_rules([tmp_path])
    assert [(Path(p.location.path).name, p.location.line) for p in problems] == [
        ("a.yaml", 5),
        ("b.yaml", 2),  # 'r' again: reported though b's rule is broken for other reasons
        ("b.yaml", 5),
        ("b.yaml", 6),
    ]


def test_a_yaml_error_elsewhere_does_not_make_sets_look_unused(tmp_path: Path) -> None:
    write(tmp_path, "terms.yaml", "terms:\n  kz: [Kazakhstan]\n")
    write(tmp_path, "rules.yaml", "rules: [\n")
    problems = lint_rules([tmp_path])
    assert [Path(p.location.path).name for p in problems] == ["rules.yaml"]


def test_the_broken_fixture_lints_exactly_as_recorded() -> None:
    """Golden file: the full lint output for a file holding many kinds of mistake."""
    directory = DATA / "broken"
    expected = (directory / "expected-lint.txt").read_text(encoding="utf-8").splitlines()
    actual = [str(problem).replace(f"{directory}/", "") for problem in lint_rules([directory])]
    assert actual == expected


# -- what a loaded rule holds --------------------------------------------------------------


def test_a_loaded_rule_holds_every_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "full.yaml",
        """\
        rules:
          - id: full
            title: "  Every field  "
            description: Why this rule exists.
            severity: Critical
            tags: [kz, w]
            owner: minerals-desk
            enabled: "No"
            sources: [tengrinews]
            route: [slack, email]
            match: {any: [tungsten]}
            examples:
              match: [tungsten]
        """,
    )
    (rule,) = load_rules([path]).rules
    assert (rule.id, rule.title, rule.description) == (
        "full",
        "Every field",
        "Why this rule exists.",
    )
    assert rule.severity is Severity.CRITICAL
    assert (rule.tags, rule.owner, rule.enabled) == (("kz", "w"), "minerals-desk", False)
    assert (rule.sources, rule.route) == (("tengrinews",), ("slack", "email"))
    assert str(rule.location) == f"{path}:2:9"
    (example,) = rule.examples
    assert (example.title, example.should_match, example.location.line) == ("tungsten", True, 13)


@pytest.mark.parametrize(
    ("written", "enabled"),
    [("true", True), ("Yes", True), ("on", True), ("false", False), ("no", False)],
)
def test_enabled_accepts_true_false_yes_no(tmp_path: Path, written: str, enabled: bool) -> None:
    path = write(
        tmp_path,
        "r.yaml",
        f"rules:\n  - id: r\n    title: T\n    severity: low\n    enabled: {written}\n"
        "    match: {any: [x1]}\n",
    )
    assert load_rules([path]).rules[0].enabled is enabled


# -- version -------------------------------------------------------------------------------


def test_version_is_a_stable_hash_of_content_not_of_names(tmp_path: Path) -> None:
    write(tmp_path / "one", "a.yaml", GOOD)
    write(tmp_path / "two", "renamed.yaml", GOOD)
    first = load_rules([tmp_path / "one"])
    assert len(first.version) == 12
    assert all(char in "0123456789abcdef" for char in first.version)
    assert first.version == load_rules([tmp_path / "one"]).version
    assert first.version == load_rules([tmp_path / "two"]).version
    write(tmp_path / "two", "renamed.yaml", GOOD.replace("high", "low"))
    assert load_rules([tmp_path / "two"]).version != first.version


def test_ruleset_lookup_by_id_ignores_case(tmp_path: Path) -> None:
    ruleset: RuleSet = load_rules([write(tmp_path, "a.yaml", GOOD)])
    assert len(ruleset) == 1
    found = ruleset.get("KZ-TUNGSTEN")
    assert found is not None
    assert found.id == "kz-tungsten"
    assert ruleset.get("other") is None


def test_an_id_clash_is_reported_with_the_other_problems_of_a_broken_rule(
    tmp_path: Path,
) -> None:
    """One lint shows everything: a rule broken by a bad severity still has its id compared,
    so the analyst does not fix one problem only to meet the next."""
    write(
        tmp_path,
        "rules.yaml",
        "rules:\n"
        "  - {id: kz-tungsten, title: T, severity: high, match: {any: [tungsten]}}\n"
        "  - {id: KZ-Tungsten, title: T, severity: hgh, match: {any: [wolfram]}}\n",
    )
    messages = [problem.message for problem in lint_rules([tmp_path])]
    assert messages == [
        "rule id 'KZ-Tungsten' differs from 'kz-tungsten' only in case",
        "unknown severity 'hgh'; use one of info, low, medium, high, critical",
    ]
