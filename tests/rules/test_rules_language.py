"""The language additions: regexes (RE2), proximity, field scoping, at-least, and YAML traps."""

from __future__ import annotations

import dataclasses
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.errors import RuleFileError
from monitor.model import Item
from monitor.rules import Regex, RuleSet, TermSyntaxError, lint_rules, load_rules

WHEN = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def item(title: str, summary: str = "", **fields: object) -> Item:
    values: dict[str, object] = {
        "id": "i",
        "source": "tengrinews",
        "title": title,
        "summary": summary,
        "link": "https://news.example/a",
        "published": WHEN,
    }
    values.update(fields)
    return Item(**values)  # type: ignore[arg-type]


HEAD = "rules:\n  - id: r\n    title: R\n    severity: low\n    match:\n"


def ruleset(tmp_path: Path, match: str, extra: str = "") -> RuleSet:
    """One rule with the given ``match:`` body (YAML, indented as under ``match:``)."""
    body = textwrap.indent(textwrap.dedent(match), "      ")
    text = f"{textwrap.dedent(extra)}{HEAD}{body}"
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    return load_rules([path])


def problems(tmp_path: Path, match: str, extra: str = "") -> list[str]:
    body = textwrap.indent(textwrap.dedent(match), "      ")
    text = f"{textwrap.dedent(extra)}{HEAD}{body}"
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    return [f"{p.location.line}: {p.message}" for p in lint_rules([path])]


def hits(rules: RuleSet, subject: Item) -> list[tuple[str, str, str]] | None:
    """(term, field, text) of the one match, or None; checks engine against reference."""
    found = rules.match(subject)
    assert found == rules.match_reference(subject)
    if not found:
        return None
    return [(hit.term, hit.field, hit.text) for hit in found[0].hits]


# -- regexes -----------------------------------------------------------------------------


def test_a_regex_matches_folded_text_ignoring_case_with_offsets(tmp_path: Path) -> None:
    """№ folds to "no" like any text; the hit still quotes the original."""
    rules = ruleset(tmp_path, 'any: [{regex: "лицензи[а-я]+ no ?\\\\d+"}]')
    title = "Выдана ЛИЦЕНЗИЯ №12 на Верхнее Кайракты"
    assert hits(rules, item(title)) == [("/лицензи[а-я]+ no ?\\d+/", "title", "ЛИЦЕНЗИЯ №12")]
    assert hits(rules, item("Лицензия выдана")) is None


def test_a_case_sensitive_regex_keeps_case(tmp_path: Path) -> None:
    rules = ruleset(tmp_path, 'any: [{regex: "KZ-[0-9]{4}", case: true}]')
    assert hits(rules, item("Licence KZ-2041 granted")) == [("/KZ-[0-9]{4}/", "title", "KZ-2041")]
    assert hits(rules, item("licence kz-2041 granted")) is None


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("(a)\\1", "backreferences"),
        ("(?P<x>a)(?P=x)", "named backreferences"),
        ("tung(?=sten)", "look-ahead"),
        ("(?<!wolf)ram", "look-ahead and look-behind"),
        ("(?>ab)", "atomic groups"),
        ("a++", "possessive"),
        ("end\\Z", "\\Z"),
        ("(i?)tungsten", "is an optional group, not a flag"),
        ("(is?)tungsten", "is an optional group, not a flag"),
        ("x*", "matches the empty string"),
        ("^", "matches the empty string"),
        ("\\b", "matches the empty string"),
        ("(?:tungsten)?", "matches the empty string"),
        ("[unclosed", "invalid regex"),
        ("\\bказах", "with non-ASCII letters"),
        ("лицензия №", "never occurs in folded text"),
        ("Ёлка", "never occurs in folded text"),
        ("café", "never occurs in folded text"),
        ("(\\pL+ ){1,300}", "too large"),
        ("a{1,1001}", "invalid regex"),
    ],
)
def test_a_regex_the_engine_cannot_run_well_is_refused_with_the_reason(
    pattern: str, message: str
) -> None:
    with pytest.raises(TermSyntaxError) as refused:
        Regex.parse(pattern)
    assert message in refused.value.message
    assert refused.value.hint


@pytest.mark.parametrize("pattern", ["tungsten|wolfram", "\\pL+стан", "20[0-9]{2}", "(?i)kz"])
def test_good_regexes_compile(pattern: str) -> None:
    assert Regex.parse(pattern).label == f"/{pattern}/"


def test_regex_problems_point_at_the_pattern(tmp_path: Path) -> None:
    assert problems(tmp_path, 'any: [tungsten, {regex: "(a)\\\\1"}]') == [
        "6: regex '(a)\\1' uses backreferences (\\1), which the linear-time regex engine lacks"
    ]


