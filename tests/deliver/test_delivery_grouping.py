"""One message per article, end to end: the delivery worker against a private Redis and
real local Slack and SMTP servers.  Two rules matching one item arrive as one message that
lists both; what is decided per rule (silences, throttling, routes) stays per rule."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from email import policy as email_policy
from email.parser import BytesParser
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.channel_fixtures import enqueue, make_match
from support.servers import SlackServer, SmtpServer
from test_delivery_worker import PREFIX, Clock, accepted, email, make_worker, slack, suppressed

from monitor.deliver.policy import Route
from monitor.deliver.queue import AlertQueue
from monitor.deliver.silences import SilenceStore
from monitor.model import Severity
from monitor.redisio import Keys


@pytest.fixture
async def queue(redis_client: aioredis.Redis) -> AlertQueue:
    queue = AlertQueue(redis_client, Keys(PREFIX))
    await queue.ensure_group()
    return queue


TITLE = "Kazakhstan weighs rival US and Chinese bids for Upper Kairakty"


def both_rules() -> list[Any]:
    return [
        make_match("us-investment", item="wire:1", title=TITLE, severity=Severity.MEDIUM),
        make_match("kz-tungsten", item="wire:1", title=TITLE, severity=Severity.HIGH),
    ]


def mail_text(server: SmtpServer, index: int) -> tuple[str, str]:
    message = BytesParser(policy=email_policy.default).parsebytes(server.messages[index].raw)
    body = message.get_body(("plain",))
    assert body is not None
    return str(message["Subject"]), body.get_content().replace("\r\n", "\n")


async def test_two_rules_on_one_article_are_one_message_per_channel_listing_both(
    queue: AlertQueue, slack_server: SlackServer, smtp_server: SmtpServer
) -> None:
    await enqueue(queue.client, PREFIX, *both_rules())
    worker = make_worker(queue, {"slack": slack(slack_server), "email": email(smtp_server)})
    report = await worker.run_once()
    assert report.delivered == 2  # each rule's alert, on each channel, on its own account
    assert report.channels == {"slack": 2, "email": 2}
    [post] = accepted(slack_server)
    assert post["text"] == (f"{TITLE} — [HIGH] Rule kz-tungsten; also Rule us-investment (MEDIUM)")
    assert "also `us-investment` (Rule us-investment (MEDIUM))" in str(post["blocks"])
    assert len(smtp_server.messages) == 1
    subject, text = mail_text(smtp_server, 0)
    assert subject.startswith("[HIGH] Rule kz-tungsten (+1 rule): ")
    assert "  Also:    Rule us-investment (MEDIUM)\n" in text
    assert "  Rules:   kz-tungsten, us-investment (rule set rv1)" in text
    await worker.run_once()
    assert len(accepted(slack_server)) == 1
    assert len(smtp_server.messages) == 1
    assert await queue.stream_counts() == {"queued": 0, "pending": 0, "dead": 0}


async def test_a_route_grouping_by_rule_sends_one_message_per_rule(
    queue: AlertQueue, slack_server: SlackServer
) -> None:
    await enqueue(queue.client, PREFIX, *both_rules())
    routes = (Route(channels=("slack",), group_by="rule"),)
    worker = make_worker(queue, {"slack": slack(slack_server)}, routes=routes)
    await worker.run_once()
    texts = sorted(str(p["text"]) for p in accepted(slack_server))
    assert texts == [
        f"{TITLE} — [HIGH] Rule kz-tungsten",
        f"{TITLE} — [MEDIUM] Rule us-investment",
    ]


async def test_a_silenced_rule_is_left_out_of_the_shared_message(
    queue: AlertQueue, slack_server: SlackServer
) -> None:
    clock = Clock(datetime.now(UTC))
    silences = SilenceStore(queue.client, queue.keys)
    await silences.add(
        rule="kz-tungsten", tag=None, duration=timedelta(hours=1), reason="drill", now=clock.now
    )
    await enqueue(queue.client, PREFIX, *both_rules())
    worker = make_worker(queue, {"slack": slack(slack_server)}, clock=clock)
    report = await worker.run_once()
    assert report.silenced == 1
    assert [p["text"] for p in accepted(slack_server)] == [f"{TITLE} — [MEDIUM] Rule us-investment"]


async def test_a_throttled_rule_is_left_out_and_the_other_still_alerts(
    queue: AlertQueue, slack_server: SlackServer
) -> None:
    worker = make_worker(queue, {"slack": slack(slack_server)}, throttle=timedelta(hours=1))
    tungsten = make_match("kz-tungsten", item="other:1", title=TITLE)
    await enqueue(queue.client, PREFIX, tungsten)
    await worker.run_once()
    await enqueue(queue.client, PREFIX, *both_rules())  # a reprint for kz-tungsten: throttled
    report = await worker.run_once()
    assert report.throttled == 1
    assert [p["text"] for p in accepted(slack_server)] == [
        f"{TITLE} — [HIGH] Rule kz-tungsten",
        f"{TITLE} — [MEDIUM] Rule us-investment",
    ]
    assert await suppressed(queue, "reason") == ["throttled"]


async def test_alerts_to_other_recipients_do_not_share_a_message(
    queue: AlertQueue, smtp_server: SmtpServer
) -> None:
    """A route that adds recipients makes another delivery: its rule's mail goes to the
    wider list on its own, the other rule's to the channel's own list."""
    routes = (
        Route(channels=("email",), rules=("kz-tungsten",), to=("minerals@example.org",)),
        Route(channels=("email",), rules=("us-investment",)),
    )
    await enqueue(queue.client, PREFIX, *both_rules())
    worker = make_worker(queue, {"email": email(smtp_server)}, routes=routes)
    await worker.run_once()
    envelopes = sorted(m.rcpt_tos for m in smtp_server.messages)
    assert envelopes == [
        ("desk@example.org",),
        ("desk@example.org", "minerals@example.org"),
    ]
    for index in range(2):
        _, text = mail_text(smtp_server, index)
        assert "Also:" not in text


async def test_a_story_merged_after_queueing_folds_into_one_message(
    queue: AlertQueue, slack_server: SlackServer
) -> None:
    """An alert queued for story sA and a follow-up queued for sB, after a later report
    merged sA into sB (``monitor.stories.store``): read in one pass they are one event, so
    one message; the merge is followed through a chain (sA -> sB -> sC)."""
    alert = dataclasses.replace(make_match(item="wire:1", title=TITLE), story="sA")
    follow = dataclasses.replace(
        make_match(item="other:1", title=TITLE), story="sB", follow_up="new language"
    )
    await queue.client.set(queue.keys.story_merged("sA"), "sB")
    await queue.client.set(queue.keys.story_merged("sB"), "sC")
    assert await queue.merged_stories(["sA", "sB", "sX"]) == {"sA": "sC", "sB": "sC"}
    await enqueue(queue.client, PREFIX, alert, follow)
    report = await make_worker(queue, {"slack": slack(slack_server)}).run_once()
    assert report.folded == 1
    [post] = accepted(slack_server)
    assert post["text"].startswith(f"{TITLE} — [HIGH] Rule kz-tungsten")
    assert "Follow-up" not in post["text"]
