"""Running the real `monitor` command from tests, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_monitor(
    *args: str, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """`python -m monitor ARGS` from the repository, output captured; never raises on exit
    status, so tests assert on it.  Without ``env``, the test's own environment minus
    MONITOR_CONFIG (a developer's own config must not leak in)."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )
