"""A box for a secret string whose str and repr never show it."""

from __future__ import annotations


class Secret:
    """Holds a credential so that printing, logging or repr-ing its owner cannot leak it.

    Only ``reveal()`` gives the value back, and it is called right where the value is used.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__
