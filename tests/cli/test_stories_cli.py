"""`monitor stories list` and `monitor stories show`: what an analyst sees of stories."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from monitor.app.embedded_redis import EmbeddedRedis
from monitor.cli import main
from monitor.cli import stories as stories_cli
from monitor.cli.stories import render_list, render_story
from monitor.model import Item
from monitor.redisio import Keys
from monitor.stories.store import StoryStore
from monitor.stories.story import SourceMeta, Story, StoryItem

WIRE = (
    "Kazakhstan's Ministry of Industry and Construction will auction subsoil use rights to the "
    "Upper Kairakty tungsten deposit on March 20, with a starting price of 45 billion tenge."
)
CHINESE = "哈萨克斯坦工业和建设部表示，将于3月20日拍卖上凯拉克特钨矿，起拍价为450亿坚戈。"
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


def _member(source: str, lang: str, minutes: int, kind: str = "news") -> StoryItem:
    at = NOW + timedelta(minutes=minutes)
    return StoryItem(f"{source}:1", source, lang, f"Headline from {source}", "", at, at, kind)


def test_the_list_lines_up_and_says_when_empty() -> None:
    story = Story("s1", NOW, NOW, (_member("reuters", "en", 0), _member("xinhua", "zh", 5)))
    lines = render_list([story], NOW + timedelta(hours=2)).splitlines()
    assert lines[0].split() == ["STORY", "ITEMS", "SOURCES", "LANGS", "LAST", "SEEN", "TITLE"]
    assert lines[1].split()[:4] == ["s1", "2", "2", "en,zh"]
    assert "2h ago" in lines[1]
    assert render_list([], NOW) == "no stories in this window"


def test_a_story_shows_provenance_and_a_timeline_in_arrival_order() -> None:
    story = Story(
        "s1",
        NOW,
        NOW + timedelta(minutes=5),
        (_member("xinhua", "zh", 5, "state_media"), _member("reuters", "en", 0, "wire")),
    )
    text = render_story(story, NOW + timedelta(hours=1))
    assert "2 items from 2 sources (2 independent), languages: zh, en" in text
    assert "  reuters (wire, en)" in text
    timeline = text.split("timeline:\n")[1].splitlines()
    assert "reuters [en]" in timeline[0]
    assert "xinhua [zh]" in timeline[1]


async def _cluster(url: str) -> str:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    sources = {"xinhua": SourceMeta("xinhua", kind="state_media", country="cn")}
    store = StoryStore(client, Keys(), sources=sources)
    now = datetime.now(UTC)
    first = await store.assign(
        Item("reuters:1", "reuters", "Kairakty auction", WIRE, "https://r.example/1", now, "en"),
        now,
    )
    await store.assign(
        Item(
            "xinhua:1", "xinhua", "哈萨克斯坦将拍卖钨矿", CHINESE, "https://x.example/1", now, "zh"
        ),
        now,
    )
    await client.aclose()
    return first.story_id


def _config(tmp_path: Path, redis: EmbeddedRedis) -> str:
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f'redis: {{url: "{redis.url}"}}\nfeeds:\n  - {{name: a, url: "https://a.example/f"}}\n'
    )
    return str(config)


def test_list_and_show_read_the_daemons_redis(
    tmp_path: Path, own_redis: EmbeddedRedis, capsys: pytest.CaptureFixture[str]
) -> None:
    story_id = asyncio.run(_cluster(own_redis.url))
    config = _config(tmp_path, own_redis)
    assert main(["stories", "list", "-c", config, "--since", "1h", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["items"], r["languages"]) for r in rows] == [(story_id, 2, ["en", "zh"])]
    assert main(["stories", "show", story_id, "-c", config]) == 0
    shown = capsys.readouterr().out
    assert f"story {story_id}: Kairakty auction" in shown
    assert "xinhua (state_media, cn, zh)" in shown
    assert main(["stories", "show", story_id, "-c", config, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [item["source"] for item in data["items"]] == ["reuters", "xinhua"]


def test_show_of_an_unknown_story_fails_and_a_bad_duration_is_a_usage_error(
    tmp_path: Path, own_redis: EmbeddedRedis, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, own_redis)
    assert main(["stories", "show", "s000", "-c", config]) == 1
    assert "no story s000" in capsys.readouterr().err
    assert main(["stories", "list", "-c", config, "--since", "soon"]) == 2
    assert "--since" in capsys.readouterr().err
    assert main(["stories", "list", "-c", config]) == 0
    assert capsys.readouterr().out.strip() == "no stories in this window"


async def _unrelated_stories(url: str, count: int) -> None:
    """``count`` stories of one item each, on nothing two of them share."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    store = StoryStore(client, Keys())
    now = datetime.now(UTC)
    topics = ["wheat harvest", "darts final", "rail strike", "flood warning", "chess open"]
    for number in range(count):
        title = f"{topics[number % len(topics)]} report {number}"
        item = Item(f"feed:{number}", "feed", title, "", f"https://f.example/{number}", now, "en")
        await store.assign(item, now - timedelta(minutes=number))
    await client.aclose()


def test_list_pages_and_says_when_it_shows_only_some(
    tmp_path: Path,
    own_redis: EmbeddedRedis,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 16: the list used to stop at 200 without a word.  Pages of two, so ``--all``
    reads three of them."""
    monkeypatch.setattr(stories_cli, "PAGE", 2)
    asyncio.run(_unrelated_stories(own_redis.url, 5))
    config = _config(tmp_path, own_redis)
    assert main(["stories", "list", "-c", config, "--json", "--limit", "2"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 2
    assert "2 of 5 stories shown; --limit N or --all for more" in err
    assert main(["stories", "list", "-c", config, "--json", "--all"]) == 0
    out, err = capsys.readouterr()
    assert len({json.loads(line)["id"] for line in out.splitlines()}) == 5
    assert err == ""
    assert main(["stories", "list", "-c", config, "--limit", "0"]) == 2
