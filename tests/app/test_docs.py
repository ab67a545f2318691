"""The docs name only code that exists, the README stays a ten-minute read, its configs load.

Docs drift from code silently: a module moves and the page that named it keeps the old path
(the README named `pipeline.py` and `store.py` long after they had moved).  These tests turn
that drift into a failure in the commit that moves the module.  Broken links between pages are
the docs build's job (`make docs`, strict); this covers what a link checker cannot see.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"
README_MAX_LINES = 150

#: A repository path under the code folders, as the docs write one: `monitor/ingest/poll.py`,
#: `tests/app/`, `bench/bench_match.py`.  It must start a word (so `monitor-news/monitor` in a
#: URL is not one) and end on a letter, digit or slash (so a sentence's full stop is not part
#: of it).  Placeholders and globs end the path at the `<`, `{` or `*`.
PATH_RE = re.compile(r"(?<![\w./-])((?:monitor|tests|bench)/(?:[\w./-]*[\w/])?)")

#: A module named by its file name alone, as the docs do within a stage's page: `poll.py`.
BARE_MODULE_RE = re.compile(r"(?<![\w./-])(\w+\.py)\b")

#: Markdown links in the README: [text](target).
LINK_RE = re.compile(r"\]\(([^)\s]+)\)")


def named_paths(text: str) -> list[tuple[int, str]]:
    """Every code path ``text`` names, with its line number, in order."""
    return [
        (number, found.group(1))
        for number, line in enumerate(text.splitlines(), start=1)
        for found in PATH_RE.finditer(line)
    ]


def missing_paths(text: str, root: Path) -> list[str]:
    """``line: path`` for each path ``text`` names that does not exist under ``root``."""
    return [f"{number}: {path}" for number, path in named_paths(text) if not (root / path).exists()]


def unknown_modules(text: str, known: set[str]) -> list[str]:
    """Each bare ``name.py`` in ``text`` that is no file name in ``known``, once, in order."""
    names = dict.fromkeys(found.group(1) for found in BARE_MODULE_RE.finditer(text))
    return [name for name in names if name not in known]


def code_file_names() -> set[str]:
    return {
        path.name
        for folder in ("monitor", "tests", "bench")
        for path in (REPO / folder).rglob("*.py")
    }


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see `monitor/ingest/poll.py`.", ["monitor/ingest/poll.py"]),
        ("in tests/app/test_e2e.py, and", ["tests/app/test_e2e.py"]),
        ("the folder `monitor/deliver/render/`", ["monitor/deliver/render/"]),
        ("bench/bench_match.py --kinds news", ["bench/bench_match.py"]),
        ("ls monitor/ shows", ["monitor/"]),
        ("monitor/{version} (+https://github.com/monitor-news/monitor)", ["monitor/"]),
        ("`P:monitor:matches` and the monitor command", []),
        ("../monitor/x.py or deploy/monitor.yaml", []),
        ("a, monitor/a.py; tests/b.py", ["monitor/a.py", "tests/b.py"]),
    ],
)
def test_named_paths_finds_code_paths_in_prose(text: str, expected: list[str]) -> None:
    """The extractor takes paths out of Markdown prose, code spans and URLs without their
    punctuation, and leaves alone what only looks like a path."""
    assert [path for _, path in named_paths(text)] == expected


def test_missing_paths_reports_a_module_that_moved() -> None:
    """A page that still names a module's old path fails, with the line it is on."""
    text = "intro\nthe poll is in `monitor/pipeline.py`, the state in monitor/ingest/state.py\n"
    assert missing_paths(text, REPO) == ["2: monitor/pipeline.py"]


@settings(deadline=None, max_examples=50)
@given(
    path=st.sampled_from(sorted(str(p.relative_to(REPO)) for p in REPO.glob("monitor/**/*.py"))),
    before=st.sampled_from([" ", "`", "(", "[", "\n", "| "]),
    after=st.sampled_from([" ", "`", ")", ".", ",", ";", ":", "\n", " |"]),
)
def test_named_paths_finds_every_module_whatever_surrounds_it(
    path: str, before: str, after: str
) -> None:
    """Any real module path, wrapped in the punctuation Markdown puts around it, is found
    whole, so a page cannot hide a stale path behind a backtick or a full stop."""
    assert [found for _, found in named_paths(f"word{before}{path}{after} word")] == [path]


