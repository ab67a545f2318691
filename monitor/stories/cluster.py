"""Which story an item belongs to: fingerprints, evidence and the similarity decision.

Pure: text in, features and decisions out; no Redis, no clock (times are arguments).

Two items report the same event when either

* their text is a near-duplicate in one language (a reprint with another title, a rewrite
  that keeps most sentences): Jaccard similarity of word bigrams (character trigrams in
  Chinese), estimated from a 48-slot one-permutation MinHash; or
* they share the distinctive evidence a person would use across languages: the same specific
  named entities (a deposit, a company, a ministry), the same figures ("20 million tonnes",
  "$110 million", "0.1 %", normalised so that "2000万吨" and "20 млн тонн" agree) and the same
  dates ("March 15", "15 марта", "3月15日").

The MinHash is split into LSH bands and the specific evidence into index keys; a store looks
up the stories that share any key with an item (its candidates), then ``choose_story`` decides.
"""

from __future__ import annotations

import hashlib
import itertools
import operator
import re
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitor.model import Item
from monitor.rules.text import fold, is_unspaced
from monitor.stories.lexicon import DEFAULT_ENTITIES, Lexicon

SLOTS = 48
"""MinHash slots: the estimate's standard error at Jaccard 0.5 is about 0.07."""
ROWS = 3
"""Slots per LSH band: two texts at Jaccard 0.5 share at least one of 16 bands with p = 0.88."""
BANDS = SLOTS // ROWS
EMPTY = -1
SHORT_TEXT = 16
"""Below this many shingles (a headline alone, a feed without summaries) a text keeps its
shingles' hashes instead of a MinHash and is compared exactly: one-permutation MinHash fills
its slots from so few shingles that two headlines sharing one word pair of three ("Tungsten
report f001p0", "Tungsten report f002p0") could estimate well above the join threshold."""

TEXT_JOIN = 0.42
"""Estimated Jaccard from which two texts in one language are the same article."""
TEXT_JOIN_DESPITE_FIGURES = 0.75
"""Two near-identical texts with different figures are a series ("exports rose 5 %" each
month), not one event, unless they are nearly the same text."""
MAX_CANDIDATES = 12
"""Stories compared with an item at most (see ``rank_candidates``)."""
MAX_MEMBERS = 16
"""Members of a story kept for comparison; later ones are mostly reprints of these."""
KEY_STORIES = 8
"""Stories remembered per index key (the most recent): a figure or a deposit shared by more
stories than this in one window is no longer a useful way to find candidates."""
EVIDENCE_JOIN = 3.0
"""Evidence score from which two items report the same event (see ``evidence_score``)."""
FIGURE_WEIGHT = 2.0
DATE_WEIGHT = 1.5
GENERIC_CAP = 0.5
"""Countries and commodities together add at most this much: they are the topic, not the event."""
STRONG_LINK = EVIDENCE_JOIN + 0.5
"""A link at least this strong (a near-duplicate text, or evidence beyond the bare minimum)
lets later items link through the member it brought in; see ``decide``."""
NAMED_TOGETHER = timedelta(hours=36)
"""Reports in two languages published at most this far apart that name the same deposit or
company and the same commodity, and disagree on no figure or date, are one event (see
``Extractor.named_together``).  A day and a half covers a wire, its translation the next
morning, and the time zones between them; a tender and its award, weeks apart, stay two."""
NAMING_KINDS = frozenset({"deposit", "company", "project", "ministry"})
"""Entity kinds specific enough, with the commodity, to tie two short cross-language reports
to one event.  A ministry counts: "商务部" and "Министерство коммерции" on rare earths within a
day and a half announce one measure; its next measure comes weeks later (the time keeps it
apart).  Agencies and places do not: too many reports name them."""


# --- text fingerprints ---------------------------------------------------------------------

_TOKEN = re.compile(r"[^\W_]+")


def tokens(folded: str) -> Iterator[tuple[str, bool]]:
    """Words of folded text, with each Chinese/Japanese/Korean/Thai character a token of its
    own (flagged True), since those scripts do not separate words with spaces."""
    for found in _TOKEN.finditer(folded):
        word = found.group()
        if is_unspaced(word[0]):
            for char in word:
                yield char, True
        else:
            yield word, False


