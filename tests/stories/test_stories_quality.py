"""Story clustering quality on the hand-labelled set: pairwise precision and recall.

Run ``pytest tests/stories/test_stories_quality.py -s`` to see the figures; the floors are the
ones issues 7 and 15 set (precision >= 0.95, recall >= 0.85), held by two replays: each item
alone at its publication time, and every item at once in shuffled orders.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.model import Item, parse_timestamp
from monitor.stories.cluster import Extractor, MemoryStories

LABELLED = Path(__file__).parents[1] / "data" / "stories" / "labelled.yaml"
PRECISION_FLOOR = 0.95
RECALL_FLOOR = 0.85
SHUFFLES = 20
"""Arrival orders tried for the all-at-once replay."""


@dataclass(frozen=True, slots=True)
class Labelled:
    """The labelled set: items in time order and each item's true story."""

    items: tuple[Item, ...]
    story: Mapping[str, str]
    sources: Mapping[str, Mapping[str, str]]


def load_labelled(path: Path = LABELLED) -> Labelled:
    """Read the YAML: reprints copy their original's text and language under their own
    title and link (and summary, when they give a shortened one)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw: dict[str, dict[str, Any]] = {}
    story: dict[str, str] = {}
    for entry in data["stories"]:
        for item in entry["items"]:
            if "reprint_of" in item:
                original = raw[item["reprint_of"]]
                item = {**original, **{k: v for k, v in item.items() if k != "reprint_of"}}
            raw[item["id"]] = item
            story[item["id"]] = entry["id"]
    for item in data["singletons"]:
        raw[item["id"]] = item
        story[item["id"]] = f"single:{item['id']}"
    items = sorted((_item(entry) for entry in raw.values()), key=lambda i: (i.published, i.id))
    return Labelled(tuple(items), story, data["sources"])


def _item(entry: Mapping[str, Any]) -> Item:
    return Item(
        id=str(entry["id"]),
        source=str(entry["source"]),
        title=str(entry["title"]),
        summary=" ".join(str(entry["summary"]).split()),
        link=str(entry["link"]),
        published=parse_timestamp(entry["at"]),
        lang=str(entry["lang"]),
    )


@dataclass(frozen=True, slots=True)
class PairScores:
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        wanted = self.true_positives + self.false_negatives
        return self.true_positives / wanted if wanted else 1.0


def pairwise(
    truth: Mapping[str, str], predicted: Mapping[str, str], ids: Sequence[str]
) -> PairScores:
    """Every pair of items counts once: together in truth and prediction is a true positive."""
    tp = fp = fn = 0
    for a, b in itertools.combinations(ids, 2):
        same, joined = truth[a] == truth[b], predicted[a] == predicted[b]
        tp += same and joined
        fp += joined and not same
        fn += same and not joined
    return PairScores(tp, fp, fn)


def cluster(labelled: Labelled) -> dict[str, str]:
    """Each item arriving alone, at its publication time, in publication order."""
    stories = MemoryStories(Extractor())
    for item in labelled.items:
        stories.add(item)
    return dict(stories.assignment)


def cluster_at_once(labelled: Labelled, seed: int) -> dict[str, str]:
    """Every item arriving at one moment (a first poll, a catch-up), in a shuffled order:
    the store is told nothing but the items, whose publication times are all it reads."""
    items = list(labelled.items)
    random.Random(seed).shuffle(items)
    stories = MemoryStories(Extractor())
    for item in items:
        stories.add(item)
    return dict(stories.assignment)


def cluster_batch(labelled: Labelled, seed: int) -> dict[str, str]:
    """All at once as one poll hands them over: shuffled, then assigned in publication
    order as ``monitor.ingest.poll`` does within a batch."""
    items = list(labelled.items)
    random.Random(seed).shuffle(items)
    stories = MemoryStories(Extractor())
    for item in sorted(items, key=lambda i: (i.published, i.id)):
        stories.add(item)
    return dict(stories.assignment)


def partition(assignment: Mapping[str, str]) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for item_id, story in assignment.items():
        groups.setdefault(story, set()).add(item_id)
    return {frozenset(group) for group in groups.values()}


def report(name: str, labelled: Labelled, predicted: Mapping[str, str]) -> PairScores:
    scores = pairwise(labelled.story, predicted, [item.id for item in labelled.items])
    print(
        f"\n{name}, {len(labelled.items)} labelled items: "
        f"pairwise precision {scores.precision:.3f}, recall {scores.recall:.3f} "
        f"(TP {scores.true_positives}, FP {scores.false_positives}, "
        f"FN {scores.false_negatives})"
    )
    return scores


@pytest.fixture(scope="module")
def labelled() -> Labelled:
    return load_labelled()


@pytest.fixture(scope="module")
def one_by_one(labelled: Labelled) -> dict[str, str]:
    return cluster(labelled)


@pytest.fixture(scope="module")
def at_once(labelled: Labelled) -> list[dict[str, str]]:
    return [cluster_at_once(labelled, seed) for seed in range(SHUFFLES)]


def test_the_labelled_set_is_what_the_issue_asks_for(labelled: Labelled) -> None:
    """At least 150 items in the four languages, with multi-item stories and reprints, and
    (issue 15) at least 30 items of long-running coverage in all four languages."""
    assert len(labelled.items) >= 185
    assert Counter(item.lang for item in labelled.items).keys() == {"en", "zh", "ru", "kk"}
    sizes = Counter(labelled.story.values())
    assert sum(1 for size in sizes.values() if size >= 3) >= 12
    assert sum("utm_" in item.link for item in labelled.items) >= 20
    months = [item for item in labelled.items if item.published.month >= 4]
    assert len(months) >= 30
    assert {item.lang for item in months} == {"en", "zh", "ru", "kk"}


def test_pairwise_precision_and_recall_meet_the_floors_one_by_one(
    labelled: Labelled, one_by_one: dict[str, str]
) -> None:
    """Items arriving alone at their publication times: clustering puts items of one event
    together and keeps different events apart."""
    scores = report("one by one at publication times", labelled, one_by_one)
    assert scores.precision >= PRECISION_FLOOR
    assert scores.recall >= RECALL_FLOOR


def test_pairwise_precision_and_recall_meet_the_floors_all_at_once(
    labelled: Labelled, one_by_one: dict[str, str], at_once: list[dict[str, str]]
) -> None:
    """Every item arriving at one moment, in each of SHUFFLES orders, meets the same floors
    against the truth and gives exactly the stories of the one-by-one replay: an item that
    links two stories strongly merges them, and one that links a weak member of another
    story strongly takes it over (``cluster.plan``)."""
    ids = [item.id for item in labelled.items]
    same = 0
    worst = (1.0, 1.0)
    for predicted in at_once:
        scores = pairwise(labelled.story, predicted, ids)
        assert scores.precision >= PRECISION_FLOOR
        assert scores.recall >= RECALL_FLOOR
        agreement = pairwise(one_by_one, predicted, ids)
        assert agreement.precision >= PRECISION_FLOOR
        assert agreement.recall >= PRECISION_FLOOR
        worst = (min(worst[0], scores.precision), min(worst[1], scores.recall))
        same += partition(predicted) == partition(one_by_one)
    print(
        f"\nall at once, {SHUFFLES} shuffled orders: worst pairwise precision {worst[0]:.3f}, "
        f"recall {worst[1]:.3f}; {same} of {SHUFFLES} orders give the same stories as one by one"
    )
    assert same == SHUFFLES


def test_a_poll_batch_in_any_feed_order_makes_exactly_the_one_by_one_stories(
    labelled: Labelled, one_by_one: dict[str, str]
) -> None:
    """A poll assigns its batch in publication order, so a first poll or a catch-up of one
    feed forms exactly the stories the items would have formed arriving one by one."""
    for seed in range(5):
        assert partition(cluster_batch(labelled, seed)) == partition(one_by_one)


def test_stories_sharing_a_deposit_are_kept_apart(
    one_by_one: dict[str, str], at_once: list[dict[str, str]]
) -> None:
    """The Upper Kairakty auction and the Cove Kaz investment share the deposit, the
    country and the commodity, but are two events."""
    for predicted in [one_by_one, *at_once]:
        assert predicted["ka-en-1"] != predicted["ck-en-1"]
        assert predicted["ck-en-2"] == predicted["ck-en-1"]


def test_monthly_statistics_from_one_template_are_two_stories(
    one_by_one: dict[str, str], at_once: list[dict[str, str]]
) -> None:
    for predicted in [one_by_one, *at_once]:
        assert predicted["xj-en-1"] != predicted["xf-en-1"]
        assert predicted["xj-ru-1"] != predicted["xf-ru-1"]


# Distinct events weeks apart that share a deposit, a company, a stake or a dollar figure:
# the Koktenkol tender ($200 million), its award to Jiaxin ($200 million) eleven weeks
# later, the joint venture (49 %) and the export halt; Jiaxin's $200 million Boguty expansion
# and the Boguty export halt; ERG's 49 % of Severny Katpar and the deal's closing.
DISTINCT_EVENTS = [
    "kt1-en-1", "kt2-en-1", "kt3-en-1", "kt4-en-1", "bx-en-1", "bh-en-1", "sk2-en-1", "sk3-en-1",
]  # fmt: skip


def test_recurring_deposits_companies_and_figures_weeks_apart_stay_apart(
    one_by_one: dict[str, str], at_once: list[dict[str, str]]
) -> None:
    for predicted in [one_by_one, *at_once]:
        stories = [predicted[item_id] for item_id in DISTINCT_EVENTS]
        assert len(set(stories)) == len(DISTINCT_EVENTS), stories


def test_every_language_of_a_story_joins_it(
    one_by_one: dict[str, str], at_once: list[dict[str, str]]
) -> None:
    """Including short reports in another language that share only the deposit or company
    and the commodity with the wire, published within hours of it."""
    for predicted in [one_by_one, *at_once]:
        for first, others in {
            "ka-en-1": ["ka-ru-1", "ka-kk-1", "ka-zh-1", "ka-zh-2"],
            "zk-en-1": ["zk-ru-1", "zk-kk-1", "zk-zh-1"],
            "mp-en-1": ["mp-zh-1", "mp-ru-1", "mp-kk-1"],
            "kt1-en-1": ["kt1-ru-1", "kt1-kk-1", "kt1-zh-1"],
            "kt2-en-1": ["kt2-ru-1", "kt2-zh-1", "kt2-kk-1"],
            "kt4-en-1": ["kt4-ru-1", "kt4-kk-1"],
            "bx-en-1": ["bx-zh-1", "bx-ru-1", "bx-kk-1"],
            "bh-en-1": ["bh-ru-1", "bh-zh-1"],
            "sk2-en-1": ["sk2-ru-1", "sk2-kk-1", "sk2-zh-1"],
        }.items():
            assert {predicted[other] for other in others} == {predicted[first]}, first
