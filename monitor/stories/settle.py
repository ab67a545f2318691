"""Stories and trends for a poll's matched items: between matching and the queue.

A poll (``monitor.ingest.poll``) hands each batch of items here twice.  Before recording,
``settle_batch`` puts the matched items into their stories and says, for every record, which
matches to queue: held until corroborated, the story's alert, a follow-up, an escalation or a
quiet update.  After recording, ``count_trends`` counts the newly recorded matched items for
the volume trends and first mentions.  Records are read through ``Record`` (the ingest
side's ``ItemRecord`` fits it) and answered with plain ``Queued`` values that the poll
applies, so stories never import ingest (the layers contract in ``pyproject.toml``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

import structlog

from monitor.model import Item
from monitor.rules import RuleSet
from monitor.rules.expr import FirstMention, Trend
from monitor.stories.store import RuleVerdict, Settlement, StoryStore
from monitor.stories.story import FollowUpPolicy, Gate, follow_up_reason, gate_for, provenance
from monitor.stories.trends import (
    VolumeCounts,
    first_mention_match,
    mentioned,
    trend_match,
    volume_rule,
    watched_rules,
)
from monitor.stories.volume import VolumeStore

log = structlog.get_logger("monitor.stories.settle")


class Record(Protocol):
    """What settlement reads of one item of a batch (``monitor.ingest.dedup.ItemRecord``)."""

    @property
    def item_json(self) -> str: ...

    @property
    def match_json(self) -> tuple[str, ...]: ...

    @property
    def rules(self) -> tuple[str, ...]:
        """The rule of each match, in order."""

    @property
    def update(self) -> bool:
        """A republished, materially changed item."""

    @property
    def prior(self) -> tuple[str, ...]:
        """For an update, the rules it matched when it was last recorded."""


R = TypeVar("R", bound=Record)


@dataclass(frozen=True, slots=True)
class Queued:
    """What to record and queue with one item: its matches' JSON and the rule of each."""

    match_json: tuple[str, ...]
    rules: tuple[str, ...]


def by_publication(batch: Sequence[R]) -> list[R]:
    """The batch oldest first (ties by id): stories are assigned in this order, and the
    queue must carry a story's alert before the quiet updates of its later reports, which
    delivery throttles as the story's reprints.  Pure."""

    def published(record: R) -> tuple[datetime, str]:
        item = Item.from_dict(json.loads(record.item_json))
        return item.published, item.id

    return sorted(batch, key=published)


async def settle_batch(
    batch: Sequence[Record],
    rules: RuleSet,
    stories: StoryStore,
    policy: FollowUpPolicy,
    now: datetime,
) -> list[Queued]:
    """What to queue with each record of a batch (same order), its matched items put into
    their stories in publication order (oldest first, ties by id).

    A first poll or a catch-up hands over weeks of items at once; assigned as they were
    published, they form the stories they would have formed arriving one by one (the store
    decides on publication time, and this order also keeps a story's first item its
    earliest report).  Items without matches are queued as they are.

    The edit of an item that was clustered when first seen, and whose story assignment has
    expired since (the story window), is also queued as it is, outside any story: assigned
    again, it would become a second member of a story under the same id.
    """
    alone: set[int] = set()
    for position, record in enumerate(batch):
        if record.update and record.prior and record.match_json:
            item_id = str(json.loads(record.item_json)["id"])
            if await stories.story_of(item_id) is None:
                log.info("update outside its story", item=item_id, rules=list(record.rules))
                alone.add(position)
    parsed = {
        position: Item.from_dict(json.loads(record.item_json))
        for position, record in enumerate(batch)
        if record.match_json and position not in alone
    }
    order = sorted(parsed, key=lambda position: (parsed[position].published, parsed[position].id))
    queued = [Queued(record.match_json, record.rules) for record in batch]
    for position in order:
        queued[position] = await _with_story(
            batch[position], parsed[position], rules, stories, policy, now
        )
    return queued


async def _with_story(
    record: Record,
    item: Item,
    rules: RuleSet,
    stories: StoryStore,
    policy: FollowUpPolicy,
    now: datetime,
) -> Queued:
    """Put a matched item into its story and settle what each rule says about it: held
    until corroborated, the story's alert, a follow-up worth telling, an escalation, or a
    quiet update (queued, then throttled by delivery as the story's reprint).

    Only matched items are clustered: a story is what the rules watch, and assigning costs
    three Redis round trips and settling one more, too many for every item of a first poll.
    Assigning and settling are idempotent, so a poll retried after a crash gets the same
    story and the same verdicts back.  A rule held on an earlier item may be released by
    this one; its kept match is then queued with this item's record.
    """
    update = await stories.assign(item, now)
    reason = follow_up_reason(update, policy)
    current = {}
    for match_json in record.match_json:
        data = json.loads(match_json)
        current[str(data["rule"])] = data
    entries = [
        (rule_id, _gate(rules, rule_id), json.dumps(data, ensure_ascii=False))
        for rule_id, data in current.items()
    ]
    settled = await stories.settle(update.story_id, item.id, entries, tell=reason is not None)
    queued: list[dict[str, Any]] = []
    for verdict in settled.verdicts:
        data = current.get(verdict.rule_id) or (json.loads(verdict.kept) if verdict.kept else None)
        message = _story_message(data, verdict, rules, settled, update.story_id, reason)
        if message is not None:
            queued.append(message)
        elif verdict.status == "held":
            log.info("alert held", rule=verdict.rule_id, story=update.story_id, item=item.id)
    return Queued(
        match_json=tuple(json.dumps(m, ensure_ascii=False) for m in queued),
        rules=tuple(str(m["rule"]) for m in queued),
    )


