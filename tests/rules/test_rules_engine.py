"""The compiled engine returns exactly what the reference evaluator returns, and skips work."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.model import Item, Severity
from monitor.rules import AtLeast, Group, Near, Node, Regex, Rule, RuleSet, SetRef, Term
from monitor.rules.engine import Engine, IndexedText, _RegexSet, _Rest
from monitor.rules.text import fold, scan_form

WHEN = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)

# Words that terms are made of and texts are made of, so that generated rules do match.
WORDS = [
    "kazakh",
    "Kazakhstan",
    "tungsten",
    "bid",
    "bidding",
    "US",
    "us",
    "Upper",
    "Kairakty",
    "казахстан",
    "Казахстана",
    "вольфрам",
    "вольфрама",
    "Қазақстан",
    "ёлка",
    "елка",
    "KZ",
    "kz",
    "Straße",
    "strasse",
    "钨",
    "钨矿",
    "稀土",
    "哈哈",
    "DFC",
    "2025",
    "ＫＺ",  # full width: folds to kz
    "αλφα",  # Greek: in the engine's byte scan form
    "բառ",  # Armenian, "æble", Thai: outside it, looked for in the text itself
    "æble",
    "ทอง",
    "bid_us",
]
SEPARATORS = [" ", " ", ", ", "-", ". ", "\n", "", "\u00ad", "…", "年", "！"]
SEPARATORS += ["«", "» ", "—", "_", "。", "\u200b", "🚀"]
TERMS = [
    "kazakh*",
    "Kazakhstan",
    "tungsten",
    "bid",
    "bid*",
    "Upper Kairakty",
    "казахстан*",
    "вольфрам",
    "қазақстан*",
    "елка",
    "strasse",
    "钨",
    "钨矿",
    "稀土",
    "哈哈",
    "DFC",
    "dfc 2025",
    "2025",
    "us",
    "αλφα",
    "բառ",
    "æbl*",
    "ทอง",
    "bid* kazakh*",
]

words_text = st.lists(
    st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPARATORS)), min_size=3, max_size=30
).map(lambda pairs: "".join(word + sep for word, sep in pairs))
texts = st.one_of(
    words_text,
    words_text,
    words_text,
    st.text(max_size=20),
    st.tuples(words_text, st.text(max_size=6)).map("".join),
)
# Mostly ignoring case and mostly on the default fields, so that generated rules often match.
cases = st.sampled_from([False, False, False, True])

terms = st.builds(
    Term.parse,
    st.sampled_from(TERMS),
    case=cases,
)
regexes = st.builds(
    Regex.parse,
    st.sampled_from(["tung[a-z]+", "каз[а-я]+", "20[0-9]{2}", "钨.", "k[az]+h", "(?:bid|us)s?"]),
    case=cases,
)


def in_set(member: Term | Regex, name: str) -> Term | Regex:
    """A set's own copy of a term or regex (its hits say "@name:...")."""
    kind = Regex if isinstance(member, Regex) else Term
    return kind.parse(member.written, case=member.case, set_name=name)


set_refs = st.builds(
    lambda name, members: SetRef(name, tuple(in_set(member, name) for member in members)),
    st.sampled_from(["a", "b"]),
    st.lists(terms | terms | regexes, min_size=1, max_size=3),
)
leaves = terms | regexes | set_refs
field_choices = st.sampled_from(
    [None, None, None, ("title",), ("summary",), ("tags",), ("link",), ("title", "lang")]
)


