"""The console's pure decisions: whom the proxy header is believed from, roles, CSRF tokens,
safe redirects.  Addresses are only values here: nothing connects."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.console.access import (
    Action,
    Principal,
    allowed,
    csrf_ok,
    csrf_token,
    networks,
    peer_trusted,
    proxy_role,
    proxy_user,
    safe_next,
)

PROXIES = networks(["10.0.0.5/32", "172.16.0.0/12", "fd00:1::/64"])


@pytest.mark.parametrize(
    ("peer", "trusted"),
    [
        ("10.0.0.5", True),  # the proxy itself
        ("10.0.0.6", False),  # its neighbour in the same private range
        ("172.20.3.4", True),  # inside a trusted private range
        ("192.168.1.10", False),  # private, but not configured
        ("169.254.169.254", False),  # link-local (a cloud metadata address)
        ("fe80::1", False),  # IPv6 link-local
        ("fe80::1%eth0", False),  # ... with a zone id
        ("fd00:1::7", True),  # inside the trusted unique-local range
        ("fd00:2::7", False),
        ("8.8.8.8", False),  # public
        ("2001:4860:4860::8888", False),  # public IPv6
        ("127.0.0.1", False),  # loopback is not trusted unless configured
        ("::ffff:10.0.0.5", True),  # the proxy seen through a dual-stack socket
        ("::ffff:8.8.8.8", False),
        ("", False),
        (None, False),
        ("not-an-address", False),
        ("10.0.0.5:443", False),  # a host:port is not an address
    ],
)
def test_the_peer_is_trusted_only_inside_a_configured_network(
    peer: str | None, trusted: bool
) -> None:
    assert peer_trusted(peer, PROXIES) is trusted


def test_loopback_is_trusted_when_configured() -> None:
    assert peer_trusted("127.0.0.1", networks(["127.0.0.1/32"]))
    assert not peer_trusted("127.0.0.2", networks(["127.0.0.1/32"]))


@given(st.ip_addresses(v=4))
def test_an_empty_trust_list_trusts_no_address(address: ipaddress.IPv4Address) -> None:
    assert not peer_trusted(str(address), ())


@given(st.ip_addresses(v=4))
def test_ipv4_and_its_mapped_ipv6_form_are_decided_alike(address: ipaddress.IPv4Address) -> None:
    mapped = f"::ffff:{address}"
    assert peer_trusted(str(address), PROXIES) == peer_trusted(mapped, PROXIES)


@given(st.ip_addresses(v=4).filter(lambda a: not a.is_private))
def test_no_public_address_is_trusted_by_private_ranges(address: ipaddress.IPv4Address) -> None:
    assert not peer_trusted(str(address), networks(["10.0.0.0/8", "172.16.0.0/12"]))


@pytest.mark.parametrize(
    ("peer", "value", "user"),
    [
        ("10.0.0.5", "ana", "ana"),
        ("10.0.0.5", "  ana ", "ana"),
        ("8.8.8.8", "ana", ""),  # the header from anyone else is ignored
        ("10.0.0.5", None, ""),
        ("10.0.0.5", "", ""),
        ("10.0.0.5", "two words", ""),
        ("10.0.0.5", "bell\x07", ""),
        ("10.0.0.5", "x" * 129, ""),
    ],
)
def test_proxy_user(peer: str, value: str | None, user: str) -> None:
    assert proxy_user(peer, value, PROXIES) == user


def test_a_proxy_user_gets_the_role_named_for_them_or_the_default() -> None:
    assert proxy_role("ana", {"ana": "analyst"}, "viewer") == "analyst"
    assert proxy_role("eve", {"ana": "analyst"}, "viewer") == "viewer"


@pytest.mark.parametrize(
    ("principal", "action", "ok"),
    [
        (None, Action.READ, False),
        (None, Action.ACT, False),
        (Principal("v", "viewer", "login"), Action.READ, True),
        (Principal("v", "viewer", "proxy"), Action.ACT, False),
        (Principal("a", "analyst", "login"), Action.READ, True),
        (Principal("a", "analyst", "proxy"), Action.ACT, True),
    ],
)
def test_viewers_read_and_analysts_act(
    principal: Principal | None, action: Action, ok: bool
) -> None:
    assert allowed(principal, action) is ok


@given(st.binary(min_size=16, max_size=64), st.text(min_size=1, max_size=40))
def test_a_csrf_token_is_accepted_for_its_own_session_only(key: bytes, subject: str) -> None:
    token = csrf_token(key, subject)
    assert csrf_ok(key, subject, token)
    assert not csrf_ok(key + b"x", subject, token)  # another session's key
    assert not csrf_ok(key, subject + "x", token)  # another user
    assert not csrf_ok(key, subject, token[:-1])
    assert not csrf_ok(key, subject, None)
    assert not csrf_ok(key, subject, "")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/stories?page=2", "/stories?page=2"),
        ("/dead", "/dead"),
        (None, "/"),
        ("", "/"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("/x\r\nSet-Cookie: a=b", "/"),
        ("javascript:alert(1)", "/"),
    ],
)
def test_after_sign_in_only_a_path_on_the_console_is_followed(
    target: str | None, expected: str
) -> None:
    assert safe_next(target) == expected


@given(st.text())
def test_safe_next_is_always_a_local_path(target: str) -> None:
    result = safe_next(target)
    assert result.startswith("/")
    assert not result.startswith("//")
    assert "\\" not in result
    assert "\n" not in result
