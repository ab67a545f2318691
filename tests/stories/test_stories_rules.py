"""Rules that ask for corroboration (``min_sources``, ``official``) and escalate, end to end:
real feeds over a local HTTP server, a private Redis, the Slack look-alike.

The event is the Upper Kairakty auction, as five outlets in three languages wrote it
(``ARRIVALS`` of ``test_stories_alerts``); ``kursiv`` is configured as a sister outlet of
``interfax-kz`` (one owner), so it does not count as an independent source.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from support.channel_fixtures import deliver_once_to_slack
from support.commands import run_monitor
from support.feed_server import FeedServer, rss
from support.servers import SlackServer
from test_stories_alerts import ARRIVALS

from monitor.app.embedded_redis import EmbeddedRedis
from monitor.cli.stories import render_story
from monitor.deliver.queue import AlertQueue
from monitor.ingest.fetch import Fetcher
from monitor.ingest.poll import PollContext, poll_once
from monitor.ingest.state import Store
from monitor.model import Source
from monitor.redisio import Keys
from monitor.rules import RuleSet, load_rules, stories_problems
from monitor.stories.store import StoryStore
from monitor.stories.story import (
    FollowUpPolicy,
    SourceMeta,
    StoryItem,
    gate_for,
    provenance,
    satisfied,
)

NOW = datetime(2026, 3, 2, 20, 0, tzinfo=UTC)
TERMS = """\
terms:
  kairakty: [Kairakty, Кайракт*, Қайрақты, 凯拉克特]
  tungsten: [tungsten, вольфрам*, 钨]
rules:
"""
CONFIRMED = (
    TERMS
    + """\
  - id: kairakty-confirmed
    title: Upper Kairakty tungsten, confirmed
    severity: medium
    min_sources: 3
    escalate: {sources: 4, severity: critical}
    match: {all: ["@kairakty", "@tungsten"]}
"""
)
OFFICIAL = (
    TERMS
    + """\
  - id: kairakty-official
    title: Upper Kairakty tungsten, officially
    severity: high
    official: true
    match: {all: ["@kairakty", "@tungsten"]}
"""
)
SOURCES = {
    "interfax-kz": SourceMeta("interfax-kz", kind="wire", country="kz", owner="interfax"),
    "kursiv": SourceMeta("kursiv", kind="news", country="kz", owner="interfax"),
    "reuters": SourceMeta("reuters", kind="wire", country="gb"),
    "xinhua": SourceMeta("xinhua", kind="state_media", country="cn"),
}
BY_OUTLET = {arrival[0]: arrival for arrival in ARRIVALS}
# Reuters, Interfax, then Interfax's sister Kursiv (still two owners), then the third
# independent outlet, then Chinese state media (the fourth).
ORDER = ["reuters", "interfax-kz", "kursiv", "fastmarkets", "xinhua"]


def ruleset(tmp_path: Path, text: str) -> RuleSet:
    (tmp_path / "rules.yaml").write_text(text, encoding="utf-8")
    return load_rules([tmp_path / "rules.yaml"])


def context_for(
    client: aioredis.Redis, session: aiohttp.ClientSession, sources: dict[str, SourceMeta]
) -> PollContext:
    keys = Keys("s")
    return PollContext(
        Fetcher(session),
        Store(client, keys),
        lambda: NOW,
        backfill=None,
        stories=StoryStore(client, keys, sources=sources),
        follow_ups=FollowUpPolicy(corroboration=3),
    )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


async def poll(feed_server: FeedServer, ctx: PollContext, rules: RuleSet, outlet: str) -> None:
    _, lang, title, summary = BY_OUTLET[outlet]
    item = {
        "title": title,
        "description": summary,
        "guid": f"{outlet}-1",
        "link": f"https://{outlet}.example/kairakty",
        "date": (NOW - timedelta(hours=1)).strftime("%a, %d %b %Y %H:%M:%S GMT"),
    }
    feed_server.put(f"/{outlet}.xml", rss([item], lang=lang))
    result = await poll_once(Source(outlet, feed_server.url(f"/{outlet}.xml")), rules, ctx)
    assert (result.status, result.new_items) == ("ok", 1), result


async def item_ids(client: aioredis.Redis) -> dict[str, str]:
    """The id of each outlet's item, by outlet, from the recorded history."""
    entries = await client.xrange("s:items")
    found: list[Any] = []
    for _, fields in entries or ():
        assert fields is not None
        found.append(json.loads(str(fields["item"]))["id"])
    return {str(i).split(":")[0]: str(i) for i in found}


async def queued(client: aioredis.Redis) -> list[dict[str, Any]]:
    await AlertQueue(client, Keys("s")).ensure_group()
    entries = await client.xrange("s:matches")
    return [json.loads(str(fields["match"])) for _, fields in entries or () if fields]