# -- fields ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "subject", "matches"),
    [
        ("title", item("Tungsten tender"), True),
        ("title", item("Tender", "tungsten"), False),
        ("summary", item("Tender", "tungsten"), True),
        ("content", item("Tender", "tungsten"), True),
        ("tags", item("Tender", tags=("Mining", "Tungsten")), True),
        ("categories", item("Tungsten"), False),
        ("link", item("x", link="https://news.example/tungsten-tender"), True),
        ("source", item("x", source="tungsten-weekly"), True),
        ("[title, summary]", item("x", "tungsten"), True),
    ],
)
def test_in_scopes_terms_to_fields(
    tmp_path: Path, scope: str, subject: Item, matches: bool
) -> None:
    rules = ruleset(tmp_path, f"any: [{{term: tungsten, in: {scope}}}]")
    assert (hits(rules, subject) is not None) is matches


def test_in_on_a_group_applies_to_everything_inside_and_language_is_a_field(
    tmp_path: Path,
) -> None:
    rules = ruleset(
        tmp_path,
        """\
        all:
          - in: title
            any: [tungsten, вольфрам]
          - {term: ru, in: language}
        """,
    )
    assert hits(rules, item("Вольфрам", lang="ru")) == [
        ("вольфрам", "title", "Вольфрам"),
        ("ru", "lang", "ru"),
    ]
    assert hits(rules, item("Вольфрам", lang="kk")) is None
    assert hits(rules, item("x", "вольфрам", lang="ru")) is None


def test_an_unknown_field_gets_a_did_you_mean(tmp_path: Path) -> None:
    found = lint_rules([write(tmp_path, "any: [{term: W, in: titel}]")])
    assert [(p.message, p.hint) for p in found] == [
        ("unknown field 'titel' in 'in'", "did you mean 'title'?")
    ]


def write(tmp_path: Path, match: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(
        f"rules:\n  - id: r\n    title: R\n    severity: low\n    match: {{{match}}}\n",
        encoding="utf-8",
    )
    return path


# -- proximity ---------------------------------------------------------------------------

NEAR = """\
all:
  - near: ["@kz", tungsten]
    within: 3
"""
SETS = "terms:\n  kz: [Kazakh*, казахстан*, 哈萨克斯坦]\n"


@pytest.mark.parametrize(
    ("title", "found"),
    [
        ("Kazakhstan tungsten", ["Kazakhstan", "tungsten"]),
        ("Kazakhstan sells all its tungsten", ["Kazakhstan", "tungsten"]),  # 3 words between
        ("Kazakhstan sells all of its tungsten", None),  # 4 words between
        ("tungsten from Kazakhstan", ["tungsten", "Kazakhstan"]),  # either order
        ("Kazakhstan wheat. Chinese buyers want tungsten", None),
        ("Kazakh wheat and wheat and tungsten, and Kazakh tungsten", ["tungsten", "Kazakh"]),
    ],
)
def test_near_within_words(tmp_path: Path, title: str, found: list[str] | None) -> None:
    result = hits(ruleset(tmp_path, NEAR, SETS), item(title))
    assert (None if result is None else [text for _, _, text in result]) == found


def test_near_counts_chinese_characters_as_words(tmp_path: Path) -> None:
    rules = ruleset(tmp_path, NEAR, SETS)
    assert hits(rules, item("哈萨克斯坦tungsten")) is not None
    assert hits(rules, item("哈萨克斯坦出售了tungsten")) is not None  # 出 售 了: 3 words
    assert hits(rules, item("哈萨克斯坦向中国出售tungsten")) is None  # 向 中 国 出 售: 5


def test_near_in_one_sentence(tmp_path: Path) -> None:
    rules = ruleset(tmp_path, 'all: [{near: ["@kz", tungsten], sentence: true}]', SETS)
    assert hits(rules, item("Kazakhstan, says the U.S. envoy, wants tungsten deals")) is not None
    assert hits(rules, item("Kazakhstan votes. Tungsten prices rise")) is None
    assert hits(rules, item("哈萨克斯坦出口。tungsten")) is None
    assert hits(rules, item("Kazakhstan", "tungsten")) is None  # title and summary differ


def test_near_needs_a_distance_or_a_sentence(tmp_path: Path) -> None:
    assert problems(tmp_path, "all: [{near: [a1, b1]}]") == ["6: 'near' does not say how near"]


# -- at least ----------------------------------------------------------------------------

AT_LEAST = """\
all:
  - at_least: 2
    of: ["@deals", tungsten]
"""
DEALS = "terms:\n  deals: [tender*, licen*, auction*]\n"


@pytest.mark.parametrize(
    ("title", "matches"),
    [
        ("Tungsten tender", True),
        ("Tender and licence", True),  # two terms of one set count twice
        ("Tender, tenders, tendering", False),  # one term found three times counts once
        ("Tungsten prices", False),
    ],
)
def test_at_least_counts_distinct_entries_and_set_terms(
    tmp_path: Path, title: str, matches: bool
) -> None:
    assert (hits(ruleset(tmp_path, AT_LEAST, DEALS), item(title)) is not None) is matches


def test_an_unreachable_at_least_is_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, "all: [{at_least: 5, of: ['@deals', tungsten]}]", DEALS)
    assert found == ["8: 'at_least: 5' can never be reached: its entries can count at most 4"]


