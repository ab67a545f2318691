"""Waiting for a condition, never for a fixed time: on a busy 2-core machine any fixed wait
is a future flaky test, so tests poll the condition itself within a generous budget."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], object], within: float, what: str) -> None:
    """Poll ``condition`` every 50 ms until it is true; AssertionError naming ``what`` after
    ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
