"""Identity of items, so that each news item alerts once across polls and across feeds.

Pure: these functions only compute keys; ``store`` remembers which keys were seen.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from monitor.model import Item, Match


def _digest(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=12).hexdigest()


def content_fingerprint(title: str, summary: str) -> str:
    """Case- and spacing-insensitive digest of the text, for items with neither GUID nor link."""
    folded = " ".join(unicodedata.normalize("NFKC", f"{title} {summary}").casefold().split())
    return _digest("text", folded)


def item_identity(source: str, guid: str | None, link: str, title: str, summary: str) -> str:
    """The item's id within its feed: the GUID when there is one, else the canonical link,
    else a fingerprint of its text.  Stable across polls as long as the publisher is."""
    if guid and guid.strip():
        return f"{source}:{_digest('guid', guid.strip())}"
    if link:
        return f"{source}:{_digest('link', link)}"
    return f"{source}:{content_fingerprint(title, summary)}"


def entry_fingerprint(guid: str | None, link: str, title: str, summary: str) -> str:
    """A short name for a raw entry, to recognise it on the feed's next poll before any work
    is spent cleaning it.

    It follows ``item_identity``'s choice (GUID, else link, else text) on the text as the feed
    wrote it, so it is stable whenever the identity is; 64 bits make a collision among one
    feed's entries negligible.
    """
    if guid and guid.strip():
        basis = f"guid\x1f{guid.strip()}"
    elif link.strip():
        basis = f"link\x1f{link.strip()}"
    else:
        basis = f"text\x1f{title}\x1f{summary}"
    return hashlib.blake2b(basis.encode("utf-8"), digest_size=8).hexdigest()


def seen_keys(item: Item) -> tuple[str, ...]:
    """Every key under which this item counts as already seen.

    The per-feed identity catches the same item on the next poll; the canonical-link key
    catches the same article arriving through a second feed (Miniflux dedups only per feed,
    and analysts then get the same story twice), and the text fingerprint catches a reprint
    of the same text under another link.
    """
    keys = [f"id:{item.id}"]
    if item.link:
        keys.append(f"url:{_digest('link', item.link)}")
    if len(item.title) + len(item.summary) >= MIN_FINGERPRINT_TEXT:
        keys.append(f"text:{content_fingerprint(item.title, item.summary)}")
    return tuple(keys)


MIN_FINGERPRINT_TEXT = 80
"""Below this many characters of title and summary, equal text is too likely to be two
different items ("Breaking news", "Weather") to count as the same article."""


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """An item ready to be recorded: the keys it is seen under and its JSON, and its matches'.

    Built where the item was parsed (a parser process), so the event loop, which every feed's
    I/O shares, only ships strings to Redis instead of fingerprinting and serialising 50,000
    items on a first poll.
    """

    seen_keys: tuple[str, ...]
    item_json: str
    match_json: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    """The rule of each match, in order, for the per-rule match counts."""

    @classmethod
    def of(cls, item: Item, matches: Sequence[Match] = ()) -> ItemRecord:
        return cls(
            seen_keys(item),
            json.dumps(item.to_dict(), ensure_ascii=False),
            tuple(json.dumps(match.to_dict(), ensure_ascii=False) for match in matches),
            tuple(match.rule_id for match in matches),
        )
