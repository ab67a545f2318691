"""An analyst's whole journey through the console in Debian's Chromium: sign in through the
form, find an alert in the Inbox, open its story, ack the alert, silence the story, backtest a
draft rule in the playground and search in Chinese; every page visited is photographed.

The screenshots are artefacts of the run: written to ``$MONITOR_TEST_ARTEFACTS/console`` when
that is set (``.ci/run`` sets ``build/artefacts``), else under the test's ``tmp_path``.  The
README shows two of them (``docs/img/``)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.channel_fixtures import make_match
from support.servers import bound_socket

from console.browser import NEEDS_CHROMIUM, chromium, sign_in_form
from console.harness import KEYS, Clock, Console, console_settings, stores_on
from monitor.console.server import ConsoleServer
from monitor.deliver.history import SentLog
from monitor.model import Item
from monitor.rules import RuleSet, load_rules

pytest.importorskip("selenium.webdriver", reason="selenium (a dev dependency)")
pytestmark = [NEEDS_CHROMIUM, pytest.mark.slow, pytest.mark.timeout(120)]

RULES = """\
rules:
  - id: kz-tungsten
    title: Tungsten in Kazakhstan
    severity: high
    match:
      all:
        - any: [tungsten, 钨]
        - any: [Kazakhstan, 哈萨克斯坦]
"""
DRAFT = """\
rules:
  - id: kz-tungsten
    title: Tungsten anywhere
    severity: high
    match:
      any: [tungsten, 钨]
"""
REASON = "handled in the morning call"
TENDER = "Kazakhstan opens tungsten tender"
TRADITIONAL = "哈薩克斯坦鎢礦拍賣"
SIMPLIFIED_QUERY = "哈萨克斯坦"
PAGES = ("stories", "feeds", "dead", "rules")
"""Pages the journey does not act on, photographed on the way."""


def artefacts(tmp_path: Path) -> Path:
    """Where the screenshots go: ``$MONITOR_TEST_ARTEFACTS/console``, else ``tmp_path``."""
    root = os.environ.get("MONITOR_TEST_ARTEFACTS")
    folder = Path(root) / "console" if root else tmp_path / "artefacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def items(now: datetime) -> list[Item]:
    """The stored history: the alert's item, a Chinese report of it, and two others."""
    published = now - timedelta(hours=1)

    def item(item_id: str, source: str, title: str, summary: str, lang: str) -> Item:
        link = f"https://{source}.example/{item_id}"
        return Item(item_id, source, title, summary, link, published, lang)

    return [
        item("wire:1", "wire", TENDER, "Bids for the Upper Kairakty tungsten deposit.", "en"),
        item("xinhua:1", "xinhua", TRADITIONAL, "上凯拉克特鎢礦招標。", "zh"),
        item("wire:2", "wire", "Tungsten prices rise in Rotterdam", "Spot APT is up.", "en"),
        item("wire:3", "wire", "Copper smelter opens", "Nothing about the metal.", "en"),
    ]


@pytest.fixture
async def console(redis_client: aioredis.Redis, tmp_path: Path) -> AsyncIterator[Console]:
    """A console running ``RULES`` over a history, one story and one alert sent on Slack."""
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    rules: RuleSet = load_rules([path])
    clock = Clock()
    stores = stores_on(redis_client)
    config = console_settings()
    server = ConsoleServer(
        lambda: config, stores=stores, sources=list, clock=clock, rules=lambda: rules
    )
    now = clock()
    history = items(now)
    recorded = await stores.ingest.record_items([(each, []) for each in history], now)
    assert recorded == [True] * len(history)
    story = await stores.stories.assign(history[0], now)
    match = dataclasses.replace(make_match(item="wire:1", title=TENDER), story=story.story_id)
    await SentLog(redis_client, KEYS).record([match], "slack", now)
    assert await server.start(bound_socket())
    yield Console(server, f"http://127.0.0.1:{server.port}", stores, clock, [])
    await server.stop()


