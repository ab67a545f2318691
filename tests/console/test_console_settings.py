"""The ``console:`` settings: off by default, never without access control, cookies Secure
unless on loopback, and ``monitor console hash-password``."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.console.passwords import verify_password
from monitor.errors import ConfigError
from monitor.settings import Settings, load_settings

HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g"


def load(tmp_path: Path, text: str) -> Settings:
    config = tmp_path / "monitor.yaml"
    config.write_text(text, encoding="utf-8")
    return load_settings(config, env={})


def test_the_console_is_off_by_default(tmp_path: Path) -> None:
    console = load(tmp_path, "feeds: []\n").console
    assert not console.enabled
    assert (console.host, console.port, console.secure_cookie) == ("127.0.0.1", 8081, True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("console: {enabled: true}", "console.enabled is true but no access control"),
        (
            "console: {enabled: true, users: {ana: {password_hash: hunter2}}}",
            "password_hash is not an Argon2 hash",
        ),
        ("console: {enabled: true, proxy: {trusted: []}}", "console.proxy.trusted"),
        ("console: {enabled: true, proxy: {trusted: [10.0.0.1/8]}}", "is not a network"),
        ("console: {enabled: true, proxy: {trusted: [proxy.local]}}", "is not a network"),
        (
            f"console: {{enabled: true, host: 0.0.0.0, secure_cookie: false,\n"
            f"  users: {{ana: {{password_hash: '{HASH}'}}}}}}",
            "secure_cookie: false is allowed only with a loopback",
        ),
        (
            f"console: {{enabled: true, users: {{ana: {{password_hash: '{HASH}', role: admin}}}}}}",
            "console.users.ana.role",
        ),
    ],
)
def test_unsafe_console_settings_are_refused_at_load(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")) as caught:
        load(tmp_path, text)
    assert "hunter2" not in str(caught.value)  # a password pasted by mistake is not echoed


def test_a_console_with_a_login_or_a_proxy_loads(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        f"console:\n  enabled: true\n  users: {{ana: {{password_hash: '{HASH}', role: analyst}}}}\n"
        "  proxy: {trusted: [10.0.0.5/32, 'fd00::/64'], roles: {bob: analyst}}\n",
    )
    assert settings.console.users["ana"].role == "analyst"
    assert settings.console.proxy is not None
    assert settings.console.proxy.header == "X-Forwarded-User"
    assert HASH in settings.secrets()  # masked in logs like any secret


def test_hash_password_reads_stdin_and_prints_a_hash_that_verifies(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    assert main(["console", "hash-password"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("$argon2id$")
    assert verify_password(out, "correct horse battery")
    assert not verify_password(out, "correct horse battery\n")


def test_hash_password_refuses_a_short_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["console", "hash-password"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "at least 12 characters" in captured.err


def test_verify_password_is_false_for_unknown_users_and_malformed_hashes() -> None:
    assert not verify_password(None, "anything")
    assert not verify_password("$argon2id$broken", "anything")
