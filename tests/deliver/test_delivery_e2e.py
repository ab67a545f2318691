"""Delivery guarantees of the real daemon: crashes, Redis restarts, replicas, SIGTERM, CLI.

Each test runs ``python -m monitor run`` as a subprocess against a private redis-server (with
its append-only file), a local feed server, a Slack look-alike and an aiosmtpd server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
import redis
from support.commands import kill_daemon
from support.feed_server import FeedServer, rss
from support.samples import KZ_TUNGSTEN_RULES
from support.servers import HttpReply, SlackServer, SmtpServer
from support.waiting import wait_until

from monitor.app.embedded_redis import EmbeddedRedis
from monitor.cli import main

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
RULES = KZ_TUNGSTEN_RULES


def items(count: int) -> list[dict[str, str]]:
    """Fresh items (dated now, so the first poll alerts on them), each its own story: their
    headlines share only "Kazakhstan tungsten" (headlines differing in one number would be
    near-duplicates, reprints of one story, alerting once)."""
    now = format_datetime(datetime.now(UTC), usegmt=True)
    return [
        {
            "title": f"Kazakhstan tungsten news {n}: field K{n} licence L{n}",
            "guid": f"g-{n}",
            "link": f"https://wire.example/{n}",
            "date": now,
        }
        for n in range(count)
    ]


def write_config(
    tmp_path: Path,
    feeds: FeedServer,
    redis_url: str,
    smtp: SmtpServer,
    *,
    slack_rate: str = "0s",
    extra: str = "",
) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "r.yaml").write_text(RULES, encoding="utf-8")
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f"""\
redis: {{url: "{redis_url}"}}
feeds:
  - {{name: wire, url: "{feeds.url("/f.xml")}", interval: 10m}}
rules: {{paths: ["{rules}"]}}
channels:
  slack: {{webhook_url: "${{SLACK_WEBHOOK_URL}}", timeout: 2s, rate_limit: {slack_rate}}}
  email: {{host: 127.0.0.1, port: {smtp.port}, starttls: false, from: m@example.org,
          to: [desk@example.org]}}
delivery: {{retry_after: 200ms, retry_max: 1s, reclaim_after: 1s, send_lease: 3s, burst: 100}}
log: {{format: json, level: info}}
health: {{port: 0}}
{extra}""",
        encoding="utf-8",
    )
    return config


class Daemon:
    """``monitor run`` in a subprocess, stopped (and reaped) whatever the test does.

    Its log goes to a file rather than a pipe, so a helper process holding the pipe open
    can never hang the test.
    """

    count = 0

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        Daemon.count += 1
        self.log = config.parent / f"daemon-{Daemon.count}.log"
        with self.log.open("w") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "monitor", "run", "-c", str(config)],
                env=env,
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=sink,
                start_new_session=True,  # so a kill takes its parser processes too
            )

    @property
    def stderr(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the daemon and wait for it; -9 if it had to be killed after ``timeout``.
        SIGKILL takes the daemon's own processes with it, as a crash would."""
        if sig == signal.SIGKILL:
            kill_daemon(self.process)
            return self.process.wait()
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_daemon(self.process)
            return -9

    def ensure_dead(self) -> None:
        kill_daemon(self.process)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.ensure_dead()


@pytest.fixture
def env(slack_server: SlackServer) -> dict[str, str]:
    environment = {**os.environ, "SLACK_WEBHOOK_URL": slack_server.url}
    environment.pop("MONITOR_CONFIG", None)
    return environment


def accepted_texts(slack: SlackServer) -> list[str]:
    return [str(r.payload["text"]) for r in slack.requests if r.reply.status == 200]


def assert_each_once(slack: SlackServer, smtp: SmtpServer, count: int) -> None:
    texts = Counter(accepted_texts(slack))
    assert len(texts) == count, texts
    assert set(texts.values()) == {1}, texts
    subjects = Counter(str(m.message["Subject"]) for m in smtp.messages)
    assert len(subjects) == count, subjects
    assert set(subjects.values()) == {1}, subjects


