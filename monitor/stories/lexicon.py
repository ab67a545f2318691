"""Named entities that identify an event across languages: deposits, companies, ministries.

The entity list is data analysts extend without a release: ``rules/entities.yaml``, checked by
``monitor rules lint`` and reloaded with the rules (the running ``RuleSet.lexicon``).  The
model and the compiled matcher live in ``monitor.rules.entities``, beside the term syntax they
compile with; this module keeps the names clustering has always imported, and
``DEFAULT_ENTITIES``: the shipped list, read from that file on first use (never at import).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

from monitor.rules.entities import GENERIC_KINDS, KIND_WEIGHT, KINDS, Entity, Lexicon
from monitor.rules.load import shipped_entities

__all__ = [
    "DEFAULT_ENTITIES",
    "GENERIC_KINDS",
    "KINDS",
    "KIND_WEIGHT",
    "Entity",
    "Lexicon",
    "default_lexicon",
]


class _ShippedEntities(Sequence[Entity]):
    """The entities of the shipped ``rules/entities.yaml``, read when first iterated.

    A sequence rather than a tuple built at import, so importing the stories package reads no
    file; ``shipped_entities`` reads it once and raises ``RuleSetError`` if it is broken.
    """

    @overload
    def __getitem__(self, index: int) -> Entity: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Entity]: ...

    def __getitem__(self, index: int | slice) -> Entity | Sequence[Entity]:
        return shipped_entities()[index]

    def __len__(self) -> int:
        return len(shipped_entities())

    def __iter__(self) -> Iterator[Entity]:
        return iter(shipped_entities())


DEFAULT_ENTITIES: Sequence[Entity] = _ShippedEntities()
"""The shipped entity list (``rules/entities.yaml``); a daemon uses its rule paths' list."""


def default_lexicon() -> Lexicon:
    """The shipped entity list, compiled."""
    return Lexicon(DEFAULT_ENTITIES)
