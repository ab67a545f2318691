"""The `monitor` command's surface: help, version, rule lint and the analyst's dry run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from monitor import __version__
from monitor.cli import main

REPO = Path(__file__).resolve().parents[2]
OFFLINE_FEEDS = REPO / "examples" / "offline" / "feeds"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["run"],
        ["rules"],
        ["rules", "lint"],
        ["rules", "match"],
        ["rules", "test"],
        ["rules", "backtest"],
        ["feeds"],
        ["feeds", "status"],
        ["status"],
        ["alerts"],
        ["silence"],
        ["health"],
    ],
)
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    assert "usage: monitor" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"monitor {__version__}"


def test_shipped_rules_lint_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "lint", str(REPO / "rules")]) == 0
    assert capsys.readouterr().out == ""


def test_a_broken_rule_copy_fails_with_path_line_col(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "rules"
    shutil.copytree(REPO / "rules", copy)
    victim = sorted(path for path in copy.glob("*.yaml") if path.name != "entities.yaml")[0]
    lines = victim.read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if line.strip().startswith("severity:"))
    lines[index] = lines[index].replace("severity:", "severty:")
    victim.write_text("\n".join(lines) + "\n", encoding="utf-8")

    assert main(["rules", "lint", str(copy)]) == 1
    out = capsys.readouterr().out
    column = lines[index].index("severty") + 1
    assert f"{victim}:{index + 1}:{column}: " in out
    assert "severty" in out


def test_lint_of_a_missing_path_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "lint", "no/such/dir"]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_dry_run_over_a_feed_file_prints_json_matches(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["rules", "match", "--rules", str(REPO / "rules"), str(OFFLINE_FEEDS / "zh.xml")])
    assert code == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records, "the Chinese sample feed holds matching items"
    for record in records:
        assert set(record) >= {"rule", "item", "title", "link", "terms", "hits"}
        assert record["terms"]
    assert any("稀土" in r["title"] for r in records)


def test_dry_run_over_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "rules:\n  - id: w\n    title: W\n    severity: low\n    match: {any: [tungsten]}\n",
        encoding="utf-8",
    )
    items = tmp_path / "items.jsonl"
    lines = [
        {
            "id": "a",
            "title": "Tungsten prices",
            "summary": "",
            "link": "https://x.example/a",
            "published": "2026-11-22T06:00:00Z",
            "lang": "en",
            "source": "desk",
        },
        {"id": "b", "title": "Wheat", "summary": "", "link": "", "published": "2026-11-22"},
    ]
    items.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n", encoding="utf-8")
    assert main(["rules", "match", "--rules", str(rules), str(items)]) == 0
    (record,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (record["rule"], record["item"], record["source"]) == ("w", "a", "desk")
    assert record["hits"][0] == {
        "term": "tungsten",
        "field": "title",
        "start": 0,
        "end": 8,
        "text": "Tungsten",
    }


def test_dry_run_reports_unreadable_input_and_carries_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "title": "t", "published": "2026-11-22"}\nnot json\n')
    page = tmp_path / "page.html"
    page.write_text("<!DOCTYPE html><html><body>hi</body></html>")
    code = main(["rules", "match", "--rules", str(REPO / "rules"), str(bad), str(page)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{bad}: line 2: not an item" in err
    assert f"{page}: the URL returned an HTML page" in err


def test_health_probe_fails_when_nothing_listens(capsys: pytest.CaptureFixture[str]) -> None:
    from monitor.app.embedded_redis import free_port

    url = f"http://127.0.0.1:{free_port()}/healthz"
    assert main(["health", "--url", url, "--timeout", "1"]) == 1
    assert "unhealthy" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_uses_the_config_and_arguments_given() -> None:
    result = subprocess.run(
        ["make", "-n", "run", "CONFIG=examples/offline/monitor.yaml", "ARGS=--once"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert re.search(r"monitor run -c examples/offline/monitor.yaml --once", result.stdout)


def test_a_reader_that_stops_early_gets_no_traceback() -> None:
    """`monitor rules match --explain ... | head -1`: the command ends quietly when its
    reader closes the pipe, instead of printing a BrokenPipeError traceback."""
    command = [
        sys.executable, "-m", "monitor", "rules", "match", "--explain",
        "--rules", str(REPO / "rules"), str(OFFLINE_FEEDS / "en.xml"),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    process.stdout.readline()
    process.stdout.close()  # as head does after its first line
    _, stderr = process.communicate(timeout=60)
    assert "Traceback" not in stderr
    assert "BrokenPipeError" not in stderr
