"""The console's Inbox end to end: alerts sent by the real delivery worker to a local Slack
server, read back on a real console over the session's private Redis; filters, paging, ack
and assign (analysts only, CSRF checked), escaping; and the Inbox in Debian's Chromium."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from support.channel_fixtures import enqueue, make_match
from support.servers import SlackServer, bound_socket

from console.browser import CHROMIUM, NEEDS_CHROMIUM, chromium, sign_in_form
from console.harness import (
    KEYS,
    Clock,
    Console,
    console_settings,
    csrf_of,
    sign_in,
    stores_on,
)
from monitor.console.server import ConsoleServer
from monitor.deliver.channels import SlackChannel
from monitor.deliver.history import SentLog
from monitor.deliver.policy import Route
from monitor.deliver.queue import AlertQueue
from monitor.deliver.worker import DeliveryPolicy, DeliveryWorker
from monitor.model import Match, Severity

HOSTILE = "<script>alert('owned')</script> Tungsten tender"
ROWS = re.compile(r'<tr id="alert-([0-9]+-[0-9]+)"')


@pytest.fixture
async def console(redis_client: aioredis.Redis) -> AsyncIterator[Console]:
    """A console on a free loopback port over the session's Redis (prefix ``c``)."""
    clock = Clock()
    stores = stores_on(redis_client)
    config = console_settings()
    server = ConsoleServer(lambda: config, stores=stores, sources=list, clock=clock)
    assert await server.start(bound_socket())
    yield Console(server, f"http://127.0.0.1:{server.port}", stores, clock, [])
    await server.stop()


async def deliver(console: Console, slack_server: SlackServer, *matches: Match) -> None:
    """Send ``matches`` to the local Slack through the real delivery worker."""
    queue = AlertQueue(console.stores.queue.client, KEYS)
    await queue.ensure_group()
    channel = SlackChannel(slack_server.url, timeout=5)
    worker = DeliveryWorker(
        queue,
        {"slack": channel},
        DeliveryPolicy(routes=(Route(channels=("slack",)),)),
        consumer="w1",
        clock=console.clock,
    )
    try:
        await enqueue(queue.client, KEYS.prefix, *matches)
        report = await worker.run_once()
        assert report.channels == {"slack": len(matches)}
    finally:
        await channel.close()


async def log_sent(console: Console, match: Match, channel: str = "slack") -> None:
    """A sent alert written to the log as the worker writes it (for filters and paging)."""
    await SentLog(console.stores.queue.client, KEYS).record([match], channel, console.clock())


def rows(html: str) -> list[str]:
    return ROWS.findall(html)


async def page(client: aiohttp.ClientSession, path: str, status: int = 200) -> str:
    async with client.get(path) as response:
        html = await response.text()
        assert response.status == status, html
        return html


# -- what the inbox shows -----------------------------------------------------------------------


async def test_an_alert_the_worker_sent_is_in_the_inbox_with_its_story_quote_and_hits(
    console: Console, slack_server: SlackServer
) -> None:
    match = dataclasses.replace(make_match(title="Kazakhstan opens tungsten tender"), story="s42")
    await deliver(console, slack_server, match)
    async with console.client() as client:
        await sign_in(console, client, "vic")
        html = await page(client, "/inbox")
    assert len(rows(html)) == 1
    assert "Rule kz-tungsten" in html
    assert "Kazakhstan opens tungsten tender" in html
    assert 'href="/stories/s42"' in html
    assert "Upper Kairakty <mark>tungsten</mark> deposit" in html  # the quote, hit marked
    assert '<span class="terms">tungsten</span>' in html
    assert 'href="https://wire.example/wire/1"' in html
    assert slack_server.secret not in html
    assert "Ack</button>" not in html  # a viewer sees no triage buttons


