"""Masking credentials wherever they hide: in URLs, in free text, in header values.

Pure text functions (no I/O), used at every boundary where text leaves the process or is kept:
log lines, CLI output, alerts, dead letters and Redis records.  Configured secrets are masked
by value too (``app.logs.SecretMasker``); this module catches the ones nobody listed, by shape:
the password in ``redis://:PW@host``, ``user:pass@`` in a feed URL, ``?apikey=`` and its
cousins in a query, the path of a Slack webhook, the value of an ``Authorization`` header.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import SplitResult, urlsplit, urlunsplit

REDACTED = "***"

#: Query or fragment parameters whose value is a credential, by a part of their name
#: (compared lower-case with ``-`` and ``_`` removed): apikey, api_key, access_token, sig,
#: X-Amz-Signature, client_secret, password, auth, sessionid ...
_SECRET_PARAM_PARTS = ("key", "token", "secret", "pass", "pwd", "sig", "auth", "session", "cred")
_SECRET_PARAM_NAMES = frozenset({"sid", "code", "jwt", "hash", "ticket"})

#: Headers whose value is a credential, lower-case.
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "apikey",
        "x-auth-token",
        "x-access-token",
        "private-token",
        "x-token",
    }
)

#: Hosts whose URL path is itself the secret (incoming webhooks, bot tokens).
_SECRET_PATH_HOSTS = (
    "hooks.slack.com",
    "discord.com",
    "discordapp.com",
    "webhook.office.com",
    "hooks.zapier.com",
    "api.telegram.org",
    "maker.ifttt.com",
)

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]{1,15}://[^\s'\"<>`]+")
_HEADER_NAMES = "|".join(re.escape(name) for name in sorted(SECRET_HEADERS, key=len, reverse=True))
_QUOTED_HEADER = re.compile(
    rf"(?i)(?<![\w-])((?:{_HEADER_NAMES})['\"]?\s*[:=]\s*)(['\"])(.*?)\2", re.DOTALL
)
_PLAIN_HEADER = re.compile(rf"(?i)(?<![\w-])((?:{_HEADER_NAMES})\s*:[ \t]*)(?!['\"])([^\r\n]+)")
_CLIP_MARK = "... ({} chars)"


def mask_url(url: str) -> str:
    """The URL with its credentials replaced by ``***``: the password (or a lone user name,
    often a token) in the user part, secret-named query and fragment values, and the path of
    webhook hosts whose path is the secret.  Host, port and the rest stay readable, so an
    operator still knows which server is meant.  Text that is not a URL comes back unchanged.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return _mask_unparsable(url)
    if not parts.scheme or not (parts.netloc or parts.query):
        return url
    netloc = _mask_netloc(parts)
    path = parts.path
    host = (parts.hostname or "").lower()
    if path not in ("", "/") and any(
        host == h or host.endswith("." + h) for h in _SECRET_PATH_HOSTS
    ):
        path = "/" + REDACTED
    query = _mask_params(parts.query)
    fragment = _mask_params(parts.fragment) if "=" in parts.fragment else parts.fragment
    masked = urlunsplit((parts.scheme, netloc, path, query, fragment))
    return url if masked == _normal(parts) else masked


def mask_text(text: str) -> str:
    """Free text (an exception message, a log value, a stored error) with every URL passed
    through ``mask_url`` and the values of credential headers (``Authorization: Bearer x``,
    ``'X-Api-Key': 'x'``, ``Cookie: a=b``) replaced by ``***``."""
    if "://" in text:
        text = _URL.sub(lambda found: _mask_url_in_text(found.group(0)), text)
    if any(name in text.lower() for name in SECRET_HEADERS):
        text = _QUOTED_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}{m.group(2)}", text)
        text = _PLAIN_HEADER.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return text


def mask_headers(headers: Iterable[tuple[str, str]] | Mapping[str, str]) -> dict[str, str]:
    """Headers as they may be shown: credential headers' values replaced by ``***``."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return {
        name: REDACTED if name.lower() in SECRET_HEADERS else mask_text(value)
        for name, value in pairs
    }


def url_host(url: str) -> str:
    """The host (and port, if given) of a URL, without user, path or query: what an alert
    may say about where a feed lives.  ``file:`` and unparsable URLs give ``""``."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}" if host and port else host


def clip(text: str, limit: int = 200) -> str:
    """At most about ``limit`` characters of ``text``, saying how long it really was, so a
    1.8 MB regex or body quoted in an error does not flood a log line or a terminal."""
    if len(text) <= limit:
        return text
    return text[:limit] + _CLIP_MARK.format(len(text))


def _mask_netloc(parts: SplitResult) -> str:
    if "@" not in parts.netloc:
        return parts.netloc
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    if colon:
        return f"{user}:{REDACTED}@{hostport}"
    return f"{REDACTED}@{hostport}"


def _mask_params(query: str) -> str:
    if not query:
        return query
    pieces = []
    for piece in re.split(r"([&;])", query):
        name, equals, value = piece.partition("=")
        if equals and value and _is_secret_param(name):
            piece = f"{name}={REDACTED}"
        pieces.append(piece)
    return "".join(pieces)


def _is_secret_param(name: str) -> bool:
    folded = name.lower().replace("-", "").replace("_", "").replace("%5f", "")
    return folded in _SECRET_PARAM_NAMES or any(part in folded for part in _SECRET_PARAM_PARTS)


def _normal(parts: SplitResult) -> str:
    return urlunsplit(parts)


def _mask_url_in_text(found: str) -> str:
    """A URL found in prose may carry trailing punctuation (``see https://x/y.``, ``(url)``):
    keep it out of the URL so it survives unchanged."""
    trimmed = found.rstrip(".,;:)]}!?")
    return mask_url(trimmed) + found[len(trimmed) :]


def _mask_unparsable(url: str) -> str:
    """A URL ``urlsplit`` refuses (a bad port, say) may still hold ``user:pass@``."""
    return re.sub(r"(://[^/@\s:]*):[^/@\s]*@", rf"\1:{REDACTED}@", url)