def shingles(folded: str) -> frozenset[str]:
    """Word bigrams and, in unspaced scripts, character trigrams.

    Bigrams rather than trigrams because news summaries are short: one changed word costs a
    trigram model three shingles of thirty.  A text of one word is its own shingle.
    """
    found: set[str] = set()
    words: list[str] = []
    chars: list[str] = []
    for token, unspaced in tokens(folded):
        if unspaced:
            _flush_words(words, found)
            chars.append(token)
        else:
            _flush_chars(chars, found)
            words.append(token)
    _flush_words(words, found)
    _flush_chars(chars, found)
    return frozenset(found)


def _flush_words(words: list[str], found: set[str]) -> None:
    if len(words) == 1:
        found.add(words[0])
    found.update(f"{a} {b}" for a, b in itertools.pairwise(words))
    words.clear()


def _flush_chars(chars: list[str], found: set[str]) -> None:
    if 0 < len(chars) < 3:
        found.add("".join(chars))
    found.update("".join(chars[i : i + 3]) for i in range(len(chars) - 2))
    chars.clear()


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def minhash(shingle_set: Iterable[str]) -> tuple[int, ...]:
    """One-permutation MinHash with densification: one hash per shingle, not one per slot.

    Each shingle's 64-bit hash picks a slot (low bits) and competes there with its high bits;
    empty slots borrow from the next filled slot to the right, shifted by the distance, so two
    texts fill them the same way.  Slot values keep 16 bits: an accidental match costs
    1/65536 per slot, and a signature stays 96 bytes.

    A short text (fewer than ``SHORT_TEXT`` shingles) gets its shingles' distinct 16-bit
    hashes instead, sorted: fewer than ``SLOTS`` values, which is how ``similarity`` and
    ``band_keys`` tell the two forms apart.
    """
    values = [_hash64(shingle) for shingle in shingle_set]
    if 0 < len(values) < SHORT_TEXT:
        return tuple(sorted({value & 0xFFFF for value in values}))
    best = [0xFFFF_FFFF_FFFF] * SLOTS
    filled = [False] * SLOTS
    for value in values:
        slot = value % SLOTS
        high = value >> 16
        if high < best[slot]:
            best[slot] = high
            filled[slot] = True
    if not any(filled):
        return (EMPTY,) * SLOTS
    signature: list[int] = []
    for slot in range(SLOTS):
        distance = 0
        donor = slot
        while not filled[donor]:
            distance += 1
            donor = (donor + 1) % SLOTS
        signature.append((best[donor] + distance * 0x9E37) & 0xFFFF)
    return tuple(signature)


def similarity(a: Sequence[int], b: Sequence[int]) -> float:
    """Estimated Jaccard similarity of the texts behind two signatures; 0 for empty texts.

    Two short texts are compared exactly.  A short text and a long one are not
    near-duplicates (their Jaccard similarity is at most the short one's shingles over the
    long one's, well under the join threshold), so they score 0 and only shared evidence can
    join them."""
    if not a or not b or a[0] == EMPTY or b[0] == EMPTY:
        return 0.0
    short_a, short_b = len(a) < SLOTS, len(b) < SLOTS
    if short_a or short_b:
        if not (short_a and short_b):
            return 0.0
        first, second = set(a), set(b)
        return len(first & second) / len(first | second)
    return int(sum(map(operator.eq, a, b))) / SLOTS


def band_keys(signature: Sequence[int]) -> tuple[str, ...]:
    """LSH band keys: texts sharing one are candidates for the same story.  A short text's
    keys are its shingle hashes (``bs:``), so a headline with one word changed still finds
    the story of the first."""
    if not signature or signature[0] == EMPTY:
        return ()
    if len(signature) < SLOTS:
        return tuple(f"bs:{value:04x}" for value in signature)
    keys = []
    for band in range(BANDS):
        rows = signature[band * ROWS : (band + 1) * ROWS]
        keys.append(f"b{band}:" + "".join(f"{v:04x}" for v in rows))
    return tuple(keys)