async def test_the_inbox_is_newest_first_and_pages_on_to_older_alerts(console: Console) -> None:
    for n in range(30):
        await log_sent(console, make_match(item=f"w:{n}", title=f"Tender {n}"))
    async with console.client() as client:
        await sign_in(console, client, "vic")
        first = await page(client, "/inbox")
        assert len(rows(first)) == 25
        assert first.index("Tender 29") < first.index("Tender 5<")
        older = re.search(r'href="/inbox\?before=([0-9-]+)">older', first)
        assert older, "no link to older alerts"
        second = await page(client, f"/inbox?before={older.group(1)}")
        assert len(rows(second)) == 5
        assert "Tender 4<" in second
        assert "Tender 5<" not in second
        assert "older →" not in second
        assert 'href="/inbox?">← newest' in second


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"a1", "a2", "a3", "a4"}),
        ("rule=kz-ree", {"a2"}),
        ("rule=KZ-TUNGSTEN", {"a1", "a3", "a4"}),
        ("tag=ree", {"a2"}),
        ("severity=high", {"a1", "a2"}),
        ("severity=critical", {"a2"}),
        ("channel=email", {"a3"}),
        ("lang=ru", {"a4"}),
        ("source=portal", {"a4"}),
        ("rule=kz-tungsten&channel=slack&severity=low", {"a1", "a4"}),
        ("since=1h", {"a1", "a2", "a3", "a4"}),
        ("until=2020-01-01", set()),
    ],
)
async def test_filters_narrow_the_inbox(console: Console, query: str, expected: set[str]) -> None:
    portal = make_match(item="a4", title="Вольфрам a4", severity=Severity.LOW)
    portal = dataclasses.replace(
        portal, item=dataclasses.replace(portal.item, source="portal", lang="ru")
    )
    for match, channel in (
        (make_match(item="a1", title="Tungsten a1"), "slack"),
        (
            make_match(
                "kz-ree", item="a2", title="REE a2", severity=Severity.CRITICAL, tags=("ree",)
            ),
            "slack",
        ),
        (make_match(item="a3", title="Mail a3", severity=Severity.MEDIUM), "email"),
        (portal, "slack"),
    ):
        await log_sent(console, match, channel)
    async with console.client() as client:
        await sign_in(console, client, "vic")
        html = await page(client, f"/inbox?{query}")
    shown = {name for name in ("a1", "a2", "a3", "a4") if f" {name}<" in html}
    assert shown == expected
    assert len(rows(html)) == len(expected)


async def test_a_filter_that_cannot_be_read_says_why(console: Console) -> None:
    await log_sent(console, make_match())
    async with console.client() as client:
        await sign_in(console, client, "vic")
        html = await page(client, "/inbox?since=yesterday", status=400)
        assert "write 24h, 7d" in html
        html = await page(client, "/inbox?severity=%3Cb%3Eurgent", status=400)
        assert "unknown severity" in html
        assert "<b>urgent" not in html


# -- ack and assign -----------------------------------------------------------------------------


async def test_an_analyst_acks_and_assigns_an_alert_and_every_channels_row_shows_it(
    console: Console,
) -> None:
    match = make_match()
    await log_sent(console, match, "slack")
    await log_sent(console, match, "email")
    async with console.client() as client:
        await sign_in(console, client, "ana")
        html = await page(client, "/inbox?channel=slack")
        [entry] = rows(html)
        token = csrf_of(html)
        back = "channel=slack"
        async with client.post(f"/inbox/{entry}/ack", data={"csrf": token, "back": back}) as acked:
            assert acked.status == 200
            assert acked.url.path == "/inbox"
            assert acked.url.query["channel"] == "slack"  # back on the page it was on
            html = await acked.text()
        assert "The alert is acknowledged." in html
        assert "acked by ana, 0s ago" in html
        console.clock.advance(timedelta(minutes=5))
        form = {"csrf": token, "back": back, "assignee": "  vic  "}
        async with client.post(f"/inbox/{entry}/assign", data=form) as assigned:
            html = await assigned.text()
        assert '<span class="assignee">→ vic</span> <span class="muted">(by ana, 0s ago)' in html
        both = await page(client, "/inbox")
    assert both.count("acked by ana, 5m ago") == 2  # the email copy is the same alert
    assert both.count("→ vic") == 2
    triage = await SentLog(console.stores.queue.client, KEYS).triage([match.key])
    assert (triage[match.key].acked_by, triage[match.key].assignee) == ("ana", "vic")


