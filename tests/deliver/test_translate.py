"""Machine translation of foreign alerts against a local server answering as LibreTranslate
does (success, 429, 500, slow) and the private Redis: cached by text hash, within a
deadline, never blocking an alert, the API key never shown anywhere."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from structlog.testing import capture_logs
from support.channel_fixtures import enqueue
from support.servers import bound_socket, slack_problems

from monitor.deliver.build import build_translator
from monitor.deliver.channels import ConsoleChannel
from monitor.deliver.policy import Route
from monitor.deliver.queue import AlertQueue
from monitor.deliver.render.digest import Digest
from monitor.deliver.render.email_mime import digest_email, email_message
from monitor.deliver.render.plain import console_text, digest_text
from monitor.deliver.render.slack_blocks import (
    slack_digest_payload,
    slack_group_payload,
    slack_payload,
)
from monitor.deliver.render.webhook_json import webhook_alert_body
from monitor.deliver.translate import (
    AlertTranslator,
    LibreTranslate,
    TranslationCache,
    TranslationFailed,
    Translator,
    cache_key,
    libretranslate_body,
    libretranslate_texts,
)
from monitor.deliver.worker import DeliveryPolicy, DeliveryWorker
from monitor.model import Item, Match, Severity, TermHit, Translation
from monitor.redisio import Keys
from monitor.settings import Settings

API_KEY = "lt-key-5f1e0c9a7d"
PREFIX = "tr"
WHEN = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
TITLE = "Казахстан объявил тендер на вольфрам"
SUMMARY = "Тендер на месторождение Верхнее Кайракты объявлен в Астане. Второе предложение."
QUOTE = "Тендер на месторождение Верхнее Кайракты объявлен в Астане."
ENGLISH = {
    TITLE: "Kazakhstan announced a tungsten tender",
    QUOTE: "A tender for the Upper Kairakty deposit was announced in Astana.",
}


# -- a local LibreTranslate -----------------------------------------------------------------------


@dataclass
class LibreTranslateServer:
    """Answers ``POST /translate`` as LibreTranslate does: ``q`` a string or a list, the
    same shape back in ``translatedText``, ``{"error": ...}`` with 400/403/429/500.

    ``mode``: "ok", "slow" (answers only once ``release`` is set), "500", "429".  With
    ``api_key`` set it refuses other keys (403), echoing the key it got, as a careless
    server might, to prove the client never passes that on."""

    api_key: str | None = API_KEY
    mode: str = "ok"
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if not isinstance(body, dict):
            return web.json_response({"error": "Invalid JSON format"}, status=400)
        texts = body.get("q")
        if not texts:
            error = {"error": "Invalid request: missing q parameter"}
            return web.json_response(error, status=400)
        if self.api_key and body.get("api_key") != self.api_key:
            got = body.get("api_key")
            return web.json_response({"error": f"Invalid API key {got}"}, status=403)
        if self.mode == "slow":
            await self.release.wait()
        if self.mode == "500":
            return web.json_response({"error": f"translation failed for {API_KEY}"}, status=500)
        if self.mode == "429":
            return web.json_response(
                {"error": "Slowdown: 30 per 1 minute"}, status=429, headers={"Retry-After": "120"}
            )
        many = isinstance(texts, list)
        english = [ENGLISH.get(text, f"EN[{text}]") for text in (texts if many else [texts])]
        detected = {"confidence": 90.0, "language": "ru"}
        return web.json_response(
            {
                "translatedText": english if many else english[0],
                "detectedLanguage": [detected] * len(english) if many else detected,
            }
        )


@pytest.fixture
async def libretranslate() -> AsyncIterator[LibreTranslateServer]:
    server = LibreTranslateServer()
    app = web.Application()
    app.router.add_post("/translate", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = bound_socket()
    site = web.SockSite(runner, sock)
    await site.start()
    host, port = sock.getsockname()[:2]
    server.url = f"http://{host}:{port}"
    yield server
    server.release.set()
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


class Monotonic:
    """A monotonic clock the test moves by hand (the cooldown reads it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_match(
    title: str = TITLE,
    summary: str = SUMMARY,
    lang: str | None = "ru",
    rule: str = "kz",
    item_id: str = "i1",
) -> Match:
    link = f"https://kaz.example/{item_id}"
    item = Item(item_id, "kazinform-ru", title, summary, link, WHEN, lang=lang)
    start = summary.index("Верхнее") if "Верхнее" in summary else 0
    text = summary[start : start + 7]
    hits = (TermHit("@deposits:Верхн* Кайракт*", "summary", start, start + 7, text),)
    return Match(rule, "Kazakhstan tungsten", Severity.HIGH, "v1", item, hits,
                 gloss="Kazakhstan · tungsten · Upper Kairakty")  # fmt: skip


def translator(
    server: LibreTranslateServer,
    session: aiohttp.ClientSession,
    client: aioredis.Redis | None = None,
    *,
    deadline: float = 3.0,
    clock: Callable[[], float] = time.monotonic,
) -> AlertTranslator:
    provider = LibreTranslate(server.url, session=session, api_key=API_KEY)
    cache = TranslationCache(client, Keys(PREFIX), ttl=timedelta(days=30)) if client else None
    return AlertTranslator(
        provider, cache, deadline=timedelta(seconds=deadline), cooldown=timedelta(seconds=30),
        clock=clock,
    )  # fmt: skip


# -- pure parts -----------------------------------------------------------------------------------


def test_the_request_is_libretranslates_and_carries_the_key_only_when_set() -> None:
    body = libretranslate_body(["a", "b"], source="auto", target="en", api_key=None)
    assert body == {"q": ["a", "b"], "source": "auto", "target": "en", "format": "text"}
    keyed = libretranslate_body(["a"], source="auto", target="en", api_key=API_KEY)
    assert keyed["api_key"] == API_KEY


@pytest.mark.parametrize(
    ("payload", "count", "texts"),
    [
        ({"translatedText": ["A", "B"]}, 2, ["A", "B"]),
        ({"translatedText": "A", "detectedLanguage": {"language": "ru"}}, 1, ["A"]),
        ({"translatedText": ["A"]}, 2, None),  # one text missing
        ({"translatedText": [1, 2]}, 2, None),
        ({"error": "x"}, 1, None),
        (["A"], 1, None),
    ],
)
def test_answers_are_read_or_refused(payload: object, count: int, texts: list[str] | None) -> None:
    if texts is None:
        with pytest.raises(TranslationFailed):
            libretranslate_texts(payload, count)
    else:
        assert libretranslate_texts(payload, count) == texts


def test_cache_keys_hash_everything_and_reveal_nothing() -> None:
    keys = Keys("p")
    one = cache_key(keys, "libretranslate", "auto", "en", TITLE)
    assert one.startswith("p:translation:")
    assert TITLE not in one
    assert one != cache_key(keys, "libretranslate", "auto", "de", TITLE)
    assert one != cache_key(keys, "other", "auto", "en", TITLE)
    assert cache_key(keys, "a", "b\x00c", "en", "t") != cache_key(keys, "a", "b", "c\x00en", "t")


def test_libretranslate_is_a_translator_and_its_repr_hides_the_key() -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as opened:
            provider = LibreTranslate("http://lt.example:5000/", session=opened, api_key=API_KEY)
            assert isinstance(provider, Translator)
            assert API_KEY not in repr(provider)
            assert provider.endpoint == "http://lt.example:5000/translate"

    asyncio.run(scenario())


# -- against the local server -----------------------------------------------------------------


async def test_a_foreign_alert_gets_its_headline_and_quote_in_english(
    libretranslate: LibreTranslateServer,
    session: aiohttp.ClientSession,
    redis_client: aioredis.Redis,
) -> None:
    done = await translator(libretranslate, session, redis_client).translate(make_match())
    assert done.translation == Translation(ENGLISH[TITLE], ENGLISH[QUOTE], "libretranslate")
    assert done.item.title == TITLE  # the original stays
    [request] = libretranslate.requests
    assert request == {
        "q": [TITLE, QUOTE],
        "source": "auto",
        "target": "en",
        "format": "text",
        "api_key": API_KEY,
    }


async def test_the_same_text_again_makes_no_request(
    libretranslate: LibreTranslateServer,
    session: aiohttp.ClientSession,
    redis_client: aioredis.Redis,
) -> None:
    """A second alert of the same headline and quote (another rule, a retry, another
    replica with a translator of its own) is answered from Redis."""
    first = await translator(libretranslate, session, redis_client).translate(make_match())
    again = await translator(libretranslate, session, redis_client).translate(
        make_match(rule="other")
    )
    assert again.translation == first.translation
    assert len(libretranslate.requests) == 1
    name = cache_key(Keys(PREFIX), "libretranslate", "auto", "en", TITLE)
    assert await redis_client.get(name) == ENGLISH[TITLE]
    assert 29 * 86400 < await redis_client.ttl(name) <= 30 * 86400


async def test_one_item_matched_by_two_rules_is_asked_for_once(
    libretranslate: LibreTranslateServer,
    session: aiohttp.ClientSession,
) -> None:
    done = await translator(libretranslate, session).translate_all(
        [make_match(rule="a"), make_match(rule="b")]
    )
    assert [m.translation for m in done] == [done[0].translation] * 2
    assert done[0].translation is not None
    assert len(libretranslate.requests) == 1


async def test_english_items_are_left_alone(
    libretranslate: LibreTranslateServer, session: aiohttp.ClientSession
) -> None:
    english = make_match("Kazakhstan tungsten tender", "Upper Kairakty tender.", lang="en")
    assert await translator(libretranslate, session).translate(english) is english
    assert libretranslate.requests == []


async def test_a_slow_service_costs_one_deadline_and_then_is_left_alone(
    libretranslate: LibreTranslateServer, session: aiohttp.ClientSession
) -> None:
    libretranslate.mode = "slow"
    clock = Monotonic()
    alerts = translator(libretranslate, session, deadline=0.3, clock=clock)
    started = time.monotonic()
    with capture_logs() as logs:
        late = await alerts.translate(make_match())
    assert time.monotonic() - started < 2.0  # the deadline, not the service, decides
    assert late.translation == Translation(provider="libretranslate", unavailable=True)
    assert [log["event"] for log in logs] == ["translation unavailable"]
    paused = await alerts.translate(make_match(rule="b"))  # within the cooldown: not asked
    assert paused.translation is not None
    assert paused.translation.unavailable
    assert len(libretranslate.requests) == 1
    clock.now += 31
    libretranslate.mode = "ok"
    back = await alerts.translate(make_match(rule="c"))
    assert back.translation is not None
    assert back.translation.title == ENGLISH[TITLE]


async def test_a_failing_service_gives_translation_unavailable_without_the_key(
    libretranslate: LibreTranslateServer,
    session: aiohttp.ClientSession,
    redis_client: aioredis.Redis,
) -> None:
    """The server's error text even contains the key: neither the log nor Redis does."""
    libretranslate.mode = "500"
    with capture_logs() as logs:
        done = await translator(libretranslate, session, redis_client).translate(make_match())
    assert done.translation is not None
    assert done.translation.unavailable
    [logged] = logs
    assert logged["error"].startswith("HTTP 500: translation failed for ")
    assert API_KEY not in json.dumps(logs, default=str)
    assert await redis_client.keys("*") == []  # a failure is not cached


async def test_a_refused_key_is_not_repeated_from_the_servers_answer(
    libretranslate: LibreTranslateServer,
    session: aiohttp.ClientSession,
) -> None:
    libretranslate.api_key = "another-key"
    with capture_logs() as logs:
        done = await translator(libretranslate, session).translate(make_match())
    assert done.translation is not None
    assert done.translation.unavailable
    assert logs[0]["error"] == "HTTP 403: Invalid API key ***"


async def test_a_429_keeps_the_service_off_for_its_retry_after(
    libretranslate: LibreTranslateServer, session: aiohttp.ClientSession
) -> None:
    libretranslate.mode = "429"
    clock = Monotonic()
    alerts = translator(libretranslate, session, clock=clock)
    await alerts.translate(make_match())
    libretranslate.mode = "ok"
    clock.now += 60  # past the 30 s cooldown, not past the server's 120 s
    assert (await alerts.translate(make_match(rule="b"))).translation == Translation(
        provider="libretranslate", unavailable=True
    )
    assert len(libretranslate.requests) == 1
    clock.now += 61
    done = await alerts.translate(make_match(rule="c"))
    assert done.translation is not None
    assert done.translation.title == ENGLISH[TITLE]


async def test_a_refused_connection_is_unavailable_too(session: aiohttp.ClientSession) -> None:
    sock = bound_socket()  # bound, never listening: the connection is refused
    host, port = sock.getsockname()[:2]
    provider = LibreTranslate(f"http://{host}:{port}", session=session, api_key=API_KEY)
    try:
        done = await AlertTranslator(provider).translate(make_match())
    finally:
        sock.close()
    assert done.translation == Translation(provider="libretranslate", unavailable=True)


async def test_the_api_key_is_never_stored_in_redis(
    libretranslate: LibreTranslateServer,
    session: aiohttp.ClientSession,
    redis_client: aioredis.Redis,
) -> None:
    await translator(libretranslate, session, redis_client).translate(make_match())
    names = await redis_client.keys("*")
    assert len(names) == 2  # the headline and the quote
    stored = [*names, *[str(await redis_client.get(name)) for name in names]]
    assert all(API_KEY not in text and TITLE not in text for text in stored)


async def test_digest_headlines_are_translated_in_one_batch(
    libretranslate: LibreTranslateServer, session: aiohttp.ClientSession
) -> None:
    matches = [make_match(f"Заголовок {n}", rule=f"r{n}") for n in range(20)]
    english = make_match("Kazakhstan tungsten", "Upper Kairakty.", lang="en")
    done = await translator(libretranslate, session).translate_titles([*matches, english])
    assert done[-1] is english
    assert [m.translation.title for m in done[:-1] if m.translation] == [
        f"EN[Заголовок {n}]" for n in range(20)
    ]
    assert [len(r["q"]) for r in libretranslate.requests] == [16, 4]


# -- the worker -------------------------------------------------------------------------------


async def deliver(
    client: aioredis.Redis, alerts: AlertTranslator | None, *matches: Match
) -> tuple[str, float]:
    """One delivery pass to the console; what it printed and how long it took."""
    queue = AlertQueue(client, Keys(PREFIX))
    await queue.ensure_group()
    await enqueue(client, PREFIX, *matches)
    stream = io.StringIO()
    worker = DeliveryWorker(
        queue,
        {"console": ConsoleChannel(stream)},
        DeliveryPolicy(routes=(Route(channels=("console",)),)),
        consumer="w1",
        translator=alerts,
    )
    started = time.monotonic()
    report = await worker.run_once()
    assert report.delivered == len(matches)
    return stream.getvalue(), time.monotonic() - started


async def test_the_worker_sends_the_english_beside_the_original(
    libretranslate: LibreTranslateServer,
    session: aiohttp.ClientSession,
    redis_client: aioredis.Redis,
) -> None:
    printed, _ = await deliver(
        redis_client, translator(libretranslate, session, redis_client), make_match()
    )
    assert f"  Title:   {TITLE}" in printed
    assert f"  English: {ENGLISH[TITLE]} [machine translation (libretranslate)]" in printed
    assert f"  English: “{ENGLISH[QUOTE]}”" in printed
    assert "  Gloss:   Kazakhstan · tungsten · Upper Kairakty" in printed


async def test_the_worker_does_not_wait_for_a_slow_service(
    libretranslate: LibreTranslateServer,
    session: aiohttp.ClientSession,
    redis_client: aioredis.Redis,
) -> None:
    libretranslate.mode = "slow"
    alerts = translator(libretranslate, session, redis_client, deadline=0.3)
    two = (make_match(), make_match(f"{TITLE}!", rule="b", item_id="i2"))  # two messages
    printed, took = await deliver(redis_client, alerts, *two)
    assert took < 2.5
    assert printed.count("  English: translation unavailable") == 2
    assert printed.count("  Gloss:   Kazakhstan · tungsten · Upper Kairakty") == 2


async def test_the_worker_without_translation_still_shows_the_gloss(
    redis_client: aioredis.Redis,
) -> None:
    printed, _ = await deliver(redis_client, None, make_match())
    assert "English:" not in printed
    assert "  Gloss:   Kazakhstan · tungsten · Upper Kairakty" in printed


# -- the settings and the composition root ----------------------------------------------


def test_the_translation_section_is_optional_checked_and_its_key_a_secret() -> None:
    assert Settings().translation is None
    settings = Settings.model_validate(
        {"translation": {"url": "http://libretranslate:5000", "api_key": API_KEY}}
    )
    config = settings.translation
    assert config is not None
    assert config.active
    assert config.deadline == timedelta(seconds=3)
    assert config.cache_ttl == timedelta(days=30)
    assert API_KEY in settings.secrets()
    assert API_KEY not in repr(settings)
    for bad in (
        {"url": "ftp://lt.example"},
        {"url": "http://user:pw@lt.example"},
        {"url": "http://lt.example/?api_key=x"},
        {"url": "http://lt.example", "deadline": "2m"},
        {"url": "http://lt.example", "provider": "deepl"},
    ):
        with pytest.raises(ValueError, match="translation"):
            Settings.model_validate({"translation": bad})


async def test_the_composition_root_builds_a_translator_only_when_configured(
    session: aiohttp.ClientSession, redis_client: aioredis.Redis
) -> None:
    queue = AlertQueue(redis_client, Keys(PREFIX))
    assert build_translator(Settings(), session, queue) is None
    off = Settings.model_validate({"translation": {"url": ""}})
    assert build_translator(off, session, queue) is None
    on = Settings.model_validate({"translation": {"url": "http://lt.example", "deadline": "2s"}})
    built = build_translator(on, session, queue)
    assert built is not None
    assert built.deadline == timedelta(seconds=2)
    assert built.cache is not None


# -- every medium shows it ----------------------------------------------------------------

TRANSLATED = replace(make_match(), translation=Translation(ENGLISH[TITLE], ENGLISH[QUOTE], "lt"))
UNAVAILABLE = replace(make_match(), translation=Translation(provider="lt", unavailable=True))


def test_slack_shows_the_english_under_the_original_within_its_limits() -> None:
    payload = slack_payload(TRANSLATED)
    assert slack_problems(payload) == []
    text = json.dumps(payload, ensure_ascii=False)
    sections = [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"]
    assert TITLE in sections[0]
    assert f"English: {ENGLISH[TITLE]} (machine translation (lt))" in sections[0]
    assert f"> English: {ENGLISH[QUOTE]}" in text
    assert "Gloss: Kazakhstan · tungsten · Upper Kairakty" in text
    assert ENGLISH[TITLE] in payload["text"]  # the notification too
    unavailable = slack_payload(UNAVAILABLE)
    assert "English: translation unavailable" in json.dumps(unavailable, ensure_ascii=False)
    group = slack_group_payload([TRANSLATED, UNAVAILABLE])
    assert slack_problems(group) == []
    assert ENGLISH[TITLE] in json.dumps(group, ensure_ascii=False)


def test_email_shows_the_english_in_both_parts() -> None:
    message = email_message(TRANSLATED, sender="m@example.org", recipients=["d@example.org"],
                            now=WHEN)  # fmt: skip
    plain = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert f"  English: {ENGLISH[TITLE]} [machine translation (lt)]" in plain
    assert f"  English: “{ENGLISH[QUOTE]}”" in plain
    assert "  Gloss:   Kazakhstan · tungsten · Upper Kairakty" in plain
    assert f"<strong>English:</strong> {ENGLISH[TITLE]}" in html
    assert "<strong>Gloss:</strong> Kazakhstan · tungsten · Upper Kairakty" in html
    unavailable = email_message(UNAVAILABLE, sender="m@example.org", recipients=["d@example.org"],
                                now=WHEN)  # fmt: skip
    text = unavailable.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "  English: translation unavailable" in text


def test_the_webhook_carries_translation_and_gloss_fields() -> None:
    body = webhook_alert_body(TRANSLATED, story="s", now=WHEN)
    assert body["gloss"] == "Kazakhstan · tungsten · Upper Kairakty"
    assert body["translation"] == {
        "status": "ok",
        "provider": "lt",
        "title": ENGLISH[TITLE],
        "quote": ENGLISH[QUOTE],
    }
    assert body["item"]["title"] == TITLE
    off = webhook_alert_body(UNAVAILABLE, story="s", now=WHEN)["translation"]
    assert off == {"status": "unavailable", "provider": "lt", "title": None, "quote": None}
    english = make_match("Kazakhstan tungsten", "Upper Kairakty.", lang="en")
    plain = webhook_alert_body(replace(english, gloss=""), story="s", now=WHEN)
    assert plain["translation"] is None
    assert plain["gloss"] is None


def test_console_and_digests_show_it() -> None:
    assert f"  English: {ENGLISH[TITLE]}" in console_text(TRANSLATED)
    digest = Digest("d", WHEN, "UTC", (("Rule", (TRANSLATED, UNAVAILABLE)),))
    text = digest_text(digest)
    assert f"  English: {ENGLISH[TITLE]}" in text
    assert "  English: translation unavailable" in text
    assert text.count("  Gloss:   Kazakhstan · tungsten · Upper Kairakty") == 2
    slack = slack_digest_payload(digest)
    assert slack_problems(slack) == []
    assert ENGLISH[TITLE] in json.dumps(slack, ensure_ascii=False)
    email = digest_email(digest, sender="m@example.org", recipients=["d@example.org"], now=WHEN)
    plain = email.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"  English: {ENGLISH[TITLE]}" in plain
    assert "  Gloss:   Kazakhstan · tungsten · Upper Kairakty" in plain


def test_a_translation_survives_the_queue_and_old_entries_still_read() -> None:
    again = Match.from_dict(json.loads(json.dumps(TRANSLATED.to_dict(), ensure_ascii=False)))
    assert again == TRANSLATED
    assert Match.from_dict(make_match().to_dict()).translation is None
