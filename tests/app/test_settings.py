"""The config file: defaults, interpolation, and errors that say where and what to fix."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from monitor.errors import ConfigError
from monitor.settings import (
    StoriesSettings,
    find_config_path,
    interpolate_env,
    load_settings,
    parse_duration,
)

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """\
redis: {url: "redis://127.0.0.1:6399/0"}
feeds:
  - {name: a, url: "https://example.org/a.xml", interval: 15m, tags: [kz]}
rules: {paths: [rules/]}
channels:
  console: {}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), env=env or {})
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("10m", timedelta(minutes=10)),
        ("1.5h", timedelta(minutes=90)),
        ("30d", timedelta(days=30)),
        ("45", timedelta(seconds=45)),
        ("250ms", timedelta(milliseconds=250)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "ten minutes", "10 minutes", "-5m", "5y"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_minimal_config_loads_with_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), env={})
    (source,) = settings.sources()
    assert source.interval == timedelta(minutes=15)
    assert source.tags == ("kz",)
    assert settings.rule_paths() == ((tmp_path / "rules").resolve(),)
    assert settings.effective_routes() == (("console",),)
    assert settings.dedup.ttl == timedelta(days=30)


def test_unknown_key_points_at_the_key_with_a_suggestion(tmp_path: Path) -> None:
    text = MINIMAL.replace("interval: 15m", "intervall: 15m")
    assert load_error(tmp_path, text) == (
        f"{tmp_path / 'monitor.yaml'}:3:49: "
        "unknown key 'intervall' (hint: did you mean 'interval'?)"
    )


def test_unknown_top_level_key(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL + "chanels: {}\n")
    assert ":7:1: unknown key 'chanels'" in message
    assert "did you mean 'channels'?" in message


def test_bad_value_names_the_setting_and_line(tmp_path: Path) -> None:
    text = MINIMAL + "  email: {host: smtp.example.org, port: many, from: a@b, to: [c@d]}\n"
    message = load_error(tmp_path, text)
    assert ":7:" in message
    assert "channels.email.port" in message


def test_missing_environment_variable_is_an_error_with_its_line(tmp_path: Path) -> None:
    text = MINIMAL + '  slack: {webhook_url: "${SLACK_WEBHOOK_URL}"}\n'
    message = load_error(tmp_path, text)
    assert ":7:24: environment variable SLACK_WEBHOOK_URL is not set" in message


def test_environment_interpolation_fills_secrets(tmp_path: Path) -> None:
    text = MINIMAL + '  slack: {webhook_url: "${SLACK_WEBHOOK_URL}"}\n'
    secret = "https://hooks.slack.com/services/T1/B2/abcdef"
    settings = load_settings(write(tmp_path, text), env={"SLACK_WEBHOOK_URL": secret})
    assert settings.channels.slack is not None
    assert settings.channels.slack.webhook_url.get_secret_value() == secret
    assert secret not in repr(settings)
    assert settings.secrets() == (secret,)


@pytest.mark.parametrize(
    ("template", "env", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("${A:-fallback}", {}, "fallback"),
        ("${A:-}", {}, ""),
        ("pre-${A}-post", {"A": "x"}, "pre-x-post"),
        ("cost $$5", {}, "cost $5"),
    ],
)
def test_interpolation_forms(template: str, env: dict[str, str], expected: str) -> None:
    assert interpolate_env(template, env) == expected


def test_empty_secret_switches_a_channel_off(tmp_path: Path) -> None:
    text = MINIMAL + '  slack: {webhook_url: "${SLACK_WEBHOOK_URL:-}"}\nroutes:\n'
    text += "  - {channels: [slack, console]}\n"
    settings = load_settings(write(tmp_path, text), env={})
    assert settings.channels.active_names() == ("console",)
    assert settings.effective_routes() == (("console",),)


def test_route_without_an_active_channel_is_refused(tmp_path: Path) -> None:
    text = MINIMAL + '  slack: {webhook_url: "${SLACK_WEBHOOK_URL:-}"}\nroutes:\n'
    text += "  - {channels: [slack]}\n"
    assert "route 1 has no active channel" in load_error(tmp_path, text)


def test_route_to_an_unconfigured_channel_is_refused(tmp_path: Path) -> None:
    text = MINIMAL + "routes:\n  - {channels: [email]}\n"
    assert "not configured under 'channels'" in load_error(tmp_path, text)


def test_duplicate_feed_names_are_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace("rules:", '  - {name: a, url: "https://example.org/b.xml"}\nrules:')
    assert "feed names must be unique; repeated: a" in load_error(tmp_path, text)


def test_relative_file_feed_urls_resolve_against_the_config(tmp_path: Path) -> None:
    text = MINIMAL.replace("https://example.org/a.xml", "file:feeds/a.xml")
    (source,) = load_settings(write(tmp_path, text), env={}).sources()
    assert source.url == (tmp_path / "feeds" / "a.xml").resolve().as_uri()


def test_missing_file_hints_at_the_ways_to_name_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "absent.yaml", env={})
    assert "cannot read file" in str(caught.value)
    assert "MONITOR_CONFIG" in str(caught.value)


def test_config_path_precedence() -> None:
    assert find_config_path("x.yaml", {"MONITOR_CONFIG": "y.yaml"}) == Path("x.yaml")
    assert find_config_path(None, {"MONITOR_CONFIG": "y.yaml"}) == Path("y.yaml")
    assert find_config_path(None, {}) == Path("monitor.yaml")


@pytest.mark.parametrize(
    "relative", ["monitor.example.yaml", "deploy/monitor.yaml", "examples/offline/monitor.yaml"]
)
def test_shipped_configs_are_valid_without_any_secrets(relative: str) -> None:
    settings = load_settings(REPO / relative, env={})
    assert settings.sources()
    assert settings.channels.active_names() == ("console",)
    for path in settings.rule_paths():
        # The container config names where the image puts the rules; elsewhere they must exist.
        expected = REPO / "rules" if str(path) == "/etc/monitor/rules" else path
        assert expected.is_dir(), f"{relative} points at missing rules {path}"


@pytest.mark.parametrize(("text", "expected"), [("36h", timedelta(hours=36)), ("off", None)])
def test_backfill_window_or_off(tmp_path: Path, text: str, expected: timedelta | None) -> None:
    settings = load_settings(write(tmp_path, MINIMAL + f"ingest: {{backfill: {text}}}\n"), env={})
    assert settings.ingest.backfill == expected


def test_stories_are_on_by_default() -> None:
    """The unit of alerting is the story (README, Stories); an operator can still switch it
    off and alert once per headline, as long as no rule asks for corroboration."""
    assert StoriesSettings().enabled is True
