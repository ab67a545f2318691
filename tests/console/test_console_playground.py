"""The console's rule playground end to end: text pasted or items stored in the history by the
real ingest store, explained and backtested on a real console over the session's private
Redis; plus its pure parts (draft reading, diff rows, examples as YAML) and the shared
backtest's time budget."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
import redis.asyncio as aioredis
import yaml
from hypothesis import given
from hypothesis import strategies as st
from support.servers import bound_socket

from console.harness import Clock, Console, console_settings, csrf_of, sign_in, stores_on
from monitor.console import playground
from monitor.console.server import MAX_BODY, PLAYGROUND_MAX_BODY, ConsoleServer
from monitor.model import Item
from monitor.rules import RuleSet, load_rules
from monitor.rules.backtest import compare_rule_sets
from monitor.rules.load import load_rule_text

DEPLOYED = """\
rules:
  - id: kz-tungsten
    title: Tungsten in Kazakhstan
    severity: high
    match:
      all:
        - any: [tungsten, 钨]
        - any: [Kazakhstan, 哈萨克斯坦]
  - id: rare-earths
    title: Rare earths
    severity: medium
    match:
      any: ["rare earth*", 稀土]
"""
DRAFT = """\
rules:
  - id: kz-tungsten
    title: Tungsten sales
    severity: high
    match:
      all:
        - tungsten
        - any: [tender, auction]
"""
BROKEN = """\
rules:
  - id: kz-tungsten
    title: Tungsten sales
    severity: loud
    match:
      any: [tungsten]
