"""Credentials are masked by their shape wherever they hide: URLs, free text, header values;
feed-health alerts name the feed's host, never its URL; refused regexes are quoted clipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.commands import run_monitor

from monitor.ingest.schedule import health_match
from monitor.model import Source
from monitor.redact import REDACTED, clip, mask_headers, mask_text, mask_url, url_host
from monitor.rules.regex import SHOWN_CHARS, Regex
from monitor.rules.terms import TermSyntaxError

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:pw123@localhost:6379/0", "redis://:***@localhost:6379/0"),
        ("redis://default:pw123@h:6379", "redis://default:***@h:6379"),
        (
            "rediss://h:6380/0?password=pw123&ssl_cert_reqs=none",
            "rediss://h:6380/0?password=***&ssl_cert_reqs=none",
        ),
        ("https://u:p4ss@feeds.example.com/a.xml", "https://u:***@feeds.example.com/a.xml"),
        ("https://ghp_tok@github.com/x.atom", "https://***@github.com/x.atom"),
        ("https://f.example/rss?apikey=K&page=2", "https://f.example/rss?apikey=***&page=2"),
        (
            "https://f.example/rss?api_key=K&Api-Key=K",
            "https://f.example/rss?api_key=***&Api-Key=***",
        ),
        (
            "https://f.example/r?token=T&access_token=A&key=K",
            "https://f.example/r?token=***&access_token=***&key=***",
        ),
        (
            "https://b.example/o?X-Amz-Signature=S&sig=S&x=1",
            "https://b.example/o?X-Amz-Signature=***&sig=***&x=1",
        ),
        (
            "https://f.example/cb#access_token=A&state=1",
            "https://f.example/cb#access_token=***&state=1",
        ),
        ("https://hooks.slack.com/services/T0/B0/XyZ", "https://hooks.slack.com/***"),
        ("https://discord.com/api/webhooks/1/abc", "https://discord.com/***"),
        ("http://proxy.corp:3128", "http://proxy.corp:3128"),
        ("http://user:pw@proxy.corp:3128", "http://user:***@proxy.corp:3128"),
        ("https://f.example/rss?page=2", "https://f.example/rss?page=2"),
        ("file:///srv/feeds/a.xml", "file:///srv/feeds/a.xml"),
        ("http://u:pw@h:notaport/x", "http://u:***@h:notaport/x"),
        ("not a url at all", "not a url at all"),
    ],
)
def test_mask_url_hides_credentials_and_keeps_the_rest(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            "Cannot connect to host https://u:pw1@h.example/a?apikey=K1. (refused)",
            "Cannot connect to host https://u:***@h.example/a?apikey=***. (refused)",
        ),
        ("Authorization: Bearer abc.def\nnext line", "Authorization: ***\nnext line"),
        ("{'X-Api-Key': 'k1', 'Accept': '*/*'}", "{'X-Api-Key': '***', 'Accept': '*/*'}"),
        ('{"cookie": "a=b; c=d"}', '{"cookie": "***"}'),
        (
            "Error 111 connecting to redis://:pw@10.0.0.2:6379.",
            "Error 111 connecting to redis://:***@10.0.0.2:6379.",
        ),
        ("HTTP 404 (hint: the feed URL is wrong)", "HTTP 404 (hint: the feed URL is wrong)"),
    ],
)
def test_mask_text_finds_urls_and_auth_headers_in_free_text(text: str, masked: str) -> None:
    assert mask_text(text) == masked


_SECRET = st.text(st.characters(categories=["L", "N"]), min_size=6, max_size=20)


@settings(deadline=None, max_examples=200)
@given(
    secret=_SECRET,
    scheme=st.sampled_from(["redis", "rediss", "http", "https", "socks5"]),
    user=st.sampled_from(["", "default", "reader"]),
    prose=st.text(st.characters(exclude_characters=":/@"), max_size=30),
)
def test_a_password_in_any_url_inside_any_text_never_survives(
    secret: str, scheme: str, user: str, prose: str
) -> None:
    text = f"{prose} {scheme}://{user}:{secret}@host.example:1/p {prose}"
    assert mask_text(text) == f"{prose} {scheme}://{user}:{REDACTED}@host.example:1/p {prose}"


@settings(deadline=None, max_examples=200)
@given(
    secret=_SECRET,
    name=st.sampled_from(["apikey", "api_key", "token", "access_token", "sig", "key"]),
)
def test_a_secret_query_value_never_survives(secret: str, name: str) -> None:
    masked = mask_url(f"https://f.example/rss?page=1&{name}={secret}&x=2")
    assert masked == f"https://f.example/rss?page=1&{name}={REDACTED}&x=2"


@settings(deadline=None)
@given(st.text(max_size=200))
def test_masking_is_idempotent_and_leaves_text_without_credentials_alone(text: str) -> None:
    once = mask_text(text)
    assert mask_text(once) == once
    if "://" not in text and ":" not in text and "=" not in text:
        assert once == text


def test_mask_headers_hides_credential_headers_only() -> None:
    shown = mask_headers({"Authorization": "Basic dTpw", "X-Api-Key": "k", "Accept": "*/*"})
    assert shown == {"Authorization": REDACTED, "X-Api-Key": REDACTED, "Accept": "*/*"}


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://u:p@feeds.example.com/a?apikey=k", "feeds.example.com"),
        ("http://127.0.0.1:8080/x", "127.0.0.1:8080"),
        ("http://[::1]:80/", "[::1]:80"),
        ("file:///srv/a.xml", ""),
    ],
)
def test_url_host_is_host_and_port_only(url: str, host: str) -> None:
    assert url_host(url) == host


def _source(url: str) -> Source:
    return Source(name="paywalled", url=url, interval=timedelta(minutes=10))


def test_feed_health_alert_names_the_feed_and_host_never_the_credentials() -> None:
    url = "https://reader:pw-1234@feeds.example.com/rss?apikey=ak-5678"
    error = f"cannot fetch {url}: Authorization: Bearer tok-9999"
    match = health_match(_source(url), "failing", NOW - timedelta(hours=2), error, NOW)
    shown = f"{match.item.title} {match.item.summary} {match.item.link}"
    assert "paywalled" in match.item.title
    assert "(feeds.example.com)" in match.item.title
    assert match.item.link == "https://feeds.example.com/"
    assert "/rss" not in match.item.title + match.item.link  # the host, not the URL
    for secret in ("pw-1234", "ak-5678", "tok-9999"):
        assert secret not in shown


def test_clip_keeps_short_text_and_says_how_long_a_long_one_was() -> None:
    assert clip("short") == "short"
    clipped = clip("x" * 5000, 200)
    assert clipped == "x" * 200 + "... (5000 chars)"


@pytest.mark.parametrize(
    "pattern",
    [
        "a" * 1_800_000,  # refused by RE2 itself: too large to compile
        "(?:kazakh|" + "|".join(f"w{i}" for i in range(200_000)) + ")",  # too many steps
        "(?=" + "b" * 300 + ")",  # a feature RE2 lacks
    ],
    ids=["huge-literal", "huge-alternation", "lookahead"],
)
def test_a_refused_regex_is_quoted_clipped_with_its_length(pattern: str) -> None:
    with pytest.raises(TermSyntaxError) as refused:
        Regex.parse(pattern)
    message = str(refused.value)
    assert len(message) < SHOWN_CHARS + 300
    assert f"... ({len(pattern)} chars)" in message


def test_rules_lint_prints_a_huge_refused_regex_shortened(tmp_path: Path) -> None:
    """The analyst sees which rule and why, in a few lines, not 1.8 MB of pattern."""
    pattern = "a" * 1_800_000
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        f"rules:\n  - id: huge\n    title: Huge\n    match: {{any: [{{regex: '{pattern}'}}]}}\n",
        encoding="utf-8",
    )
    linted = run_monitor("rules", "lint", str(rules))
    assert linted.returncode != 0
    output = linted.stdout + linted.stderr
    assert "huge" in output or "rules.yaml" in output
    assert "(1800000 chars)" in output
    assert len(output) < 2000
