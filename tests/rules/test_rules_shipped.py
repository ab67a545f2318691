"""The starter rules in rules/: lint-clean, multilingual, and their examples hold."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

from monitor.rules import (
    AtLeast,
    Example,
    Group,
    Near,
    Node,
    Regex,
    Rule,
    RuleSet,
    SetRef,
    Term,
    check_example,
    lint_rules,
    load_rules,
)
from monitor.rules.text import is_unspaced

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "rules"
KAZAKH_LETTERS = re.compile("[әғқңөұүһіӘҒҚҢӨҰҮҺІ]")


@cache
def shipped() -> RuleSet:
    """Loaded once: the rule files do not change during a test run."""
    return load_rules([RULES])


def examples() -> list[tuple[str, Example]]:
    return [(rule.id, example) for rule in shipped() for example in rule.examples]


def test_shipped_rules_lint_clean() -> None:
    assert [str(problem) for problem in lint_rules([RULES])] == []


def test_three_topics_ship() -> None:
    assert sorted(rule.id for rule in shipped()) == [
        "kz-tungsten-deposits",
        "rare-earth-export-controls",
        "us-central-asia-critical-minerals",
    ]


@pytest.mark.parametrize(("rule_id", "example"), examples(), ids=lambda value: str(value)[:40])
def test_every_shipped_example_behaves(rule_id: str, example: Example) -> None:
    rule = shipped().get(rule_id)
    assert rule is not None
    assert check_example(rule, example) is None


def scripts(text: str) -> set[str]:
    found = set()
    if re.search("[A-Za-z]", text):
        found.add("latin")
    if re.search("[А-Яа-яЁё]", text):
        found.add("cyrillic")
    if KAZAKH_LETTERS.search(text):
        found.add("kazakh")
    if any(is_unspaced(char) for char in text):
        found.add("cjk")
    return found


@pytest.mark.parametrize("rule", shipped().rules, ids=lambda rule: rule.id)
def test_each_rule_has_ten_examples_each_way_in_four_languages(rule: Rule) -> None:
    """At least ten examples that must match and ten that must not, each set written in
    English, Russian, Kazakh and Chinese."""
    matching = [example for example in rule.examples if example.should_match]
    refusing = [example for example in rule.examples if not example.should_match]
    assert len(matching) >= 10
    assert len(refusing) >= 10
    for examples in (matching, refusing):
        covered = set().union(*(scripts(example.title + example.summary) for example in examples))
        assert covered == {"latin", "cyrillic", "kazakh", "cjk"}


@pytest.mark.parametrize(
    ("rule_id", "title"),
    [
        ("kz-tungsten-deposits", "Kazakhstan tungsten mining JV to supply light bulb makers"),
        ("kz-tungsten-deposits", "Kazakh jewellery brand buys tungsten from a local deposit"),
        ("kz-tungsten-deposits", "Darts: Kazakhstan team sponsored by a tungsten mine"),
        ("rare-earth-export-controls", "Rare earth miner receives mining licence; exports later"),
        ("rare-earth-export-controls", "Rare Earth hypothesis: export permits for life"),
        ("rare-earth-export-controls", "Rare earth plant export staff get parking permits"),
        ("us-central-asia-critical-minerals", "US bid at art auction for Uzbek lithium painting"),
    ],
)
def test_the_exclusions_the_issue_names_hold(rule_id: str, title: str) -> None:
    """Tungsten bulbs, jewellery and darts; mining licences, other senses of "rare earth" and
    parking permits; art-auction bids: each is written so the rule would otherwise fire."""
    rule = shipped().get(rule_id)
    assert rule is not None
    assert check_example(rule, Example(title, "", should_match=False)) is None
    assert check_example(rule, Example(title, "", should_match=True)) is not None


@pytest.mark.parametrize("rule", shipped().rules, ids=lambda rule: rule.id)
def test_each_rule_has_owner_description_and_tags(rule: Rule) -> None:
    assert rule.owner
    assert rule.description
    assert rule.tags
    assert rule.enabled


def terms_of(node: Node) -> list[Term | Regex]:
    if isinstance(node, Term | Regex):
        return [node]
    if isinstance(node, SetRef):
        return list(node.terms)
    if isinstance(node, Group):
        children: tuple[Node, ...] = (*node.all_of, *node.any_of, *node.none_of)
    elif isinstance(node, Near | AtLeast):
        children = node.of
    else:
        return []
    return [term for child in children for term in terms_of(child)]


@pytest.mark.parametrize("rule", shipped().rules, ids=lambda rule: rule.id)
def test_each_rule_has_terms_in_english_russian_kazakh_and_chinese(rule: Rule) -> None:
    covered = set().union(*(scripts(term.written) for term in terms_of(rule.match)))
    assert covered == {"latin", "cyrillic", "kazakh", "cjk"}


def test_every_shipped_term_set_has_latin_cyrillic_and_chinese_terms() -> None:
    for name, term_set in shipped().term_sets.items():
        covered = set().union(*(scripts(term.written) for term in term_set.terms))
        assert {"latin", "cyrillic", "cjk"} <= covered, name
