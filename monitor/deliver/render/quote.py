"""The quote an alert shows: the sentence around a hit, with every hit in it marked."""

from __future__ import annotations

import re
from dataclasses import dataclass

from monitor.deliver.render.strings import collapse_spaces
from monitor.model import Item, Match, TermHit

QUOTE_CHARS = 300
"""Longest quote (before escaping) an alert shows: a sentence, not the article."""

# Gaps between sentences: end punctuation (plus closing quotes) then space, CJK full stops,
# or a line break.
_BOUNDARY = re.compile(
    r"[.!?…]+[\"'”’»)\]]*\s+"
    r"|[。！？]+[”’」』）)]*\s*"
    r"|\s*\n\s*"
)

_SNAP = 20
"""How far a clipped quote may move its edge to avoid cutting a word in half."""


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of quote text; ``hit`` runs are the matched terms, to be highlighted."""

    text: str
    hit: bool = False


@dataclass(frozen=True, slots=True)
class Quote:
    """The sentence around a hit, split into plain and highlighted runs, cleaned for display.

    ``clipped_start``/``clipped_end`` say whether text was cut there, so renderers can show "…".
    """

    field: str
    segments: tuple[Segment, ...]
    clipped_start: bool = False
    clipped_end: bool = False

    @property
    def text(self) -> str:
        return "".join(segment.text for segment in self.segments)


def find_sentence(text: str, start: int, end: int) -> tuple[int, int]:
    """Bounds of the sentence holding ``text[start:end]``, trailing spaces excluded.

    Boundaries that fall inside the hit are ignored, so a term such as "U.S. Navy" does not cut
    its own sentence in two.
    """
    begin, finish = 0, len(text)
    for gap in _BOUNDARY.finditer(text):
        if gap.end() <= start:
            begin = gap.end()
        elif gap.start() >= end:
            finish = gap.end()
            break
    while finish > max(begin, end) and text[finish - 1].isspace():
        finish -= 1
    return begin, finish


def _window(bounds: tuple[int, int], hit: tuple[int, int], limit: int) -> tuple[int, int]:
    """Choose at most ``limit`` characters of a sentence around a hit, centred on it."""
    begin, finish = bounds
    start, end = hit
    if finish - begin <= limit:
        return begin, finish
    end = min(end, start + limit)
    room = limit - (end - start)
    before = min(start - begin, room // 2)
    after = min(finish - end, room - before)
    before = min(start - begin, room - after)
    return start - before, end + after


def _snap(
    text: str, window: tuple[int, int], bounds: tuple[int, int], hit: tuple[int, int]
) -> tuple[int, int]:
    """Move clipped edges to the nearest space so the quote does not start mid-word."""
    lo, hi = window
    if lo > bounds[0]:
        space = text.find(" ", lo, min(lo + _SNAP, hit[0]))
        lo = space + 1 if space >= 0 else lo
    if hi < bounds[1]:
        space = text.rfind(" ", max(hi - _SNAP, hit[1]), hi)
        hi = space if space >= 0 else hi
    return lo, hi


QUOTABLE = ("title", "summary", "alt")
"""Item fields a quote may come from: the text a reader sees (tags are labels, not prose)."""


def locate_hit(item: Item, hit: TermHit) -> tuple[str, int, int] | None:
    """Find where a hit is in its item: trust its offsets when they check out, else search.

    A match read back from the queue may have been made by another version of the normalizer;
    a stale offset must not highlight the wrong words or crash the renderer.
    """
    if hit.field not in QUOTABLE:
        return None
    text: str = getattr(item, hit.field)
    if 0 <= hit.start < hit.end <= len(text) and text[hit.start : hit.end] == hit.text:
        return hit.field, hit.start, hit.end
    if not hit.text:
        return None
    found = re.search(re.escape(hit.text), text, re.IGNORECASE)
    if found is None:
        return None
    return hit.field, found.start(), found.end()


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _segments(
    text: str, window: tuple[int, int], spans: list[tuple[int, int]]
) -> tuple[Segment, ...]:
    """Split ``text[window]`` into plain and hit runs, each cleaned to one line."""
    lo, hi = window
    runs: list[Segment] = []
    cursor = lo
    for start, end in _merge([(max(s, lo), min(e, hi)) for s, e in spans if s < hi and e > lo]):
        runs.append(Segment(text[cursor:start]))
        runs.append(Segment(text[start:end], hit=True))
        cursor = end
    runs.append(Segment(text[cursor:hi]))
    return _clean_segments(runs)


def _clean_segments(runs: list[Segment]) -> tuple[Segment, ...]:
    cleaned: list[Segment] = []
    for run in runs:
        body = collapse_spaces(run.text)
        if cleaned and cleaned[-1].text.endswith(" ") and body.startswith(" "):
            body = body[1:]
        if body:
            cleaned.append(Segment(body, run.hit))
    if cleaned:
        cleaned[0] = Segment(cleaned[0].text.lstrip(), cleaned[0].hit)
        cleaned[-1] = Segment(cleaned[-1].text.rstrip(), cleaned[-1].hit)
    return tuple(run for run in cleaned if run.text)


def _chosen_hit(match: Match) -> tuple[str, int, int] | None:
    """The hit to quote: the first one in the summary, else in an image's alt text, else the
    first one anywhere.

    The headline is already shown in full, so a quote from the summary (or from the picture's
    caption, when only the picture named the term) adds context where a quote of the title
    would only repeat it.
    """
    located = [spot for spot in (locate_hit(match.item, hit) for hit in match.hits) if spot]
    for field in ("summary", "alt"):
        for spot in located:
            if spot[0] == field:
                return spot
    return located[0] if located else None


def _spans(match: Match, field: str) -> list[tuple[int, int]]:
    spots = (locate_hit(match.item, hit) for hit in match.hits)
    return [(spot[1], spot[2]) for spot in spots if spot is not None and spot[0] == field]


def quote(match: Match, *, limit: int = QUOTE_CHARS) -> Quote | None:
    """The sentence around the match's hit with every hit in it marked, at most ``limit`` chars.

    Without a usable hit it falls back to the summary's first sentence; it is None when there
    is nothing to quote.
    """
    chosen = _chosen_hit(match)
    if chosen is None:
        summary = match.item.summary
        lead = len(summary) - len(summary.lstrip())
        chosen = ("summary", lead, lead)
    field, start, end = chosen
    text: str = getattr(match.item, field)
    bounds = find_sentence(text, start, end)
    window = _snap(text, _window(bounds, (start, end), limit), bounds, (start, end))
    segments = _segments(text, window, _spans(match, field))
    if not segments:
        return None
    return Quote(field, segments, window[0] > bounds[0], window[1] < bounds[1])
