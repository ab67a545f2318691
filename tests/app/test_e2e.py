"""End to end, as users run it: the `monitor` command against real local services.

Feeds come from a real local HTTP server, Redis is a private redis-server, Slack is a local
HTTP server answering as Slack does and email goes to a real aiosmtpd server.  Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.commands import run_monitor
from support.feed_server import FeedServer, rss
from support.servers import HttpReply, SlackServer, SmtpServer

from monitor.app.embedded_redis import EmbeddedRedis

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

RULES = """\
terms:
  tungsten: [tungsten, вольфрам*, 钨]
  kazakhstan: [Kazakhstan, казахстан*, 哈萨克斯坦]
rules:
  - id: kz-tungsten
    title: Kazakhstan tungsten
    severity: high
    match:
      all: ["@kazakhstan", "@tungsten"]
  - id: rare-earth-permits
    title: Rare-earth export permits
    severity: medium
    match:
      all:
        - any: [rare earth*, редкоземельн*, 稀土]
        - any: [export licen*, permit*, лиценз*, 许可]
"""

EN_ITEMS = [
    {
        "title": "Kazakhstan opens tungsten tender",
        "guid": "en-1",
        "link": "https://wire.example/1?utm_source=rss",
        "description": "<p>Bids are due.</p>",
    },
    {
        "title": "China adds permits for rare earth products",
        "guid": "en-2",
        "link": "https://wire.example/2",
    },
    {"title": "Wheat harvest in Kazakhstan", "guid": "en-3", "link": "https://wire.example/3"},
]
RU_ITEMS = [
    {
        "title": "Казахстан и вольфрамовое месторождение",
        "guid": "ru-1",
        "link": "https://nedra.example/1",
    },
]


def config_text(feeds: FeedServer, redis_url: str, smtp: SmtpServer, rules_dir: Path) -> str:
    return f"""\
redis: {{url: "{redis_url}"}}
feeds:
  - {{name: wire, url: "{feeds.url("/en.xml")}", interval: 10m, tags: [en]}}
  - {{name: nedra, url: "{feeds.url("/ru.xml")}", interval: 10m, tags: [ru]}}
rules: {{paths: ["{rules_dir}"]}}
channels:
  slack: {{webhook_url: "${{SLACK_WEBHOOK_URL}}"}}
  email: {{host: 127.0.0.1, port: {smtp.port}, starttls: false, from: monitor@example.org,
          to: [desk@example.org, duty@example.org]}}
routes:
  - {{channels: [slack, email]}}