def journey(url: str, profile: Path, shots: Path) -> dict[str, Any]:
    """Walk the console as an analyst does, photographing every page; what was read."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.wait import WebDriverWait

    seen: dict[str, Any] = {}
    with chromium(profile) as browser:
        wait = WebDriverWait(browser, 15)

        def shown(element_id: str, shot: str) -> None:
            """Wait for the element, scroll it into view and photograph the page."""
            element = wait.until(ec.presence_of_element_located((By.ID, element_id)))
            browser.execute_script("arguments[0].scrollIntoView(false)", element)
            browser.save_screenshot(str(shots / f"{shot}.png"))

        def text(selector: str) -> str:
            return str(browser.find_element(By.CSS_SELECTOR, selector).text)

        browser.get(f"{url}/inbox")  # not signed in: sent to the form
        shown("login-user", "login")
        sign_in_form(browser, wait)
        shown("inbox", "inbox")
        seen["user"] = text("#user")
        seen["alert"] = text("tr.alert-row .alert-title")

        browser.find_element(By.CSS_SELECTOR, "tr.alert-row a.story-link").click()
        shown("timeline", "story")
        seen["story"] = text("#story-title")
        seen["story_url"] = browser.current_url

        browser.find_element(By.LINK_TEXT, "Inbox").click()
        wait.until(ec.presence_of_element_located((By.ID, "inbox")))
        browser.find_element(By.CSS_SELECTOR, "tr.alert-row form[action$='/ack'] button").click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".acked")))
        shown("inbox", "inbox-acked")
        seen["acked"] = text(".acked")

        story_id = seen["story_url"].rsplit("/", 1)[-1]
        browser.find_element(By.LINK_TEXT, "Silences").click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "form.silence")))
        form = browser.find_element(By.CSS_SELECTOR, "form.silence")
        Select(form.find_element(By.NAME, "target")).select_by_value("story")
        for name, value in (("value", story_id), ("duration", "24h"), ("reason", REASON)):
            field = form.find_element(By.NAME, name)
            field.clear()
            field.send_keys(value)
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        shown("silences", "silences")
        seen["silences"] = text("#silences tbody")

        browser.find_element(By.LINK_TEXT, "Playground").click()
        wait.until(ec.presence_of_element_located((By.ID, "draft")))
        # Pasted whole, as a person pastes a rule file (typing it key by key is slow).
        browser.execute_script("document.getElementById('draft').value = arguments[0]", DRAFT)
        browser.find_element(By.ID, "backtest-submit").click()
        shown("backtest", "playground")
        seen["draft_ok"] = text("#draft-ok")
        seen["backtest"] = text("#backtest-summary")
        seen["diff"] = sorted(
            (
                row.find_element(By.CSS_SELECTOR, ".mark").text,
                row.find_elements(By.TAG_NAME, "td")[4].text,
            )
            for row in browser.find_elements(By.CSS_SELECTOR, "tr.diff-row")
        )

        browser.find_element(By.LINK_TEXT, "Search").click()
        wait.until(ec.presence_of_element_located((By.ID, "search-q")))
        browser.find_element(By.ID, "search-q").send_keys(SIMPLIFIED_QUERY)
        browser.find_element(By.ID, "search-submit").click()
        shown("results", "search")
        seen["results"] = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".result-title")]
        seen["marked"] = text("#results mark")

        browser.find_element(By.CSS_SELECTOR, "#results a.rules-link").click()
        shown("explain-item", "explain")
        seen["explain"] = text("main")

        for page in PAGES:
            browser.get(f"{url}/{page}")
            wait.until(ec.title_contains("monitor console"))
            browser.save_screenshot(str(shots / f"{page}.png"))
    return seen


async def test_an_analyst_triages_an_alert_end_to_end_in_chromium(
    console: Console, tmp_path: Path
) -> None:
    shots = artefacts(tmp_path)
    seen = await asyncio.to_thread(journey, console.url, tmp_path / "profile", shots)
    assert seen["user"] == "ana"
    assert seen["alert"] == TENDER
    assert seen["story"] == TENDER
    story_id = seen["story_url"].rsplit("/", 1)[-1]
    assert seen["acked"].startswith("acked by ana")
    assert story_id in seen["silences"]
    assert REASON in seen["silences"]
    assert seen["draft_ok"].startswith("The draft loads: 1 rule")
    assert "Over 4 items" in seen["backtest"]
    assert seen["diff"] == [
        ("+", "Tungsten prices rise in Rotterdam"),
        ("=", TENDER),
        ("=", TRADITIONAL),
    ]
    assert seen["results"] == [TRADITIONAL]  # a Simplified query, a Traditional title
    assert seen["marked"] == "哈薩克斯坦"
    assert "kz-tungsten" in seen["explain"]
    # The silence is in Redis, the triage too: what the browser saw was stored.
    silences = await console.stores.silences.active(console.clock())
    assert [s.reason for s in silences] == [REASON]
    names = {"login", "inbox", "story", "inbox-acked", "silences", "playground", "search"}
    names |= {"explain", *PAGES}
    for name in names:
        assert (shots / f"{name}.png").read_bytes().startswith(b"\x89PNG"), name