@pytest.mark.parametrize("doc", doc_files(), ids=lambda doc: str(doc.relative_to(REPO)))
def test_every_code_path_named_in_the_docs_exists(doc: Path) -> None:
    """Each `monitor/`, `tests/` and `bench/` path in the README and in docs/ is there today."""
    assert missing_paths(doc.read_text(encoding="utf-8"), REPO) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("`poll.py` and `state.py`", []),
        ("the old `pipeline.py`, `store.py` and `feedpolicy.py`", ["pipeline.py", "feedpolicy.py"]),
        ("monitor/ingest/poll.py and pipeline.py, pipeline.py again", ["pipeline.py"]),
        ("monitor.cli:main and prepare_feed", []),
    ],
)
def test_unknown_modules_reports_file_names_no_module_has(text: str, expected: list[str]) -> None:
    """A bare file name the code no longer has is reported once; a full path is left to the
    path check, and dotted names are not file names."""
    assert unknown_modules(text, code_file_names()) == expected


@pytest.mark.parametrize("doc", doc_files(), ids=lambda doc: str(doc.relative_to(REPO)))
def test_every_module_file_name_in_the_docs_exists(doc: Path) -> None:
    """Each bare `name.py` in the README and docs/ is the name of a file under monitor/, tests/
    or bench/ today: the old README's `pipeline.py` and `feedpolicy.py` would fail here."""
    assert unknown_modules(doc.read_text(encoding="utf-8"), code_file_names()) == []


def test_the_docs_name_code_paths_at_all() -> None:
    """The path check has something to check: the architecture page names the modules."""
    named = {path for _, path in named_paths((DOCS / "architecture.md").read_text("utf-8"))}
    assert {"monitor/redisio.py", "monitor/deliver/worker.py", "monitor/ingest/poll.py"} <= named


def test_readme_is_a_ten_minute_read() -> None:
    """The README stays within 150 lines; everything else belongs in docs/."""
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES


def test_readme_links_point_at_files_that_exist() -> None:
    """The README is not built by the docs tool, so its relative links are checked here."""
    targets = LINK_RE.findall(README.read_text(encoding="utf-8"))
    local = [t.split("#")[0] for t in targets if "://" not in t and not t.startswith("#")]
    assert local, "the README links to the docs"
    assert [t for t in local if not (REPO / t).exists()] == []


def yaml_block_after(text: str, heading: str) -> str:
    """The first ```yaml block after ``heading`` (the heading must be there)."""
    assert heading in text
    found = re.search(r"```yaml\n(.*?)```", text.split(heading, 1)[1], re.DOTALL)
    assert found is not None
    return found.group(1)


def test_readme_five_line_config_loads(tmp_path: Path) -> None:
    """The README's config has five lines and the daemon's own loader accepts it as written,
    with no secret set."""
    block = yaml_block_after(README.read_text(encoding="utf-8"), "## A five-line config")
    assert len(block.splitlines()) == 5
    config = tmp_path / "monitor.yaml"
    config.write_text(block, encoding="utf-8")
    loaded = load_settings(config, env={})
    assert [feed.name for feed in loaded.feeds] == ["tengrinews"]


def test_configuration_reference_loads(tmp_path: Path) -> None:
    """Every key the configuration reference shows is one the loader knows (unknown keys are
    errors), with each ${VAR} it uses set."""
    block = yaml_block_after((DOCS / "configuration.md").read_text("utf-8"), "# Configuration")
    config = tmp_path / "monitor.yaml"
    config.write_text(block, encoding="utf-8")
    env = dict.fromkeys(re.findall(r"\$\{(\w+)\}", block), "https://example.invalid/secret")
    loaded = load_settings(config, env=env)
    assert loaded.stories.enabled
    assert len(loaded.feeds) == 2