def encode_signature(signature: Sequence[int]) -> str:
    """Signature as 4 hex digits a slot (how the store keeps it)."""
    if not signature or signature[0] == EMPTY:
        return ""
    return "".join(f"{v:04x}" for v in signature)


def decode_signature(text: str) -> tuple[int, ...]:
    if not text:
        return (EMPTY,) * SLOTS
    raw = bytes.fromhex(text)
    return struct.unpack(f">{len(raw) // 2}H", raw)


# --- figures and dates ------------------------------------------------------------------------

_NUMBER = r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)?)"
_SCALE = (
    r"(?P<scale>million\b|mln\b|mn\b|m\b|billion\b|bln\b|bn\b|b\b|thousand\b|k\b|"
    r"млн\b|миллион\w*|млрд\b|миллиард\w*|тыс\b|тысяч\w*|мың\b|万|亿|千)?"
)
_PRE_CURRENCY = r"(?P<pre>us\$|\$|usd|€|¥)?"
_UNIT = (
    r"(?P<unit>%|percent\b|per cent\b|процент\w*|пайыз\w*|"
    r"tonnes?\b|tons?\b|t\b|тонн\w*|тонна\w*|т\b|吨|"
    r"dollars?\b|usd\b|долл\w*|доллар\w*|美元|"
    r"yuan\b|юан\w*|元|tenge\b|тенге\b|теңге\b|坚戈|euros?\b|евро\b|欧元)?"
)
_FIGURE = re.compile(
    _PRE_CURRENCY + r"\s?" + _NUMBER + r"[\s-]?" + _SCALE + r"\.?[\s-]?" + r"(?:美元|元)?" + _UNIT
)
_CN_PERCENT = re.compile(r"百分之 ?(?P<num>\d+(?:\.\d+)?)")
_SCALES = {
    "million": 1e6, "mln": 1e6, "mn": 1e6, "m": 1e6, "млн": 1e6, "миллион": 1e6,
    "billion": 1e9, "bln": 1e9, "bn": 1e9, "b": 1e9, "млрд": 1e9, "миллиард": 1e9,
    "thousand": 1e3, "k": 1e3, "тыс": 1e3, "тысяч": 1e3, "мың": 1e3,
    "万": 1e4, "亿": 1e8, "千": 1e3,
}  # fmt: skip
_UNIT_CLASSES = (
    ("pct", ("%", "percent", "per cent", "процент", "пайыз")),
    ("t", ("tonne", "ton", "t", "тонн", "тонна", "т", "吨")),
    ("usd", ("dollar", "usd", "долл", "доллар", "美元", "$", "us$")),
    ("cny", ("yuan", "юан", "元", "¥")),
    ("kzt", ("tenge", "тенге", "теңге", "坚戈")),
    ("eur", ("euro", "евро", "欧元", "€")),
)


def _unit_class(word: str) -> str | None:
    for name, prefixes in _UNIT_CLASSES:
        if any(word == p or (len(p) > 2 and word.startswith(p)) for p in prefixes):
            return name
    return None


def _scale_of(word: str) -> float:
    if not word:
        return 1.0
    for stem, factor in _SCALES.items():
        if word == stem or (len(stem) > 2 and word.startswith(stem)):
            return factor
    return 1.0


def _number(text: str) -> float:
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", text):
        return float(text.replace(",", ""))
    return float(text.replace(",", "."))


