"""The desk's feedback in the console: the five Slack buttons on Inbox rows (analysts only,
CSRF checked, recorded exactly as a Slack press is), the Rules page (the numbers of
``monitor rules stats`` and the ``no_match`` candidates), and silences by story and source.
Real console, real private Redis; plus the pure helpers, with hypothesis."""

from __future__ import annotations

import dataclasses
import html as htmllib
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st
from support.channel_fixtures import make_match
from support.servers import bound_socket

from console.harness import KEYS, Clock, Console, console_settings, csrf_of, sign_in, stores_on
from monitor.cli.rules import print_stats
from monitor.console import feedback_views, views
from monitor.console.server import ConsoleServer
from monitor.deliver.feedback import (
    Action,
    AlertRef,
    RuleStats,
    Vote,
    candidates_yaml,
    desk_press,
    silence_for,
    stats_by_rule,
)
from monitor.deliver.feedback_store import FeedbackStore
from monitor.deliver.history import SentLog
from monitor.deliver.policy import story_key
from monitor.model import Match

ROWS = re.compile(r'<tr id="alert-([0-9]+-[0-9]+)"')
HOSTILE = "<script>alert('owned')</script> Tungsten tender"


@pytest.fixture
async def console(redis_client: aioredis.Redis) -> AsyncIterator[Console]:
    clock = Clock()
    stores = stores_on(redis_client)
    config = console_settings()
    server = ConsoleServer(lambda: config, stores=stores, sources=list, clock=clock)
    assert await server.start(bound_socket())
    yield Console(server, f"http://127.0.0.1:{server.port}", stores, clock, [])
    await server.stop()


def feedback_of(console: Console) -> FeedbackStore:
    return FeedbackStore(console.stores.queue.client, KEYS)


async def sent(console: Console, match: Match) -> None:
    """An alert sent, as the delivery worker records it: in the Inbox's log and counted
    towards its rule's precision."""
    await SentLog(console.stores.queue.client, KEYS).record([match], "slack", console.clock())
    await feedback_of(console).record_sent(match, console.clock())


async def page(client: aiohttp.ClientSession, path: str, status: int = 200) -> str:
    async with client.get(path) as response:
        text = await response.text()
        assert response.status == status, text
        return text


async def press(
    client: aiohttp.ClientSession, entry: str, action: str, token: str | None, status: int = 200
) -> str:
    data = {"action": action, **({} if token is None else {"csrf": token})}
    async with client.post(f"/inbox/{entry}/feedback", data=data) as response:
        text = await response.text()
        assert response.status == status, text
        return text


# -- who may press --------------------------------------------------------------------------


@pytest.mark.parametrize("action", [a.value for a in Action])
async def test_a_viewer_gets_403_on_every_feedback_action(console: Console, action: str) -> None:
    await sent(console, make_match())
    async with console.client() as client:
        await sign_in(console, client, "vic")
        inbox = await page(client, "/inbox")
        assert "/feedback" not in inbox  # a viewer sees no feedback buttons
        [entry] = ROWS.findall(inbox)
        await press(client, entry, action, csrf_of(inbox), status=403)
    assert await feedback_of(console).presses() == []
    assert await feedback_of(console).votes("kz-tungsten") == []
    assert await console.stores.silences.active(console.clock()) == []


@pytest.mark.parametrize("token", [None, "", "forged"])
async def test_a_press_without_this_sessions_csrf_token_is_refused(
    console: Console, token: str | None
) -> None:
    await sent(console, make_match())
    async with console.client() as client:
        await sign_in(console, client, "ana")
        [entry] = ROWS.findall(await page(client, "/inbox"))
        await press(client, entry, "not_relevant", token, status=403)
        await press(client, entry, "mute_story", token, status=403)
    assert await feedback_of(console).presses() == []
    assert await console.stores.silences.active(console.clock()) == []


async def test_an_unknown_action_is_refused_and_records_nothing(console: Console) -> None:
    await sent(console, make_match())
    async with console.client() as client:
        await sign_in(console, client, "ana")
        inbox = await page(client, "/inbox")
        [entry] = ROWS.findall(inbox)
        await press(client, entry, "delete_everything", csrf_of(inbox), status=400)
    assert await feedback_of(console).presses() == []