def _gate(rules: RuleSet, rule_id: str) -> Gate:
    rule = rules.by_id.get(rule_id)
    if rule is None:
        return Gate()
    escalate_at = rule.escalate.sources if rule.escalate is not None else 0
    return gate_for(rule.min_sources, rule.official, escalate_at)


def _story_message(
    data: dict[str, Any] | None,
    verdict: RuleVerdict,
    rules: RuleSet,
    settled: Settlement,
    story_id: str,
    reason: str | None,
) -> dict[str, Any] | None:
    """The match to queue for one rule's verdict, or None when there is nothing to queue: the
    rule holds its alert, or a match it kept has nothing new to say.

    Pure.  The story's alert and its follow-ups carry the story's headline and provenance
    (follow-ups and escalations mark the sources new since the rule last spoke); quiet
    updates carry only the story, for the throttle.
    """
    if data is None or verdict.status == "held":
        return None
    rule = rules.by_id.get(verdict.rule_id)
    escalate = rule.escalate if rule is not None else None
    escalates = verdict.escalated and escalate is not None
    if verdict.kept and (rule is None or not (verdict.status == "alert" or escalates)):
        return None  # a kept match speaks only to alert or escalate, for a rule still loaded
    data = {key: value for key, value in data.items() if key not in ("follow_up", "provenance")}
    data["story"] = story_id
    follow_up = None
    if escalates and escalate is not None:
        data["severity"] = escalate.severity.label
        if verdict.status != "alert":
            follow_up = f"escalated at {escalate.sources} independent sources"
    elif verdict.status == "quiet" and reason:
        follow_up = reason
    if follow_up:
        data["follow_up"] = follow_up
    speaks = verdict.status == "alert" or escalates or follow_up is not None
    if speaks and settled.items:
        told = verdict.told if follow_up else -1
        data["story_title"] = settled.items[0].title
        data["provenance"] = [note.to_dict() for note in provenance(settled.items, told)]
    return data


async def count_trends(
    records: Sequence[Record], rules: RuleSet, volume: VolumeStore, now: datetime
) -> None:
    """Count newly recorded matched items for the volume trends, and look for first mentions.

    ``records`` hold every match the items had, held ones included: a trend counts what the
    rules matched, whether or not it has alerted yet.  Each trend fires at most once per
    burst (or once per entity), queued in one step with its marker, across replicas.
    """
    seen = [(Item.from_dict(json.loads(record.item_json)), set(record.rules)) for record in records]
    for trend in rules.trends:
        if not trend.enabled:
            continue
        if isinstance(trend.watch, FirstMention):
            await _first_mentions(trend, trend.watch, seen, rules.version, volume)
            continue
        watched = watched_rules(trend.watch.of, rules)
        hits = [item for item, ids in seen if ids & watched]
        if not hits:
            continue
        counting = volume_rule(trend)

        def build(
            reason: str, counts: VolumeCounts, trend: Trend = trend, latest: Item = hits[-1]
        ) -> str:
            match = trend_match(trend, reason, counts, latest, rules.version, now)
            return json.dumps(match.to_dict(), ensure_ascii=False)

        fired = await volume.observe(counting, now, len(hits), build)
        if fired is not None:
            log.info("trend fired", rule=trend.id, reason=fired, count=len(hits))


async def _first_mentions(
    trend: Trend,
    watch: FirstMention,
    seen: Sequence[tuple[Item, set[str]]],
    version: str,
    volume: VolumeStore,
) -> None:
    alerts: list[tuple[str, str]] = []  # (entity, match JSON)
    for item, ids in seen:
        if watch.rule not in ids:
            continue
        for entity, hits in mentioned(watch, item):
            match = first_mention_match(trend, watch, item, entity, hits, version)
            alerts.append((entity, json.dumps(match.to_dict(), ensure_ascii=False)))
    chosen: dict[str, str] = {}
    for entity, payload in alerts:
        chosen.setdefault(entity, payload)  # an entity twice in one batch: its first item
    for entity in await volume.first_mentions(trend.id, list(chosen), list(chosen.values())):
        log.info("trend fired", rule=trend.id, reason="first mention", entity=entity)
