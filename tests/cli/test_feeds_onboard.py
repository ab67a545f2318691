"""`monitor feeds discover | import | export`: onboarding feeds, against a real local server."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from support.feed_server import FeedServer, rss

from monitor.cli import main
from monitor.cli.feeds import DISCOVER_MAX_BYTES
from monitor.settings import load_settings
from monitor.yamlsrc import load_yaml_text

PAGE = """<!doctype html>
<html><head>
<title>Desk</title>
<base href="/feeds/">
<link rel="alternate" type="application/rss+xml" title="Desk: World" href="world.xml">
<link rel="alternate" type="application/atom+xml" title="Desk: World" href="/feeds/world.atom">
<link rel="alternate" type="application/feed+json" title="Desk JSON"
      href="https://cdn.example/desk.json">
<link rel="alternate" type="text/html" hreflang="fr" href="/fr/">
</head><body>news</body></html>
"""


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# --- discover ------------------------------------------------------------------------------


def test_discover_lists_the_page_feeds_as_config_lines(
    feed_server: FeedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    feed_server.put("/desk/", PAGE, content_type="text/html; charset=utf-8")
    code, out, err = run(["feeds", "discover", feed_server.url("/desk/")], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"# 3 feed(s) advertised by {feed_server.url('/desk/')}"
    assert lines[1].endswith("  # Desk: World (RSS)")
    entries = load_yaml_text("\n".join(lines[1:]), "pasted.yaml").data
    assert entries == [
        {"name": "desk-world", "url": feed_server.url("/feeds/world.xml")},
        {"name": "desk-world-2", "url": feed_server.url("/feeds/world.atom")},
        {"name": "desk-json", "url": "https://cdn.example/desk.json"},
    ]


def test_discover_json(feed_server: FeedServer, capsys: pytest.CaptureFixture[str]) -> None:
    feed_server.put("/desk/", PAGE, content_type="text/html")
    code, out, _ = run(["feeds", "discover", "--json", feed_server.url("/desk/")], capsys)
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows[0] == {
        "name": "desk-world",
        "title": "Desk: World",
        "url": feed_server.url("/feeds/world.xml"),
        "kind": "RSS",
        "is_feed": False,
    }
    assert [row["kind"] for row in rows] == ["RSS", "Atom", "JSON Feed"]


def test_discover_says_when_the_url_is_a_feed(
    feed_server: FeedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    feed_server.put("/wire.xml", rss([{"title": "a", "guid": "1"}], title="Wire"))
    url = feed_server.url("/wire.xml")
    code, out, _ = run(["feeds", "discover", url], capsys)
    assert code == 0
    assert out.splitlines() == [
        f"# {url} is itself a feed (RSS)",
        f'- {{name: wire, url: "{url}"}}  # Wire (RSS)',
    ]


def test_discover_keeps_a_feed_url_as_given_unless_it_moved_for_good(
    feed_server: FeedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    feed_server.put("/new.xml", rss([], title="Moved"))
    feed_server.put("/old.xml", b"", status=301, headers={"Location": "/new.xml"})
    feed_server.put("/temporary.xml", b"", status=302, headers={"Location": "/new.xml"})
    _, moved, _ = run(["feeds", "discover", feed_server.url("/old.xml")], capsys)
    _, redirected, _ = run(["feeds", "discover", feed_server.url("/temporary.xml")], capsys)
    assert feed_server.url("/new.xml") in moved.splitlines()[1]
    assert feed_server.url("/temporary.xml") in redirected.splitlines()[1]


def test_discover_masks_credentials_in_everything_it_prints(
    feed_server: FeedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    feed_server.put("/desk/?apikey=K3Y", PAGE, content_type="text/html")
    base = feed_server.url("/desk/").replace("http://", "http://ann:s3cret@")
    code, out, err = run(["feeds", "discover", base + "?apikey=K3Y"], capsys)
    assert code == 0
    assert "s3cret" not in out + err
    assert "K3Y" not in out + err
    assert "ann:***@" in out
    code, out, err = run(["feeds", "discover", base.replace("/desk/", "/gone?token=T0K")], capsys)
    assert code == 1
    assert "s3cret" not in out + err
    assert "T0K" not in out + err


@pytest.mark.parametrize(
    ("path", "resource", "cause"),
    [
        ("/missing", None, "HTTP 404"),
        ("/plain", {"body": "<html><head></head><body>hi</body></html>"}, "advertises no feed"),
        ("/text", {"body": "hello", "content_type": "text/plain"}, "neither a feed nor a web page"),
        ("/huge", {"body": "<html>" + " " * DISCOVER_MAX_BYTES}, "byte limit"),
    ],
)
def test_discover_failures_are_one_line_naming_url_and_cause(
    feed_server: FeedServer,
    capsys: pytest.CaptureFixture[str],
    path: str,
    resource: dict[str, str] | None,
    cause: str,
) -> None:
    if resource is not None:
        feed_server.put(
            path, resource["body"], content_type=resource.get("content_type", "text/html")
        )
    code, out, err = run(["feeds", "discover", feed_server.url(path)], capsys)
    assert code == 1
    assert out == ""
    assert err.startswith(f"monitor: cannot discover feeds at {feed_server.url(path)}: ")
    assert cause in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("url", "cause"),
    [
        ("file:///etc/passwd", "not an http(s) URL"),
        ("news.example/rss", "not an http(s) URL"),
        ("http://[::1", "not a valid URL"),
        ("http://u:pw@h.example:99999/", "not a valid URL"),
    ],
)
def test_discover_refuses_what_is_not_an_http_url(
    capsys: pytest.CaptureFixture[str], url: str, cause: str
) -> None:
    code, _, err = run(["feeds", "discover", url], capsys)
    assert code == 1
    assert err.endswith(f": {cause}\n")
    assert "pw" not in err


# --- import and export ---------------------------------------------------------------------

OPML = """<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
  <head><title>Reader export</title></head>
  <body>
    <outline text="Central Asia">
      <outline type="rss" text="Tengri News" xmlUrl="https://tengrinews.example/news.rss"/>
      <outline text="Mining">
        <outline type="rss" text="Metals Wire" xmlUrl="https://metals.example/rss?topic=w"/>
      </outline>
    </outline>
    <outline type="rss" text="Private" xmlUrl="https://bob:hunter2@private.example/feed"/>
    <outline type="rss" text="Podcast" xmlUrl="feed://pods.example/x"/>
  </body>
