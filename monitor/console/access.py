"""Who may do what in the console: the proxy-header trust decision, roles, CSRF tokens.

Pure: decisions on values (addresses, names, tokens); the server hands in the connection's
peer address, never a header's claim about it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Literal

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Role = Literal["viewer", "analyst"]
#: A user name a proxy may send: printable, no spaces or controls, not absurdly long.
MAX_USER = 128


class Action(Enum):
    """What a request does: reading a page, or changing something in Redis."""

    READ = "read"
    ACT = "act"  # retry a dead letter, add or end a silence


def networks(cidrs: Sequence[str]) -> tuple[IPNetwork, ...]:
    """The trusted proxies' networks (the settings checked each CIDR at load)."""
    return tuple(ipaddress.ip_network(cidr, strict=True) for cidr in cidrs)


def peer_trusted(peer: str | None, trusted: Sequence[IPNetwork]) -> bool:
    """Is the connection's peer address one of the trusted proxies?

    ``peer`` is the TCP peer (the socket's, not X-Forwarded-For: a client can write any
    header).  An IPv4 address seen as IPv4-mapped IPv6 (``::ffff:10.0.0.5``, a dual-stack
    listener) is compared as the IPv4 address it is.  Anything unparsable is untrusted.
    """
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer.partition("%")[0])  # a zone id (fe80::1%eth0) off
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in trusted)


def proxy_user(peer: str | None, header_value: str | None, trusted: Sequence[IPNetwork]) -> str:
    """The user a trusted proxy vouches for, or "" (the header is ignored from any other
    peer, and a value that cannot be a user name is ignored from any peer)."""
    if header_value is None or not peer_trusted(peer, trusted):
        return ""
    name = header_value.strip()
    if not name or len(name) > MAX_USER or not name.isprintable() or " " in name:
        return ""
    return name


def proxy_role(user: str, roles: Mapping[str, Role], default: Role) -> Role:
    """A proxy user's role: named in ``console.proxy.roles``, else the default."""
    return roles.get(user, default)


@dataclass(frozen=True, slots=True)
class Principal:
    """The signed-in user of a request, and how they signed in."""

    user: str
    role: Role
    via: Literal["login", "proxy"]


def allowed(principal: Principal | None, action: Action) -> bool:
    """May this principal do ``action``?  Nobody unsigned; viewers read; analysts act."""
    if principal is None:
        return False
    return action is Action.READ or principal.role == "analyst"


def csrf_token(key: bytes, subject: str) -> str:
    """The CSRF token a form carries: an HMAC of the session it belongs to.

    ``key`` is secret to the server (a session's own token, or the process's key for proxy
    users); ``subject`` binds the token to one session or user, so a token taken from one
    session is worthless in another.  Nothing is stored: the server recomputes it.
    """
    return hmac.new(key, b"csrf\0" + subject.encode(), hashlib.sha256).hexdigest()


def csrf_ok(key: bytes, subject: str, presented: str | None) -> bool:
    """Does the form's token match the one this session would be given?  (Compared in
    constant time; a missing or empty token never matches.)"""
    if not presented:
        return False
    return hmac.compare_digest(csrf_token(key, subject), presented)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this console only (``/stories?page=2``);
    anything else (``//evil.example``, ``https://...``, ``/\\evil``) goes to the start page."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(ch in target for ch in "\r\n\t\\") or not target.isprintable():
        return "/"
    return target