# -- votes and the Rules page ---------------------------------------------------------------


async def test_not_relevant_is_recorded_shown_on_the_row_and_counted_on_the_rules_page(
    console: Console,
) -> None:
    judged = make_match(item="wire:1", title="Tungsten tender wire:1")
    await sent(console, judged)
    await sent(console, make_match(item="wire:2", title="Tungsten tender wire:2"))
    async with console.client() as client:
        await sign_in(console, client, "ana")
        inbox = await page(client, "/inbox")
        assert inbox.count('value="not_relevant"') == 2  # every row has the five buttons
        entry = ROWS.findall(inbox)[1]  # the older row: wire:1
        landed = await press(client, entry, "not_relevant", csrf_of(inbox))
        assert "Your feedback is recorded" in landed
        assert "ana marked it not relevant, 0s ago" in landed
        rules = await page(client, "/rules")

    [vote] = await feedback_of(console).votes("kz-tungsten")
    assert (vote.alert, vote.relevant, vote.who) == (judged.key, False, "ana")
    assert vote.title == "Tungsten tender wire:1"  # kept for the candidates, from the log
    [logged] = await feedback_of(console).presses()
    assert (logged["who"], logged["action"], logged["via"]) == ("ana", "not_relevant", "console")
    assert logged["story"] == story_key(judged)

    assert '<td class="sent-7d">2</td>' in rules
    assert '<td class="not-relevant-7d">1</td>' in rules
    assert '<td class="relevant-30d">0</td>' in rules
    assert '<td class="precision-7d">0%</td>' in rules
    candidates = re.search(r'<pre class="candidates">(.*?)</pre>', rules, re.S)
    assert candidates is not None
    shown = htmllib.unescape(candidates.group(1))
    assert "- title: Tungsten tender wire:1\n" in shown
    assert shown == candidates_yaml("kz-tungsten", [vote])  # what `rules stats --candidates` prints


async def test_the_rules_page_shows_the_same_numbers_as_rules_stats(console: Console) -> None:
    for n in range(4):
        await sent(console, make_match(item=f"wire:{n}", title=f"Tender {n}"))
    async with console.client() as client:
        await sign_in(console, client, "ana")
        inbox = await page(client, "/inbox")
        entries = ROWS.findall(inbox)
        for entry, action in zip(entries, ["relevant", "not_relevant", "relevant"], strict=False):
            await press(client, entry, action, csrf_of(inbox))
        rules = await page(client, "/rules")
    cli = io.StringIO()
    print_stats(await feedback_of(console).stats(console.clock()), cli)
    assert cli.getvalue().split()[-8:] == ["4", "2", "1", "67%", "4", "2", "1", "67%"]
    assert '<td class="precision-30d">67%</td>' in rules
    assert '<td class="relevant-7d">2</td>' in rules


async def test_the_latest_vote_on_an_alert_wins(console: Console) -> None:
    await sent(console, make_match())
    async with console.client() as client:
        await sign_in(console, client, "ana")
        inbox = await page(client, "/inbox")
        [entry] = ROWS.findall(inbox)
        await press(client, entry, "not_relevant", csrf_of(inbox))
        console.clock.advance(timedelta(minutes=5))
        landed = await press(client, entry, "relevant", csrf_of(inbox))
        rules = await page(client, "/rules")
    assert "ana marked it relevant, 0s ago" in landed
    assert '<td class="precision-7d">100%</td>' in rules
    assert "no_match" not in rules  # no item is marked not relevant any more


async def test_a_viewer_sees_who_marked_a_row_but_no_buttons(console: Console) -> None:
    await sent(console, make_match())
    async with console.client() as client:
        await sign_in(console, client, "ana")
        inbox = await page(client, "/inbox")
        await press(client, ROWS.findall(inbox)[0], "relevant", csrf_of(inbox))
    async with console.client() as client:
        await sign_in(console, client, "vic")
        inbox = await page(client, "/inbox")
        rules = await page(client, "/rules")
    assert "ana marked it relevant" in inbox
    assert 'value="relevant"' not in inbox
    assert '<td class="precision-7d">100%</td>' in rules


