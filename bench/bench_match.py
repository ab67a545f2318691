"""Matching benchmark: the compiled engine against the reference evaluator, 10 to 10,000 rules.

    python bench/bench_match.py [--kinds dense,news] [--sizes 10,100,1000,10000] [--rounds 7]
    python bench/bench_match.py --before /tmp/engine_before.py   # an older engine beside it

Rules and items are synthetic and deterministic (a fixed seed): a vocabulary of pseudo-words
in four scripts (Latin for English, Cyrillic for Russian, Cyrillic with Kazakh letters, and
two- or three-character Chinese words), 45,000 distinct words in all.  Rules are drawn from it
in the shapes analysts write: two words that must both appear, a word plus any of three, a
phrase, prefixes (``stem*``), exclusions, proximity and at-least, and a few regexes.  Items are
about 1,000 characters of one language each, with punctuation, so a typical item matches zero
to two rules; the mean is printed.  Two kinds of items:

- ``dense``: every word of an item comes from the rules' vocabulary, and Chinese words are
  made of 220 common characters, so that a sixth of all two-character strings are rule words
  and a Chinese item holds about 190 of them.  A stress test: the most work per item.
- ``news``: 15 % of an item's words come from the rules' vocabulary and the rest from 3,000
  common words per language that no rule watches (news text is mostly words nobody writes a
  rule for), and Chinese is written with those 220 characters half the time and 2,000 others
  the rest, so that rule words occur by chance about as often as in real Chinese text.

Only the matching stage is timed, on items already normalized, in one process on one core:
``RuleSet.match`` (the engine: fold, one automaton scan per field, evaluate the candidates)
and ``RuleSet.match_reference`` (every rule evaluated on its own).  The engine is timed in
rounds: in each, every size's rule set in turn takes one pass over all the items, in their
order (languages alternating), so that all sizes see the same minute of a machine whose speed
drifts.  The figures are medians over the rounds (items per second, the slowdown within each
round, time per item by language), with their range.  The index's memory is what
``tracemalloc`` sees while the engine is built: its Python objects; the automata
(ahocorasick-rs, in Rust) and RE2's sets (C++) allocate outside it.  Prints a Markdown
table.

``--before FILE`` times another version of ``monitor/rules/engine.py`` (a copy of the committed
one, say: ``git show HEAD:monitor/rules/engine.py > /tmp/engine_before.py``) in the same
rounds, each size's rule set built into both engines and both taking their pass in turn, and
prints the ratios: figures from one run on the same minutes of the machine, which is the only
fair way to compare two versions on a machine whose speed drifts.  Matching through it is
what ``RuleSet.match`` does with it (the same glossing), so only the engine differs.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monitor.model import Item, Match, Severity  # noqa: E402
from monitor.rules import AtLeast, Group, Near, Regex, Rule, RuleSet, Term, fold  # noqa: E402
from monitor.rules.engine import Engine  # noqa: E402
from monitor.rules.gloss import glossed  # noqa: E402

SEED = 20260105
WHEN = datetime(2026, 1, 5, tzinfo=UTC)
LATIN = "abcdefghijklmnopqrstuvwxyz"
RUSSIAN = "абвгдежзийклмнопрстуфхцчшщыьэюя"
KAZAKH = "аәбвгғдежзийкқлмнңоөпрстуұүфхһцчшщыіьэюя"
HANZI = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学"
    "对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面"
    "公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部"
    "正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关"
    "钨矿稀土出口管制投资合资勘探许可"
)
#: Two thousand ideographs spread over the CJK block, for the wider Chinese of ``news`` items.
WIDE_HANZI = "".join(chr(code) for code in range(0x4E00, 0x4E00 + 6000, 3))
KINDS = ("dense", "news")
#: The share of an item's words drawn from the rules' vocabulary, by kind of item.
RULE_WORD_SHARE = {"dense": 1.0, "news": 0.15}
FILLER_PER_LANGUAGE = 3_000
PUNCTUATION = {"latin": [" ", " ", " ", ", ", ". "], "cjk": ["", "", "", "，", "。"]}
WORDS_PER_SCRIPT = {"en": 12_000, "ru": 12_000, "kk": 9_000, "zh": 12_000}


@dataclass(frozen=True)
class Built:
    """One size's rule set, ready to time, with what building its index cost; ``match`` is
    ``RuleSet.match``, or the same through the ``--before`` engine."""

    rules: int
    ruleset: RuleSet
    keys: int
    memory_mib: float
    match: Callable[[Item], list[Match]]


@dataclass(frozen=True)
class Row:
    rules: int
    keys: int
    memory_mib: float
    matches_per_item: float
    #: Seconds per item, by language, in each round.
    rounds: tuple[dict[str, float], ...]
    reference_per_second: float

    def rates(self) -> list[float]:
        """Items per second in each round (the languages in equal numbers)."""
        return [len(costs) / sum(costs.values()) for costs in self.rounds]

    @property
    def engine_per_second(self) -> float:
        return statistics.median(self.rates())

    def micros(self, language: str) -> float:
        return statistics.median(costs[language] for costs in self.rounds) * 1e6


def vocabulary(rng: random.Random, kind: str = "dense") -> dict[str, list[str]]:
    """Distinct pseudo-words per language, the same on every run: the rules' vocabulary."""
    makers: dict[str, Callable[[], str]] = {
        "en": lambda: pseudo_word(rng, LATIN, 4, 10),
        "ru": lambda: pseudo_word(rng, RUSSIAN, 4, 11),
        "kk": lambda: pseudo_word(rng, KAZAKH, 4, 11) + rng.choice("әғқңөұүһі"),
        "zh": lambda: chinese_word(rng, kind, rng.choice((2, 2, 3))),
    }
    return {
        language: distinct(makers[language], count) for language, count in WORDS_PER_SCRIPT.items()
    }


