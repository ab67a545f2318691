"""One alert per story: reprints and rewrites of one event, polled from five real feeds in
three languages, reach Slack as one alert plus the follow-ups that say something new.

Real local feed server, private Redis, real Slack look-alike; nothing is mocked.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from support.channel_fixtures import deliver_once_to_slack
from support.commands import run_monitor
from support.feed_server import FeedServer, rss
from support.servers import SlackServer

from monitor.app.embedded_redis import EmbeddedRedis
from monitor.deliver.queue import AlertQueue
from monitor.ingest.fetch import Fetcher
from monitor.ingest.poll import PollContext, poll_once
from monitor.ingest.state import Store
from monitor.model import Item, Source
from monitor.redisio import Keys
from monitor.rules import RuleSet, load_rules
from monitor.stories.store import StoryStore
from monitor.stories.story import FollowUpPolicy

NOW = datetime(2026, 3, 2, 20, 0, tzinfo=UTC)
FRESH = format_datetime(datetime.now(UTC), usegmt=True)  # inside the backfill window
RULES = """\
terms:
  kairakty: [Kairakty, Кайракт*, Қайрақты, 凯拉克特]
  tungsten: [tungsten, вольфрам*, 钨]
rules:
  - id: kairakty
    title: Upper Kairakty tungsten
    severity: high
    match: {all: ["@kairakty", "@tungsten"]}