def groups(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    """Groups, proximity and at-least nodes over ``children``; built so every one is valid
    (a filter here would make hypothesis print the whole strategy)."""
    group = st.builds(
        Group,
        all_of=st.lists(children, max_size=1).map(tuple),
        any_of=st.lists(children, min_size=1, max_size=3).map(tuple),
        none_of=st.lists(children, max_size=1).map(tuple),
        fields=field_choices,
    )
    how_near = st.just((None, True)) | st.tuples(st.integers(0, 4), st.booleans())
    near = st.builds(
        lambda of, how, fields: Near(of, how[0], how[1], fields),
        st.lists(terms | regexes | set_refs, min_size=2, max_size=3).map(tuple),
        how_near,
        field_choices,
    )
    at_least = st.builds(
        AtLeast,
        count=st.integers(1, 3),
        of=st.lists(children, min_size=1, max_size=4).map(tuple),
        fields=field_choices,
    )
    return group | near | at_least


nodes = st.recursive(leaves, groups, max_leaves=4)
top_groups = st.builds(
    Group,
    all_of=st.lists(nodes, max_size=1).map(tuple),
    any_of=st.lists(nodes, min_size=1, max_size=3).map(tuple),
    none_of=st.lists(nodes, max_size=1).map(tuple),
)


def make_rule(number: int, match: Group, enabled: bool, sources: tuple[str, ...]) -> Rule:
    return Rule(
        id=f"r{number}",
        title=f"Rule {number}",
        severity=Severity.LOW,
        match=match,
        enabled=enabled,
        sources=sources,
    )


scopes = st.sampled_from([(), (), ("feed",), ("x",)])
rule_lists = st.lists(
    st.tuples(top_groups, st.booleans() | st.just(True), scopes),
    min_size=1,
    max_size=4,
).map(
    lambda specs: tuple(
        make_rule(number, match, enabled, sources)
        for number, (match, enabled, sources) in enumerate(specs)
    )
)
items = st.builds(
    lambda title, summary, tags, link, lang: Item(
        id="i",
        source="feed",
        title=title,
        summary=summary,
        link=link,
        published=WHEN,
        lang=lang,
        tags=tuple(tags),
    ),
    texts,
    texts,
    st.lists(words_text, max_size=2),
    st.sampled_from(["", "https://news.example/kz/tungsten-2025", "https://x.example/稀土"]),
    st.none() | st.sampled_from(["ru", "kk", "zh-CN", "en"]),
)


@pytest.mark.slow  # hundreds of generated rule sets: the full suite runs it, not test-fast
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_lists, items)
def test_engine_equals_reference(rules: tuple[Rule, ...], subject: Item) -> None:
    """Same rules, same item: the engine's matches, hits and order are the reference's."""
    ruleset = RuleSet(rules, "v")
    assert ruleset.match(subject) == ruleset.match_reference(subject)


@pytest.mark.slow  # hundreds of generated rule sets: the full suite runs it, not test-fast
@settings(max_examples=300, deadline=None)
@given(rule_lists, st.lists(items, min_size=2, max_size=4))
def test_engine_equals_reference_item_after_item(
    rules: tuple[Rule, ...], batch: list[Item]
) -> None:
    """Nothing leaks from one item to the next: the index is shared, the scan is not."""
    ruleset = RuleSet(rules, "v")
    for subject in batch:
        assert ruleset.match(subject) == ruleset.match_reference(subject)


def item(title: str, summary: str = "") -> Item:
    return Item(id="i", source="feed", title=title, summary=summary, link="", published=WHEN)


def t(written: str, *, case: bool = False) -> Term:
    return Term.parse(written, case=case)


