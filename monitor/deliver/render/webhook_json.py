"""The generic webhook's JSON for an alert and a digest (schemas ``monitor.alert.v1`` and
``monitor.digest.v1``): text is data, not markup, so it is only cleaned."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from monitor.deliver.render.digest import Digest
from monitor.deliver.render.quote import quote
from monitor.deliver.render.strings import clean_line, clip, safe_link
from monitor.model import Match

WEBHOOK_ALERT_SCHEMA = "monitor.alert.v1"
WEBHOOK_DIGEST_SCHEMA = "monitor.digest.v1"


def alert_id(key: str) -> str:
    """A stable, opaque id for an alert or digest: receivers deduplicate on it."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def webhook_alert(match: Match, *, story: str) -> dict[str, Any]:
    """One alert as the webhook's JSON (see the README's schema); text is data, not markup,
    so it is only cleaned of control characters, and ``link`` is null unless http(s)."""
    item = match.item
    found = quote(match)
    return {
        "id": alert_id(match.key),
        "story": story,
        "follow_up": match.follow_up,
        "update": match.update,
        "rule": {
            "id": match.rule_id,
            "title": clean_line(match.rule_title),
            "severity": match.severity.label,
            "version": match.rule_version,
            "tags": list(match.tags),
        },
        "also": [note.to_dict() for note in match.also],
        "item": {
            "id": item.id,
            "title": clean_line(item.title),
            "summary": clip(clean_line(item.summary), 2000),
            "alt": clip(clean_line(item.alt), 2000),
            "link": safe_link(item.link),
            "source": clean_line(item.source),
            "source_tags": list(item.source_tags),
            "published": item.published.astimezone(UTC).isoformat(),
            "lang": item.lang,
        },
        "terms": list(match.terms),
        "hits": [
            {"term": h.term, "field": h.field, "start": h.start, "end": h.end, "text": h.text}
            for h in match.hits
        ],
        "quote": found.text if found is not None else None,
        "story_title": clean_line(match.story_title) or None,
        "provenance": [
            {
                "source": clean_line(note.source),
                "kind": note.kind,
                "country": note.country,
                "lang": note.lang,
                "new": note.new,
            }
            for note in match.provenance
        ],
        "explanation": clean_line(match.explanation) or None,
        "gloss": clean_line(match.gloss) or None,
        "translation": _translation(match),
    }


def _translation(match: Match) -> dict[str, Any] | None:
    """The machine translation beside the original ``item.title`` and ``quote``: null when
    none was asked for (an English item, or no translation service configured); ``status``
    "unavailable" (texts null) when the service failed or missed its deadline."""
    translation = match.translation
    if translation is None:
        return None
    if translation.unavailable:
        return {
            "status": "unavailable",
            "provider": translation.provider,
            "title": None,
            "quote": None,
        }
    return {
        "status": "ok",
        "provider": translation.provider,
        "title": clean_line(translation.title) or None,
        "quote": clean_line(translation.quote) or None,
    }


def webhook_alert_body(match: Match, *, story: str, now: datetime) -> dict[str, Any]:
    return {
        "schema": WEBHOOK_ALERT_SCHEMA,
        "kind": "alert",
        "sent_at": now.astimezone(UTC).isoformat(),
        **webhook_alert(match, story=story),
    }


def webhook_digest_body(
    digest: Digest, *, stories: dict[str, str], now: datetime
) -> dict[str, Any]:
    """A digest as the webhook's JSON: the window and its alerts grouped by topic."""
    return {
        "schema": WEBHOOK_DIGEST_SCHEMA,
        "kind": "digest",
        "id": alert_id(digest.key),
        "sent_at": now.astimezone(UTC).isoformat(),
        "channel": digest.channel,
        "window_end": digest.closes.astimezone(UTC).isoformat(),
        "timezone": digest.zone,
        "count": digest.count,
        "groups": [
            {
                "topic": clean_line(topic),
                "alerts": [webhook_alert(m, story=stories.get(m.key, "")) for m in matches],
            }
            for topic, matches in digest.groups
        ],
    }
