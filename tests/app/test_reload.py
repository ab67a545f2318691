"""The running daemon takes config and rule edits without a restart, and refuses bad ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.feed_server import FeedServer, rss

from monitor.app.embedded_redis import EmbeddedRedis

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
RULE = "rules:\n  - {{id: {id}, title: T, severity: low, match: {{any: [tungsten]}}}}\n"


def config(redis_url: str, rules: Path, feeds: list[tuple[str, str]]) -> str:
    lines = [f'redis: {{url: "{redis_url}"}}', "feeds:"]
    lines += [f'  - {{name: {name}, url: "{url}", interval: 10s}}' for name, url in feeds]
    lines += [f'rules: {{paths: ["{rules}"]}}', "channels: {console: {}}", "health: {port: 0}"]
    lines += ["http: {host_gap: 0s}", "log: {format: json}"]
    return "\n".join(lines) + "\n"


class Daemon:
    """A `monitor run` subprocess whose JSON log lines the test can wait for."""

    def __init__(self, config_path: Path) -> None:
        self.log_path = config_path.with_suffix(".log")
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "-c", str(config_path)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env={k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"},
        )

    def events(self) -> list[dict[str, object]]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def wait_for(self, found: Callable[[dict[str, object]], bool], within: float = 20) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if any(found(event) for event in self.events()):
                return
            time.sleep(0.1)
        pytest.fail(f"no matching log line within {within}s:\n{self.log_path.read_text()}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(30)
        self.log.close()
        return code


@pytest.fixture
def daemon_factory() -> Iterator[Callable[[Path], Daemon]]:
    started: list[Daemon] = []

    def start(config_path: Path) -> Daemon:
        daemon = Daemon(config_path)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()
        daemon.log.close()


@dataclass
class Running:
    """A daemon on one feed ("a") and one rule file, and the paths a test edits."""

    daemon: Daemon
    config_path: Path
    rules: Path
    redis_url: str


@pytest.fixture
def running(
    tmp_path: Path,
    feed_server: FeedServer,
    own_redis: EmbeddedRedis,
    daemon_factory: Callable[[Path], Daemon],
) -> Running:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(RULE.format(id="one"))
    feed_server.put("/a.xml", rss([{"title": "a", "guid": "a"}]))
    path = tmp_path / "monitor.yaml"
    path.write_text(config(own_redis.url, rules, [("a", feed_server.url("/a.xml"))]))
    daemon = daemon_factory(path)
    daemon.wait_for(lambda e: e.get("event") == "poll" and e.get("feed") == "a")
    return Running(daemon, path, rules, own_redis.url)


def test_feeds_added_in_the_config_are_polled_without_a_restart(
    running: Running, feed_server: FeedServer
) -> None:
    feed_server.put("/b.xml", rss([{"title": "b", "guid": "b"}]))
    feeds = [("a", feed_server.url("/a.xml")), ("b", feed_server.url("/b.xml"))]
    running.config_path.write_text(config(running.redis_url, running.rules, feeds))
    daemon = running.daemon
    daemon.wait_for(lambda e: e.get("event") == "feed added" and e.get("feed") == "b")
    daemon.wait_for(lambda e: e.get("event") == "poll" and e.get("feed") == "b")

    running.config_path.write_text("feeds: [{name: a, url: 'https://x.example/', intervl: 1m}]\n")
    daemon.wait_for(lambda e: e.get("event") == "config reload refused; keeping the running config")
    assert daemon.process.poll() is None
    assert daemon.stop() == 0


def test_rule_edits_apply_on_sighup_and_a_broken_edit_keeps_the_running_rules(
    running: Running,
) -> None:
    daemon, rules = running.daemon, running.rules
    (rules / "r2.yaml").write_text(RULE.format(id="two"))
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_for(lambda e: e.get("event") == "rules reloaded" and e.get("rules") == 2)

    (rules / "r3.yaml").write_text("rules:\n  - {id: three, title: T, severty: low}\n")
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_for(lambda e: e.get("event") == "rule reload refused")
    daemon.wait_for(lambda e: e.get("event") == "keeping the running rules" and e.get("rules") == 2)
    assert daemon.stop() == 0


ENTITIES = """\
entities:
  - id: zyzyx
    kind: deposit
    english: Zyzyx
    aliases: {en: [Zyzyx], ru: [Зызыкс*]}
