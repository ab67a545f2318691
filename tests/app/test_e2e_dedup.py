"""Distinct entries stay distinct, edits are told once: `monitor run --once` on feed bytes.

Live blogs linking each update to an anchor of one page, feeds reusing one GUID, and items
republished with other words, served by a real local HTTP server to the real command, with a
private redis-server and a Slack look-alike.  Nothing is mocked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from support.commands import run_monitor
from support.feed_server import FeedServer, rss
from support.servers import SlackServer

from monitor.app.embedded_redis import EmbeddedRedis

pytestmark = pytest.mark.slow

RULES = """\
rules:
  - id: kz-tungsten
    title: Kazakhstan tungsten
    severity: high
    match:
      all: [Kazakhstan, tungsten]
  - id: permits
    title: Export permits
    severity: medium
    match:
      any: [export permit*]
"""


@pytest.fixture
def monitor(
    tmp_path: Path, feed_server: FeedServer, own_redis: EmbeddedRedis, slack_server: SlackServer
) -> tuple[Path, dict[str, str]]:
    """A config polling /a.xml and /b.xml into Slack (stories on, as shipped)."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "topics.yaml").write_text(RULES, encoding="utf-8")
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f"""\
redis: {{url: "{own_redis.url}"}}
feeds:
  - {{name: live, url: "{feed_server.url("/a.xml")}", interval: 10m}}
  - {{name: wire, url: "{feed_server.url("/b.xml")}", interval: 10m}}
rules: {{paths: ["{rules_dir}"]}}
channels:
  slack: {{webhook_url: "${{SLACK_WEBHOOK_URL}}"}}
routes:
  - {{channels: [slack]}}
log: {{format: json, level: info}}
health: {{port: 0}}
"""
    )
    env = {k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"}
    env["SLACK_WEBHOOK_URL"] = slack_server.url
    return config, env


def run_once(monitor: tuple[Path, dict[str, str]]) -> dict[str, Any]:
    """One pass; its "pass complete" summary (new items, matches queued)."""
    config, env = monitor
    result = run_monitor("run", "--once", "-c", str(config), env=env)
    assert result.returncode == 0, result.stderr
    logs = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    (summary,) = [entry for entry in logs if entry["event"] == "pass complete"]
    return dict(summary)


def without_stories(monitor: tuple[Path, dict[str, str]]) -> tuple[Path, dict[str, str]]:
    """Stories off: every matched item is its own alert, so distinct items are visible as
    distinct messages (with stories, one event's items alert once per rule)."""
    config, _ = monitor
    config.write_text(config.read_text() + "stories: {enabled: false}\n")
    return monitor


def texts(slack: SlackServer) -> list[str]:
    return [str(payload["text"]) for payload in slack.payloads]


LIVE = "https://news.example/2026/kazakhstan-tungsten-live"


def live_update(number: int, guid: str) -> dict[str, str]:
    return {
        "title": f"Kazakhstan tungsten live, update {number}: bidder {number} named",
        "guid": guid,
        "link": f"{LIVE}#u{number}",
        "description": f"<p>Update {number} from the tender floor in Astana.</p>",
    }


def test_a_live_blogs_anchored_entries_are_distinct_items(
    monitor: tuple[Path, dict[str, str]], feed_server: FeedServer, slack_server: SlackServer
) -> None:
    """Different GUIDs, links differing only by #fragment: three items, three alerts; the
    same anchored entry from another feed is still a duplicate."""
    without_stories(monitor)
    feed_server.put("/a.xml", rss([live_update(n, f"live-{n}") for n in (1, 2, 3)]))
    feed_server.put("/b.xml", rss([]))
    first = run_once(monitor)
    assert (first["new_items"], first["matches"]) == (3, 3)
    assert sorted(texts(slack_server)) == sorted(
        f"{live_update(n, '')['title']} — [HIGH] Kazakhstan tungsten" for n in (1, 2, 3)
    )
    copy = {**live_update(2, "wire-copy"), "title": "Kazakhstan tungsten: bidder 2 named"}
    feed_server.put("/b.xml", rss([copy]))
    second = run_once(monitor)
    assert (second["new_items"], second["matches"]) == (0, 0)
    assert len(slack_server.payloads) == 3


def test_a_feed_reusing_one_guid_yields_each_entry(
    monitor: tuple[Path, dict[str, str]], feed_server: FeedServer, slack_server: SlackServer
) -> None:
    without_stories(monitor)
    entries = [
        {
            "title": f"Kazakhstan tungsten brief {n}: licence round {n}",
            "guid": "urn:newsroom:briefs",
            "link": f"https://briefs.example/{n}",
        }
        for n in (1, 2, 3)
    ]
    feed_server.put("/a.xml", rss(entries[:2]))
    feed_server.put("/b.xml", rss([]))
    assert run_once(monitor)["new_items"] == 2
    feed_server.put("/a.xml", rss([entries[2], *entries[:2]]))
    assert (run_once(monitor)["new_items"], run_once(monitor)["new_items"]) == (1, 0)
    assert sorted(texts(slack_server)) == sorted(
        f"{entry['title']} — [HIGH] Kazakhstan tungsten" for entry in entries
    )


def test_an_edited_item_alerts_once_for_a_rule_it_newly_matches(
    monitor: tuple[Path, dict[str, str]], feed_server: FeedServer, slack_server: SlackServer
) -> None:
    """Republished under its GUID: a case, spacing or punctuation edit is nothing; a real
    edit is matched again, and only the rule it newly matches alerts, marked "Updated:"
    (stories on, as shipped: the edit stays one item of its story)."""
    entry = {"guid": "t-1", "link": "https://wire.example/t1", "description": "<p>Bids due.</p>"}
    feed_server.put("/b.xml", rss([]))

    def publish(title: str) -> dict[str, Any]:
        feed_server.put("/a.xml", rss([{**entry, "title": title}]))
        return run_once(monitor)

    assert publish("Kazakhstan opens tungsten tender")["matches"] == 1
    assert publish("KAZAKHSTAN  opens tungsten tender!")["matches"] == 0
    assert publish("Kazakhstan opens tungsten tender; export permits needed")["matches"] == 1
    assert publish("Kazakhstan opens tungsten tender: export permits needed")["matches"] == 0
    assert texts(slack_server) == [
        "Kazakhstan opens tungsten tender — [HIGH] Kazakhstan tungsten",
        "Kazakhstan opens tungsten tender; export permits needed"
        " — [MEDIUM] Updated: Export permits",
    ]
