"""English beside a foreign-language alert, as every medium words it: the machine
translation of the headline and quote, or "translation unavailable", and the gloss.

The original text always stays where it was; these lines are added next to it.  Which texts
a translation service is asked for is decided here too (``source_texts``), so the English
shown is the English of exactly the headline and quote the alert shows.  Pure.
"""

from __future__ import annotations

from monitor.deliver.render.quote import quote
from monitor.deliver.render.strings import TITLE_CHARS, clean_line, clip
from monitor.model import Match

UNAVAILABLE = "translation unavailable"
"""What an alert says when its translation was asked for and did not come in time."""
ENGLISH_LABEL = "English"
GLOSS_LABEL = "Gloss"


def source_title(match: Match) -> str:
    """The headline as alerts and digests show it: the text a translation service is asked
    to put into English."""
    return clip(clean_line(match.item.title), TITLE_CHARS)


def source_texts(match: Match) -> tuple[str, str]:
    """The headline and the quoted sentence as the alert shows them ("" for no quote)."""
    found = quote(match)
    return source_title(match), found.text if found is not None else ""


def english_title(match: Match) -> str:
    """The headline in English, "translation unavailable", or "" when no translation was
    asked for (an English item, or translation not configured)."""
    translation = match.translation
    if translation is None:
        return ""
    if translation.unavailable:
        return UNAVAILABLE
    return clean_line(translation.title)


def english_quote(match: Match) -> str:
    """The quoted sentence in English; "" when there is none to show."""
    translation = match.translation
    if translation is None or translation.unavailable:
        return ""
    return clean_line(translation.quote)


def machine_note(match: Match) -> str:
    """Who wrote the English, so nobody takes it for the publisher's: "machine translation
    (libretranslate)"; "" without a translation."""
    translation = match.translation
    if translation is None or translation.unavailable:
        return ""
    provider = clean_line(translation.provider)
    return f"machine translation ({provider})" if provider else "machine translation"


def gloss_text(match: Match) -> str:
    """The gloss as one clean line ("" for none)."""
    return clean_line(match.gloss)


def english_summary(match: Match) -> str:
    """One short English line for a list (digests, grouped messages): the translated
    headline when there is one, else the gloss."""
    title = english_title(match)
    if title and title != UNAVAILABLE:
        return title
    return gloss_text(match)
