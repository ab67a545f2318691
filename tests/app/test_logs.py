"""Log output: JSON lines for containers, and secrets masked wherever they turn up."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from monitor.app.logs import REDACTED, SecretMasker, configure_logging

WEBHOOK = "https://hooks.slack.com/services/T000/B000/s3cr3tT0ken"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """configure_logging is global; put structlog and the root logger back so other tests
    see their defaults."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_level_timestamp_and_context() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    structlog.get_logger().bind(feed="tengrinews").info("poll", new_items=3)
    record = json.loads(out.getvalue())
    assert record["event"] == "poll"
    assert record["feed"] == "tengrinews"
    assert record["level"] == "info"
    assert record["timestamp"].endswith("Z")


def test_configured_secrets_are_masked_in_values_and_exceptions() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", stream=out, secrets=[WEBHOOK, "hunter22"])
    log = structlog.get_logger()
    log.warning("send failed", error=f"POST {WEBHOOK} refused", detail=ValueError("hunter22"))
    try:
        raise RuntimeError(f"cannot reach {WEBHOOK}")
    except RuntimeError:
        log.exception("crash")
    text = out.getvalue()
    assert WEBHOOK not in text
    assert "hunter22" not in text
    assert text.count(REDACTED) >= 3


def test_debug_lines_are_filtered_at_info_level() -> None:
    out = io.StringIO()
    configure_logging(level="info", fmt="json", stream=out)
    structlog.get_logger().debug("noise")
    assert out.getvalue() == ""


def test_masker_ignores_short_strings_that_would_mask_everything() -> None:
    masker = SecretMasker(["", "ab", "longsecret"])
    assert masker.mask("ab longsecret") == f"ab {REDACTED}"


def test_library_log_records_are_json_lines_with_secrets_masked() -> None:
    """APScheduler, aiohttp, asyncio and redis log through ``logging``: their lines must be
    in the same format, and masked, since their exception text may hold a webhook URL."""
    out = io.StringIO()
    configure_logging(fmt="json", stream=out, secrets=[WEBHOOK])
    library = logging.getLogger("apscheduler.executors.default")
    library.warning("job %s skipped", "poll")
    try:
        raise ConnectionError(f"POST {WEBHOOK} failed")
    except ConnectionError:
        library.exception("Job raised an exception")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["event"] == "job poll skipped"
    assert first["level"] == "warning"
    assert first["logger"] == "apscheduler.executors.default"
    assert first["timestamp"].endswith("Z")
    assert second["level"] == "error"
    assert "ConnectionError" in second["exception"]
    assert WEBHOOK not in out.getvalue()
    assert REDACTED in second["exception"]


def test_library_info_lines_are_dropped_and_a_second_setup_does_not_double_lines() -> None:
    out = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=out)
    configure_logging(level="debug", fmt="json", stream=out)
    library = logging.getLogger("apscheduler.scheduler")
    library.info('Running job "poll"')  # every job run: not wanted even at debug
    library.warning("Run time of job was missed")
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == [
        "Run time of job was missed"
    ]


def test_credentials_nobody_listed_are_masked_by_shape() -> None:
    """A feed URL's ``user:pass@`` and ``?apikey=``, a Redis password and an Authorization
    header reach the log from library exception text; no configured secret names them."""
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    log = structlog.get_logger()
    log.warning(
        "poll failed",
        error="cannot GET https://reader:feedpw99@f.example/rss?apikey=ak1234&page=2",
        headers={"Authorization": "Bearer tok5678", "Accept": "*/*"},
    )
    logging.getLogger("redis").warning("lost redis://default:redispw42@10.0.0.2:6379/0")
    text = out.getvalue()
    for secret in ("feedpw99", "ak1234", "tok5678", "redispw42"):
        assert secret not in text
    assert "f.example/rss?apikey=***&page=2" in text
    assert "redis://default:***@10.0.0.2:6379/0" in text


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as stderr in a shell does."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("no_color", "coloured"), [("", True), ("1", False)])
def test_no_color_turns_the_terminal_colours_off(
    monkeypatch: pytest.MonkeyPatch, no_color: str, coloured: bool
) -> None:
    """https://no-color.org: ``NO_COLOR`` set and not empty means plain text."""
    monkeypatch.setenv("NO_COLOR", no_color)
    out = Terminal()
    configure_logging(stream=out)
    structlog.get_logger("t").warning("disk almost full", free="2%")
    assert ("\x1b[" in out.getvalue()) is coloured
    assert "disk almost full" in out.getvalue()