def figures(folded: str) -> frozenset[str]:
    """The figures in folded text, normalised across languages: ``t:2e+07`` for "20 million
    tonnes", "2000万吨" and "20 млн тонн"; ``usd:1.1e+08``; ``pct:0.1``.

    Only numbers with a unit, a currency or a scale word count: bare numbers are too often
    years, counts or page furniture to be evidence.
    """
    found: set[str] = set()
    for match in _FIGURE.finditer(folded):
        pre, scale, unit = match["pre"] or "", match["scale"] or "", match["unit"] or ""
        tail = folded[match.end("num") : match.end()]
        unit_name = _unit_class(unit) if unit else None
        if unit_name is None and ("美元" in tail or pre in ("$", "us$", "usd")):
            unit_name = "usd"
        elif unit_name is None and pre:
            unit_name = _unit_class(pre)
        elif unit_name is None and "元" in tail:
            unit_name = "cny"
        if unit_name is None and not scale:
            continue
        value = _number(match["num"]) * _scale_of(scale)
        if unit_name is None and value < 1e5:
            continue  # "3 thousand" alone is not distinctive; "20 million" is
        found.add(_figure_token(unit_name or "n", value))
    for match in _CN_PERCENT.finditer(folded):
        found.add(_figure_token("pct", float(match["num"])))
    return frozenset(found)


def _figure_token(unit: str, value: float) -> str:
    return f"{unit}:{value:.3g}"


_MONTHS: dict[str, int] = {}
for _number_of, _names in enumerate(
    (
        "january jan январ қаңтар",
        "february feb феврал ақпан",
        "march mar март наурыз",
        "april apr апрел сәуір",
        "may ма мамыр",
        "june jun июн маусым",
        "july jul июл шілде",
        "august aug август тамыз",
        "september sept sep сентябр қыркүйек",
        "october oct октябр қазан",
        "november nov ноябр қараша",
        "december dec декабр желтоқсан",
    ),
    start=1,
):
    for _name in _names.split():
        _MONTHS[_name] = _number_of
_MONTH_WORD = r"(?P<month>[a-zа-яёәғқңөұүһі]+)"
_DAY = r"(?P<day>[0-3]?\d)"
_DATE_DAY_FIRST = re.compile(r"(?<!\d)" + _DAY + r"(?:st|nd|rd|th|-?го)?\s" + _MONTH_WORD)
_DATE_MONTH_FIRST = re.compile(
    r"(?<![^\W\d_])(?P<month>[a-z]+)\.?\s" + _DAY + r"(?:st|nd|rd|th)?(?![\d,.]\d)(?!\d)"
)
_DATE_CN = re.compile(r"(?<!\d)(?P<month>1[0-2]|0?[1-9]) ?月 ?(?P<day>[0-3]?\d) ?日")
_RU_MONTH_GENITIVE = re.compile(
    r"(январ|феврал|март|апрел|ма|июн|июл|август|сентябр|октябр|ноябр|декабр)[аяе]?$"
)


def _month(word: str) -> int | None:
    if word in _MONTHS:
        return _MONTHS[word]
    stem = _RU_MONTH_GENITIVE.match(word)
    if stem and (stem.group(1) != "ма" or word in ("мая", "мае")):
        return _MONTHS[stem.group(1)]
    for name, number in _MONTHS.items():
        # Kazakh case endings: наурызда, сәуірде, қазанның
        if len(name) >= 5 and not name.isascii() and word.startswith(name):
            return number
    return None


def dates(folded: str) -> frozenset[str]:
    """Calendar days named in folded text, as ``d:MM-DD`` ("15 марта", "March 15", "3月15日").

    Years are left out: news gives them rarely, and the story window is days long anyway.
    """
    found: set[str] = set()
    for pattern in (_DATE_DAY_FIRST, _DATE_MONTH_FIRST, _DATE_CN):
        for match in pattern.finditer(folded):
            day = int(match["day"])
            raw = match["month"]
            month = int(raw) if raw.isdigit() else _month(raw)
            if month and 1 <= day <= 31:
                found.add(f"d:{month:02d}-{day:02d}")
    return frozenset(found)


