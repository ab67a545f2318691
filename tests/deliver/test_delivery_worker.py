"""The delivery worker against a private Redis and real local Slack, SMTP and webhook servers.

Nothing is mocked: retries, dead letters, throttling, silences, routing, coalescing and
digests are observed on the servers that received (or did not receive) the alerts.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email import policy as email_policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.channel_fixtures import enqueue, make_match
from support.servers import HttpReply, SlackServer, SmtpServer

from monitor.app.embedded_redis import EmbeddedRedis
from monitor.cli import main
from monitor.deliver.channels import (
    Channel,
    ConsoleChannel,
    EmailChannel,
    SlackChannel,
    WebhookChannel,
)
from monitor.deliver.policy import DigestSchedule, RetryPolicy, Route
from monitor.deliver.queue import AlertQueue
from monitor.deliver.silences import SilenceStore
from monitor.deliver.worker import DeliveryPolicy, DeliveryReport, DeliveryWorker
from monitor.errors import StoreError
from monitor.model import Severity
from monitor.redisio import Keys

PREFIX = "t"
FAST = RetryPolicy(base=timedelta(milliseconds=50), cap=timedelta(milliseconds=200))


class Clock:
    """A clock tests move by hand: digest windows and silences depend on it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


_OPEN: list[Channel] = []


@pytest.fixture(autouse=True)
async def _close_channels() -> AsyncIterator[None]:
    """Channels open their own HTTP sessions on first use; close every one after the test."""
    yield
    while _OPEN:
        await _OPEN.pop().close()


@pytest.fixture
async def queue(redis_client: aioredis.Redis) -> AlertQueue:
    queue = AlertQueue(redis_client, Keys(PREFIX))
    await queue.ensure_group()
    return queue


def make_worker(
    queue: AlertQueue,
    channels: dict[str, Channel],
    *,
    consumer: str = "w1",
    clock: Callable[[], datetime] | None = None,
    **policy: Any,
) -> DeliveryWorker:
    _OPEN.extend(channels.values())
    settings: dict[str, Any] = {
        "routes": (Route(channels=tuple(channels)),),
        "retry": FAST,
        "claim_idle": timedelta(seconds=30),
        **policy,
    }
    return DeliveryWorker(
        queue,
        channels,
        DeliveryPolicy(**settings),
        consumer=consumer,
        clock=clock or (lambda: datetime.now(UTC)),
        jitter=lambda: 1.0,
    )


def slack(server: SlackServer, *, rate: float = 0.0) -> SlackChannel:
    return SlackChannel(server.url, timeout=5, min_interval=timedelta(seconds=rate))


def email(server: SmtpServer, *recipients: str, **options: Any) -> EmailChannel:
    return EmailChannel(
        host=server.host,
        port=server.port,
        sender="Monitor <alerts@example.org>",
        recipients=recipients or ("desk@example.org",),
        timeout=5,
        **options,
    )


async def run_until(
    worker: DeliveryWorker, done: Callable[[], bool], within: float = 15.0
) -> DeliveryReport:
    """Run passes (as the daemon's loop does) until ``done()``; returns the summed report."""
    total = DeliveryReport()
    deadline = time.monotonic() + within
    while not done():
        assert time.monotonic() < deadline, "condition not reached in time"
        report = await worker.run_once(block_ms=50)
        for name in ("read", "delivered", "failed", "dead", "throttled", "silenced", "digested"):
            setattr(total, name, getattr(total, name) + getattr(report, name))
    # A daemon pass leaves slow sends running; they finish (and acknowledge) on their own.
    assert await worker.settle(within), "background sends did not finish in time"
    return total


def accepted(server: SlackServer) -> list[Any]:
    return [r.payload for r in server.requests if r.reply.status == 200]


async def suppressed(queue: AlertQueue, name: str) -> list[bytes | str]:
    """The ``name`` field of each entry in the suppression log, oldest first."""
    logged = await queue.client.xrange(f"{PREFIX}:suppressed")
    assert logged is not None
    values: list[bytes | str] = []
    for _, fields in logged:
        assert fields is not None
        values.append(fields[name])
    return values


# --- failures, retries, dead letters --------------------------------------------------------