def marker_states(url: str, unit: str) -> list[str]:
    """The send markers of every match for one delivery unit."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return [str(client.get(key)) for key in client.scan_iter(f"monitor:sent:*:{unit}")]
    finally:
        client.close()


def queue_state(url: str) -> dict[str, int]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        pending = client.xpending("monitor:matches", "deliver")
        return {
            "queued": int(client.xlen("monitor:matches")),
            "pending": int(pending["pending"]),
            "retrying": int(client.zcard("monitor:retry")),
        }
    finally:
        client.close()


def test_a_worker_killed_mid_send_delivers_exactly_once_after_restart(
    tmp_path: Path,
    feed_server: FeedServer,
    own_redis: EmbeddedRedis,
    slack_server: SlackServer,
    smtp_server: SmtpServer,
    env: dict[str, str],
    daemons: list[Daemon],
) -> None:
    feed_server.put("/f.xml", rss(items(1)))
    slack_server.reply(503, "service_unavailable", delay=30)  # hangs: the kill lands mid-send
    config = write_config(tmp_path, feed_server, own_redis.url, smtp_server)
    daemons.append(Daemon(config, env))
    slack_server.wait_for(1, within=20)
    # Email is done (its marker written) while Slack hangs: the kill lands mid-send.
    wait_until(lambda: marker_states(own_redis.url, "email") == ["done"], 10, "the email")
    daemons[0].stop(signal.SIGKILL)
    daemons.append(Daemon(config, env))
    wait_until(lambda: len(accepted_texts(slack_server)) == 1, 20, "the Slack delivery")
    time.sleep(1.5)  # a second reclaim would show up here
    assert daemons[1].stop() == 0, daemons[1].stderr
    assert_each_once(slack_server, smtp_server, 1)
    assert queue_state(own_redis.url) == {"queued": 0, "pending": 0, "retrying": 0}


def test_redis_restarted_mid_run_loses_and_duplicates_nothing(
    tmp_path: Path,
    feed_server: FeedServer,
    own_redis: EmbeddedRedis,
    slack_server: SlackServer,
    smtp_server: SmtpServer,
    env: dict[str, str],
    daemons: list[Daemon],
) -> None:
    feed_server.put("/f.xml", rss(items(6)))
    slack_server.set_default(HttpReply(200, "ok", delay=0.2))
    config = write_config(tmp_path, feed_server, own_redis.url, smtp_server, slack_rate="500ms")
    daemons.append(Daemon(config, env))
    wait_until(lambda: len(accepted_texts(slack_server)) >= 2, 20, "the first deliveries")
    own_redis.kill()
    time.sleep(3)  # longer than the client's own reconnect retries, so the worker sees it
    own_redis.restart_if_dead()
    wait_until(lambda: len(accepted_texts(slack_server)) >= 6, 30, "every alert")
    wait_until(lambda: len(smtp_server.messages) >= 6, 10, "every email")
    time.sleep(2.5)  # leases and reclaims run out: a duplicate would arrive now
    assert daemons[0].stop() == 0, daemons[0].stderr
    assert_each_once(slack_server, smtp_server, 6)
    logs = [json.loads(line) for line in daemons[0].stderr.splitlines() if line.startswith("{")]
    outages = [r for r in logs if r["event"] == "redis unavailable; retrying with backoff"]
    assert 1 <= len(outages) <= 2  # once per outage (delivery and polling share the flag)
    assert queue_state(own_redis.url) == {"queued": 0, "pending": 0, "retrying": 0}


def test_two_daemons_on_one_redis_deliver_each_alert_exactly_once(
    tmp_path: Path,
    feed_server: FeedServer,
    own_redis: EmbeddedRedis,
    slack_server: SlackServer,
    smtp_server: SmtpServer,
    env: dict[str, str],
    daemons: list[Daemon],
) -> None:
    feed_server.put("/f.xml", rss(items(8)))
    config = write_config(tmp_path, feed_server, own_redis.url, smtp_server)
    daemons.extend([Daemon(config, env), Daemon(config, env)])
    wait_until(lambda: len(accepted_texts(slack_server)) >= 8, 30, "every Slack alert")
    wait_until(lambda: len(smtp_server.messages) >= 8, 10, "every email")
    time.sleep(1.5)
    assert [daemon.stop() for daemon in daemons] == [0, 0]
    assert_each_once(slack_server, smtp_server, 8)
    client = redis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        consumers = client.xinfo_consumers("monitor:matches", "deliver")
    finally:
        client.close()
    # Both daemons wait on the group; the poll queues its 8 matches in one script call, so the
    # daemon whose read is served first may take them all.  What matters: read through the
    # group, every one acknowledged, none delivered twice (above).
    assert 1 <= len(consumers) <= 2
    assert sum(int(consumer["pending"]) for consumer in consumers) == 0


def test_sigterm_during_a_delivery_finishes_it_exits_0_and_loses_nothing(
    tmp_path: Path,
    feed_server: FeedServer,
    own_redis: EmbeddedRedis,
    slack_server: SlackServer,
    smtp_server: SmtpServer,
    env: dict[str, str],
    daemons: list[Daemon],
) -> None:
    feed_server.put("/f.xml", rss(items(3)))
    slack_server.reply(200, "ok", delay=1.0)  # within the 2 s timeout: it finishes
    config = write_config(tmp_path, feed_server, own_redis.url, smtp_server, slack_rate="1s")
    daemons.append(Daemon(config, env))
    slack_server.wait_for(1, within=20)
    assert daemons[0].stop(signal.SIGTERM) == 0, daemons[0].stderr
    assert len(accepted_texts(slack_server)) >= 1  # the in-flight send was not cut off
    assert '"monitor stopped"' in daemons[0].stderr
    # Whatever was not sent yet is still queued; the next run sends it, and nothing twice.
    time.sleep(1)  # anything left pending is now idle long enough to be reclaimed
    again = run_cli("run", "--once", "-c", str(config), env=env)
    assert again.returncode == 0, again.stderr
    assert_each_once(slack_server, smtp_server, 3)
    assert queue_state(own_redis.url) == {"queued": 0, "pending": 0, "retrying": 0}


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_silence_commands_add_list_and_remove(
    tmp_path: Path,
    feed_server: FeedServer,
    own_redis: EmbeddedRedis,
    smtp_server: SmtpServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = str(write_config(tmp_path, feed_server, own_redis.url, smtp_server))
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "")
    code = main(
        [
            "silence",
            "add",
            "--rule",
            "kz-tungsten",
            "--for",
            "4h",
            "--reason",
            "drill",
            "-c",
            config,
        ]
    )
    added = capsys.readouterr().out
    assert code == 0
    silence_id = added.split()[0]
    assert "rule kz-tungsten" in added
    assert "(239 min left)" in added or "(240 min left)" in added
    assert main(["silence", "list", "-c", config]) == 0
    listed = capsys.readouterr().out
    assert silence_id in listed
    assert "drill" in listed
    assert main(["silence", "remove", silence_id, "-c", config]) == 0
    assert main(["silence", "remove", silence_id, "-c", config]) == 1
    assert main(["silence", "add", "--tag", "x", "--reason", " ", "-c", config]) == 2
    assert (
        main(["silence", "add", "--tag", "x", "--for", "soon", "--reason", "r", "-c", config]) == 2
    )
    capsys.readouterr()
    assert main(["silence", "list", "-c", config]) == 0
    assert capsys.readouterr().out == ""
