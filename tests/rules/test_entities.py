"""The entity list analysts extend (``rules/entities.yaml``): checked like rule files, with
every problem at ``path:line:col``, loaded all or nothing with the rules, and used by stories."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.cli import main
from monitor.errors import RuleSetError
from monitor.model import Item
from monitor.rules import find_rule_files, lint_rules, load_rules
from monitor.rules.entities import KINDS, Entity, Lexicon
from monitor.rules.entity_file import is_entity_file
from monitor.rules.load import (
    SHIPPED_ENTITY_FILE,
    find_entity_files,
    load_entities,
    shipped_entities,
)
from monitor.stories.cluster import Extractor
from monitor.stories.lexicon import DEFAULT_ENTITIES

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "rules" / "entities.yaml"
RULE = "rules:\n  - {id: t, title: T, severity: low, match: {any: [tungsten]}}\n"
NOW = datetime(2026, 3, 1, tzinfo=UTC)

BOGUTY = """\
entities:
  - id: boguty
    kind: deposit
    english: Boguty
    aliases:
      en: [Boguty]
      ru: [Богуты]
"""


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def lint_lines(directory: Path) -> list[str]:
    return [str(problem) for problem in lint_rules([directory])]


def item(title: str, summary: str = "") -> Item:
    return Item("i1", "feed", title, summary, "https://x.example/1", NOW, "en")


# -- the shipped file ---------------------------------------------------------------------------


def test_the_shipped_entity_file_lints_clean() -> None:
    assert SHIPPED == SHIPPED_ENTITY_FILE
    assert lint_rules([SHIPPED]) == []


def test_every_shipped_entity_has_an_english_name_a_known_kind_and_aliases() -> None:
    entities = load_entities([SHIPPED])
    assert len(entities) >= 40
    for entity in entities:
        assert entity.english, entity.id
        assert entity.display == entity.english, entity.id
        assert entity.kind in KINDS, entity.id
        assert entity.names, entity.id


def test_default_entities_are_the_shipped_file() -> None:
    assert tuple(DEFAULT_ENTITIES) == shipped_entities() == load_entities([SHIPPED])
    assert DEFAULT_ENTITIES[0].id == "upper-kairakty"


@pytest.mark.parametrize(
    ("text", "entity"),
    [
        ("Upper Kairakty tender", "upper-kairakty"),
        ("аукцион по месторождению Верхнее Кайрақты", "upper-kairakty"),
        ("上凯拉克蒂钨矿", "upper-kairakty"),
        ("Kazatomprom and Tau-Ken Samruk sign", "kazatomprom"),
        ("Тау-Кен Самрук подписал", "tau-ken"),
        ("Қазгеология барлау жүргізеді", "kazgeology"),
        ("в Актюбинской области", "aktobe"),
        ("Самұрық-Қазына қоры", "samruk-kazyna"),
    ],
)
def test_the_shipped_list_names_kazakh_deposits_companies_and_regions(
    text: str, entity: str
) -> None:
    assert entity in Lexicon(shipped_entities()).find_in(text)


def test_the_chinese_state_council_is_not_the_us_state_department() -> None:
    lexicon = Lexicon(shipped_entities())
    assert "us-state" not in lexicon.find_in("国务院发布稀土管理条例")
    assert "us-state" in lexicon.find_in("美国国务院表示")


# -- problems at path:line:col --------------------------------------------------------------------


def at(text: str, line: int, token: str) -> str:
    """``line:col`` of the first ``token`` on a 1-based line of ``text``, counted here, not by
    the code under test."""
    return f"{line}:{text.splitlines()[line - 1].index(token) + 1}"


def entity_line(fields: str) -> str:
    return f"entities:\n  - {{{fields}}}\n"


C5 = (
    "entities:\n  - id: c5\n    kind: agency\n    english: C5+1\n"
    "    aliases:\n      en: [C5+1, C5 1]\n"
)
BAKUTA = (
    BOGUTY + "  - {id: bakuta, kind: deposit, english: Bakuta, aliases: {en: [Bakuta, boguty]}}\n"
)
SECOND_BOGUTY = BOGUTY + "  - {id: boguty, kind: deposit, english: B, aliases: {en: [Bogutyy]}}\n"
EMPTY_ALIASES = entity_line("id: a, kind: place, english: A, aliases: {}")
EMPTY_LANGUAGE = entity_line("id: a, kind: place, english: A, aliases: {en: []}")
LISTED = entity_line("id: a, kind: place, english: A, aliases: [A]")
MISSPELT = entity_line("id: a, kind: place, englsh: A, aliases: {en: [A]}")
LIST_NAME = entity_line("id: a, kind: place, english: [A], aliases: {en: [A]}")
BAD_KIND = entity_line("id: a, kind: deposits, english: A, aliases: {en: [A]}")
BAD_ID = entity_line("id: Upper Kairakty, kind: place, english: A, aliases: {en: [A]}")
BAD_TERM = entity_line("id: a, kind: place, english: A, aliases: {en: [ka*]}")
BAD_LANGUAGE = entity_line("id: a, kind: place, english: A, aliases: {english: [A]}")
MISSING = entity_line("id: a, kind: place, aliases: {en: [A]}")
WITH_RULES = BOGUTY + RULE
BAD_YAML = "entities:\n  - id: a\n   kind: place\n"

PROBLEMS = [
    pytest.param(
        C5,
        f"{at(C5, 6, 'C5 1')}: duplicate alias 'C5 1' in entity 'c5' "
        "(the same as 'C5+1' once folded) (hint: it is already listed at ",
        id="duplicate-alias-in-one-entity",
    ),
    pytest.param(
        BAKUTA,
        f"{at(BAKUTA, 8, 'boguty')}: alias 'boguty' of entity 'bakuta' already names entity "
        "'boguty' (the same as 'Boguty' once folded)",
        id="alias-of-two-entities",
    ),
    pytest.param(
        SECOND_BOGUTY,
        f"{at(SECOND_BOGUTY, 8, 'boguty')}: duplicate entity id 'boguty' (hint: it is already "
        "defined at ",
        id="duplicate-id",
    ),
    pytest.param(
        EMPTY_ALIASES,
        f"{at(EMPTY_ALIASES, 2, '{}')}: 'aliases' must be a mapping of languages to spellings, "
        "not empty",
        id="empty-aliases",
    ),
    pytest.param(
        EMPTY_LANGUAGE,
        f"{at(EMPTY_LANGUAGE, 2, '[]')}: the 'en' aliases must be a list with at least one "
        "spelling, not empty",
        id="empty-language",
    ),
    pytest.param(
        LISTED,
        f"{at(LISTED, 2, '[A]')}: 'aliases' must be a mapping of languages to spellings, not a "
        "list (hint: group them by language",
        id="aliases-as-a-list",
    ),
    pytest.param(
        MISSPELT,
        f"{at(MISSPELT, 2, 'englsh')}: unknown key 'englsh' in an entity (hint: did you mean "
        "'english'?)",
        id="unknown-key",
    ),
    pytest.param(
        LIST_NAME,
        f"{at(LIST_NAME, 2, '[A]')}: 'english' must be text, not a list",
        id="wrong-type",
    ),
    pytest.param(
        BAD_KIND,
        f"{at(BAD_KIND, 2, 'deposits')}: unknown entity kind 'deposits' (hint: did you mean "
        "'deposit'?)",
        id="unknown-kind",
    ),
    pytest.param(
        BAD_ID,
        f"{at(BAD_ID, 2, 'Upper')}: entity id 'Upper Kairakty' is not lower-case letters, "
        "digits and hyphens",
        id="bad-id",
    ),
    pytest.param(
        BAD_TERM,
        f"{at(BAD_TERM, 2, 'ka*')}: prefix 'ka*' is too short",
        id="bad-term",
    ),
    pytest.param(
        BAD_LANGUAGE,
        f"{at(BAD_LANGUAGE, 2, 'english: [')}: 'english' is not a language code",
        id="bad-language",
    ),
    pytest.param(
        MISSING,
        f"{at(MISSING, 2, '{')}: an entity is missing 'english'",
        id="missing-key",
    ),
    pytest.param(
        WITH_RULES,
        f"{at(WITH_RULES, 8, 'rules')}: unknown key 'rules' in an entity file (hint: 'rules:' "
        "belongs in a rule file",
        id="rules-in-the-entity-file",
    ),
    pytest.param(BAD_YAML, "3:4: invalid YAML", id="yaml-syntax"),
    pytest.param("", "1:1: the entity file is empty", id="empty-file"),
]


@pytest.mark.parametrize(("text", "expected"), PROBLEMS)
def test_entity_file_problems_are_reported_at_path_line_col(
    tmp_path: Path, text: str, expected: str
) -> None:
    """Each problem is at the line and column of the value (or key) to fix, and any problem
    refuses the whole set."""
    path = write(tmp_path, "entities.yaml", text)
    write(tmp_path, "rules.yaml", RULE)
    lines = lint_lines(tmp_path)
    assert any(line.startswith(f"{path}:{expected}") for line in lines), lines
    with pytest.raises(RuleSetError):
        load_rules([tmp_path])


def test_an_alias_in_two_entity_files_is_reported_in_the_later_file(tmp_path: Path) -> None:
    write(tmp_path, "entities.yaml", BOGUTY)
    text = "entities:\n  - {id: bakuta, kind: deposit, english: Bakuta, aliases: {ru: [Богуты]}}\n"
    extra = write(tmp_path, "kz.entities.yaml", text)
    write(tmp_path, "rules.yaml", RULE)
    assert lint_lines(tmp_path) == [
        f"{extra}:{at(text, 2, 'Богуты')}: alias 'Богуты' of entity 'bakuta' already names "
        "entity 'boguty' "
        f"(hint: see {tmp_path / 'entities.yaml'}:7:12; an alias may name only one entity: keep "
        "it where it belongs, or make it more specific)"
    ]


def test_an_entity_list_in_a_rule_file_is_told_where_it_belongs(tmp_path: Path) -> None:
    path = write(tmp_path, "kz.yaml", RULE + BOGUTY)
    assert lint_lines(tmp_path) == [
        f"{path}:3:1: unknown key 'entities' in a rule file (hint: the entity list goes in a "
        "file of its own named entities.yaml (or <name>.entities.yaml) under the rule paths)"
    ]


def test_the_lint_command_prints_entity_problems_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "entities.yaml", "entities:\n  - {id: a, kind: place}\n")
    assert main(["rules", "lint", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{path}:2:5: an entity is missing 'aliases' (hint: add a line 'aliases: ...')",
        f"{path}:2:5: an entity is missing 'english' (hint: add a line 'english: ...')",
    ]


def test_the_lint_command_passes_a_clean_entity_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "entities.yaml", BOGUTY)
    assert main(["rules", "lint", str(path)]) == 0
    assert capsys.readouterr().out == ""


# -- which file is which ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "entities"),
    [
        ("entities.yaml", True),
        ("entities.yml", True),
        ("Entities.YAML", True),
        ("kazakhstan.entities.yaml", True),
        ("kazakhstan-tungsten.yaml", False),
        ("my-entities.yaml", False),
        ("entities.yaml.bak", False),
    ],
)
def test_an_entity_file_is_known_by_its_name(name: str, entities: bool) -> None:
    assert is_entity_file(Path(name)) is entities


def test_the_rule_loader_reads_the_entity_file_as_entities_only(tmp_path: Path) -> None:
    entities = write(tmp_path, "entities.yaml", BOGUTY)
    rules = write(tmp_path, "kz.yaml", RULE)
    assert find_rule_files([tmp_path]) == [rules]
    assert find_entity_files([tmp_path]) == [entities]
    assert find_rule_files([entities]) == []
    ruleset = load_rules([tmp_path])
    assert ruleset.paths == (str(rules),)
    assert ruleset.entity_paths == (str(entities),)
    assert [entity.id for entity in ruleset.entities] == ["boguty"]
    assert ruleset.entities[0] == Entity("boguty", "deposit", ("Boguty", "Богуты"), "Boguty")


def test_without_an_entity_file_the_rules_carry_the_shipped_list(tmp_path: Path) -> None:
    ruleset = load_rules([write(tmp_path, "kz.yaml", RULE)])
    assert ruleset.entities == shipped_entities()
    assert ruleset.entity_paths == (str(SHIPPED),)


def test_an_entity_file_alone_is_not_a_rule_set(tmp_path: Path) -> None:
    write(tmp_path, "entities.yaml", BOGUTY)
    with pytest.raises(RuleSetError, match="no rule files found"):
        load_rules([tmp_path])


# -- stories use what the file says --------------------------------------------------------------


def test_an_alias_added_to_the_file_is_found_by_the_story_extractor(tmp_path: Path) -> None:
    """The entity list reaches stories through the rule set: a deposit added by an analyst
    is recognised in every script listed, and gets its English name."""
    write(tmp_path, "kz.yaml", RULE)
    text = "Вольфрамовое месторождение Зызыкс выставят на торги"
    before = Extractor(load_rules([tmp_path]).lexicon).features(item(text))
    assert "zyzyx" not in before.entities
    write(
        tmp_path,
        "entities.yaml",
        BOGUTY
        + "  - id: zyzyx\n    kind: deposit\n    english: Zyzyx\n"
        + "    aliases: {en: [Zyzyx], ru: [Зызыкс*], zh: [兹兹克斯]}\n",
    )
    ruleset = load_rules([tmp_path])
    extractor = Extractor(ruleset.lexicon)
    found = extractor.features(item(text)).entities
    assert found == {"zyzyx"}
    assert extractor.features(item("兹兹克斯钨矿")).specific == {"zyzyx"}
    assert ruleset.lexicon.english("zyzyx") == "Zyzyx"
    assert ruleset.lexicon.english("gone") == "gone"


_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=4, max_size=10)


@settings(deadline=None, max_examples=30)
@given(
    names=st.lists(
        st.lists(_WORD, min_size=1, max_size=3).map(" ".join),
        min_size=1,
        max_size=5,
        unique_by=lambda name: tuple(name.split()),
    )
)
def test_every_alias_written_in_the_file_finds_its_entity(
    tmp_path_factory: pytest.TempPathFactory, names: list[str]
) -> None:
    directory = tmp_path_factory.mktemp("entities")
    listed = ", ".join(f'"{name}"' for name in names)
    path = write(
        directory,
        "entities.yaml",
        f"entities:\n  - {{id: x, kind: company, english: X, aliases: {{en: [{listed}]}}}}\n",
    )
    lexicon = Lexicon(load_entities([path]))
    for name in names:
        assert lexicon.find_in(f"News: {name.upper()} said.") == {"x"}, name


def test_a_name_inside_a_longer_name_of_another_entity_does_not_count() -> None:
    """美国商务部 (the US Commerce Department) holds 商务部 (China's ministry): the longer
    name wins; each alone, or both named apart, is found as written."""
    lexicon = Lexicon(shipped_entities())
    assert lexicon.find_in("美国商务部宣布新的出口限制") == {"us-commerce"}
    assert lexicon.find_in("商务部发布公告") == {"mofcom"}
    assert lexicon.find_in("美国商务部回应商务部公告") == {"us-commerce", "mofcom"}
    assert lexicon.find_in("the US Commerce Department and MOFCOM") == {"us-commerce", "mofcom"}