def test_only_rules_whose_keys_occur_are_evaluated(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the index: a rule about copper is not even looked at for a tungsten item."""
    rules = tuple(
        make_rule(number, Group(all_of=(t(word), t("tender"))), True, ())
        for number, word in enumerate(["tungsten", "copper", "gold", "lithium"])
    )
    evaluated: list[str] = []
    import monitor.rules.engine as engine_module
    from monitor.rules.match import match_rule as original

    def spy(rule: Rule, text: IndexedText, version: str) -> object:
        evaluated.append(rule.id)
        return original(rule, text, version)

    monkeypatch.setattr(engine_module, "match_rule", spy)
    matches = RuleSet(rules, "v").match(item("Tungsten tender opens"))
    assert [found.rule_id for found in matches] == ["r0"]
    assert evaluated == ["r0"]


def test_every_clause_must_meet_the_text_before_a_rule_is_evaluated() -> None:
    engine = Engine([make_rule(0, Group(all_of=(t("tungsten"), t("tender"))), True, ())])
    assert engine.match(item("tungsten prices"), "v") == []
    assert [m.rule_id for m in engine.match(item("tungsten tender"), "v")] == ["r0"]


@pytest.mark.parametrize(
    ("match", "title"),
    [
        (Group(any_of=(Regex.parse("20[0-9]{2}"),)), "Plan for 2030"),
        (Group(all_of=(t("KZ", case=True),)), "Tender in KZ"),
        (Group(all_of=(t("tungsten"),), none_of=(t("bulb*"),)), "tungsten mine"),
        (Group(any_of=(Group(all_of=(t("tungsten"),), fields=("link",)),)), "x"),
    ],
)
def test_regexes_case_sensitive_terms_exclusions_and_fields_go_through_the_index(
    match: Group, title: str
) -> None:
    subject = Item(
        id="i",
        source="feed",
        title=title,
        summary="",
        link="https://news.example/tungsten",
        published=WHEN,
    )
    ruleset = RuleSet((make_rule(0, match, True, ()),), "v")
    assert ruleset.match(subject) == ruleset.match_reference(subject)
    assert ruleset.match(subject)


def test_a_rule_without_any_key_is_always_evaluated() -> None:
    """A group whose only positive part is a regex still has a key (the RE2 set); only a rule
    the index can say nothing about is evaluated for every item, and it still works."""
    engine = Engine([make_rule(0, Group(any_of=(Regex.parse("tung[a-z]+"),)), True, ())])
    assert engine.keys == 1
    assert [m.rule_id for m in engine.match(item("Tungsten"), "v")] == ["r0"]


def test_the_index_counts_each_distinct_word_once() -> None:
    rules = [
        make_rule(0, Group(any_of=(t("tungsten"), t("tungsten mine"))), True, ()),
        make_rule(1, Group(any_of=(t("Tungsten"), t("tender*"))), True, ()),
    ]
    assert Engine(rules).keys == 3  # tungsten (written three times), mine, tender*


@pytest.mark.parametrize(
    ("memory", "sets", "always"), [(1 << 16, 0, 20), (1 << 19, 8, 0), (64 << 20, 1, 0)]
)
def test_regexes_that_do_not_fit_one_set_are_split_or_always_tried(
    monkeypatch: pytest.MonkeyPatch, memory: int, sets: int, always: int
) -> None:
    """RE2 sets have a memory budget; when the patterns do not fit, the engine splits the set,
    and a regex that fits in none is tried on every item rather than dropped."""
    monkeypatch.setattr(_RegexSet, "SET_MEMORY", memory)
    rules = tuple(
        make_rule(number, Group(any_of=(Regex.parse(f"stem{number}\\pL{{2,}}"),)), True, ())
        for number in range(20)
    )
    ruleset = RuleSet(rules, "v")
    regexes = ruleset.engine._regexes[False]
    assert (len(regexes._sets), len(regexes._unfiltered)) == (sets, always)
    subject = item("stem7abc and stem13xyz")
    assert [found.rule_id for found in ruleset.match(subject)] == ["r7", "r13"]
    assert ruleset.match(subject) == ruleset.match_reference(subject)


def naive_keys(engine: Engine, folded: str) -> set[int]:
    """The keys of a folded field by definition: a whole word bounded on both sides, a
    prefix bounded at its start, a word of Chinese and the like anywhere."""
    found: set[int] = set()
    for key, (word, edges) in enumerate(engine.key_words):
        before = "" if edges == 0 else r"(?<![^\W_])"
        after = r"(?![^\W_])" if edges == 2 else ""
        if re.search(before + re.escape(word) + after, folded):
            found.add(key)
    return found


@settings(max_examples=300, deadline=None)
@given(st.lists(terms, min_size=1, max_size=8), texts)
def test_the_scan_finds_exactly_the_words_that_occur(found_terms: list[Term], text: str) -> None:
    """Whole words, prefixes and Chinese substrings, in the byte scan form or (for words
    outside it) in the text itself: the scan finds every key that occurs.  It finds only
    those when every character of the text is in the scan form; otherwise a character
    outside it reads as a separator, and a word next to one may be reported too: that
    costs a look at its rules, never a match."""
    engine = Engine([make_rule(0, Group(any_of=tuple(found_terms)), True, ())])
    folded = fold(text).text
    expected = naive_keys(engine, folded)
    scanned = engine.keys_in(folded)
    assert expected <= scanned
    if not scan_form(folded)[1]:
        assert scanned == expected


def test_a_regex_runs_only_once_a_rule_that_needs_it_has_its_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A regex next to words is not part of every item's scan: it runs when the words of
    its rule occurred, once per item however many rules share it."""
    regex = Regex.parse("20[0-9]{2}")
    rules = [
        make_rule(0, Group(all_of=(t("tungsten"),), any_of=(regex,)), True, ()),
        make_rule(1, Group(all_of=(t("tender"), regex)), True, ()),
    ]
    engine = Engine(rules)
    assert engine.scanned_regexes == frozenset()
    runs: list[int] = []
    original = Engine.regex_occurs

    def spy(self: Engine, text: IndexedText, key: int) -> bool:
        runs.append(key)
        return original(self, text, key)

    monkeypatch.setattr(Engine, "regex_occurs", spy)
    assert engine.match(item("Copper prices in 2025"), "v") == []
    assert runs == []
    found = engine.match(item("Tungsten tender for 2025"), "v")
    assert [match.rule_id for match in found] == ["r0", "r1"]
    assert len(runs) == 1


def test_at_least_is_indexed_under_all_but_count_minus_one_entries() -> None:
    """ "2 of a, b, c, d" cannot hold without one of any three of them: the rule is looked
    at only when one of those three occurs."""
    rule = make_rule(0, Group(all_of=(AtLeast(2, tuple(map(t, "abcd"))),)), True, ())
    engine = Engine([rule])
    assert len(engine.anchors) == 3
    assert [m.rule_id for m in engine.match(item("a b"), "v")] == ["r0"]
    assert [m.rule_id for m in engine.match(item("c d"), "v")] == ["r0"]
    assert engine.match(item("d"), "v") == []


def test_at_least_over_words_with_several_spellings_is_gated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A count over Kazakh words (each a group of spellings) is checked only when a word of a
    second group occurs: one word of "2 of these" can never be enough."""
    rule = make_rule(
        0, Group(all_of=(AtLeast(2, (t("қазақстан"), t("шығыс"), t("қорғасын"))),)), True, ()
    )
    engine = Engine([rule])
    checked: list[int] = []
    original = _Rest.met

    def spy(self: _Rest, text: IndexedText) -> bool:
        checked.append(1)
        return original(self, text)

    monkeypatch.setattr(_Rest, "met", spy)
    assert engine.match(item("Қазақстан жаңалықтары"), "v") == []
    assert checked == []
    assert [m.rule_id for m in engine.match(item("Qazaqstan шығыс"), "v")] == ["r0"]
    assert checked


def test_a_count_that_names_a_word_twice_is_met_by_that_word_alone() -> None:
    """ "2 of a, b, b, c" holds when b alone occurs (it counts twice), so b's own entries
    must not be gated on the others."""
    terms = (t("alpha"), t("beta"), t("beta"), t("gamma"))
    ruleset = RuleSet((make_rule(0, Group(all_of=(AtLeast(2, terms),)), True, ()),), "v")
    subject = item("beta news")
    assert [m.rule_id for m in ruleset.match(subject)] == ["r0"]
    assert ruleset.match(subject) == ruleset.match_reference(subject)


def test_a_rule_every_clause_of_which_holds_a_key_is_sure_under_it() -> None:
    """An ``any:`` of a word and a pair spreads into clauses that all hold that word: filed
    under it, the rule needs nothing more and is chosen at once, with no check."""
    match = Group(any_of=(t("kairakty"), Group(all_of=(t("tungsten"), t("tender")))))
    engine = Engine([make_rule(0, match, True, ())])
    kairakty = engine.key_words.index(("kairakty", 2))
    assert kairakty in engine.anchors
    sure, _gate, _pairs, _counts, _general = engine._filed[kairakty]
    assert sure == (0,)
    ruleset = RuleSet((make_rule(0, match, True, ()),), "v")
    for subject in (item("Kairakty deposit"), item("tungsten tender"), item("tungsten")):
        assert ruleset.match(subject) == ruleset.match_reference(subject)
    assert ruleset.match(item("Kairakty deposit"))