async def test_hostile_titles_are_escaped_on_the_row_and_in_the_candidates(
    console: Console,
) -> None:
    await sent(console, make_match(title=HOSTILE))
    async with console.client() as client:
        await sign_in(console, client, "ana")
        inbox = await page(client, "/inbox")
        await press(client, ROWS.findall(inbox)[0], "not_relevant", csrf_of(inbox))
        rules = await page(client, "/rules")
        inbox = await page(client, "/inbox")
    for text in (rules, inbox):
        assert "<script>" not in text
    assert "&lt;script&gt;" in rules
    assert "Tungsten tender" in rules


async def test_the_rules_page_without_feedback_says_so(console: Console) -> None:
    async with console.client() as client:
        await sign_in(console, client, "vic")
        rules = await page(client, "/rules")
    assert "No alerts sent and no feedback yet." in rules
    assert 'href="/rules" aria-current="page"' in rules


async def test_the_rules_page_needs_a_signed_in_user(console: Console) -> None:
    async with console.client() as client, client.get("/rules", allow_redirects=False) as r:
        assert r.status == 303
        assert r.headers["Location"].startswith("/login")


# -- mutes and snoozes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "target", "days"),
    [
        ("mute_story", "story story:s42", 7),
        ("mute_source", "rule kz-tungsten · source wire", 30),
        ("snooze_rule", "rule kz-tungsten", 1),
    ],
)
async def test_a_mute_makes_the_silence_the_silences_page_lists_with_its_target(
    console: Console, action: str, target: str, days: int
) -> None:
    match = dataclasses.replace(make_match(), story="s42")
    await sent(console, match)
    async with console.client() as client:
        await sign_in(console, client, "ana")
        inbox = await page(client, "/inbox")
        landed = await press(client, ROWS.findall(inbox)[0], action, csrf_of(inbox))
        assert "The silence is in force" in landed
        listed = await page(client, "/silences")
    [silence] = await console.stores.silences.active(console.clock())
    assert silence.target == target
    assert silence.author == "ana"
    assert silence.reason.startswith("console: ana ")
    assert silence.ends - console.clock() == timedelta(days=days)
    assert silence.covers(match, console.clock())
    other = dataclasses.replace(make_match(rule="other-rule", item="x:9"), story="s7")
    assert not silence.covers(
        dataclasses.replace(other, item=dataclasses.replace(other.item, source="elsewhere")),
        console.clock(),
    )
    assert f"<td>{htmllib.escape(target, quote=False)}<br>" in listed
    [logged] = await feedback_of(console).presses()
    assert (logged["action"], logged["who"]) == (action, "ana")


# -- the silence form: story, source, a rule's source ---------------------------------------


@pytest.mark.parametrize(
    ("form", "target"),
    [
        ({"target": "story", "value": "s42"}, "story story:s42"),
        ({"target": "story", "value": "title:abc"}, "story title:abc"),
        ({"target": "source", "value": "wire"}, "source wire"),
        (
            {"target": "rule", "value": "kz-tungsten", "only_source": "wire"},
            "rule kz-tungsten · source wire",
        ),
        ({"target": "rule", "value": "kz-tungsten"}, "rule kz-tungsten"),
    ],
)
async def test_the_silence_form_silences_by_story_source_and_a_rules_source(
    console: Console, form: dict[str, str], target: str
) -> None:
    async with console.client() as client:
        await sign_in(console, client, "ana")
        token = csrf_of(await page(client, "/silences"))
        data = {**form, "duration": "4h", "reason": "desk <b>call</b>", "csrf": token}
        async with client.post("/silences", data=data) as landed:
            text = await landed.text()
            assert landed.status == 200, text
    [silence] = await console.stores.silences.active(console.clock())
    assert (silence.target, silence.author) == (target, "ana")
    assert "desk &lt;b&gt;call&lt;/b&gt;" in text
    match = dataclasses.replace(make_match(), story="s42")
    assert silence.covers(match, console.clock()) == (target != "story title:abc")