def filler_words(rng: random.Random, words: dict[str, list[str]]) -> dict[str, list[str]]:
    """Common words of each language that no rule watches (shorter, as common words are)."""
    makers: dict[str, Callable[[], str]] = {
        "en": lambda: pseudo_word(rng, LATIN, 2, 9),
        "ru": lambda: pseudo_word(rng, RUSSIAN, 2, 10),
        "kk": lambda: pseudo_word(rng, KAZAKH, 2, 10),
        "zh": lambda: chinese_word(rng, "news", rng.choice((1, 2, 2))),
    }
    filler: dict[str, list[str]] = {}
    for language, make in makers.items():
        taken = set(words[language])
        filler[language] = distinct(make, FILLER_PER_LANGUAGE, avoid=taken)
    return filler


def distinct(make: Callable[[], str], count: int, avoid: set[str] | None = None) -> list[str]:
    found: dict[str, None] = {}
    while len(found) < count:
        word = make()
        if avoid is None or word not in avoid:
            found[word] = None
    return list(found)


def chinese_word(rng: random.Random, kind: str, size: int) -> str:
    if kind == "dense":
        return "".join(rng.choice(HANZI) for _ in range(size))
    return "".join(rng.choice(HANZI if rng.random() < 0.5 else WIDE_HANZI) for _ in range(size))


def pseudo_word(rng: random.Random, letters: str, shortest: int, longest: int) -> str:
    return "".join(rng.choice(letters) for _ in range(rng.randint(shortest, longest)))


def make_rules(count: int, words: dict[str, list[str]], rng: random.Random) -> tuple[Rule, ...]:
    return tuple(make_rule(number, words, rng) for number in range(count))


def make_rule(number: int, words: dict[str, list[str]], rng: random.Random) -> Rule:
    """One rule in one language, in one of the shapes analysts write."""
    language = rng.choice(list(WORDS_PER_SCRIPT))
    pool = words[language]

    def term(prefix: bool = False) -> Term:
        word = rng.choice(pool)
        if prefix and language != "zh" and len(word) > 6:
            return Term.parse(word[:5] + "*")
        return Term.parse(word)

    shape = number % 10
    if shape in (0, 1, 2):
        match = Group(all_of=(term(), term()))
    elif shape in (3, 4):
        match = Group(all_of=(term(),), any_of=(term(), term(), term()))
    elif shape == 5:
        separator = "" if language == "zh" else " "
        phrase = Term.parse(separator.join((rng.choice(pool), rng.choice(pool))))
        match = Group(any_of=(phrase, Group(all_of=(term(prefix=True), term()))))
    elif shape == 6:
        match = Group(all_of=(term(), term(prefix=True)), none_of=(term(),))
    elif shape == 7:
        match = Group(all_of=(Near((term(), term()), within=8, sentence=False),))
    elif shape == 8:
        match = Group(all_of=(AtLeast(2, (term(), term(), term(), term())),))
    elif number % 100 == 9:
        # Folded, as a regex must be written: a Traditional character in a pseudo-word
        # never occurs in folded text, which holds its Simplified form.
        stem = fold(rng.choice(pool)[:4]).text
        match = Group(all_of=(term(),), any_of=(Regex.parse(stem + r"\pL{2,}"),))
    else:
        match = Group(all_of=(term(), term()), fields=("title", "summary"))
    return Rule(id=f"rule-{number}", title=f"Rule {number}", severity=Severity.LOW, match=match)


