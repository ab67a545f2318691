"""Load YAML written by people: safely, strictly, and remembering where every value came from.

Config and rule files are edited by hand, so the loader refuses what PyYAML would silently
accept: duplicate keys (PyYAML keeps the last), anchors and aliases (the classic expansion
bomb), explicit tags (``!!python/...``) and bytes that are not UTF-8.  It also refuses to guess
types: every plain scalar stays a string except ``null``/``~``/empty, so ``NO`` is not ``False``,
``010`` is not ``8`` and ``1e3`` is not a float.  The schema (pydantic) decides what a value
means, and because each value's position is kept, schema errors point at ``path:line:col``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from monitor.errors import Location

YamlPath = tuple[str | int, ...]

_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_STANDARD_TAGS = frozenset(
    {
        "tag:yaml.org,2002:str",
        "tag:yaml.org,2002:map",
        "tag:yaml.org,2002:seq",
        "tag:yaml.org,2002:null",
        "tag:yaml.org,2002:bool",
        "tag:yaml.org,2002:int",
        "tag:yaml.org,2002:float",
        "tag:yaml.org,2002:timestamp",
        "tag:yaml.org,2002:merge",
    }
)


class YamlSourceError(Exception):
    """The file is not YAML we accept; carries the location of the problem."""

    def __init__(self, location: Location, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.location = location
        self.message = message
        self.hint = hint


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """A loaded YAML document: plain Python data plus the position of every value and key."""

    path: str
    data: Any
    value_marks: Mapping[YamlPath, tuple[int, int]] = field(default_factory=dict)
    key_marks: Mapping[YamlPath, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: Sequence[str | int], *, key: bool = False) -> Location:
        """The closest known position for ``path``: the key itself if asked and known, else the
        value, else the nearest enclosing value."""
        probe = tuple(path)
        if key and probe in self.key_marks:
            line, column = self.key_marks[probe]
            return Location(self.path, line, column)
        while True:
            if probe in self.value_marks:
                line, column = self.value_marks[probe]
                return Location(self.path, line, column)
            if probe in self.key_marks:
                line, column = self.key_marks[probe]
                return Location(self.path, line, column)
            if not probe:
                return Location(self.path, 1, 1)
            probe = probe[:-1]


def load_yaml_file(path: Path | str) -> YamlDocument:
    """Read and load one YAML file; raise ``YamlSourceError`` with its location on any problem."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise YamlSourceError(Location(name), f"cannot read file: {exc.strerror}") from None
    return load_yaml_bytes(raw, name)


def load_yaml_bytes(raw: bytes, name: str) -> YamlDocument:
    """Load YAML from bytes that must be UTF-8; ``name`` is used in error locations."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YamlSourceError(
            Location(name, line, column),
            f"file is not UTF-8 (byte 0x{raw[exc.start]:02x})",
            hint="save the file as UTF-8",
        ) from None
    return load_yaml_text(text.removeprefix("\ufeff"), name)


def load_yaml_text(text: str, name: str) -> YamlDocument:
    """Load YAML text; ``name`` is used in error locations."""
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlSourceError(Location(name, line, column), f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise YamlSourceError(Location(name, 1, 1), f"invalid YAML: {exc}") from None
    if len(nodes) > 1:
        mark = nodes[1].start_mark
        raise YamlSourceError(
            Location(name, mark.line + 1, mark.column + 1),
            "the file holds more than one YAML document",
            hint="remove the '---' separator or split the file",
        )
    builder = _Builder(name)
    data = builder.build(nodes[0], ()) if nodes else None
    return YamlDocument(name, data, builder.value_marks, builder.key_marks)


class _Builder:
    """Turns composed nodes into Python data, recording marks and refusing what we do not allow."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.value_marks: dict[YamlPath, tuple[int, int]] = {}
        self.key_marks: dict[YamlPath, tuple[int, int]] = {}
        self._seen: set[int] = set()

    def _location(self, node: yaml.Node) -> Location:
        return Location(self.name, node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, node: yaml.Node, path: YamlPath) -> Any:
        if id(node) in self._seen:
            raise YamlSourceError(
                self._location(node),
                "anchors and aliases (&name / *name) are not allowed",
                hint="write the value out again where it is needed",
            )
        self._seen.add(id(node))
        self.value_marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if node.tag not in _STANDARD_TAGS:
            raise YamlSourceError(
                self._location(node),
                f"YAML tag {node.tag!r} is not allowed",
                hint="remove the '!' tag; values are plain text, lists and mappings",
            )
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, (*path, index)) for index, child in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        if node.style is None and node.value in _NULLS:
            return None
        return node.value

    def _mapping(self, node: yaml.MappingNode, path: YamlPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlSourceError(
                    self._location(key_node),
                    "merge keys ('<<') are not allowed",
                    hint="write the keys out in this mapping",
                )
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlSourceError(self._location(key_node), "mapping keys must be plain text")
            key = key_node.value
            if key in result:
                first = self.key_marks[(*path, key)]
                raise YamlSourceError(
                    self._location(key_node),
                    f"duplicate key {key!r} (first defined on line {first[0]})",
                    hint="YAML keeps only one of them; remove or rename one",
                )
            self.key_marks[(*path, key)] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
            result[key] = self.build(value_node, (*path, key))
        return result
