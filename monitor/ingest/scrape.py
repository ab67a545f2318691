"""News section pages -> entries, for outlets that publish no feed (a ``kind: page`` source).

The operator names CSS selectors for the item, its title, link, and optionally date and
summary; each element the item selector finds becomes one entry.  Pure, like ``parse``: bytes
and headers in, ``ParsedFeed`` out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from bs4 import BeautifulSoup
from bs4.element import Tag

from monitor.ingest.parse import NotAFeedError, ParsedFeed, RawEntry
from monitor.model import PageSelectors


def scrape_page(
    body: bytes, headers: Mapping[str, str], url: str, selectors: PageSelectors
) -> ParsedFeed:
    """Entries found on a section page; raise ``NotAFeedError`` when the selectors find none,
    since a redesigned page should fail loudly rather than yield silence."""
    soup = BeautifulSoup(body, "html.parser", from_encoding=_declared_charset(headers))
    entries = tuple(
        entry
        for element in soup.select(selectors.item)
        if (entry := _entry(element, selectors)) is not None
    )
    if not entries:
        raise NotAFeedError(
            f"the page selector {selectors.item!r} with title {selectors.title!r} found no items; "
            "the page may have been redesigned"
        )
    lang = soup.html.get("lang") if isinstance(soup.html, Tag) else None
    return ParsedFeed(
        title=soup.title.get_text(strip=True) if soup.title else "",
        lang=str(lang).split("-")[0].lower() if lang else None,
        entries=tuple(replace(entry, base=url) for entry in entries),
        format="page",
        encoding=soup.original_encoding,
    )


def _entry(element: Tag, selectors: PageSelectors) -> RawEntry | None:
    title_tag = element.select_one(selectors.title)
    title = title_tag.get_text(" ", strip=True) if title_tag else ""
    link_tag = element if _is_link(element) else element.select_one(selectors.link)
    link = str(link_tag.get("href") or "") if link_tag else ""
    if not title or not link:
        return None
    summary_tag = element.select_one(selectors.summary) if selectors.summary else None
    date_tag = element.select_one(selectors.date) if selectors.date else None
    return RawEntry(
        guid=None,
        title=title,
        summary_html=summary_tag.decode_contents() if summary_tag else "",
        link=link,
        published=_page_date(date_tag),
    )


def _is_link(element: Tag) -> bool:
    return element.name == "a" and element.has_attr("href")


def _page_date(tag: Tag | None) -> datetime | None:
    """``<time datetime=...>`` or the text, as ISO-8601 or an RFC 2822 date; else unknown."""
    if tag is None:
        return None
    text = str(tag.get("datetime") or tag.get_text(strip=True))
    for parse in (_iso, parsedate_to_datetime):
        try:
            moment = parse(text)
        except (TypeError, ValueError):
            continue
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _declared_charset(headers: Mapping[str, str]) -> str | None:
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            return value.strip('"').strip()
    return None