async def test_slack_429_with_retry_after_is_delivered_once_after_the_wait(
    queue: AlertQueue, slack_server: SlackServer
) -> None:
    slack_server.reply(429, "rate_limited", retry_after=2)
    await enqueue(queue.client, PREFIX, make_match())
    worker = make_worker(queue, {"slack": slack(slack_server)})
    started = time.monotonic()
    await run_until(worker, lambda: len(accepted(slack_server)) == 1)
    waited = time.monotonic() - started
    assert len(slack_server.requests) == 2
    assert waited >= 2.0
    await worker.run_once()
    assert len(slack_server.requests) == 2
    assert await queue.stream_counts() == {"queued": 0, "pending": 0, "dead": 0}
    assert await queue.retrying() == 0


async def test_500_five_times_dead_letters_with_the_reason_then_alerts_retry_delivers(
    queue: AlertQueue, slack_server: SlackServer, tmp_path: Path, session_redis: EmbeddedRedis
) -> None:
    slack_server.reply(500, "internal_error", times=5)
    await enqueue(queue.client, PREFIX, make_match())
    policy = RetryPolicy(FAST.base, FAST.cap, max_attempts=5)
    worker = make_worker(queue, {"slack": slack(slack_server)}, retry=policy)
    await run_until(worker, lambda: len(slack_server.requests) == 5)
    await worker.run_once()
    [letter] = await queue.dead_letters()
    assert letter.channel == "slack"
    assert letter.attempts == 5
    assert "gave up after 5 attempts" in letter.reason
    assert "HTTP 500" in letter.reason
    assert slack_server.secret not in letter.reason
    assert await queue.stream_counts() == {"queued": 0, "pending": 0, "dead": 1}

    config = tmp_path / "monitor.yaml"
    config.write_text(f'redis: {{url: "{session_redis.url}", key_prefix: {PREFIX}}}\n')
    listed = await asyncio.to_thread(main, ["alerts", "dead", "-c", str(config)])
    assert listed == 0
    code = await asyncio.to_thread(main, ["alerts", "retry", letter.id, "-c", str(config)])
    assert code == 0
    await run_until(worker, lambda: len(accepted(slack_server)) == 1)
    assert await queue.stream_counts() == {"queued": 0, "pending": 0, "dead": 0}
    again = await asyncio.to_thread(main, ["alerts", "retry", letter.id, "-c", str(config)])
    assert again == 1  # already re-sent: nothing to do, said so


async def test_404_no_service_is_a_dead_letter_at_once(
    queue: AlertQueue, slack_server: SlackServer
) -> None:
    revoked = SlackChannel(f"{slack_server.base_url}/services/T000/B000/GONE9x7", timeout=5)
    await enqueue(queue.client, PREFIX, make_match())
    worker = make_worker(queue, {"slack": revoked})
    report = await worker.run_once()
    assert (report.dead, len(slack_server.requests)) == (1, 1)
    [letter] = await queue.dead_letters()
    assert "no_service" in letter.reason
    assert "GONE9x7" not in letter.reason
    assert await queue.stream_counts() == {"queued": 0, "pending": 0, "dead": 1}


async def test_smtp_421_then_accept_delivers_once(
    queue: AlertQueue, smtp_server: SmtpServer
) -> None:
    smtp_server.reply("421 4.3.2 Service busy, try later", stage="DATA")
    await enqueue(queue.client, PREFIX, make_match())
    worker = make_worker(queue, {"email": email(smtp_server)})
    await run_until(worker, lambda: len(smtp_server.messages) == 1)
    for _ in range(3):
        await worker.run_once()
    assert len(smtp_server.messages) == 1
    assert await queue.stream_counts() == {"queued": 0, "pending": 0, "dead": 0}


async def test_smtp_550_is_a_dead_letter(queue: AlertQueue, smtp_server: SmtpServer) -> None:
    smtp_server.reply("550 5.7.1 Message rejected as spam", stage="DATA")
    await enqueue(queue.client, PREFIX, make_match())
    report = await make_worker(queue, {"email": email(smtp_server)}).run_once()
    assert report.dead == 1
    [letter] = await queue.dead_letters()
    assert "550" in letter.reason
    assert smtp_server.messages == []


async def test_the_received_email_is_valid_mime_with_text_and_html(
    queue: AlertQueue, smtp_server: SmtpServer
) -> None:
    await enqueue(queue.client, PREFIX, make_match())
    await make_worker(queue, {"email": email(smtp_server)}).run_once()
    [received] = smtp_server.messages
    parsed = BytesParser(policy=email_policy.default).parsebytes(received.raw)
    assert parsed.get_content_type() == "multipart/alternative"
    assert not parsed.defects
    plain, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None
    assert html is not None
    assert "Kazakhstan opens tungsten tender" in plain.get_content()
    assert "<mark>" in html.get_content()
    for header in ("Message-ID", "Date", "List-Id", "In-Reply-To", "References"):
        assert parsed[header], header


