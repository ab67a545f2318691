"""The story page's corrections: an analyst splits an item out of a story or merges two
stories (``StoryStore.split_item``, ``merge_stories``), against a real private Redis."""

from __future__ import annotations

from datetime import timedelta

import pytest

from console.harness import Console, StartConsole, csrf_of, sign_in
from monitor.console.views import story_id_of
from monitor.model import Item

TUNGSTEN = "Kazakhstan opens a tender for the Koktenkol tungsten deposit, $200 million"
DARTS = "<b>Tungsten darts</b> championship opens in Almaty"


async def two_stories(console: Console) -> tuple[str, str]:
    now = console.clock()
    wire = Item("w1", "wire", TUNGSTEN, TUNGSTEN, "https://wire.example/1", now)
    reprint = Item("w2", "portal", TUNGSTEN, TUNGSTEN, "https://portal.example/2", now)
    darts = Item("d1", "sport", DARTS, DARTS, "https://sport.example/d1", now - timedelta(1))
    stories = console.stores.stories
    event = (await stories.assign(wire, now)).story_id
    assert (await stories.assign(reprint, now)).story_id == event
    other = (await stories.assign(darts, now)).story_id
    assert other != event
    return event, other


async def test_an_analyst_splits_an_item_out_and_merges_two_stories(
    start_console: StartConsole,
) -> None:
    console = await start_console()
    event, other = await two_stories(console)
    async with console.client() as client:
        await sign_in(console, client, "ana")
        async with client.get(f"/stories/{event}") as page:
            html = await page.text()
        assert "Split out</button>" in html
        assert "<b>" not in html  # hostile titles are text
        form = {"csrf": csrf_of(html), "item": "w2"}
        async with client.post(f"/stories/{event}/split", data=form) as split:
            assert split.status == 200
            alone = split.url.path.rsplit("/", 1)[1]
            assert "a story of its own" in await split.text()
        assert alone != event
        assert await console.stores.stories.story_of("w2") == alone
        form = {"csrf": csrf_of(html), "into": f"{console.url}/stories/{event}"}
        async with client.post(f"/stories/{other}/merge", data=form) as merged:
            assert merged.status == 200
            assert merged.url.path == f"/stories/{event}"
        assert await console.stores.stories.story_of("d1") == event
        form = {"csrf": csrf_of(html), "into": "not a story"}
        async with client.post(f"/stories/{alone}/merge", data=form) as refused:
            assert "Not merged" in await refused.text()
        assert await console.stores.stories.story_of("w2") == alone


async def test_a_viewer_cannot_correct_stories(start_console: StartConsole) -> None:
    console = await start_console()
    event, other = await two_stories(console)
    async with console.client() as client:
        await sign_in(console, client, "vic")
        async with client.get(f"/stories/{event}") as page:
            html = await page.text()
        assert "Split out</button>" not in html
        token = csrf_of(html)
        async with client.post(f"/stories/{event}/split", data={"csrf": token, "item": "w2"}) as r:
            assert r.status == 403
        async with client.post(f"/stories/{other}/merge", data={"csrf": token, "into": event}) as r:
            assert r.status == 403
    assert await console.stores.stories.story_of("w2") == event


@pytest.mark.parametrize(
    ("pasted", "story"),
    [
        ("s0123456789ab", "s0123456789ab"),
        ("story:s0123456789ab", "s0123456789ab"),
        ("https://console.example/stories/s0123456789ab/", "s0123456789ab"),
        ("/stories/s0123456789ab?notice=split", "s0123456789ab"),
        ("s0123", ""),
        ("<script>", ""),
    ],
)
def test_a_pasted_story_id_address_or_key_names_the_story(pasted: str, story: str) -> None:
    assert story_id_of(pasted) == story