log: {{format: json, level: info}}
health: {{port: 0}}
"""


@pytest.fixture
def setup(
    tmp_path: Path,
    feed_server: FeedServer,
    own_redis: EmbeddedRedis,
    slack_server: SlackServer,
    smtp_server: SmtpServer,
) -> tuple[Path, dict[str, str]]:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "topics.yaml").write_text(RULES, encoding="utf-8")
    feed_server.put("/en.xml", rss(EN_ITEMS))
    feed_server.put(
        "/ru.xml",
        rss(RU_ITEMS, lang="ru").replace("utf-8", "windows-1251").encode("cp1251"),
        content_type="application/rss+xml",
    )
    config = tmp_path / "monitor.yaml"
    config.write_text(config_text(feed_server, own_redis.url, smtp_server, rules_dir))
    env = {**os.environ, "SLACK_WEBHOOK_URL": slack_server.url}
    env.pop("MONITOR_CONFIG", None)
    return config, env


def slack_titles(slack: SlackServer) -> list[str]:
    return sorted(str(p["text"]) for p in slack.payloads)


def test_once_delivers_exactly_the_expected_alerts_then_only_new_ones(
    setup: tuple[Path, dict[str, str]],
    feed_server: FeedServer,
    slack_server: SlackServer,
    smtp_server: SmtpServer,
) -> None:
    config, env = setup
    first = run_monitor("run", "--once", "-c", str(config), env=env)
    assert first.returncode == 0, first.stderr

    payloads = slack_server.payloads
    assert len(payloads) == 3
    text = json.dumps(payloads, ensure_ascii=False)
    for expected in (
        "Kazakhstan opens tungsten tender",
        "China adds permits for rare earth products",
        "Казахстан и вольфрамовое месторождение",
        "https://wire.example/1",  # canonical: the utm_ parameter is gone
        "kz-tungsten",
        "rare-earth-permits",
    ):
        assert expected in text, expected
    assert "utm_source" not in text
    assert "Wheat harvest" not in text

    mails = smtp_server.messages
    assert len(mails) == 3
    assert all(set(m.rcpt_tos) == {"desk@example.org", "duty@example.org"} for m in mails)
    subjects = " | ".join(str(m.message["Subject"]) for m in mails)
    assert "Kazakhstan opens tungsten tender" in subjects
    assert "Казахстан и вольфрамовое месторождение" in subjects
    for mail in mails:
        assert mail.message.get_body(("plain",)) is not None
        assert mail.message.get_body(("html",)) is not None

    summary = [json.loads(line) for line in first.stderr.splitlines() if '"pass complete"' in line]
    assert len(summary) == 1
    assert (summary[0]["new_items"], summary[0]["matches"]) == (4, 3)
    assert slack_server.secret not in first.stderr

    second = run_monitor("run", "--once", "-c", str(config), env=env)
    assert second.returncode == 0, second.stderr
    assert len(slack_server.payloads) == 3
    assert len(smtp_server.messages) == 3

    newer = {
        "title": "Kazakhstan and US sign tungsten JV",
        "guid": "en-4",
        "link": "https://wire.example/4",
    }
    feed_server.put("/en.xml", rss([newer, *EN_ITEMS]))
    third = run_monitor("run", "--once", "-c", str(config), env=env)
    assert third.returncode == 0, third.stderr
    assert len(slack_server.payloads) == 4
    assert "Kazakhstan and US sign tungsten JV" in str(slack_server.payloads[-1]["text"])
    assert len(smtp_server.messages) == 4


def test_a_failing_feed_is_summarised_not_fatal(
    setup: tuple[Path, dict[str, str]], feed_server: FeedServer, slack_server: SlackServer
) -> None:
    config, env = setup
    feed_server.put("/ru.xml", "gone", status=500, content_type="text/plain")
    result = run_monitor("run", "--once", "-c", str(config), env=env)
    assert result.returncode == 0, result.stderr
    logs = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    (summary,) = [r for r in logs if r["event"] == "pass complete"]
    assert (summary["failed"], summary["ok"]) == (1, 1)
    assert any(r["event"] == "feed failed this pass" and r["feed"] == "nedra" for r in logs)
    assert len(slack_server.payloads) == 2


def test_slack_outage_keeps_the_alert_for_a_later_pass(
    setup: tuple[Path, dict[str, str]], slack_server: SlackServer, smtp_server: SmtpServer
) -> None:
    config, env = setup
    config.write_text(config.read_text() + "delivery: {retry_after: 1s}\n")
    slack_server.set_default(HttpReply(503, "service_unavailable"))
    first = run_monitor("run", "--once", "-c", str(config), env=env)
    assert first.returncode == 0, first.stderr
    assert len(smtp_server.messages) == 3  # email is not held back by Slack's outage
    assert len(slack_server.requests) == 3
    slack_server.set_default(None)
    time.sleep(1.2)
    second = run_monitor("run", "--once", "-c", str(config), env=env)
    assert second.returncode == 0, second.stderr
    accepted = [r for r in slack_server.requests if r.reply.status == 200]
    assert len(accepted) == 3
    assert len(smtp_server.messages) == 3  # and never sent twice


def test_invalid_config_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text("feeds:\n  - {name: a, url: 'https://x.example/', intervl: 5m}\n")
    result = run_monitor("run", "--once", "-c", str(config), env=dict(os.environ))
    assert result.returncode == 2
    assert f"{config}:2:42: unknown key 'intervl' (hint: did you mean 'interval'?)" in result.stderr


def test_daemon_delivers_and_stops_cleanly_on_sigterm(
    setup: tuple[Path, dict[str, str]], slack_server: SlackServer
) -> None:
    config, env = setup
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "-c", str(config)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        slack_server.wait_for(3, within=30)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert '"monitor stopped"' in stderr
    assert slack_server.secret not in stderr


def test_offline_example_prints_alerts_without_network(tmp_path: Path) -> None:
    env = {**os.environ, "MONITOR_DATA_DIR": str(tmp_path / "redis")}
    result = run_monitor("run", "--once", "-c", "examples/offline/monitor.yaml", env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Upper Kairakty" in out
    assert "darts" not in out
    # Each of its two events in three languages is one story (issue 15), and each article
    # one message listing every rule it matched (issue 16): the tungsten bids (two rules),
    # the rare-earth licences, the US investment in Uzbekistan; and a Chinese report and a
    # Russian one that no other language covers, each with its English gloss.
    messages = [m for m in out.split("\n\n") if m.strip()]
    headlines = [m.splitlines()[0] for m in messages]
    assert len(messages) == 5, headlines
    [chinese] = [m for m in messages if "45个工作日" in m]
    assert "  Gloss:   China Ministry of Commerce · rare earths" in chinese
    [russian] = [m for m in messages if "Северный Катпар" in m]
    assert "Severny Katpar" in russian.split("  Gloss:   ")[1]
    assert "  Rules:   kz-tungsten-deposits, us-central-asia-critical-minerals" in russian
    [bids] = [m for m in messages if "Upper Kairakty" in m]
    assert bids.splitlines()[1].startswith("  Also:    US bids, stakes")
    assert "  Rules:   kz-tungsten-deposits, us-central-asia-critical-minerals" in bids
    assert "a *US*-backed" in bids
    assert not [h for h in headlines if "Follow-up" in h]
    sources = [
        {s.strip() for s in line.partition("Sources:")[2].split(";")}
        for m in messages
        for line in m.splitlines()
        if "Sources:" in line
    ]  # in the order the feeds' polls happened to settle
    every_language = {"steppe-wire (news, en)", "kuangchan (news, zh)", "nedra (news, ru)"}
    assert sources.count(every_language) == 2, messages
    assert sum("Rare-earth export controls" in h for h in headlines) == 2
    assert "Wheat harvest" not in out
    again = run_monitor("run", "--once", "-c", "examples/offline/monitor.yaml", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""