def make_items(
    count: int,
    words: dict[str, list[str]],
    rng: random.Random,
    filler: dict[str, list[str]] | None = None,
    share: float = 1.0,
) -> list[Item]:
    """Items of about 1,000 characters, each in one language; ``share`` of their words from
    the rules' vocabulary, the others from ``filler``."""
    items = []
    for number in range(count):
        language = list(WORDS_PER_SCRIPT)[number % len(WORDS_PER_SCRIPT)]
        pools = (words[language], filler[language] if filler else [], share)
        title = text(rng, pools, language, 60)
        summary = text(rng, pools, language, 940)
        items.append(
            Item(
                id=f"item-{number}",
                source="bench",
                title=title,
                summary=summary,
                link=f"https://news.example/{number}",
                published=WHEN,
                lang=language,
            )
        )
    return items


def text(
    rng: random.Random, pools: tuple[Sequence[str], Sequence[str], float], language: str, size: int
) -> str:
    rule_words, filler, share = pools
    marks = PUNCTUATION["cjk" if language == "zh" else "latin"]
    parts: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(rule_words if share >= 1 or rng.random() < share else filler)
        if language != "zh" and rng.random() < 0.1:
            word = word.capitalize()
        parts.append(word + rng.choice(marks))
        length += len(parts[-1])
    return "".join(parts)[:size]


def rate(work: Callable[[Item], object], items: Sequence[Item], seconds: float) -> float:
    """Items per second, going round ``items`` for at least ``seconds`` (at least one pass of
    up to 20 items, so slow runs still finish)."""
    done = 0
    started = time.perf_counter()
    while True:
        work(items[done % len(items)])
        done += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and done >= min(len(items), 20):
            return done / elapsed


def build(size: int, words: dict[str, list[str]], engine_type: type[Any] = Engine) -> Built:
    rules = make_rules(size, words, random.Random(SEED + size))
    tracemalloc.start()
    engine = engine_type(rules)
    memory, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    ruleset = RuleSet(rules, "bench")
    match = ruleset.match
    if engine_type is not Engine:

        def match(item: Item) -> list[Match]:
            return glossed(engine.match(item, ruleset.version), ruleset.lexicon)

    return Built(size, ruleset, engine.keys, memory / 2**20, match)