async def test_partly_refused_recipients_retry_or_die_alone(
    queue: AlertQueue, smtp_server: SmtpServer
) -> None:
    smtp_server.refuse("busy@example.org", "451 4.2.1 Mailbox busy")
    smtp_server.refuse("gone@example.org", "550 5.1.1 No such user")
    channel = email(smtp_server, "desk@example.org", "busy@example.org", "gone@example.org")
    await enqueue(queue.client, PREFIX, make_match())
    worker = make_worker(queue, {"email": channel})
    await run_until(worker, lambda: len(smtp_server.messages) == 2)
    for _ in range(3):
        await worker.run_once()
    first, second = smtp_server.messages
    assert first.rcpt_tos == ("desk@example.org",)
    assert second.rcpt_tos == ("busy@example.org",)
    [letter] = await queue.dead_letters()
    assert letter.recipients == ("gone@example.org",)
    assert "550" in letter.reason
    assert await queue.requeue_dead(letter)
    await run_until(worker, lambda: len(smtp_server.messages) == 3)
    assert smtp_server.messages[2].rcpt_tos == ("gone@example.org",)
    assert await queue.stream_counts() == {"queued": 0, "pending": 0, "dead": 0}


async def test_an_entry_a_dead_worker_left_pending_is_delivered_once_by_another(
    queue: AlertQueue, slack_server: SlackServer
) -> None:
    await enqueue(queue.client, PREFIX, make_match("a"), make_match("b"))
    taken = await queue.read_matches("crashed", 10, None)
    assert len(taken) == 2
    # The crashed worker had begun sending "a": its lease must run out first.
    await queue.begin_send(taken[0].match.key, "slack", timedelta(seconds=1))  # type: ignore[union-attr]
    worker = make_worker(queue, {"slack": slack(slack_server)}, claim_idle=timedelta(0))
    await run_until(worker, lambda: len(accepted(slack_server)) == 2)
    for _ in range(3):
        await worker.run_once()
    assert len(slack_server.requests) == 2
    assert await queue.stream_counts() == {"queued": 0, "pending": 0, "dead": 0}


async def test_two_workers_on_one_queue_deliver_every_alert_exactly_once(
    queue: AlertQueue, slack_server: SlackServer, smtp_server: SmtpServer
) -> None:
    matches = [make_match(f"r{n}", item=f"wire:{n}", title=f"Story {n}") for n in range(20)]
    await enqueue(queue.client, PREFIX, *matches)

    def channels() -> dict[str, Channel]:
        return {"slack": slack(slack_server), "email": email(smtp_server)}

    workers = [
        make_worker(queue, channels(), consumer=name, claim_idle=timedelta(0), batch=3)
        for name in ("w1", "w2")
    ]

    async def drain(worker: DeliveryWorker) -> None:
        await run_until(worker, lambda: len(smtp_server.messages) >= 20, within=30)

    await asyncio.gather(*(drain(w) for w in workers))
    for worker in workers:
        await worker.run_once()
    titles = sorted(str(p["text"]) for p in accepted(slack_server))
    assert len(set(titles)) == len(titles) == 20
    assert len(smtp_server.messages) == 20


# --- routing, throttling, silences ----------------------------------------------------------


async def test_routes_choose_channels_and_add_recipients(
    queue: AlertQueue, slack_server: SlackServer, smtp_server: SmtpServer
) -> None:
    routes = (
        Route(channels=("slack",), rules=("kz-tungsten",)),
        Route(channels=("email",), tags=("sanctions",), to=("sanctions@example.org",)),
        Route(channels=("email",), fallback=True),
    )
    channels: dict[str, Channel] = {"slack": slack(slack_server), "email": email(smtp_server)}
    await enqueue(
        queue.client,
        PREFIX,
        make_match("kz-tungsten", item="1", title="One"),
        make_match("ru-oil", item="2", title="Two", tags=("sanctions",)),
        make_match("misc", item="3", title="Three", tags=()),
    )
    await make_worker(queue, channels, routes=routes).run_once()
    assert [p["text"] for p in accepted(slack_server)] == ["One — [HIGH] Rule kz-tungsten"]
    by_subject = {str(m.message["Subject"]): m.rcpt_tos for m in smtp_server.wait_for(2)}
    assert by_subject == {
        "[HIGH] Rule ru-oil: Two": ("desk@example.org", "sanctions@example.org"),
        "[HIGH] Rule misc: Three": ("desk@example.org",),
    }