</opml>
"""


def test_import_prints_feeds_the_config_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    opml = tmp_path / "subs.opml"
    opml.write_text(OPML, encoding="utf-8")
    code, out, err = run(["feeds", "import", str(opml)], capsys)
    assert code == 0
    assert "hunter2" not in out + err
    assert "skipped feed://pods.example/x" in err
    assert "credentials in the URLs of private shown as ***" in err
    config = tmp_path / "monitor.yaml"
    config.write_text(out)
    feeds = load_settings(config, env={}).feeds
    assert [(f.name, f.url, f.tags) for f in feeds] == [
        ("tengri-news", "https://tengrinews.example/news.rss", ("central-asia",)),
        ("metals-wire", "https://metals.example/rss?topic=w", ("central-asia", "mining")),
        ("private", "https://bob:***@private.example/feed", ()),
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("<opml>\n<body>\n<outline></body>\n</opml>", "subs.opml:3:12: not well-formed XML"),
        ("<rss version='2.0'/>", "subs.opml: not an OPML document"),
    ],
)
def test_import_names_the_file_and_line_of_broken_opml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    opml = tmp_path / "subs.opml"
    opml.write_text(content)
    code, out, err = run(["feeds", "import", str(opml)], capsys)
    assert (code, out) == (2, "")
    assert err.startswith(f"monitor: {tmp_path / expected}")


def test_import_of_an_opml_without_feeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    opml = tmp_path / "empty.opml"
    opml.write_text('<opml version="2.0"><body><outline text="Folder"/></body></opml>')
    code, out, err = run(["feeds", "import", str(opml)], capsys)
    assert (code, out) == (1, "")
    assert err == f"monitor: {opml}: no outline with an http(s) xmlUrl\n"


def test_import_of_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["feeds", "import", str(tmp_path / "none.opml")], capsys)
    assert code == 2
    assert err.startswith(f"monitor: cannot read {tmp_path / 'none.opml'}: ")


CONFIG = """
feeds:
  - {name: wire, url: "https://ann:s3cret@wire.example/f.xml?apikey=K3Y&lang=en", tags: [kz, en]}
  - name: plain
    url: "https://plain.example/rss"
    auth: {username: bob, password: hunter2}
  - name: section
    url: "https://outlet.example/news/"
    kind: page
    page: {item: "article", title: "h2"}
"""


def test_export_is_opml_without_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(CONFIG)
    code, out, err = run(["feeds", "export", "-c", str(config)], capsys)
    assert code == 0
    for secret in ("s3cret", "K3Y", "hunter2", "ann"):
        assert secret not in out
    assert "left out 'kind: page' sources: section" in err
    assert "credentials in the URLs of wire removed from the export" in err
    root = ET.fromstring(out)  # noqa: S314 - the command's own output
    assert [(o.get("text"), o.get("xmlUrl"), o.get("category")) for o in root.iter("outline")] == [
        ("wire", "https://wire.example/f.xml?lang=en", "kz,en"),
        ("plain", "https://plain.example/rss", None),
    ]


def test_export_then_import_gives_back_names_urls_and_tags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(
        "feeds:\n"
        "  - {name: gnews-kz, url: 'https://news.example/rss?q=tungsten&hl=en', tags: [kz, en]}\n"
        "  - {name: tengrinews, url: 'https://tengrinews.example/news.rss', tags: [kz, ru]}\n"
        "  - {name: loose, url: 'https://loose.example/f'}\n"
    )
    code, exported, _ = run(["feeds", "export", "-c", str(config)], capsys)
    assert code == 0
    opml = tmp_path / "feeds.opml"
    opml.write_text(exported)
    code, out, _ = run(["feeds", "import", str(opml)], capsys)
    assert code == 0
    again = tmp_path / "again.yaml"
    again.write_text(out)
    original = load_settings(config, env={}).feeds
    imported = load_settings(again, env={}).feeds
    assert [(f.name, f.url, f.tags) for f in imported] == [
        (f.name, f.url, f.tags) for f in original
    ]