def load_engine(path: str) -> type[Any]:
    """The ``Engine`` class of another version of ``monitor/rules/engine.py`` (it imports the
    rest of ``monitor`` from this checkout)."""
    spec = importlib.util.spec_from_file_location("engine_before", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    engine: type[Any] = module.Engine
    return engine


def time_rounds(
    built: Sequence[Built], items: Sequence[Item], rounds: int
) -> list[list[dict[str, float]]]:
    """Per size, per round: seconds per item by language.  Sizes take turns within a round."""
    timings: list[list[dict[str, float]]] = [[] for _ in built]
    for _round in range(rounds):
        for index, size in enumerate(built):
            timings[index].append(pass_time(size.match, items))
    return timings


def pass_time(match: Callable[[Item], object], items: Sequence[Item]) -> dict[str, float]:
    """Seconds per item by language for one pass of ``RuleSet.match`` over ``items``, in
    their order (the languages in turn, so that each item finds the caches as the item of
    another language left them: the less flattering order)."""
    spent = dict.fromkeys(WORDS_PER_SCRIPT, 0.0)
    counts = dict.fromkeys(WORDS_PER_SCRIPT, 0)
    languages = [item.lang or "" for item in items]
    clock = time.perf_counter
    last = clock()
    for item, language in zip(items, languages, strict=True):
        match(item)
        now = clock()
        spent[language] += now - last
        counts[language] += 1
        last = now
    return {language: spent[language] / counts[language] for language in spent}


def measure(
    sizes: Sequence[int], words: dict[str, list[str]], items: list[Item], args: argparse.Namespace
) -> tuple[list[Row], list[Row]]:
    """Rows for this engine and, with ``--before``, for the older one timed beside it."""
    built = [build(size, words) for size in sizes]
    if args.before:
        older = load_engine(args.before)
        built += [build(size, words, older) for size in sizes]
    for size in built:
        for item in items[:50]:
            size.match(item)  # warm the folding tables and caches
    for size in built[len(sizes) :]:
        if any(size.match(item) != size.ruleset.match(item) for item in items[:40]):
            raise SystemExit(f"the --before engine disagrees at {size.rules:,} rules")
    timings = time_rounds(built, items, args.rounds)
    rows = []
    references: dict[int, float] = {}
    for size, rounds in zip(built, timings, strict=True):
        matches = sum(len(size.match(item)) for item in items) / len(items)
        if size.rules not in references:
            references[size.rules] = rate(
                size.ruleset.match_reference, items, args.reference_seconds
            )
        reference = references[size.rules]
        rows.append(Row(size.rules, size.keys, size.memory_mib, matches, tuple(rounds), reference))
    return rows[: len(sizes)], rows[len(sizes) :]


def check_equal(sizes: Sequence[int], words: dict[str, list[str]], items: list[Item]) -> None:
    """The engine must agree with the reference on what is being timed."""
    rules = make_rules(min(sizes[-1], 1000), words, random.Random(SEED + min(sizes[-1], 1000)))
    ruleset = RuleSet(rules, "bench")
    for item in items[:40]:
        if ruleset.match(item) != ruleset.match_reference(item):
            raise SystemExit(f"engine and reference disagree on {item.id}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default=",".join(KINDS), help="dense, news or both")
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--items", type=int, default=2000, help="distinct items (default 2000)")
    parser.add_argument("--rounds", type=int, default=7, help="engine timing rounds (default 7)")
    parser.add_argument("--reference-seconds", type=float, default=2.0)
    parser.add_argument("--before", help="another engine.py to time beside this one")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    for kind in args.kinds.split(","):
        run_kind(kind, sizes, args)
    return 0


def run_kind(kind: str, sizes: Sequence[int], args: argparse.Namespace) -> None:
    rng = random.Random(SEED)
    words = vocabulary(rng, kind)
    filler = filler_words(random.Random(SEED + 1), words) if kind == "news" else None
    items = make_items(args.items, words, rng, filler, RULE_WORD_SHARE[kind])
    distinct = sum(len(pool) for pool in words.values())
    mean_chars = sum(len(item.title) + len(item.summary) for item in items) / len(items)
    print(
        f"## {kind} items: {RULE_WORD_SHARE[kind]:.0%} of their words from the rules' "
        f"vocabulary of {distinct:,} distinct words; {len(items):,} items of "
        f"{mean_chars:,.0f} characters on average (en, ru, kk, zh in turn)"
    )
    check_equal(sizes, words, items)
    rows, before = measure(sizes, words, items, args)
    print()
    print(
        f"| rules | index keys | index memory | matches/item | engine items/s "
        f"(median of {args.rounds}) | range | reference items/s | engine ÷ reference |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        rates = row.rates()
        print(
            f"| {row.rules:,} | {row.keys:,} | {row.memory_mib:.1f} MiB "
            f"| {row.matches_per_item:.2f} | {row.engine_per_second:,.0f} "
            f"| {min(rates):,.0f}–{max(rates):,.0f} "
            f"| {row.reference_per_second:,.1f} "
            f"| {row.engine_per_second / row.reference_per_second:,.0f}× |"
        )
    first, last = rows[0], rows[-1]
    slowdowns = [low / high for low, high in zip(first.rates(), last.rates(), strict=True)]
    print()
    print(
        f"engine slowdown from {first.rules:,} to {last.rules:,} rules: "
        f"{statistics.median(slowdowns):.2f}× (median of the rounds; "
        f"range {min(slowdowns):.2f}–{max(slowdowns):.2f}×)"
    )
    for row in (first, last):
        costs = ", ".join(f"{lang} {row.micros(lang):,.0f} µs" for lang in WORDS_PER_SCRIPT)
        print(f"engine time per item at {row.rules:,} rules (median): {costs}")
    print()
    if before:
        print_beside(before, rows, args)


def print_beside(before: Sequence[Row], after: Sequence[Row], args: argparse.Namespace) -> None:
    """The ``--before`` engine and this one, timed in the same rounds: medians and ratios."""
    print(f"### beside {args.before} (same rounds; ratios are medians of per-round ratios)")
    print()
    print(
        "| rules | before items/s | after items/s | after ÷ before "
        "| before µs en / ru / kk / zh | after µs en / ru / kk / zh |"
    )
    print("|---:|---:|---:|---:|---|---|")
    for old, new in zip(before, after, strict=True):
        ratios = [b / a for a, b in zip(old.rates(), new.rates(), strict=True)]
        print(
            f"| {new.rules:,} | {old.engine_per_second:,.0f} | {new.engine_per_second:,.0f} "
            f"| {statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f}) "
            f"| {' / '.join(f'{old.micros(lang):,.0f}' for lang in WORDS_PER_SCRIPT)} "
            f"| {' / '.join(f'{new.micros(lang):,.0f}' for lang in WORDS_PER_SCRIPT)} |"
        )
    print()
    for name, rows in (("before", before), ("after", after)):
        first, last = rows[0], rows[-1]
        slowdowns = [low / high for low, high in zip(first.rates(), last.rates(), strict=True)]
        print(
            f"{name}: slowdown from {first.rules:,} to {last.rules:,} rules "
            f"{statistics.median(slowdowns):.2f}× (rounds {min(slowdowns):.2f}–"
            f"{max(slowdowns):.2f}×)"
        )
    print()


if __name__ == "__main__":
    raise SystemExit(main())