"""
# One event (the auction of the Upper Kairakty deposit), as five outlets wrote it, in the
# order they arrive: English wire, English trade press, Russian wire, Russian business
# press, Chinese state media.  From tests/data/stories/labelled.yaml.
ARRIVALS = [
    (
        "reuters",
        "en",
        "Kazakhstan to auction Upper Kairakty tungsten rights on March 20",
        "Kazakhstan's Ministry of Industry and Construction will auction subsoil use rights to "
        "the Upper Kairakty tungsten deposit in Karaganda region on March 20, with a starting "
        "price of 45 billion tenge ($90 million), the ministry said on Monday.",
    ),
    (
        "fastmarkets",
        "en",
        "Tungsten: bids for giant Kazakh deposit close March 20",
        "Bidding for Upper Kairakty, one of the largest undeveloped tungsten deposits in the "
        "world, closes on March 20. The starting price is 45 billion tenge, about $90 million, "
        "and traders expect Chinese and US groups to compete.",
    ),
    (
        "interfax-kz",
        "ru",
        "Минпромстрой РК выставит на аукцион месторождение Верхнее Кайракты",
        "Министерство промышленности и строительства Казахстана 20 марта проведет аукцион на "
        "право недропользования на вольфрамовом месторождении Верхнее Кайракты в "
        "Карагандинской области. Стартовая цена — 45 млрд тенге.",
    ),
    (
        "kursiv",
        "ru",
        "Аукцион по Верхнему Кайракты: что известно",
        "Торги по одному из крупнейших в мире вольфрамовых месторождений Верхнее Кайракты "
        "пройдут 20 марта, сообщили в МПС РК. Государство рассчитывает получить не меньше "
        "45 млрд тенге.",
    ),
    (
        "xinhua",
        "zh",
        "哈萨克斯坦将拍卖上凯拉克特钨矿开采权",
        "哈萨克斯坦工业和建设部表示，将于3月20日拍卖卡拉干达州上凯拉克特钨矿的矿产资源使用权，"
        "起拍价为450亿坚戈（约合9000万美元）。",
    ),
]


@pytest.fixture
def rules(tmp_path: Path) -> RuleSet:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    return load_rules([tmp_path / "rules.yaml"])


@pytest.fixture
async def context(redis_client: aioredis.Redis) -> AsyncIterator[PollContext]:
    keys = Keys("s")
    await AlertQueue(redis_client, keys).ensure_group()
    async with aiohttp.ClientSession() as session:
        yield PollContext(
            Fetcher(session),
            Store(redis_client, keys),
            lambda: NOW,
            backfill=None,
            stories=StoryStore(redis_client, keys),
            follow_ups=FollowUpPolicy(corroboration=3),
        )


async def poll_arrivals(feed_server: FeedServer, context: PollContext, rules: RuleSet) -> None:
    for number, (outlet, lang, title, summary) in enumerate(ARRIVALS):
        item = {
            "title": title,
            "description": summary,
            "guid": f"{outlet}-1",
            "link": f"https://{outlet}.example/kairakty?utm_source=rss",
            "date": (NOW - timedelta(hours=5 - number)).strftime("%a, %d %b %Y %H:%M:%S GMT"),
        }
        feed_server.put(f"/{outlet}.xml", rss([item], lang=lang))
        source = Source(name=outlet, url=feed_server.url(f"/{outlet}.xml"))
        result = await poll_once(source, rules, context)
        assert (result.status, result.new_items, result.matches) == ("ok", 1, 1), result


async def queued(redis_client: aioredis.Redis) -> list[dict[str, Any]]:
    entries = await redis_client.xrange("s:matches")
    return [json.loads(str(fields["match"])) for _, fields in entries or () if fields]


async def test_five_outlets_in_three_languages_are_one_story_with_follow_ups_that_matter(
    feed_server: FeedServer,
    context: PollContext,
    rules: RuleSet,
    redis_client: aioredis.Redis,
    slack_server: SlackServer,
) -> None:
    await poll_arrivals(feed_server, context, rules)
    matches = await queued(redis_client)
    assert len({m["story"] for m in matches}) == 1, "one event, one story"
    assert [m.get("follow_up") for m in matches] == [
        None,  # the first item: the alert
        None,  # a second English outlet: nothing an analyst did not know
        "corroborated by 3 independent sources",  # the Russian wire, the third outlet
        None,  # a second Russian outlet
        "new language",  # Chinese state media
    ]

    report = await deliver_once_to_slack(redis_client, "s", slack_server.url, NOW)
    texts = [str(payload["text"]) for payload in slack_server.payloads]
    assert len(texts) == 3, texts  # one alert and two follow-ups
    assert report.throttled == 2  # the two items that added nothing were kept quiet
    assert sum("Follow-up (corroborated by 3 independent sources)" in t for t in texts) == 1
    assert sum("Follow-up (new language)" in t for t in texts) == 1


async def test_a_poll_retried_after_a_crash_keeps_the_story(
    feed_server: FeedServer, context: PollContext, rules: RuleSet, redis_client: aioredis.Redis
) -> None:
    """Assignment happens before the record script; if the daemon dies in between, the next
    poll assigns the item again and gets the same story, not a second one."""
    await poll_arrivals(feed_server, context, rules)
    first = (await queued(redis_client))[0]
    assert context.stories is not None
    update = await context.stories.assign(Item.from_dict(first["item"]), NOW)
    assert update.story_id == first["story"]
    assert update.duplicate


def test_the_daemon_with_stories_on_alerts_once_for_two_outlets_of_one_event(
    tmp_path: Path, feed_server: FeedServer, own_redis: EmbeddedRedis, slack_server: SlackServer
) -> None:
    """`stories.enabled: true` in the config, the real `monitor` command: two English outlets
    report the event, one alert reaches Slack, and `monitor stories list` shows one story of
    two items."""
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    feeds = []
    for outlet, lang, title, summary in ARRIVALS[:2]:
        item = {"title": title, "description": summary, "guid": f"{outlet}-1"}
        feed_server.put(f"/{outlet}.xml", rss([{**item, "date": FRESH}], lang=lang))
        feeds.append(f'  - {{name: {outlet}, url: "{feed_server.url(f"/{outlet}.xml")}"}}')
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f'redis: {{url: "{own_redis.url}"}}\nfeeds:\n' + "\n".join(feeds) + "\n"
        f'rules: {{paths: ["{tmp_path / "rules.yaml"}"]}}\n'
        f'channels: {{slack: {{webhook_url: "{slack_server.url}"}}}}\n'
        "stories: {enabled: true}\nhealth: {port: 0}\nlog: {format: json}\n",
        encoding="utf-8",
    )
    once = run_monitor("run", "--once", "-c", str(config))
    assert once.returncode == 0, once.stderr
    assert len(slack_server.payloads) == 1, slack_server.payloads
    listing = run_monitor("stories", "list", "--json", "-c", str(config))
    assert listing.returncode == 0, listing.stderr
    stories = [json.loads(line) for line in listing.stdout.splitlines() if line.strip()]
    assert [story["items"] for story in stories] == [2], stories