# --- features of one item -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Features:
    """What clustering knows about one item: enough to compare it with another, nothing more.

    ``entities`` are lexicon ids, ``figures`` and ``dates`` normalised tokens (see
    ``figures``/``dates``).  ``specific`` marks the entities that are not a mere country or
    commodity; only those, figures and dates are used to look candidates up.
    """

    item_id: str
    lang: str
    signature: tuple[int, ...]
    entities: frozenset[str] = frozenset()
    specific: frozenset[str] = frozenset()
    figures: frozenset[str] = frozenset()
    dates: frozenset[str] = frozenset()
    published: datetime | None = None
    """When the item was published (ingestion sets a missing date to first seen and clamps
    one in the future): every time-based story decision reads this, never the arrival time,
    so items arriving together cluster as they would have one by one."""

    @property
    def evidence(self) -> frozenset[str]:
        """Every evidence token, prefixed by its kind, as the store keeps it."""
        return (
            frozenset(f"e:{e}" for e in self.entities)
            | frozenset(f"f:{f}" for f in self.figures)
            | frozenset(f"{d}" for d in self.dates)
        )

    def index_keys(self) -> tuple[str, ...]:
        """Keys under which this item is found by later items: its LSH bands, its specific
        entities, figures and dates.  Countries and commodities are left out, or every story
        about Kazakhstan would be a candidate for every item about it."""
        keys = list(band_keys(self.signature))
        keys += sorted(f"e:{e}" for e in self.specific)
        keys += sorted(f"f:{f}" for f in self.figures)
        keys += sorted(self.dates)
        return tuple(keys)


