"""Pytest fixtures for the channel test servers: a Slack webhook look-alike and an SMTP server.

Function-scoped so every test starts with an empty record and no scripted failures left over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from support.servers import OpensslMissingError, SlackServer, SmtpServer


@pytest.fixture
def slack_server() -> Iterator[SlackServer]:
    """A running SlackServer; give ``slack_server.url`` to a SlackChannel."""
    with SlackServer() as server:
        yield server


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A running plain SmtpServer without AUTH, on ``smtp_server.host``/``.port``."""
    with SmtpServer() as server:
        yield server


@pytest.fixture
def slack_server_factory() -> Iterator[Callable[..., SlackServer]]:
    """Start SlackServers with options (``secret=``, ``validate=``); all stopped afterwards."""
    started: list[SlackServer] = []

    def start(**options: Any) -> SlackServer:
        server = SlackServer(**options).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def smtp_server_factory() -> Iterator[Callable[..., SmtpServer]]:
    """Start SmtpServers with options (``auth=``, ``tls=``); all stopped afterwards.

    A TLS server needs the openssl command; the test is skipped when it is missing.
    """
    started: list[SmtpServer] = []

    def start(**options: Any) -> SmtpServer:
        try:
            server = SmtpServer(**options).start()
        except OpensslMissingError as exc:
            pytest.skip(str(exc))
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()
