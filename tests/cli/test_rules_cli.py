"""The analyst's commands: ``rules test``, ``rules match --explain`` and ``rules backtest``."""

from __future__ import annotations

import asyncio
import shutil
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from monitor.app.embedded_redis import EmbeddedRedis
from monitor.cli import main
from monitor.ingest.state import Store
from monitor.model import Item
from monitor.redisio import Keys

REPO = Path(__file__).resolve().parents[2]
OFFLINE_FEEDS = REPO / "examples" / "offline" / "feeds"

RULE = """\
rules:
  - id: {id}
    title: {title}
    severity: high
    match:
      all: [{terms}]
    examples:
      match: ["{good}"]
      no_match: ["{bad}"]
"""


def rule_file(directory: Path, name: str, **fields: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(RULE.format(**fields), encoding="utf-8")
    return path


@pytest.mark.parametrize("action", ["test", "backtest"])
def test_new_commands_have_help(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["rules", action, "--help"])
    assert exited.value.code == 0
    assert "usage: monitor rules" in capsys.readouterr().out


# -- rules test ------------------------------------------------------------------------------


def test_rules_test_passes_the_shipped_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "test", str(REPO / "rules")]) == 0
    out = capsys.readouterr().out
    assert "PASS  kz-tungsten-deposits" in out
    assert "3 rules: 3 passed, 0 failed" in out


