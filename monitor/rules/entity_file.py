"""The entity file schema: read ``entities.yaml`` into entities, reporting every problem found.

The entity list (deposits, companies, ministries, places, with their names in every script)
is data analysts extend, so it lives beside the rules and is checked like them: each problem
names the key as written, points at its line and suggests the fix.  A file is an entity file
by its name (``entities.yaml``, or ``<anything>.entities.yaml``), never by its content, so a
rule file cannot be taken for one or the other way round.  Pure: ``load`` reads the files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from monitor.errors import Location, RuleFileError
from monitor.rules.entities import KINDS, Entity
from monitor.rules.schema import did_you_mean, value_kind
from monitor.rules.terms import TermSyntaxError, Word, parse_term
from monitor.yamlsrc import YamlDocument, YamlPath

#: File names that make a YAML file under the rule paths the entity list.
ENTITY_FILE_NAMES = ("entities.yaml", "entities.yml")
ENTITY_FILE_SUFFIXES = (".entities.yaml", ".entities.yml")
FILE_KEYS = ("entities",)
ENTITY_KEYS = ("id", "kind", "english", "aliases", "note")
ENTITY_REQUIRED = ("id", "kind", "english", "aliases")
RULE_FILE_KEYS = ("terms", "rules", "trends")

_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
#: An ISO 639 language code, optionally with an ISO 15924 script: en, ru, kk, zh, kk-latn.
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z]{4})?")


def is_entity_file(path: Path) -> bool:
    """Whether ``path`` names an entity file rather than a rule file (by its name alone)."""
    name = path.name.lower()
    return name in ENTITY_FILE_NAMES or name.endswith(ENTITY_FILE_SUFFIXES)


@dataclass(frozen=True, slots=True)
class AliasDraft:
    """One alias as written, with its place (for duplicate reports) and its parsed words."""

    written: str
    words: tuple[Word, ...]
    location: Location


@dataclass(frozen=True, slots=True)
class EntityDraft:
    """An entity whose own fields are valid; ``location`` points at its ``id`` value."""

    entity: Entity
    location: Location
    aliases: tuple[AliasDraft, ...]


def read_entity_file(doc: YamlDocument) -> tuple[tuple[EntityDraft, ...], list[RuleFileError]]:
    """Validate one loaded entity file; returns the valid entities plus every problem found."""
    reader = _Reader(doc)
    return reader.file(), reader.problems


def link_entities(drafts: Iterable[EntityDraft]) -> tuple[tuple[Entity, ...], list[RuleFileError]]:
    """The entities of every file, with a problem for each id or alias used twice.

    Ids are compared ignoring case; aliases once folded and split into words, as matching
    sees them ("C5+1" and "C5 1" are the same alias).  An alias naming two entities would make
    one text report both, so it is refused wherever the two are defined.
    """
    problems: list[RuleFileError] = []
    ids: dict[str, EntityDraft] = {}
    aliases: dict[tuple[Word, ...], tuple[AliasDraft, str]] = {}
    entities: list[Entity] = []
    for draft in drafts:
        entity = draft.entity
        first = ids.setdefault(entity.id.casefold(), draft)
        if first is not draft:
            problems.append(
                RuleFileError(
                    draft.location,
                    f"duplicate entity id '{entity.id}'",
                    hint=f"it is already defined at {first.location}; ids must be unique "
                    "across all entity files",
                )
            )
            continue
        for alias in draft.aliases:
            seen = aliases.setdefault(alias.words, (alias, entity.id))
            if seen[0] is not alias:
                problems.append(_duplicate_alias(alias, entity.id, *seen))
        entities.append(entity)
    return tuple(entities), problems


def _duplicate_alias(
    alias: AliasDraft, owner: str, first: AliasDraft, first_owner: str
) -> RuleFileError:
    same = "" if alias.written == first.written else f" (the same as '{first.written}' once folded)"
    if owner == first_owner:
        return RuleFileError(
            alias.location,
            f"duplicate alias '{alias.written}' in entity '{owner}'{same}",
            hint=f"it is already listed at {first.location}; remove this one",
        )
    return RuleFileError(
        alias.location,
        f"alias '{alias.written}' of entity '{owner}' already names entity '{first_owner}'{same}",
        hint=f"see {first.location}; an alias may name only one entity: keep it where it "
        "belongs, or make it more specific",
    )


class _Reader:
    """Walks one entity file, collecting drafts and problems located by YAML path."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.problems: list[RuleFileError] = []

    def problem(
        self, path: YamlPath, message: str, hint: str | None = None, *, key: bool = False
    ) -> None:
        self.problems.append(RuleFileError(self.doc.locate(path, key=key), message, hint=hint))

    def file(self) -> tuple[EntityDraft, ...]:
        data = self.doc.data
        if data is None:
            self.problem((), "the entity file is empty", "add 'entities:' with a list of entities")
            return ()
        if not isinstance(data, dict):
            self.problem(
                (), f"an entity file must be a mapping with 'entities:', not {value_kind(data)}"
            )
            return ()
        for key in data:
            if key not in FILE_KEYS:
                self._unknown_top_key(key)
        if "entities" not in data:
            self.problem((), "the entity file has no 'entities:'", "add 'entities:' with a list")
            return ()
        entries = data["entities"]
        if not isinstance(entries, list) or not entries:
            self.problem(
                ("entities",),
                f"'entities' must be a list with at least one entity, not {value_kind(entries)}",
                "write each entity as a '- id: ...' item",
            )
            return ()
        drafts = (self.entity(entry, ("entities", index)) for index, entry in enumerate(entries))
        return tuple(draft for draft in drafts if draft is not None)

    def _unknown_top_key(self, key: str) -> None:
        if key in RULE_FILE_KEYS:
            hint = (
                f"'{key}:' belongs in a rule file; this file is read as the entity list because "
                f"of its name ({', '.join(ENTITY_FILE_NAMES)} or *.entities.yaml)"
            )
        else:
            guess = did_you_mean(key, FILE_KEYS)
            hint = f"did you mean '{guess}'?" if guess else "an entity file holds 'entities:' only"
        self.problem((key,), f"unknown key '{key}' in an entity file", hint, key=True)

    def entity(self, value: object, path: YamlPath) -> EntityDraft | None:
        if not isinstance(value, dict):
            self.problem(
                path,
                f"each entity must be a mapping of 'key: value' lines, not {value_kind(value)}",
                "write '- id: ...' then 'kind:', 'english:' and 'aliases:' lines",
            )
            return None
        before = len(self.problems)
        self._keys(value, path)
        entity_id = self.id(value.get("id"), (*path, "id")) if "id" in value else None
        kind = self.kind(value.get("kind"), (*path, "kind")) if "kind" in value else None
        english = (
            self.text(value.get("english"), (*path, "english"), "'english'")
            if "english" in value
            else None
        )
        if "note" in value:
            self.text(value.get("note"), (*path, "note"), "'note'")
        aliases = (
            self.aliases(value.get("aliases"), (*path, "aliases")) if "aliases" in value else ()
        )
        if len(self.problems) != before or entity_id is None or kind is None or english is None:
            return None
        names = tuple(alias.written for alias in aliases)
        entity = Entity(entity_id, kind, names, english)
        return EntityDraft(entity, self.doc.locate((*path, "id")), aliases)

    def _keys(self, value: dict[str, object], path: YamlPath) -> None:
        for key in value:
            if key not in ENTITY_KEYS:
                guess = did_you_mean(key, ENTITY_KEYS)
                known = f"known keys: {', '.join(ENTITY_KEYS)}"
                hint = f"did you mean '{guess}'?" if guess else known
                self.problem((*path, key), f"unknown key '{key}' in an entity", hint, key=True)
        for key in ENTITY_REQUIRED:
            if key not in value:
                self.problem(path, f"an entity is missing '{key}'", f"add a line '{key}: ...'")

    def text(self, value: object, path: YamlPath, what: str) -> str | None:
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, str) or value is None:
            self.problem(path, f"{what} is empty")
        else:
            self.problem(path, f"{what} must be text, not {value_kind(value)}")
        return None

    def id(self, value: object, path: YamlPath) -> str | None:
        written = self.text(value, path, "'id'")
        if written is None:
            return None
        if not _ID.fullmatch(written):
            self.problem(
                path,
                f"entity id '{written}' is not lower-case letters, digits and hyphens",
                "write it like 'upper-kairakty'; stories store ids, so keep one once used",
            )
            return None
        return written

    def kind(self, value: object, path: YamlPath) -> str | None:
        written = self.text(value, path, "'kind'")
        if written is None:
            return None
        if written not in KINDS:
            guess = did_you_mean(written, KINDS)
            hint = f"did you mean '{guess}'?" if guess else f"kinds: {', '.join(KINDS)}"
            self.problem(path, f"unknown entity kind '{written}'", hint)
            return None
        return written

    def aliases(self, value: object, path: YamlPath) -> tuple[AliasDraft, ...]:
        """Aliases grouped by language: ``{en: [...], ru: [...]}``, each list non-empty."""
        if not isinstance(value, dict) or not value:
            hint = (
                "group them by language: 'aliases: {en: [Boguty], ru: [Богуты]}'"
                if isinstance(value, list) and value
                else "add at least one language with its spellings, as in 'en: [Boguty]'"
            )
            self.problem(
                path,
                f"'aliases' must be a mapping of languages to spellings, not {value_kind(value)}",
                hint,
            )
            return ()
        found: list[AliasDraft] = []
        for language, names in value.items():
            where = (*path, language)
            if not _LANGUAGE.fullmatch(language):
                self.problem(
                    where,
                    f"'{language}' is not a language code",
                    "use a two- or three-letter ISO 639 code (en, ru, kk, zh, uz), optionally "
                    "with a script (kk-latn)",
                    key=True,
                )
            found.extend(self.names(names, where, language))
        return tuple(found)

    def names(self, value: object, path: YamlPath, language: str) -> list[AliasDraft]:
        if isinstance(value, str) and value.strip():
            self.problem(path, f"the '{language}' aliases must be a list", f"write [{value}]")
            return []
        if not isinstance(value, list) or not value:
            self.problem(
                path,
                f"the '{language}' aliases must be a list with at least one spelling, "
                f"not {value_kind(value)}",
                "write [a, b] or '- a' lines, or remove the language",
            )
            return []
        found: list[AliasDraft] = []
        for index, item in enumerate(value):
            alias = self.alias(item, (*path, index), language)
            if alias is not None:
                found.append(alias)
        return found

    def alias(self, value: object, path: YamlPath, language: str) -> AliasDraft | None:
        written = self.text(value, path, f"each '{language}' alias")
        if written is None:
            return None
        try:
            words = parse_term(written)
        except TermSyntaxError as exc:
            self.problem(path, exc.message, exc.hint)
            return None
        return AliasDraft(written, words, self.doc.locate(path))
