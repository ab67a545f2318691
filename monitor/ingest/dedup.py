"""Identity of items, so that each news item alerts once across polls and across feeds,
and an edited item is told again only for what it newly says.

Pure: these functions only compute keys and digests; ``state`` remembers which were seen.

Three questions, three answers:

- *Is it the same entry of the same feed?*  ``entry_identity``: the GUID together with the
  link (and the link's fragment, which names an entry on a live page), else the link, else
  the text.  A GUID alone is not enough: feeds reuse one GUID for different entries.
- *Is it the same article from another feed?*  The ``link:`` key (the canonical link without
  its fragment, remembering which feed and fragment recorded it) and the ``text:`` key.  One
  feed's entries are never merged by a link that differs only by its fragment.
- *Did the publisher change what it says?*  ``material_digest``: only words count, not case,
  spacing or punctuation.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

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


def identity_fragment(raw_link: str) -> str:
    """The fragment of a link as the feed wrote it, when it names a part of the page.

    Live blogs link each update to an anchor of one page (``/live#u1``, ``/live#u2``), so the
    fragment is part of the entry's identity; canonical links drop it.  A fragment holding
    ``=`` (``#xtor=RSS-3``, ``#utm_source=...``) or a text fragment (``#:~:text=``) tracks
    the reader rather than naming a place, and is not.
    """
    if "#" not in raw_link:
        return ""
    try:
        fragment = urlsplit(raw_link.strip()).fragment
    except ValueError:
        return ""
    if not fragment or "=" in fragment or fragment.startswith(":~:"):
        return ""
    return fragment


def entry_identity(
    source: str, guid: str | None, link: str, fragment: str, title: str, summary: str
) -> str:
    """The item's id within its feed, as ingestion records it.

    The GUID with the link and its fragment (a feed that reuses one GUID for entries with
    different links yields each of them; a live blog's ``#u1`` and ``#u2`` are two entries);
    without a GUID, the link and its fragment; without either, a fingerprint of the text.
    A GUID without a link, and a link without a fragment, give exactly ``item_identity``'s
    id, so items recorded before the link joined the GUID keep theirs.  The trade-off: a
    publisher that moves an entry to a new link under the same GUID makes a new item.
    """
    anchored = f"{link}#{fragment}" if link and fragment else link
    if guid and guid.strip():
        if not link:
            return f"{source}:{_digest('guid', guid.strip())}"
        return f"{source}:{_digest('guid', guid.strip(), anchored)}"
    if anchored:
        return f"{source}:{_digest('link', anchored)}"
    return f"{source}:{content_fingerprint(title, summary)}"


def entry_fingerprint(guid: str | None, link: str, title: str, summary: str) -> str:
    """A short name for a raw entry as the feed wrote it, to skip it on the feed's next poll
    before any work is spent cleaning it.

    It covers everything that makes an entry new (GUID and link: ``entry_identity``) or
    changed (title and summary: an edit must be looked at again, ``material_digest``);
    64 bits make a collision among one feed's entries negligible.
    """
    basis = "\x1f".join(("entry", (guid or "").strip(), link.strip(), title, summary))
    return hashlib.blake2b(basis.encode("utf-8"), digest_size=8).hexdigest()


_NOT_WORDS = re.compile(r"[\W_]+")


def material_text(text: str) -> str:
    """The words of ``text`` that carry its meaning, one space apart: runs of letters and
    digits, NFKC normalised and case-folded.  Whitespace, punctuation and symbols are not
    words.  (One substitution is a third cheaper than finding the words and joining them,
    on the corpus's items of about 1,000 characters.)"""
    return _NOT_WORDS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip(" ")


def material_digest(title: str, summary: str) -> str:
    """A digest of what an item says, equal for two versions exactly when neither changed
    materially (``materially_changed``).  Kept with the item's id key, so the next sighting
    of its GUID can tell an edit from a repeat without the old text."""
    return _digest("words", material_text(title), material_text(summary))


def materially_changed(before: tuple[str, str], after: tuple[str, str]) -> bool:
    """Whether a republished item (title, summary) says something else than before.

    The threshold is one word: a word added, removed or changed in the title or in the
    summary is material; edits of case, whitespace, punctuation or symbols only are not.
    A looser threshold (a share of words) would hide the edits that matter most, one
    added name or figure that makes a rule match, while re-matching an item whose word
    changed costs little: a rule only alerts on it when it newly matches.
    """
    return material_digest(*before) != material_digest(*after)


def seen_keys(item: Item) -> tuple[str, ...]:
    """Every key under which this item counts as already seen, its own id key first.

    The id key (``entry_identity``) catches the same entry on the next poll and holds its
    ``material_digest`` and the rules it matched.  The ``link:`` key is a hash of the feeds
    and fragments that carried the canonical link, so the same article arriving through a
    second feed is caught (Miniflux dedups only per feed, and analysts then get the same
    story twice) while one feed's live-blog anchors stay apart (``link_seen``).  The text
    fingerprint catches a reprint of the same text under another link.
    """
    keys = [f"id:{item.id}"]
    if item.link:
        keys.append(f"link:{_digest('link', item.link)}")
    if len(item.title) + len(item.summary) >= MIN_FINGERPRINT_TEXT:
        keys.append(f"text:{content_fingerprint(item.title, item.summary)}")
    return tuple(keys)


MIN_FINGERPRINT_TEXT = 80
"""Below this many characters of title and summary, equal text is too likely to be two
different items ("Breaking news", "Weather") to count as the same article."""


def link_field(source: str, fragment: str) -> str:
    """Who carried a canonical link: the field of the ``link:`` hash for one feed's entry."""
    return f"{source}\x1f{fragment}"


def link_seen(carriers: Iterable[str], source: str, fragment: str) -> bool:
    """Whether an entry of ``source`` whose link has ``fragment`` is an article already
    carried (``carriers``: ``link_field`` values) under the same canonical link.

    The same fragment is the same entry, in any feed (one feed changing an entry's GUID
    included).  Across feeds, a link without a fragment is the same article as the link
    with one (``/news/1`` and ``/news/1#comments``).  Within one feed, different fragments
    are different entries (live blogs), and so are two different fragments across feeds.
    The Lua in ``state`` applies this same rule; this is its reference.
    """
    for carrier in carriers:
        other, _, seen = carrier.partition("\x1f")
        if seen == fragment or (other != source and "" in (seen, fragment)):
            return True
    return False


def legacy_keys(item: Item, old_id: str = "") -> tuple[str, ...]:
    """Keys that items were seen under before identities took the link and its fragment
    into account (``id:`` with the GUID alone, ``url:`` with the canonical link), so an
    upgrade does not alert again on what is still in the feeds.  They are only read, never
    written or refreshed, and expire with the seen TTL."""
    keys = [f"id:{old_id}"] if old_id and old_id != item.id else []
    if item.link:
        keys.append(f"url:{_digest('link', item.link)}")
    return tuple(keys)


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """An item ready to be recorded: the keys it is seen under and its JSON, and its matches'.

    Built where the item was parsed (a parser process), so the event loop, which every feed's
    I/O shares, only ships strings to Redis instead of fingerprinting and serialising 50,000
    items on a first poll.  ``seen_keys`` starts with the item's id key; when the item has a
    link, the second is its ``link:`` hash, in which it is ``link_field``.
    """

    seen_keys: tuple[str, ...]
    item_json: str
    match_json: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    """The rule of each match, in order, for the per-rule match counts."""
    material: str = ""
    """``material_digest`` of the item's title and summary."""
    matched: tuple[str, ...] = ()
    """Every rule the item matched, queued or not (held, quiet backfill): what an edit of
    the item is compared with, so only a rule it newly matches alerts."""
    link_field: str = ""
    legacy: tuple[str, ...] = ()
    update: bool = False
    """A republished, materially changed item: its matches are the rules it newly matches."""
    prior: tuple[str, ...] = ()
    """For an update, the rules it matched when it was last recorded."""

    @classmethod
    def of(
        cls, item: Item, matches: Sequence[Match] = (), *, fragment: str = "", old_id: str = ""
    ) -> ItemRecord:
        return cls(
            seen_keys(item),
            json.dumps(item.to_dict(), ensure_ascii=False),
            material=material_digest(item.title, item.summary),
            link_field=link_field(item.source, fragment) if item.link else "",
            legacy=legacy_keys(item, old_id),
        ).with_matches(matches)

    def with_matches(self, matches: Sequence[Match]) -> ItemRecord:
        """This record with ``matches`` as its matches (the rules changed, or first match)."""
        return replace(
            self,
            match_json=tuple(json.dumps(m.to_dict(), ensure_ascii=False) for m in matches),
            rules=tuple(match.rule_id for match in matches),
            matched=tuple(dict.fromkeys(match.rule_id for match in matches)),
        )


def as_update(record: ItemRecord, prior: Iterable[str]) -> ItemRecord:
    """A republished, materially changed item's record: only the matches of rules it did
    not match before (``prior``) remain, each marked as an update; rules that already matched
    it stay quiet.  Pure."""
    before = tuple(prior)
    kept = [
        (rule, _marked(match_json))
        for rule, match_json in zip(record.rules, record.match_json, strict=True)
        if rule not in before
    ]
    return replace(
        record,
        match_json=tuple(match_json for _, match_json in kept),
        rules=tuple(rule for rule, _ in kept),
        update=True,
        prior=before,
    )


def _marked(match_json: str) -> str:
    data = json.loads(match_json)
    data["update"] = True
    return json.dumps(data, ensure_ascii=False)