async def test_a_source_narrowing_on_a_tag_is_refused(console: Console) -> None:
    async with console.client() as client:
        await sign_in(console, client, "ana")
        token = csrf_of(await page(client, "/silences"))
        data = {
            "target": "tag",
            "value": "minerals",
            "only_source": "wire",
            "duration": "4h",
            "reason": "why",
            "csrf": token,
        }
        async with client.post("/silences", data=data) as refused:
            assert refused.status == 400
            assert "only a rule can be narrowed to one source" in await refused.text()
    assert await console.stores.silences.active(console.clock()) == []


# -- pure ----------------------------------------------------------------------------------

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_the_console_offers_the_slack_buttons_in_slack_order() -> None:
    assert [b.label for b in feedback_views.BUTTONS] == [
        "Relevant",
        "Not relevant",
        "Mute story",
        "Mute this source for this rule",
        "Snooze rule 24 h",
    ]
    assert [b.silences for b in feedback_views.BUTTONS] == [False, False, True, True, True]


@given(st.text(max_size=30))
@settings(deadline=None)
def test_only_the_five_action_values_are_read_as_actions(value: str) -> None:
    found = feedback_views.pressed_action(value)
    assert (found is not None) == (value in {a.value for a in Action})


def test_vote_note_says_who_marked_it_what_and_when() -> None:
    vote = Vote("r|i", "r", False, "ana", NOW - timedelta(minutes=3), NOW - timedelta(hours=1))
    assert feedback_views.vote_note(vote, NOW) == "ana marked it not relevant, 3m ago"
    relevant = dataclasses.replace(vote, relevant=True, who="")
    assert feedback_views.vote_note(relevant, NOW) == "someone marked it relevant, 3m ago"
    assert feedback_views.vote_note(None, NOW) == ""


def test_rule_rows_group_the_windows_as_rules_stats_does() -> None:
    stats = [
        RuleStats("b", timedelta(days=7), 2, 1, 1),
        RuleStats("a", timedelta(days=30), 9, 0, 0),
        RuleStats("b", timedelta(days=30), 5, 3, 1),
        RuleStats("a", timedelta(days=7), 1, 0, 0),
    ]
    rows = feedback_views.rule_rows(stats, {"b": "no_match: [x]\n"})
    assert [r.rule for r in rows] == ["a", "b"]
    assert [(c.label, c.sent, c.precision) for c in rows[1].windows] == [
        ("7d", 2, "50%"),
        ("30d", 5, "75%"),
    ]
    assert rows[0].windows[0].precision == "-"
    assert (rows[0].candidates, rows[1].candidates) == ("", "no_match: [x]\n")
    assert list(stats_by_rule(stats)) == ["a", "b"]


@given(st.text(alphabet="abcdefghij0123456789:-", min_size=1, max_size=20))
@settings(deadline=None)
def test_a_story_criterion_is_a_story_key_and_is_stable(value: str) -> None:
    key = feedback_views.story_criterion(value)
    assert key.startswith(feedback_views.STORY_KEY_KINDS)
    assert feedback_views.story_criterion(key) == key


def test_a_console_story_id_is_the_key_the_story_silence_matches() -> None:
    match = dataclasses.replace(make_match(), story="s42")
    assert feedback_views.story_criterion("s42") == story_key(match)


def test_a_console_press_makes_the_same_silence_a_slack_press_makes_but_says_console() -> None:
    ref = AlertRef.of(dataclasses.replace(make_match(), story="s42"))
    order = silence_for(desk_press(Action.MUTE_SOURCE, ref, "ana"))
    assert order is not None
    assert (order.rule, order.source, order.story) == ("kz-tungsten", "wire", None)
    assert order.reason == "console: ana muted source wire for rule kz-tungsten"
    assert desk_press(Action.RELEVANT, ref, "ana").who == "ana"
    assert silence_for(desk_press(Action.RELEVANT, ref, "ana")) is None


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"target": "term", "value": "x"}, "choose whether"),
        ({"target": "story", "value": ""}, "name the story"),
        ({"target": "source", "value": "w", "only_source": "v"}, "only a rule"),
    ],
)
def test_the_silence_form_refuses_what_it_cannot_do(form: dict[str, str], error: str) -> None:
    wanted = views.silence_request({**form, "duration": "1h", "reason": "why"})
    assert isinstance(wanted, str)
    assert error in wanted
