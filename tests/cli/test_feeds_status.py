"""`monitor feeds status`: what an operator sees about each feed's health."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from monitor.app.embedded_redis import EmbeddedRedis
from monitor.cli import main
from monitor.cli.feeds import feed_row, render_table
from monitor.ingest.fetch import Validators
from monitor.ingest.state import FeedState, FeedSuccess, Store
from monitor.model import Source
from monitor.redisio import Keys

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SOURCE = Source(name="wire", url="https://w.example/f.xml", interval=timedelta(minutes=10))


@pytest.mark.parametrize(
    ("state", "health", "note"),
    [
        (FeedState(), "never polled", ""),
        (FeedState(last_success=NOW - timedelta(minutes=5)), "ok", ""),
        (FeedState(last_success=NOW - timedelta(hours=1)), "stale", ""),
        (FeedState(failures=3, last_error="HTTP 500"), "failing", "HTTP 500"),
        (
            FeedState(last_success=NOW, moved_to="https://n.example/f"),
            "ok",
            "moved permanently to https://n.example/f; update the config.",
        ),
    ],
)
def test_feed_row_health(state: FeedState, health: str, note: str) -> None:
    row = feed_row(SOURCE, state, NOW)
    assert (row.health, row.note) == (health, note)


def test_table_lines_up_columns() -> None:
    rows = [
        feed_row(SOURCE, FeedState(last_success=NOW - timedelta(minutes=3)), NOW),
        feed_row(
            Source(name="a-much-longer-name", url="u"),
            FeedState(failures=2, next_poll_at=NOW + timedelta(hours=2)),
            NOW,
        ),
    ]
    lines = render_table(rows).splitlines()
    assert lines[0].startswith("FEED")
    assert lines[1].index("ok") == lines[2].index("failing") == lines[0].index("HEALTH")
    assert "3m ago" in lines[1]
    assert "in 2h" in lines[2]


async def record_states(url: str) -> None:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    store = Store(client, Keys())
    now = datetime.now(UTC)
    await store.feed_succeeded("good", FeedSuccess(Validators(), 200, now, now, new_items=4))
    await store.feed_failed("bad", "cannot connect to b.example", None, now, now)
    await client.aclose()


def test_status_command_reads_the_daemons_redis(
    tmp_path: Path, own_redis: EmbeddedRedis, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f'redis: {{url: "{own_redis.url}"}}\n'
        "feeds:\n"
        "  - {name: good, url: 'https://a.example/f.xml'}\n"
        "  - {name: bad, url: 'https://b.example/f.xml'}\n"
    )
    asyncio.run(record_states(own_redis.url))
    assert main(["feeds", "status", "-c", str(config), "--json"]) == 1
    rows = {row["name"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert (rows["good"]["health"], rows["good"]["items_seen"]) == ("ok", 4)
    assert rows["bad"]["health"] == "failing"
    assert rows["bad"]["note"] == "cannot connect to b.example"
    # --json times are ISO-8601 UTC, as in every command (issue 16)
    last = datetime.fromisoformat(str(rows["good"]["last_success"]))
    assert last.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - last) < timedelta(minutes=10)
    assert rows["bad"]["last_success"] is None
