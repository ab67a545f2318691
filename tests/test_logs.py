"""Log output: JSON lines for containers, and secrets masked wherever they turn up."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from monitor.logs import REDACTED, SecretMasker, configure_logging

WEBHOOK = "https://hooks.slack.com/services/T000/B000/s3cr3tT0ken"


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    """configure_logging is global; put structlog back so other tests see its defaults."""
    yield
    structlog.reset_defaults()


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