async def test_a_story_is_throttled_per_rule_unless_it_escalates(
    queue: AlertQueue, slack_server: SlackServer
) -> None:
    worker = make_worker(queue, {"slack": slack(slack_server)}, throttle=timedelta(hours=1))
    same = "Kazakhstan opens tungsten tender"
    await enqueue(queue.client, PREFIX, make_match(item="wire:1", title=same))
    await worker.run_once()
    await enqueue(
        queue.client,
        PREFIX,
        make_match(item="other:1", title=same),  # a reprint: throttled
        make_match(item="third:1", title=same, severity=Severity.MEDIUM),  # lower: throttled
        make_match("rare-earth", item="wire:1", title=same),  # another rule: its own alert
    )
    report = await worker.run_once()
    assert report.throttled == 2
    await enqueue(
        queue.client, PREFIX, make_match(item="fourth:1", title=same, severity=Severity.CRITICAL)
    )
    await worker.run_once()
    texts = [str(p["text"]) for p in accepted(slack_server)]
    assert texts == [
        f"{same} — [HIGH] Rule kz-tungsten",
        f"{same} — [HIGH] Rule rare-earth",
        f"{same} — [CRITICAL] Rule kz-tungsten",
    ]
    assert await suppressed(queue, "reason") == ["throttled", "throttled"]
    assert await queue.stream_counts() == {"queued": 0, "pending": 0, "dead": 0}


async def test_silenced_matches_are_recorded_not_sent(
    queue: AlertQueue, slack_server: SlackServer
) -> None:
    clock = Clock(datetime.now(UTC))
    silences = SilenceStore(queue.client, queue.keys)
    quiet = await silences.add(
        rule="kz-tungsten", tag=None, duration=timedelta(hours=4), reason="drill", now=clock.now
    )
    await silences.add(rule=None, tag="zh", duration=timedelta(hours=1), reason="x", now=clock.now)
    worker = make_worker(queue, {"slack": slack(slack_server)}, clock=clock)
    await enqueue(
        queue.client,
        PREFIX,
        make_match(item="1", title="A"),
        make_match("other", item="2", title="B", source_tags=("zh",)),
        make_match("other", item="3", title="C"),
    )
    report = await worker.run_once()
    assert report.silenced == 2
    assert [p["text"] for p in accepted(slack_server)] == ["C — [HIGH] Rule other"]
    assert await suppressed(queue, "item") == ["1", "2"]
    assert len(await silences.active(clock.now)) == 2
    assert await silences.remove(quiet.id)
    assert not await silences.remove(quiet.id)
    await enqueue(queue.client, PREFIX, make_match(item="4", title="D"))
    await worker.run_once()
    assert len(accepted(slack_server)) == 2
    clock.now += timedelta(hours=2)  # the tag silence has ended
    assert await silences.active(clock.now) == []


# --- Slack pacing and coalescing ------------------------------------------------------------


async def test_a_burst_to_slack_is_coalesced_into_one_grouped_message(
    queue: AlertQueue, slack_server: SlackServer
) -> None:
    matches = [make_match(f"r{n}", item=f"w:{n}", title=f"Burst story {n}") for n in range(7)]
    await enqueue(queue.client, PREFIX, *matches)
    report = await make_worker(queue, {"slack": slack(slack_server, rate=1.0)}).run_once()
    assert report.delivered == 7
    [payload] = accepted(slack_server)
    text = json.dumps(payload)
    assert all(f"Burst story {n}" in text for n in range(7))
    assert payload["blocks"][0]["text"]["text"].endswith("7 alerts")


async def test_slack_gets_at_most_one_message_per_second(
    queue: AlertQueue, slack_server: SlackServer
) -> None:
    await enqueue(queue.client, PREFIX, make_match("a", item="1"), make_match("b", item="2"))
    worker = make_worker(queue, {"slack": slack(slack_server, rate=1.0)})
    started = time.monotonic()
    await worker.run_once()
    await enqueue(queue.client, PREFIX, make_match("c", item="3"))
    await worker.run_once()
    assert len(accepted(slack_server)) == 3
    assert time.monotonic() - started >= 2.0


# --- digests --------------------------------------------------------------------------------