"""
SECOND_ENTITY = "  - {id: qwerty, kind: company, english: Qwerty, aliases: {en: [Qwertyco]}}\n"
CLASHING_ENTITY = "  - {id: zyzyx2, kind: deposit, english: Z, aliases: {en: [Zyzyx]}}\n"


def test_entity_file_edits_apply_without_a_signal_and_a_broken_one_keeps_the_running_list(
    running: Running,
) -> None:
    """The entity list is watched and reloaded with the rules, all or nothing: a clashing
    alias is refused at its path:line:col and the last good list stays in use."""
    from monitor.rules.load import shipped_entities

    daemon, rules = running.daemon, running.rules
    shipped = len(shipped_entities())
    daemon.wait_for(lambda e: e.get("event") == "monitor started" and e.get("entities") == shipped)
    entities = rules / "entities.yaml"
    entities.write_text(ENTITIES, encoding="utf-8")
    daemon.wait_for(lambda e: e.get("event") == "rules reloaded" and e.get("entities") == 1)
    entities.write_text(ENTITIES + SECOND_ENTITY, encoding="utf-8")
    daemon.wait_for(lambda e: e.get("event") == "rules reloaded" and e.get("entities") == 2)

    entities.write_text(ENTITIES + SECOND_ENTITY + CLASHING_ENTITY, encoding="utf-8")
    column = CLASHING_ENTITY.index("[Zyzyx]") + 2
    where = f"{entities}:7:{column}: alias 'Zyzyx' of entity 'zyzyx2' already names entity 'zyzyx'"
    daemon.wait_for(
        lambda e: (
            e.get("event") == "rule reload refused" and str(e.get("problem", "")).startswith(where)
        )
    )
    daemon.wait_for(
        lambda e: e.get("event") == "keeping the running rules" and e.get("entities") == 2
    )
    assert daemon.process.poll() is None
    assert daemon.stop() == 0


async def test_stories_find_entities_with_the_list_reloaded_with_the_rules(
    tmp_path: Path, own_redis: EmbeddedRedis, feed_server: FeedServer
) -> None:
    """Whoever clusters stories takes the entity list from the current rule set: a deposit
    added to entities.yaml is recognised by the running daemon's stories after a reload,
    and a broken edit leaves the running list in place."""
    from monitor.app.daemon import Monitor
    from monitor.settings import load_settings

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(RULE.format(id="one"))
    path = tmp_path / "monitor.yaml"
    path.write_text(config(own_redis.url, rules, [("a", feed_server.url("/a.xml"))]))
    text = "Месторождение Зызыкс выставят на торги"
    async with Monitor(load_settings(path, env={})) as monitor:
        stories = monitor.parts.poll.stories
        assert stories is not None
        assert "zyzyx" not in stories.extractor.lexicon.find_in(text)

        (rules / "entities.yaml").write_text(ENTITIES, encoding="utf-8")
        assert await monitor.reload_rules("test")
        assert stories.extractor.lexicon.find_in(text) == {"zyzyx"}
        assert stories.extractor.lexicon is monitor.rules.lexicon

        (rules / "entities.yaml").write_text(ENTITIES + CLASHING_ENTITY, encoding="utf-8")
        assert not await monitor.reload_rules("test")
        assert stories.extractor.lexicon.find_in(text) == {"zyzyx"}
        assert [entity.id for entity in monitor.rules.entities] == ["zyzyx"]
