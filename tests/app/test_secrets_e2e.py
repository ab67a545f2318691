"""Secrets never reach a log line, an error message, a stored record or an alert.

The Slack webhook URL is itself the secret (HTTP libraries put request URLs in log lines and
exception text) and SMTP debug output carries the password.  So the real `monitor` command
runs at debug level against a Slack look-alike and an SMTP server that requires a password:
first with both refusing (the failures are logged and kept as dead letters), then with both
accepting.  Everything a person could read afterwards is searched:
every log line, the dead letters as `monitor alerts dead --json` shows them, every value in
Redis, and every alert Slack and email received.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from support.commands import run_monitor
from support.feed_server import FeedServer, rss
from support.servers import HttpReply, SlackServer, SmtpServer

from monitor.app.embedded_redis import EmbeddedRedis

pytestmark = pytest.mark.slow
PASSWORD = "Smtp-Pa55word-4f9c1e"
RULES = """\
rules:
  - id: kz-tungsten
    title: Kazakhstan tungsten
    severity: high
    match: {all: [Kazakhstan, tungsten]}
"""
ITEMS = [
    {"title": "Kazakhstan opens tungsten tender", "guid": "1", "link": "https://w.example/1"},
    {"title": "Kazakhstan tungsten exports rise", "guid": "2", "link": "https://w.example/2"},
]


def config_text(feeds: FeedServer, redis_url: str, smtp: SmtpServer, rules: Path) -> str:
    return f"""\
redis: {{url: "{redis_url}"}}
feeds:
  - {{name: wire, url: "{feeds.url("/f.xml")}", interval: 10m}}
rules: {{paths: ["{rules}"]}}
channels:
  slack: {{webhook_url: "${{SLACK_WEBHOOK_URL}}", timeout: 2s}}
  email: {{host: 127.0.0.1, port: {smtp.port}, starttls: false, from: m@example.org,
          to: [desk@example.org], username: alerts, password: "${{SMTP_PASSWORD}}"}}
delivery: {{retry_after: 100ms, retry_max: 200ms, max_attempts: 2}}
log: {{format: json, level: debug}}
health: {{port: 0}}
"""


def redis_values(url: str) -> str:
    """Every string, hash, list, set and stream value in the daemon's Redis, as one text."""
    client = redis.Redis.from_url(url, decode_responses=True)
    readers: dict[str, Callable[[str], object]] = {
        "string": client.get,
        "hash": client.hgetall,
        "list": lambda key: client.lrange(key, 0, -1),
        "set": client.smembers,
        "zset": lambda key: client.zrange(key, 0, -1),
        "stream": lambda key: client.xrange(key),
    }
    try:
        found = []
        for key in client.scan_iter(count=500):
            kind = str(client.type(key))
            if kind in readers:
                found.append(f"{key}={readers[kind](key)!r}")
        return "\n".join(found)
    finally:
        client.close()


def test_webhook_urls_and_smtp_passwords_never_reach_logs_errors_records_or_alerts(
    tmp_path: Path,
    feed_server: FeedServer,
    own_redis: EmbeddedRedis,
    slack_server: SlackServer,
    smtp_server_factory: Callable[..., SmtpServer],
) -> None:
    smtp = smtp_server_factory(auth=("alerts", PASSWORD))
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    config = tmp_path / "monitor.yaml"
    config.write_text(config_text(feed_server, own_redis.url, smtp, rules), encoding="utf-8")
    feed_server.put("/f.xml", rss(ITEMS))
    base = {k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"}
    wrong = {**base, "SLACK_WEBHOOK_URL": slack_server.url, "SMTP_PASSWORD": PASSWORD + "-old"}
    right = {**wrong, "SMTP_PASSWORD": PASSWORD}
    secrets = [slack_server.secret, slack_server.url, PASSWORD]

    slack_server.set_default(HttpReply(404, "no_service"))  # a revoked webhook
    refused = run_monitor("run", "--once", "-c", str(config), env=wrong)
    assert refused.returncode == 0, refused.stderr
    assert "no_service" in refused.stderr  # the refusals were logged, with their reasons
    assert "Authentication credentials invalid" in refused.stderr
    assert len(slack_server.requests) >= 2  # both alerts were tried on Slack, and refused
    assert smtp.messages == []  # and refused by the SMTP server (wrong password)
    dead = run_monitor("alerts", "dead", "--json", "-c", str(config), env=wrong)
    assert dead.returncode == 0, dead.stderr
    assert "no_service" in dead.stdout  # the dead letters say why, without the secrets
    assert "alerts" in dead.stdout or "authentication" in dead.stdout.lower()

    stored_after_refusals = redis_values(own_redis.url)
    assert "no_service" in stored_after_refusals  # the dead letters' records are in there

    slack_server.set_default(None)
    retried = run_monitor("alerts", "retry", "--all", "-c", str(config), env=right)
    assert retried.returncode == 0, retried.stderr
    delivered = run_monitor("run", "--once", "-c", str(config), env=right)
    assert delivered.returncode == 0, delivered.stderr
    assert len(slack_server.payloads) >= 2
    assert len(smtp.messages) >= 2

    readable = {
        "logs of the refused run": refused.stderr + refused.stdout,
        "dead letters": dead.stdout + dead.stderr,
        "logs of the retry": retried.stderr + retried.stdout,
        "logs of the delivering run": delivered.stderr + delivered.stdout,
        "Redis after the refusals": stored_after_refusals,
        "Redis at the end": redis_values(own_redis.url),
        "Slack alerts": "\n".join(map(repr, slack_server.payloads)),
        "emails": "\n".join(m.message.as_string() for m in smtp.messages),
    }
    for secret in [*secrets, PASSWORD + "-old"]:
        for where, text in readable.items():
            assert secret not in text, f"a secret reached the {where}"
