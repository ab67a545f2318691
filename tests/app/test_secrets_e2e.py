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

import json
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis
from support.commands import run_monitor
from support.feed_server import FeedServer, rss
from support.servers import HttpReply, SlackServer, SmtpServer

from monitor.app.embedded_redis import EmbeddedRedis

# Each test runs eight to ten `monitor` commands (a Python start-up each): about 45 s on an
# idle machine, twice that with both cores busy; the suite's 60 s hang guard is too tight.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
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
    for line in dead.stdout.splitlines():  # --json times are ISO-8601 UTC in every command
        assert datetime.fromisoformat(json.loads(line)["at"]).utcoffset() == timedelta(0)
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


REDIS_PASSWORD = "Redis-Pa55-7d1e0b"
FEED_PASSWORD = "Feed-Pa55-91c3aa"
FEED_APIKEY = "Feed-ApiKey-5b2e71"
FEED_TOKEN = "Feed-Token-c04d9f"
HEADER_TOKEN = "Header-Bearer-3a8f66"
HEADER_KEY = "Header-ApiKey-e5d210"


def guarded_config(feeds: FeedServer, redis_url: str, rules: Path) -> str:
    """One good feed and two broken ones (404): one whose URL carries a password, an
    ``apikey`` and a ``token`` and whose request an ``X-Api-Key``, one sending a bearer token.
    With ``health_alert_after: 0s`` each raises its feed-health alert in the same pass."""
    broken = feeds.url(f"/gone.xml?apikey={FEED_APIKEY}&token={FEED_TOKEN}&page=1").replace(
        "http://", f"http://reader:{FEED_PASSWORD}@"
    )
    return f"""\
redis: {{url: "{redis_url}"}}
feeds:
  - {{name: wire, url: "{feeds.url("/f.xml")}", interval: 10m}}
  - name: paywalled
    url: "{broken}"
    interval: 10m
    headers: {{X-Api-Key: "{HEADER_KEY}"}}
  - name: private
    url: "{feeds.url("/private.xml")}"
    interval: 10m
    headers: {{Authorization: "Bearer {HEADER_TOKEN}"}}
rules: {{paths: ["{rules}"]}}
ingest: {{health_alert_after: 0s}}
channels:
  slack: {{webhook_url: "${{SLACK_WEBHOOK_URL}}", timeout: 2s}}
delivery: {{retry_after: 100ms, retry_max: 200ms, max_attempts: 2}}
log: {{format: json, level: debug}}
health: {{port: 0}}
"""


def test_redis_password_feed_credentials_and_auth_headers_reach_no_output_of_a_run(
    tmp_path: Path,
    feed_server: FeedServer,
    own_redis: EmbeddedRedis,
    slack_server: SlackServer,
) -> None:
    """A Redis that needs a password, failing feeds (404) with ``user:pass@``, ``?apikey=``,
    ``token=``, an ``X-Api-Key`` and a bearer header: every output of a run (its logs, the
    feed-health alert Slack receives, ``monitor status``, ``monitor feeds status`` and its
    JSON, the dead letters, every key and value in Redis) names the feed and its host but
    holds none of those secrets, nor the webhook's."""
    admin = redis.Redis(port=own_redis.port)
    admin.config_set("requirepass", REDIS_PASSWORD)
    admin.close()
    redis_url = f"redis://default:{REDIS_PASSWORD}@127.0.0.1:{own_redis.port}/0"
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    config = tmp_path / "monitor.yaml"
    config.write_text(guarded_config(feed_server, redis_url, rules), encoding="utf-8")
    feed_server.put("/f.xml", rss(ITEMS))
    env = {k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"}
    env["SLACK_WEBHOOK_URL"] = slack_server.url

    run = run_monitor("run", "--once", "-c", str(config), env=env)
    assert run.returncode == 0, run.stderr
    assert feed_server.requests["/gone.xml?apikey=" + FEED_APIKEY + f"&token={FEED_TOKEN}&page=1"]
    alerts = "\n".join(map(repr, slack_server.payloads))
    assert "paywalled" in alerts  # the feed-health alert arrived, naming the feed ...
    assert f"127.0.0.1:{feed_server.port}" in alerts  # ... and its host
    assert "Kazakhstan" in alerts  # and the good feed still alerted
    status = run_monitor("status", "-c", str(config), env=env)
    assert "redis        redis://default:***@127.0.0.1" in status.stdout, status.stderr
    feeds = run_monitor("feeds", "status", "-c", str(config), env=env)
    assert "paywalled" in feeds.stdout, feeds.stderr
    assert "HTTP 404" in feeds.stdout
    feeds_json = run_monitor("feeds", "status", "--json", "-c", str(config), env=env)
    dead = run_monitor("alerts", "dead", "--json", "-c", str(config), env=env)
    assert dead.returncode == 0, dead.stderr
    stored = redis_values(redis_url)
    assert "HTTP 404" in stored  # the failure is recorded, so the check below reads real data

    readable = {
        "logs of the run": run.stderr + run.stdout,
        "Slack alerts": alerts,
        "monitor status": status.stdout + status.stderr,
        "monitor feeds status": feeds.stdout + feeds.stderr,
        "monitor feeds status --json": feeds_json.stdout + feeds_json.stderr,
        "dead letters": dead.stdout + dead.stderr,
        "Redis": stored,
    }
    secrets = [REDIS_PASSWORD, FEED_PASSWORD, FEED_APIKEY, FEED_TOKEN, HEADER_TOKEN, HEADER_KEY]
    for secret in [*secrets, slack_server.secret]:
        for where, text in readable.items():
            assert secret not in text, f"{secret} reached the {where}"