"""
HOSTILE = "<script>alert('owned')</script> tungsten auction"
RESULT = re.compile(r'href="/explain\?item=([0-9]+-[0-9]+)"')
ROW = re.compile(
    r'<tr class="diff-row">\s*<td class="mark">([+=-])</td>\s*<td><code>([^<]*)</code></td>'
    r"\s*<td>[^<]*</td>\s*<td>[^<]*</td>\s*<td>([^<]*)</td>"
)
Start = Callable[[RuleSet | None], Awaitable[Console]]


@pytest.fixture
def deployed(tmp_path: Path) -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text(DEPLOYED, encoding="utf-8")
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


def item(item_id: str, title: str, summary: str = "", minutes: int = 0) -> Item:
    published = datetime(2026, 1, 5, 9, 0, tzinfo=UTC) + timedelta(minutes=minutes)
    return Item(item_id, "wire", title, summary, f"https://wire.example/{item_id}", published, "en")


async def seen(console: Console, *items: Item) -> None:
    """Record items as a poll does: each new one joins the history."""
    recorded = await console.stores.ingest.record_items([(i, []) for i in items], console.clock())
    assert recorded == [True] * len(items)


STORED = (
    item("both", "Kazakhstan tungsten tender opens", minutes=1),
    item("draft-only", "Tungsten auction in Hanoi", minutes=2),
    item("deployed-only", "Kazakhstan tungsten output rises", minutes=3),
    item("other-rule", "Rare earth prices climb", minutes=4),
    item("hostile", HOSTILE, minutes=5),
    item("nothing", "Wheat harvest", minutes=6),
)


async def playground_page(
    client: aiohttp.ClientSession, status: int = 200, **fields: str | list[str]
) -> str:
    async with client.get("/playground") as page:
        token = csrf_of(await page.text())
    data: list[tuple[str, str]] = [("csrf", token)]
    for name, value in fields.items():
        data += [(name, v) for v in value] if isinstance(value, list) else [(name, value)]
    async with client.post("/playground", data=data) as response:
        html = await response.text()
        assert response.status == status, html
        return html


def diff_rows(html: str) -> list[tuple[str, str, str]]:
    return [(mark, rule, unescape(title)) for mark, rule, title in ROW.findall(html)]


async def entry_ids(client: aiohttp.ClientSession, query: str) -> list[str]:
    async with client.get(f"/search?q={quote(query)}") as page:
        return RESULT.findall(await page.text())


# -- end to end -------------------------------------------------------------------------------


async def test_pasted_text_is_explained_by_every_rule_or_one(
    start: Start, deployed: RuleSet
) -> None:
    console = await start(deployed)
    async with console.client() as client:
        await sign_in(console, client, "vic")  # a viewer: the playground changes nothing
        html = await playground_page(
            client, action="explain", title="哈薩克斯坦鎢礦拍賣", summary="Bids are due."
        )
        assert "1 of 2 rules match" in html
        assert "<code>kz-tungsten</code> (high) Tungsten in Kazakhstan: matches" in html
        assert "<code>rare-earths</code> (medium) Rare earths: does not match" in html
        assert "✓ 钨 — &#39;鎢&#39; (title" in html
        assert html.index("kz-tungsten") < html.index("rare-earths")
        html = await playground_page(
            client, action="explain", title="Kazakhstan tungsten", rule="RARE-EARTHS"
        )
        assert "0 of 1 rule match" in html
        assert "kz-tungsten" not in html.split('id="verdicts"')[1]
        html = await playground_page(client, 400, action="explain")
        assert "Paste a title or a summary" in html


async def test_a_stored_item_is_explained_by_its_history_id(
    start: Start, deployed: RuleSet
) -> None:
    console = await start(deployed)
    await seen(console, *STORED)
    async with console.client() as client:
        await sign_in(console, client, "vic")
        [entry] = await entry_ids(client, "output rises")
        async with client.get(f"/playground?item={entry}") as page:
            html = await page.text()
            assert page.status == 200, html
        assert "Kazakhstan tungsten output rises" in html
        assert "<code>kz-tungsten</code> (high) Tungsten in Kazakhstan: matches" in html
        async with client.get("/playground?item=1-0") as page:
            assert page.status == 404
            assert "No such item" in await page.text()


async def test_a_broken_draft_shows_its_problems_at_draft_line_col(
    start: Start, deployed: RuleSet
) -> None:
    console = await start(deployed)
    async with console.client() as client:
        await sign_in(console, client, "vic")
        html = await playground_page(client, 400, action="backtest", draft=BROKEN)
        problems = unescape(html.split('id="draft-problems"')[1])
        assert re.search(r"draft:4:15: .*severity", problems), problems
        assert 'id="backtest"' not in html
        html = await playground_page(client, 400, action="backtest", draft="rules: [\n")
        assert re.search(r"draft:2:1: invalid YAML", unescape(html))


async def test_a_draft_backtest_shows_the_diff_with_the_running_rules(
    start: Start, deployed: RuleSet
) -> None:
    console = await start(deployed)
    await seen(console, *STORED)
    async with console.client() as client:
        await sign_in(console, client, "vic")
        html = await playground_page(client, action="backtest", draft=DRAFT.replace("\n", "\r\n"))
        assert "The draft loads: 1 rule," in html
        assert "Over 6 items published 2026-01-05 09:01 UTC to 2026-01-05 09:06 UTC;" in html
        assert "Draft alerts: 3 (2 new, 1 also raised by the running rules); 1 running" in html
        assert diff_rows(html) == [
            ("=", "kz-tungsten", "Kazakhstan tungsten tender opens"),
            ("+", "kz-tungsten", "Tungsten auction in Hanoi"),
            ("+", "kz-tungsten", HOSTILE),
            ("-", "kz-tungsten", "Kazakhstan tungsten output rises"),
        ]
        html = await playground_page(client, action="backtest", draft=DRAFT, scope="all")
        assert ("-", "rare-earths", "Rare earth prices climb") in diff_rows(html)
        assert 'id="draft-yaml"' in html  # the draft, to copy


async def test_ticked_items_become_examples_to_copy(start: Start, deployed: RuleSet) -> None:
    console = await start(deployed)
    await seen(console, *STORED)
    async with console.client() as client:
        await sign_in(console, client, "vic")
        [good] = await entry_ids(client, "tender opens")
        [bad] = await entry_ids(client, "output rises")
        html = await playground_page(
            client, action="examples", draft=DRAFT, match=[good], no_match=[bad, "9-9"]
        )
        block = unescape(html.split('<pre id="examples-yaml">')[1].split("</pre>")[0])
        assert block.startswith("# examples for kz-tungsten:")
        assert yaml.safe_load(block) == {
            "examples": {
                "match": ["Kazakhstan tungsten tender opens"],
                "no_match": ["Kazakhstan tungsten output rises"],
            }
        }
        assert f'name="match" value="{good}" checked' in html


async def test_hostile_text_is_escaped_everywhere(start: Start, deployed: RuleSet) -> None:
    console = await start(deployed)
    await seen(console, *STORED)
    draft = DRAFT.replace("Tungsten sales", "</pre><script>x()</script>")
    async with console.client() as client:
        await sign_in(console, client, "vic")
        html = await playground_page(
            client, action="explain", title=HOSTILE, summary="<img src=x onerror=y>"
        )
        assert "<script>" not in html
        assert "<img" not in html
        assert "&lt;script&gt;alert(" in html
        html = await playground_page(client, action="backtest", draft=draft)
        assert "<script>" not in html
        assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt; tungsten auction" in html
        assert "&lt;/pre&gt;&lt;script&gt;x()" in html


async def test_the_draft_size_is_limited(start: Start, deployed: RuleSet) -> None:
    console = await start(deployed)
    padding = "# " + "x" * 98 + "\n"
    too_big = DRAFT + padding * (playground.MAX_DRAFT_BYTES // len(padding))
    assert playground.MAX_DRAFT_BYTES < len(too_big) < PLAYGROUND_MAX_BODY - 1024
    async with console.client() as client:
        await sign_in(console, client, "vic")
        html = await playground_page(client, 400, action="backtest", draft=too_big)
        assert "the playground reads at most 262,144" in html
        html = await playground_page(
            client, 413, action="backtest", draft="#" * PLAYGROUND_MAX_BODY
        )
        # Other forms keep the small limit.
        async with client.get("/silences") as page:
            token = csrf_of(await page.text())
        form = {"csrf": token, "target": "rule", "value": "x", "reason": "r" * (MAX_BODY + 10)}
        async with client.post("/silences", data=form) as refused:
            assert refused.status == 413


async def test_the_playground_needs_a_session_and_the_csrf_token(
    start: Start, deployed: RuleSet
) -> None:
    console = await start(deployed)
    async with console.client() as client:
        async with client.post(
            "/playground", data={"action": "explain", "title": "x"}, allow_redirects=False
        ) as unsigned:
            assert unsigned.status == 303
        await sign_in(console, client, "vic")
        async with client.post("/playground", data={"action": "explain", "title": "x"}) as bad:
            assert bad.status == 403


async def test_without_running_rules_only_a_draft_explains(start: Start) -> None:
    console = await start(None)
    await seen(console, *STORED)
    async with console.client() as client:
        await sign_in(console, client, "ana")
        html = await playground_page(client, 503, action="explain", title="tungsten auction")
        assert "The rules are not loaded" in html
        html = await playground_page(
            client, action="explain", title="tungsten auction", against="draft", draft=DRAFT
        )
        assert "Tungsten sales: matches" in html
        await playground_page(client, 503, action="backtest", draft=DRAFT)


# -- pure parts -------------------------------------------------------------------------------


def test_read_draft_refuses_large_and_empty_drafts_and_reports_lint_problems() -> None:
    refused = playground.read_draft("x" * (playground.MAX_DRAFT_BYTES + 1))
    assert isinstance(refused, list)
    assert refused[0].startswith("draft: the draft is 262,145 bytes")
    assert playground.read_draft(" \n") == ["draft: the draft is empty; paste a rule file"]
    problems = playground.read_draft(BROKEN)
    assert isinstance(problems, list)
    assert problems[0].startswith("draft:4:15: ")
    ruleset = playground.read_draft(playground.draft_text(DRAFT.replace("\n", "\r\n")))
    assert isinstance(ruleset, RuleSet)
    assert ruleset.paths == ("draft",)
    assert ruleset.version == load_rule_text(DRAFT.encode(), "elsewhere").version


def test_a_draft_regex_is_compiled_by_re2_and_an_alias_bomb_is_refused() -> None:
    slow = DRAFT.replace("- tungsten", '- {regex: "(a+)+$"}').replace(
        "title: Tungsten sales",
        "title: Tungsten sales\n    examples:\n      no_match: [" + "a" * 5000 + "b]",
    )
    assert isinstance(playground.read_draft(slow), RuleSet)  # RE2: linear, no backtracking
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nrules: [*b]\n"
    problems = playground.read_draft(bomb)
    assert isinstance(problems, list)
    assert any("alias" in problem or "anchor" in problem for problem in problems), problems


def test_explain_rules_puts_matches_first_and_picks_one_rule(deployed: RuleSet) -> None:
    now = datetime(2026, 1, 5, tzinfo=UTC)
    text = playground.pasted_item("Rare earth and tungsten", "in Kazakhstan", now)
    verdicts = playground.explain_rules(deployed, text)
    assert [(v.rule, v.matches) for v in verdicts] == [
        ("kz-tungsten", True),
        ("rare-earths", True),
    ]
    other = playground.pasted_item("Rare earth prices", "", now)
    assert [v.rule for v in playground.explain_rules(deployed, other)] == [
        "rare-earths",
        "kz-tungsten",
    ]
    assert playground.explain_rules(deployed, other, "nope") == ()
    [only] = playground.explain_rules(deployed, other, "KZ-TUNGSTEN")
    assert only.lines[0].startswith("kz-tungsten (high) does not match")


def test_backtest_rows_follow_the_cli_order_and_scope(deployed: RuleSet) -> None:
    draft = load_rule_text(DRAFT.encode(), "draft")
    report = compare_rule_sets(list(STORED), deployed, draft)
    rows = playground.backtest_rows(report, {"both": "1-0"})
    assert [(r.mark, r.rule, r.entry) for r in rows] == [
        ("=", "kz-tungsten", "1-0"),
        ("+", "kz-tungsten", ""),
        ("+", "kz-tungsten", ""),
        ("-", "kz-tungsten", ""),
        ("-", "rare-earths", ""),
    ]
    scoped = playground.same_ids_only(report, draft)
    assert [m.rule_id for m in scoped.gone] == ["kz-tungsten"]
    assert playground.diff_counts(scoped) == {"+": 2, "=": 1, "-": 1}


def test_the_backtest_stops_when_its_budget_is_spent(deployed: RuleSet) -> None:
    asked: list[int] = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 2

    report = compare_rule_sets(list(STORED), deployed, deployed, stop=stop)
    assert report.stopped
    assert report.items == 2
    assert [m.item.id for m in report.alerts] == ["both"]
    assert not compare_rule_sets(list(STORED), deployed, deployed).stopped


def test_picked_ids_keeps_only_shown_items_once() -> None:
    picked = playground.picked_ids(["2-0", "1-0", "2-0", "9-9"], ["1-0", "2-0"])
    assert picked == ["2-0", "1-0"]
    many = [f"{n}-0" for n in range(100)]
    assert len(playground.picked_ids(many, many)) == playground.MAX_PICKS


titles = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(
    lambda text: text.strip()
)


@given(st.lists(titles, max_size=5), st.lists(st.tuples(titles, titles), max_size=5))
def test_examples_yaml_loads_back_to_the_picked_texts(
    matching: list[str], not_matching: list[tuple[str, str]]
) -> None:
    now = datetime(2026, 1, 5, tzinfo=UTC)
    good = [playground.pasted_item(title, "", now) for title in matching]
    bad = [playground.pasted_item(title, summary, now) for title, summary in not_matching]
    loaded = yaml.safe_load(playground.examples_yaml("r", good, bad))
    block = loaded["examples"]
    want_good = list(dict.fromkeys(" ".join(t.split()) for t in matching))
    want_bad = list(
        dict.fromkeys((" ".join(t.split()), " ".join(s.split())) for t, s in not_matching)
    )
    assert block.get("match", []) == want_good
    assert [
        (e["title"], e["summary"]) if isinstance(e, dict) else (e, "")
        for e in block.get("no_match", [])
    ] == [(t, s) for t, s in want_bad]