async def test_min_sources_alerts_at_the_third_independent_outlet_and_escalates_at_the_fourth(
    feed_server: FeedServer,
    redis_client: aioredis.Redis,
    session: aiohttp.ClientSession,
    slack_server: SlackServer,
    tmp_path: Path,
) -> None:
    rules = ruleset(tmp_path, CONFIRMED)
    ctx = context_for(redis_client, session, SOURCES)
    for outlet in ORDER[:3]:
        await poll(feed_server, ctx, rules, outlet)
        assert await queued(redis_client) == [], f"no alert before the third outlet ({outlet})"

    assert ctx.stories is not None
    story_id = await ctx.stories.story_of((await item_ids(redis_client))["kursiv"])
    assert story_id is not None
    story = await ctx.stories.story(story_id)
    assert story is not None
    (held,) = await ctx.stories.rule_states(story_id)
    assert held.describe(len(story.owners)) == "held: waiting for 3 independent sources (has 2)"

    await poll(feed_server, ctx, rules, "fastmarkets")
    (alert,) = await queued(redis_client)
    assert alert["item"]["source"] == "fastmarkets"
    shown = render_story(story, NOW, await ctx.stories.rule_states(story_id))
    assert f"kairakty-confirmed  alerted on {alert['item']['id']}" in shown
    assert (alert["severity"], alert.get("follow_up")) == ("medium", None)
    assert [n["source"] for n in alert["provenance"]] == ORDER[:4]
    assert not any(n["new"] for n in alert["provenance"])
    # Delivered before the next outlet reports (queued together, the escalation would be
    # folded into this message: tests/deliver/test_fold.py).
    await deliver_once_to_slack(redis_client, "s", slack_server.url, NOW)

    await poll(feed_server, ctx, rules, "xinhua")
    (escalation,) = await queued(redis_client)
    assert escalation["severity"] == "critical"
    assert escalation["follow_up"] == "escalated at 4 independent sources"
    assert [n["source"] for n in escalation["provenance"] if n["new"]] == ["xinhua"]

    await deliver_once_to_slack(redis_client, "s", slack_server.url, NOW)
    posted = [json.dumps(payload, ensure_ascii=False) for payload in slack_server.payloads]
    assert len(posted) == 2, posted
    assert (
        "Sources (4): reuters (wire, gb, en); interfax-kz (wire, kz, ru); kursiv (news, kz, ru)"
        in posted[0]
    )
    assert "Follow-up (escalated at 4 independent sources)" in posted[1]
    assert "Story: *Kazakhstan to auction Upper Kairakty" in posted[1]
    assert "New since the last message: *xinhua (state_media, cn, zh)*" in posted[1]


