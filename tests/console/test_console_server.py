"""The console end to end: a real aiohttp server on 127.0.0.1 over a real private Redis,
driven over HTTP as a browser would (cookies, forms, redirects)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import structlog
from support.channel_fixtures import enqueue, make_match

from console.harness import PASSWORDS, Console, StartConsole, console_settings, csrf_of, sign_in
from monitor.console.server import LOGIN_COOKIE, ConsoleServer
from monitor.errors import ConfigError, MonitorError
from monitor.ingest.fetch import Validators
from monitor.ingest.state import FeedSuccess
from monitor.model import Item, Source
from monitor.settings import WebConsoleSettings, load_settings
from monitor.stories.story import Gate

HOSTILE = "<script>alert('owned')</script> Tungsten tender"
WIRE = (
    "Kazakhstan's Ministry of Industry will auction subsoil use rights to the Upper Kairakty "
    "tungsten deposit in Karaganda region on March 20, with a starting price of 45 billion "
    "tenge, the ministry said on Monday."
)


async def seed_story(console: Console) -> str:
    """A story of three items in two languages from three sources, one rule alerted and
    one holding for corroboration; the first title is hostile HTML."""
    stories = console.stores.stories
    now = console.clock()
    first = await stories.assign(
        Item("i1", "wire", HOSTILE, WIRE, "https://wire.example/1", now - timedelta(hours=2), "en"),
        now - timedelta(hours=2),
    )
    await stories.assign(
        Item("i2", "portal", "Вольфрам: аукцион", WIRE, "javascript:alert(2)", now, "ru"),
        now - timedelta(hours=1),
    )
    await stories.assign(
        Item("i3", "daily", "Kairakty auction", WIRE, "https://daily.example/3", now, "en"), now
    )
    await stories.settle(first.story_id, "i1", [("kz-tungsten", Gate(), "")])
    await stories.settle(
        first.story_id, "i1", [("kz-corroborated", Gate(min_sources=5), json.dumps({}))]
    )
    return first.story_id


async def seed_dead_letter(
    console: Console, title: str = "Kazakhstan opens tungsten tender"
) -> str:
    queue = console.stores.queue
    await queue.ensure_group()
    await enqueue(queue.client, "c", make_match(title=title))
    [entry] = await queue.read_matches("w", 10, None)
    await queue.dead_letter(
        entry,
        "slack",
        "HTTP 404 from https://hooks.slack.com/services/T/B/SECRET",
        timedelta(hours=1),
        attempts=10,
    )
    await queue.acknowledge(entry.entry_id)
    [letter] = await queue.dead_letters()
    return letter.id


# -- access -------------------------------------------------------------------------------


def test_enabled_without_access_control_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text("console:\n  enabled: true\n  port: 8081\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={})
    message = str(caught.value)
    assert "monitor.yaml:2" in message
    assert "console.enabled is true but no access control" in message
    assert "console.proxy" in message
    assert "console.users" in message


def test_the_server_itself_refuses_settings_without_access_control() -> None:
    """A second lock: settings built in code (not loaded) cannot open an unguarded console."""
    unguarded = WebConsoleSettings.model_construct(enabled=True, proxy=None, users={})
    with pytest.raises(MonitorError, match="no access control"):
        ConsoleServer(lambda: unguarded, stores=None, sources=list, clock=datetime.now)  # type: ignore[arg-type]


async def test_every_page_and_action_needs_a_signed_in_user(start_console: StartConsole) -> None:
    console = await start_console()
    async with console.client() as client:
        for path in ("/", "/stories", "/stories/x", "/feeds", "/dead", "/silences"):
            async with client.get(path, allow_redirects=False) as response:
                assert response.status == 303, path
                assert response.headers["Location"].startswith("/login")
        for path in ("/silences", "/dead/1-0/retry", "/silences/x/end", "/logout"):
            async with client.post(path, data={"csrf": "x"}, allow_redirects=False) as response:
                assert response.status == 303, path
                assert response.headers["Location"] == "/login"
        async with client.get("/login") as response:
            assert response.status == 200
            assert "default-src 'none'" in response.headers["Content-Security-Policy"]
            assert response.headers["X-Frame-Options"] == "DENY"


async def test_login_and_logout(start_console: StartConsole) -> None:
    console = await start_console()
    async with console.client() as client:
        page = await sign_in(console, client, "ana")
        assert '<span id="user">ana</span>' in page
        async with client.post(
            "/logout", data={"csrf": csrf_of(page)}, allow_redirects=False
        ) as out:
            assert out.status == 303
            assert out.headers["Location"] == "/login"
        async with client.get("/stories", allow_redirects=False) as after:
            assert after.status == 303  # the session ended on the server, not only the cookie


async def test_the_session_cookie_is_httponly_samesite_strict_and_secure_by_default(
    start_console: StartConsole,
) -> None:
    console = await start_console(console_settings(secure_cookie=True))
    async with console.client() as client:
        async with client.get("/login") as page:
            token = csrf_of(await page.text())
            pre = page.cookies[LOGIN_COOKIE].value
        # A client sends a Secure cookie over HTTPS only; this one is handed back by hand.
        form = {"user": "vic", "password": PASSWORDS["vic"], "csrf": token}
        handed = {"Cookie": f"{LOGIN_COOKIE}={pre}"}
        async with client.post(
            "/login", data=form, headers=handed, allow_redirects=False
        ) as response:
            assert response.status == 303
            cookie = next(
                value
                for value in response.headers.getall("Set-Cookie")
                if value.startswith("__Host-monitor_console=")
            )
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= attributes


async def test_a_session_ends_when_its_user_is_removed_from_the_config(
    start_console: StartConsole,
) -> None:
    settings = console_settings()
    console = await start_console(settings)
    async with console.client() as client:
        await sign_in(console, client, "vic")
        console.server.config = lambda: console_settings(
            users={"ana": settings.users["ana"].model_dump()}
        )
        async with client.get("/stories", allow_redirects=False) as response:
            assert response.status == 303


async def test_wrong_passwords_are_rate_limited_per_user_and_logged_without_the_password(
    start_console: StartConsole,
) -> None:
    console = await start_console(console_settings(login_attempts=3))
    async with console.client() as client:

        async def attempt(user: str, password: str) -> aiohttp.ClientResponse:
            async with client.get("/login") as page:
                token = csrf_of(await page.text())
            form = {"user": user, "password": password, "csrf": token}
            async with client.post("/login", data=form, allow_redirects=False) as response:
                await response.read()
                return response

        with structlog.testing.capture_logs() as logs:
            for _ in range(3):
                assert (await attempt("ana", "guess-number-1")).status == 401
            limited = await attempt("ana", PASSWORDS["ana"])  # even the right one now waits
            assert limited.status == 429
            assert int(limited.headers["Retry-After"]) > 0
            other = await attempt("vic", PASSWORDS["vic"])  # the address is limited too
            assert other.status == 429
            console.clock.advance(timedelta(minutes=16))
            assert (await attempt("ana", PASSWORDS["ana"])).status == 303
    failed = [e for e in logs if e["event"] == "console: login failed"]
    assert len(failed) == 3
    assert all(e["user"] == "ana" for e in failed)
    assert any(e["event"] == "console: login rate limited" for e in logs)
    assert "guess-number-1" not in repr(logs)
    assert PASSWORDS["ana"] not in repr(logs)


async def test_a_login_without_its_form_token_is_refused(start_console: StartConsole) -> None:
    console = await start_console()
    async with console.client() as client:
        async with client.get("/login"):
            pass
        form = {"user": "ana", "password": PASSWORDS["ana"], "csrf": "forged"}
        async with client.post("/login", data=form, allow_redirects=False) as response:
            assert response.status == 403
    async with console.client() as fresh:  # no pre-login cookie: a cross-site post
        form = {"user": "ana", "password": PASSWORDS["ana"], "csrf": ""}
        async with fresh.post("/login", data=form, allow_redirects=False) as response:
            assert response.status == 403


@pytest.mark.parametrize("token", [None, "", "0" * 64, "wrong"])
async def test_a_state_changing_form_without_the_right_csrf_token_is_refused(
    start_console: StartConsole, token: str | None
) -> None:
    console = await start_console()
    async with console.client() as client:
        await sign_in(console, client, "ana")
        form = {"target": "rule", "value": "kz-tungsten", "duration": "4h", "reason": "noisy"}
        if token is not None:
            form["csrf"] = token
        async with client.post("/silences", data=form, allow_redirects=False) as response:
            assert response.status == 403
    assert await console.stores.silences.active(console.clock()) == []


async def test_a_csrf_token_of_another_session_is_refused(start_console: StartConsole) -> None:
    console = await start_console()
    async with console.client() as first, console.client() as second:
        stolen = csrf_of(await sign_in(console, first, "ana"))
        await sign_in(console, second, "ana")
        form = {"csrf": stolen, "target": "tag", "value": "ru", "duration": "1h", "reason": "x"}
        async with second.post("/silences", data=form, allow_redirects=False) as response:
            assert response.status == 403


# -- roles ----------------------------------------------------------------------------------


async def test_a_viewer_can_neither_retry_a_dead_letter_nor_add_a_silence(
    start_console: StartConsole,
) -> None:
    console = await start_console()
    letter = await seed_dead_letter(console)
    async with console.client() as client:
        await sign_in(console, client, "vic")
        async with client.get("/dead") as page:
            html = await page.text()
            assert letter in html
            assert "Retry</button>" not in html
            token = csrf_of(html)  # the sign-out form's token, valid for this session
        async with client.post(f"/dead/{letter}/retry", data={"csrf": token}) as refused:
            assert refused.status == 403
        form = {"csrf": token, "target": "rule", "value": "r", "duration": "1h", "reason": "x"}
        async with client.post("/silences", data=form) as refused:
            assert refused.status == 403
    assert [d.id for d in await console.stores.queue.dead_letters()] == [letter]
    assert await console.stores.silences.active(console.clock()) == []


async def test_an_analyst_retries_a_dead_letter(start_console: StartConsole) -> None:
    console = await start_console()
    letter = await seed_dead_letter(console)
    async with console.client() as client:
        await sign_in(console, client, "ana")
        async with client.get("/dead") as page:
            html = await page.text()
        assert "SECRET" not in html  # a webhook path in the reason is masked
        async with client.post(f"/dead/{letter}/retry", data={"csrf": csrf_of(html)}) as done:
            assert done.status == 200
            assert done.url.path == "/dead"
            assert "re-queued" in await done.text()
    assert await console.stores.queue.dead_letters() == []
    assert (await console.stores.queue.stream_counts())["queued"] == 1


async def test_an_analyst_adds_and_ends_a_silence(start_console: StartConsole) -> None:
    console = await start_console()
    async with console.client() as client:
        page = await sign_in(console, client, "ana")
        form = {
            "csrf": csrf_of(page),
            "target": "tag",
            "value": "ru",
            "duration": "4h",
            "reason": "<b>election</b> night",
        }
        async with client.post("/silences", data=form) as added:
            html = await added.text()
            assert added.url.path == "/silences"
        [silence] = await console.stores.silences.active(console.clock())
        assert (silence.tag, silence.rule, silence.author) == ("ru", None, "ana")
        assert silence.ends == console.clock() + timedelta(hours=4)
        assert "&lt;b&gt;election&lt;/b&gt; night" in html
        assert "<b>election" not in html
        bad = {**form, "duration": "forever"}
        async with client.post("/silences", data=bad) as refused:
            assert refused.status == 400
            assert "write the duration like" in await refused.text()
        async with client.post(f"/silences/{silence.id}/end", data={"csrf": form["csrf"]}) as ended:
            assert "The silence was ended." in await ended.text()
    assert await console.stores.silences.active(console.clock()) == []


# -- proxy header ---------------------------------------------------------------------------


async def test_the_proxy_header_is_believed_from_a_trusted_peer(
    start_console: StartConsole,
) -> None:
    settings = console_settings(
        users={}, proxy={"trusted": ["127.0.0.1/32"], "roles": {"ana": "analyst"}}
    )
    console = await start_console(settings)
    async with console.client() as client:
        headers = {"X-Forwarded-User": "ana"}
        async with client.get("/silences", headers=headers) as page:
            assert page.status == 200
            html = await page.text()
            assert '<span id="user">ana</span> <span class="role">(analyst)</span>' in html
        form = {
            "csrf": csrf_of(html),
            "target": "rule",
            "value": "r1",
            "duration": "1h",
            "reason": "drill",
        }
        async with client.post("/silences", data=form, headers=headers) as added:
            assert added.status == 200
        async with client.get("/stories", headers={"X-Forwarded-User": "eve"}) as other:
            assert "(viewer)" in await other.text()  # not in proxy.roles: the default role
    assert len(await console.stores.silences.active(console.clock())) == 1


async def test_the_proxy_header_is_ignored_from_an_untrusted_peer(
    start_console: StartConsole,
) -> None:
    """Over loopback the peer is 127.0.0.1; trusting only 10.0.0.0/8 makes it untrusted."""
    settings = console_settings(users={}, proxy={"trusted": ["10.0.0.0/8"]})
    console = await start_console(settings)
    async with console.client() as client:
        with structlog.testing.capture_logs() as logs:
            async with client.get("/stories", headers={"X-Forwarded-User": "ana"}) as page:
                assert page.status == 401
                assert "ana" not in await page.text()
    ignored = [e for e in logs if "untrusted address" in e["event"]]
    assert ignored
    assert ignored[0]["peer"] == "127.0.0.1"


async def test_with_both_modes_an_untrusted_proxy_header_falls_back_to_the_login(
    start_console: StartConsole,
) -> None:
    settings = console_settings(proxy={"trusted": ["192.168.0.0/16"]})
    console = await start_console(settings)
    async with (
        console.client() as client,
        client.get("/dead", headers={"X-Forwarded-User": "ana"}, allow_redirects=False) as response,
    ):
        assert response.status == 303
        assert response.headers["Location"] == "/login?next=/dead"


# -- pages ----------------------------------------------------------------------------------


async def test_the_stories_page_lists_stories_and_escapes_hostile_titles(
    start_console: StartConsole,
) -> None:
    console = await start_console()
    story_id = await seed_story(console)
    async with console.client() as client:
        html = await sign_in(console, client, "vic")
    assert f'href="/stories/{story_id}"' in html
    assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt; Tungsten tender" in html
    assert "<script>" not in html
    assert re.search(r"<td>3</td><td>3</td><td>3</td>\s*<td>en, ru</td>", html)


async def test_the_stories_page_is_paged(start_console: StartConsole) -> None:
    console = await start_console()
    stories = console.stores.stories
    now = console.clock()
    for n in range(55):  # unrelated items: each its own story
        text = f"Distinct event number {n} about subject-{n}-{n * 7919} in place-{n}."
        await stories.assign(Item(f"s{n}", f"feed{n}", f"Story {n:02d}", text, "", now, "en"), now)
    async with console.client() as client:
        first = await sign_in(console, client, "vic")
        async with client.get("/stories?page=2&since=24h") as second:
            html = await second.text()
    assert first.count('class="story-title"') == 50
    assert "page 1 of 2 (55)" in first
    assert html.count('class="story-title"') == 5
    assert "page 2 of 2 (55)" in html


async def test_the_story_page_shows_its_timeline_provenance_and_rules(
    start_console: StartConsole,
) -> None:
    console = await start_console()
    story_id = await seed_story(console)
    async with console.client() as client:
        await sign_in(console, client, "vic")
        async with client.get(f"/stories/{story_id}") as page:
            html = await page.text()
        async with client.get("/stories/no-such-story") as missing:
            assert missing.status == 404
    timeline = html[html.index('id="timeline"') :]
    assert (
        timeline.index("&lt;script&gt;")
        < timeline.index("Вольфрам")
        < timeline.index("Kairakty auction")
    )
    assert "<script>" not in html
    assert 'href="https://wire.example/1"' in html
    assert 'href="javascript:' not in html  # a link that is not http(s) is shown, not linked
    assert "javascript:alert(2)" in html
    assert "wire (news, en)" in html
    assert "portal (news, ru)" in html
    assert "alerted on i1" in html
    assert "held: waiting for 5 independent sources (has 3)" in html


async def test_the_feeds_page_shows_health_and_masks_credentials(
    start_console: StartConsole,
) -> None:
    sources = [
        Source("bad", "https://desk:hunter2pass@feeds.example/rss?apikey=SECRETKEY", tags=("kz",)),
        Source("good", "https://good.example/feed.xml"),
        Source("fresh", "https://fresh.example/feed.xml"),
    ]
    console = await start_console(sources=sources)
    now = console.clock()
    ingest = console.stores.ingest
    await ingest.feed_failed(
        "bad",
        "HTTP 500 from https://desk:hunter2pass@feeds.example/rss <script>x()</script>",
        500,
        now - timedelta(minutes=3),
        now + timedelta(minutes=7),
    )
    await ingest.feed_succeeded(
        "good",
        FeedSuccess(
            Validators(),
            200,
            now - timedelta(minutes=2),
            now + timedelta(minutes=8),
            new_items=12,
            moved_to="https://new.example/feed.xml?token=MOVEDSECRET",
        ),
    )
    async with console.client() as client:
        await sign_in(console, client, "vic")
        async with client.get("/feeds") as page:
            html = await page.text()
    for secret in ("hunter2pass", "SECRETKEY", "MOVEDSECRET"):
        assert secret not in html
    assert "<script>x()" not in html
    assert "&lt;script&gt;x()&lt;/script&gt;" in html
    rows = html[html.index("<tbody>") :]
    assert rows.index("bad") < rows.index("fresh") < rows.index("good")  # failing first
    assert "failing" in rows
    assert "never polled" in rows
    assert "2m ago" in rows
    assert "in 8m" in rows
    assert "<td>12</td>" in rows
    assert "Moved permanently to" in rows
    assert "https://new.example/feed.xml" in rows
    assert "1 failing · 0 stale · 1 never polled · 1 ok" in html


async def test_the_dead_letters_and_silences_pages_escape_hostile_text(
    start_console: StartConsole,
) -> None:
    console = await start_console()
    await seed_dead_letter(console, title="<img src=x onerror=alert(1)>")
    await console.stores.silences.add(
        rule="<script>r</script>",
        tag=None,
        duration=timedelta(hours=1),
        reason="<script>why</script>",
        now=console.clock(),
        author="<i>ana</i>",
    )
    async with console.client() as client:
        await sign_in(console, client, "vic")
        async with client.get("/dead") as dead:
            dead_html = await dead.text()
        async with client.get("/silences") as silences:
            silence_html = await silences.text()
    assert "<img src=x" not in dead_html
    assert "&lt;img src=x onerror=alert(1)&gt;" in dead_html
    assert "<script>" not in silence_html
    assert "<i>ana" not in silence_html
    assert "&lt;script&gt;why&lt;/script&gt;" in silence_html
