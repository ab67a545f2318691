"""Pytest fixtures for the channel test servers: a Slack webhook look-alike and an SMTP server.

Function-scoped so every test starts with an empty record and no scripted failures left over.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from monitor.deliver.channels import SlackChannel
from monitor.deliver.policy import RetryPolicy, Route
from monitor.deliver.queue import AlertQueue
from monitor.deliver.worker import DeliveryPolicy, DeliveryReport, DeliveryWorker
from monitor.model import Item, Match, Severity, TermHit
from monitor.redisio import Keys
from support.servers import OpensslMissingError, SlackServer, SmtpServer


@pytest.fixture
def slack_server() -> Iterator[SlackServer]:
    """A running SlackServer; give ``slack_server.url`` to a SlackChannel."""
    with SlackServer() as server:
        yield server


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A running plain SmtpServer without AUTH, on ``smtp_server.host``/``.port``."""
    with SmtpServer() as server:
        yield server


@pytest.fixture
def slack_server_factory() -> Iterator[Callable[..., SlackServer]]:
    """Start SlackServers with options (``secret=``, ``validate=``); all stopped afterwards."""
    started: list[SlackServer] = []

    def start(**options: Any) -> SlackServer:
        server = SlackServer(**options).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def smtp_server_factory() -> Iterator[Callable[..., SmtpServer]]:
    """Start SmtpServers with options (``auth=``, ``tls=``); all stopped afterwards.

    A TLS server needs the openssl command; the test is skipped when it is missing.
    """
    started: list[SmtpServer] = []

    def start(**options: Any) -> SmtpServer:
        try:
            server = SmtpServer(**options).start()
        except OpensslMissingError as exc:
            pytest.skip(str(exc))
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


# --- matches for delivery tests ---------------------------------------------------------------


def make_match(
    rule: str = "kz-tungsten",
    item: str = "wire:1",
    *,
    title: str = "Kazakhstan opens tungsten tender",
    severity: Severity = Severity.HIGH,
    tags: tuple[str, ...] = ("minerals",),
    source_tags: tuple[str, ...] = ("en",),
    route: tuple[str, ...] = (),
) -> Match:
    """A match as the rules would make it, with a hit in the summary to quote."""
    summary = "Bids for the Upper Kairakty tungsten deposit are due in March."
    start = summary.index("tungsten")
    return Match(
        rule_id=rule,
        rule_title=f"Rule {rule}",
        severity=severity,
        rule_version="rv1",
        item=Item(
            id=item,
            source="wire",
            title=title,
            summary=summary,
            link=f"https://wire.example/{item.replace(':', '/')}",
            published=datetime(2026, 3, 1, 6, 0, tzinfo=UTC),
            source_tags=source_tags,
        ),
        hits=(TermHit("tungsten", "summary", start, start + 8, "tungsten"),),
        route=route,
        tags=tags,
    )


async def enqueue(client: Any, prefix: str, *matches: Match) -> list[str]:
    """Queue matches exactly as ``Store.record_item`` does: one ``match`` field per entry."""
    ids = []
    for match in matches:
        payload = json.dumps(match.to_dict(), ensure_ascii=False)
        ids.append(await client.xadd(f"{prefix}:matches", {"match": payload}))
    return ids


async def deliver_once_to_slack(
    client: Any, prefix: str, slack_url: str, now: datetime
) -> DeliveryReport:
    """One delivery pass of the matches queued under ``prefix``, every route to one Slack
    webhook, retries quick; returns the pass's ``DeliveryReport``."""
    slack = SlackChannel(slack_url, timeout=5, min_interval=timedelta(0))
    worker = DeliveryWorker(
        AlertQueue(client, Keys(prefix)),
        {"slack": slack},
        DeliveryPolicy(
            routes=(Route(channels=("slack",)),),
            retry=RetryPolicy(base=timedelta(milliseconds=50), cap=timedelta(milliseconds=200)),
        ),
        consumer="w1",
        clock=lambda: now,
    )
    try:
        return await worker.run_once()
    finally:
        await slack.close()