class Extractor:
    """Turns items into ``Features`` with one lexicon, compiled once."""

    def __init__(self, lexicon: Lexicon | None = None) -> None:
        self.lexicon = lexicon or Lexicon(DEFAULT_ENTITIES)

    def features(self, item: Item) -> Features:
        folded = fold(f"{item.title}\n{item.summary}").text
        entities = self.lexicon.find(folded)
        return Features(
            item_id=item.id,
            lang=item.lang or "",
            signature=minhash(shingles(folded)),
            entities=entities,
            specific=frozenset(e for e in entities if not self.lexicon.generic(e)),
            figures=figures(folded),
            dates=dates(folded),
            published=item.published,
        )

    def from_evidence(
        self,
        item_id: str,
        lang: str,
        signature: str,
        evidence: Iterable[str],
        published: datetime | None = None,
    ) -> Features:
        """Features rebuilt from what the store keeps (signature text and evidence tokens)."""
        tokens_ = list(evidence)
        entities = frozenset(t[2:] for t in tokens_ if t.startswith("e:"))
        return Features(
            item_id=item_id,
            lang=lang,
            signature=decode_signature(signature),
            entities=entities,
            specific=frozenset(e for e in entities if not self.lexicon.generic(e)),
            figures=frozenset(t[2:] for t in tokens_ if t.startswith("f:")),
            dates=frozenset(t for t in tokens_ if t.startswith("d:")),
            published=published,
        )

    # -- the decision ------------------------------------------------------------------------

    def evidence_score(self, a: Features, b: Features) -> float:
        """How strongly shared evidence says two items report one event.

        A shared figure counts 2, a date 1.5, a deposit or company 1.5, a ministry, agency or
        place 1, and countries and commodities together at most 0.5.  ``EVIDENCE_JOIN`` (3)
        therefore needs two distinctive things: a deposit and a figure, two figures, a
        company and a date; one deposit that two different events share is not enough.
        """
        shared_entities = a.entities & b.entities
        specific = sum(self.lexicon.weight(e) for e in shared_entities & a.specific)
        generic = sum(self.lexicon.weight(e) for e in shared_entities - a.specific)
        return (
            FIGURE_WEIGHT * len(a.figures & b.figures)
            + DATE_WEIGHT * len(a.dates & b.dates)
            + specific
            + min(generic, GENERIC_CAP)
        )

    def same_event(self, a: Features, b: Features) -> float:
        """Pure decision on one pair: a score > 0 when they report the same event, else 0.

        Symmetric.  Text similarity decides for near-duplicates (any language pair, though in
        practice one); evidence decides across languages and for rewrites.  Near-duplicate
        texts whose figures disagree completely are a series, not one event; and two items
        whose figures disagree need a figure's worth more of other evidence, since the
        headline figure is what every outlet repeats ("$1.1 billion" for the investment,
        "45 billion tenge" for the auction of the same deposit).
        """
        text = similarity(a.signature, b.signature)
        conflicting = bool(a.figures and b.figures and not (a.figures & b.figures))
        if text >= (TEXT_JOIN_DESPITE_FIGURES if conflicting else TEXT_JOIN):
            return 10.0 + text
        needed = EVIDENCE_JOIN + (FIGURE_WEIGHT if conflicting else 0.0)
        score = self.evidence_score(a, b)
        if score >= needed:
            return score
        return EVIDENCE_JOIN if not conflicting and self.named_together(a, b) else 0.0

    def named_together(self, a: Features, b: Features) -> bool:
        """Pure: are these two reports in different languages of one event, by the little that
        short cross-language items share?

        A translated headline often keeps only the deposit or the company and the commodity
        ("США и Китай борются за Верхнее Кайракты", "中美竞逐上凯拉克特钨矿"): no figure, no
        date to match.  Published within ``NAMED_TOGETHER`` of each other, naming the same
        deposit, company or ministry (``NAMING_KINDS``) and the same commodity, and naming no
        date the other lacks when both name dates, they are one event.  One language is left
        to text similarity and the full evidence score, since an outlet writing twice about a
        deposit in a day writes about two things.  Events weeks apart (a tender, its award)
        stay apart by the time.
        """
        if not a.lang or not b.lang or a.lang == b.lang:
            return False
        if a.published is None or b.published is None:
            return False
        if abs(a.published - b.published) > NAMED_TOGETHER:
            return False
        if a.dates and b.dates and not a.dates & b.dates:
            return False
        shared = a.entities & b.entities
        kinds = {self._kind(e) for e in shared}
        return "commodity" in kinds and bool(kinds & NAMING_KINDS)

    def _kind(self, entity_id: str) -> str:
        entity = self.lexicon.entities.get(entity_id)
        return entity.kind if entity is not None else ""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A story the store found for an item: its id and the features of the members it keeps
    (each with its publication time)."""

    story_id: str
    members: tuple[Features, ...]
    weak: frozenset[str] = frozenset()
    """Members that joined on a weak link (``STRONG_LINK``): compared, never linked through."""
    apart: frozenset[str] = frozenset()
    """Stories an analyst split from this one: never merged with it again (``plan``)."""


def within_window(a: Features, b: Features, window_seconds: float) -> bool:
    """Pure: were the two items published at most the window apart?  An item without a
    publication time (never from ingestion, which sets one) is not held to the window."""
    if a.published is None or b.published is None:
        return True
    return abs((a.published - b.published).total_seconds()) <= window_seconds


def choose_story(
    extractor: Extractor,
    item: Features,
    candidates: Sequence[Candidate],
    window_seconds: float,
) -> str | None:
    """The story ``item`` joins, or None for a new story (see ``decide``)."""
    return decide(extractor, item, candidates, window_seconds)[0]


@dataclass(frozen=True, slots=True)
class Decision:
    """What one item does to the stories (see ``plan``).

    It joins ``story`` (None: it opens its own) on a link of strength ``score``.  When that
    link is strong or there is none, it also ``absorbs`` the other stories it links strongly
    and ``adopts`` the weak members of other stories it links strongly (story id, member).
    """

    story: str | None
    score: float
    absorbs: tuple[str, ...] = ()
    adopts: tuple[tuple[str, Features], ...] = ()


def decide(
    extractor: Extractor,
    item: Features,
    candidates: Sequence[Candidate],
    window_seconds: float,
) -> tuple[str | None, float]:
    """The story ``item`` joins (None for a new story) and the strength of the link.

    Pure, and free of the clock: the window is measured between publication times, the
    item's and each member's, never on arrival, so a story is the same whether its items
    came one by one as they were published or all at once (a first poll, a catch-up after
    an outage).  Among stories with a member published within the window that reports the
    same event (single linkage: any member will do, since a Russian rewrite resembles the
    Russian reprint more than the English original), the strongest link wins, ties to the
    smaller id for determinism.

    A member that joined on a weak link (below ``STRONG_LINK``) is never linked through:
    single linkage chains, and when items arrive out of order an ambiguous item (an analysis
    naming one event's deposit and another's date) can reach a story first; linking through
    it would then pull its own event's reports into the wrong story.  ``plan`` moves such a
    member to its own event's story once a report of that event links it strongly.
    """
    best: tuple[float, str] | None = None
    for candidate in candidates:
        score = _link(extractor, item, candidate, window_seconds)
        if score <= 0:
            continue
        if best is None or score > best[0] or (score == best[0] and candidate.story_id < best[1]):
            best = (score, candidate.story_id)
    return (best[1], best[0]) if best else (None, 0.0)


def plan(
    extractor: Extractor,
    item: Features,
    candidates: Sequence[Candidate],
    window_seconds: float,
) -> Decision:
    """``decide``, plus the corrections an item that arrived late makes to the stories.

    Greedy clustering depends on arrival order, and a poll, a catch-up or a new outlet hands
    items over in any order.  Two corrections make the stories the same as if every item had
    arrived alone at its publication time:

    * an item that links strongly to two stories bridges reports of one event that arrived
      before the report tying them (a paraphrase published first, its translations later):
      it joins the strongest and ``absorbs`` the others;
    * an item that links strongly to a weak member of another story (an analysis that
      reached the wrong event's story first, being the only story there) ``adopts`` it.

    A weak link makes no correction: it is too little evidence to move other items, and
    none crosses stories an analyst split apart (``Candidate.apart``).
    """
    story, score = decide(extractor, item, candidates, window_seconds)
    if 0 < score < STRONG_LINK:
        return Decision(story, score)
    kept_apart = next((c.apart for c in candidates if c.story_id == story), frozenset())
    others = [
        c
        for c in candidates
        if c.story_id != story and c.story_id not in kept_apart and story not in c.apart
    ]
    absorbs = tuple(
        c.story_id for c in others if _link(extractor, item, c, window_seconds) >= STRONG_LINK
    )
    adopts = tuple(
        (c.story_id, member)
        for c in others
        if c.story_id not in absorbs
        for member in c.members
        if member.item_id in c.weak
        and within_window(item, member, window_seconds)
        and extractor.same_event(item, member) >= STRONG_LINK
    )
    return Decision(story, score, absorbs, adopts)


def _link(
    extractor: Extractor, item: Features, candidate: Candidate, window_seconds: float
) -> float:
    """The strongest link from ``item`` to a member of the story it may link through."""
    return max(
        (
            extractor.same_event(item, m)
            for m in candidate.members
            if m.item_id not in candidate.weak and within_window(item, m, window_seconds)
        ),
        default=0.0,
    )


def rank_candidates(found: Iterable[tuple[str, str]], limit: int = MAX_CANDIDATES) -> list[str]:
    """The stories worth comparing: those found under the most distinct index keys first.

    ``found`` holds (index key, story id) pairs from the lookup.  The story an item belongs
    to shares many keys with it (several LSH bands, or a deposit, a figure and a date); a
    story found under one common key (a busy date) rarely is.  Bounding the comparisons keeps
    the cost per item flat however full the window is.
    """
    keys_per_story: dict[str, set[str]] = {}
    for key, story in found:
        keys_per_story.setdefault(story, set()).add(key)
    ranked = sorted(
        (story for story, keys in keys_per_story.items() if _worth_comparing(keys)),
        key=lambda story: (-len(keys_per_story[story]), story),
    )
    return ranked[:limit]


def _worth_comparing(keys: set[str]) -> bool:
    """A story found under one figure or date alone cannot reach ``EVIDENCE_JOIN`` (one
    shared thing scores at most 2 + 0.5), and without a shared LSH band its text is very
    unlikely to be a near-duplicate; so it is not compared.  In a busy window this drops
    most candidates: everything else naming the same day.  One shared entity is enough to
    compare, since a deposit or a company with the commodity joins a close report in another
    language (``Extractor.named_together``); ranking and ``MAX_CANDIDATES`` bound the cost."""
    return len(keys) >= 2 or any(key.startswith(("b", "e:")) for key in keys)


def story_id_for(first_item_id: str) -> str:
    """A story's id, derived from its first item so two replicas that race to open a story
    for the same item name it the same; short enough to type in ``monitor stories show``."""
    return "s" + hashlib.blake2b(first_item_id.encode(), digest_size=6).hexdigest()


# --- where in time the index keeps an item ---------------------------------------------------

BUCKET_SECONDS = 12 * 3600
"""Index granularity: the index keeps an item's keys in the bucket of its publication time."""


def bucket_of(published: datetime) -> int:
    """Pure: the index bucket of a publication time."""
    return int(published.timestamp() // BUCKET_SECONDS)


def buckets_around(published: datetime, window_seconds: float) -> tuple[int, ...]:
    """Pure: the buckets that may hold items published within the window of ``published``,
    before and after it: an item that arrives late (a catch-up, a slow outlet) must find
    the stories of items published after it as surely as those published before."""
    window = timedelta(seconds=window_seconds)
    return tuple(range(bucket_of(published - window), bucket_of(published + window) + 1))


# --- an in-memory clusterer, for the quality test and the benchmark's baseline ---------------


@dataclass(slots=True)
class MemoryStories:
    """Clustering with every story in memory: the same candidate lookup (index keys in
    publication-time buckets) and the same decision as the Redis store, without the I/O.
    Items may arrive in any order; only their publication times matter."""

    extractor: Extractor
    window_seconds: float = 72 * 3600
    max_members: int = MAX_MEMBERS
    index: dict[tuple[int, str], list[str]] = field(default_factory=dict)
    members: dict[str, list[Features]] = field(default_factory=dict)
    weak: dict[str, set[str]] = field(default_factory=dict)
    assignment: dict[str, str] = field(default_factory=dict)

    def add(self, item: Item) -> str:
        """Assign one item; returns its story id."""
        return self.add_features(self.extractor.features(item))

    def add_features(self, features: Features) -> str:
        if features.item_id in self.assignment:
            return self.assignment[features.item_id]
        keys = features.index_keys()
        assert features.published is not None, "stories need a publication time"
        found = [
            (key, sid)
            for bucket in buckets_around(features.published, self.window_seconds)
            for key in keys
            for sid in self.index.get((bucket, key), ())
        ]
        candidates = [
            Candidate(sid, tuple(self.members[sid]), frozenset(self.weak[sid]))
            for sid in rank_candidates(found)
        ]
        decision = plan(self.extractor, features, candidates, self.window_seconds)
        story = decision.story
        if story is None:
            story = story_id_for(features.item_id)
            self.members[story] = []
            self.weak[story] = set()
        for absorbed in decision.absorbs:
            self._absorb(absorbed, story)
        for source, member in decision.adopts:
            self._adopt(source, member, story)
        self._join(features, story, weak=0 < decision.score < STRONG_LINK)
        return story

    def _join(self, features: Features, story: str, *, weak: bool) -> None:
        if len(self.members[story]) < self.max_members:
            self.members[story].append(features)
            if weak:
                self.weak[story].add(features.item_id)
        assert features.published is not None
        write = bucket_of(features.published)
        for key in features.index_keys():
            listed = self.index.setdefault((write, key), [])
            if story in listed:
                listed.remove(story)
            listed.append(story)
            del listed[:-KEY_STORIES]
        self.assignment[features.item_id] = story

    def _absorb(self, source: str, target: str) -> None:
        """Every member and item of ``source`` moves to ``target``; the index follows."""
        for member in self.members.pop(source):
            if len(self.members[target]) < self.max_members:
                self.members[target].append(member)
        self.weak[target] |= self.weak.pop(source)
        for item_id, story in self.assignment.items():
            if story == source:
                self.assignment[item_id] = target
        for listed in self.index.values():
            if source in listed:
                listed[:] = [s for s in listed if s != source]
                if target not in listed:
                    listed.append(target)

    def _adopt(self, source: str, member: Features, target: str) -> None:
        """A weak member of ``source`` moves to ``target``, where it links strongly."""
        if self.assignment.get(member.item_id) != source:
            return
        self.members[source] = [m for m in self.members[source] if m.item_id != member.item_id]
        self.weak[source].discard(member.item_id)
        self._join(member, target, weak=False)