# -- YAML traps and whole-set checks -------------------------------------------------------


def test_yaml_1_1_values_stay_as_typed(tmp_path: Path) -> None:
    """NO is Norway, not false; 010 is ten characters '010', not 8; 1e3 is not a float."""
    path = tmp_path / "traps.yaml"
    path.write_text(
        "rules:\n"
        "  - id: r\n    title: R\n    severity: low\n    enabled: NO\n"
        "    match: {any: [NO, {regex: '1e3'}, {term: '010'}]}\n",
        encoding="utf-8",
    )
    (rule,) = load_rules([path])
    assert rule.enabled is False
    assert [getattr(node, "written", None) for node in rule.match.any_of] == ["NO", "1e3", "010"]
    on = RuleSet((dataclasses.replace(rule, enabled=True),), "v")
    assert [m.rule_id for m in on.match(item("Oslo: NO plans"))] == ["r"]
    assert on.match(item("8 tonnes")) == []


def test_a_rule_set_with_no_rules_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "terms.yaml"
    path.write_text("terms:\n  kz: [Kazakhstan]\n", encoding="utf-8")
    messages = [problem.message for problem in lint_rules([tmp_path])]
    assert "the rule files define no rules" in messages


def test_a_term_set_may_hold_regexes(tmp_path: Path) -> None:
    """A set shares regexes as it shares terms; hits name the set and the pattern."""
    extra = (
        "terms:\n"
        "  licences: [licen*, {regex: 'kz-[0-9]{4}'}]\n"
        "  codes: [{regex: '[A-Z]{2}-\\d+', case: true}]\n"
    )
    rules = ruleset(tmp_path, "any: ['@licences', '@codes']", extra)
    assert hits(rules, item("Permit KZ-2041 granted")) == [
        ("@codes:/[A-Z]{2}-\\d+/", "title", "KZ-2041"),
        ("@licences:/kz-[0-9]{4}/", "title", "KZ-2041"),
    ]
    assert hits(rules, item("New licence issued")) == [("@licences:licen*", "title", "licence")]
    assert hits(rules, item("kz-20 and ab-12")) is None


def test_regexes_in_sets_count_in_at_least_and_work_in_near(tmp_path: Path) -> None:
    extra = "terms:\n  deal: [tender, {regex: 'kz-[0-9]{4}'}]\n"
    counted = ruleset(tmp_path, "all:\n  - at_least: 2\n    of: ['@deal']\n", extra)
    assert hits(counted, item("Tender for KZ-2041")) is not None
    assert hits(counted, item("Tender for the deposit")) is None
    near = ruleset(tmp_path, "all:\n  - near: ['@deal', tungsten]\n    within: 2\n", extra)
    assert hits(near, item("KZ-2041 tungsten")) is not None
    assert hits(near, item("KZ-2041 is far from the words about tungsten")) is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{regex: '(?=kz)kaz'}", "uses look-ahead and look-behind"),
        ("{regex: 'x*'}", "matches the empty string"),
        ("{regex: 'kaz', in: title}", "unknown key 'in' in a regex"),
        ("{any: [kaz]}", "term set 'kz' holds something other than a term or a regex"),
    ],
)
def test_term_set_regexes_are_checked_like_rule_regexes(
    tmp_path: Path, entry: str, message: str
) -> None:
    found = problems(tmp_path, "any: ['@kz']", f"terms:\n  kz: [Kazakhstan, {entry}]\n")
    assert len(found) == 1
    assert found[0].startswith("2: ")
    assert message in found[0]


def test_the_same_regex_twice_in_a_set_is_a_duplicate(tmp_path: Path) -> None:
    extra = "terms:\n  kz: [{regex: 'kz-\\d+'}, {regex: 'kz-\\d+'}]\n"
    found = problems(tmp_path, "any: ['@kz']", extra)
    assert found == ["2: duplicate regex 'kz-\\d+' in the set"]


def test_the_exact_same_id_twice_is_a_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    rule = "  - id: r\n    title: R\n    severity: low\n    match: {any: [x1]}\n"
    path.write_text("rules:\n" + rule + rule, encoding="utf-8")
    (problem,) = lint_rules([path])
    assert isinstance(problem, RuleFileError)
    assert problem.message == "duplicate rule id 'r'"
    assert problem.location.line == 6