async def test_a_digest_sends_one_message_with_every_match_of_its_window(
    queue: AlertQueue, smtp_server: SmtpServer
) -> None:
    clock = Clock(datetime(2026, 3, 2, 2, 30, tzinfo=UTC))  # 07:30 in Almaty
    digests = {"email": DigestSchedule("0 8 * * *", "Asia/Almaty")}
    worker = make_worker(queue, {"email": email(smtp_server)}, clock=clock, digests=digests)
    assert await worker.flush_digests() == 0  # first look: nothing is owed yet
    held = [make_match(f"r{n % 2}", item=f"w:{n}", title=f"Brief item {n}") for n in range(4)]
    critical = make_match("r9", item="w:9", title="Urgent item", severity=Severity.CRITICAL)
    await enqueue(queue.client, PREFIX, *held, critical)
    report = await worker.run_once()
    assert (report.digested, report.delivered) == (4, 5)
    assert [str(m.message["Subject"]) for m in smtp_server.messages] == [
        "[CRITICAL] Rule r9: Urgent item"
    ]
    clock.now = datetime(2026, 3, 2, 2, 59, tzinfo=UTC)
    assert await worker.flush_digests() == 0
    clock.now = datetime(2026, 3, 2, 3, 0, 30, tzinfo=UTC)  # 08:00:30 Almaty
    late = make_match("r1", item="w:late", title="After the window closed")
    await enqueue(queue.client, PREFIX, late)
    await worker.run_once()  # held for the next window, not this one
    sent: list[str] = []
    assert await worker.flush_digests(sent.append) == 1
    assert sent == ["email"]  # what the metrics count as an alert sent
    assert await worker.flush_digests(sent.append) == 0
    digest = smtp_server.messages[-1].message
    assert str(digest["Subject"]).startswith("[digest] 4 alerts")
    body = digest.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert all(f"Brief item {n}" in body for n in range(4))
    assert "After the window closed" not in body
    assert body.index("== Rule r0 (2) ==") < body.index("Brief item 0")
    assert len(smtp_server.messages) == 2
    clock.now = datetime(2026, 3, 3, 3, 0, 5, tzinfo=UTC)  # the next morning
    assert await worker.flush_digests() == 1
    assert "After the window closed" in str(smtp_server.messages[-1].message)


async def test_a_digest_slack_did_not_accept_is_sent_later_once(
    queue: AlertQueue, slack_server: SlackServer
) -> None:
    clock = Clock(datetime(2026, 3, 2, 9, 30, tzinfo=UTC))
    digests = {"slack": DigestSchedule("0 * * * *")}
    worker = make_worker(queue, {"slack": slack(slack_server)}, clock=clock, digests=digests)
    await worker.flush_digests()
    await enqueue(queue.client, PREFIX, make_match(severity=Severity.LOW))
    await worker.run_once()
    slack_server.reply(503, "service_unavailable")
    clock.now = datetime(2026, 3, 2, 10, 0, 1, tzinfo=UTC)
    assert await worker.flush_digests() == 0
    assert await worker.flush_digests() == 0  # waits before trying again
    clock.now += timedelta(minutes=2)
    assert await worker.flush_digests() == 1
    assert await worker.flush_digests() == 0
    assert len(accepted(slack_server)) == 1
    assert accepted(slack_server)[0]["text"].startswith("Digest: 1 alerts")


async def test_a_long_slack_digest_goes_out_in_parts_and_a_failed_part_resumes_there(
    queue: AlertQueue, slack_server: SlackServer
) -> None:
    """300 alerts in one window: every one listed across the digest's posts; Slack refusing
    the second post costs a retry of the second and later posts, not a second first post."""
    clock = Clock(datetime(2026, 3, 2, 9, 30, tzinfo=UTC))
    digests = {"slack": DigestSchedule("0 * * * *")}
    worker = make_worker(queue, {"slack": slack(slack_server)}, clock=clock, digests=digests)
    await worker.flush_digests()
    long = "tungsten " * 20
    held = [
        make_match(f"r{n % 2}", item=f"w:{n}", title=f"Item {n} {long}", severity=Severity.LOW)
        for n in range(300)
    ]
    await enqueue(queue.client, PREFIX, *held)
    digested = 0
    for _ in range(100):  # a pass reads a batch at a time
        digested += (await worker.run_once()).digested
        if digested == 300:
            break
    assert digested == 300
    slack_server.reply(200, "ok")
    slack_server.reply(503, "service_unavailable")
    clock.now = datetime(2026, 3, 2, 10, 0, 1, tzinfo=UTC)
    assert await worker.flush_digests() == 0
    assert [r.reply.status for r in slack_server.requests] == [200, 503]
    clock.now += timedelta(minutes=2)
    assert await worker.flush_digests() == 1
    posts = accepted(slack_server)
    assert len(posts) >= 3
    parts = [p["text"].rpartition("(part ")[2].rstrip(")") for p in posts]
    assert parts == [f"{n} of {len(posts)}" for n in range(1, len(posts) + 1)]
    listed = json.dumps([p["blocks"] for p in posts], ensure_ascii=False)
    assert all(listed.count(f"Item {n} ") == 1 for n in range(300))


