"""Machine translation of a foreign alert's headline and quote, cached, within a deadline.

The delivery worker asks ``AlertTranslator.translate_all`` just before it sends a pass's
alerts.  An English item is left alone; a foreign one gets a ``Translation``: the English of
its headline and quoted sentence, or, when the service fails or misses the deadline,
``unavailable`` (the alert goes out anyway, with its gloss, and says so).  A translation
never delays an alert by more than the deadline and never stops one.

Each text is cached in Redis under the SHA-256 of provider, source language, target
language and the text (``P:translation:<hex>``, expiring after ``cache_ttl``), so the same
headline reaching several channels, a retry, a follow-up or another replica costs one
request.  Only the English is stored there: never the API key, never the original text.

After a failure the service is left alone for ``cooldown`` (a 429's Retry-After, when it
sends one, up to ``MAX_COOLDOWN``): alerts meanwhile take what the cache has, so a service
that is down costs one deadline per cooldown, not one per alert.

``Translator`` is what a provider implements; ``LibreTranslate`` is the first.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

import aiohttp
import redis.asyncio as aioredis
import structlog

from monitor.deliver.render.english import source_texts, source_title
from monitor.errors import StoreError
from monitor.model import Match, Translation
from monitor.redact import REDACTED, clip, mask_text, url_host
from monitor.redisio import Keys, guarded
from monitor.rules.gloss import is_foreign

log = structlog.get_logger("monitor.deliver.translate")

TARGET = "en"
"""The desk reads English."""
SOURCE = "auto"
"""Let the service detect the language: a feed's ``lang`` may be missing, wrong or a code
the service does not know (LibreTranslate refuses an unknown one with a 400)."""
MAX_COOLDOWN = timedelta(minutes=5)
"""Longest a 429's Retry-After may keep translation off."""
BATCH_TEXTS = 16
"""Most texts in one request (a digest's headlines go as several requests at once)."""
ERROR_CHARS = 200
"""Most characters of a service's error message kept for the log."""


class TranslationFailed(Exception):
    """The service did not translate (HTTP error, unreadable answer, refused connection).

    Internal to this module: the alert then goes out as "translation unavailable".
    ``retry_after`` is the service's own wait (seconds), when it said one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Paused(TranslationFailed):
    """Not asked: the service failed recently and is being left alone (no new pause)."""


@runtime_checkable
class Translator(Protocol):
    """A machine-translation service: what another provider implements besides
    LibreTranslate.  ``translate`` returns one text per text given, in order, or raises
    ``TranslationFailed``; it never puts a secret into that error."""

    name: str

    async def translate(self, texts: Sequence[str], *, source: str, target: str) -> list[str]: ...


# -- pure parts -------------------------------------------------------------------------------


def cache_key(keys: Keys, provider: str, source: str, target: str, text: str) -> str:
    """The Redis key of one text's translation: a hash, so neither the text nor anything
    else readable is in the key (of a JSON list, so no two inputs give one key)."""
    parts = json.dumps([provider, source, target, text], ensure_ascii=False)
    digest = hashlib.sha256(parts.encode()).hexdigest()
    return f"{keys.prefix}:translation:{digest}"


def libretranslate_body(
    texts: Sequence[str], *, source: str, target: str, api_key: str | None
) -> dict[str, Any]:
    """The JSON of a LibreTranslate ``POST /translate``: ``q`` as a list translates several
    texts in one request; ``api_key`` only when one is configured (a self-hosted server
    without keys ignores it, but there is no need to send one)."""
    body: dict[str, Any] = {"q": list(texts), "source": source, "target": target, "format": "text"}
    if api_key:
        body["api_key"] = api_key
    return body


def libretranslate_texts(payload: object, count: int) -> list[str]:
    """The translations in a LibreTranslate answer (``{"translatedText": [...]}``, a plain
    string when one text was sent); ``TranslationFailed`` when it is not one."""
    if not isinstance(payload, Mapping):
        raise TranslationFailed("the answer is not a JSON object")
    translated = payload.get("translatedText")
    if isinstance(translated, str):
        translated = [translated]
    if not isinstance(translated, list) or len(translated) != count:
        raise TranslationFailed("the answer has no translatedText for every text")
    if not all(isinstance(text, str) for text in translated):
        raise TranslationFailed("the answer's translatedText is not text")
    return [str(text) for text in translated]


def libretranslate_error(status: int, payload: object) -> str:
    """The service's own reason for refusing (``{"error": "..."}``), with the status."""
    reason = payload.get("error") if isinstance(payload, Mapping) else None
    if isinstance(reason, str) and reason.strip():
        return f"HTTP {status}: {clip(' '.join(reason.split()), ERROR_CHARS)}"
    return f"HTTP {status}"


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds (the date form is not used by LibreTranslate)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