async def test_an_official_source_releases_a_rule_waiting_for_one(
    feed_server: FeedServer,
    redis_client: aioredis.Redis,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    rules = ruleset(tmp_path, OFFICIAL)
    official = {**SOURCES, "interfax-kz": SourceMeta("interfax-kz", kind="official")}
    ctx = context_for(redis_client, session, official)
    await poll(feed_server, ctx, rules, "reuters")
    await poll(feed_server, ctx, rules, "fastmarkets")
    assert await queued(redis_client) == [], "two outlets, but no official source yet"
    await poll(feed_server, ctx, rules, "interfax-kz")
    (alert,) = await queued(redis_client)
    assert alert["item"]["source"] == "interfax-kz"
    await poll(feed_server, ctx, rules, "kursiv")
    assert len(await queued(redis_client)) == 2  # later items: quiet updates, throttled
    assert (await queued(redis_client))[1].get("provenance") is None


async def test_a_held_alert_survives_a_redis_and_daemon_restart(
    feed_server: FeedServer,
    own_redis: EmbeddedRedis,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """Two outlets are held in Redis; Redis is restarted (from its append-only file) and a
    new poll context (a new daemon, with nothing in memory) sees the third outlet alert."""
    rules = ruleset(tmp_path, CONFIRMED)
    client = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        ctx = context_for(client, session, SOURCES)
        await poll(feed_server, ctx, rules, "reuters")
        await poll(feed_server, ctx, rules, "interfax-kz")
        assert await queued(client) == []
    finally:
        await client.aclose()
    own_redis.stop()
    own_redis.start()
    client = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        ctx = context_for(client, session, SOURCES)
        await poll(feed_server, ctx, rules, "fastmarkets")
        (alert,) = await queued(client)
        assert alert["rule"] == "kairakty-confirmed"
        assert len(alert["provenance"]) == 3
    finally:
        await client.aclose()


async def test_two_replicas_settling_at_once_alert_exactly_once(
    feed_server: FeedServer,
    redis_client: aioredis.Redis,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """The third and fourth independent outlets arrive at two replicas at the same moment:
    whichever settles first alerts, the other stays quiet."""
    rules = ruleset(tmp_path, CONFIRMED.replace("sources: 4", "sources: 9"))
    one, two = (context_for(redis_client, session, SOURCES) for _ in range(2))
    await poll(feed_server, one, rules, "reuters")
    await poll(feed_server, two, rules, "interfax-kz")
    await asyncio.gather(
        poll(feed_server, one, rules, "fastmarkets"), poll(feed_server, two, rules, "xinhua")
    )
    matches = await queued(redis_client)
    alerts = [m for m in matches if m.get("provenance") and not m.get("follow_up")]
    assert len(alerts) == 1, matches


async def test_a_held_rule_is_released_by_an_outlet_only_another_rule_watches(
    feed_server: FeedServer,
    redis_client: aioredis.Redis,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """The waiting rule watches two feeds only; the third outlet is matched by another rule,
    and still completes the story's count: the waiting rule alerts with the item it kept."""
    text = CONFIRMED.replace(
        "    min_sources: 3\n", "    min_sources: 3\n    sources: [reuters, interfax-kz]\n"
    )
    text += """\
  - id: kairakty-any
    title: Upper Kairakty, any outlet
    severity: low
    match: {all: ["@kairakty", "@tungsten"]}
"""
    rules = ruleset(tmp_path, text)
    ctx = context_for(redis_client, session, SOURCES)
    for outlet in ("reuters", "interfax-kz"):
        await poll(feed_server, ctx, rules, outlet)
    assert {m["rule"] for m in await queued(redis_client)} == {"kairakty-any"}
    await poll(feed_server, ctx, rules, "fastmarkets")
    (released,) = [m for m in await queued(redis_client) if m["rule"] == "kairakty-confirmed"]
    assert released["item"]["source"] == "reuters"  # the match it kept from its first item
    assert [n["source"] for n in released["provenance"]] == [
        "reuters",
        "interfax-kz",
        "fastmarkets",
    ]


def test_rules_needing_stories_are_named_for_a_config_without_them(tmp_path: Path) -> None:
    (problem,) = stories_problems(ruleset(tmp_path, CONFIRMED))
    assert "rule 'kairakty-confirmed' uses min_sources, escalate, which need stories" in str(
        problem
    )
    assert problem.location.line == 5  # the rule's id
    assert problem.hint is not None
    assert "stories: {enabled: true}" in problem.hint


def test_lint_with_a_config_refuses_min_sources_when_stories_are_off(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(CONFIRMED, encoding="utf-8")
    config = tmp_path / "monitor.yaml"
    config.write_text("stories: {enabled: false}\n", encoding="utf-8")
    refused = run_monitor("rules", "lint", str(tmp_path / "rules.yaml"), "-c", str(config))
    assert refused.returncode == 1
    assert "which need stories" in refused.stdout
    config.write_text("stories: {enabled: true}\n", encoding="utf-8")
    passed = run_monitor("rules", "lint", str(tmp_path / "rules.yaml"), "-c", str(config))
    assert passed.returncode == 0, passed.stdout + passed.stderr


# -- the pure decisions ------------------------------------------------------------------------


@given(
    st.integers(min_value=0, max_value=20),
    st.booleans(),
    st.integers(min_value=1, max_value=20),
    st.booleans(),
    st.integers(min_value=0, max_value=20),
)
def test_a_gate_once_satisfied_stays_satisfied(
    min_sources: int, official: bool, owners: int, has_official: bool, more: int
) -> None:
    """Sources only ever join a story, so the first item that satisfies a rule is the only
    one that can alert: satisfaction never turns back."""
    gate = gate_for(min_sources, official)
    if satisfied(gate, owners, has_official):
        assert satisfied(gate, owners + more, has_official)
        assert satisfied(gate, owners, True)


@pytest.mark.parametrize(
    ("min_sources", "official", "owners", "has_official", "expected"),
    [
        (1, False, 1, False, True),  # a plain rule: the first item
        (3, False, 2, False, False),
        (3, False, 3, False, True),
        (1, True, 5, False, False),  # official alone: waits for an official source
        (1, True, 1, True, True),
        (3, True, 1, True, True),  # both: either suffices
        (3, True, 3, False, True),
    ],
)
def test_what_satisfies_a_rule(
    min_sources: int, official: bool, owners: int, has_official: bool, expected: bool
) -> None:
    assert satisfied(gate_for(min_sources, official), owners, has_official) is expected


def _item(source: str, lang: str = "en") -> StoryItem:
    return StoryItem(source + lang, source, lang, "t", "", NOW, NOW, kind="wire", country="kz")


@given(
    st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=12),
    st.integers(min_value=-1, max_value=12),
)
def test_provenance_lists_each_source_once_and_marks_those_after_the_last_message(
    sources: list[str], told: int
) -> None:
    items = [_item(source) for source in sources]
    notes = provenance(items, told)
    assert [n.source for n in notes] == list(dict.fromkeys(sources))
    for note in notes:
        first = sources.index(note.source)
        assert note.new is (0 <= told <= first)
