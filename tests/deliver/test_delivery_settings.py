"""The delivery part of the config: channels, routes, digests, retries, templates."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from monitor.app.wiring import build_channels
from monitor.deliver.build import delivery_policy
from monitor.deliver.channels import SlackChannel, WebhookChannel
from monitor.deliver.policy import DigestSchedule, Route
from monitor.errors import ConfigError, MonitorError
from monitor.model import Severity
from monitor.settings import Settings, load_settings

FULL = """\
channels:
  console: {}
  slack:
    webhook_url: "https://hooks.example/services/T/B/SLACKSECRET"
    rate_limit: 2s
    digest: {schedule: "0 * * * *"}
  email:
    host: smtp.example.org
    from: m@example.org
    to: [desk@example.org]
    digest: {schedule: "0 8 * * *", timezone: Asia/Almaty, bypass: high}
  webhook:
    url: "https://receiver.example/hook?token=HOOKTOKEN"
    secret: SIGNSECRET
    headers: {X-Team: minerals}
routes:
  - {channels: [slack], rules: [kz-tungsten], min_severity: high}
  - {channels: [email], tags: [sanctions], to: [sanctions@example.org]}
  - {channels: [console, webhook], fallback: true}
delivery:
  retry_after: 10s
  retry_max: 10m
  max_attempts: 4
  reclaim_after: 30s
  send_lease: 1m
  throttle: 2h
  burst: 5
"""


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "monitor.yaml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, env={})


def test_every_delivery_key_is_read_into_the_policy(tmp_path: Path) -> None:
    settings = load(tmp_path, FULL)
    policy = delivery_policy(settings)
    assert policy.route_list == (
        Route(("slack",), rules=("kz-tungsten",), min_severity=Severity.HIGH),
        Route(("email",), tags=("sanctions",), to=("sanctions@example.org",)),
        Route(("console", "webhook"), fallback=True),
    )
    retry = policy.retry_policy
    assert (retry.base, retry.cap, retry.max_attempts) == (
        timedelta(seconds=10),
        timedelta(minutes=10),
        4,
    )
    assert (policy.claim_idle, policy.send_lease, policy.throttle, policy.burst) == (
        timedelta(seconds=30),
        timedelta(minutes=1),
        timedelta(hours=2),
        5,
    )
    assert policy.digests == {
        "slack": DigestSchedule("0 * * * *"),
        "email": DigestSchedule("0 8 * * *", "Asia/Almaty", Severity.HIGH),
    }


def test_webhook_url_and_secret_are_masked_secrets(tmp_path: Path) -> None:
    secrets = load(tmp_path, FULL).secrets()
    assert "https://receiver.example/hook?token=HOOKTOKEN" in secrets
    assert "SIGNSECRET" in secrets


async def test_channels_are_built_with_their_settings(tmp_path: Path) -> None:
    settings = load(tmp_path, FULL)
    async with aiohttp.ClientSession() as session:
        channels = build_channels(settings, session)
    assert sorted(channels) == ["console", "email", "slack", "webhook"]
    slack = channels["slack"]
    assert isinstance(slack, SlackChannel)
    assert slack.min_interval == timedelta(seconds=2)
    assert isinstance(channels["webhook"], WebhookChannel)
    assert "HOOKTOKEN" not in repr(channels["webhook"])


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ('digest: {schedule: "every day"}', "not a cron schedule"),
        ('digest: {schedule: "0 8 * * *", timezone: Mars/Olympus}', "unknown time zone"),
        ('digest: {schedule: "0 8 * * *", bypass: urgent}', "bypass"),
    ],
)
def test_a_bad_digest_is_a_config_error_with_its_place(
    tmp_path: Path, snippet: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load(tmp_path, f"channels:\n  console: {{{snippet}}}\n")
    assert caught.value.location.line == 2


def test_retry_max_below_retry_after_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="retry_max"):
        load(tmp_path, "delivery: {retry_after: 5m, retry_max: 1m}\n")


async def test_a_broken_template_override_stops_the_start_with_file_and_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "slack_alert.j2").write_text("#section\n{{ alert.title \n")
    settings = load(tmp_path, "channels: {console: {}}\n")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(MonitorError, match=r"slack_alert\.j2:2"):
            build_channels(settings, session)


def test_without_routes_every_active_channel_gets_every_match(tmp_path: Path) -> None:
    policy = delivery_policy(load(tmp_path, "channels: {console: {}}\n"))
    assert policy.route_list == (Route(("console",)),)