def test_rules_test_reports_each_rule_and_fails_on_a_bad_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule_file(
        tmp_path,
        "a.yaml",
        id="good",
        title="Good",
        terms="tungsten, tender",
        good="Tungsten tender",
        bad="Tungsten prices",
    )
    path = rule_file(
        tmp_path,
        "b.yaml",
        id="bad",
        title="Bad",
        terms="tungsten",
        good="Wolfram tender",
        bad="Tungsten prices",
    )
    assert main(["rules", "test", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "PASS  good  (2 examples)" in out
    assert "FAIL  bad  (0 of 2 examples behave)" in out
    assert f"{path}:8:15: example should match but does not: 'Wolfram tender'" in out
    assert f"{path}:9:18: example should not match but does: 'Tungsten prices'" in out
    assert "2 rules: 1 passed, 1 failed" in out


def test_rules_test_refuses_rules_that_do_not_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "r.yaml").write_text("rules:\n  - id: r\n", encoding="utf-8")
    assert main(["rules", "test", str(tmp_path)]) == 2
    assert "a rule is missing 'title'" in capsys.readouterr().err


def test_rules_test_of_a_missing_path_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "test", str(tmp_path / "nope")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


# -- rules match --explain -------------------------------------------------------------------


def test_match_explain_marks_hits_and_shows_why(capsys: pytest.CaptureFixture[str]) -> None:
    feed = OFFLINE_FEEDS / "ru.xml"
    assert main(["rules", "match", "--explain", "--rules", str(REPO / "rules"), str(feed)]) == 0
    out = capsys.readouterr().out
    assert "kz-tungsten-deposits (high) matches:" in out
    assert "[Верхнее Кайракты]" in out
    assert "✓ @kz-tungsten-deposits — 'Верхнее Кайракты'" in out
    assert "none: (none may be found)" in out
    assert "✓ @tungsten-consumer-goods — not found" in out


# -- rules backtest --------------------------------------------------------------------------


def item(number: int, title: str) -> Item:
    return Item(
        id=f"item-{number}",
        source="tengrinews",
        title=title,
        summary="",
        link=f"https://news.example/{number}",
        published=datetime(2026, 1, 5, 9, number, tzinfo=UTC),
    )


HISTORY = [
    item(1, "Kazakhstan tungsten tender opens"),
    item(2, "Tungsten darts championship"),
    item(3, "Wolfram tender in Kazakhstan"),
    item(4, "Wheat harvest"),
]


async def record(url: str, items: list[Item]) -> None:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        store = Store(client, Keys("monitor"))
        for entry in items:
            await store.record_item(entry, [], datetime.now(UTC))
    finally:
        await client.aclose()


def backtest_setup(tmp_path: Path, own_redis: EmbeddedRedis) -> tuple[Path, Path]:
    deployed = tmp_path / "deployed"
    rule_file(
        deployed,
        "kz.yaml",
        id="kz-tungsten",
        title="KZ tungsten",
        terms="tungsten, tender",
        good="Tungsten tender",
        bad="Tungsten prices",
    )
    draft = tmp_path / "draft"
    shutil.copytree(deployed, draft)
    (draft / "kz.yaml").write_text(
        (draft / "kz.yaml")
        .read_text(encoding="utf-8")
        .replace("all: [tungsten, tender]", 'all: [{any: [tungsten, wolfram]}, tender, "Kazakh*"]')
        .replace('"Tungsten tender"', '"Kazakh tungsten tender"'),
        encoding="utf-8",
    )
    rule_file(
        draft,
        "darts.yaml",
        id="darts",
        title="Darts",
        terms="darts",
        good="Darts final",
        bad="Chess final",
    )
    config = tmp_path / "monitor.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            redis: {{url: "{own_redis.url}"}}
            rules: {{paths: [deployed]}}
            health: {{port: 0}}
            """
        ),
        encoding="utf-8",
    )
    asyncio.run(record(own_redis.url, HISTORY))
    return config, draft


def test_backtest_compares_a_draft_with_the_deployed_rules(
    tmp_path: Path, own_redis: EmbeddedRedis, capsys: pytest.CaptureFixture[str]
) -> None:
    config, draft = backtest_setup(tmp_path, own_redis)
    argv = ["rules", "backtest", "-c", str(config), "--since", "1h", "--rules", str(draft)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "backtest over 4 items since" in out
    assert "draft alerts: 3 (2 new, 1 also deployed); 0 deployed alerts no longer raised" in out
    assert "  = kz-tungsten  2026-01-05 09:01  tengrinews  Kazakhstan tungsten tender opens" in out
    assert "  + kz-tungsten  2026-01-05 09:03  tengrinews  Wolfram tender in Kazakhstan" in out
    assert "  + darts  2026-01-05 09:02  tengrinews  Tungsten darts championship" in out
    assert "Wheat harvest" not in out


def test_backtest_lists_alerts_a_draft_no_longer_raises(
    tmp_path: Path, own_redis: EmbeddedRedis, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _draft = backtest_setup(tmp_path, own_redis)
    narrower = tmp_path / "narrower"
    rule_file(
        narrower,
        "kz.yaml",
        id="kz-tungsten",
        title="KZ tungsten",
        terms="tungsten, tender, wolfram",
        good="Tungsten wolfram tender",
        bad="Tungsten prices",
    )
    argv = ["rules", "backtest", "-c", str(config), "--rules", str(narrower)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "draft alerts: 0 (0 new, 0 also deployed); 1 deployed alerts no longer raised" in out
    assert "  - kz-tungsten  2026-01-05 09:01  tengrinews  Kazakhstan tungsten tender opens" in out


def test_backtest_without_a_draft_shows_what_the_deployed_rules_raised(
    tmp_path: Path, own_redis: EmbeddedRedis, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _draft = backtest_setup(tmp_path, own_redis)
    assert main(["rules", "backtest", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "draft alerts: 1 (0 new, 1 also deployed)" in out


def test_backtest_refuses_a_broken_draft(
    tmp_path: Path, own_redis: EmbeddedRedis, capsys: pytest.CaptureFixture[str]
) -> None:
    config, draft = backtest_setup(tmp_path, own_redis)
    (draft / "broken.yaml").write_text("rules: [{id: x}]\n", encoding="utf-8")
    assert main(["rules", "backtest", "-c", str(config), "--rules", str(draft)]) == 2
    assert "a backtest needs rules that load" in capsys.readouterr().err


def test_backtest_refuses_a_bad_duration(
    tmp_path: Path, own_redis: EmbeddedRedis, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _draft = backtest_setup(tmp_path, own_redis)
    assert main(["rules", "backtest", "-c", str(config), "--since", "a week"]) == 2
    assert "--since" in capsys.readouterr().err


def test_backtest_replays_a_draft_trend_over_the_history(
    tmp_path: Path, own_redis: EmbeddedRedis, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trend is something a draft would alert on too: its alerts are replayed from what the
    draft's rules matched, in the order the items were published."""
    config, draft = backtest_setup(tmp_path, own_redis)
    (draft / "busy.yaml").write_text(
        textwrap.dedent(
            """\
            trends:
              - id: kz-busy
                title: Two Kazakh tungsten tenders within an hour
                severity: medium
                frequency: {of: {rule: kz-tungsten}, window: 1h, at_least: 2}
            """
        ),
        encoding="utf-8",
    )
    argv = ["rules", "backtest", "-c", str(config), "--rules", str(draft)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "draft alerts: 4 (3 new, 1 also deployed)" in out
    assert (
        "  + kz-busy  2026-01-05 09:03  monitor  "
        "Frequency: Two Kazakh tungsten tenders within an hour" in out
    )