# -- providers --------------------------------------------------------------------------------


class LibreTranslate:
    """The LibreTranslate API (self-hosted or libretranslate.com): ``POST {url}/translate``.

    The API key travels in the JSON body, never in the URL, and is kept out of ``repr`` and
    of every error this raises.
    """

    name = "libretranslate"

    def __init__(
        self, url: str, *, session: aiohttp.ClientSession, api_key: str | None = None
    ) -> None:
        self.endpoint = url.rstrip("/") + "/translate"
        self._session = session
        self._api_key = api_key or None

    def __repr__(self) -> str:
        return f"LibreTranslate(host={url_host(self.endpoint)!r})"

    async def translate(self, texts: Sequence[str], *, source: str, target: str) -> list[str]:
        body = libretranslate_body(texts, source=source, target=target, api_key=self._api_key)
        try:
            async with self._session.post(self.endpoint, json=body) as response:
                payload = await _json_or_none(response)
                if response.status != 200:
                    raise TranslationFailed(
                        self._masked(libretranslate_error(response.status, payload)),
                        retry_after=retry_after_seconds(response.headers.get("Retry-After")),
                    )
        except aiohttp.ClientError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise TranslationFailed(self._masked(reason)) from None
        return libretranslate_texts(payload, len(texts))

    def _masked(self, text: str) -> str:
        """An error with URL credentials masked and the key itself, should a server echo it."""
        masked = mask_text(text)
        return masked.replace(self._api_key, REDACTED) if self._api_key else masked


async def _json_or_none(response: aiohttp.ClientResponse) -> object:
    try:
        return await response.json(content_type=None)
    except ValueError:
        return None


# -- the cache ------------------------------------------------------------------------------


class TranslationCache:
    """Translations in Redis by text hash (``cache_key``), each expiring after ``ttl``.

    A Redis that fails is a cache that misses: the alert must not wait for it more than
    for the service (the caller's deadline covers both).
    """

    def __init__(self, client: aioredis.Redis, keys: Keys, *, ttl: timedelta) -> None:
        self.client = client
        self.keys = keys
        self.ttl = ttl

    async def get(self, names: Sequence[str]) -> list[str | None]:
        if not names:
            return []
        try:
            found: Any = await guarded(lambda: self.client.mget(list(names)))
        except StoreError as exc:
            log.warning("translation cache unreadable", error=str(exc))
            return [None] * len(names)
        return [None if value is None else str(value) for value in found]

    async def put(self, entries: Mapping[str, str]) -> None:
        if not entries:
            return
        ttl_ms = max(1, int(self.ttl.total_seconds() * 1000))

        async def write() -> None:
            async with self.client.pipeline(transaction=False) as pipe:
                for name, text in entries.items():
                    pipe.set(name, text, px=ttl_ms)
                await pipe.execute()

        try:
            await guarded(write)
        except StoreError as exc:
            log.warning("translation cache not written", error=str(exc))


# -- what the worker uses ---------------------------------------------------------------------


