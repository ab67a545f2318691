"""The strict YAML loader: hand-written files are read as written, or refused with a location."""

from __future__ import annotations

import pytest

from monitor.yamlsrc import YamlSourceError, load_yaml_bytes, load_yaml_text


def test_plain_scalars_stay_text_so_yaml_11_traps_do_not_fire() -> None:
    doc = load_yaml_text("a: NO\nb: 010\nc: 1e3\nd: yes\ne: 12:30\n", "f.yaml")
    assert doc.data == {"a": "NO", "b": "010", "c": "1e3", "d": "yes", "e": "12:30"}


@pytest.mark.parametrize("text", ["a:\n", "a: ~\n", "a: null\n"])
def test_empty_and_null_become_none(text: str) -> None:
    assert load_yaml_text(text, "f.yaml").data == {"a": None}


def test_quoted_null_stays_text() -> None:
    assert load_yaml_text('a: "null"\n', "f.yaml").data == {"a": "null"}


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("a: 1\nb: 2\na: 3\n", 3, 1, "duplicate key 'a' (first defined on line 1)"),
        ("a: &x [1]\nb: *x\n", 1, 4, "anchors and aliases"),
        ("a: !!python/object:os.system ls\n", 1, 4, "YAML tag"),
        ("base: {x: 1}\nc:\n  <<: {y: 2}\n", 3, 3, "merge keys"),
        ("a: [1, 2\n", 2, 1, "invalid YAML"),
        ("a: 1\n---\nb: 2\n", 3, 1, "more than one YAML document"),
    ],
)
def test_refusals_name_line_and_column(text: str, line: int, column: int, fragment: str) -> None:
    with pytest.raises(YamlSourceError) as caught:
        load_yaml_text(text, "rules/x.yaml")
    assert (caught.value.location.line, caught.value.location.column) == (line, column)
    assert fragment in caught.value.message


def test_non_utf8_bytes_are_refused_at_their_position() -> None:
    raw = "a: ok\nb: Казахстан\n".encode("cp1251")
    with pytest.raises(YamlSourceError) as caught:
        load_yaml_bytes(raw, "rules/x.yaml")
    assert str(caught.value.location) == "rules/x.yaml:2:4"
    assert "not UTF-8" in caught.value.message


def test_utf8_bom_is_accepted() -> None:
    assert load_yaml_bytes("\ufeffa: b\n".encode(), "f.yaml").data == {"a": "b"}


def test_locate_points_at_values_keys_and_nearest_parent() -> None:
    doc = load_yaml_text("feeds:\n  - name: a\n    url: x\n", "c.yaml")
    assert str(doc.locate(("feeds", 0, "url"))) == "c.yaml:3:10"
    assert str(doc.locate(("feeds", 0, "url"), key=True)) == "c.yaml:3:5"
    assert str(doc.locate(("feeds", 0, "missing"))) == "c.yaml:2:5"
