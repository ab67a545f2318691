"""The Slack app end to end: the channel against a local Web API look-alike, the delivery
worker on a private Redis, and signed button presses posted to the interactivity endpoint.

Each button's effect is checked through the real worker: after a mute or a snooze, the next
matching alert is silenced (recorded, not posted) and one that does not match still goes out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
import yaml
from pydantic import ValidationError
from structlog.testing import capture_logs
from support.channel_fixtures import enqueue, make_match
from support.feed_server import FeedServer, rss
from support.servers import bound_socket, unused_port
from support.slack_api import (
    BOT_TOKEN,
    CHANNEL,
    Message,
    SlackApiServer,
    api_problems,
    press_payload,
    signed_request,
)

from monitor.app.daemon import Monitor
from monitor.app.embedded_redis import EmbeddedRedis
from monitor.app.metrics import Metrics
from monitor.app.wiring import Stores, slack_actions_server
from monitor.cli.rules import cmd_rules_stats
from monitor.console.slack_actions import SlackActionsServer
from monitor.deliver.build import build_channels, send_leases
from monitor.deliver.channels import SlackChannel
from monitor.deliver.channels.slack_app import SlackAppChannel, SlackWebApi
from monitor.deliver.feedback import Action, AlertRef
from monitor.deliver.feedback_store import FeedbackStore
from monitor.deliver.policy import RetryPolicy, Route
from monitor.deliver.queue import AlertQueue
from monitor.deliver.silences import SilenceStore
from monitor.deliver.worker import DeliveryPolicy, DeliveryReport, DeliveryWorker
from monitor.errors import ConfigError, PermanentDeliveryError, TransientDeliveryError
from monitor.model import Match
from monitor.redisio import Keys
from monitor.settings import Settings, SlackChannelSettings, load_settings

pytestmark = pytest.mark.integration

PREFIX = "sa"
SIGNING = "signing-SECRET-4f1d9c0e7b2a66ab"


@pytest.fixture
def slack_api() -> Iterator[SlackApiServer]:
    with SlackApiServer() as server:
        yield server


def story_match(
    rule: str = "kz-tungsten",
    item: str = "wire:1",
    story: str = "s1",
    *,
    source: str = "wire",
    follow_up: str | None = None,
) -> Match:
    base = make_match(rule, item, title=f"Tungsten tender {item}")
    return replace(base, story=story, follow_up=follow_up, item=replace(base.item, source=source))


@dataclass
class Desk:
    """Everything a test of the Slack app needs, wired as the daemon wires it."""

    api: SlackApiServer
    client: aioredis.Redis
    feedback: FeedbackStore
    silences: SilenceStore
    channel: SlackAppChannel
    worker: DeliveryWorker
    actions: SlackActionsServer
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.actions.port}/slack/actions"

    async def deliver(self, *matches: Match) -> DeliveryReport:
        await enqueue(self.client, PREFIX, *matches)
        return await self.worker.run_once()

    async def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        async with self.http.post(self.url, data=body, headers=headers) as response:
            return response.status, await response.text()

    async def press(self, message: Message, action: Action, **options: Any) -> int:
        body, headers = signed_request(SIGNING, press_payload(message, action.action_id, **options))
        status, _ = await self.post(body, headers)
        await self.actions.settle()
        return status


@pytest.fixture
async def desk(redis_client: aioredis.Redis, slack_api: SlackApiServer) -> AsyncIterator[Desk]:
    keys = Keys(PREFIX)
    queue = AlertQueue(redis_client, keys)
    await queue.ensure_group()
    feedback = FeedbackStore(redis_client, keys)
    silences = SilenceStore(redis_client, keys)
    channel = SlackAppChannel(
        SlackWebApi(BOT_TOKEN, api_url=slack_api.api_url, timeout=5),
        CHANNEL,
        feedback=feedback,
        buttons=True,
        min_interval=timedelta(0),
    )
    worker = DeliveryWorker(
        queue,
        {"slack": channel},
        DeliveryPolicy(
            routes=(Route(channels=("slack",)),),
            retry=RetryPolicy(base=timedelta(milliseconds=50), cap=timedelta(milliseconds=200)),
        ),
        consumer="w1",
    )
    worker.feedback = feedback
    actions = SlackActionsServer(
        SIGNING,
        feedback=feedback,
        silences=silences,
        api=SlackWebApi(BOT_TOKEN, api_url=slack_api.api_url, timeout=5),
        clock=lambda: datetime.now(UTC),
    )
    assert await actions.start(bound_socket())
    async with aiohttp.ClientSession() as http:
        yield Desk(slack_api, redis_client, feedback, silences, channel, worker, actions, http)
    await actions.stop()
    await channel.close()


def buttons_of(message: Message) -> list[dict[str, Any]]:
    return [e for b in message.blocks if b["type"] == "actions" for e in b["elements"]]


# --- posting ---------------------------------------------------------------------------------


async def test_an_alert_is_posted_with_buttons_and_counted(desk: Desk) -> None:
    report = await desk.deliver(story_match())
    assert report.channels == {"slack": 1}
    (call,) = desk.api.calls_of("chat.postMessage")
    assert call.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert call.payload["channel"] == CHANNEL
    assert api_problems(call.payload) == []
    (message,) = desk.api.messages
    assert [b["text"]["text"] for b in buttons_of(message)] == [
        "Relevant",
        "Not relevant",
        "Mute story",
        "Mute this source for this rule",
        "Snooze rule 24 h",
    ]
    ref = AlertRef.parse(buttons_of(message)[0]["value"])
    assert ref == AlertRef("kz-tungsten", "wire:1", "story:s1", "wire")
    assert await desk.feedback.rules() == ["kz-tungsten"]
    assert len(await desk.feedback.sent_times("kz-tungsten", datetime(2000, 1, 1, tzinfo=UTC))) == 1
    assert (await desk.feedback.alert_text("kz-tungsten|wire:1"))[
        "title"
    ] == "Tungsten tender wire:1"


async def test_a_storys_follow_up_is_posted_in_the_alerts_thread(desk: Desk) -> None:
    await desk.deliver(story_match())
    await desk.deliver(story_match(item="wire:2", follow_up="new language"))
    await desk.deliver(story_match("other-rule", item="wire:3"))
    first, follow_up, other = desk.api.messages
    assert first.thread_ts is None
    assert follow_up.thread_ts == first.ts
    assert other.thread_ts is None  # another rule's alert of the story starts its own thread
    thread = await desk.feedback.thread(story_match(), "slack")
    assert thread == (CHANNEL, first.ts)


async def test_a_burst_keeps_one_row_of_buttons_per_alert(
    redis_client: aioredis.Redis, slack_api: SlackApiServer
) -> None:
    channel = SlackAppChannel(
        SlackWebApi(BOT_TOKEN, api_url=slack_api.api_url, timeout=5),
        CHANNEL,
        feedback=FeedbackStore(redis_client, Keys(PREFIX)),
        buttons=True,
    )
    try:
        await channel.send_group([story_match(item=f"wire:{n}", story=f"s{n}") for n in range(10)])
    finally:
        await channel.close()
    (message,) = slack_api.messages
    actions = [b for b in message.blocks if b["type"] == "actions"]
    assert len(actions) == 10
    assert len(message.blocks) <= 50
    assert api_problems({"text": message.text, "blocks": message.blocks}) == []
    items = {AlertRef.parse(b["elements"][0]["value"]).item for b in actions}  # type: ignore[union-attr]
    assert items == {f"wire:{n}" for n in range(10)}


async def test_without_a_signing_secret_no_buttons_are_sent(
    redis_client: aioredis.Redis, slack_api: SlackApiServer
) -> None:
    channel = SlackAppChannel(
        SlackWebApi(BOT_TOKEN, api_url=slack_api.api_url, timeout=5), CHANNEL, buttons=False
    )
    try:
        await channel.send(story_match())
    finally:
        await channel.close()
    (message,) = slack_api.messages
    assert buttons_of(message) == []


# --- Slack's refusals --------------------------------------------------------------------------


async def _send(api: SlackApiServer, *, token: str = BOT_TOKEN, channel: str = CHANNEL) -> None:
    app = SlackAppChannel(SlackWebApi(token, api_url=api.api_url, timeout=5), channel)
    try:
        await app.send(story_match())
    finally:
        await app.close()


async def test_a_wrong_token_is_permanent_and_never_shown(slack_api: SlackApiServer) -> None:
    wrong = "xoxb-999-888-WRONGtokenVALUE"
    with capture_logs() as logs, pytest.raises(PermanentDeliveryError) as caught:
        await _send(slack_api, token=wrong)
    assert "invalid_auth" in str(caught.value)
    assert "SLACK_BOT_TOKEN" in str(caught.value)
    assert wrong not in str(caught.value)
    assert wrong not in repr(logs)
    assert caught.value.__cause__ is None


async def test_an_unknown_channel_is_permanent(slack_api: SlackApiServer) -> None:
    with pytest.raises(PermanentDeliveryError, match="channel_not_found"):
        await _send(slack_api, channel="C0GONE")


async def test_rate_limits_and_slack_trouble_are_retried(slack_api: SlackApiServer) -> None:
    slack_api.rate_limit(retry_after=3)
    with pytest.raises(TransientDeliveryError) as caught:
        await _send(slack_api)
    assert caught.value.retry_after == 3.0
    slack_api.fail("internal_error")
    with pytest.raises(TransientDeliveryError, match="internal_error"):
        await _send(slack_api)
    slack_api.reply(200, {"unexpected": "html page from a proxy"})
    with pytest.raises(TransientDeliveryError, match="not Slack's JSON"):
        await _send(slack_api)
    await _send(slack_api)  # and Slack is back
    assert len(slack_api.messages) == 1


async def test_the_worker_reschedules_a_rate_limited_alert(desk: Desk) -> None:
    desk.api.rate_limit(retry_after=1)
    report = await desk.deliver(story_match())
    assert report.failed == 1
    assert report.failed_channels == {"slack": 1}
    assert desk.api.messages == []


# --- the interactivity endpoint --------------------------------------------------------------


async def test_relevant_is_recorded_and_the_message_says_who(desk: Desk) -> None:
    await desk.deliver(story_match())
    (message,) = desk.api.messages
    assert await desk.press(message, Action.RELEVANT) == 200
    (vote,) = await desk.feedback.votes("kz-tungsten")
    assert (vote.relevant, vote.who, vote.title) == (
        True,
        "dana (U0ANALYST)",
        "Tungsten tender wire:1",
    )
    (logged,) = await desk.feedback.presses()
    assert logged["action"] == "relevant"
    assert logged["who"] == "dana (U0ANALYST)"
    assert (logged["alert"], logged["rule"], logged["story"], logged["source"]) == (
        "kz-tungsten|wire:1",
        "kz-tungsten",
        "story:s1",
        "wire",
    )
    (update,) = desk.api.calls_of("chat.update")
    assert update.payload["ts"] == message.ts
    now = desk.api.message(message.ts)
    notes = [b for b in now.blocks if b.get("block_id") == "monitor_actions_0.feedback"]
    assert notes[0]["elements"][0]["text"].startswith("<@U0ANALYST> marked it relevant · ")
    assert buttons_of(now) == buttons_of(message)  # the buttons stay for the others


async def test_a_bad_signature_is_refused_and_nothing_recorded(desk: Desk) -> None:
    await desk.deliver(story_match())
    (message,) = desk.api.messages
    body, headers = signed_request("not-the-secret", press_payload(message, "monitor_snooze_rule"))
    with capture_logs() as logs:
        assert await desk.post(body, headers) == (401, "signature does not match")
    assert await desk.feedback.presses() == []
    assert await desk.silences.active(datetime.now(UTC)) == []
    assert any(e["event"] == "Slack request refused" for e in logs)
    assert SIGNING not in repr(logs)


async def test_a_tampered_body_is_refused(desk: Desk) -> None:
    await desk.deliver(story_match())
    (message,) = desk.api.messages
    body, headers = signed_request(SIGNING, press_payload(message, "monitor_relevant"))
    tampered = body.replace(b"monitor_relevant", b"monitor_snooze_rule")
    assert (await desk.post(tampered, headers))[0] == 401
    assert (await desk.post(body, {})) == (401, "missing signature headers")
    assert await desk.feedback.presses() == []


async def test_a_stale_timestamp_is_refused(desk: Desk) -> None:
    await desk.deliver(story_match())
    (message,) = desk.api.messages
    old = int(time.time()) - 6 * 60
    body, headers = signed_request(
        SIGNING, press_payload(message, "monitor_relevant"), timestamp=old
    )
    assert await desk.post(body, headers) == (401, "timestamp too old or in the future")
    assert await desk.feedback.votes("kz-tungsten") == []


async def test_a_replayed_request_is_refused(desk: Desk) -> None:
    await desk.deliver(story_match())
    (message,) = desk.api.messages
    body, headers = signed_request(SIGNING, press_payload(message, "monitor_not_relevant"))
    assert (await desk.post(body, headers))[0] == 200
    status, text = await desk.post(body, headers)
    assert (status, text) == (401, "request already handled (replay)")
    await desk.actions.settle()
    assert len(await desk.feedback.presses()) == 1
    assert len(desk.api.calls_of("chat.update")) == 1


async def test_an_unsigned_get_or_another_path_is_not_served(desk: Desk) -> None:
    async with desk.http.get(desk.url) as response:
        assert response.status == 405
    async with desk.http.post(desk.url.replace("/slack/actions", "/other")) as response:
        assert response.status == 404


async def test_mute_story_silences_the_storys_next_alerts(desk: Desk) -> None:
    await desk.deliver(story_match())
    (message,) = desk.api.messages
    assert await desk.press(message, Action.MUTE_STORY) == 200
    (silence,) = await desk.silences.active(datetime.now(UTC))
    assert (silence.story, silence.rule, silence.source) == ("story:s1", None, None)
    assert silence.author == "dana (U0ANALYST)"
    follow_up = story_match(item="wire:2", follow_up="corroborated by 3 sources")
    other_rule = story_match("us-minerals", item="wire:3")
    report = await desk.deliver(follow_up, other_rule)
    assert report.silenced == 2
    report = await desk.deliver(story_match(item="wire:4", story="s2"))
    assert report.channels == {"slack": 1}  # another story still alerts
    assert len(desk.api.messages) == 2


async def test_mute_source_silences_that_source_for_that_rule_only(desk: Desk) -> None:
    await desk.deliver(story_match())
    (message,) = desk.api.messages
    assert await desk.press(message, Action.MUTE_SOURCE) == 200
    (silence,) = await desk.silences.active(datetime.now(UTC))
    assert silence.target == "rule kz-tungsten · source wire"
    same = story_match(item="wire:5", story="s5")
    report = await desk.deliver(same)
    assert report.silenced == 1
    other_source = story_match(item="tass:6", story="s6", source="tass")
    other_rule = story_match("us-minerals", item="wire:7", story="s7")
    report = await desk.deliver(other_source, other_rule)
    assert report.silenced == 0
    assert report.channels == {"slack": 2}


async def test_snooze_silences_the_rule_for_24_hours(desk: Desk) -> None:
    await desk.deliver(story_match())
    (message,) = desk.api.messages
    before = datetime.now(UTC)
    assert await desk.press(message, Action.SNOOZE_RULE) == 200
    (silence,) = await desk.silences.active(before)
    assert silence.rule == "kz-tungsten"
    assert timedelta(hours=23, minutes=59) < silence.ends - before <= timedelta(hours=24, seconds=5)
    report = await desk.deliver(story_match(item="x:1", story="s9", source="tass"))
    assert report.silenced == 1
    report = await desk.deliver(story_match("us-minerals", item="x:2", story="s9"))
    assert report.channels == {"slack": 1}
    updated = desk.api.message(message.ts)
    assert "snoozed the rule for 24 h" in json.dumps(updated.blocks)


async def test_a_follow_up_in_a_thread_has_buttons_that_work(desk: Desk) -> None:
    await desk.deliver(story_match())
    await desk.deliver(story_match(item="wire:2", follow_up="new language"))
    _, reply = desk.api.messages
    assert await desk.press(reply, Action.NOT_RELEVANT, user_id="U0OTHER", user_name="ivo") == 200
    (vote,) = await desk.feedback.votes("kz-tungsten")
    assert (vote.alert, vote.relevant) == ("kz-tungsten|wire:2", False)
    assert desk.api.calls_of("chat.update")[0].payload["ts"] == reply.ts


async def test_a_failed_update_leaves_the_press_standing(desk: Desk) -> None:
    await desk.deliver(story_match())
    (message,) = desk.api.messages
    desk.api.fail("message_not_found")
    with capture_logs() as logs:
        assert await desk.press(message, Action.RELEVANT) == 200
    assert len(await desk.feedback.votes("kz-tungsten")) == 1
    assert any(e["event"] == "Slack message not updated" for e in logs)


async def test_no_secret_reaches_redis_or_the_logs(desk: Desk) -> None:
    with capture_logs() as logs:
        await desk.deliver(story_match())
        (message,) = desk.api.messages
        for action in Action:
            await desk.press(message, action)
        desk.api.fail("invalid_auth")
        await desk.deliver(story_match("us-minerals", item="wire:9", story="s9", source="x"))
    dump = []
    async for key in desk.client.scan_iter(f"{PREFIX}:*"):
        kind = await desk.client.type(key)
        if kind == "string":
            dump.append(await desk.client.get(key))
        elif kind == "hash":
            dump.append(json.dumps(await desk.client.hgetall(key)))
        elif kind == "stream":
            dump.append(json.dumps(await desk.client.xrange(key)))
        elif kind == "zset":
            dump.append(json.dumps(await desk.client.zrange(key, 0, -1)))
        elif kind == "set":
            dump.append(json.dumps(sorted(await desk.client.smembers(key))))
        dump.append(key)
    everything = "\n".join(str(d) for d in dump) + repr(logs)
    assert "legacy-verification-token" not in everything
    for secret in (BOT_TOKEN, SIGNING, "testtokenvalue"):
        assert secret not in everything
    assert "invalid_auth" in everything  # the dead letter says why, without the token


# --- numbers ---------------------------------------------------------------------------------


async def test_rules_stats_and_candidates_from_the_cli(
    desk: Desk, session_redis: EmbeddedRedis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for n in range(4):
        await desk.deliver(story_match(item=f"w:{n}", story=f"s{n}"))
    messages = desk.api.messages
    await desk.press(messages[0], Action.RELEVANT)
    await desk.press(messages[1], Action.NOT_RELEVANT)
    await desk.press(messages[2], Action.NOT_RELEVANT)
    await desk.press(messages[2], Action.RELEVANT, user_id="U0BOSS", user_name="boss")
    await desk.press(messages[3], Action.NOT_RELEVANT)
    config = tmp_path / "monitor.yaml"
    config.write_text(
        yaml.safe_dump({"redis": {"url": session_redis.url, "key_prefix": PREFIX}}),
        encoding="utf-8",
    )
    capsys.readouterr()  # what the presses logged
    args = argparse.Namespace(config=str(config), candidates=None)
    code = await asyncio.to_thread(cmd_rules_stats, args)  # the command runs its own loop
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].split() == [
        "RULE",
        "SENT",
        "REL",
        "NOT",
        "PREC",
        "7d",
        "SENT",
        "REL",
        "NOT",
        "PREC",
        "30d",
    ]
    assert out[1].split() == ["kz-tungsten", "4", "2", "2", "50%", "4", "2", "2", "50%"]
    args = argparse.Namespace(config=str(config), candidates="kz-tungsten")
    code = await asyncio.to_thread(cmd_rules_stats, args)
    text = capsys.readouterr().out
    assert code == 0
    assert yaml.safe_load(text) == {
        "no_match": [
            {"title": "Tungsten tender w:3", "summary": make_match().item.summary},
            {"title": "Tungsten tender w:1", "summary": make_match().item.summary},
        ]
    }


async def test_the_worker_hands_the_rules_numbers_to_the_metrics(desk: Desk) -> None:
    report = await desk.deliver(story_match())
    assert report.rule_stats is not None  # the first pass reads them
    (message,) = desk.api.messages
    await desk.press(message, Action.NOT_RELEVANT)
    desk.worker._stats_at = None
    report = await desk.worker.run_once()
    metrics = Metrics()
    metrics.observe_delivery(report)
    text = metrics.render().decode()
    assert 'monitor_rule_alerts{rule="kz-tungsten",window="7d"} 1.0' in text
    assert (
        'monitor_rule_feedback{rule="kz-tungsten",verdict="not_relevant",window="30d"} 1.0' in text
    )
    assert 'monitor_rule_precision{rule="kz-tungsten",window="7d"} 0.0' in text
    assert (await desk.worker.run_once()).rule_stats is None  # not again within a minute


# --- settings and wiring ---------------------------------------------------------------------


def _settings(**slack: Any) -> Settings:
    return Settings.model_validate({"channels": {"console": {}, "slack": slack}})


def test_app_mode_settings_and_the_one_or_the_other_rule(tmp_path: Path) -> None:
    app = _settings(bot_token=BOT_TOKEN, channel=CHANNEL, signing_secret=SIGNING)
    assert app.channels.slack is not None
    assert (app.channels.slack.active, app.channels.slack.app, app.channels.slack.buttons) == (
        True,
        True,
        True,
    )
    assert BOT_TOKEN in app.secrets()
    assert SIGNING in app.secrets()
    assert BOT_TOKEN not in repr(app)
    hook = _settings(webhook_url="https://hooks.slack.com/services/T/B/x")
    assert hook.channels.slack is not None
    assert not hook.channels.slack.app
    off = _settings(bot_token="", channel=CHANNEL)  # ${SLACK_BOT_TOKEN:-} unset
    assert off.channels.slack is not None
    assert not off.channels.slack.active
    for bad, said in [
        ({"bot_token": BOT_TOKEN, "channel": CHANNEL, "webhook_url": "https://h/x"}, "not both"),
        ({"bot_token": BOT_TOKEN}, "needs channel"),
        ({"bot_token": "xoxp-user-token-value", "channel": CHANNEL}, "not a bot token"),
        ({"webhook_url": "https://h/x", "signing_secret": SIGNING}, "webhook posts"),
    ]:
        with pytest.raises(ValidationError, match=said):
            SlackChannelSettings.model_validate(bad)
        config = tmp_path / "monitor.yaml"
        config.write_text(yaml.safe_dump({"channels": {"slack": bad}}), encoding="utf-8")
        with pytest.raises(ConfigError, match=said) as caught:  # as the operator sees it
            load_settings(config, env={})
        assert BOT_TOKEN not in str(caught.value)
        assert "xoxp-user" not in str(caught.value)
        assert SIGNING not in str(caught.value)


async def test_the_config_builds_the_app_channel_or_the_webhook_as_before() -> None:
    async with aiohttp.ClientSession() as session:
        app = build_channels(_settings(bot_token=BOT_TOKEN, channel=CHANNEL), session)
        hook = build_channels(
            _settings(webhook_url="https://hooks.slack.com/services/T/B/x"), session
        )
    assert isinstance(app["slack"], SlackAppChannel)
    assert isinstance(hook["slack"], SlackChannel)
    leases = send_leases(_settings(bot_token=BOT_TOKEN, channel=CHANNEL))
    assert leases["slack"] >= timedelta(seconds=10 + 5)


async def test_the_daemon_serves_the_endpoint_only_with_buttons(
    redis_client: aioredis.Redis,
) -> None:
    def now() -> datetime:
        return datetime.now(UTC)

    with_buttons = _settings(bot_token=BOT_TOKEN, channel=CHANNEL, signing_secret=SIGNING)
    server = slack_actions_server(with_buttons, Stores.build(redis_client, with_buttons), now)
    assert server is not None
    assert (server.host, server.port, server.path) == ("127.0.0.1", 8082, "/slack/actions")
    await server.api.close()
    plain = _settings(bot_token=BOT_TOKEN, channel=CHANNEL)
    assert slack_actions_server(plain, Stores.build(redis_client, plain), now) is None
    hook = _settings(webhook_url="https://hooks.slack.com/services/T/B/x")
    assert slack_actions_server(hook, Stores.build(redis_client, hook), now) is None


# --- the daemon ------------------------------------------------------------------------------


async def test_the_daemon_posts_serves_presses_and_honours_them(
    tmp_path: Path, feed_server: FeedServer, slack_api: SlackApiServer, own_redis: EmbeddedRedis
) -> None:
    """``monitor run``'s parts: the alert goes out through the app with buttons, the
    daemon's own endpoint takes a signed Snooze, and the rule's next alert is silenced."""
    port = unused_port()
    feed_server.put("/news.xml", rss([{"title": "Tungsten tender in Almaty", "guid": "1"}]))
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {id: t, title: T, severity: high, match: {any: [tungsten]}}\n")
    slack = {
        "bot_token": "${SLACK_BOT_TOKEN}",
        "channel": CHANNEL,
        "signing_secret": "${SLACK_SIGNING_SECRET}",
        "api_url": slack_api.api_url,
        "rate_limit": "0s",
        "interactivity": {"port": port},
    }
    config = tmp_path / "monitor.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "redis": {"url": own_redis.url},
                "feeds": [{"name": "news", "url": feed_server.url("/news.xml")}],
                "rules": {"paths": [str(rules)]},
                "channels": {"slack": slack},
                "ingest": {"workers": 0, "backfill": "off"},
                "health": {"port": 0},
            }
        ),
        encoding="utf-8",
    )
    env = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING}
    async with Monitor(load_settings(config, env=env)) as daemon, aiohttp.ClientSession() as http:
        (source,) = daemon.sources
        await daemon.poll(source)
        assert (await daemon.deliver_due()).channels == {"slack": 1}
        (message,) = slack_api.messages
        body, headers = signed_request(SIGNING, press_payload(message, "monitor_snooze_rule"))
        url = f"http://127.0.0.1:{port}/slack/actions"
        async with http.post(url, data=body, headers=headers) as response:
            assert response.status == 200
        feed_server.put("/news.xml", rss([{"title": "Tungsten exports rise", "guid": "2"}]))
        assert (await daemon.poll(source)).matches == 1
        report = await daemon.deliver_due()
        assert report.silenced == 1
        assert len(slack_api.messages) == 1
        await slack_api.wait_for_async(2)  # the post, then the update
    assert [c.method for c in slack_api.calls] == ["chat.postMessage", "chat.update"]
    with pytest.raises(aiohttp.ClientConnectionError):  # the endpoint closed with the daemon
        async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers):
            pass
