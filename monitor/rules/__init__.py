"""Rule files: the analysts' YAML language, its loader and linter, the engine and its reference.

The public API::

    find_rule_files(paths) -> list[Path]          rule files under files and directories
    load_rules(paths) -> RuleSet                   all or nothing; raises RuleSetError
    lint_rules(paths) -> list[RuleFileError]       every problem, sorted by location
    stories_problems(ruleset) -> list[...]         rules needing stories (min_sources, ...)
    run_examples(paths) -> list[RuleTest]            each rule's examples, passed or failed
    explain(rule, item) -> list[str]               why a rule does or does not match, readably
    RuleSet.match(item) -> list[Match]             enabled rules watching the item's feed,
                                                   through the compiled engine (``engine``)

The language itself is described for analysts in ``rules/README.md``.
"""

from monitor.rules.explain import explain
from monitor.rules.expr import AtLeast, Example, Group, Near, Node, Rule, SetRef, Term, TermSet
from monitor.rules.load import (
    RuleTest,
    find_rule_files,
    lint_rules,
    load_rules,
    run_examples,
    stories_problems,
)
from monitor.rules.match import ItemText, check_example, evaluate, match_rule, why_not
from monitor.rules.regex import Regex
from monitor.rules.ruleset import RuleSet
from monitor.rules.terms import TermSyntaxError
from monitor.rules.text import Folded, fold

__all__ = [
    "AtLeast",
    "Example",
    "Folded",
    "Group",
    "ItemText",
    "Near",
    "Node",
    "Regex",
    "Rule",
    "RuleSet",
    "RuleTest",
    "SetRef",
    "Term",
    "TermSet",
    "TermSyntaxError",
    "check_example",
    "evaluate",
    "explain",
    "find_rule_files",
    "fold",
    "lint_rules",
    "load_rules",
    "match_rule",
    "run_examples",
    "stories_problems",
    "why_not",
]