# --- the generic webhook --------------------------------------------------------------------


async def test_webhook_posts_the_documented_json_signed_and_idempotent(
    queue: AlertQueue, slack_server_factory: Callable[..., SlackServer]
) -> None:
    receiver = slack_server_factory(validate=False)
    hook = WebhookChannel(receiver.url, secret="sign-me", timeout=5)
    match = make_match()
    await enqueue(queue.client, PREFIX, match)
    await make_worker(queue, {"webhook": hook}).run_once()
    [request] = receiver.requests
    body = request.payload
    assert body["schema"] == "monitor.alert.v1"
    assert body["kind"] == "alert"
    assert body["rule"] == {
        "id": "kz-tungsten",
        "title": "Rule kz-tungsten",
        "severity": "high",
        "version": "rv1",
        "tags": ["minerals"],
    }
    assert body["item"]["link"] == "https://wire.example/wire/1"
    assert body["terms"] == ["tungsten"]
    assert "tungsten" in body["quote"]
    assert request.headers["Idempotency-Key"] == body["id"]
    expected = hmac.new(b"sign-me", request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Monitor-Signature"] == f"sha256={expected}"


async def test_webhook_answers_map_to_retry_or_dead_letter(
    queue: AlertQueue, slack_server_factory: Callable[..., SlackServer]
) -> None:
    receiver = slack_server_factory(validate=False)
    receiver.reply(503, retry_after=0)
    receiver.reply(422)
    hook = WebhookChannel(receiver.url, timeout=5)
    await enqueue(queue.client, PREFIX, make_match("a", item="1"))
    worker = make_worker(queue, {"webhook": hook})
    report = await worker.run_once()
    assert report.failed == 1
    await run_until(worker, lambda: len(receiver.requests) == 2)
    [letter] = await queue.dead_letters()
    assert "HTTP 422" in letter.reason
    assert receiver.secret not in letter.reason


# --- Redis outages --------------------------------------------------------------------------


async def test_redis_dying_mid_send_loses_nothing_and_sends_nothing_twice(
    own_redis: EmbeddedRedis, slack_server: SlackServer
) -> None:
    client = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        queue = AlertQueue(client, Keys(PREFIX))
        await queue.ensure_group()
        await enqueue(client, PREFIX, make_match("a", item="1"), make_match("b", item="2"))
        slack_server.reply(200, "ok", delay=1.0)
        worker = make_worker(queue, {"slack": slack(slack_server)})
        passing = asyncio.create_task(worker.run_once())
        await slack_server.wait_for_async(1)
        await asyncio.to_thread(own_redis.kill)
        await passing  # the sends finished; their outcomes wait in memory
        assert worker.has_backlog
        with pytest.raises(StoreError):
            await worker.run_once()
        await asyncio.to_thread(own_redis.restart_if_dead)
        await run_until(worker, lambda: not worker.has_backlog)
        for _ in range(3):
            await worker.run_once()
        assert len(slack_server.requests) == 2
        assert await queue.stream_counts() == {"queued": 0, "pending": 0, "dead": 0}
    finally:
        await client.aclose()


async def test_console_and_other_channels_are_not_held_back_by_a_failing_one(
    queue: AlertQueue, slack_server: SlackServer, capsys: pytest.CaptureFixture[str]
) -> None:
    slack_server.set_default(HttpReply(503, "service_unavailable"))
    channels: dict[str, Channel] = {"slack": slack(slack_server), "console": ConsoleChannel()}
    await enqueue(queue.client, PREFIX, make_match())
    report = await make_worker(queue, channels).run_once()
    assert report.failed == 1
    assert "Kazakhstan opens tungsten tender" in capsys.readouterr().out
    assert await queue.retrying() == 1