class AlertTranslator:
    """Gives foreign alerts their ``Translation`` within ``deadline`` (see the module doc).

    ``clock`` is a monotonic clock in seconds, for the cooldown.
    """

    def __init__(
        self,
        provider: Translator,
        cache: TranslationCache | None = None,
        *,
        deadline: timedelta = timedelta(seconds=3),
        cooldown: timedelta = timedelta(seconds=30),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self.cache = cache
        self.deadline = deadline
        self.cooldown = cooldown
        self.clock = clock
        self._quiet_until = 0.0
        self.requests = 0
        """Requests made to the provider (for tests and the log)."""

    async def translate_all(self, matches: Sequence[Match]) -> list[Match]:
        """Every match with its translation (foreign ones only), all at once: the whole
        batch takes at most the deadline, and a headline and quote shared by several
        matches (one item, several rules) are asked for once."""
        keys = [
            source_texts(match) if is_foreign(match.item) and match.translation is None else None
            for match in matches
        ]
        wanted = {key: match for key, match in zip(keys, matches, strict=True) if key}
        found = await asyncio.gather(
            *(self._translation(key, match) for key, match in wanted.items())
        )
        by_key = dict(zip(wanted, found, strict=True))
        return [
            replace(match, translation=done) if key and (done := by_key[key]) else match
            for key, match in zip(keys, matches, strict=True)
        ]

    async def translate_titles(self, matches: Sequence[Match]) -> list[Match]:
        """A digest's foreign headlines in English (a digest lists headlines, not quotes):
        one batch of requests for all of them, within one deadline."""
        foreign = [
            index
            for index, match in enumerate(matches)
            if is_foreign(match.item) and match.translation is None and source_title(match)
        ]
        if not foreign:
            return list(matches)
        titles = list(dict.fromkeys(source_title(matches[index]) for index in foreign))
        english: dict[str, str] = {}
        try:
            async with asyncio.timeout(self.deadline.total_seconds()):
                english = dict(zip(titles, await self._english(titles), strict=True))
        except TimeoutError:
            self._pause(None)
            self._unavailable(matches[foreign[0]], "no answer in time for the digest")
        except _Paused:
            pass
        except TranslationFailed as exc:
            self._pause(exc.retry_after)
            self._unavailable(matches[foreign[0]], str(exc))
        done = list(matches)
        for index in foreign:
            title = english.get(source_title(matches[index]), "")
            translation = Translation(
                title=title, provider=self.provider.name, unavailable=not title
            )
            done[index] = replace(matches[index], translation=translation)
        return done

    async def translate(self, match: Match) -> Match:
        """``match`` with its ``translation`` set when its item is foreign; never raises
        for the service's or the cache's failures and never takes longer than the deadline."""
        return (await self.translate_all([match]))[0]

    async def _translation(self, texts: tuple[str, str], match: Match) -> Translation | None:
        """The translation of a headline and quote ("" for none), or an unavailable one;
        None when there is no text to translate."""
        title, quoted = texts
        asked = [text for text in (title, quoted) if text]
        if not asked:
            return None
        try:
            async with asyncio.timeout(self.deadline.total_seconds()):
                english = dict(zip(asked, await self._english(asked), strict=True))
        except TimeoutError:
            self._pause(None)
            return self._unavailable(match, f"no answer within {self.deadline.total_seconds()}s")
        except _Paused:
            return Translation(provider=self.provider.name, unavailable=True)
        except TranslationFailed as exc:
            self._pause(exc.retry_after)
            return self._unavailable(match, str(exc))
        return Translation(
            title=english.get(title, "") if title else "",
            quote=english.get(quoted, "") if quoted else "",
            provider=self.provider.name,
        )

    async def _english(self, texts: list[str]) -> list[str]:
        """The English of ``texts``: from the cache, else (one request for all the missing
        ones) from the provider, whose answers are then cached."""
        unique = list(dict.fromkeys(texts))
        names = [cache_key(self._keys, self.provider.name, SOURCE, TARGET, text) for text in unique]
        cached = await self.cache.get(names) if self.cache is not None else [None] * len(unique)
        known = {text: value for text, value in zip(unique, cached, strict=True) if value}
        missing = [text for text in unique if text not in known]
        if missing:
            if self.clock() < self._quiet_until:
                raise _Paused("paused after a recent failure")
            chunks = [missing[i : i + BATCH_TEXTS] for i in range(0, len(missing), BATCH_TEXTS)]
            self.requests += len(chunks)
            answers = await asyncio.gather(
                *(self.provider.translate(chunk, source=SOURCE, target=TARGET) for chunk in chunks)
            )
            known.update(zip(missing, (text for answer in answers for text in answer), strict=True))
            if self.cache is not None:
                by_name = dict(zip(unique, names, strict=True))
                await self.cache.put({by_name[text]: known[text] for text in missing})
        return [known[text] for text in texts]

    @property
    def _keys(self) -> Keys:
        return self.cache.keys if self.cache is not None else Keys()

    def _pause(self, retry_after: float | None) -> None:
        wait = self.cooldown.total_seconds()
        if retry_after is not None:
            wait = min(max(retry_after, wait), MAX_COOLDOWN.total_seconds())
        self._quiet_until = max(self._quiet_until, self.clock() + wait)

    def _unavailable(self, match: Match, reason: str) -> Translation:
        log.warning(
            "translation unavailable",
            provider=self.provider.name,
            rule=match.rule_id,
            item=match.item.id,
            error=reason,
        )
        return Translation(provider=self.provider.name, unavailable=True)
