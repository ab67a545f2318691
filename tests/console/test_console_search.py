"""The console's Search and "which rules would match" end to end: items recorded in the
history by the real ingest store, searched on a real console over the session's private
Redis with the rules' folding, and explained by the rule set the console is given."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
import redis.asyncio as aioredis
from support.channel_fixtures import make_match
from support.servers import bound_socket

from console.harness import KEYS, Clock, Console, console_settings, sign_in, stores_on
from monitor.app.wiring import Stores, console_server
from monitor.console.server import ConsoleServer
from monitor.deliver.history import SentLog
from monitor.model import Item
from monitor.rules import RuleSet, load_rules
from monitor.settings import load_settings

RULES = """\
rules:
  - id: kz-tungsten
    title: Tungsten in Kazakhstan
    severity: high
    match:
      all:
        - any: [tungsten, 钨, вольфрам*]
        - any: [Kazakhstan, 哈萨克斯坦, Казахстан*]
  - id: rare-earths
    title: Rare earths
    severity: medium
    match:
      any: ["rare earth*", 稀土]
"""
TRADITIONAL = "哈薩克斯坦鎢礦拍賣"
HOSTILE = "<script>alert('owned')</script> Kazakhstan tungsten auction"
RESULT = re.compile(r'href="/explain\?item=([0-9]+-[0-9]+)"')
Start = Callable[[RuleSet | None], Awaitable[Console]]


@pytest.fixture
def rules(tmp_path: Path) -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    return load_rules([path])


@pytest.fixture
async def start(redis_client: aioredis.Redis) -> AsyncIterator[Start]:
    """Start a console given the rule set it runs with (None: none loaded)."""
    started: list[ConsoleServer] = []

    async def run(rules: RuleSet | None) -> Console:
        clock = Clock()
        stores = stores_on(redis_client)
        config = console_settings()
        server = ConsoleServer(
            lambda: config, stores=stores, sources=list, clock=clock, rules=lambda: rules
        )
        assert await server.start(bound_socket())
        started.append(server)
        return Console(server, f"http://127.0.0.1:{server.port}", stores, clock, [])

    yield run
    for server in started:
        await server.stop()


async def seen(console: Console, *items: Item) -> None:
    """Record items as a poll does: each new one joins the history."""
    now = console.clock()
    assert await console.stores.ingest.record_items([(item, []) for item in items], now) == [
        True
    ] * len(items)


def item(
    item_id: str, title: str, summary: str = "", source: str = "wire", lang: str = "en"
) -> Item:
    published = datetime.now(UTC) - timedelta(hours=1)
    return Item(
        item_id, source, title, summary, f"https://{source}.example/{item_id}", published, lang
    )


async def search(client: aiohttp.ClientSession, query: str, status: int = 200) -> str:
    async with client.get(f"/search?{query}") as response:
        html = await response.text()
        assert response.status == status, html
        return html


def results(html: str) -> list[str]:
    return RESULT.findall(html)


async def test_a_simplified_query_finds_a_traditional_title_and_marks_it(
    start: Start, rules: RuleSet
) -> None:
    console: Console = await start(rules)
    await seen(
        console,
        item("z1", TRADITIONAL, "上凯拉克特鎢礦", "xinhua", "zh"),
        item("e1", "Kazakhstan tungsten tender", "Bids are due.", "wire", "en"),
        item("u1", "Unrelated news", "Nothing to see.", "wire", "en"),
    )
    async with console.client() as client:
        await sign_in(console, client, "vic")
        html = await search(client, "q=" + quote("哈萨克斯坦"))
        assert len(results(html)) == 1
        assert "<mark>哈薩克斯坦</mark>鎢礦拍賣" in html
        assert "xinhua" in html
        html = await search(client, "q=" + quote("钨"))
        assert len(results(html)) == 1
        assert "上凯拉克特<mark>鎢</mark>礦" in html  # the summary's sentence, quoted
        assert "Kazakhstan tungsten tender" not in html


async def test_a_prefix_query_and_filters_find_what_rules_would(
    start: Start, rules: RuleSet
) -> None:
    console: Console = await start(rules)
    await seen(
        console,
        item("e1", "KAZAKHSTAN'S tungsten tender", "Bids are due."),
        item("e2", "Kazakh miners strike", "", "portal", "en"),
        item("r1", "Вольфрам", "Казахстанский вольфрам", "tass", "ru"),
        item("e3", "Kazakhs", "Not the whole word.", "wire"),
    )
    async with console.client() as client:
        await sign_in(console, client, "vic")
        html = await search(client, "q=kazakh*")
        assert len(results(html)) == 3
        html = await search(client, "q=kazakh*&source=portal")
        assert len(results(html)) == 1
        assert "<mark>Kazakh</mark> miners strike" in html
        html = await search(client, "q=kazakhstan")  # whole words, as a rule term
        assert len(results(html)) == 1
        html = await search(client, "q=" + quote("казахстан*") + "&lang=ru")
        assert len(results(html)) == 1
        html = await search(client, "q=tungsten&until=2020-01-01")
        assert "Nothing found" in html
        html = await search(client, "q=" + quote('"tender kazakhstan"'))
        assert "Nothing found" in html


async def test_a_query_rules_would_refuse_says_what_to_fix(start: Start, rules: RuleSet) -> None:
    console: Console = await start(rules)
    async with console.client() as client:
        await sign_in(console, client, "vic")
        html = await search(client, "q=ka*", status=400)
        assert "too short" in html
        html = await search(client, "q=tungsten&since=%3Cb%3E", status=400)
        assert "&lt;b&gt;" in html
        assert "<b>" not in html


async def test_search_results_escape_hostile_titles(start: Start, rules: RuleSet) -> None:
    console: Console = await start(rules)
    await seen(console, item("h1", HOSTILE, "<img src=x onerror=alert(1)> tungsten"))
    async with console.client() as client:
        await sign_in(console, client, "vic")
        html = await search(client, "q=tungsten")
    assert len(results(html)) == 1
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert (
        "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt; Kazakhstan <mark>tungsten</mark>"
        in html
    )


async def test_the_explain_page_shows_which_rules_match_and_why(
    start: Start, rules: RuleSet
) -> None:
    console: Console = await start(rules)
    await seen(console, item("z1", TRADITIONAL, "上凯拉克特鎢礦", "xinhua", "zh"))
    async with console.client() as client:
        await sign_in(console, client, "vic")
        [entry] = results(await search(client, "q=" + quote("哈萨克斯坦")))
        async with client.get(f"/explain?item={entry}") as page:
            html = await page.text()
        assert "1 rule would match" in html
        assert "kz-tungsten (high) matches: Tungsten in Kazakhstan" in html
        assert "[哈薩克斯坦][鎢]礦拍賣" in html  # the hits, marked in the title
        assert "rare-earths" not in html
        async with client.get(f"/explain?item={entry}&rule=rare-earths") as page:
            html = await page.text()
        assert "rare-earths (medium) does not match" in html
        assert ": does not match</h3>" in html
        async with client.get(f"/explain?item={entry}&rule=%3Cb%3Enope") as page:
            html = await page.text()
        assert "No rule running now has the id &lt;b&gt;nope" in html


async def test_a_sent_alerts_why_link_explains_its_item(start: Start, rules: RuleSet) -> None:
    console: Console = await start(rules)
    match = make_match(title="Kazakhstan tungsten tender")
    await SentLog(console.stores.queue.client, KEYS).record([match], "slack", console.clock())
    async with console.client() as client:
        await sign_in(console, client, "vic")
        async with client.get("/inbox") as inbox:
            why = re.search(r'href="(/explain\?alert=[^"]+)"', await inbox.text())
        assert why, "no 'why' link in the inbox"
        async with client.get(why.group(1).replace("&amp;", "&")) as page:
            html = await page.text()
    assert "kz-tungsten (high) matches" in html
    assert ": matches</h3>" in html  # the alert's own rule, asked for by the link


async def test_explain_says_when_there_is_nothing_to_explain(start: Start, rules: RuleSet) -> None:
    without: Console = await start(None)
    await seen(without, item("e1", "Kazakhstan tungsten tender"))
    async with without.client() as client:
        await sign_in(without, client, "vic")
        [entry] = results(await search(client, "q=tungsten"))
        async with client.get(f"/explain?item={entry}") as page:
            assert page.status == 503
            assert "rules are not loaded" in await page.text()
    console: Console = await start(rules)
    async with console.client() as client:
        await sign_in(console, client, "vic")
        for query in ("item=1-0", "item=junk", "alert=1-0", ""):
            async with client.get(f"/explain?{query}") as page:
                assert page.status == 404


async def test_the_daemons_console_explains_with_the_rules_running_after_a_reload(
    redis_client: aioredis.Redis, rules: RuleSet, tmp_path: Path
) -> None:
    """``wiring.console_server`` passes the rule getter on: a reload (the getter returning
    another set) changes what the explain page says, with no restart."""
    config = tmp_path / "monitor.yaml"
    config.write_text(
        "redis: {key_prefix: c}\nconsole: {enabled: true, host: 127.0.0.1, secure_cookie: false,"
        " proxy: {trusted: [127.0.0.1/32], default_role: viewer}}\n",
        encoding="utf-8",
    )
    settings = load_settings(config, env={})
    running = [rules]
    server = console_server(
        lambda: settings,
        Stores.build(redis_client, settings),
        list,
        Clock(),
        rules=lambda: running[0],
    )
    assert server is not None
    assert await server.start(bound_socket())
    try:
        console = Console(server, f"http://127.0.0.1:{server.port}", server.stores, Clock(), [])
        await seen(console, item("e1", "Kazakhstan tungsten tender"))
        headers = {"X-Forwarded-User": "vic"}
        async with aiohttp.ClientSession(base_url=console.url, headers=headers) as client:
            [entry] = results(await search(client, "q=tungsten"))
            async with client.get(f"/explain?item={entry}") as page:
                assert "1 rule would match" in await page.text()
            running[0] = load_rules([_rules_file(tmp_path, RULES.replace("tungsten,", "nickel,"))])
            async with client.get(f"/explain?item={entry}") as page:
                html = await page.text()
            assert "0 rules would match" in html
            assert running[0].version in html
    finally:
        await server.stop()


def _rules_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "reloaded.yaml"
    path.write_text(text, encoding="utf-8")
    return path