async def test_a_viewer_cannot_ack_or_assign(console: Console) -> None:
    match = make_match()
    await log_sent(console, match)
    async with console.client() as client:
        await sign_in(console, client, "vic")
        html = await page(client, "/inbox")
        [entry] = rows(html)
        token = csrf_of(html)  # the sign-out form's token: valid, but the role is not
        async with client.post(f"/inbox/{entry}/ack", data={"csrf": token}) as refused:
            assert refused.status == 403
        form = {"csrf": token, "assignee": "vic"}
        async with client.post(f"/inbox/{entry}/assign", data=form) as refused:
            assert refused.status == 403
    triage = await SentLog(console.stores.queue.client, KEYS).triage([match.key])
    assert triage[match.key].acked_by == ""
    assert triage[match.key].assignee == ""


@pytest.mark.parametrize("token", [None, "", "forged"])
async def test_ack_without_this_sessions_csrf_token_is_refused(
    console: Console, token: str | None
) -> None:
    match = make_match()
    await log_sent(console, match)
    async with console.client() as client:
        await sign_in(console, client, "ana")
        [entry] = rows(await page(client, "/inbox"))
        data = {} if token is None else {"csrf": token}
        async with client.post(f"/inbox/{entry}/ack", data=data) as refused:
            assert refused.status == 403
    assert (await SentLog(console.stores.queue.client, KEYS).triage([match.key]))[
        match.key
    ].acked_by == ""


async def test_acking_an_alert_no_longer_in_the_log_says_so(console: Console) -> None:
    async with console.client() as client:
        html = await sign_in(console, client, "ana")
        form = {"csrf": csrf_of(html), "back": "before=1-0&evil=//x.example"}
        async with client.post("/inbox/1-0/ack", data=form) as gone:
            assert gone.url.path == "/inbox"
            assert "evil" not in gone.url.query
            assert "no longer in the log" in await gone.text()


async def test_hostile_text_in_alerts_and_assignees_is_escaped(console: Console) -> None:
    match = make_match(title=HOSTILE)
    match = dataclasses.replace(
        match, item=dataclasses.replace(match.item, link="javascript:alert(1)")
    )
    await log_sent(console, match)
    async with console.client() as client:
        await sign_in(console, client, "ana")
        html = await page(client, "/inbox")
        [entry] = rows(html)
        form = {"csrf": csrf_of(html), "assignee": "<img src=x onerror=alert(2)>"}
        async with client.post(f"/inbox/{entry}/assign", data=form) as assigned:
            html = await assigned.text()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt; Tungsten tender" in html
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "javascript:" not in html


# -- in a real browser --------------------------------------------------------------------------


def browse_inbox(url: str, profile: Path, screenshot: Path) -> dict[str, str]:
    """Sign in through the form, follow the Inbox link, read the first alert's row."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    with chromium(profile) as browser:
        wait = WebDriverWait(browser, 20)
        browser.get(f"{url}/login")
        sign_in_form(browser, wait)
        wait.until(expected_conditions.presence_of_element_located((By.ID, "user")))
        browser.find_element(By.LINK_TEXT, "Inbox").click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "inbox")))
        row = browser.find_element(By.CSS_SELECTOR, "tr.alert-row")
        found = {
            "title": browser.title,
            "alert": row.find_element(By.CSS_SELECTOR, ".alert-title").text,
            "mark": row.find_element(By.CSS_SELECTOR, "q.quote mark").text,
        }
        row.find_element(By.CSS_SELECTOR, "form[action$='/ack'] button").click()
        wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".acked")))
        found["acked"] = browser.find_element(By.CSS_SELECTOR, ".acked").text
        browser.save_screenshot(str(screenshot))
        return found


@pytest.mark.slow
@pytest.mark.timeout(120)
@NEEDS_CHROMIUM
async def test_an_analyst_opens_the_inbox_and_acks_an_alert_in_chromium(
    console: Console, slack_server: SlackServer, tmp_path: Path
) -> None:
    assert shutil.which(str(CHROMIUM))
    await deliver(console, slack_server, make_match(title=HOSTILE))
    shot = tmp_path / "inbox.png"
    browse: Callable[[], dict[str, str]] = lambda: browse_inbox(  # noqa: E731
        console.url, tmp_path / "profile", shot
    )
    found = await asyncio.to_thread(browse)
    assert found["title"] == "Inbox · monitor console"  # the script in the title never ran
    assert found["alert"] == HOSTILE
    assert found["mark"] == "tungsten"
    assert found["acked"].startswith("acked by ana")
    assert shot.read_bytes().startswith(b"\x89PNG")
