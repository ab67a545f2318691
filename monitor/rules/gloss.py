"""The English gloss of a foreign-language match: what matched and what it names, in English.

An English-reading desk cannot triage a Chinese or Russian alert from its headline, and a
translation service may be down or not configured at all.  The gloss needs neither: it is
built offline from the match's hits and the entity list (``rules/entities.yaml``), e.g.
"Kazakhstan · tungsten · Upper Kairakty · deal words", so the analyst always sees why the
alert fired.

How a hit becomes English, first rule that applies:

1. its matched text names an entity: the entity's ``english`` name ("Казахстана" ->
   "Kazakhstan", "上凯拉克特" -> "Upper Kairakty");
2. its term is written in Latin letters: the term as written, without ``@set:`` and the
   ``*`` of a prefix ("KZ", "Kazakh");
3. it came from a term set: the set's name, its hyphens as spaces ("тендер" from
   ``@deal-words`` -> "deal words").  Set names are the analysts' own English label for a
   group of spellings of one idea, which is the "English sibling" of every term in the set
   (the set's first Latin term is not: ``@kz-regions`` lists Karaganda and Almaty alike);
4. otherwise (a non-Latin term or a regex written in a rule itself) it is left out: there
   is no English for it that a machine can vouch for.

The gloss lists the hits' names in reading order, then every other entity the item names
(title, summary, image text) in the entity list's order, then the set labels of hits that
had no name; deduplicated ignoring case.  Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import replace

from monitor.model import Item, Match, TermHit
from monitor.rules.entities import Lexicon
from monitor.rules.text import fold

SEPARATOR = " · "
"""Between two names of a gloss (a middle dot reads as a list in every medium)."""
GLOSS_NAMES = 12
"""Most names a gloss lists: enough for why an alert fired, short enough for one line."""

_SET_LABEL = re.compile(r"^@(?P<set>[^:]+):(?P<rest>.*)$", re.DOTALL)


def is_english(lang: str | None) -> bool:
    """Whether a language tag says English (``en``, ``en-GB``, ``EN_us``)."""
    return re.split(r"[-_]", (lang or "").strip().lower(), maxsplit=1)[0] == "en"


def is_foreign(item: Item) -> bool:
    """Whether an English-reading desk needs English beside this item.

    A feed that states its language decides; an item of unknown language is foreign when
    most letters of its title (else its summary) are not Latin, so an unlabelled Russian
    feed still gets its gloss and an unlabelled English one does not.
    """
    if item.lang and item.lang.strip():
        return not is_english(item.lang)
    letters = [char for char in item.title or item.summary if char.isalpha()]
    if not letters:
        return False
    latin = sum(1 for char in letters if _is_latin_letter(char))
    return latin * 2 < len(letters)


def _is_latin_letter(char: str) -> bool:
    return unicodedata.name(char, "").startswith("LATIN")


def is_latin(text: str) -> bool:
    """Whether ``text`` has letters and every one of them is Latin."""
    letters = [char for char in text if char.isalpha()]
    return bool(letters) and all(_is_latin_letter(char) for char in letters)


def _split_label(term: str) -> tuple[str | None, str]:
    """A hit's term label as (set name or None, the term or ``/regex/`` as written)."""
    found = _SET_LABEL.match(term)
    if found is None:
        return None, term
    return found.group("set"), found.group("rest")


def _set_english(name: str) -> str:
    return re.sub(r"[-_]+", " ", name).strip()


def hit_names(hit: TermHit, lexicon: Lexicon) -> tuple[str, ...]:
    """The English names of one hit: its entities', else its Latin term (rules 1 and 2 of
    the module docstring); () when it has neither."""
    named = lexicon.find_in(hit.text)
    if named:
        return tuple(lexicon.english(entity) for entity in lexicon.entities if entity in named)
    _set_name, written = _split_label(hit.term)
    if len(written) >= 2 and written.startswith("/") and written.endswith("/"):
        return ()  # a regex is a pattern, not a word a reader knows
    plain = " ".join(written.replace("*", " ").split())
    return (plain,) if is_latin(plain) else ()


def hit_category(hit: TermHit) -> str:
    """The English label of the term set a hit came from (rule 3), "" for a rule's own term."""
    set_name, _written = _split_label(hit.term)
    return _set_english(set_name) if set_name else ""


def item_entities(item: Item, lexicon: Lexicon) -> tuple[str, ...]:
    """The ids of the entities the item names, in the entity list's order."""
    text = "\n".join(part for part in (item.title, item.summary, item.alt) if part)
    if not text:
        return ()
    found = lexicon.find(fold(text).text)
    return tuple(entity for entity in lexicon.entities if entity in found)


def distinct(names: Iterable[str], limit: int = GLOSS_NAMES) -> tuple[str, ...]:
    """Names without repeats (ignoring case) or blanks, first spelling kept, at most ``limit``."""
    seen: dict[str, str] = {}
    for name in names:
        cleaned = " ".join(name.split())
        key = cleaned.casefold()
        if cleaned and key not in seen:
            seen[key] = cleaned
            if len(seen) >= limit:
                break
    return tuple(seen.values())


def gloss(hits: Sequence[TermHit], item: Item, lexicon: Lexicon) -> str:
    """The gloss line of a match of ``item`` with ``hits``; "" for an English item, and for
    a foreign one when nothing in it has an English name.

    Names come first (the hits' in reading order, then the item's other entities), the
    labels of term sets whose hits have no name of their own last: "Upper Kairakty" says
    more than "kz tungsten deposits".
    """
    if not is_foreign(item):
        return ""
    return _gloss_line(hits, _entity_names(item, lexicon), lexicon)


def _entity_names(item: Item, lexicon: Lexicon) -> list[str]:
    return [lexicon.english(entity) for entity in item_entities(item, lexicon)]


def _gloss_line(hits: Sequence[TermHit], entity_names: list[str], lexicon: Lexicon) -> str:
    names: list[str] = []
    labels: list[str] = []
    for hit in hits:
        found = hit_names(hit, lexicon)
        if found:
            names += found
        else:
            labels.append(hit_category(hit))
    return SEPARATOR.join(distinct([*names, *entity_names, *labels]))


def glossed(matches: Sequence[Match], lexicon: Lexicon) -> list[Match]:
    """``matches`` with their gloss set (unchanged when they have none).  What depends on
    the item alone (is it foreign, which entities it names: a fold of its whole text) is
    found once per item, not once per match: a Chinese item can match six rules."""
    done: list[Match] = []
    per_item: dict[int, tuple[Item, list[str] | None]] = {}
    for match in matches:
        known = per_item.get(id(match.item))
        if known is None or known[0] is not match.item:
            names = _entity_names(match.item, lexicon) if is_foreign(match.item) else None
            known = per_item[id(match.item)] = (match.item, names)
        line = "" if known[1] is None else _gloss_line(match.hits, known[1], lexicon)
        done.append(replace(match, gloss=line) if line else match)
    return done
