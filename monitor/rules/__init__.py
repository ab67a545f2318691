"""Rule files: the analysts' YAML language, its loader and linter, and the reference evaluator.

The public API::

    find_rule_files(paths) -> list[Path]          rule files under files and directories
    load_rules(paths) -> RuleSet                   all or nothing; raises RuleSetError
    lint_rules(paths) -> list[RuleFileError]       every problem, sorted by location
    RuleSet.match(item) -> list[Match]             enabled rules watching the item's feed

The language itself is described for analysts in ``rules/README.md``.
"""

from monitor.rules.expr import Example, Group, Node, Rule, SetRef, Term, TermSet
from monitor.rules.load import find_rule_files, lint_rules, load_rules
from monitor.rules.match import ItemText, check_example, evaluate, match_rule, why_not
from monitor.rules.ruleset import RuleSet
from monitor.rules.terms import TermSyntaxError
from monitor.rules.text import Folded, fold

__all__ = [
    "Example",
    "Folded",
    "Group",
    "ItemText",
    "Node",
    "Rule",
    "RuleSet",
    "SetRef",
    "Term",
    "TermSet",
    "TermSyntaxError",
    "check_example",
    "evaluate",
    "find_rule_files",
    "fold",
    "lint_rules",
    "load_rules",
    "match_rule",
    "why_not",
]
